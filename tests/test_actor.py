"""The actor core (workers/actor.py) on a tiny float32 Qwen2: log-probs, accumulation, updates."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from relift.algorithms.losses import agg_loss, compute_policy_loss, kl_penalty
from relift.models.tiny import build_tiny_tokenizer, make_tiny_model
from relift.protocol import DataProto
from tests.proc_utils import gloo_rank
from workers.actor import ActorConfig, DataParallelActor

P, R = 6, 8


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture()
def model(tokenizer):
    return make_tiny_model(tokenizer, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                           intermediate_size=64, tie_word_embeddings=False, seed=0)


def make_rows(n: int, seed: int = 0, pad_id: int = 256, prompt_width: int = P, resp_width: int = R,
              prefix: str = "") -> dict[str, torch.Tensor]:
    """Left-padded prompts + right-padded responses of varied lengths, in the rollout layout."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 256, (n, prompt_width + resp_width), generator=g)
    mask = torch.ones_like(ids)
    for i in range(n):
        p_len = int(torch.randint(2, prompt_width + 1, (1,), generator=g))
        r_len = int(torch.randint(1, resp_width + 1, (1,), generator=g))
        mask[i, :prompt_width - p_len] = 0
        mask[i, prompt_width + r_len:] = 0
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_id))
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    rows = {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "responses": ids[:, prompt_width:],
            "response_mask": mask[:, prompt_width:]}
    return {f"{prefix}{k}": v for k, v in rows.items()}


def reference_log_probs(model, rows, temperature=1.0):
    """Plain full forward of the whole batch (no trimming, no chunking)."""
    out = model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"],
                position_ids=rows["position_ids"]).logits
    p = rows["input_ids"].shape[1] - rows["responses"].shape[1]
    logits = out[:, p - 1:-1].float() / temperature
    logp = torch.log_softmax(logits, -1)
    lp = logp.gather(-1, rows["responses"].unsqueeze(-1)).squeeze(-1)
    ent = -(logp.exp() * logp).sum(-1)
    m = rows["response_mask"].float()
    return lp * m, ent * m


