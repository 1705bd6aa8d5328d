"""Pickled messages over one end of an OS pipe, byte for byte as ``multiprocessing.connection`` frames them.

Why: the reward zygote and the scorers forked from it talk to the trainer's
``multiprocessing.connection.Connection`` objects (:mod:`relift.rewards.pool`), but importing
``multiprocessing`` there cost each of these processes ~2 MB of memory for one class. This one
writes and reads the same frames: a 4-byte big-endian signed length, then the pickle; a payload over
2 GiB - 1 is sent as length -1, an 8-byte big-endian unsigned length, then the pickle
(``tests/test_reward_pipe_wire.py`` checks both directions against ``Connection``).
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

__all__ = ["PipeEnd"]

_SMALL = 0x7FFFFFFF  # the largest length a 4-byte signed header holds


class PipeEnd:
    """One end of a pipe (a file descriptor this object owns): ``send``, ``recv``, ``fileno``, ``close``."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def fileno(self) -> int:
        if self._fd is None:
            raise OSError("pipe end is closed")
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def send(self, obj: Any) -> None:
        """Pickle ``obj`` and write it as one frame."""
        payload = pickle.dumps(obj)
        n = len(payload)
        header = struct.pack("!i", n) if n <= _SMALL else struct.pack("!iQ", -1, n)
        if n > 16384:  # no copy of a large payload to prepend its header
            self._write(header)
            self._write(payload)
        else:
            self._write(header + payload)

    def recv(self) -> Any:
        """Read one frame and unpickle it; EOFError when the other end closed before a frame began."""
        (size,) = struct.unpack("!i", self._read(4, at_start=True))
        if size == -1:
            (size,) = struct.unpack("!Q", self._read(8))
        return pickle.loads(self._read(size))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fileno(), view):]

    def _read(self, size: int, at_start: bool = False) -> bytes:
        parts = []
        remaining = size
        while remaining > 0:
            chunk = os.read(self.fileno(), min(remaining, 1 << 30))
            if not chunk:
                if at_start and remaining == size:
                    raise EOFError
                raise OSError("end of file in the middle of a message")
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts)
