"""Rewards: scorers chosen by ``data_source`` and a process pool with hard per-sample timeouts.

``compute_score(data_source, solution_str, ground_truth, extra_info=None)`` scores one response in
this process (it may hang or raise on adversarial input); ``RewardPool`` scores batches in worker
processes, turning hangs and exceptions into 0 scores that are counted and logged.

``RewardPool`` and ``default_num_workers`` are imported on first use: the pool's worker processes
import this package too, and need none of the pool's own modules (threads, subprocess,
multiprocessing), which would add to every worker's memory.
"""

from typing import Any

from relift.rewards.custom import load_custom_reward_fn
from relift.rewards.registry import (
    DEFAULT_KK_SOURCES,
    DEFAULT_MATH_SOURCES,
    compute_score,
    get_reward_fn,
    known_data_sources,
    register_reward,
)

__all__ = [
    "compute_score",
    "RewardPool",
    "default_num_workers",
    "register_reward",
    "get_reward_fn",
    "known_data_sources",
    "load_custom_reward_fn",
    "DEFAULT_MATH_SOURCES",
    "DEFAULT_KK_SOURCES",
]

_FROM_POOL = ("RewardPool", "default_num_workers")


def __getattr__(name: str) -> Any:
    if name in _FROM_POOL:
        from relift.rewards import pool

        return getattr(pool, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