def rl_batch(model, n=8, seed=0, temperature=1.0):
    rows = make_rows(n, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        old, _ = reference_log_probs(model, rows, temperature)
    # behaviour policy slightly off so the ratio is not exactly 1 and clipping can happen
    rows["old_log_probs"] = old + 0.3 * torch.randn(old.shape, generator=g) * rows["response_mask"]
    scores = torch.randn(n, generator=g)
    rows["advantages"] = scores.unsqueeze(-1) * rows["response_mask"]
    rows["ref_log_prob"] = old + 0.1 * torch.randn(old.shape, generator=g) * rows["response_mask"]
    return DataProto.from_dict(rows, meta_info={"temperature": temperature})


def base_config(**kw):
    cfg = {"ppo_mini_batch_size": 8, "ppo_micro_batch_size_per_gpu": 8, "ppo_epochs": 1, "clip_ratio": 0.2,
           "loss_agg_mode": "token-mean", "entropy_coeff": 0.0, "grad_clip": None, "logits_chunk_size": 5}
    cfg.update(kw)
    return cfg


# ------------------------------------------------------------------------------------- log-probs


def test_log_probs_match_full_forward_across_micro_batch_settings(model):
    torch.manual_seed(0)
    data = DataProto.from_dict(make_rows(7, seed=3), meta_info={"temperature": 0.7})
    with torch.no_grad():
        ref_lp, ref_ent = reference_log_probs(model, data.batch, temperature=0.7)
    results = []
    for meta in ({"micro_batch_size": 1}, {"micro_batch_size": 3}, {"micro_batch_size": 7},
                 {"use_dynamic_bsz": True, "max_token_len": 14}, {"use_dynamic_bsz": True, "max_token_len": 100}):
        actor = DataParallelActor(model, None, base_config())
        d = DataProto.from_dict(dict(data.batch.items()), meta_info={"temperature": 0.7, **meta})
        lp, ent = actor.compute_log_prob(d, calculate_entropy=True)
        torch.testing.assert_close(lp, ref_lp, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ent, ref_ent, atol=1e-5, rtol=1e-5)
        results.append(lp)
    # zero exactly outside the response mask, whatever the grouping
    assert bool((results[0][data.batch["response_mask"] == 0] == 0).all())
    assert torch.isfinite(results[0]).all()


def test_temperature_changes_log_probs_and_defaults_to_one(model):
    data = DataProto.from_dict(make_rows(4, seed=5))
    actor = DataParallelActor(model, None, base_config())
    lp_default, ent = actor.compute_log_prob(data)
    assert ent is None
    with torch.no_grad():
        ref1, _ = reference_log_probs(model, data.batch, 1.0)
        ref2, _ = reference_log_probs(model, data.batch, 2.0)
    torch.testing.assert_close(lp_default, ref1, atol=1e-5, rtol=1e-5)
    data.meta_info["temperature"] = 2.0
    torch.testing.assert_close(actor.compute_log_prob(data)[0], ref2, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ref1, ref2)


def test_missing_keys_and_bad_config_raise_clearly(model):
    actor = DataParallelActor(model, None, base_config())
    rows = make_rows(2)
    rows.pop("position_ids")
    with pytest.raises(KeyError, match="position_ids"):
        actor.compute_log_prob(DataProto.from_dict(rows))
    with pytest.raises(RuntimeError, match="optimizer"):
        actor.update_policy(rl_batch(model, n=2))
    with pytest.raises(ValueError, match="loss_agg_mode"):
        ActorConfig.from_any({"loss_agg_mode": "mean"})
    with pytest.raises(ValueError, match="clip_ratio_c"):
        ActorConfig.from_any({"clip_ratio_c": 0.5})
    cfg = ActorConfig.from_any({"ppo_micro_batch_size_per_gpu": None})
    with pytest.raises(ValueError, match="ppo_micro_batch_size_per_gpu"):
        cfg.train_micro_batching()
    # unknown keys (the worker passes the whole actor section) are ignored; None keeps defaults
    cfg = ActorConfig.from_any({"optim": {"lr": 1e-6}, "clip_ratio_high": 0.28, "entropy_coeff": None})
    assert (cfg.clip_ratio_low, cfg.clip_ratio_high, cfg.entropy_coeff) == (0.2, 0.28, 0.0)


# ------------------------------------------------------------------------------------- policy update


def independent_grad(model, data, cfg, temperature=1.0):
    """Gradient of the full mini-batch loss computed directly (no micro-batches, no actor code)."""
    model = copy.deepcopy(model)
    b = data.batch
    lp, ent = reference_log_probs(model, b, temperature)
    mask = b["response_mask"].float()
    loss, _ = compute_policy_loss(b["old_log_probs"], lp, b["advantages"], mask, clip_ratio_low=0.2,
                                  clip_ratio_high=0.2, clip_ratio_c=3.0, loss_agg_mode=cfg["loss_agg_mode"],
                                  clip=not cfg.get("loss_remove_clip", False))
    if cfg.get("entropy_coeff", 0):
        loss = loss - cfg["entropy_coeff"] * agg_loss(ent, mask, cfg["loss_agg_mode"])
    if cfg.get("use_kl_loss"):
        kl = kl_penalty(lp, b["ref_log_prob"], cfg.get("kl_loss_type", "low_var_kl"))
        loss = loss + cfg["kl_loss_coef"] * agg_loss(kl, mask, cfg["loss_agg_mode"])
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_accumulation_gives_the_full_mini_batch_gradient(model, mode):
    torch.manual_seed(0)
    extra = {"entropy_coeff": 0.01, "use_kl_loss": True, "kl_loss_coef": 0.1} if mode == "token-mean" else {}
    data = rl_batch(model, n=8, seed=1, temperature=0.9)
    expected = independent_grad(model, data, {"loss_agg_mode": mode, **extra}, temperature=0.9)
    for micro in ({"ppo_micro_batch_size_per_gpu": 8}, {"ppo_micro_batch_size_per_gpu": 2},
                  {"use_dynamic_bsz": True, "ppo_max_token_len_per_gpu": 16}):
        m = copy.deepcopy(model)
        before = {n: p.detach().clone() for n, p in m.named_parameters()}
        opt = torch.optim.SGD(m.parameters(), lr=1.0)
        actor = DataParallelActor(m, opt, base_config(loss_agg_mode=mode, **extra, **micro))
        metrics = actor.update_policy(data)
        assert metrics["actor/skipped_steps"] == 0
        # SGD with lr 1: the parameter change IS minus the accumulated gradient
        for n, p in m.named_parameters():
            torch.testing.assert_close(before[n] - p.detach(), expected[n], atol=2e-6, rtol=1e-4)
    assert any(float(g.abs().max()) > 1e-4 for g in expected.values())


def test_on_policy_update_needs_no_old_log_probs(model):
    data = rl_batch(model, n=4, seed=3, temperature=0.8)
    actor_ref = DataParallelActor(model, None, base_config(ppo_micro_batch_size_per_gpu=2))
    data.batch["old_log_probs"], _ = actor_ref.compute_log_prob(data)
    params = []
    for with_old in (True, False):
        m = copy.deepcopy(model)
        d = data if with_old else DataProto.from_dict(
            {k: v for k, v in data.batch.items() if k != "old_log_probs"}, meta_info=data.meta_info)
        metrics = DataParallelActor(m, torch.optim.SGD(m.parameters(), lr=1.0),
                                    base_config(ppo_micro_batch_size_per_gpu=2)).update_policy(d)
        assert abs(metrics["actor/ppo_kl"][0]) < 1e-6 and metrics["actor/pg_clipfrac"] == [0.0]
        params.append([p.detach() for p in m.parameters()])
    for a, b in zip(*params):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # more than one optimiser step: the old policy differs from the current one, so it is required
    actor = DataParallelActor(model, torch.optim.SGD(model.parameters(), lr=1.0),
                              base_config(ppo_mini_batch_size=2, ppo_micro_batch_size_per_gpu=2))
    with pytest.raises(KeyError, match="old_log_probs"):
        actor.update_policy(d)


def test_update_policy_metrics_and_step_count(model):
    data = rl_batch(model, n=8, seed=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    actor = DataParallelActor(model, opt, base_config(ppo_mini_batch_size=4, ppo_micro_batch_size_per_gpu=2,
                                                      ppo_epochs=2, shuffle=True, entropy_coeff=0.001,
                                                      use_kl_loss=True, kl_loss_coef=0.05, grad_clip=1.0))
    metrics = actor.update_policy(data)
    for name in ("actor/pg_loss", "actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower",
                 "actor/grad_norm", "actor/lr", "actor/entropy", "actor/kl_loss"):
        assert len(metrics[name]) == 4, name  # 2 epochs x 2 mini-batches = 4 optimiser steps
        assert all(math.isfinite(v) for v in metrics[name]), name
    assert metrics["actor/kl_coef"] == 0.05 and metrics["actor/skipped_steps"] == 0.0
    assert all(0.0 <= v <= 1.0 for v in metrics["actor/pg_clipfrac"])
    assert metrics["actor/lr"] == [1e-3] * 4
    assert all(v > 0 for v in metrics["actor/entropy"])


def test_no_clip_surrogate_differs_from_clipped(model):
    data = rl_batch(model, n=4, seed=4)
    deltas = []
    for remove in (False, True):
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=1.0)
        actor = DataParallelActor(m, opt, base_config(loss_remove_clip=remove))
        metrics = actor.update_policy(data)
        expected = independent_grad(model, data, {"loss_agg_mode": "token-mean", "loss_remove_clip": remove})
        name = "model.layers.0.mlp.up_proj.weight"
        delta = dict(model.named_parameters())[name].detach() - dict(m.named_parameters())[name].detach()
        torch.testing.assert_close(delta, expected[name], atol=2e-6, rtol=1e-4)
        deltas.append(delta)
        if remove:
            assert metrics["actor/pg_clipfrac"] == [0.0]
    assert not torch.allclose(deltas[0], deltas[1])


def test_non_finite_grad_norm_skips_the_step(model):
    data = rl_batch(model, n=4, seed=6)
    data.batch["advantages"][0, 0] = float("nan")
    data.batch["response_mask"][0, 0] = 1
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    actor = DataParallelActor(model, opt, base_config(ppo_mini_batch_size=2, ppo_micro_batch_size_per_gpu=1,
                                                      grad_clip=1.0))
    metrics = actor.update_policy(data[0:2])
    assert metrics["actor/skipped_steps"] == 1.0
    assert not math.isfinite(metrics["actor/grad_norm"][0])
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n]), n
        assert p.grad is None
    # the next, clean batch steps normally
    metrics = actor.update_policy(data[2:4])
    assert metrics["actor/skipped_steps"] == 0.0
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters())


