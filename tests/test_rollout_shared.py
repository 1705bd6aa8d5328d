"""The HF rollout reading the actor's weights in place (workers/rollout/shared.py): no copy, sees
every optimiser step, re-binds when the actor's storage is replaced."""

from __future__ import annotations

import pytest
import torch

from relift.models.tiny import build_tiny_tokenizer, make_tiny_model
from workers.rollout.shared import bind_shared_weights, can_share, local_weights


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def _pair(tokenizer, tie: bool):
    actor = make_tiny_model(
        tokenizer,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=64,
        tie_word_embeddings=tie,
        seed=0,
    )
    rollout = make_tiny_model(
        tokenizer,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=64,
        tie_word_embeddings=tie,
        seed=1,
    )  # other weights
    return actor, rollout


def _logits(module, ids):
    with torch.no_grad():
        return module(input_ids=ids).logits


@pytest.mark.parametrize("tie", [True, False])
def test_bound_rollout_shares_storage_and_follows_optimiser_steps(tokenizer, tie):
    actor, rollout = _pair(tokenizer, tie)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    assert not torch.allclose(_logits(actor, ids), _logits(rollout, ids))
    assert bind_shared_weights(actor, rollout) > 0
    for name, t in local_weights(actor).items():
        assert rollout.state_dict()[name].data_ptr() == t.data_ptr(), name
    assert all(not p.requires_grad for p in rollout.parameters())
    assert all(p.requires_grad for p in actor.parameters())
    torch.testing.assert_close(_logits(rollout, ids), _logits(actor, ids), rtol=0, atol=0)

    opt = torch.optim.SGD(actor.parameters(), lr=0.5)
    actor.train()
    actor(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    actor.eval()
    torch.testing.assert_close(_logits(rollout, ids), _logits(actor, ids), rtol=0, atol=0)
    assert bind_shared_weights(actor, rollout) == 0  # nothing stale: no work


def test_replaced_actor_storage_is_rebound(tokenizer):
    actor, rollout = _pair(tokenizer, tie=False)
    bind_shared_weights(actor, rollout)
    with torch.no_grad():
        new = actor.model.norm.weight.detach().clone() * 3
    actor.model.norm.weight = torch.nn.Parameter(new)  # a load that assigns instead of copying
    ids = torch.tensor([[7, 8, 9]])
    assert not torch.allclose(_logits(rollout, ids), _logits(actor, ids))
    assert bind_shared_weights(actor, rollout) == 1
    torch.testing.assert_close(_logits(rollout, ids), _logits(actor, ids), rtol=0, atol=0)


def test_mismatched_modules_raise_naming_the_weights(tokenizer):
    actor, _ = _pair(tokenizer, tie=False)
    other = make_tiny_model(
        tokenizer,
        hidden_size=32,
        num_layers=3,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=64,
        tie_word_embeddings=False,
        seed=0,
    )
    with pytest.raises(KeyError, match="model.layers.2"):
        bind_shared_weights(actor, other)


def test_sharing_needs_one_worker_same_dtype_and_device(tokenizer):
    actor, _ = _pair(tokenizer, tie=True)
    cpu = torch.device("cpu")
    assert can_share(actor, 1, torch.float32, cpu)
    assert not can_share(actor, 2, torch.float32, cpu)
    assert not can_share(actor, 1, torch.bfloat16, cpu)
    assert not can_share(actor, 1, torch.float32, torch.device("cuda"))
