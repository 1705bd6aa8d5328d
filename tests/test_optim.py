"""AdamW builder and the lr schedules: values against hand-computed multipliers."""

from __future__ import annotations

import math

import pytest
import torch

from relift.utils.optim import ScheduleFn, build_lr_scheduler, build_optimizer, resolve_warmup_steps


def _lrs(sched, opt, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _opt(lr=1.0):
    p = torch.nn.Parameter(torch.zeros(2))
    return build_optimizer([p], lr=lr, weight_decay=0.0)


def test_constant_with_warmup_reaches_full_lr_on_last_warmup_step():
    opt = _opt(2.0)
    sched = build_lr_scheduler(opt, total_steps=10, schedule="constant", warmup_steps=4)
    assert _lrs(sched, opt, 6) == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2.0])


def test_cosine_decays_to_min_lr_ratio():
    opt = _opt(1.0)
    sched = build_lr_scheduler(opt, total_steps=12, schedule="cosine", warmup_steps=2, min_lr_ratio=0.1)
    lrs = _lrs(sched, opt, 13)
    assert lrs[:2] == pytest.approx([0.5, 1.0])
    for step in range(2, 13):
        progress = min(1.0, (step - 2) / 10)
        want = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
        assert lrs[step] == pytest.approx(want), step
    assert lrs[12] == pytest.approx(0.1)


def test_linear_decay_and_warmup_ratio():
    opt = _opt(1.0)
    # ratio 0.2 of 10 steps = 2 warmup steps; then 1 -> 0 over the remaining 8
    sched = build_lr_scheduler(opt, total_steps=10, schedule="linear", warmup_ratio=0.2)
    lrs = _lrs(sched, opt, 10)
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])


def test_warmup_steps_win_over_ratio():
    assert resolve_warmup_steps(100, 3, 0.5) == 3
    assert resolve_warmup_steps(100, -1, 0.5) == 50
    assert resolve_warmup_steps(100, None, 0.0) == 0


def test_from_the_spec():
    from relift.spec import OptimSpec
    from relift.utils.optim import scheduler_from_spec

    opt = _opt(1.0)
    spec = OptimSpec(lr=1.0, weight_decay=0.0, betas=(0.9, 0.999), lr_scheduler_type="cosine", warmup_steps=2,
                     lr_warmup_steps=-1, lr_warmup_steps_ratio=0.5, min_lr_ratio=0.0, total_training_steps=4)
    sched = scheduler_from_spec(opt, spec)
    lrs = _lrs(sched, opt, 4)
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.5])


def test_optimizer_settings():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer([p], lr=3e-4, betas=(0.8, 0.95), weight_decay=0.1, eps=1e-6)
    g = opt.param_groups[0]
    assert (g["lr"], tuple(g["betas"]), g["weight_decay"], g["eps"]) == (3e-4, (0.8, 0.95), 0.1, 1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"schedule": "step"}, "unknown lr schedule"),
    ({"schedule": "cosine", "total_steps": 0}, "needs total_training_steps"),
    ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
])
def test_bad_schedule_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScheduleFn(**kwargs)


def test_scheduler_state_round_trip():
    opt = _opt(1.0)
    sched = build_lr_scheduler(opt, total_steps=10, schedule="cosine", warmup_steps=2)
    _lrs(sched, opt, 5)
    state = sched.state_dict()
    opt2 = _opt(1.0)
    sched2 = build_lr_scheduler(opt2, total_steps=10, schedule="cosine", warmup_steps=2)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 5
    assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())


def test_cpu_params_get_the_fused_adamw_with_the_loop_update():
    """The fused kernel is used on CPU and gives the per-tensor loop's update (same formula, one
    call), and checkpoints of one load into the other."""
    torch.manual_seed(0)
    a, b = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
    b.load_state_dict(a.state_dict())
    start = a.weight.detach().clone()
    fused = build_optimizer(a.parameters(), lr=1e-2, weight_decay=0.1)
    loop = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    assert fused.param_groups[0]["fused"] is True and not loop.param_groups[0]["fused"]
    for _ in range(5):
        x = torch.randn(4, 8)
        for model, opt in ((a, fused), (b, loop)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    assert (a.weight - start).abs().min() > 1e-5  # every weight moved
    loop.load_state_dict(fused.state_dict())
    torch.testing.assert_close(loop.state[b.weight]["exp_avg"], fused.state[a.weight]["exp_avg"])
