"""Advantage estimators, KL-in-reward and the KL controllers: hand-computed cases plus a loop reference."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from relift.algorithms import advantages as adv_mod
from relift.algorithms.advantages import (
    apply_kl_penalty_to_rewards,
    compute_advantage,
    get_adv_estimator,
    list_adv_estimators,
    register_adv_estimator,
)
from relift.algorithms.kl_control import AdaptiveKLController, FixedKLController, get_kl_controller
from relift.algorithms.masked import masked_mean, masked_var, masked_whiten


def outcome(scores: list[float], lengths: list[int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-level rewards with each score on the last valid token, plus the response mask."""
    rewards = torch.zeros(len(scores), width)
    mask = torch.zeros(len(scores), width)
    for i, (s, n) in enumerate(zip(scores, lengths)):
        mask[i, :n] = 1
        rewards[i, n - 1] = s
    return rewards, mask


# ------------------------------------------------------------------------------------- GRPO


def test_grpo_hand_computed():
    # rows: groups a, b, a, c, a, c ; scores a = [1, 0, 1], b = [0.5] (single), c = [2, 2]
    index = np.array(["a", "b", "a", "c", "a", "c"], dtype=object)
    rewards, mask = outcome([1, 0.5, 0, 2, 1, 2], [3, 2, 1, 4, 2, 3], width=4)
    adv, ret = compute_advantage("grpo", rewards, mask, index=index)
    # group a: mean 2/3, Bessel var = (1/9 + 4/9 + 1/9) / 2 = 1/3, std = 0.57735
    std_a = math.sqrt(1 / 3)
    expected_scalar = torch.tensor([(1 / 3) / (std_a + 1e-6), 0.5 / (1 + 1e-6), (-2 / 3) / (std_a + 1e-6),
                                    0.0, (1 / 3) / (std_a + 1e-6), 0.0])
    assert torch.allclose(adv, expected_scalar[:, None] * mask, atol=1e-6)
    assert torch.equal(adv, ret)
    assert torch.all(adv[mask == 0] == 0)


def test_grpo_without_std_is_mean_centered():
    index = [7, 7, 7, 9]
    rewards, mask = outcome([1, 0, 0, 3], [2, 2, 2, 2], width=3)
    adv, _ = compute_advantage("grpo", rewards, mask, index=index, norm_adv_by_std_in_grpo=False)
    # group 7 mean 1/3 ; group 9 single: mean 0
    expected = torch.tensor([2 / 3, -1 / 3, -1 / 3, 3.0])
    assert torch.allclose(adv[:, 0], expected, atol=1e-6)
    assert torch.allclose(adv[:, 2], torch.zeros(4))


def _loop_grpo(scores: torch.Tensor, index: list, norm: bool, eps: float = 1e-6) -> torch.Tensor:
    """An independent per-row reference, the way the published code writes it."""
    groups = defaultdict(list)
    for i, g in enumerate(index):
        groups[g].append(scores[i])
    out = scores.clone()
    for i, g in enumerate(index):
        vals = torch.stack(groups[g])
        mean, std = (torch.tensor(0.0), torch.tensor(1.0)) if len(vals) == 1 else (vals.mean(), vals.std())
        out[i] = (scores[i] - mean) / (std + eps) if norm else scores[i] - mean
    return out


@pytest.mark.parametrize("norm", [True, False])
def test_grpo_matches_loop_reference_on_random_inputs(norm):
    torch.manual_seed(0)
    B, T = 24, 7
    rewards = torch.randn(B, T)
    mask = (torch.rand(B, T) > 0.3).float()
    index = [int(i) for i in torch.randint(0, 7, (B,))]
    adv, _ = compute_advantage("grpo", rewards, mask, index=index, norm_adv_by_std_in_grpo=norm)
    expected = _loop_grpo(rewards.sum(-1), index, norm)[:, None] * mask
    assert torch.allclose(adv, expected, atol=1e-5)


# ------------------------------------------------------------------------------------- RLOO


def test_rloo_hand_computed():
    index = ["p", "p", "q", "p"]
    rewards, mask = outcome([1, 0, 0.5, 1], [1, 2, 2, 1], width=2)
    adv, ret = compute_advantage("rloo", rewards, mask, index=index)
    # p = [1, 0, 1]: 1 - mean(0, 1) = 0.5 ; 0 - mean(1, 1) = -1 ; q single: A = s = 0.5
    expected = torch.tensor([[0.5, 0.0], [-1.0, -1.0], [0.5, 0.5], [0.5, 0.0]])
    assert torch.allclose(adv, expected, atol=1e-6)
    assert torch.equal(adv, ret)


