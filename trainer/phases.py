"""Where the driver is in a step: the phase tracker the hang watchdog reads.

The trainers mark each phase of a step (``generate``, ``reward``, ``old_log_prob``, ``ref``, ``update``,
``validate``, ``save``; the names of issue 19) with ``with phase("reward", group=reward_wg):``.
Entering or leaving a phase is *progress*: the watchdog (:mod:`trainer.watchdog`) fires when no
phase has begun or ended for ``trainer.hang_timeout_s`` seconds, and names the phase the driver is
in, the step, and the worker group that phase waits on.

One tracker per driver process (:data:`TRACKER`); marks are cheap (a lock and a clock read).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["PhaseState", "PhaseTracker", "TRACKER", "phase"]


@dataclass(frozen=True)
class PhaseState:
    """What the driver is doing: the innermost phase, the step, the group it waits on, and since when."""

    name: str
    step: int
    group: Any
    since: float  # time.monotonic() of the last phase transition


class PhaseTracker:
    """A stack of open phases and the time of the last transition (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stack: list[tuple[str, Any]] = []
        self._step = 0
        self._since = time.monotonic()

    def reset(self, name: str = "setup") -> None:
        """Forget open phases (a new run in this process) and start at ``name``."""
        with self._lock:
            self._stack = [(name, None)]
            self._step = 0
            self._since = time.monotonic()

    def set_step(self, step: int) -> None:
        with self._lock:
            self._step = int(step)

    def enter(self, name: str, group: Any = None) -> None:
        with self._lock:
            self._stack.append((name, group))
            self._since = time.monotonic()

    def leave(self) -> None:
        with self._lock:
            if self._stack:
                self._stack.pop()
            self._since = time.monotonic()

    def state(self) -> PhaseState:
        """The innermost open phase (``idle`` when none) and the time of the last transition."""
        with self._lock:
            name, group = self._stack[-1] if self._stack else ("idle", None)
            return PhaseState(name=name, step=self._step, group=group, since=self._since)

    def path(self) -> str:
        """The open phases, outermost first (``step/reward``)."""
        with self._lock:
            return "/".join(n for n, _ in self._stack) or "idle"


TRACKER = PhaseTracker()


@contextmanager
def phase(name: str, group: Any = None, tracker: PhaseTracker | None = None) -> Iterator[None]:
    """Mark the ``with`` block as phase ``name``; ``group`` is the worker group it waits on (or None)."""
    t = tracker or TRACKER
    t.enter(name, group)
    try:
        yield
    finally:
        t.leave()
