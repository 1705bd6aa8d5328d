"""Critic-free advantage estimators for outcome rewards, chosen by name from a registry.

All estimators take ``token_level_rewards`` and ``response_mask`` of shape [B, T] and return
``(advantages, returns)`` of the same shape, computed without gradients. Group-based estimators
(GRPO, RLOO, REINFORCE++-baseline) need ``index``: one group id per row (the prompt's ``uid``).
The trainer passes its whole ``algorithm`` config as keyword arguments, so every estimator accepts
and ignores keys it does not use.

The outcome score of a row is the sum of its token-level rewards over ALL positions (as verl does);
rewards are zero outside the response, so this equals the masked sum in practice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import torch

from relift.algorithms.losses import kl_penalty as _kl_penalty
from relift.algorithms.masked import masked_mean, masked_whiten

__all__ = [
    "register_adv_estimator",
    "get_adv_estimator",
    "list_adv_estimators",
    "compute_advantage",
    "compute_grpo_outcome_advantage",
    "compute_rloo_outcome_advantage",
    "compute_reinforce_plus_plus_outcome_advantage",
    "compute_reinforce_plus_plus_baseline_outcome_advantage",
    "apply_kl_penalty_to_rewards",
]

logger = logging.getLogger(__name__)

AdvEstimator = Callable[..., tuple[torch.Tensor, torch.Tensor]]
_REGISTRY: dict[str, AdvEstimator] = {}


def register_adv_estimator(name: str) -> Callable[[AdvEstimator], AdvEstimator]:
    """Decorator: make ``fn`` available as ``compute_advantage(name, ...)``.

    Registering a second function under an existing name raises, so two modules cannot silently
    shadow each other.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"advantage estimator name must be a non-empty string, got {name!r}")

    def decorator(fn: AdvEstimator) -> AdvEstimator:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"advantage estimator {name!r} is already registered ({existing.__qualname__})")
        _REGISTRY[name] = fn
        return fn

    return decorator


def list_adv_estimators() -> list[str]:
    """Names of all registered estimators, sorted."""
    return sorted(_REGISTRY)


def get_adv_estimator(name: str) -> AdvEstimator:
    """The estimator registered under ``name``; a KeyError lists the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown advantage estimator {name!r}; known: {', '.join(list_adv_estimators())}") from None


def compute_advantage(estimator: str, token_level_rewards: torch.Tensor, response_mask: torch.Tensor,
                      index: Sequence[Hashable] | np.ndarray | torch.Tensor | None = None,
                      **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the estimator named ``estimator``; returns ``(advantages, returns)``, both [B, T]."""
    fn = get_adv_estimator(estimator)
    _check_inputs(token_level_rewards, response_mask, index, needs_index=False)
    with torch.no_grad():
        return fn(token_level_rewards, response_mask, index=index, **kwargs)


# ----------------------------------------------------------------------------------- helpers


def _check_inputs(rewards: torch.Tensor, mask: torch.Tensor, index: Any, needs_index: bool,
                  who: str = "compute_advantage") -> None:
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 2:
        raise ValueError(f"{who}: token_level_rewards must be a 2-D tensor [B, T], "
                         f"got {getattr(rewards, 'shape', type(rewards))}")
    if not isinstance(mask, torch.Tensor) or mask.shape != rewards.shape:
        raise ValueError(f"{who}: response_mask must have the shape of token_level_rewards "
                         f"{tuple(rewards.shape)}, got {getattr(mask, 'shape', type(mask))}")
    if index is None:
        if needs_index:
            raise ValueError(f"{who}: this estimator groups responses by prompt and needs `index` "
                             f"(one group id per row, e.g. the `uid` column)")
        return
    if len(index) != rewards.shape[0]:
        raise ValueError(f"{who}: index has {len(index)} entries but the batch has {rewards.shape[0]} rows")


def _group_ids(index: Sequence[Hashable] | np.ndarray | torch.Tensor, device: torch.device) -> tuple[torch.Tensor, int]:
    """Map arbitrary hashable group ids to 0..G-1 in order of first appearance."""
    if isinstance(index, torch.Tensor):
        items = index.tolist()
    else:
        items = list(index)
    mapping: dict[Hashable, int] = {}
    ids = [mapping.setdefault(_hashable(x), len(mapping)) for x in items]
    return torch.tensor(ids, dtype=torch.long, device=device), len(mapping)


