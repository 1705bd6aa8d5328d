"""Policy-gradient, KL, fine-tuning and preference losses, and the loss aggregation modes.

Conventions shared by every loss here:

* Inputs are per-token matrices [B, T] with a 0/1 mask of the same shape (per-sequence sums for DPO).
* Each returns ``(loss, metrics)``. ``loss`` is a 0-d tensor with gradient. ``metrics`` values are
  0-d DETACHED float32 tensors on the input's device, not python floats: turning them into floats
  would force a device sync on every micro-batch; the caller calls ``.item()`` (or
  :func:`metrics_to_floats`) once when it logs.
* Gradient accumulation: pass the totals of the whole mini-batch (``num_tokens`` / ``num_seqs`` from
  :func:`loss_normalizers`, ``num_pairs`` for pair losses) to every micro-batch's loss. The SUM of the
  micro-batch losses then equals the loss of the whole mini-batch, in every aggregation mode, so the
  accumulated gradient equals the full mini-batch gradient. Do not divide by the number of
  micro-batches on top. Under data parallelism with gradient averaging over R ranks, pass the
  global totals divided by R to get the exact global mean.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from relift.algorithms.masked import masked_mean

__all__ = [
    "LOSS_AGG_MODES",
    "KL_PENALTY_KINDS",
    "agg_loss",
    "loss_normalizers",
    "compute_policy_loss",
    "kl_penalty",
    "sft_loss",
    "redi_loss",
    "dpo_loss",
    "simpo_loss",
    "metrics_to_floats",
]

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")

# canonical kind -> accepted names
_KL_ALIASES = {"k1": "k1", "kl": "k1", "abs": "abs", "k2": "k2", "mse": "k2", "k3": "k3", "low_var_kl": "k3"}
KL_PENALTY_KINDS = tuple(_KL_ALIASES)

_TINY = 1e-8
Number = int | float | torch.Tensor


def _detach(x: torch.Tensor) -> torch.Tensor:
    return x.detach().float()


def metrics_to_floats(metrics: dict[str, Any]) -> dict[str, Any]:
    """Turn 0-d tensors in a metrics dict into python floats (one sync per value; call when logging)."""
    return {k: (float(v.item()) if isinstance(v, torch.Tensor) and v.numel() == 1 else v) for k, v in metrics.items()}


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError("shape mismatch: " + ", ".join(f"{k}={v}" for k, v in shapes.items()))


def _denominator(given: Number | None, local: torch.Tensor, name: str) -> torch.Tensor | float:
    if given is None:
        return local.clamp(min=_TINY)
    if isinstance(given, torch.Tensor):
        if bool((given < 0).any()):
            raise ValueError(f"{name} must be >= 0, got {given}")
        return given.to(local.dtype).clamp(min=_TINY)
    if given < 0:
        raise ValueError(f"{name} must be >= 0, got {given}")
    return max(float(given), _TINY)


# ------------------------------------------------------------------------------ aggregation


def loss_normalizers(response_mask: torch.Tensor) -> dict[str, int]:
    """Totals of a whole mini-batch for :func:`agg_loss`'s gradient-accumulation hook.

    ``num_tokens`` = number of valid tokens, ``num_seqs`` = number of rows with at least one valid
    token (fully masked rows are excluded from the sequence modes, here and in :func:`agg_loss`).
    """
    if response_mask.dim() != 2:
        raise ValueError(f"response_mask must be [B, T], got shape {tuple(response_mask.shape)}")
    valid = response_mask != 0
    return {"num_tokens": int(valid.sum().item()), "num_seqs": int(valid.any(dim=-1).sum().item())}


def agg_loss(loss_mat: torch.Tensor, loss_mask: torch.Tensor, loss_agg_mode: str, *,
             num_tokens: Number | None = None, num_seqs: Number | None = None,
             loss_scale_factor: float | None = None) -> torch.Tensor:
    """Reduce a [B, T] loss matrix to a scalar.

    * ``token-mean``: ``sum(L*M) / num_tokens`` (default: ``sum(M)``);
    * ``seq-mean-token-sum``: ``sum_i(sum_t L*M) / num_seqs``;
    * ``seq-mean-token-mean``: ``sum_i(sum_t L*M / sum_t M) / num_seqs``;
    * ``seq-mean-token-sum-norm``: ``sum(L*M) / loss_scale_factor`` (default: ``T = loss_mat.shape[-1]``,
      a constant normaliser, Dr.GRPO / ReLIFT; pass the configured max response length when
      micro-batches are trimmed to different widths).

    ``num_seqs`` defaults to the number of rows with at least one valid token. With the mini-batch
    totals given, summing the micro-batch results gives the whole mini-batch's value.
    """
    _check_same_shape(loss_mat=loss_mat, loss_mask=loss_mask)
    if loss_mat.dim() != 2:
        raise ValueError(f"agg_loss expects [B, T] tensors, got shape {tuple(loss_mat.shape)}")
    mask = loss_mask.to(loss_mat.dtype)
    if loss_agg_mode == "token-mean":
        return (loss_mat * mask).sum() / _denominator(num_tokens, mask.sum(), "num_tokens")
    if loss_agg_mode in ("seq-mean-token-sum", "seq-mean-token-mean"):
        tokens_per_seq = mask.sum(dim=-1)
        seq_losses = (loss_mat * mask).sum(dim=-1)
        if loss_agg_mode == "seq-mean-token-mean":
            seq_losses = seq_losses / tokens_per_seq.clamp(min=_TINY)
        seq_valid = (tokens_per_seq > 0).to(loss_mat.dtype)
        return (seq_losses * seq_valid).sum() / _denominator(num_seqs, seq_valid.sum(), "num_seqs")
    if loss_agg_mode == "seq-mean-token-sum-norm":
        scale = float(loss_mat.shape[-1]) if loss_scale_factor is None else float(loss_scale_factor)
        if scale <= 0:
            raise ValueError(f"loss_scale_factor must be > 0, got {loss_scale_factor}")
        return (loss_mat * mask).sum() / scale
    raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; expected one of {', '.join(LOSS_AGG_MODES)}")


# ------------------------------------------------------------------------------ policy loss


def compute_policy_loss(old_log_prob: torch.Tensor, log_prob: torch.Tensor, advantages: torch.Tensor,
                        response_mask: torch.Tensor, clip_ratio_low: float = 0.2, clip_ratio_high: float = 0.2,
                        clip_ratio_c: float | None = 3.0, loss_agg_mode: str = "token-mean", clip: bool = True,
                        *, num_tokens: Number | None = None, num_seqs: Number | None = None,
                        loss_scale_factor: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate with dual clip; returns ``(pg_loss, metrics)``.

    ``d = clamp(logp - old, -20, 20)``, ``rho = exp(d)``; ``Lc = max(-A rho, -A clamp(rho, 1-lo, 1+hi))``;
    for ``A < 0``: ``min(Lc, -A c)`` (dual clip, ``c > 1``; ``clip_ratio_c=None`` turns it off).
    ``clip=False`` (ReLIFT/LUFFY ``loss_remove_clip``) uses ``-A rho``; the clip fractions are then 0.
    Metrics: ``pg_clipfrac``, ``ppo_kl`` (masked mean of ``old - logp``), ``pg_clipfrac_lower``, all
    local to this micro-batch (token-mean over its mask).
    """
    _check_same_shape(old_log_prob=old_log_prob, log_prob=log_prob, advantages=advantages,
                      response_mask=response_mask)
    if clip:
        if not (clip_ratio_low >= 0 and clip_ratio_high >= 0):
            raise ValueError(f"clip ratios must be >= 0, got low={clip_ratio_low}, high={clip_ratio_high}")
        if clip_ratio_c is not None and not clip_ratio_c > 1.0:
            raise ValueError(f"dual-clip constant clip_ratio_c must be > 1.0, got {clip_ratio_c} "
                             "(use clip_ratio_c=None to disable dual clip)")
    mask = response_mask.to(log_prob.dtype)
    neg_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(neg_kl)
    ppo_kl = masked_mean(-neg_kl, mask)
    losses1 = -advantages * ratio
    zero = torch.zeros((), dtype=torch.float32, device=log_prob.device)
    if clip:
        losses2 = -advantages * torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
        clipped = torch.maximum(losses1, losses2)
        pg_clipfrac = masked_mean(torch.gt(losses2, losses1).to(mask.dtype), mask)
        if clip_ratio_c is not None:
            losses3 = -advantages * clip_ratio_c
            negative = advantages < 0
            pg_clipfrac_lower = masked_mean((torch.gt(clipped, losses3) & negative).to(mask.dtype), mask)
            pg_losses = torch.where(negative, torch.minimum(clipped, losses3), clipped)
        else:
            pg_clipfrac_lower = zero
            pg_losses = clipped
    else:
        pg_losses = losses1
        pg_clipfrac, pg_clipfrac_lower = zero, zero
    loss = agg_loss(pg_losses, mask, loss_agg_mode, num_tokens=num_tokens, num_seqs=num_seqs,
                    loss_scale_factor=loss_scale_factor)
    metrics = {"pg_clipfrac": _detach(pg_clipfrac), "ppo_kl": _detach(ppo_kl),
               "pg_clipfrac_lower": _detach(pg_clipfrac_lower)}
    return loss, metrics


