"""Padding removal in the actor's passes (use_remove_padding): log-probs and gradients of padded,
length-sorted micro-batches equal those of every sequence run alone with no padding at all."""

from __future__ import annotations

import pytest
import torch

from relift.models.tiny import build_tiny_tokenizer, make_tiny_model
from relift.protocol import DataProto
from workers.actor import DataParallelActor
from workers.actor_batches import micro_batch_groups

P, R = 6, 7


def _batch(seed: int = 0) -> DataProto:
    """10 rows: left-padded prompts of 2..6 tokens, right-padded responses of 1..7 tokens."""
    g = torch.Generator().manual_seed(seed)
    rows = 10
    p_len = torch.tensor([2, 6, 3, 6, 4, 5, 2, 6, 3, 5])
    r_len = torch.tensor([7, 1, 3, 5, 2, 7, 4, 6, 1, 3])
    ids = torch.randint(0, 255, (rows, P + R), generator=g)
    cols = torch.arange(P + R)
    mask = torch.cat([cols[None, :P] >= (P - p_len)[:, None], cols[None, :R] < r_len[:, None]], dim=1).long()
    ids = ids * mask
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return DataProto.from_dict(
        {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "responses": ids[:, P:]},
        meta_info={"temperature": 0.9},
    )


@pytest.fixture(scope="module")
def model():
    return make_tiny_model(
        build_tiny_tokenizer(),
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=64,
        tie_word_embeddings=False,
        seed=0,
    )


def _log_probs_and_grads(model, data: DataProto, groups: list[list[int]], weights: torch.Tensor):
    actor = DataParallelActor(model, None, {"ppo_micro_batch_size_per_gpu": 4})
    model.zero_grad(set_to_none=True)
    out = torch.zeros(len(data), R)
    for g in groups:
        lp, _ = actor._forward_micro_batch(data[g].batch, 0.9, False)
        (lp * weights[g]).sum().backward()
        out[g] = lp.detach()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


def test_sorted_groups_are_fixed_size_runs_of_similar_length():
    data = _batch()
    lengths = data.batch["attention_mask"].sum(-1).tolist()  # [9, 7, 6, 11, 6, 12, 6, 12, 4, 8]
    groups = micro_batch_groups(data, False, 4, None, sort_by_length=True)
    # order by (length, index): 8(4) 2(6) 4(6) 6(6) | 1(7) 9(8) 0(9) 3(11) | 5(12) 7(12)
    assert groups == [[2, 4, 6, 8], [0, 1, 3, 9], [5, 7]]
    assert sorted(i for g in groups for i in g) == list(range(10))
    assert [lengths[i] for i in (8, 2, 4, 6)] == [4, 6, 6, 6]
    assert micro_batch_groups(data, False, 4, None) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert micro_batch_groups(data, False, 16, None, sort_by_length=True) == [list(range(10))]


def test_padded_micro_batches_match_unpadded_rows_in_log_probs_and_gradients(model):
    data = _batch()
    weights = torch.randn(len(data), R, generator=torch.Generator().manual_seed(1))
    alone, alone_grads = _log_probs_and_grads(model, data, [[i] for i in range(len(data))], weights)
    for sort in (False, True):
        groups = micro_batch_groups(data, False, 4, None, sort_by_length=sort)
        lp, grads = _log_probs_and_grads(model, data, groups, weights)
        torch.testing.assert_close(lp, alone, rtol=1e-5, atol=1e-5)
        assert grads.keys() == alone_grads.keys()
        for name in grads:
            torch.testing.assert_close(grads[name], alone_grads[name], rtol=1e-4, atol=1e-5, msg=name)
    resp_mask = data.batch["attention_mask"][:, P:]
    assert bool((alone[resp_mask == 0] == 0).all()) and float(alone[resp_mask == 1].min()) < -1.0


def test_compute_log_prob_keeps_row_order_with_sorted_micro_batches(model):
    data = _batch()
    sorted_actor = DataParallelActor(model, None, {"ppo_micro_batch_size_per_gpu": 3})
    plain_actor = DataParallelActor(model, None, {"ppo_micro_batch_size_per_gpu": 3})
    plain_actor.sort_micro_batches = False
    a, _ = sorted_actor.compute_log_prob(data)
    b, _ = plain_actor.compute_log_prob(data)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
