"""Loss aggregation, micro-batch accumulation, policy/KL losses and the offline losses."""

from __future__ import annotations

import math

import pytest
import torch

from relift.algorithms.losses import (
    LOSS_AGG_MODES,
    agg_loss,
    compute_policy_loss,
    dpo_loss,
    kl_penalty,
    loss_normalizers,
    metrics_to_floats,
    redi_loss,
    sft_loss,
    simpo_loss,
)


def log1p_exp(x: float) -> float:
    """-log sigmoid(-x) = log(1 + e^x), written independently of torch."""
    return math.log1p(math.exp(x))


# ------------------------------------------------------------------------------- aggregation


L_HAND = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 5.0, 6.0, 0.0], [7.0, 7.0, 7.0, 7.0]])
M_HAND = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize("mode, expected", [
    ("token-mean", 7 / 3),             # (1 + 2 + 4) / 3 tokens
    ("seq-mean-token-sum", 3.5),       # (3 + 4) / 2 non-empty rows
    ("seq-mean-token-mean", 2.75),     # (1.5 + 4) / 2
    ("seq-mean-token-sum-norm", 1.75),  # 7 / T = 4
])
def test_agg_loss_hand_computed(mode, expected):
    assert agg_loss(L_HAND, M_HAND, mode).item() == pytest.approx(expected)


def test_agg_loss_normalizer_overrides_and_errors():
    assert agg_loss(L_HAND, M_HAND, "token-mean", num_tokens=14).item() == pytest.approx(0.5)
    assert agg_loss(L_HAND, M_HAND, "seq-mean-token-sum", num_seqs=7).item() == pytest.approx(1.0)
    assert agg_loss(L_HAND, M_HAND, "seq-mean-token-sum-norm", loss_scale_factor=14).item() == pytest.approx(0.5)
    assert agg_loss(L_HAND, torch.zeros_like(M_HAND), "token-mean").item() == 0.0
    with pytest.raises(ValueError, match="unknown loss_agg_mode 'mean'.*token-mean"):
        agg_loss(L_HAND, M_HAND, "mean")
    with pytest.raises(ValueError, match="shape mismatch"):
        agg_loss(L_HAND, M_HAND[:, :2], "token-mean")
    with pytest.raises(ValueError, match="num_tokens must be >= 0"):
        agg_loss(L_HAND, M_HAND, "token-mean", num_tokens=-1)
    assert loss_normalizers(M_HAND) == {"num_tokens": 3, "num_seqs": 2}


def _ragged_mask(B: int, T: int, gen: torch.Generator) -> torch.Tensor:
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[3] = 0  # one fully masked row
    return (torch.arange(T)[None, :] < lengths[:, None]).float()


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_micro_batch_accumulation_equals_full_batch(mode):
    """Sum of micro-batch losses with the mini-batch totals == full loss, in value and gradient."""
    gen = torch.Generator().manual_seed(0)
    B, T, D = 12, 6, 3
    x = torch.randn(B, T, D, generator=gen)
    mask = _ragged_mask(B, T, gen)
    w = torch.randn(D, generator=gen, requires_grad=True)

    def loss_mat(rows: slice) -> torch.Tensor:
        return torch.tanh(x[rows] @ w) ** 2 + (x[rows] @ w)

    full = agg_loss(loss_mat(slice(None)), mask, mode)
    (g_full,) = torch.autograd.grad(full, w)

    totals = loss_normalizers(mask)
    w.grad = None
    acc = torch.zeros(())
    for rows in (slice(0, 5), slice(5, 7), slice(7, 12)):  # uneven micro-batches
        micro = agg_loss(loss_mat(rows), mask[rows], mode, **totals)
        micro.backward()
        acc = acc + micro.detach()
    assert torch.allclose(acc, full.detach(), atol=1e-6)
    assert torch.allclose(w.grad, g_full, atol=1e-6)

    # without the totals, the token/seq means of micro-batches do NOT add up (shows the hook matters)
    if mode != "seq-mean-token-sum-norm":
        naive = sum(agg_loss(loss_mat(r), mask[r], mode).detach() for r in (slice(0, 5), slice(5, 7), slice(7, 12)))
        assert not torch.allclose(naive, full.detach(), atol=1e-3)


