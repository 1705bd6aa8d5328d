"""The one optimiser-step loop that the actor's PPO, SFT and pair updates share.

Every update kind is the same skeleton; only the loss of one micro-batch differs:

    for each mini-batch (one optimiser step):
        loss_of = step_loss(mini)           # the kind's per-step totals (loss normalisers)
        zero the gradients
        for each micro-batch of the mini-batch:
            loss, values = loss_of(part)    # forward + the kind's loss, already scaled so that
            loss.backward()                 # the micro-batch losses sum to the mini-batch loss
            add values to the step's metric sums
        clip the grad norm; step, or skip and count the step when the norm is not finite
        record the step's metrics, grad_norm and lr

:func:`run_optimizer_steps` is that loop. The caller supplies the mini-batches, how one is split
into micro-batches, and ``step_loss``; the loop owns the order of ``zero_grad`` / ``backward`` /
clipping / ``step`` and the metric bookkeeping, so the three update kinds cannot drift apart.

Non-finite grad norm: the gradients are zeroed, the parameters and optimiser state are left
untouched, a warning is logged, and the step is counted in ``<prefix>/skipped_steps``.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from relift.protocol import DataProto

__all__ = ["MetricValue", "MicroLoss", "StepLoss", "MetricSums", "lr_override", "optimizer_step",
           "run_optimizer_steps"]

logger = logging.getLogger(__name__)

# (name without prefix, value, weight): the step's metric is the sum over micro-batches of value * weight
MetricValue = tuple[str, torch.Tensor | float, float]
# one micro-batch -> (its share of the step's loss, metric values in the order they are reported)
MicroLoss = Callable[[DataProto], tuple[torch.Tensor, list[MetricValue]]]
# one mini-batch -> the MicroLoss of its micro-batches (closing over the mini-batch's totals)
StepLoss = Callable[[DataProto], MicroLoss]


class MetricSums:
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


def _grad_norm_to_float(norm: torch.Tensor | float) -> float:
    if isinstance(norm, torch.Tensor):
        if hasattr(norm, "full_tensor"):  # DTensor (FSDP2 parameters)
            norm = norm.full_tensor()
        return float(norm.detach().float().item())
    return float(norm)


def optimizer_step(module: nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float | None
                   ) -> tuple[float, bool]:
    """Clip at ``grad_clip`` (None or <= 0: no clipping), then step unless the grad norm is not
    finite; the gradients are zeroed either way. Returns (grad_norm before clipping, stepped)."""
    params = [p for p in module.parameters() if p.requires_grad]
    max_norm = grad_clip if grad_clip and grad_clip > 0 else math.inf
    norm = _grad_norm_to_float(torch.nn.utils.clip_grad_norm_(params, max_norm=max_norm))
    if not math.isfinite(norm):
        logger.warning("grad norm is %s: skipping this optimiser step (gradients zeroed)", norm)
        optimizer.zero_grad(set_to_none=True)
        return norm, False
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm, True


@contextmanager
def lr_override(optimizer: torch.optim.Optimizer, lr: float | None) -> Iterator[None]:
    """Set every param group's learning rate to ``lr`` (None: leave it) and restore it on exit."""
    if lr is None:
        yield
        return
    saved = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] = lr
    try:
        yield
    finally:
        for g, old in zip(optimizer.param_groups, saved, strict=True):
            g["lr"] = old


def run_optimizer_steps(module: nn.Module, optimizer: torch.optim.Optimizer, minis: Iterable[DataProto],
                        split: Callable[[DataProto], list[DataProto]], step_loss: StepLoss, *, prefix: str,
                        grad_clip: float | None, lr: float | None = None,
                        scalars: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One optimiser step per mini-batch of ``minis``, gradients accumulated over ``split(mini)``.

    Args:
        module: the trained model (put in train mode; its trainable parameters are clipped).
        minis: the mini-batches, consumed lazily (so a shuffle per epoch happens when it is reached).
        split: a mini-batch -> its micro-batches (called after ``step_loss`` for that mini-batch).
        step_loss: a mini-batch -> the loss of one of its micro-batches (see :data:`StepLoss`).
        prefix: metric name prefix (``actor``, ``sft``, ``redi``, ...).
        lr: a learning rate for these steps only (restored afterwards); None keeps the optimiser's.
        scalars: extra one-off metrics, reported before ``<prefix>/skipped_steps``.

    Returns ``{<prefix>/<name>: [one value per step]}`` for the micro-batch values, ``grad_norm`` and
    ``lr``, then ``scalars`` and ``<prefix>/skipped_steps`` (a float count).
    """
    metrics = MetricSums()
    skipped = 0
    module.train()
    with lr_override(optimizer, lr):
        for mini in minis:
            loss_of = step_loss(mini)
            parts = split(mini)
            optimizer.zero_grad(set_to_none=True)
            for part in parts:
                loss, values = loss_of(part)
                loss.backward()
                for name, value, weight in values:
                    metrics.add(f"{prefix}/{name}", value, weight)
            grad_norm, stepped = optimizer_step(module, optimizer, grad_clip)
            skipped += not stepped
            metrics.end_step()
            metrics.append(f"{prefix}/grad_norm", grad_norm)
            metrics.append(f"{prefix}/lr", optimizer.param_groups[0]["lr"])
    out: dict[str, Any] = dict(metrics.lists)
    out.update(scalars or {})
    out[f"{prefix}/skipped_steps"] = float(skipped)
    return out