def test_grad_clip_bounds_the_update(model):
    data = rl_batch(model, n=4, seed=7)
    expected = independent_grad(model, data, {"loss_agg_mode": "token-mean"})
    full_norm = torch.sqrt(sum((g ** 2).sum() for g in expected.values())).item()
    m = copy.deepcopy(model)
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    clip = full_norm / 4
    metrics = DataParallelActor(m, opt, base_config(grad_clip=clip)).update_policy(data)
    assert metrics["actor/grad_norm"][0] == pytest.approx(full_norm, rel=1e-4)
    delta_norm = torch.sqrt(sum(((p0.detach() - p.detach()) ** 2).sum()
                                for p0, p in zip(model.parameters(), m.parameters()))).item()
    assert delta_norm == pytest.approx(clip, rel=1e-3)


# ------------------------------------------------------------------------------------- SFT


def nll(model, data):
    with torch.no_grad():
        lp, _ = reference_log_probs(model, data.batch)
    m = data.batch["response_mask"].float()
    return float(-(lp * m).sum() / m.sum())


def test_sft_update_lowers_nll_and_leaves_lr_alone(model):
    torch.manual_seed(0)
    data = DataProto.from_dict(make_rows(6, seed=8))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    actor = DataParallelActor(model, opt, base_config(ppo_micro_batch_size_per_gpu=4))
    start = nll(model, data)
    for _ in range(5):
        before_step = nll(model, data)
        metrics = actor.update_sft(data, entropy_coeff=0.001, lr=1e-2)
    end = nll(model, data)
    assert end < start - 0.5, (start, end)
    assert metrics["sft/lr"] == [1e-2] and opt.param_groups[0]["lr"] == 1e-4  # override restored
    assert metrics["sft/skipped_steps"] == 0.0
    assert metrics["sft/num_tokens"] == [float(data.batch["response_mask"].sum())]
    # the reported loss is the token-mean NLL of the batch under the weights before the step
    assert metrics["sft/loss"][0] == pytest.approx(before_step, abs=1e-5)
    assert metrics["sft/entropy"][0] > 0