def test_policy_loss_accumulation_matches_full_batch():
    gen = torch.Generator().manual_seed(1)
    B, T = 8, 5
    old = torch.randn(B, T, generator=gen) * 0.1 - 1
    logp = (old + torch.randn(B, T, generator=gen) * 0.3).requires_grad_(True)
    adv = torch.randn(B, T, generator=gen)
    mask = _ragged_mask(B, T, gen)
    for mode in LOSS_AGG_MODES:
        full, _ = compute_policy_loss(old, logp, adv, mask, loss_agg_mode=mode)
        (g_full,) = torch.autograd.grad(full, logp)
        totals = loss_normalizers(mask)
        parts = [compute_policy_loss(old[r], logp[r], adv[r], mask[r], loss_agg_mode=mode, **totals)[0]
                 for r in (slice(0, 3), slice(3, 8))]
        (g_acc,) = torch.autograd.grad(sum(parts), logp)
        assert torch.allclose(g_acc, g_full, atol=1e-6), mode


# ------------------------------------------------------------------------------ policy loss


def _policy_case():
    # tokens: (A=1, rho=1.5) clipped high ; (A=1, rho=0.5) unclipped ; (A=-1, rho=0.5) clipped low ;
    # (A=-1, rho=5) dual-clipped at c=3 ; a 5th masked token with extreme values
    old = torch.zeros(1, 5)
    logp = torch.log(torch.tensor([[1.5, 0.5, 0.5, 5.0, 100.0]])).requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, -50.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    return old, logp, adv, mask


def test_policy_loss_hand_computed():
    old, logp, adv, mask = _policy_case()
    loss, metrics = compute_policy_loss(old, logp, adv, mask)
    # per-token losses: max(-1.5, -1.2) = -1.2 ; max(-0.5, -0.8) = -0.5 ; max(0.5, 0.8) = 0.8 ;
    # min(max(5, 1.2), 3) = 3  -> token-mean (-1.2 - 0.5 + 0.8 + 3) / 4 = 0.525
    assert loss.item() == pytest.approx(0.525, abs=1e-6)
    m = metrics_to_floats(metrics)
    assert m["pg_clipfrac"] == pytest.approx(0.5)        # tokens 0 and 2
    assert m["pg_clipfrac_lower"] == pytest.approx(0.25)  # token 3
    assert m["ppo_kl"] == pytest.approx(-(math.log(1.5) + 2 * math.log(0.5) + math.log(5.0)) / 4, abs=1e-6)
    for v in metrics.values():
        assert isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad
    # only the unclipped token 1 carries gradient: d(-A rho)/d logp = -A rho / 4
    (grad,) = torch.autograd.grad(loss, logp)
    assert torch.allclose(grad, torch.tensor([[0.0, -0.125, 0.0, 0.0, 0.0]]), atol=1e-6)


def test_policy_loss_without_clip_and_without_dual_clip():
    old, logp, adv, mask = _policy_case()
    loss, metrics = compute_policy_loss(old, logp, adv, mask, clip=False)
    assert loss.item() == pytest.approx((-1.5 - 0.5 + 0.5 + 5.0) / 4, abs=1e-6)
    assert metrics["pg_clipfrac"].item() == 0.0 and metrics["pg_clipfrac_lower"].item() == 0.0
    loss, _ = compute_policy_loss(old, logp, adv, mask, clip_ratio_c=None)
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 0.8 + 5.0) / 4, abs=1e-6)
    # asymmetric clip (clip-higher): rho 1.5 clipped at 1.28
    loss, _ = compute_policy_loss(old, logp, adv, mask, clip_ratio_high=0.28)
    assert loss.item() == pytest.approx((-1.28 - 0.5 + 0.8 + 3.0) / 4, abs=1e-6)


def test_policy_loss_ratio_is_clamped_and_errors():
    old = torch.tensor([[0.0]])
    logp = torch.tensor([[50.0]])  # log-ratio clamped at 20
    _, metrics = compute_policy_loss(old, logp, torch.tensor([[-1.0]]), torch.ones(1, 1), clip=False)
    assert metrics["ppo_kl"].item() == pytest.approx(-20.0)
    with pytest.raises(ValueError, match="clip_ratio_c must be > 1.0"):
        compute_policy_loss(old, logp, old, torch.ones(1, 1), clip_ratio_c=1.0)
    with pytest.raises(ValueError, match="shape mismatch"):
        compute_policy_loss(old, logp, torch.zeros(1, 2), torch.ones(1, 1))


