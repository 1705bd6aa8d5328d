"""The reward pool's process handles: a forked scoring process (killed and waited on by pidfd) and
the parent's view of one worker (its pipes and the chunk it is scoring). Split from
:mod:`relift.rewards.pool` so the scheduler reads on its own."""

from __future__ import annotations

import os
import select
import signal
import time
from collections import deque
from multiprocessing.connection import Connection

__all__ = ["ScorerProcess", "WorkerHandle", "kill_all"]


class ScorerProcess:
    """A forked worker process (a child of the zygote, not of this process): kill and wait by pidfd."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self._fd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):  # not Linux >= 5.3, or already gone
            self._fd = None

    def alive(self) -> bool:
        if self._fd is not None:
            return not select.select([self._fd], [], [], 0)[0]
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def kill(self) -> None:
        try:
            if self._fd is not None:
                signal.pidfd_send_signal(self._fd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            if self._fd is not None:
                select.select([self._fd], [], [], max(0.0, deadline - time.monotonic()))
            else:
                time.sleep(0.01)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class WorkerHandle:
    """Handle on one worker process: its pipes, readiness and the chunk it is scoring."""

    def __init__(self, proc: ScorerProcess, tasks: Connection, results: Connection) -> None:
        self.proc = proc
        self.tasks = tasks
        self.results = results
        self.ready = False
        self.suspect = False  # its head sample ran past suspect_after; retired when it answers
        self.chunk: deque = deque()  # items sent and not yet answered, in order
        self.started = 0.0  # when the item at the head of ``chunk`` started (approximately)

    def kill(self) -> None:
        """SIGKILL without waiting: a hang may hold gigabytes that take seconds to free, and the
        batch must not wait for that (the zygote reaps it; :meth:`RewardPool.close` waits)."""
        self.proc.kill()
        for conn in (self.tasks, self.results):
            try:
                conn.close()
            except OSError:
                pass


def kill_all(procs: dict) -> None:
    """Finaliser: kill every process still alive (also runs at interpreter exit)."""
    for proc in list(procs.values()):
        try:
            proc.kill()
        except Exception:  # noqa: BLE001
            pass
    procs.clear()
