"""The loss of one micro-batch for each update kind: PPO/GRPO, SFT, and REDI / DPO / SimPO pairs.

Each builder returns a :data:`workers.optim_step.StepLoss` for :func:`workers.optim_step.run_optimizer_steps`:
given a mini-batch it computes that mini-batch's totals once (token / sequence counts for the
``loss_agg_mode`` normalisers, or the pair count), and returns the loss of one micro-batch,
normalised by those totals, so that the micro-batch losses sum to the loss of the whole mini-batch
(:func:`relift.algorithms.losses.loss_normalizers`) and the accumulated gradient is the mini-batch's.

Metric values come back as ``(name, value, weight)`` in report order; the loop sums ``value * weight``
over the micro-batches of a step. Losses already normalised by the mini-batch totals have weight 1;
per-micro-batch means (the PPO clip fractions, the pair metrics) are weighted by the micro-batch's
share of tokens / pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from relift.algorithms.losses import agg_loss, compute_policy_loss, dpo_loss, kl_penalty, redi_loss, simpo_loss
from relift.protocol import DataProto
from workers.actor_batches import pair_side, response_mask, seq_sum
from workers.actor_config import ActorConfig
from workers.optim_step import MetricValue, MicroLoss, StepLoss

__all__ = ["PAIR_LOSS_TYPES", "pair_hyperparameters", "pair_step_loss", "ppo_step_loss", "sft_step_loss"]

PAIR_LOSS_TYPES = ("redi", "dpo", "simpo")

# (rows, temperature, with entropy) -> (log-probs [b, R], entropy [b, R] | None)
Forward = Callable[[Mapping[str, torch.Tensor], float, bool], tuple[torch.Tensor, torch.Tensor | None]]
# (mini-batch, its response mask) -> agg_loss normaliser kwargs (num_tokens, num_seqs)
Normalizers = Callable[[DataProto, torch.Tensor], dict[str, Any]]
# pair rows -> per-token log-probs of chosen [b, Rc] and rejected [b, Rr]
PairForward = Callable[[Mapping[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


def _token_totals(mini: DataProto, normalizers: Normalizers) -> tuple[dict[str, Any], float]:
    """The mini-batch's agg_loss normalisers and its token count (at least 1, for token-weighted means)."""
    mask_all = response_mask(mini)
    norms = normalizers(mini, mask_all)
    return norms, max(float(mask_all.sum()), 1.0)


def ppo_step_loss(cfg: ActorConfig, forward: Forward, normalizers: Normalizers, temperature: float,
                  on_policy: bool) -> StepLoss:
    """Clipped (or no-clip) surrogate - ``entropy_coeff`` x entropy + ``kl_loss_coef`` x KL to the reference.

    ``on_policy``: the old log-probs are the current ones, detached (no ``old_log_probs`` column).
    Metrics: ``entropy``, ``kl_loss`` (when enabled), ``pg_loss``, then the surrogate's own.
    """
    calc_entropy = cfg.entropy_coeff != 0

    def for_mini(mini: DataProto) -> MicroLoss:
        norms, total_tokens = _token_totals(mini, normalizers)

        def micro_loss(part: DataProto) -> tuple[torch.Tensor, list[MetricValue]]:
            mb = part.batch
            mask = response_mask(part).to(torch.float32)
            weight = float(mask.sum()) / total_tokens
            log_prob, entropy = forward(mb, temperature, calc_entropy)
            old_log_prob = log_prob.detach() if on_policy else mb["old_log_probs"]
            pg_loss, pg_metrics = compute_policy_loss(
                old_log_prob, log_prob, mb["advantages"], mask,
                clip_ratio_low=cfg.clip_ratio_low, clip_ratio_high=cfg.clip_ratio_high,
                clip_ratio_c=cfg.clip_ratio_c, loss_agg_mode=cfg.loss_agg_mode,
                clip=not cfg.loss_remove_clip, loss_scale_factor=cfg.loss_scale_factor, **norms)
            loss = pg_loss
            values: list[MetricValue] = []
            if calc_entropy:
                ent_loss = agg_loss(entropy, mask, cfg.loss_agg_mode, loss_scale_factor=cfg.loss_scale_factor, **norms)
                loss = loss - cfg.entropy_coeff * ent_loss
                values.append(("entropy", (entropy.detach() * mask).sum() / total_tokens, 1.0))
            if cfg.use_kl_loss:
                kld = kl_penalty(log_prob, mb["ref_log_prob"], cfg.kl_loss_type)
                kl_loss = agg_loss(kld, mask, cfg.loss_agg_mode, loss_scale_factor=cfg.loss_scale_factor, **norms)
                loss = loss + cfg.kl_loss_coef * kl_loss
                values.append(("kl_loss", kl_loss, 1.0))
            values.append(("pg_loss", pg_loss, 1.0))
            values += [(name, value, weight) for name, value in pg_metrics.items()]
            return loss, values

        return micro_loss

    return for_mini


