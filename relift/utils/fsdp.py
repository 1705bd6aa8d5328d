"""FSDP2 helpers: shard a HF causal LM per decoder layer, gather full weights, save/load local shards.

Sharding: ``fully_shard`` on every decoder layer, then on the root (embeddings, final norm, lm_head
and anything else left), so one layer's parameters are all-gathered at a time. On GPU the
parameters compute in bf16 and gradients reduce in fp32 (``MixedPrecisionPolicy``); on CPU
everything stays fp32 (gloo). ``CPUOffloadPolicy`` (params, grads and the optimiser step on the CPU)
is an option on GPU.

Checkpoints: each rank saves the *local shards* of its DTensors with ``torch.save`` (plain tensors:
no device mesh is pickled and no collective is needed to save) and loads them back into a model
sharded the same way. The world size is part of the checkpoint's metadata and checked on load
(``relift.utils.checkpoint.check_world_size``); to change it, export the HF model and start from it.
We chose per-rank files over ``torch.distributed.checkpoint`` because they are bit-exact, need no
collective on save, and are trivial to inspect; DCP's resharding is the thing we give up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn

__all__ = [
    "get_decoder_layers", "apply_fsdp2", "is_fsdp_module", "gather_full_state_dict", "local_model_state",
    "load_local_model_state", "local_optim_state", "load_local_optim_state", "move_optimizer_state",
    "clip_grad_norm", "model_device",
]

logger = logging.getLogger(__name__)


def _is_dtensor(t: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def get_decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks of a HF model (by ``_no_split_modules`` class names).

    Falls back to ``model.model.layers`` / ``model.transformer.h`` when the model does not name them.
    """
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names] if names else []
    if layers:
        return layers
    for path in ("model.layers", "transformer.h", "layers"):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, (nn.ModuleList, list)) and len(obj):
            return list(obj)
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__}: it names no "
                     "_no_split_modules and has no model.layers / transformer.h")


def is_fsdp_module(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def apply_fsdp2(model: nn.Module, *, mesh: Any = None, param_dtype: torch.dtype | None = None,
                reduce_dtype: torch.dtype | None = None, cpu_offload: bool = False,
                reshard_after_forward: bool = True) -> nn.Module:
    """Shard ``model`` in place with FSDP2: each decoder layer, then the root; returns the model.

    ``param_dtype``/``reduce_dtype`` set mixed precision (``torch.bfloat16``/``torch.float32`` on
    GPU; None keeps the parameters' dtype). ``cpu_offload`` keeps sharded params and grads on the
    CPU (the optimiser step then runs on the CPU too). The default process group must exist.
    """
    import torch.distributed as dist
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    if not dist.is_initialized():
        raise RuntimeError("apply_fsdp2 needs torch.distributed initialised (Worker.init_process_group)")
    if cpu_offload and not torch.cuda.is_available():
        logger.warning("cpu_offload asked for on a CPU-only machine: nothing to offload, ignoring it")
        cpu_offload = False
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    offload = CPUOffloadPolicy(pin_memory=True) if cpu_offload else OffloadPolicy()
    kwargs: dict[str, Any] = {"mp_policy": mp, "offload_policy": offload}
    if mesh is not None:
        kwargs["mesh"] = mesh
    layers = get_decoder_layers(model)
    for layer in layers:
        fully_shard(layer, reshard_after_forward=reshard_after_forward, **kwargs)
    # the root's params (embeddings, lm_head) are needed right at the end of forward: keep them gathered
    fully_shard(model, reshard_after_forward=False, **kwargs)
    logger.info("FSDP2: sharded %d decoder layers + root over %d ranks (param_dtype=%s, reduce_dtype=%s, "
                "cpu_offload=%s)", len(layers), dist.get_world_size(), param_dtype, reduce_dtype, cpu_offload)
    return model


def model_device(model: nn.Module) -> torch.device:
    """Where the model's (local) parameters live."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------- full weights
def gather_full_state_dict(model: nn.Module, *, rank0_only: bool = False, to_cpu: bool = True,
                           dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The whole model's weights as plain tensors, gathered once (weight sync and HF export).

    Collective: every rank must call it. ``rank0_only`` returns the dict on rank 0 and ``{}``
    elsewhere (export; saves host memory); otherwise every rank gets every tensor (weight sync into
    a colocated rollout engine). Works on unsharded models too (returns ``state_dict()``).
    """
    if not is_fsdp_module(model):
        sd = {k: v.detach() for k, v in model.state_dict().items()}
    else:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        if rank0_only:
            sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        else:
            sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=False))
    out = {}
    for k, v in sd.items():
        if to_cpu:
            v = v.cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v
    return out