# ------------------------------------------------------------------------------------- KL


def test_kl_penalty_kinds_and_aliases():
    logp = torch.tensor([0.0, -1.0, 0.0])
    ref = torch.tensor([-1.0, 0.0, 30.0])
    assert torch.allclose(kl_penalty(logp, ref, "k1"), torch.tensor([1.0, -1.0, -30.0]))
    assert torch.allclose(kl_penalty(logp, ref, "abs"), torch.tensor([1.0, 1.0, 30.0]))
    assert torch.allclose(kl_penalty(logp, ref, "k2"), torch.tensor([0.5, 0.5, 450.0]))
    # k3: d = ref - logp = -1, 1, 30 (clamped to 20): e^d - d - 1, then clamped to [-10, 10]
    expected = torch.tensor([math.exp(-1) + 1 - 1, math.exp(1) - 2, 10.0])
    assert torch.allclose(kl_penalty(logp, ref, "k3"), expected, atol=1e-6)
    for alias, kind in (("kl", "k1"), ("mse", "k2"), ("low_var_kl", "k3")):
        assert torch.equal(kl_penalty(logp, ref, alias), kl_penalty(logp, ref, kind))
    with pytest.raises(ValueError, match="unknown KL penalty kind 'full'.*low_var_kl"):
        kl_penalty(logp, ref, "full")


def test_k3_is_nonnegative_and_zero_at_equality():
    torch.manual_seed(0)
    a, b = torch.randn(100), torch.randn(100)
    assert torch.all(kl_penalty(a, b, "k3") >= 0)
    assert torch.allclose(kl_penalty(a, a, "k3"), torch.zeros(100))


# ------------------------------------------------------------------------------ offline losses


