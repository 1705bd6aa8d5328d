"""AdamW and learning-rate schedules (constant / cosine / linear, each with linear warmup).

The schedule is a multiplier on the base learning rate, evaluated per scheduler step. The trainer
steps the scheduler once per RL step (once per ``update_actor`` call), so ``total_steps`` is the
number of training steps, not of optimiser steps, as in verl. Warmup is linear and reaches the full
rate on the last warmup step: factor ``(step + 1) / warmup`` for ``step < warmup`` (the first step
already learns; a zero-lr first step would waste a whole rollout).

Config keys (verl names, under ``actor_rollout_ref.actor.optim``): ``lr``, ``betas``,
``weight_decay``, ``eps``, ``lr_warmup_steps`` (``-1``/``None``: use the ratio),
``lr_warmup_steps_ratio``, ``min_lr_ratio``, ``warmup_style`` or ``lr_scheduler_type``
(``constant`` | ``cosine`` | ``linear``), ``num_cycles`` (cosine, default 0.5 = half a wave),
``total_training_steps`` (filled in by the trainer).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["SCHEDULES", "ScheduleFn", "resolve_warmup_steps", "build_optimizer", "build_lr_scheduler",
           "build_lr_scheduler_from_config"]

logger = logging.getLogger(__name__)

SCHEDULES = ("constant", "cosine", "linear")


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    """Read a key from a dict, an OmegaConf node or an attribute object."""
    if cfg is None:
        return default
    if isinstance(cfg, Mapping) or hasattr(cfg, "get"):
        try:
            val = cfg.get(key, default)
        except Exception:  # noqa: BLE001 - OmegaConf struct mode raises on unknown keys
            val = default
        return default if val is None else val
    return getattr(cfg, key, default)


def resolve_warmup_steps(total_steps: int, lr_warmup_steps: int | None = None,
                         lr_warmup_steps_ratio: float = 0.0) -> int:
    """Warmup steps from an explicit count (wins when >= 0) or a ratio of ``total_steps``."""
    if lr_warmup_steps is not None and lr_warmup_steps >= 0:
        return int(lr_warmup_steps)
    if not 0.0 <= lr_warmup_steps_ratio <= 1.0:
        raise ValueError(f"lr_warmup_steps_ratio must be in [0, 1], got {lr_warmup_steps_ratio}")
    if lr_warmup_steps_ratio > 0 and total_steps <= 0:
        raise ValueError("lr_warmup_steps_ratio > 0 needs total_training_steps > 0 "
                         f"(got total_training_steps={total_steps}); set lr_warmup_steps instead")
    return int(lr_warmup_steps_ratio * max(total_steps, 0))


@dataclass
class ScheduleFn:
    """The lr multiplier; a callable object so LambdaLR checkpoints its settings with it."""

    schedule: str = "constant"
    warmup_steps: int = 0
    total_steps: int = 0
    min_lr_ratio: float = 0.0
    num_cycles: float = 0.5

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown lr schedule {self.schedule!r}; choose one of {SCHEDULES}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup steps must be >= 0, got {self.warmup_steps}")
        if self.schedule != "constant" and self.total_steps <= 0:
            raise ValueError(f"the {self.schedule} schedule needs total_training_steps > 0, got {self.total_steps}")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return float(step + 1) / float(self.warmup_steps)
        if self.schedule == "constant":
            return 1.0
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, float(step - self.warmup_steps) / decay_steps)
        if self.schedule == "cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * 2.0 * self.num_cycles * progress))
        else:  # linear
            shape = 1.0 - progress
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * shape


def build_optimizer(params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]], optim_cfg: Any = None,
                    **overrides: Any) -> torch.optim.AdamW:
    """AdamW from ``optim_cfg`` (lr, betas, eps, weight_decay); keyword overrides win."""
    lr = float(overrides.get("lr", _get(optim_cfg, "lr", 1e-6)))
    betas = tuple(float(b) for b in overrides.get("betas", _get(optim_cfg, "betas", (0.9, 0.999))))
    eps = float(overrides.get("eps", _get(optim_cfg, "eps", 1e-8)))
    weight_decay = float(overrides.get("weight_decay", _get(optim_cfg, "weight_decay", 0.01)))
    if lr < 0:
        raise ValueError(f"optim.lr must be >= 0, got {lr}")
    if len(betas) != 2:
        raise ValueError(f"optim.betas must have two values, got {betas}")
    params = list(params)
    if not params:
        raise ValueError("build_optimizer got no parameters")
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, schedule: str = "constant",
                       warmup_steps: int | None = None, warmup_ratio: float = 0.0, min_lr_ratio: float = 0.0,
                       num_cycles: float = 0.5) -> LambdaLR:
    """A LambdaLR over :class:`ScheduleFn`; ``warmup_steps`` (>= 0) wins over ``warmup_ratio``."""
    warm = resolve_warmup_steps(total_steps, warmup_steps, warmup_ratio)
    fn = ScheduleFn(schedule=schedule, warmup_steps=warm, total_steps=int(total_steps),
                    min_lr_ratio=float(min_lr_ratio), num_cycles=float(num_cycles))
    logger.info("lr schedule %s: warmup %d of %d steps, min_lr_ratio %.3g", schedule, warm, total_steps,
                min_lr_ratio)
    return LambdaLR(optimizer, lr_lambda=fn)


def build_lr_scheduler_from_config(optimizer: torch.optim.Optimizer, optim_cfg: Any,
                                   total_steps: int | None = None) -> LambdaLR:
    """The scheduler that ``actor_rollout_ref.actor.optim`` describes (verl key names)."""
    schedule = _get(optim_cfg, "lr_scheduler_type", None) or _get(optim_cfg, "warmup_style", "constant")
    total = total_steps if total_steps is not None else int(_get(optim_cfg, "total_training_steps", 0) or 0)
    warm = _get(optim_cfg, "lr_warmup_steps", -1)
    return build_lr_scheduler(optimizer, total_steps=int(total), schedule=str(schedule),
                              warmup_steps=None if warm is None else int(warm),
                              warmup_ratio=float(_get(optim_cfg, "lr_warmup_steps_ratio", 0.0)),
                              min_lr_ratio=float(_get(optim_cfg, "min_lr_ratio", 0.0)),
                              num_cycles=float(_get(optim_cfg, "num_cycles", 0.5)))
