"""Stop a run whose rewards keep failing, instead of training on silent zeros.

A scorer that raises, times out, or cannot parse the ground truth gives the sample 0: fine once,
but when most samples fail step after step the policy learns from noise and the run "succeeds"
with all-zero rewards.  :class:`RewardErrorGuard` counts the failures of each step
(``reward/errors``, ``reward/timeouts``, ``reward/error_fraction``) and raises
:class:`RewardFailureError` once the fraction has been above ``reward.max_error_fraction`` for
``reward.max_error_steps`` steps in a row, naming the first failure of that streak and its row
(data index, uid, data_source), so the user can reproduce it with one scorer call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RewardErrorGuard", "RewardFailureError", "RewardFailure", "failure_metrics"]


class RewardFailureError(RuntimeError):
    """Rewards failed on too many samples for too many steps in a row; the run stops."""


@dataclass(frozen=True)
class RewardFailure:
    """The first failed sample of a step: where it came from and why."""

    step: int
    message: str
    row: int  # position in the step's batch
    index: Any  # the data row (``index`` column: extra_info.index or the file row)
    uid: Any
    data_source: Any

    def describe(self) -> str:
        return (
            f"step {self.step}, batch row {self.row} (data index {self.index!r}, uid {self.uid!r}, "
            f"data_source {self.data_source!r}): {self.message}"
        )


def _column(nt: Mapping[str, Any], key: str, n: int, default: Any = None) -> list[Any]:
    values = nt.get(key)
    return list(values) if values is not None and len(values) == n else [default] * n


def failure_metrics(non_tensors: Mapping[str, Any]) -> dict[str, float]:
    """``reward/errors``, ``reward/timeouts``, ``reward/error_fraction`` from a scored batch's
    per-row ``reward_error`` / ``reward_timeout`` flags (a row is one or the other, never both)."""
    errors = sum(bool(v) for v in non_tensors.get("reward_error", []))
    timeouts = sum(bool(v) for v in non_tensors.get("reward_timeout", []))
    n = max(len(non_tensors.get("reward_error", [])), len(non_tensors.get("reward_timeout", [])))
    return {
        "reward/errors": float(errors),
        "reward/timeouts": float(timeouts),
        "reward/error_fraction": float(min(errors + timeouts, n) / n) if n else 0.0,
    }


class RewardErrorGuard:
    """Count reward failures per step; raise when they dominate ``max_steps`` steps in a row.

    Args:
        max_fraction: a step is "failing" when more than this fraction of its samples failed
            (``reward.max_error_fraction``; 1.0 never stops the run).
        max_steps: failing steps in a row that stop the run (``reward.max_error_steps``).
    """

    def __init__(self, max_fraction: float, max_steps: int) -> None:
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(f"reward.max_error_fraction must be in [0, 1], got {max_fraction}")
        if max_steps < 1:
            raise ValueError(f"reward.max_error_steps must be >= 1, got {max_steps}")
        self.max_fraction = float(max_fraction)
        self.max_steps = int(max_steps)
        self.streak = 0
        self.first: RewardFailure | None = None  # first failure of the current streak

    def check(self, step: int, non_tensors: Mapping[str, Any]) -> dict[str, float]:
        """This step's failure metrics; raises :class:`RewardFailureError` when the streak is long enough."""
        metrics = failure_metrics(non_tensors)
        if metrics["reward/error_fraction"] > self.max_fraction:
            if self.streak == 0:
                self.first = self._first_failure(step, non_tensors)
            self.streak += 1
        else:
            self.streak = 0
            self.first = None
        if self.streak >= self.max_steps:
            raise RewardFailureError(self._message(metrics))
        return metrics

    def _first_failure(self, step: int, nt: Mapping[str, Any]) -> RewardFailure | None:
        n = max(len(nt.get("reward_error", [])), len(nt.get("reward_timeout", [])))
        errors, timeouts = _column(nt, "reward_error", n, False), _column(nt, "reward_timeout", n, False)
        msgs, index, uid, source = (_column(nt, k, n) for k in ("reward_error_msg", "index", "uid", "data_source"))
        for i in range(n):
            if errors[i] or timeouts[i]:
                message = msgs[i] or ("timed out" if timeouts[i] else "the scorer failed")
                return RewardFailure(step, str(message), i, index[i], uid[i], source[i])
        return None

    def _message(self, metrics: Mapping[str, float]) -> str:
        first = self.first.describe() if self.first is not None else "(no failed row recorded)"
        return (
            f"rewards failed on more than {self.max_fraction:.0%} of the samples for {self.streak} steps "
            f"in a row (last step: {metrics['reward/error_fraction']:.0%}, {int(metrics['reward/errors'])} "
            f"errors, {int(metrics['reward/timeouts'])} timeouts). First failure: {first}. Check the "
            "scorer for this data_source and the row's ground truth (reward_model.ground_truth); "
            "reward.max_error_fraction / reward.max_error_steps set this limit."
        )
