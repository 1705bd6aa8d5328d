"""One set of weights for actor and HF rollout in one process (issue 18.4).

With one policy worker (world size 1) every parameter is whole on its single rank: the module is
either not wrapped at all (fp32, no offload: ``workers.fsdp_model.needs_fsdp``) or FSDP2's sharded
parameter's local tensor IS the full weight. The rollout's module then needs no copy of its
own: its parameters are bound to those local tensors (same storage, ``requires_grad=False``), so
every in-place optimiser step is seen by the next generation with nothing to sync. Generating
through the FSDP module itself would instead all-gather (copy) every layer at every decoding step.

:func:`bind_shared_weights` (re)binds and is cheap; :mod:`workers.rollout_engine` calls it where a
weight sync would run, so a step that replaced the actor's storage (e.g. a checkpoint load that
assigns new tensors) is picked up too. Only same-dtype sharing is possible (a bf16 rollout of an
fp32 actor needs its copy).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["local_weights", "bind_shared_weights", "can_share"]


def _local(t: torch.Tensor) -> torch.Tensor:
    """The tensor's own storage: a DTensor's local shard (the full tensor on a 1-rank mesh)."""
    if type(t).__name__ == "DTensor":
        t = t.to_local()
    return t.detach()


def local_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of ``module`` as plain tensors sharing its storage."""
    return {name: _local(t) for name, t in module.state_dict(keep_vars=True).items()}


def can_share(actor: nn.Module, world_size: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether a rollout in ``dtype`` on ``device`` can read ``actor``'s weights in place (whole, same
    dtype, same device type: an offloaded or mixed-precision actor cannot be shared)."""
    if world_size != 1:
        return False
    return all(_local(p).dtype == dtype and _local(p).device.type == device.type for p in actor.parameters())


@torch.no_grad()
def bind_shared_weights(actor: nn.Module, rollout: nn.Module) -> int:
    """Point every weight of ``rollout`` at ``actor``'s storage; returns how many were (re)bound.

    Names must match (the same HF class on both sides); a tied ``lm_head.weight`` may be absent
    from the actor's state dict and is re-tied. Raises KeyError naming missing or extra weights.
    """
    source = local_weights(actor)
    target = rollout.state_dict(keep_vars=True)
    tie = bool(getattr(getattr(rollout, "config", None), "tie_word_embeddings", False))
    missing = sorted(set(target) - set(source) - ({"lm_head.weight"} if tie else set()))
    extra = sorted(set(source) - set(target))
    if missing or extra:
        raise KeyError(f"actor and rollout modules differ: missing {missing[:8]}, extra {extra[:8]}")
    stale = {k: v for k, v in source.items() if target[k].data_ptr() != v.data_ptr() or target[k].shape != v.shape}
    if stale:
        rollout.load_state_dict(stale, strict=False, assign=True)
        for p in rollout.parameters():
            p.requires_grad_(False)
        if tie and hasattr(rollout, "tie_weights"):
            rollout.tie_weights()
    return len(stale)
