"""Packed passes (workers/packed_forward.py): all real tokens of a micro-batch as one row, position
ids restarting per sequence. Log-probs, entropies and gradients equal those of every sequence run
alone with no padding; the model sees exactly the real tokens; the worker packs only where a
flash-attention kernel takes packed rows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from test_remove_padding import P, R, _batch  # the same 10 rows of mixed lengths

from relift.models.tiny import build_tiny_tokenizer, make_tiny_model
from workers.actor import DataParallelActor
from workers.fsdp_worker import ActorRolloutRefWorker
from workers.packed_forward import packed_log_probs


@pytest.fixture(scope="module")
def model():
    return make_tiny_model(build_tiny_tokenizer(), hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                           intermediate_size=64, tie_word_embeddings=False, seed=0)


def _run(model, data, groups, weights, pack: bool):
    actor = DataParallelActor(model, None, {"ppo_micro_batch_size_per_gpu": 4})
    actor.pack_sequences = pack
    model.zero_grad(set_to_none=True)
    out, ent = torch.zeros(len(data), R), torch.zeros(len(data), R)
    for g in groups:
        lp, e = actor._forward_micro_batch(data[g].batch, 0.9, True)
        (lp * weights[g] + e * weights[g].flip(-1)).sum().backward()
        out[g], ent[g] = lp.detach(), e.detach()
    return out, ent, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_packed_micro_batches_match_rows_run_alone(model):
    data = _batch()
    weights = torch.randn(len(data), R, generator=torch.Generator().manual_seed(1))
    alone, alone_ent, alone_grads = _run(model, data, [[i] for i in range(len(data))], weights, pack=False)
    for groups in ([list(range(10))], [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]], [[9, 2, 5], [0, 8, 1, 3, 7, 6, 4]]):
        lp, ent, grads = _run(model, data, groups, weights, pack=True)
        torch.testing.assert_close(lp, alone, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ent, alone_ent, rtol=1e-5, atol=1e-5)
        assert grads.keys() == alone_grads.keys()
        for name in grads:
            torch.testing.assert_close(grads[name], alone_grads[name], rtol=1e-4, atol=1e-5, msg=name)
    resp_mask = data.batch["attention_mask"][:, P:]
    assert bool((lp[resp_mask == 0] == 0).all()) and bool((ent[resp_mask == 0] == 0).all())
    assert float(lp[resp_mask == 1].min()) < -1.0


def test_the_model_sees_only_real_tokens_and_keeps_only_response_logits(model):
    data = _batch()
    seen = {}

    def spy(module, args, kwargs):
        seen.update({k: kwargs[k] for k in ("input_ids", "position_ids", "attention_mask", "logits_to_keep")})

    handle = model.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        b = data.batch
        packed_log_probs(model, b["input_ids"], b["attention_mask"], b["position_ids"], P, b["responses"],
                         temperature=1.0, chunk_size=16, with_entropy=False)
    finally:
        handle.remove()
    mask = data.batch["attention_mask"]
    assert seen["input_ids"].shape == (1, int(mask.sum()))
    assert seen["attention_mask"] is None
    lengths = mask.sum(-1).tolist()
    want_pos = torch.cat([torch.arange(n) for n in lengths])
    assert torch.equal(seen["position_ids"][0], want_pos)
    assert torch.equal(seen["input_ids"][0], data.batch["input_ids"][mask.bool()])
    assert len(seen["logits_to_keep"]) == int(mask[:, P:].sum())  # one logit per response token


def test_rows_whose_positions_do_not_count_up_are_refused(model):
    b = _batch().batch
    pos = b["position_ids"].clone()
    pos[3, P + 1 :] += 5  # a gap inside row 3's response (5 real tokens)
    with pytest.raises(ValueError, match="position ids must count"):
        packed_log_probs(model, b["input_ids"], b["attention_mask"], pos, P, b["responses"],
                         temperature=1.0, chunk_size=16, with_entropy=False)


@pytest.mark.parametrize("attn,remove_padding,packs", [("flash_attention_2", True, True), ("sdpa", True, False),
                                                       (None, True, False), ("flash_attention_2", False, False)])
def test_the_worker_packs_only_where_a_flash_kernel_takes_packed_rows(attn, remove_padding, packs):
    actor = DataParallelActor(torch.nn.Linear(1, 1), None, {})
    spec = SimpleNamespace(model=SimpleNamespace(use_remove_padding=remove_padding, attn_implementation=attn,
                                                 share_prompt_prefix=True, lean_forward=False))
    ActorRolloutRefWorker._set_padding_handling(actor, spec)
    assert actor.pack_sequences is packs
    assert actor.share_prompts is not packs  # packed rows run every prompt with its own response
    assert actor.sort_micro_batches is remove_padding
