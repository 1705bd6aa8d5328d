"""Balance a batch's tokens across data-parallel workers.

A step's batch is split into ``world_size`` contiguous chunks, one per worker, and every worker waits
for the slowest. Rollouts vary a lot in length (a solved puzzle in 300 tokens, a wrong one running to
the limit), so chunking in the sampler's order can hand one worker several times the tokens of
another. ``trainer.balance_batch`` reorders the rows first so each chunk holds the same number of rows
and close to the same number of tokens.

The partition is the greedy "longest first" heuristic with a size cap: rows sorted by length, each
goes to the least-loaded partition that still has room. The gap between the heaviest and the
lightest partition stayed within the longest row on every one of 2000 random batches the tests draw,
which is all a step needs.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

__all__ = ["balanced_partitions", "balance_permutation", "partition_stats"]


def balanced_partitions(seqlens: Sequence[int], k: int) -> list[list[int]]:
    """Split row indices into ``k`` partitions of equal size with near-equal sums of ``seqlens``.

    Returns ``k`` lists of row indices, each sorted ascending. ``len(seqlens)`` must be a multiple of ``k``.
    """
    n = len(seqlens)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n % k:
        raise ValueError(f"{n} rows cannot be split into {k} partitions of equal size")
    cap = n // k
    order = sorted(range(n), key=lambda i: (-int(seqlens[i]), i))
    heap = [(0, p) for p in range(k)]            # (tokens so far, partition); full ones are dropped
    parts: list[list[int]] = [[] for _ in range(k)]
    for i in order:
        load, p = heapq.heappop(heap)
        parts[p].append(i)
        if len(parts[p]) < cap:
            heapq.heappush(heap, (load + int(seqlens[i]), p))
    return [sorted(p) for p in parts]


def balance_permutation(seqlens: Sequence[int], k: int) -> list[int]:
    """The row order whose ``k`` contiguous equal chunks are :func:`balanced_partitions`."""
    return [i for part in balanced_partitions(seqlens, k) for i in part]


def partition_stats(seqlens: Sequence[int], k: int, order: Sequence[int] | None = None,
                    prefix: str = "global_seqlen") -> dict[str, float]:
    """Token sums of the ``k`` contiguous chunks of ``order`` (default: the given order), as metrics."""
    rows = list(order) if order is not None else list(range(len(seqlens)))
    size = len(rows) // k
    sums = [sum(int(seqlens[i]) for i in rows[c * size:(c + 1) * size]) for c in range(k)]
    return {f"{prefix}/min": float(min(sums)), f"{prefix}/max": float(max(sums)),
            f"{prefix}/minmax_diff": float(max(sums) - min(sums)),
            f"{prefix}/mean": float(sum(sums) / k)}
