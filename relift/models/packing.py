"""Balanced partitioning of sequences by token count.

Two uses:

* token-budget micro-batches: split a mini-batch into as few micro-batches as possible such that
  none holds more than ``max_tokens`` real tokens, with the load spread evenly so the slowest
  micro-batch is as fast as it can be (``token_budget_partitions``);
* balancing a batch across data-parallel workers, each getting the same number of sequences and a
  similar number of tokens (``balanced_partitions(..., equal_size=True)``).

``contiguous_budget_partitions`` keeps a given order instead (runs of it): the actor orders rows by
length, with each prompt's samples side by side, so every micro-batch holds rows of similar length
(less padding) and whole prompt groups (prompt sharing finds its repeats).

The balancing partitioner is greedy LPT (longest processing time first): sort by length, give each item to
the currently lightest partition. It is within 4/3 of the optimal makespan, deterministic, and
O(n log n), which is all a micro-batch planner needs.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

__all__ = ["balanced_partitions", "contiguous_budget_partitions", "token_budget_partitions", "partition_sums"]


def _as_lengths(lengths: Sequence[int]) -> list[int]:
    out = [int(x) for x in lengths]
    if any(x < 0 for x in out):
        raise ValueError(f"sequence lengths must be >= 0, got min {min(out)}")
    return out


def _fits_budget(lens: list[int], max_tokens: int) -> int:
    """The longest sequence; raises when it alone exceeds the budget."""
    longest = max(lens)
    if longest > max_tokens:
        raise ValueError(f"a sequence of {longest} tokens does not fit a token budget of {max_tokens}; "
                         f"raise the budget (e.g. ppo_max_token_len_per_gpu / log_prob_max_token_len_per_gpu) "
                         f"to at least the longest prompt + response")
    return longest


def balanced_partitions(lengths: Sequence[int], k_partitions: int, equal_size: bool = False) -> list[list[int]]:
    """Split item indices into ``k_partitions`` groups with near-equal sums of ``lengths``.

    With ``equal_size`` every group gets exactly ``len(lengths) // k_partitions`` items (the count
    must divide). Each group's indices are sorted ascending; groups are ordered by their first
    index, so the result depends only on the input. Empty groups are possible when there are
    fewer items than partitions (and ``equal_size`` is off).
    """
    lens = _as_lengths(lengths)
    n = len(lens)
    if k_partitions < 1:
        raise ValueError(f"k_partitions must be >= 1, got {k_partitions}")
    if equal_size and n % k_partitions != 0:
        raise ValueError(f"equal_size partitioning needs the item count to divide: {n} items, "
                         f"{k_partitions} partitions ({n} % {k_partitions} = {n % k_partitions})")
    capacity = n // k_partitions if equal_size else n
    # heap of (current sum, item count, partition id): the lightest partition with room comes first
    heap = [(0, 0, p) for p in range(k_partitions)]
    heapq.heapify(heap)
    groups: list[list[int]] = [[] for _ in range(k_partitions)]
    # longest first; ties broken by index so the result is deterministic
    for idx in sorted(range(n), key=lambda i: (-lens[i], i)):
        total, count, pid = heapq.heappop(heap)
        groups[pid].append(idx)
        if count + 1 < capacity:  # a full partition leaves the heap
            heapq.heappush(heap, (total + lens[idx], count + 1, pid))
    for g in groups:
        g.sort()
    groups.sort(key=lambda g: (g[0] if g else n, len(g)))
    return groups


def partition_sums(lengths: Sequence[int], groups: Sequence[Sequence[int]]) -> list[int]:
    """Sum of ``lengths`` in each group (for logging and checks)."""
    return [sum(int(lengths[i]) for i in g) for g in groups]


def token_budget_partitions(lengths: Sequence[int], max_tokens: int, min_partitions: int = 1) -> list[list[int]]:
    """Fewest balanced groups whose token sums each stay within ``max_tokens``.

    Starts from ``ceil(sum / max_tokens)`` groups and adds one until every group fits. A single
    sequence longer than the budget cannot be placed and raises (raise the budget, e.g.
    ``ppo_max_token_len_per_gpu`` >= prompt + response length). Empty groups are dropped.
    """
    lens = _as_lengths(lengths)
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if not lens:
        return []
    _fits_budget(lens, max_tokens)
    k = max(math.ceil(sum(lens) / max_tokens), min_partitions, 1)
    while True:
        groups = balanced_partitions(lens, k)
        if all(s <= max_tokens for s in partition_sums(lens, groups)):
            return [g for g in groups if g]
        k += 1


def _greedy_runs(lens: list[int], order: Sequence[int], cap: int) -> list[list[int]]:
    runs: list[list[int]] = [[]]
    total = 0
    for i in order:
        if runs[-1] and total + lens[i] > cap:
            runs.append([])
            total = 0
        runs[-1].append(i)
        total += lens[i]
    return runs


def contiguous_budget_partitions(lengths: Sequence[int], max_tokens: int, order: Sequence[int]) -> list[list[int]]:
    """Split ``order`` (item indices) into the fewest consecutive runs whose token sums stay within
    ``max_tokens``, as even as that count allows (the smallest cap that still gives that count).

    Each run's indices are returned sorted ascending, runs in ``order``'s order.
    """
    lens = _as_lengths(lengths)
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if sorted(order) != list(range(len(lens))):
        raise ValueError(f"order must be a permutation of the {len(lens)} item indices")
    if not lens:
        return []
    longest = _fits_budget(lens, max_tokens)
    fewest = len(_greedy_runs(lens, order, max_tokens))
    # greedy filling is optimal for a fixed cap, so binary-search the smallest cap that keeps `fewest` runs
    lo, hi = max(longest, math.ceil(sum(lens) / fewest)), max_tokens
    while lo < hi:
        mid = (lo + hi) // 2
        if len(_greedy_runs(lens, order, mid)) <= fewest:
            hi = mid
        else:
            lo = mid + 1
    return [sorted(run) for run in _greedy_runs(lens, order, lo)]
