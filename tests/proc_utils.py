"""Helpers for tests that kill a child process at a chosen moment."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator


@contextlib.contextmanager
def sigkill_after(proc: subprocess.Popen) -> Iterator[None]:
    """Run the ``with`` block (it waits for the moment), then SIGKILL ``proc``; assert it died of it."""
    try:
        yield
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