def sft_step_loss(cfg: ActorConfig, forward: Forward, normalizers: Normalizers, entropy_coeff: float) -> StepLoss:
    """NLL of the ``response_mask`` tokens at temperature 1 (``sft_loss_agg_mode``) - ``entropy_coeff``
    x entropy. Metrics: ``entropy`` (with a bonus), ``loss`` (the NLL alone), ``num_tokens``."""

    def for_mini(mini: DataProto) -> MicroLoss:
        norms, total_tokens = _token_totals(mini, normalizers)

        def micro_loss(part: DataProto) -> tuple[torch.Tensor, list[MetricValue]]:
            mask = response_mask(part).to(torch.float32)
            log_prob, entropy = forward(part.batch, 1.0, entropy_coeff != 0)
            nll = agg_loss(-log_prob, mask, cfg.sft_loss_agg_mode, **norms)
            loss = nll
            values: list[MetricValue] = []
            if entropy_coeff != 0:
                loss = loss - entropy_coeff * agg_loss(entropy, mask, cfg.sft_loss_agg_mode, **norms)
                values.append(("entropy", (entropy.detach() * mask).sum() / total_tokens, 1.0))
            values += [("loss", nll, 1.0), ("num_tokens", float(mask.sum()), 1.0)]
            return loss, values

        return micro_loss

    return for_mini


def pair_hyperparameters(cfg: ActorConfig, loss_type: str, alpha: float | None, beta: float | None,
                         gamma: float | None) -> dict[str, float]:
    """The keyword arguments of ``loss_type``'s loss: the given values, else the config's."""
    if loss_type not in PAIR_LOSS_TYPES:
        raise ValueError(f"unknown pair loss_type {loss_type!r}; expected one of {PAIR_LOSS_TYPES}")
    if loss_type == "redi":
        return {"alpha": cfg.redi_alpha if alpha is None else alpha}
    if loss_type == "dpo":
        return {"beta": cfg.dpo_beta if beta is None else beta}
    return {"beta": cfg.simpo_beta if beta is None else beta,
            "gamma": cfg.simpo_gamma if gamma is None else gamma, "cpo_alpha": cfg.simpo_cpo_alpha}


def pair_step_loss(loss_type: str, hyperparameters: Mapping[str, float], pair_forward: PairForward) -> StepLoss:
    """REDI / SimPO on length-normalised log-probs, DPO on summed ones against the reference
    (``ref_chosen_log_prob`` / ``ref_rejected_log_prob``, per token or per sequence); each a mean
    over the mini-batch's pairs. Metrics: ``loss``, then the loss function's own."""

    def for_mini(mini: DataProto) -> MicroLoss:
        num_pairs = len(mini)

        def micro_loss(part: DataProto) -> tuple[torch.Tensor, list[MetricValue]]:
            mb = part.batch
            weight = len(part) / num_pairs
            c_lp, r_lp = pair_forward(mb)
            c_mask = pair_side(mb, "chosen")["response_mask"].to(torch.float32)
            r_mask = pair_side(mb, "rejected")["response_mask"].to(torch.float32)
            if loss_type == "redi":
                loss, lm = redi_loss(c_lp, c_mask, r_lp, r_mask, num_pairs=num_pairs, **hyperparameters)
            elif loss_type == "simpo":
                loss, lm = simpo_loss(c_lp, c_mask, r_lp, r_mask, num_pairs=num_pairs, **hyperparameters)
            else:
                ref_c = seq_sum(mb["ref_chosen_log_prob"], c_mask)
                ref_r = seq_sum(mb["ref_rejected_log_prob"], r_mask)
                loss, lm = dpo_loss((c_lp * c_mask).sum(-1), (r_lp * r_mask).sum(-1), ref_c, ref_r,
                                    num_pairs=num_pairs, **hyperparameters)
            return loss, [("loss", loss, 1.0)] + [(name, value, weight) for name, value in lm.items()]

        return micro_loss

    return for_mini