def kl_penalty(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token KL estimate of the policy vs the reference.

    ``k1``/``kl``: ``logp - ref``; ``abs``: ``|logp - ref|``; ``k2``/``mse``: ``0.5 (logp - ref)^2``;
    ``k3``/``low_var_kl``: ``d = clamp(ref - logp, -20, 20)``, ``clamp(exp(d) - d - 1, -10, 10)``.
    """
    _check_same_shape(log_prob=log_prob, ref_log_prob=ref_log_prob)
    canonical = _KL_ALIASES.get(kind) if isinstance(kind, str) else None
    if canonical is None:
        raise ValueError(f"unknown KL penalty kind {kind!r}; expected one of {', '.join(KL_PENALTY_KINDS)}")
    if canonical == "k1":
        return log_prob - ref_log_prob
    if canonical == "abs":
        return (log_prob - ref_log_prob).abs()
    if canonical == "k2":
        return 0.5 * (log_prob - ref_log_prob).square()
    d = torch.clamp(ref_log_prob - log_prob, min=-20.0, max=20.0)
    return torch.clamp(torch.exp(d) - d - 1.0, min=-10.0, max=10.0)


# --------------------------------------------------------------------------- offline losses


def sft_loss(log_probs: torch.Tensor, loss_mask: torch.Tensor, loss_agg_mode: str = "token-mean", *,
             num_tokens: Number | None = None, num_seqs: Number | None = None,
             loss_scale_factor: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative log-likelihood of the masked (demonstration/completion) tokens.

    Aggregated with :func:`agg_loss` (token-mean by default; same accumulation hooks).
    Metrics: ``nll`` (local token-mean NLL) and ``num_tokens`` (local count).
    """
    _check_same_shape(log_probs=log_probs, loss_mask=loss_mask)
    mask = loss_mask.to(log_probs.dtype)
    loss = agg_loss(-log_probs, mask, loss_agg_mode, num_tokens=num_tokens, num_seqs=num_seqs,
                    loss_scale_factor=loss_scale_factor)
    metrics = {"nll": _detach(masked_mean(-log_probs, mask)), "num_tokens": _detach(mask.sum())}
    return loss, metrics


def _seq_sum_and_len(logps: torch.Tensor, mask: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if logps.shape != mask.shape or logps.dim() != 2:
        raise ValueError(f"{name}: log-probs and mask must both be [B, T], got {tuple(logps.shape)} "
                         f"and {tuple(mask.shape)}")
    m = mask.to(logps.dtype)
    return (logps * m).sum(dim=-1), m.sum(dim=-1).clamp(min=1.0)


def _pair_mean(values: torch.Tensor, num_pairs: Number | None) -> torch.Tensor:
    return values.sum() / _denominator(num_pairs, torch.tensor(float(values.shape[0]), device=values.device),
                                       "num_pairs")


def _check_pairs(chosen: torch.Tensor, rejected: torch.Tensor) -> None:
    if chosen.shape[0] != rejected.shape[0]:
        raise ValueError(f"chosen and rejected must hold the same number of pairs, got {chosen.shape[0]} "
                         f"and {rejected.shape[0]}")


def redi_loss(chosen_logps: torch.Tensor, chosen_mask: torch.Tensor, rejected_logps: torch.Tensor,
              rejected_mask: torch.Tensor, alpha: float = 0.8, *, num_pairs: Number | None = None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """REDI (reference-free): per pair ``-LP_w/|y_w| + alpha * LP_l/|y_l|``, mean over pairs.

    ``LP`` sums the per-token log-probs over the mask, ``|y|`` counts mask tokens (at least 1).
    ``num_pairs``: mini-batch pair count for gradient accumulation (default: this batch's).
    Metrics: ``logps/chosen``, ``logps/rejected`` (length-normalised: mean log-prob per token),
    ``loss/chosen``, ``loss/rejected``, ``margins`` (chosen minus rejected normalised log-prob) and
    ``accuracies`` (fraction of pairs whose chosen per-token log-prob is above the rejected one): the
    numbers to watch in REDI; a collapsing ``logps/rejected`` (alpha near 1) shows there first.
    """
    _check_pairs(chosen_logps, rejected_logps)
    if alpha < 0:
        raise ValueError(f"redi alpha must be >= 0, got {alpha}")
    lp_w, n_w = _seq_sum_and_len(chosen_logps, chosen_mask, "redi_loss chosen")
    lp_l, n_l = _seq_sum_and_len(rejected_logps, rejected_mask, "redi_loss rejected")
    avg_w, avg_l = lp_w / n_w, lp_l / n_l
    per_pair = -avg_w + alpha * avg_l
    loss = _pair_mean(per_pair, num_pairs)
    metrics = {"logps/chosen": _detach(avg_w.mean()), "logps/rejected": _detach(avg_l.mean()),
               "loss/chosen": _detach((-avg_w).mean()), "loss/rejected": _detach((alpha * avg_l).mean()),
               "margins": _detach((avg_w - avg_l).mean()),
               "accuracies": _detach((avg_w > avg_l).float().mean())}
    return loss, metrics


def _preference_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                        chosen_logps: torch.Tensor, rejected_logps: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"rewards/chosen": _detach(chosen_rewards.mean()),
            "rewards/rejected": _detach(rejected_rewards.mean()),
            "rewards/margins": _detach((chosen_rewards - rejected_rewards).mean()),
            "rewards/accuracies": _detach((chosen_rewards > rejected_rewards).float().mean()),
            "logps/chosen": _detach(chosen_logps.mean()),
            "logps/rejected": _detach(rejected_logps.mean())}


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float = 0.1, *,
             num_pairs: Number | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DPO: ``-log sigmoid(beta ((LP_w - LPref_w) - (LP_l - LPref_l)))``, mean over pairs.

    Inputs are per-sequence SUMMED log-probs [B]. Metrics (TRL names): ``rewards/chosen``,
    ``rewards/rejected`` (``beta (LP - LPref)``), ``rewards/margins``, ``rewards/accuracies``,
    ``logps/chosen``, ``logps/rejected``.
    """
    _check_same_shape(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                      ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    if policy_chosen_logps.dim() != 1:
        raise ValueError(f"dpo_loss expects per-sequence log-prob sums [B], got {tuple(policy_chosen_logps.shape)}")
    if not beta > 0:
        raise ValueError(f"dpo beta must be > 0, got {beta}")
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps.detach())
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps.detach())
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    loss = _pair_mean(losses, num_pairs)
    return loss, _preference_metrics(chosen_rewards, rejected_rewards, policy_chosen_logps, policy_rejected_logps)


def simpo_loss(chosen_logps: torch.Tensor, chosen_mask: torch.Tensor, rejected_logps: torch.Tensor,
               rejected_mask: torch.Tensor, beta: float = 2.0, gamma: float = 1.0, *, cpo_alpha: float = 0.0,
               num_pairs: Number | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SimPO (reference-free): ``-log sigmoid(beta (LP_w/|y_w| - LP_l/|y_l|) - gamma)``, mean over pairs.

    Inputs are per-token log-prob matrices with their masks. Metrics as :func:`dpo_loss`, with rewards
    ``beta * LP/|y|`` and ``logps/*`` the length-normalised log-probs.
    ``cpo_alpha`` > 0 adds TRL's CPO/SimPO NLL term on the chosen completion (TRL ``CPOConfig.cpo_alpha``,
    default 0 here and in TRL's SimPO use): ``+ cpo_alpha * (-LP_w/|y_w|)``, averaged over pairs like the
    main term (TRL averages the NLL over all chosen tokens of the batch; per pair keeps it additive
    under gradient accumulation). Metric ``nll/chosen`` is that per-token NLL.
    """
    _check_pairs(chosen_logps, rejected_logps)
    if not beta > 0:
        raise ValueError(f"simpo beta must be > 0, got {beta}")
    lp_w, n_w = _seq_sum_and_len(chosen_logps, chosen_mask, "simpo_loss chosen")
    lp_l, n_l = _seq_sum_and_len(rejected_logps, rejected_mask, "simpo_loss rejected")
    avg_w, avg_l = lp_w / n_w, lp_l / n_l
    chosen_rewards, rejected_rewards = beta * avg_w, beta * avg_l
    if cpo_alpha < 0:
        raise ValueError(f"simpo cpo_alpha must be >= 0, got {cpo_alpha}")
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma)
    if cpo_alpha:
        losses = losses + cpo_alpha * (-avg_w)
    loss = _pair_mean(losses, num_pairs)
    metrics = _preference_metrics(chosen_rewards, rejected_rewards, avg_w, avg_l)
    metrics["nll/chosen"] = _detach((-avg_w).mean())
    return loss, metrics
