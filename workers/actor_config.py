"""The actor's settings: the ``actor`` keys ``workers/actor.py`` reads, checked once.

Names follow verl's ``actor_rollout_ref.actor`` section so a verl recipe's keys carry over;
:meth:`ActorConfig.from_any` accepts a dict, an OmegaConf ``DictConfig`` or an ``ActorConfig`` and
ignores keys it does not know (the worker passes its whole actor section).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from relift.algorithms.losses import LOSS_AGG_MODES

__all__ = ["ActorConfig"]

_NULLABLE = ("clip_ratio_c", "grad_clip")


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
        """Fill ``clip_ratio_low`` / ``clip_ratio_high`` from ``clip_ratio`` and reject bad values."""
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