def test_sft_micro_batches_match_one_batch(model):
    data = DataProto.from_dict(make_rows(6, seed=9))
    params = []
    for micro in (6, 1):
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        DataParallelActor(m, opt, base_config(ppo_micro_batch_size_per_gpu=micro)).update_sft(data)
        params.append([p.detach() for p in m.parameters()])
    for a, b in zip(*params):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------- pairs


def pair_batch(n=4, seed=10):
    chosen = make_rows(n, seed, prefix="chosen_")
    rejected = make_rows(n, seed + 100, prompt_width=P + 2, resp_width=R - 3, prefix="rejected_")
    return DataProto.from_dict({**chosen, **rejected})


def mean_logps(model, data, side):
    rows = {k[len(side) + 1:]: v for k, v in data.batch.items() if k.startswith(side + "_")}
    with torch.no_grad():
        lp, _ = reference_log_probs(model, rows)
    m = rows["response_mask"].float()
    return lp, (lp * m).sum(-1) / m.sum(-1)


def test_pair_log_probs_single_forward_match_separate_passes(model):
    data = pair_batch()
    actor = DataParallelActor(model, None, base_config(ppo_micro_batch_size_per_gpu=3))
    chosen, rejected = actor.compute_pair_log_probs(data)
    torch.testing.assert_close(chosen, mean_logps(model, data, "chosen")[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rejected, mean_logps(model, data, "rejected")[0], atol=1e-5, rtol=1e-5)


def test_redi_raises_chosen_and_lowers_rejected(model):
    data = pair_batch()
    _, c0 = mean_logps(model, data, "chosen")
    _, r0 = mean_logps(model, data, "rejected")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    actor = DataParallelActor(model, opt, base_config(ppo_micro_batch_size_per_gpu=2))
    for _ in range(3):
        metrics = actor.update_pairs(data, "redi", alpha=0.8)
    _, c1 = mean_logps(model, data, "chosen")
    _, r1 = mean_logps(model, data, "rejected")
    assert c1.mean() > c0.mean() + 0.05 and r1.mean() < r0.mean() - 0.05
    assert {"redi/loss", "redi/grad_norm", "redi/logps/chosen", "redi/margins"} <= set(metrics)


def test_dpo_and_simpo_raise_the_margin(model):
    data = pair_batch(seed=11)
    ref_actor = DataParallelActor(copy.deepcopy(model), None, base_config())
    ref_c, ref_r = ref_actor.compute_pair_log_probs(data)
    for loss_type, kwargs in (("dpo", {"beta": 0.5}), ("simpo", {"beta": 2.0, "gamma": 0.5})):
        m = copy.deepcopy(model)
        d = DataProto.from_dict({**dict(data.batch.items()), "ref_chosen_log_prob": ref_c,
                                 "ref_rejected_log_prob": ref_r})
        _, c0 = mean_logps(m, d, "chosen")
        _, r0 = mean_logps(m, d, "rejected")
        opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
        actor = DataParallelActor(m, opt, base_config(ppo_micro_batch_size_per_gpu=4))
        first = actor.update_pairs(d, loss_type, **kwargs)
        for _ in range(2):
            last = actor.update_pairs(d, loss_type, **kwargs)
        _, c1 = mean_logps(m, d, "chosen")
        _, r1 = mean_logps(m, d, "rejected")
        assert (c1 - r1).mean() > (c0 - r0).mean() + 0.05, loss_type
        assert last[f"{loss_type}/loss"][0] < first[f"{loss_type}/loss"][0], loss_type
    # DPO at the reference point: the policy equals the reference, so the loss is log 2
    d = DataProto.from_dict({**dict(data.batch.items()), "ref_chosen_log_prob": ref_c,
                             "ref_rejected_log_prob": ref_r})
    m = copy.deepcopy(model)
    metrics = DataParallelActor(m, torch.optim.SGD(m.parameters(), lr=0.0), base_config()).update_pairs(d, "dpo")
    assert metrics["dpo/loss"][0] == pytest.approx(math.log(2), abs=1e-5)


def test_pair_accumulation_matches_one_batch(model):
    data = pair_batch(n=4, seed=12)
    params = []
    for micro in ({"ppo_micro_batch_size_per_gpu": 4}, {"ppo_micro_batch_size_per_gpu": 1},
                  {"use_dynamic_bsz": True, "ppo_max_token_len_per_gpu": 30}):
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=1.0)
        DataParallelActor(m, opt, base_config(**micro)).update_pairs(data, "simpo")
        params.append([p.detach() for p in m.parameters()])
    for other in params[1:]:
        for a, b in zip(params[0], other):
            torch.testing.assert_close(a, b, atol=2e-6, rtol=1e-5)


