"""How many torch threads a CPU policy worker uses (issue 18.2), chosen deterministically.

Order: an explicit count wins (``trainer.cpu_threads``, else ``RELIFT_CPU_THREADS``, else the
driver's ``OMP_NUM_THREADS``; the plan resolves which, see ``trainer/plan/common.py``), else a rule
from the node and the work:

* ``share`` = usable cores (the process's CPU affinity) // policy workers on this node;
* a model narrower than ``min_hidden`` gets one thread (its matmuls too small for a second thread
  to pay for the fork/join of every op), any other model the whole share. The default
  :data:`MIN_HIDDEN_FOR_ALL_THREADS` is 0: the whole share won on every model we measured, the tiny
  one included (docs/performance.md; OpenMP's wait policy: :func:`prefer_passive_omp_wait`);
* the reward processes get no core of their own: they score between the generation and the
  update, not during them.

The rule never looks at the load average: the same machine, config and environment give the same
count, hence the same reduction order in every matmul, hence bit-identical runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = [
    "MIN_HIDDEN_FOR_ALL_THREADS",
    "ThreadChoice",
    "choose_cpu_threads",
    "omp_wait_policy_for",
    "prefer_passive_omp_wait",
    "usable_cores",
]

# hidden size at and above which a worker takes its whole share of cores (docs/performance.md, section 2)
MIN_HIDDEN_FOR_ALL_THREADS = 0


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str  # one line for the log


def usable_cores() -> int:
    """Cores this process may run on (affinity mask, e.g. a container's cpuset), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_cpu_threads(
    explicit: int | None,
    explicit_source: str,
    *,
    cores: int,
    local_world_size: int,
    hidden_size: int | None,
    min_hidden: int = MIN_HIDDEN_FOR_ALL_THREADS,
) -> ThreadChoice:
    """The torch thread count for one CPU worker and why (see the module docstring for the rule)."""
    if explicit is not None:
        if explicit < 1:
            raise ValueError(f"{explicit_source} must be >= 1, got {explicit}")
        return ThreadChoice(explicit, f"{explicit} (from {explicit_source})")
    if cores < 1 or local_world_size < 1:
        raise ValueError(f"cores ({cores}) and local_world_size ({local_world_size}) must be >= 1")
    share = max(1, cores // local_world_size)
    where = f"{cores} cores / {local_world_size} worker(s) on this node = {share}"
    if hidden_size is not None and hidden_size < min_hidden:
        return ThreadChoice(1, f"1 (auto: hidden size {hidden_size} < {min_hidden}; {where})")
    return ThreadChoice(share, f"{share} (auto: {where})")


def omp_wait_policy_for(load: float, cores: int) -> str | None:
    """``"PASSIVE"`` when the node is already busy (1-minute load >= usable cores + 1: the average lags
    by a minute, so a run that just ended on a quiet node still shows about ``cores``), else None
    (libgomp's own default: spin a little, then sleep).

    Why: idle OpenMP threads spin before they sleep. On a quiet CPU that is what makes small ops fast
    (tiny bench job: 0.43 s/step with libgomp's default vs 0.81 s with passive waiting); on a CPU
    shared with other busy processes the spinning steals the cores the working threads need (a
    2-thread SFT step took 5.8 s instead of 0.3 s at load 5 on 2 cores; docs/performance.md). The
    wait policy changes no result, only timing, so choosing it from the load keeps runs repeatable.
    """
    return "PASSIVE" if load >= cores + 1 else None


def prefer_passive_omp_wait() -> str:
    """Set ``OMP_WAIT_POLICY`` from :func:`omp_wait_policy_for` unless the user set a policy; returns
    the policy in force ("default" = libgomp's).

    libgomp reads the variable once, when torch loads it, so this must run before ``import torch``:
    importing the ``trainer`` package does it, before any entry point imports torch (Ray workers
    started by the driver inherit it). Call this from other programs before their torch import.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return os.environ["OMP_WAIT_POLICY"] or "default"
    try:
        load, cores = os.getloadavg()[0], len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return "default"
    policy = omp_wait_policy_for(load, cores)
    if policy is None:
        return "default"
    os.environ["OMP_WAIT_POLICY"] = policy
    return policy
