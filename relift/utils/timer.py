"""Wall-clock timing of the phases of a step, named as verl names them (``timing_s/<name>``).

Timings land in a plain dict that the trainer merges into the step's metrics, so the tracking
backends log them like any other number.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

__all__ = ["TIMING_PREFIX", "seconds_since_process_start", "timed"]

TIMING_PREFIX = "timing_s/"


@contextmanager
def timed(name: str, timings: MutableMapping[str, float]) -> Iterator[None]:
    """Add the seconds spent in the ``with`` block to ``timings["timing_s/<name>"]``.

    Times of a name used more than once in the same dict add up (e.g. two generation calls in one
    step), so use a fresh dict per step. The time is recorded even when the block raises, which
    tells where a failed step spent its time. ``name`` may already carry the prefix.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"timed() needs a non-empty name, got {name!r}")
    key = name if name.startswith(TIMING_PREFIX) else TIMING_PREFIX + name
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + (time.perf_counter() - start)


def seconds_since_process_start() -> float:
    """Wall seconds since this process was created (interpreter start and imports included), so
    "time to first step" covers what a user waits for; ``nan`` where the OS does not say (non-Linux)."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
