"""Per-prompt sample metrics: unbiased pass@k, mean@n, majority vote (maj@k)."""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Sequence

import numpy as np

__all__ = ["pass_at_k", "mean_at_n", "maj_at_k", "is_correct"]


def _as_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: ``1 - C(n-c, k) / C(n, k)``.

    Computed as ``1 - prod_{i=n-c+1..n} (1 - k/i)``, which never forms the (huge) binomials.
    """
    n, c, k = _as_int(n, "n"), _as_int(c, "c"), _as_int(k, "k")
    if n < 1:
        raise ValueError(f"pass_at_k needs n >= 1 samples, got n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def is_correct(value: object) -> bool:
    """A sample counts as correct for pass@k when its correctness value is >= 0.5 (bools, 0/1 floats)."""
    return float(value) >= 0.5  # type: ignore[arg-type]


def mean_at_n(corrects: Sequence[float | bool]) -> float:
    """Mean correctness over the samples of one prompt (avg@n)."""
    if len(corrects) == 0:
        raise ValueError("mean_at_n needs at least one sample")
    return float(np.mean([float(x) for x in corrects]))


def maj_at_k(preds: Sequence[Hashable | None], corrects: Sequence[float | bool], k: int | None = None) -> float:
    """Correctness of the most frequent extracted answer among the first ``k`` samples (default all).

    Answers are compared for exact equality. Ties go to the answer seen first; ``None`` (no answer
    extracted) never wins over a real answer; if no sample has an answer the result is 0.0. The
    correctness of an answer is that of its first sample.
    """
    if len(preds) != len(corrects):
        raise ValueError(f"maj_at_k: {len(preds)} predictions but {len(corrects)} correctness values")
    if len(preds) == 0:
        raise ValueError("maj_at_k needs at least one sample")
    k = len(preds) if k is None else _as_int(k, "k")
    if not 1 <= k <= len(preds):
        raise ValueError(f"maj_at_k needs 1 <= k <= {len(preds)}, got k={k}")
    counts: dict[Hashable, int] = {}
    first_correct: dict[Hashable, float] = {}
    for pred, corr in zip(preds[:k], corrects[:k]):
        if pred is None:
            continue
        key = _key(pred)
        if key not in counts:
            counts[key] = 0
            first_correct[key] = float(corr)
        counts[key] += 1
    if not counts:
        return 0.0
    best = max(counts, key=lambda a: counts[a])  # max keeps the first of equal counts (insertion order)
    return first_correct[best]


def _key(pred: object) -> Hashable:
    try:
        hash(pred)
        return pred  # type: ignore[return-value]
    except TypeError:
        return repr(pred)