def _hashable(x: Any) -> Hashable:
    if isinstance(x, np.ndarray):
        return x.tobytes()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _group_stats(scores: torch.Tensor, index: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row group mean, Bessel std and group size; a group of one gets mean 0 and std 1."""
    gid, n_groups = _group_ids(index, scores.device)
    counts = torch.zeros(n_groups, dtype=scores.dtype, device=scores.device).scatter_add_(
        0, gid, torch.ones_like(scores))
    sums = torch.zeros_like(counts).scatter_add_(0, gid, scores)
    mean = sums / counts
    sq = torch.zeros_like(counts).scatter_add_(0, gid, (scores - mean[gid]) ** 2)
    std = torch.sqrt(sq / (counts - 1).clamp(min=1))
    single = counts == 1
    mean = torch.where(single, torch.zeros_like(mean), mean)
    std = torch.where(single, torch.ones_like(std), std)
    return mean[gid], std[gid], counts[gid]


def _outcome_scores(rewards: torch.Tensor) -> torch.Tensor:
    scores = rewards.sum(dim=-1)
    return scores if scores.dtype in (torch.float32, torch.float64) else scores.float()


# -------------------------------------------------------------------------------- estimators


@register_adv_estimator("grpo")
def compute_grpo_outcome_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor,
                                   index: Any = None, norm_adv_by_std_in_grpo: bool = True,
                                   epsilon: float = 1e-6, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO: ``A_i = (s_i - mean_g) / (std_g + eps)`` (Bessel std), or ``s_i - mean_g`` (Dr.GRPO).

    A group of one uses mean 0 and std 1. Broadcast over the response tokens; returns = advantages.
    """
    _check_inputs(token_level_rewards, response_mask, index, needs_index=True, who="grpo")
    scores = _outcome_scores(token_level_rewards)
    mean, std, _ = _group_stats(scores, index)
    adv = scores - mean
    if norm_adv_by_std_in_grpo:
        adv = adv / (std + epsilon)
    adv = adv.unsqueeze(-1) * response_mask.to(adv.dtype)
    adv = adv.to(token_level_rewards.dtype) if token_level_rewards.is_floating_point() else adv
    return adv, adv


@register_adv_estimator("rloo")
def compute_rloo_outcome_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor,
                                   index: Any = None, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """RLOO: ``A_i = s_i - mean_{j != i} s_j = n/(n-1) (s_i - mean_g)``; ``A_i = s_i`` for n = 1."""
    _check_inputs(token_level_rewards, response_mask, index, needs_index=True, who="rloo")
    scores = _outcome_scores(token_level_rewards)
    mean, _, counts = _group_stats(scores, index)
    factor = torch.where(counts > 1, counts / (counts - 1).clamp(min=1), torch.ones_like(counts))
    adv = scores * factor - mean * factor
    adv = adv.unsqueeze(-1) * response_mask.to(adv.dtype)
    adv = adv.to(token_level_rewards.dtype) if token_level_rewards.is_floating_point() else adv
    return adv, adv


@register_adv_estimator("reinforce_plus_plus")
def compute_reinforce_plus_plus_outcome_advantage(token_level_rewards: torch.Tensor,
                                                  response_mask: torch.Tensor, index: Any = None,
                                                  gamma: float = 1.0, **_: Any
                                                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++: discounted returns scanned backwards, whitened over all valid batch tokens.

    ``G = r_t + gamma G; ret_t = G; G = G * M_t``; ``A = whiten(ret) * M`` (masked mean, Bessel var,
    1e-8 inside the square root). Returns are the unwhitened ``ret``.
    """
    _check_inputs(token_level_rewards, response_mask, index, needs_index=False, who="reinforce_plus_plus")
    rewards = token_level_rewards if token_level_rewards.is_floating_point() else token_level_rewards.float()
    mask = response_mask.to(rewards.dtype)
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
        running = running * mask[:, t]
    adv = masked_whiten(returns, mask) * mask
    return adv, returns


@register_adv_estimator("reinforce_plus_plus_baseline")
def compute_reinforce_plus_plus_baseline_outcome_advantage(token_level_rewards: torch.Tensor,
                                                           response_mask: torch.Tensor, index: Any = None,
                                                           **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++-baseline: subtract the group mean score (0 for a group of one), broadcast over
    tokens, then whiten over all valid tokens of the batch. Returns = advantages."""
    _check_inputs(token_level_rewards, response_mask, index, needs_index=True, who="reinforce_plus_plus_baseline")
    scores = _outcome_scores(token_level_rewards)
    mean, _, _ = _group_stats(scores, index)
    mask = response_mask.to(scores.dtype)
    adv = (scores - mean).unsqueeze(-1) * mask
    adv = masked_whiten(adv, mask) * mask
    adv = adv.to(token_level_rewards.dtype) if token_level_rewards.is_floating_point() else adv
    return adv, adv


# ------------------------------------------------------------------------------ KL in reward


def apply_kl_penalty_to_rewards(token_level_scores: torch.Tensor, old_log_prob: torch.Tensor,
                                ref_log_prob: torch.Tensor, response_mask: torch.Tensor,
                                kl_coef: float, kl_penalty: str = "k1") -> tuple[torch.Tensor, dict[str, float]]:
    """``r_t = score_t - kl_coef * kl_t * M_t`` (REINFORCE++'s KL-in-reward).

    Returns the token-level rewards and metrics: ``actor/reward_kl_penalty`` (the batch mean of the
    per-sequence masked-mean KL; feed it to ``KLController.update``) and
    ``actor/reward_kl_penalty_coeff`` (the coefficient used).
    """
    if token_level_scores.shape != response_mask.shape or old_log_prob.shape != response_mask.shape \
            or ref_log_prob.shape != response_mask.shape:
        raise ValueError("apply_kl_penalty_to_rewards: token_level_scores, old_log_prob, ref_log_prob and "
                         f"response_mask must share one shape, got {tuple(token_level_scores.shape)}, "
                         f"{tuple(old_log_prob.shape)}, {tuple(ref_log_prob.shape)}, {tuple(response_mask.shape)}")
    with torch.no_grad():
        mask = response_mask.to(old_log_prob.dtype)
        kld = _kl_penalty(old_log_prob, ref_log_prob, kl_penalty) * mask
        rewards = token_level_scores - float(kl_coef) * kld.to(token_level_scores.dtype)
        current_kl = masked_mean(kld, mask, dim=-1).mean()
    metrics = {"actor/reward_kl_penalty": float(current_kl), "actor/reward_kl_penalty_coeff": float(kl_coef)}
    return rewards, metrics
