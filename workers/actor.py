"""The numerical core of the actor: forward passes in micro-batches, log-probs, and the updates.

``DataParallelActor(module, optimizer, config)`` wraps one causal LM (a plain ``nn.Module`` or one
sharded by FSDP2's ``fully_shard``; this file needs neither Ray nor ``torch.distributed``) and does:

* ``compute_log_prob(data, calculate_entropy)`` -> ``(log_probs [B, R], entropys [B, R] | None)``
* ``update_policy(data)`` -> metrics: PPO/GRPO mini-batches x ``ppo_epochs`` with gradient
  accumulation over micro-batches (clipped or no-clip surrogate, entropy bonus, KL loss)
* ``update_sft(data)`` -> metrics: NLL on demonstration tokens with an optional entropy bonus
  (ReLIFT's fine-tuning step, the SFT baseline)
* ``update_pairs(data, loss_type)`` -> metrics: REDI / DPO / SimPO on (chosen, rejected) pairs, both
  sides in one forward pass
* ``compute_pair_log_probs(data)`` -> per-token log-probs of both sides (the DPO reference pass)

Layout of a row (as the rollout writes it, see docs/data_keys.md): ``input_ids`` = left-padded
prompt of width P followed by the right-padded response of width R; the response tokens are
``responses`` and the logits that predict them are ``logits[:, P-1 : P+R-1]``. Logits are divided by
the temperature before the log-softmax, in chunks of ``logits_chunk_size`` tokens
(:mod:`relift.models.logits`), so no float32 [tokens, vocab] tensor of a whole micro-batch exists;
the prompt's logits are never materialised (``logits_to_keep``) when the model supports it.

Micro-batches: a fixed count of sequences (``ppo_micro_batch_size_per_gpu``) or, with
``use_dynamic_bsz``, the fewest balanced groups that keep each micro-batch within a token budget
(``ppo_max_token_len_per_gpu``). Each micro-batch is trimmed to its own widest prompt and response
(padding columns shared by all its rows are dropped) and the outputs are padded back to R.

Gradient accumulation: every micro-batch loss is normalised by the totals of its whole mini-batch
(:func:`relift.algorithms.losses.loss_normalizers`) and the micro-batch losses are summed, so the
accumulated gradient equals the full mini-batch's gradient in every ``loss_agg_mode``.

Optimiser step: grad-norm clipping at ``grad_clip``; a non-finite grad norm zeroes the gradients,
skips the step and is counted (``actor/skipped_steps``). The LR scheduler is NOT stepped here: the
caller owns it, so ReLIFT's SFT step cannot advance the RL schedule by accident. One optimiser is
used for every update kind unless ``update_sft``/``update_pairs`` get an ``optimizer=`` (the worker
decides whether the SFT step shares the RL optimiser's state).

Data-parallel note: under FSDP each rank normalises by its own mini-batch totals and FSDP averages
the gradients over ranks; with equal per-rank sequence counts this is the global mean for the
``seq-mean-*`` modes and a mean of per-rank token-means for ``token-mean`` (verl's behaviour). A
worker that wants the exact global token-mean can pass ``meta_info["global_num_tokens"]`` (the
global token total divided by the world size, per mini-batch: see :meth:`_normalizers`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from relift.algorithms.losses import (
    LOSS_AGG_MODES,
    agg_loss,
    compute_policy_loss,
    dpo_loss,
    kl_penalty,
    loss_normalizers,
    redi_loss,
    simpo_loss,
)
from relift.models.logits import logprobs_and_entropy
from relift.models.packing import token_budget_partitions
from relift.protocol import DataProto

__all__ = ["ActorConfig", "DataParallelActor", "PAIR_LOSS_TYPES"]

logger = logging.getLogger(__name__)

PAIR_LOSS_TYPES = ("redi", "dpo", "simpo")
_SEQ_KEYS = ("input_ids", "attention_mask", "position_ids", "responses")
_NULLABLE = ("clip_ratio_c", "grad_clip")


# ---------------------------------------------------------------------------------------- config


@dataclasses.dataclass
class ActorConfig:
    """The actor keys this file reads (verl's names); anything else in the given config is ignored."""

    ppo_mini_batch_size: int = 256            # sequences per optimiser step (after x n, per worker)
    ppo_micro_batch_size_per_gpu: int | None = None
    use_dynamic_bsz: bool = False
    ppo_max_token_len_per_gpu: int = 16384
    ppo_epochs: int = 1
    shuffle: bool = False
    seed: int = 0
    clip_ratio: float = 0.2                   # fallback for clip_ratio_low / clip_ratio_high
    clip_ratio_low: float | None = None
    clip_ratio_high: float | None = None
    clip_ratio_c: float | None = 3.0
    loss_agg_mode: str = "token-mean"
    loss_scale_factor: float | None = None    # seq-mean-token-sum-norm divisor (default: response width)
    loss_remove_clip: bool = False            # ReLIFT/LUFFY no-clip surrogate
    entropy_coeff: float = 0.0
    use_kl_loss: bool = False
    kl_loss_coef: float = 0.001
    kl_loss_type: str = "low_var_kl"
    grad_clip: float | None = 1.0
    logits_chunk_size: int = 1024
    # forward-only passes (old / ref log-probs); None falls back to the ppo_* values
    log_prob_micro_batch_size_per_gpu: int | None = None
    log_prob_use_dynamic_bsz: bool | None = None
    log_prob_max_token_len_per_gpu: int | None = None
    # fine-tuning and pair updates
    sft_entropy_coeff: float = 0.0
    sft_loss_agg_mode: str = "token-mean"
    sft_mini_batch_size: int | None = None    # None: the whole batch is one optimiser step
    pair_mini_batch_size: int | None = None   # None: the whole batch is one optimiser step
    redi_alpha: float = 0.8
    dpo_beta: float = 0.1
    simpo_beta: float = 2.0
    simpo_gamma: float = 1.0
    simpo_cpo_alpha: float = 0.0  # TRL's NLL term on the chosen completion (0 = off)

    @classmethod
    def from_any(cls, config: Any) -> ActorConfig:
        """Build from a dict, an OmegaConf DictConfig, or an ActorConfig; unknown keys are ignored."""
        if isinstance(config, ActorConfig):
            return config
        if config is None:
            raw: dict[str, Any] = {}
        else:
            try:
                from omegaconf import DictConfig, OmegaConf
                if isinstance(config, DictConfig):
                    config = OmegaConf.to_container(config, resolve=True)
            except ImportError:  # pragma: no cover - omegaconf is a dependency
                pass
            if not isinstance(config, Mapping):
                raise TypeError(f"actor config must be a dict or DictConfig, got {type(config).__name__}")
            raw = dict(config)
        names = {f.name for f in dataclasses.fields(cls)}
        # None means "default" except where it is a meaningful setting (no dual clip, no grad clipping)
        cfg = cls(**{k: v for k, v in raw.items() if k in names and (v is not None or k in _NULLABLE)})
        cfg.validate()
        return cfg

    def train_micro_batching(self) -> tuple[bool, int | None, int]:
        """(use_dynamic_bsz, micro-batch size, token budget) for the updates; raises if neither is set."""
        if not self.use_dynamic_bsz and not self.ppo_micro_batch_size_per_gpu:
            raise ValueError("updates need actor.ppo_micro_batch_size_per_gpu (> 0) or actor.use_dynamic_bsz=true "
                             "with actor.ppo_max_token_len_per_gpu")
        return self.use_dynamic_bsz, self.ppo_micro_batch_size_per_gpu, self.ppo_max_token_len_per_gpu

    def validate(self) -> None:
        if self.clip_ratio_low is None:
            self.clip_ratio_low = self.clip_ratio
        if self.clip_ratio_high is None:
            self.clip_ratio_high = self.clip_ratio
        if self.loss_agg_mode not in LOSS_AGG_MODES:
            raise ValueError(f"actor.loss_agg_mode={self.loss_agg_mode!r}; expected one of {LOSS_AGG_MODES}")
        if self.sft_loss_agg_mode not in LOSS_AGG_MODES:
            raise ValueError(f"actor.sft_loss_agg_mode={self.sft_loss_agg_mode!r}; expected one of {LOSS_AGG_MODES}")
        if self.clip_ratio_c is not None and not self.clip_ratio_c > 1.0:
            raise ValueError(f"actor.clip_ratio_c must be > 1.0 (dual clip) or null, got {self.clip_ratio_c}")
        if self.ppo_mini_batch_size <= 0:
            raise ValueError(f"actor.ppo_mini_batch_size must be positive, got {self.ppo_mini_batch_size}")
        if self.ppo_epochs < 1:
            raise ValueError(f"actor.ppo_epochs must be >= 1, got {self.ppo_epochs}")
        if self.ppo_micro_batch_size_per_gpu is not None and self.ppo_micro_batch_size_per_gpu <= 0:
            raise ValueError(f"actor.ppo_micro_batch_size_per_gpu must be positive, got "
                             f"{self.ppo_micro_batch_size_per_gpu}")
        if self.use_dynamic_bsz and self.ppo_max_token_len_per_gpu <= 0:
            raise ValueError(f"actor.ppo_max_token_len_per_gpu must be positive, got {self.ppo_max_token_len_per_gpu}")
        if self.logits_chunk_size <= 0:
            raise ValueError(f"actor.logits_chunk_size must be positive, got {self.logits_chunk_size}")


# ---------------------------------------------------------------------------------------- helpers


def _pad_columns(t: torch.Tensor, left: int, right: int, value: int | float = 0) -> torch.Tensor:
    if left == 0 and right == 0:
        return t
    return torch.nn.functional.pad(t, (left, right), value=value)


def _grad_norm_to_float(norm: torch.Tensor | float) -> float:
    if isinstance(norm, torch.Tensor):
        if hasattr(norm, "full_tensor"):  # DTensor (FSDP2 parameters)
            norm = norm.full_tensor()
        return float(norm.detach().float().item())
    return float(norm)


def _supports_logits_to_keep(module: nn.Module) -> bool:
    import inspect

    inner = getattr(module, "module", module)  # tolerate simple wrappers
    try:
        params = inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return False
    return "logits_to_keep" in params


class _MetricSums:
    """Collects per-optimiser-step values: sums over micro-batches, then appended once per step."""

    def __init__(self) -> None:
        self.lists: dict[str, list[float]] = defaultdict(list)
        self._step: dict[str, torch.Tensor | float] = {}

    def add(self, name: str, value: torch.Tensor | float, weight: float = 1.0) -> None:
        value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
        self._step[name] = self._step.get(name, 0.0) + value * weight

    def end_step(self) -> None:
        for name, value in self._step.items():
            self.lists[name].append(float(value.item()) if isinstance(value, torch.Tensor) else float(value))
        self._step = {}

    def append(self, name: str, value: float) -> None:
        self.lists[name].append(float(value))


# ---------------------------------------------------------------------------------------- actor


class DataParallelActor:
    """Log-probs and updates of one policy replica (or one FSDP shard of it).

    Args:
        module: a HF-style causal LM: ``module(input_ids=, attention_mask=, position_ids=,
            use_cache=False)`` returns an object with ``.logits``.
        optimizer: the optimiser over ``module``'s parameters; ``None`` for forward-only roles
            (reference policy).
        config: actor config (dict / DictConfig / :class:`ActorConfig`) with verl's key names.
        lr_scheduler: accepted for symmetry with the worker's constructor but never stepped here;
            the caller steps it after ``update_policy`` (and not after ``update_sft``).
    """

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer | None = None, config: Any = None,
                 lr_scheduler: Any = None) -> None:
        self.module = module
        self.optimizer = optimizer
        self.config = ActorConfig.from_any(config)
        self.lr_scheduler = lr_scheduler
        self._logits_to_keep = _supports_logits_to_keep(module)
        self._warned_temperature = False

    # ------------------------------------------------------------------------------ forward

    def _forward_micro_batch(self, batch: Mapping[str, torch.Tensor], temperature: float,
                             calculate_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probs (and entropy) of ``responses`` for one micro-batch, shape [b, R] float32.

        Columns of padding shared by all rows (left of the longest prompt, right of the longest
        response) are dropped before the forward; positions past a row's response are 0.
        """
        input_ids = batch["input_ids"]
        attention_mask = batch["attention_mask"]
        position_ids = batch["position_ids"]
        responses = batch["responses"]
        seq_len = input_ids.shape[1]
        resp_len = responses.shape[1]
        prompt_len = seq_len - resp_len
        if prompt_len < 1:
            raise ValueError(f"input_ids width {seq_len} must exceed the response width {resp_len} "
                             "(at least one prompt token predicts the first response token)")
        # trim shared padding: left of the earliest real prompt token, right of the longest response
        prompt_cols = attention_mask[:, :prompt_len].any(dim=0).nonzero()
        left = int(prompt_cols[0]) if prompt_cols.numel() else 0
        left = min(left, prompt_len - 1)
        resp_cols = attention_mask[:, prompt_len:].any(dim=0).nonzero()
        keep_r = int(resp_cols[-1]) + 1 if resp_cols.numel() else 1
        end = prompt_len + keep_r
        kwargs: dict[str, Any] = {"use_cache": False}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = keep_r + 1
        out = self.module(input_ids=input_ids[:, left:end], attention_mask=attention_mask[:, left:end],
                          position_ids=position_ids[..., left:end], **kwargs)
        logits = out.logits if hasattr(out, "logits") else out[0]
        # the last keep_r + 1 positions are P'-1 .. P'+keep_r-1; drop the final one (it predicts past R)
        logits = logits[:, -(keep_r + 1):-1]
        log_probs, entropy = logprobs_and_entropy(logits, responses[:, :keep_r], temperature=temperature,
                                                  chunk_size=self.config.logits_chunk_size,
                                                  with_entropy=calculate_entropy)
        # zero past each row's response, so results do not depend on how rows were grouped
        valid = attention_mask[:, prompt_len:end].to(log_probs.dtype)
        pad = resp_len - keep_r
        log_probs = _pad_columns(log_probs * valid, 0, pad)
        if entropy is not None:
            entropy = _pad_columns(entropy * valid, 0, pad)
        return log_probs, entropy

    def _micro_batches(self, data: DataProto, use_dynamic: bool, micro_batch_size: int | None,
                       max_token_len: int | None, lengths: torch.Tensor | None = None
                       ) -> tuple[list[DataProto], list[list[int]]]:
        """Split rows into micro-batches; returns the parts and each part's row indices."""
        n = len(data)
        if n == 0:
            return [], []
        if use_dynamic:
            if not max_token_len or max_token_len <= 0:
                raise ValueError("use_dynamic_bsz needs a positive max token length per micro-batch")
            if lengths is None:
                lengths = data.batch["attention_mask"].sum(dim=-1)
            groups = token_budget_partitions(lengths.tolist(), int(max_token_len))
        else:
            if not micro_batch_size or micro_batch_size <= 0:
                raise ValueError(f"micro-batch size must be positive, got {micro_batch_size}")
            groups = [list(range(s, min(s + micro_batch_size, n))) for s in range(0, n, micro_batch_size)]
        return [data[g] for g in groups], groups

    def _temperature(self, data: DataProto) -> float:
        temperature = data.meta_info.get("temperature")
        if temperature is None:
            if not self._warned_temperature:
                logger.warning("meta_info has no 'temperature'; log-probs use 1.0. Pass the rollout "
                               "temperature so the actor scores the distribution that was sampled.")
                self._warned_temperature = True
            return 1.0
        temperature = float(temperature)
        if temperature <= 0:  # greedy rollouts are scored at temperature 1
            return 1.0
        return temperature

    @staticmethod
    def _require(data: DataProto, keys: tuple[str, ...] | list[str], what: str) -> None:
        have = set(data.batch.keys()) if data.batch is not None else set()
        missing = [k for k in keys if k not in have]
        if missing:
            raise KeyError(f"{what} needs batch key(s) {missing}; the DataProto has {sorted(have)}")

    @staticmethod
    def _response_mask(data: DataProto) -> torch.Tensor:
        if "response_mask" in data.batch.keys():
            return data.batch["response_mask"]
        resp_len = data.batch["responses"].shape[1]
        return data.batch["attention_mask"][:, -resp_len:]

    @torch.no_grad()
    def compute_log_prob(self, data: DataProto, calculate_entropy: bool = False
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token log-probs (and entropies) of ``responses`` at ``meta_info['temperature']``.

        Micro-batching: ``meta_info`` keys ``micro_batch_size`` / ``use_dynamic_bsz`` /
        ``max_token_len`` override the config's ``log_prob_*`` keys, which fall back to ``ppo_*``.
        Returns float32 tensors [B, R] in the input's row order (0 past each response).
        """
        self._require(data, _SEQ_KEYS, "compute_log_prob")
        cfg = self.config
        meta = data.meta_info
        use_dynamic = meta.get("use_dynamic_bsz", cfg.log_prob_use_dynamic_bsz)
        if use_dynamic is None:
            use_dynamic = cfg.use_dynamic_bsz
        micro_bs = meta.get("micro_batch_size", cfg.log_prob_micro_batch_size_per_gpu) or \
            cfg.ppo_micro_batch_size_per_gpu or len(data)
        max_tokens = meta.get("max_token_len", cfg.log_prob_max_token_len_per_gpu) or cfg.ppo_max_token_len_per_gpu
        temperature = self._temperature(data)
        batch = data.select(batch_keys=list(_SEQ_KEYS))
        parts, groups = self._micro_batches(batch, bool(use_dynamic), micro_bs, max_tokens)
        was_training = self.module.training
        self.module.eval()
        try:
            n, resp_len = data.batch["responses"].shape
            device = data.batch["responses"].device
            log_probs = torch.zeros(n, resp_len, dtype=torch.float32, device=device)
            entropys = torch.zeros(n, resp_len, dtype=torch.float32, device=device) if calculate_entropy else None
            for part, idx in zip(parts, groups):
                lp, ent = self._forward_micro_batch(part.batch, temperature, calculate_entropy)
                index = torch.as_tensor(idx, device=device)
                log_probs[index] = lp.to(device)
                if entropys is not None:
                    entropys[index] = ent.to(device)
        finally:
            self.module.train(was_training)
        return log_probs, entropys

    # ------------------------------------------------------------------------------ optimiser

    def _optimizer_step(self, optimizer: torch.optim.Optimizer) -> tuple[float, bool]:
        """Clip, then step unless the grad norm is not finite; returns (grad_norm, stepped)."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        max_norm = self.config.grad_clip if self.config.grad_clip and self.config.grad_clip > 0 else math.inf
        norm = _grad_norm_to_float(torch.nn.utils.clip_grad_norm_(params, max_norm=max_norm))
        if not math.isfinite(norm):
            logger.warning("grad norm is %s: skipping this optimiser step (gradients zeroed)", norm)
            optimizer.zero_grad(set_to_none=True)
            return norm, False
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return norm, True

    def _get_optimizer(self, optimizer: torch.optim.Optimizer | None, what: str) -> torch.optim.Optimizer:
        optimizer = optimizer or self.optimizer
        if optimizer is None:
            raise RuntimeError(f"{what} needs an optimizer; this actor was built without one (forward-only role)")
        return optimizer

    @contextmanager
    def _lr_override(self, optimizer: torch.optim.Optimizer, lr: float | None) -> Iterator[None]:
        if lr is None:
            yield
            return
        saved = [g["lr"] for g in optimizer.param_groups]
        for g in optimizer.param_groups:
            g["lr"] = lr
        try:
            yield
        finally:
            for g, old in zip(optimizer.param_groups, saved):
                g["lr"] = old

    @staticmethod
    def _normalizers(mini: DataProto, mask: torch.Tensor) -> dict[str, Any]:
        norms: dict[str, Any] = loss_normalizers(mask)
        meta = mini.meta_info
        if meta.get("global_num_tokens") is not None:
            norms["num_tokens"] = meta["global_num_tokens"]
        if meta.get("global_num_seqs") is not None:
            norms["num_seqs"] = meta["global_num_seqs"]
        return norms

    def _split_mini_batches(self, data: DataProto, mini_batch_size: int, epoch: int) -> list[DataProto]:
        if self.config.shuffle:
            gen = torch.Generator().manual_seed(self.config.seed + 1000003 * epoch +
                                                int(data.meta_info.get("global_step", 0)))
            data = data[torch.randperm(len(data), generator=gen)]
        return data.split(mini_batch_size)

    # ------------------------------------------------------------------------------ updates

    def update_policy(self, data: DataProto) -> dict[str, Any]:
        """PPO-style update over ``ppo_epochs`` x mini-batches; returns verl-named metrics.

        Needs ``input_ids, attention_mask, position_ids, responses, response_mask, old_log_probs,
        advantages`` (+ ``ref_log_prob`` with ``use_kl_loss``). Without ``old_log_probs`` the update
        must be exactly on-policy (``ppo_epochs == 1`` and one mini-batch): the old log-probs are
        then the current ones, detached, which is what the skipped ``compute_log_prob`` would return. Per optimiser step it records
        ``actor/pg_loss``, ``actor/pg_clipfrac``, ``actor/ppo_kl``, ``actor/pg_clipfrac_lower``,
        ``actor/grad_norm``, ``actor/lr`` (+ ``actor/entropy`` with an entropy bonus, ``actor/kl_loss``
        with the KL loss); ``actor/kl_coef`` and ``actor/skipped_steps`` are scalars.
        """
        cfg = self.config
        optimizer = self._get_optimizer(None, "update_policy")
        on_policy = "old_log_probs" not in data.batch.keys()
        if on_policy and not (cfg.ppo_epochs == 1 and len(data) <= cfg.ppo_mini_batch_size):
            raise KeyError(f"update_policy needs 'old_log_probs' unless the update is exactly on-policy (one epoch, "
                           f"one mini-batch): ppo_epochs={cfg.ppo_epochs}, rows={len(data)}, "
                           f"ppo_mini_batch_size={cfg.ppo_mini_batch_size}")
        keys = list(_SEQ_KEYS) + ["advantages"] + ([] if on_policy else ["old_log_probs"])
        if cfg.use_kl_loss:
            keys.append("ref_log_prob")
        self._require(data, keys, "update_policy")
        if "response_mask" in data.batch.keys():
            keys.append("response_mask")
        temperature = self._temperature(data)
        batch = data.select(batch_keys=keys)
        calc_entropy = cfg.entropy_coeff != 0
        metrics = _MetricSums()
        skipped = 0
        self.module.train()
        for epoch in range(cfg.ppo_epochs):
            for mini in self._split_mini_batches(batch, cfg.ppo_mini_batch_size, epoch):
                mask_all = self._response_mask(mini)
                norms = self._normalizers(mini, mask_all)
                total_tokens = max(float(mask_all.sum()), 1.0)
                parts, _ = self._micro_batches(mini, *cfg.train_micro_batching())
                optimizer.zero_grad(set_to_none=True)
                for part in parts:
                    mb = part.batch
                    mask = self._response_mask(part).to(torch.float32)
                    weight = float(mask.sum()) / total_tokens
                    log_prob, entropy = self._forward_micro_batch(mb, temperature, calc_entropy)
                    old_log_prob = log_prob.detach() if on_policy else mb["old_log_probs"]
                    pg_loss, pg_metrics = compute_policy_loss(
                        old_log_prob, log_prob, mb["advantages"], mask,
                        clip_ratio_low=cfg.clip_ratio_low, clip_ratio_high=cfg.clip_ratio_high,
                        clip_ratio_c=cfg.clip_ratio_c, loss_agg_mode=cfg.loss_agg_mode,
                        clip=not cfg.loss_remove_clip, loss_scale_factor=cfg.loss_scale_factor, **norms)
                    loss = pg_loss
                    if calc_entropy:
                        ent_loss = agg_loss(entropy, mask, cfg.loss_agg_mode,
                                            loss_scale_factor=cfg.loss_scale_factor, **norms)
                        loss = loss - cfg.entropy_coeff * ent_loss
                        metrics.add("actor/entropy", (entropy.detach() * mask).sum() / total_tokens)
                    if cfg.use_kl_loss:
                        kld = kl_penalty(log_prob, mb["ref_log_prob"], cfg.kl_loss_type)
                        kl_loss = agg_loss(kld, mask, cfg.loss_agg_mode,
                                           loss_scale_factor=cfg.loss_scale_factor, **norms)
                        loss = loss + cfg.kl_loss_coef * kl_loss
                        metrics.add("actor/kl_loss", kl_loss)
                    loss.backward()
                    metrics.add("actor/pg_loss", pg_loss)
                    for name, value in pg_metrics.items():
                        metrics.add(f"actor/{name}", value, weight)
                grad_norm, stepped = self._optimizer_step(optimizer)
                skipped += not stepped
                metrics.end_step()
                metrics.append("actor/grad_norm", grad_norm)
                metrics.append("actor/lr", optimizer.param_groups[0]["lr"])
        out: dict[str, Any] = dict(metrics.lists)
        out["actor/kl_coef"] = cfg.kl_loss_coef if cfg.use_kl_loss else 0.0
        out["actor/skipped_steps"] = float(skipped)
        return out

    def update_sft(self, data: DataProto, entropy_coeff: float | None = None, *,
                   optimizer: torch.optim.Optimizer | None = None, lr: float | None = None,
                   mini_batch_size: int | None = None) -> dict[str, Any]:
        """Fine-tune on demonstrations: NLL on ``response_mask`` tokens minus an entropy bonus.

        Rows use the rollout layout: prompt (left-padded) + demonstration as ``responses``, with
        ``response_mask`` marking the tokens to learn (e.g. built from ``tgt_input_ids`` /
        ``tgt_attention_mask``). Log-probs at temperature 1. One optimiser step per mini-batch of
        ``mini_batch_size`` rows (argument, else ``meta_info['mini_batch_size']``, else config
        ``sft_mini_batch_size``, else the whole batch). ``lr`` temporarily overrides the optimiser's
        learning rate for these steps; ``optimizer`` uses a separate optimiser. Metrics: ``sft/loss``
        (the NLL), ``sft/entropy``, ``sft/grad_norm``, ``sft/lr``, ``sft/num_tokens``,
        ``sft/skipped_steps``.
        """
        cfg = self.config
        optimizer = self._get_optimizer(optimizer, "update_sft")
        coeff = cfg.sft_entropy_coeff if entropy_coeff is None else float(entropy_coeff)
        self._require(data, list(_SEQ_KEYS), "update_sft")
        keys = list(_SEQ_KEYS) + (["response_mask"] if "response_mask" in data.batch.keys() else [])
        batch = data.select(batch_keys=keys)
        mbs = mini_batch_size or data.meta_info.get("mini_batch_size") or cfg.sft_mini_batch_size or len(data)
        metrics = _MetricSums()
        skipped = 0
        self.module.train()
        with self._lr_override(optimizer, lr):
            for mini in batch.split(int(mbs)):
                mask_all = self._response_mask(mini)
                norms = self._normalizers(mini, mask_all)
                total_tokens = max(float(mask_all.sum()), 1.0)
                parts, _ = self._micro_batches(mini, *cfg.train_micro_batching())
                optimizer.zero_grad(set_to_none=True)
                for part in parts:
                    mask = self._response_mask(part).to(torch.float32)
                    log_prob, entropy = self._forward_micro_batch(part.batch, 1.0, coeff != 0)
                    nll = agg_loss(-log_prob, mask, cfg.sft_loss_agg_mode, **norms)
                    loss = nll
                    if coeff != 0:
                        loss = loss - coeff * agg_loss(entropy, mask, cfg.sft_loss_agg_mode, **norms)
                        metrics.add("sft/entropy", (entropy.detach() * mask).sum() / total_tokens)
                    loss.backward()
                    metrics.add("sft/loss", nll)
                    metrics.add("sft/num_tokens", float(mask.sum()))
                grad_norm, stepped = self._optimizer_step(optimizer)
                skipped += not stepped
                metrics.end_step()
                metrics.append("sft/grad_norm", grad_norm)
                metrics.append("sft/lr", optimizer.param_groups[0]["lr"])
        out: dict[str, Any] = dict(metrics.lists)
        out["sft/skipped_steps"] = float(skipped)
        return out

    # ------------------------------------------------------------------------------ pairs

    @staticmethod
    def _side(batch: Mapping[str, torch.Tensor], side: str) -> dict[str, torch.Tensor]:
        out = {k: batch[f"{side}_{k}"] for k in _SEQ_KEYS}
        mask_key = f"{side}_response_mask"
        resp_len = out["responses"].shape[1]
        out["response_mask"] = batch[mask_key] if mask_key in batch.keys() else out["attention_mask"][:, -resp_len:]
        return out

    @staticmethod
    def _stack_sides(chosen: dict[str, torch.Tensor], rejected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Both sides as one batch [2b, P + R] (prompts left-padded, responses right-padded to fit)."""
        p_c = chosen["input_ids"].shape[1] - chosen["responses"].shape[1]
        p_r = rejected["input_ids"].shape[1] - rejected["responses"].shape[1]
        r_c, r_r = chosen["responses"].shape[1], rejected["responses"].shape[1]
        p_max, r_max = max(p_c, p_r), max(r_c, r_r)
        parts: dict[str, list[torch.Tensor]] = defaultdict(list)
        for side, p, r in ((chosen, p_c, r_c), (rejected, p_r, r_r)):
            lp, rp = p_max - p, r_max - r
            for key in ("input_ids", "attention_mask", "position_ids"):
                t = side[key]
                prompt, resp = t[..., :p], t[..., p:]
                parts[key].append(torch.cat([_pad_columns(prompt, lp, 0), _pad_columns(resp, 0, rp)], dim=-1))
            parts["responses"].append(_pad_columns(side["responses"], 0, rp))
        return {k: torch.cat(v, dim=0) for k, v in parts.items()}

    def _pair_forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs of chosen [b, Rc] and rejected [b, Rr] from ONE forward pass."""
        chosen, rejected = self._side(batch, "chosen"), self._side(batch, "rejected")
        stacked = self._stack_sides(chosen, rejected)
        log_prob, _ = self._forward_micro_batch(stacked, 1.0, False)
        b = chosen["input_ids"].shape[0]
        r_c, r_r = chosen["responses"].shape[1], rejected["responses"].shape[1]
        return log_prob[:b, :r_c], log_prob[b:, :r_r]

    def _pair_lengths(self, data: DataProto) -> torch.Tensor:
        return data.batch["chosen_attention_mask"].sum(-1) + data.batch["rejected_attention_mask"].sum(-1)

    def _pair_keys(self, data: DataProto, extra: tuple[str, ...] = ()) -> list[str]:
        keys = [f"{side}_{k}" for side in ("chosen", "rejected") for k in _SEQ_KEYS]
        self._require(data, keys + list(extra), "pair update")
        have = set(data.batch.keys())
        keys += [k for k in ("chosen_response_mask", "rejected_response_mask") if k in have]
        return keys + list(extra)

    @torch.no_grad()
    def compute_pair_log_probs(self, data: DataProto) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs of both sides (temperature 1), e.g. the reference pass for DPO.

        Store them as ``ref_chosen_log_prob`` / ``ref_rejected_log_prob`` for :meth:`update_pairs`.
        """
        batch = data.select(batch_keys=self._pair_keys(data))
        cfg = self.config
        micro_bs = data.meta_info.get("micro_batch_size") or cfg.log_prob_micro_batch_size_per_gpu or \
            cfg.ppo_micro_batch_size_per_gpu or len(data)
        use_dynamic = data.meta_info.get("use_dynamic_bsz", cfg.use_dynamic_bsz)
        max_tokens = data.meta_info.get("max_token_len") or cfg.ppo_max_token_len_per_gpu
        parts, groups = self._micro_batches(batch, bool(use_dynamic), micro_bs, max_tokens,
                                            lengths=self._pair_lengths(batch))
        n = len(data)
        r_c, r_r = data.batch["chosen_responses"].shape[1], data.batch["rejected_responses"].shape[1]
        device = data.batch["chosen_responses"].device
        chosen = torch.zeros(n, r_c, dtype=torch.float32, device=device)
        rejected = torch.zeros(n, r_r, dtype=torch.float32, device=device)
        was_training = self.module.training
        self.module.eval()
        try:
            for part, idx in zip(parts, groups):
                c, r = self._pair_forward(part.batch)
                index = torch.as_tensor(idx, device=device)
                chosen[index], rejected[index] = c.to(device), r.to(device)
        finally:
            self.module.train(was_training)
        return chosen, rejected

    def update_pairs(self, data: DataProto, loss_type: str, *, alpha: float | None = None,
                     beta: float | None = None, gamma: float | None = None,
                     optimizer: torch.optim.Optimizer | None = None, lr: float | None = None,
                     mini_batch_size: int | None = None) -> dict[str, Any]:
        """One optimiser step per mini-batch of (prompt, chosen, rejected) pairs.

        Columns, for ``side`` in chosen/rejected: ``{side}_input_ids``, ``{side}_attention_mask``,
        ``{side}_position_ids``, ``{side}_responses`` (+ optional ``{side}_response_mask``), in the
        rollout layout. DPO also needs ``ref_chosen_log_prob`` / ``ref_rejected_log_prob``: per-token
        [B, R_side] (see :meth:`compute_pair_log_probs`) or per-sequence sums [B].
        ``loss_type``: ``redi`` (alpha, default config ``redi_alpha``), ``dpo`` (beta, ``dpo_beta``),
        ``simpo`` (beta, gamma: ``simpo_beta``, ``simpo_gamma``). Metrics are prefixed with the loss
        type: ``<type>/loss``, the loss function's own metrics (``<type>/logps/chosen``, ...),
        ``<type>/grad_norm``, ``<type>/lr``, ``<type>/skipped_steps``.
        """
        if loss_type not in PAIR_LOSS_TYPES:
            raise ValueError(f"unknown pair loss_type {loss_type!r}; expected one of {PAIR_LOSS_TYPES}")
        cfg = self.config
        optimizer = self._get_optimizer(optimizer, "update_pairs")
        extra = ("ref_chosen_log_prob", "ref_rejected_log_prob") if loss_type == "dpo" else ()
        batch = data.select(batch_keys=self._pair_keys(data, extra))
        mbs = mini_batch_size or data.meta_info.get("mini_batch_size") or cfg.pair_mini_batch_size or len(data)
        if loss_type == "redi":
            hp = {"alpha": cfg.redi_alpha if alpha is None else alpha}
        elif loss_type == "dpo":
            hp = {"beta": cfg.dpo_beta if beta is None else beta}
        else:
            hp = {"beta": cfg.simpo_beta if beta is None else beta,
                  "gamma": cfg.simpo_gamma if gamma is None else gamma, "cpo_alpha": cfg.simpo_cpo_alpha}
        metrics = _MetricSums()
        skipped = 0
        self.module.train()
        with self._lr_override(optimizer, lr):
            for mini in batch.split(int(mbs)):
                num_pairs = len(mini)
                parts, _ = self._micro_batches(mini, *cfg.train_micro_batching(), lengths=self._pair_lengths(mini))
                optimizer.zero_grad(set_to_none=True)
                for part in parts:
                    mb = part.batch
                    weight = len(part) / num_pairs
                    c_lp, r_lp = self._pair_forward(mb)
                    c_mask = self._side(mb, "chosen")["response_mask"].to(torch.float32)
                    r_mask = self._side(mb, "rejected")["response_mask"].to(torch.float32)
                    if loss_type == "redi":
                        loss, lm = redi_loss(c_lp, c_mask, r_lp, r_mask, num_pairs=num_pairs, **hp)
                    elif loss_type == "simpo":
                        loss, lm = simpo_loss(c_lp, c_mask, r_lp, r_mask, num_pairs=num_pairs, **hp)
                    else:
                        ref_c = self._seq_sum(mb["ref_chosen_log_prob"], c_mask)
                        ref_r = self._seq_sum(mb["ref_rejected_log_prob"], r_mask)
                        loss, lm = dpo_loss((c_lp * c_mask).sum(-1), (r_lp * r_mask).sum(-1), ref_c, ref_r,
                                            num_pairs=num_pairs, **hp)
                    loss.backward()
                    metrics.add(f"{loss_type}/loss", loss)
                    for name, value in lm.items():
                        metrics.add(f"{loss_type}/{name}", value, weight)
                grad_norm, stepped = self._optimizer_step(optimizer)
                skipped += not stepped
                metrics.end_step()
                metrics.append(f"{loss_type}/grad_norm", grad_norm)
                metrics.append(f"{loss_type}/lr", optimizer.param_groups[0]["lr"])
        out: dict[str, Any] = dict(metrics.lists)
        out[f"{loss_type}/skipped_steps"] = float(skipped)
        return out

    @staticmethod
    def _seq_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if values.dim() == 1:
            return values.to(torch.float32)
        if values.shape != mask.shape:
            raise ValueError(f"reference log-probs of shape {tuple(values.shape)} do not match the response "
                             f"mask {tuple(mask.shape)}")
        return (values.to(torch.float32) * mask).sum(-1)
