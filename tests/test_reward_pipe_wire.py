"""PipeEnd speaks multiprocessing.connection's framing; reward processes import neither
multiprocessing nor hashlib; custom reward files get one stable module name per path."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from multiprocessing.connection import Connection

import pytest

from relift.rewards import custom, pipe_wire
from relift.rewards.pipe_wire import PipeEnd

MESSAGES = [
    ("ready", 123),
    ("res", 7, {"score": 1.0, "pred": "x" * 50_000}, None),  # over 16 KB: header and payload written apart
    ("imported", ["math_verify", "sympy"]),
    b"",
]


def _pipe_pair(reader_cls, writer_cls):
    r, w = os.pipe()
    reader = Connection(r, writable=False) if reader_cls is Connection else PipeEnd(r)
    writer = Connection(w, readable=False) if writer_cls is Connection else PipeEnd(w)
    return reader, writer


@pytest.mark.parametrize("reader_cls,writer_cls", [(Connection, PipeEnd), (PipeEnd, Connection), (PipeEnd, PipeEnd)])
def test_messages_cross_between_pipe_end_and_connection(reader_cls, writer_cls):
    reader, writer = _pipe_pair(reader_cls, writer_cls)
    got = []
    for msg in MESSAGES:  # a 50 KB frame fills most of the pipe's buffer: read each before the next
        writer.send(msg)
        got.append(reader.recv())
    assert got == MESSAGES
    writer.close()
    with pytest.raises(EOFError):
        reader.recv()
    reader.close()


def test_long_frames_use_connections_eight_byte_length(monkeypatch):
    """Payloads over 2 GiB - 1 are sent as length -1 then an 8-byte length; checked with a lowered limit
    (Connection reads that frame whatever the size), and a hand-written long frame is read back."""
    monkeypatch.setattr(pipe_wire, "_SMALL", 10)
    reader, writer = _pipe_pair(Connection, PipeEnd)
    writer.send({"score": 0.5, "long": "y" * 100})
    assert reader.recv() == {"score": 0.5, "long": "y" * 100}
    r, w = os.pipe()
    payload = pickle.dumps(("res", 1, {"score": 1.0}, None))
    os.write(w, struct.pack("!i", -1) + struct.pack("!Q", len(payload)) + payload)
    long_reader = PipeEnd(r)
    assert long_reader.recv() == ("res", 1, {"score": 1.0}, None)
    for end in (reader, writer, long_reader):
        end.close()
    os.close(w)


def test_a_frame_cut_short_is_an_error_not_a_message():
    r, w = os.pipe()
    os.write(w, struct.pack("!i", 100) + b"abc")
    os.close(w)
    end = PipeEnd(r)
    with pytest.raises(OSError, match="middle of a message"):
        end.recv()
    end.close()
    with pytest.raises(OSError, match="closed"):
        end.fileno()


def test_the_zygotes_imports_leave_out_multiprocessing_and_hashlib():
    """What the zygote imports, every scorer forked from it carries: multiprocessing (~2 MB) and
    OpenSSL through hashlib (~4 MB) were loaded for one class and one checksum."""
    code = ("import sys; import relift.rewards.pool_worker; "
            "print(sorted(m for m in ('multiprocessing', 'hashlib', 'subprocess', 'concurrent') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_custom_files_module_name_is_stable_and_distinct(tmp_path):
    a, b = str(tmp_path / "a.py"), str(tmp_path / "b.py")
    assert custom._module_name(a) == custom._module_name(a) != custom._module_name(b)
    assert custom._module_name(a).startswith(custom.CUSTOM_MODULE_PREFIX)
    code = f"from relift.rewards import custom; print(custom._module_name({a!r}))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == custom._module_name(a)  # not salted per process, as hash() would be
