"""Building one policy copy (actor or reference) and sharding it with FSDP2.

A single rank without mixed precision or offload is not wrapped (:func:`needs_fsdp`): FSDP2 would
only copy each layer's weights around its forward and backward.

With more than one rank (and ``fsdp.init_on_rank0``), rank 0 alone reads the checkpoint; the
others build the model on the meta device and receive the weights by broadcast, so a node holds
one full copy in host memory instead of one per rank. Non-persistent buffers (rotary tables) are
not in the state dict and are broadcast separately. Everything here takes the spec sections and the
process facts (rank, world size, device) as arguments; it keeps no state of its own.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.distributed as dist

from relift.spec import FSDPSpec, ModelSpec
from relift.utils import fsdp as fsdp_utils

__all__ = ["DTYPES", "mixed_precision_dtypes", "needs_fsdp", "load_module", "build_sharded", "eos_token_ids"]

logger = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
          "fp32": torch.float32, "float32": torch.float32}


def mixed_precision_dtypes(fsdp: FSDPSpec, device: torch.device) -> tuple[torch.dtype | None, torch.dtype | None]:
    """(param dtype, reduce dtype) for FSDP2: ``auto`` is bf16 compute with fp32 reduction on GPU."""
    mode = fsdp.mixed_precision.lower()
    if mode == "auto":
        return (torch.bfloat16, torch.float32) if device.type == "cuda" else (None, None)
    if mode not in DTYPES:
        raise ValueError(f"fsdp_config.mixed_precision={mode!r}; expected auto, bf16, fp16 or fp32")
    param = DTYPES[mode]
    return (None, None) if param == torch.float32 else (param, torch.float32)


def needs_fsdp(world_size: int, param_dtype: torch.dtype | None, param_offload: bool, device: torch.device) -> bool:
    """Whether wrapping in FSDP2 does anything: more than one rank, a compute dtype to cast to, or
    parameters to offload from a GPU.

    With none of these FSDP2 still gathers (copies) every layer before its forward and again before
    its backward, through a one-rank collective: 15-20% of the tiny bench job's update on CPU
    (docs/performance.md). Checkpoints, weight sync and gradient clipping read plain and sharded
    parameters alike, and a one-rank shard is the whole tensor, so files are the same either way.
    """
    return world_size > 1 or param_dtype is not None or (param_offload and device.type == "cuda")


def _hf_config(model: ModelSpec, path: str) -> Any:
    from relift.models.loading import load_config  # noqa: PLC0415

    hf_config = load_config(path, trust_remote_code=model.trust_remote_code)
    for key, value in model.override_config.items():
        setattr(hf_config, key, value)
    return hf_config


def load_module(model: ModelSpec, path: str, dtype: torch.dtype, device: torch.device | str,
                meta: bool = False) -> Any:
    """The HF model in ``dtype`` on ``device`` (or on the meta device: shapes only)."""
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    from relift.models.loading import load_causal_lm  # noqa: PLC0415

    hf_config = _hf_config(model, path)
    if meta or model.load_format == "dummy":  # dummy: random weights from the config (benchmarks)
        kwargs = {"attn_implementation": model.attn_implementation} if model.attn_implementation else {}
        with torch.device("meta" if meta else device):
            return AutoModelForCausalLM.from_config(hf_config, dtype=dtype, trust_remote_code=model.trust_remote_code,
                                                    **kwargs)
    return load_causal_lm(path, dtype=dtype, device=device, attn_implementation=model.attn_implementation,
                          trust_remote_code=model.trust_remote_code, config=hf_config)


def _broadcast_buffers(module: Any, rank0_buffers: dict[str, torch.Tensor | None], rank: int) -> None:
    """Non-persistent buffers (rotary tables) are not in the state dict: send rank 0's."""
    for name, buf in module.named_buffers():
        if rank == 0:
            tensor = rank0_buffers[name].to(device=buf.device, dtype=buf.dtype).contiguous()
        else:
            tensor = torch.empty(buf.shape, dtype=buf.dtype, device=buf.device)
        dist.broadcast(tensor, src=0)
        with torch.no_grad():
            buf.copy_(tensor)


def build_sharded(model: ModelSpec, path: str, fsdp: FSDPSpec, *, train: bool, rank: int, world_size: int,
                  device: torch.device) -> Any:
    """Load and shard one policy copy (actor when ``train``, else a frozen reference)."""
    from torch.distributed.device_mesh import init_device_mesh  # noqa: PLC0415

    dtype = DTYPES[model.dtype]
    broadcast = world_size > 1 and fsdp.init_on_rank0
    on_meta = broadcast and rank != 0
    module = load_module(model, path, dtype, "cpu", meta=on_meta)
    full_sd = None
    buffers = None
    if broadcast and rank == 0:
        full_sd = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if broadcast:
        buffers = {name: (b.detach().clone() if rank == 0 else None) for name, b in module.named_buffers()}
    if train and model.lean_activations:
        from relift.models.lean_layers import apply_lean_layers  # noqa: PLC0415

        swapped = apply_lean_layers(module)
        logger.info("lean_activations: %s", f"{swapped} RMSNorm/MLP modules keep fewer tensors for the backward"
                    if swapped else "not a Llama-shaped model, its layers are kept as loaded")
    if train and model.enable_gradient_checkpointing:
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(module, "config"):
        module.config.use_cache = False
    param_dtype, reduce_dtype = mixed_precision_dtypes(fsdp, device)
    if needs_fsdp(world_size, param_dtype, fsdp.param_offload, device):
        mesh = init_device_mesh(device.type, (world_size,))
        fsdp_utils.apply_fsdp2(module, mesh=mesh, param_dtype=param_dtype, reduce_dtype=reduce_dtype,
                               cpu_offload=fsdp.param_offload, reshard_after_forward=fsdp.reshard_after_forward)
    else:
        logger.info("FSDP2 not applied: one rank, no mixed precision, no offload (nothing to shard, cast or move); "
                    "the module trains as loaded")
    offload = fsdp.param_offload and device.type == "cuda"
    if broadcast:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict  # noqa: PLC0415

        if on_meta:
            module.to_empty(device="cpu" if offload else device)
            if offload:  # sharded params stay on the CPU; buffers (rotary tables) compute on the GPU
                for sub in module.modules():
                    for name, buf in list(sub._buffers.items()):
                        if buf is not None:
                            sub._buffers[name] = buf.to(device)
        set_model_state_dict(module, full_sd or {}, options=StateDictOptions(full_state_dict=True,
                                                                              broadcast_from_rank0=True))
        _broadcast_buffers(module, buffers or {}, rank)
        del full_sd
    elif not offload:
        module.to(device)
    module.train(train)
    if not train:
        for p in module.parameters():
            p.requires_grad_(False)
    return module


def eos_token_ids(tokenizer: Any, model_path: str) -> list[int]:
    """The tokenizer's eos plus the generation config's extra stop ids (e.g. Qwen's two)."""
    from transformers import GenerationConfig  # noqa: PLC0415

    ids = [] if tokenizer.eos_token_id is None else [int(tokenizer.eos_token_id)]
    try:
        gen = GenerationConfig.from_pretrained(model_path)
        extra = gen.eos_token_id
        for e in (extra if isinstance(extra, (list, tuple)) else [extra]):
            if e is not None and int(e) not in ids:
                ids.append(int(e))
    except (OSError, ValueError):
        pass
    if not ids:
        raise ValueError("the tokenizer has no eos token and the model has no generation_config eos ids")
    return ids
