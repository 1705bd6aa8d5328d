"""Balanced partitioning and token-budget micro-batches (relift.models.packing)."""

from __future__ import annotations

import itertools
import random

import pytest

from relift.models.packing import (
    balanced_partitions,
    contiguous_budget_partitions,
    partition_sums,
    token_budget_partitions,
)


def _flat(groups):
    return sorted(i for g in groups for i in g)


def _best_makespan(lengths, k):
    best = None
    for assign in itertools.product(range(k), repeat=len(lengths)):
        sums = [0] * k
        for i, p in enumerate(assign):
            sums[p] += lengths[i]
        best = max(sums) if best is None else min(best, max(sums))
    return best


def test_lpt_hand_example():
    # LPT: 8->A, 7->B, 6->B (13), 5->A (13), 4->A (tie, lower id) => A={8,5,4}=17, B={7,6}=13
    groups = balanced_partitions([8, 7, 6, 5, 4], 2)
    assert groups == [[0, 3, 4], [1, 2]]
    assert partition_sums([8, 7, 6, 5, 4], groups) == [17, 13]


def test_balanced_partitions_cover_every_item_once_and_are_near_optimal():
    rng = random.Random(0)
    for _ in range(30):
        n, k = rng.randint(1, 8), rng.randint(1, 3)
        lengths = [rng.randint(1, 50) for _ in range(n)]
        groups = balanced_partitions(lengths, k)
        assert len(groups) == k
        assert _flat(groups) == list(range(n))
        # LPT guarantee: makespan <= 4/3 of the optimum
        assert max(partition_sums(lengths, groups)) <= 4 / 3 * _best_makespan(lengths, k) + 1e-9


def test_equal_size_gives_equal_counts_and_balances():
    lengths = [100, 1, 1, 1, 90, 2, 3, 80]
    groups = balanced_partitions(lengths, 4, equal_size=True)
    assert [len(g) for g in groups] == [2, 2, 2, 2]
    assert _flat(groups) == list(range(8))
    # the four long sequences end up in four different groups
    long_ones = {0, 4, 7}
    assert all(len(long_ones & set(g)) <= 1 for g in groups)
    with pytest.raises(ValueError, match="divide"):
        balanced_partitions(lengths, 3, equal_size=True)


def test_balanced_partitions_deterministic_and_validates():
    lengths = [5, 5, 5, 5, 3, 3]
    assert balanced_partitions(lengths, 3) == balanced_partitions(list(lengths), 3)
    with pytest.raises(ValueError, match="k_partitions"):
        balanced_partitions(lengths, 0)
    with pytest.raises(ValueError, match=">= 0"):
        balanced_partitions([3, -1], 1)


def test_token_budget_respects_budget_with_fewest_groups():
    lengths = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]  # total 55
    groups = token_budget_partitions(lengths, max_tokens=20)
    sums = partition_sums(lengths, groups)
    assert all(s <= 20 for s in sums)
    assert _flat(groups) == list(range(10))
    assert len(groups) == 3  # ceil(55 / 20) = 3 is reachable: e.g. 19 / 18 / 18


def test_token_budget_adds_groups_when_balance_fails():
    # sum 30 fits 2 x 15 in theory, but items of 8 cannot pair below 16: needs 3 groups
    lengths = [8, 8, 8, 6]
    groups = token_budget_partitions(lengths, max_tokens=15)
    assert all(s <= 15 for s in partition_sums(lengths, groups))
    assert len(groups) == 3


def test_token_budget_errors_and_edge_cases():
    with pytest.raises(ValueError, match="ppo_max_token_len_per_gpu"):
        token_budget_partitions([5, 40], max_tokens=30)
    with pytest.raises(ValueError, match="positive"):
        token_budget_partitions([5], max_tokens=0)
    assert token_budget_partitions([], max_tokens=10) == []
    assert token_budget_partitions([3, 3], max_tokens=100) == [[0, 1]]
    # min_partitions forces a split even when everything fits
    assert len(token_budget_partitions([3, 3, 3, 3], max_tokens=100, min_partitions=2)) == 2


def test_contiguous_runs_fewest_then_even_by_hand():
    # order 0..5, lengths 4 4 4 4 4 4, budget 10: greedy needs 3 runs of 2; a cap of 8 keeps 3 runs
    assert contiguous_budget_partitions([4] * 6, 10, list(range(6))) == [[0, 1], [2, 3], [4, 5]]
    # lengths 5 1 1 1 1 5 (sum 14), budget 13: filling greedily gives 9 / 5; two runs are the fewest, and
    # the smallest cap that keeps two is 7: 5+1+1 / 1+1+5
    assert contiguous_budget_partitions([5, 1, 1, 1, 1, 5], 13, list(range(6))) == [[0, 1, 2], [3, 4, 5]]
    # the order decides the runs, not the indices
    assert contiguous_budget_partitions([4, 4, 4, 4], 8, [3, 0, 2, 1]) == [[0, 3], [1, 2]]


def test_contiguous_runs_follow_the_order_and_respect_the_budget():
    rng = random.Random(0)
    for _ in range(50):
        lengths = [rng.randint(1, 30) for _ in range(rng.randint(1, 40))]
        budget = rng.randint(30, 120)
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        runs = contiguous_budget_partitions(lengths, budget, order)
        assert _flat(runs) == list(range(len(lengths)))
        assert all(s <= budget for s in partition_sums(lengths, runs))
        # each run is a consecutive stretch of the order
        pos = {i: k for k, i in enumerate(order)}
        flat_in_order = [i for run in runs for i in sorted(run, key=pos.get)]
        assert flat_in_order == order
        # no fewer consecutive runs exist: greedy filling of the order is optimal for a fixed cap
        greedy, total = 1, 0
        for i in order:
            if total + lengths[i] > budget:
                greedy, total = greedy + 1, 0
            total += lengths[i]
        assert len(runs) == greedy


def test_contiguous_runs_errors():
    with pytest.raises(ValueError, match="ppo_max_token_len_per_gpu"):
        contiguous_budget_partitions([5, 40], 30, [0, 1])
    with pytest.raises(ValueError, match="permutation"):
        contiguous_budget_partitions([5, 4], 30, [0, 0])
    with pytest.raises(ValueError, match="positive"):
        contiguous_budget_partitions([5], 0, [0])
    assert contiguous_budget_partitions([], 10, []) == []