def test_rloo_equals_leave_one_out_on_random_inputs():
    torch.manual_seed(1)
    B = 20
    rewards, mask = torch.randn(B, 5), torch.ones(B, 5)
    index = [i // 4 for i in range(B)]
    adv, _ = compute_advantage("rloo", rewards, mask, index=index)
    s = rewards.sum(-1)
    for i in range(B):
        others = [s[j] for j in range(B) if index[j] == index[i] and j != i]
        assert torch.allclose(adv[i, 0], s[i] - torch.stack(others).mean(), atol=1e-5)


# ------------------------------------------------------------------------------- REINFORCE++


def test_reinforce_plus_plus_hand_computed():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = compute_advantage("reinforce_plus_plus", rewards, mask, gamma=1.0)
    assert torch.allclose(ret, torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 0.0]]))
    # valid returns 1,1,1,2,2: mean 1.4, Bessel var (3*0.16 + 2*0.36)/4 = 0.3
    sd = math.sqrt(0.3 + 1e-8)
    expected = torch.tensor([[-0.4 / sd] * 3, [0.6 / sd, 0.6 / sd, 0.0]])
    assert torch.allclose(adv, expected, atol=1e-5)


def test_reinforce_plus_plus_discount_and_mask_reset():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    _, ret = compute_advantage("reinforce_plus_plus", rewards, mask, gamma=0.5)
    # row 0: 0.25, 0.5, 1 ; row 1: the reward at the masked t=2 does not flow back (G reset by M_t = 0)
    assert torch.allclose(ret, torch.tensor([[0.25, 0.5, 1.0], [1.0, 0.0, 5.0]]))


def test_reinforce_plus_plus_baseline_hand_computed():
    index = ["g", "g", "h"]
    rewards, mask = outcome([1, 0, 3], [2, 1, 2], width=2)
    adv, ret = compute_advantage("reinforce_plus_plus_baseline", rewards, mask, index=index)
    # centred: g -> 0.5, -0.5 ; h (single) -> 3. valid tokens 0.5, 0.5, -0.5, 3, 3: mean 1.3,
    # Bessel var (0.64 + 0.64 + 3.24 + 2.89 + 2.89) / 4 = 2.575
    sd = math.sqrt(2.575 + 1e-8)
    expected = torch.tensor([[-0.8 / sd, -0.8 / sd], [-1.8 / sd, 0.0], [1.7 / sd, 1.7 / sd]])
    assert torch.allclose(adv, expected, atol=1e-5)
    assert torch.equal(adv, ret)


