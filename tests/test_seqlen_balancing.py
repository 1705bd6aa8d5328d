"""trainer.balance_batch's partitioner: equal row counts, near-equal tokens, a permutation."""

from __future__ import annotations

import random

import pytest

from relift.utils.seqlen_balancing import balance_permutation, balanced_partitions, partition_stats


def test_by_hand():
    # longest first: 10->p0, 9->p1, 2->p1 (11), 1->p0 (11)
    assert balanced_partitions([1, 10, 2, 9], 2) == [[0, 1], [2, 3]]
    assert balance_permutation([1, 10, 2, 9], 2) == [0, 1, 2, 3]
    # sampler order [10, 9, 1, 1] chunks to 19 | 2; balanced: 11 | 10
    assert balanced_partitions([10, 9, 1, 1], 2) == [[0, 3], [1, 2]]
    assert partition_stats([10, 9, 1, 1], 2) == {"global_seqlen/min": 2.0, "global_seqlen/max": 19.0,
                                                  "global_seqlen/minmax_diff": 17.0, "global_seqlen/mean": 10.5}
    order = balance_permutation([10, 9, 1, 1], 2)
    assert partition_stats([10, 9, 1, 1], 2, order, prefix="p")["p/minmax_diff"] == 1.0


def test_random_batches_are_permutations_of_equal_size_with_gap_below_the_longest_row():
    rng = random.Random(0)
    for _ in range(2000):
        k, size = rng.randint(1, 8), rng.randint(1, 8)
        lens = [rng.choice([rng.randint(1, 20), rng.randint(1, 4000)]) for _ in range(k * size)]
        parts = balanced_partitions(lens, k)
        assert all(len(p) == size for p in parts)
        assert sorted(i for p in parts for i in p) == list(range(k * size))
        sums = [sum(lens[i] for i in p) for p in parts]
        assert max(sums) - min(sums) <= max(lens)


def test_skewed_rollouts_balance_far_better_than_sampler_order():
    # GRPO-like: 8 prompts x 8 samples, four prompts hit the 4096 limit, four finish in ~300 tokens
    lens = [4096] * 32 + [300] * 32
    before = partition_stats(lens, 8)["global_seqlen/minmax_diff"]
    after = partition_stats(lens, 8, balance_permutation(lens, 8))["global_seqlen/minmax_diff"]
    assert before == 8 * (4096 - 300) and after == 0.0


@pytest.mark.parametrize("lens,k,match", [([1, 2, 3], 2, "equal size"), ([1, 2], 0, "k must be")])
def test_bad_input(lens, k, match):
    with pytest.raises(ValueError, match=match):
        balanced_partitions(lens, k)