def test_pair_errors(model):
    actor = DataParallelActor(model, torch.optim.SGD(model.parameters(), lr=0.1), base_config())
    data = pair_batch(n=2)
    with pytest.raises(ValueError, match="loss_type"):
        actor.update_pairs(data, "ipo")
    with pytest.raises(KeyError, match="ref_chosen_log_prob"):
        actor.update_pairs(data, "dpo")


# ------------------------------------------------------------------------------------- FSDP2


def _fsdp_rank(rank: int, world: int, port: int, out_path: str) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard

    with gloo_rank(rank, world, port):
        model = make_tiny_model(build_tiny_tokenizer(), hidden_size=32, num_layers=2, intermediate_size=64,
                                tie_word_embeddings=False, seed=0)
        data = rl_batch(model, n=8, seed=1)
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        actor = DataParallelActor(model, opt, base_config(loss_agg_mode="seq-mean-token-mean", ppo_mini_batch_size=4,
                                                          ppo_micro_batch_size_per_gpu=2, grad_clip=100.0))
        metrics = actor.update_policy(data[rank * 4:(rank + 1) * 4])
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            torch.save((metrics, state), out_path)


@pytest.mark.slow
def test_fsdp2_sharded_update_equals_single_process(model, tmp_path):
    """Two gloo ranks with 4 rows each under fully_shard == one process with all 8 rows
    (seq-mean mode, equal rows per rank): DTensor grad norm, logits_to_keep through the wrapper."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out_path = str(tmp_path / "rank0.pt")
    mp.start_processes(_fsdp_rank, args=(2, port, out_path), nprocs=2, join=True, start_method="spawn")
    fsdp_metrics, fsdp_state = torch.load(out_path)
    data = rl_batch(model, n=8, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    metrics = DataParallelActor(model, opt, base_config(loss_agg_mode="seq-mean-token-mean", ppo_mini_batch_size=8,
                                                        grad_clip=100.0)).update_policy(data)
    assert fsdp_metrics["actor/grad_norm"][0] == pytest.approx(metrics["actor/grad_norm"][0], rel=1e-5)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(fsdp_state[name], value, atol=1e-6, rtol=1e-5)