def test_masked_helpers():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(x, m).item() == pytest.approx(2.0)
    assert torch.allclose(masked_mean(x, m, dim=-1), torch.tensor([1.5, 3.0]))
    assert masked_var(x, m).item() == pytest.approx(1.0)  # values 1,2,3 -> Bessel var 1
    assert masked_var(x, m, unbiased=False).item() == pytest.approx(2 / 3)
    w = masked_whiten(x, m)
    assert torch.allclose(w[m.bool()], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-6)
    assert torch.allclose(masked_whiten(x, m, shift_mean=False)[m.bool()], torch.tensor([1.0, 2.0, 3.0]), atol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(x, torch.tensor([[1, 0, 0], [0, 0, 0]]))
    assert masked_mean(x, torch.zeros_like(m)).item() == 0.0


# ------------------------------------------------------------------------------ registry/errors


def test_registry_lists_and_errors():
    assert {"grpo", "rloo", "reinforce_plus_plus", "reinforce_plus_plus_baseline"} <= set(list_adv_estimators())
    with pytest.raises(KeyError, match="known: .*grpo"):
        get_adv_estimator("ppo_with_critic")
    rewards, mask = outcome([1, 0], [1, 1], width=2)
    with pytest.raises(ValueError, match="needs `index`"):
        compute_advantage("grpo", rewards, mask)
    with pytest.raises(ValueError, match="index has 3 entries but the batch has 2"):
        compute_advantage("rloo", rewards, mask, index=[0, 0, 1])
    with pytest.raises(ValueError, match="shape"):
        compute_advantage("grpo", rewards, mask[:, :1], index=[0, 0])


def test_unknown_kwargs_are_ignored_and_custom_estimators_register():
    rewards, mask = outcome([1, 0], [1, 2], width=2)
    a1, _ = compute_advantage("grpo", rewards, mask, index=["x", "x"], gamma=0.9, kl_ctrl={"type": "fixed"})
    a2, _ = compute_advantage("grpo", rewards, mask, index=["x", "x"])
    assert torch.equal(a1, a2)

    @register_adv_estimator("test_constant_adv")
    def constant(token_level_rewards, response_mask, index=None, value=2.0, **_):
        out = torch.full_like(token_level_rewards, value) * response_mask
        return out, out

    try:
        adv, _ = compute_advantage("test_constant_adv", rewards, mask, value=3.0)
        assert torch.equal(adv, 3.0 * mask)
        with pytest.raises(ValueError, match="already registered"):
            register_adv_estimator("test_constant_adv")(lambda *a, **k: None)
    finally:
        adv_mod._REGISTRY.pop("test_constant_adv", None)


def test_tensor_and_numpy_index_group_the_same_way():
    torch.manual_seed(2)
    rewards, mask = torch.randn(6, 3), torch.ones(6, 3)
    ids = [3, 1, 3, 1, 2, 2]
    a_list, _ = compute_advantage("grpo", rewards, mask, index=ids)
    a_tensor, _ = compute_advantage("grpo", rewards, mask, index=torch.tensor(ids))
    a_numpy, _ = compute_advantage("grpo", rewards, mask, index=np.array(ids))
    assert torch.equal(a_list, a_tensor) and torch.equal(a_list, a_numpy)


# ---------------------------------------------------------------------------- KL in reward


def test_apply_kl_penalty_to_rewards_hand_computed():
    scores = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    old = torch.tensor([[-1.0, -2.0], [-1.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0], [-3.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    rewards, metrics = apply_kl_penalty_to_rewards(scores, old, ref, mask, kl_coef=0.1, kl_penalty="k1")
    # k1 = old - ref = [[0.5, -1], [2, (masked)]]
    assert torch.allclose(rewards, torch.tensor([[-0.05, 1.1], [-0.2, 0.0]]))
    # per-sequence masked means: -0.25 and 2.0 -> batch mean 0.875
    assert metrics["actor/reward_kl_penalty"] == pytest.approx(0.875)
    assert metrics["actor/reward_kl_penalty_coeff"] == pytest.approx(0.1)


# ------------------------------------------------------------------------------ KL controllers


def test_fixed_kl_controller():
    ctrl = get_kl_controller({"type": "fixed", "kl_coef": 0.05})
    assert isinstance(ctrl, FixedKLController)
    ctrl.update(current_kl=10.0, n_steps=256)
    assert ctrl.value == 0.05


def test_adaptive_kl_controller_updates_and_resumes():
    ctrl = get_kl_controller({"type": "adaptive", "kl_coef": 0.1, "target_kl": 0.05, "horizon": 100})
    assert isinstance(ctrl, AdaptiveKLController)
    ctrl.update(current_kl=0.1, n_steps=10)  # error clipped to +0.2: 0.1 * (1 + 0.2 * 10/100)
    assert ctrl.value == pytest.approx(0.102)
    ctrl.update(current_kl=0.045, n_steps=10)  # error -0.1: * (1 - 0.01)
    assert ctrl.value == pytest.approx(0.102 * 0.99)
    ctrl.update(current_kl=0.0, n_steps=10)  # error clipped to -0.2
    assert ctrl.value == pytest.approx(0.102 * 0.99 * 0.98)
    state = ctrl.state_dict()
    fresh = AdaptiveKLController(init_kl_coef=1.0, target_kl=1.0, horizon=1.0)
    fresh.load_state_dict(state)
    assert fresh.value == ctrl.value and fresh.target == 0.05 and fresh.horizon == 100
    with pytest.raises(ValueError, match="fixed"):
        FixedKLController(0.1).load_state_dict(state)


def test_kl_controller_config_errors():
    with pytest.raises(ValueError, match="target_kl"):
        get_kl_controller({"type": "adaptive", "kl_coef": 0.1, "horizon": 10})
    with pytest.raises(ValueError, match="unknown kl_ctrl.type 'pid'"):
        get_kl_controller({"type": "pid"})
    with pytest.raises(ValueError, match="horizon"):
        AdaptiveKLController(0.1, 0.05, 0)