def test_sft_loss_token_mean_and_accumulation():
    logp = torch.tensor([[-1.0, -2.0], [-3.0, -4.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, metrics = sft_loss(logp, mask)
    assert loss.item() == pytest.approx(2.0)  # (1 + 2 + 3) / 3
    assert metrics["nll"].item() == pytest.approx(2.0) and metrics["num_tokens"].item() == 3
    assert sft_loss(logp, mask, num_tokens=6)[0].item() == pytest.approx(1.0)
    assert sft_loss(logp, mask, "seq-mean-token-mean")[0].item() == pytest.approx((1.5 + 3) / 2)
    (grad,) = torch.autograd.grad(loss, logp)
    assert torch.allclose(grad, -mask / 3)


def _pairs():
    chosen = torch.tensor([[-1.0, -3.0], [-2.0, -9.0]], requires_grad=True)
    chosen_mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    rejected = torch.tensor([[-6.0, -6.0, -6.0], [-1.0, -1.0, -7.0]], requires_grad=True)
    rejected_mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    return chosen, chosen_mask, rejected, rejected_mask


def test_redi_loss_hand_computed():
    chosen, cm, rejected, rm = _pairs()
    loss, metrics = redi_loss(chosen, cm, rejected, rm, alpha=0.8)
    # chosen averages: -2, -2 ; rejected averages: -6, -1
    # per pair: 2 + 0.8 * (-6) = -2.8 ; 2 + 0.8 * (-1) = 1.2 -> mean -0.8
    assert loss.item() == pytest.approx(-0.8)
    assert metrics["logps/chosen"].item() == pytest.approx(-2.0)
    assert metrics["logps/rejected"].item() == pytest.approx(-3.5)
    gc, gr = torch.autograd.grad(loss, (chosen, rejected))
    assert torch.allclose(gc, torch.tensor([[-0.25, -0.25], [-0.5, 0.0]]))
    assert torch.allclose(gr, torch.tensor([[0.4 / 3] * 3, [0.2, 0.2, 0.0]]))
    # alpha = 0 is SFT on the chosen traces (sequence-mean of the per-token mean NLL)
    assert redi_loss(chosen, cm, rejected, rm, alpha=0.0)[0].item() == pytest.approx(2.0)
    # micro-batches with the pair total add up
    parts = [redi_loss(chosen[i:i + 1], cm[i:i + 1], rejected[i:i + 1], rm[i:i + 1], num_pairs=2)[0] for i in (0, 1)]
    assert sum(parts).item() == pytest.approx(-0.8)


def test_dpo_loss_hand_computed():
    pc = torch.tensor([-1.0, -2.0], requires_grad=True)
    pr = torch.tensor([-3.0, -1.0], requires_grad=True)
    rc, rr = torch.tensor([-1.5, -1.5]), torch.tensor([-2.0, -2.0])
    loss, metrics = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # rewards chosen 0.5 * [0.5, -0.5] ; rejected 0.5 * [-1, 1] ; logits [0.75, -0.75]
    assert loss.item() == pytest.approx((log1p_exp(-0.75) + log1p_exp(0.75)) / 2, abs=1e-6)
    m = metrics_to_floats(metrics)
    assert m["rewards/chosen"] == pytest.approx(0.0) and m["rewards/rejected"] == pytest.approx(0.0)
    assert m["rewards/accuracies"] == pytest.approx(0.5)
    assert m["rewards/margins"] == pytest.approx(0.0)
    assert m["logps/chosen"] == pytest.approx(-1.5)
    # d/d pc_0 of -log sigmoid(l_0) / 2 = -beta * sigmoid(-l_0) / 2
    (g,) = torch.autograd.grad(loss, pc)
    assert g[0].item() == pytest.approx(-0.5 / (1 + math.exp(0.75)) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo_loss(pc, pr, rc, rr, beta=0.0)
    with pytest.raises(ValueError, match="shape mismatch"):
        dpo_loss(pc, pr[:1], rc, rr)


def test_simpo_loss_hand_computed():
    chosen, cm = torch.tensor([[-1.0, -1.0]]), torch.ones(1, 2)
    rejected, rm = torch.tensor([[-2.0, -4.0, -100.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    loss, metrics = simpo_loss(chosen, cm, rejected, rm, beta=2.0, gamma=1.0)
    # averages -1 and -3: logits 2 * 2 - 1 = 3
    assert loss.item() == pytest.approx(log1p_exp(-3.0), abs=1e-6)
    assert metrics["rewards/margins"].item() == pytest.approx(4.0)
    assert metrics["rewards/accuracies"].item() == 1.0
    with pytest.raises(ValueError, match="same number of pairs"):
        simpo_loss(chosen, cm, torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="must both be"):
        simpo_loss(chosen, cm[:, :1], rejected, rm)


def test_simpo_cpo_alpha_adds_the_chosen_nll_per_token():
    # chosen: 2 tokens with log-probs -1, -3 (mean -2); rejected: 1 token, -4
    c = torch.tensor([[-1.0, -3.0]], requires_grad=True)
    r = torch.tensor([[-4.0, 0.0]])
    cm, rm = torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    base, _ = simpo_loss(c, cm, r, rm, beta=2.0, gamma=1.0)
    expected = -math.log(1 / (1 + math.exp(-(2.0 * (-2.0) - 2.0 * (-4.0) - 1.0))))  # -log sigmoid(3)
    assert float(base) == pytest.approx(expected, rel=1e-6)
    with_nll, m = simpo_loss(c, cm, r, rm, beta=2.0, gamma=1.0, cpo_alpha=0.5)
    assert float(with_nll) == pytest.approx(expected + 0.5 * 2.0, rel=1e-6)  # + 0.5 x per-token NLL of chosen (2.0)
    assert float(m["nll/chosen"]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="cpo_alpha must be >= 0"):
        simpo_loss(c, cm, r, rm, cpo_alpha=-1.0)


def test_redi_accuracies_is_the_fraction_of_pairs_with_chosen_above_rejected():
    c = torch.tensor([[-1.0, -1.0], [-3.0, -3.0], [-2.0, 0.0]])
    r = torch.tensor([[-2.0, 0.0], [-1.0, 0.0], [-5.0, -5.0]])
    cm = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    rm = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    _, m = redi_loss(c, cm, r, rm, alpha=0.8)
    # per-token means: chosen -1, -3, -2; rejected -2, -1, -5 -> chosen wins in pairs 0 and 2
    assert float(m["accuracies"]) == pytest.approx(2 / 3)
    assert float(m["margins"]) == pytest.approx(((-1 + 2) + (-3 + 1) + (-2 + 5)) / 3)