# ---------------------------------------------------------------------------- local shards
def local_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """This rank's shard of every parameter/buffer, as plain CPU tensors (clones)."""
    out = {}
    for k, v in model.state_dict().items():
        t = v.to_local() if _is_dtensor(v) else v
        out[k] = t.detach().cpu().clone()
    return out


def load_local_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy shards saved by :func:`local_model_state` back into a model sharded the same way."""
    current = model.state_dict()
    missing = sorted(set(current) - set(state))
    unexpected = sorted(set(state) - set(current))
    if missing or unexpected:
        raise KeyError(f"model shard keys differ from the checkpoint: missing {missing[:5]}, "
                       f"unexpected {unexpected[:5]}")
    with torch.no_grad():
        for k, v in current.items():
            dst = v.to_local() if _is_dtensor(v) else v
            src = state[k]
            if dst.shape != src.shape:
                raise ValueError(f"shard of {k!r} has shape {tuple(src.shape)} in the checkpoint but "
                                 f"{tuple(dst.shape)} here: was it saved with another world size or model?")
            dst.copy_(src.to(device=dst.device, dtype=dst.dtype))


def local_optim_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with every DTensor replaced by its local shard on the CPU."""
    sd = optimizer.state_dict()
    state = {}
    for idx, per_param in sd["state"].items():
        state[idx] = {name: ((val.to_local() if _is_dtensor(val) else val).detach().cpu().clone()
                             if isinstance(val, torch.Tensor) else val)
                      for name, val in per_param.items()}
    return {"state": state, "param_groups": sd["param_groups"]}


def load_local_optim_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Load what :func:`local_optim_state` saved, re-wrapping shards as DTensors like the params."""
    from torch.distributed.tensor import DTensor

    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {}
    for idx, per_param in saved["state"].items():
        idx = int(idx)
        if idx >= len(params):
            raise ValueError(f"optimizer checkpoint has state for parameter {idx} but the optimizer has "
                             f"{len(params)} parameters")
        p = params[idx]
        restored = {}
        for name, val in per_param.items():
            if isinstance(val, torch.Tensor) and _is_dtensor(p) and val.dim() > 0:
                local = p.to_local()
                if val.shape != local.shape:
                    raise ValueError(f"optimizer state {name!r} of parameter {idx} has shard shape "
                                     f"{tuple(val.shape)} but the parameter shard is {tuple(local.shape)}")
                val = DTensor.from_local(val.to(local.device), p.device_mesh, p.placements,
                                         shape=p.shape, stride=p.stride(), run_check=False)
            restored[name] = val
        state[idx] = restored
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device | str) -> None:
    """Move every state tensor of the optimiser (CPU offload between phases on GPU)."""
    for per_param in optimizer.state.values():
        for name, val in per_param.items():
            if isinstance(val, torch.Tensor) and name != "step":
                per_param[name] = val.to(device, non_blocking=True)


def clip_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` that also works on DTensor grads; returns the (global) total norm as a tensor."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.tensor(0.0)
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm=max_norm)
    if _is_dtensor(norm):
        norm = norm.full_tensor()
    return norm
