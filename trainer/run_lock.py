"""One run per output directory: an exclusive lock file in ``trainer.default_local_dir``.

Two runs writing one directory interleave ``metrics.jsonl``, trip over each other's ``.tmp-``
saves and resume from each other's live checkpoints (issue 19). A run therefore holds
``<dir>/run.lock`` for its whole life:

* the lock is an ``fcntl.flock`` on that file: the kernel drops it when the holder exits or is
  killed (``kill -9`` included), so a crash never leaves a lock that blocks the next run;
* the file records the holder (host, pid, start time, command) so a refused run can name it;
* a record left behind by a holder that died is reported and taken over with a notice;
* where the file system refuses ``flock`` (some network mounts) the record alone decides: a holder on
  this host is checked with ``kill(pid, 0)``; one on another host cannot be checked, so the run
  refuses and says which file to delete once that run is known to be gone.

A refused run raises :class:`RunRefused`; the entry points turn it into one message and exit status 2.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from trainer.run_errors import RunRefused

__all__ = ["LOCK_FILE", "RunRefused", "RunLock", "read_holder"]

logger = logging.getLogger(__name__)

LOCK_FILE = "run.lock"


def read_holder(path: str | os.PathLike) -> dict[str, Any] | None:
    """The holder record in a lock file, or None when it is empty, missing or unreadable."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    try:
        rec = json.loads(text)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and "pid" in rec else None


def _describe(rec: dict[str, Any]) -> str:
    return (
        f"pid {rec.get('pid')} on host {rec.get('host')}, started {rec.get('started')}, command: {rec.get('command')}"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """``with RunLock(dir):`` holds ``<dir>/run.lock`` (or call :meth:`acquire` / :meth:`release`)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None
        self.took_over: dict[str, Any] | None = None  # the dead holder's record, when there was one

    def _record(self) -> dict[str, Any]:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join(sys.argv),
        }

    def _refuse(self, rec: dict[str, Any] | None, why: str) -> RunRefused:
        holder = _describe(rec) if rec else "a process that left no record"
        return RunRefused(
            f"{self.folder} is in use by another run ({holder}); {why}. Two runs in one directory "
            f"overwrite each other's metrics and checkpoints. Wait for that run to end, stop it, or give this "
            f"run its own directory (trainer.default_local_dir=... or another trainer.experiment_name)."
        )

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunRefused` at once (never waits)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            flock_ok = True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise self._refuse(read_holder(self.path), "it holds the lock") from None
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                flock_ok = False  # no flock on this file system: the record decides
                logger.warning(
                    "%s: the file system does not support flock (%s); using the pid record only",
                    self.path,
                    err.strerror,
                )
            old = read_holder(self.path)
            if old is not None and not (old.get("host") == socket.gethostname() and old.get("pid") == os.getpid()):
                if not flock_ok:
                    if old.get("host") != socket.gethostname():
                        raise self._refuse(
                            old,
                            f"it runs on another host, which cannot be checked from here; "
                            f"delete {self.path} once you know it has ended",
                        )
                    if _pid_alive(int(old["pid"])):
                        raise self._refuse(old, "that process is still running")
                self.took_over = old
                logger.warning(
                    "taking over the stale run lock %s: its holder (%s) is no longer running", self.path, _describe(old)
                )
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(self._record()) + "\n").encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Empty the record and drop the lock (a crash drops the lock too, leaving the record)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
