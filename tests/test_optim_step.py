"""The shared optimiser-step loop (workers/optim_step.py) alone, and its non-finite skip in every update kind."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from test_actor import base_config, make_rows, pair_batch, rl_batch

from relift.models.tiny import build_tiny_tokenizer, make_tiny_model
from relift.protocol import DataProto
from workers.actor import DataParallelActor
from workers.optim_step import run_optimizer_steps

# ------------------------------------------------------------------------- the loop on a scalar model


def _scalar_run(xs_per_mini, lr=None, grad_clip=None, loss_raises_at=None, opt_out=None):
    """w starts at 2; each micro-batch is one row x and adds w * x / len(mini) to the step's loss."""
    module = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(2.0)
    opt = torch.optim.SGD(module.parameters(), lr=0.5)
    if opt_out is not None:
        opt_out.append(opt)
    minis = [DataProto.from_dict({"x": torch.tensor(xs, dtype=torch.float32)}) for xs in xs_per_mini]
    calls = []

    def step_loss(mini):
        n = len(mini)

        def micro(part):
            calls.append(float(part.batch["x"][0]))
            if loss_raises_at is not None and len(calls) == loss_raises_at:
                raise RuntimeError("boom")
            w = module.weight[0, 0]
            x = part.batch["x"][0]
            loss = w * x / n
            return loss, [("loss", loss, 1.0), ("x_mean", x, 1.0 / n)]
        return micro

    def split(mini):
        return [mini[i:i + 1] for i in range(len(mini))]

    out = run_optimizer_steps(module, opt, minis, split, step_loss, prefix="toy", grad_clip=grad_clip, lr=lr,
                              scalars={"toy/constant": 7.0})
    return out, module, opt, calls


def test_loop_accumulates_over_micro_batches_and_steps_once_per_mini_batch():
    out, module, opt, calls = _scalar_run([[1.0, 3.0], [4.0]])
    assert calls == [1.0, 3.0, 4.0]
    # step 1: d/dw of w*(1+3)/2 = 2 -> w = 2 - 0.5*2 = 1; step 2: grad 4 -> w = 1 - 0.5*4 = -1
    assert module.weight.item() == pytest.approx(-1.0)
    assert out["toy/grad_norm"] == pytest.approx([2.0, 4.0])
    assert out["toy/loss"] == pytest.approx([2.0 * 2.0, 1.0 * 4.0])   # the step's summed loss, w before the step
    assert out["toy/x_mean"] == pytest.approx([2.0, 4.0])             # value * weight summed per step
    assert out["toy/lr"] == [0.5, 0.5]
    # report order: micro-batch values, grad_norm, lr, then the scalars, then skipped_steps
    assert list(out) == ["toy/loss", "toy/x_mean", "toy/grad_norm", "toy/lr", "toy/constant", "toy/skipped_steps"]
    assert out["toy/skipped_steps"] == 0.0
    assert module.weight.grad is None  # gradients are cleared after each step


def test_loop_clips_overrides_lr_and_restores_it_even_on_error():
    out, module, opt, _ = _scalar_run([[3.0]], lr=0.1, grad_clip=1.0)
    assert out["toy/grad_norm"] == pytest.approx([3.0])              # reported before clipping
    assert module.weight.item() == pytest.approx(2.0 - 0.1 * 1.0)    # the clipped gradient is 1
    assert out["toy/lr"] == [0.1] and opt.param_groups[0]["lr"] == 0.5
    failed: list = []
    with pytest.raises(RuntimeError, match="boom"):
        _scalar_run([[1.0, 2.0]], lr=0.1, loss_raises_at=2, opt_out=failed)
    assert failed[0].param_groups[0]["lr"] == 0.5


def test_loop_skips_and_counts_a_non_finite_step():
    out, module, _, _ = _scalar_run([[float("inf")], [1.0]])
    assert out["toy/skipped_steps"] == 1.0
    assert math.isnan(out["toy/grad_norm"][0]) or math.isinf(out["toy/grad_norm"][0])
    assert module.weight.item() == pytest.approx(2.0 - 0.5 * 1.0)  # only the finite step moved w


# ------------------------------------------------------------------------- every update kind


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_model(build_tiny_tokenizer(), hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                           intermediate_size=64, tie_word_embeddings=False, seed=0)


def _update(kind, actor, data, mini):
    if kind == "ppo":
        return actor.update_policy(data), "actor"
    if kind == "sft":
        return actor.update_sft(data, entropy_coeff=0.01, mini_batch_size=mini), "sft"
    return actor.update_pairs(data, kind, mini_batch_size=mini), kind


def _data(kind, model):
    if kind == "ppo":
        return rl_batch(model, n=4, seed=21)
    if kind == "sft":
        return DataProto.from_dict(make_rows(4, seed=22))
    data = pair_batch(n=4, seed=23)
    if kind == "dpo":
        ref_c, ref_r = DataParallelActor(model, None, base_config()).compute_pair_log_probs(data)
        data = DataProto.from_dict({**dict(data.batch.items()), "ref_chosen_log_prob": ref_c,
                                    "ref_rejected_log_prob": ref_r})
    return data


@pytest.mark.parametrize("kind", ["ppo", "sft", "redi", "dpo", "simpo"])
def test_non_finite_gradient_skips_only_that_step_in_every_update_kind(tiny, kind):
    """A NaN gradient in the first of two optimiser steps: that step is skipped and counted, the
    parameters and AdamW state stay as if it never happened, and the second step is exactly the
    step a run on the second mini-batch alone takes."""
    cfg = base_config(ppo_mini_batch_size=2, ppo_micro_batch_size_per_gpu=2, grad_clip=1.0)
    data = _data(kind, tiny)

    poisoned = copy.deepcopy(tiny)
    calls = []
    poisoned.lm_head.weight.register_hook(lambda g: (calls.append(1), g * float("nan") if len(calls) == 1 else g)[1])
    opt = torch.optim.AdamW(poisoned.parameters(), lr=1e-2)
    metrics, prefix = _update(kind, DataParallelActor(poisoned, opt, cfg), data, 2)
    assert len(calls) == 2  # one backward per step
    assert metrics[f"{prefix}/skipped_steps"] == 1.0
    assert math.isnan(metrics[f"{prefix}/grad_norm"][0]) and math.isfinite(metrics[f"{prefix}/grad_norm"][1])
    assert all(p.grad is None for p in poisoned.parameters())

    clean = copy.deepcopy(tiny)
    opt_clean = torch.optim.AdamW(clean.parameters(), lr=1e-2)
    _update(kind, DataParallelActor(clean, opt_clean, cfg), data[2:4], 2)
    for (name, a), b in zip(poisoned.named_parameters(), clean.parameters(), strict=True):
        assert torch.equal(a.detach(), b.detach()), name
    assert {s["step"].item() for s in opt.state.values()} == {1.0}  # the skipped step did not count
