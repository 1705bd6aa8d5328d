"""The policy worker's generation engine: building it from the spec, and syncing the actor's weights.

With one worker (``share_from`` given, HF engine, same dtype) the engine reads the actor's own
weights in place (:mod:`workers.rollout.shared`): no second copy, and the "sync" only re-binds.
Otherwise the engine holds its own unsharded copy of the weights. Before generating, if the actor changed
since the last sync, the weights stream from the FSDP shards into the engine in buckets of
``rollout.weight_sync_bucket_mb`` (:mod:`workers.weight_sync`): no rank holds a second full copy
of the model. The HF engine could share the module, but a sharded module would all-gather per layer
per decoding step and force every rank to decode in lockstep; the copy avoids both.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from relift.spec import ModelSpec, RolloutSpec
from workers.fsdp_model import load_module
from workers.rollout.base import RolloutConfig
from workers.weight_sync import sync_rollout_weights

__all__ = ["RANK_SEED_STRIDE", "rollout_config", "build_rollout_engine", "sync_weights"]

# each rank samples from its own stream: seed + RANK_SEED_STRIDE x rank
RANK_SEED_STRIDE = 1000


def rollout_config(spec: RolloutSpec, model: ModelSpec, dp_rank: int) -> RolloutConfig:
    """The engines' config from the spec (vLLM-only settings ride in ``extra``). The seed follows the
    rollout's data-parallel rank: the ranks of one vLLM tensor-parallel group must sample alike."""
    s, v = spec.sampling, spec.val_sampling
    return RolloutConfig(
        n=s.n, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, do_sample=s.do_sample,
        prompt_length=spec.prompt_length, response_length=spec.response_length,
        calculate_log_probs=spec.calculate_log_probs, micro_batch_size=spec.micro_batch_size,
        seed=spec.seed + RANK_SEED_STRIDE * dp_rank,
        val_kwargs={"n": v.n, "temperature": v.temperature, "top_p": v.top_p, "top_k": v.top_k,
                    "do_sample": v.do_sample},
        extra={"tensor_model_parallel_size": spec.tensor_model_parallel_size,
               "gpu_memory_utilization": spec.gpu_memory_utilization, "enforce_eager": spec.enforce_eager,
               "free_cache_engine": spec.free_cache_engine, "max_num_batched_tokens": spec.max_num_batched_tokens,
               "load_format": model.load_format, "trust_remote_code": model.trust_remote_code,
               **{k: v for k, v in spec.engine_kwargs.items() if v is not None}},
    )


def build_rollout_engine(spec: RolloutSpec, model: ModelSpec, *, dp_rank: int, device: torch.device,
                         eos_token_ids: list[int], pad_token_id: int | None, share_from: Any = None,
                         world_size: int = 1) -> Any:
    """The engine ``spec.name`` names: ``hf`` (transformers generate) or ``vllm`` (GPU extra, lazy).

    ``share_from``: the actor module of this process; the HF engine reads its weights in place
    when it can (one worker, same dtype) instead of loading a copy."""
    config = rollout_config(spec, model, dp_rank)
    if spec.name == "hf":
        from workers.rollout.hf import HFRollout  # noqa: PLC0415
        from workers.rollout.shared import bind_shared_weights, can_share  # noqa: PLC0415

        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        shared = share_from is not None and can_share(share_from, world_size, dtype, device)
        if shared:
            module = skeleton_module(model, dtype, device)
            bind_shared_weights(share_from, module)
        else:
            module = load_module(model, model.path, dtype, device)
        module.eval()
        module.config.use_cache = True
        engine = HFRollout(module, config, eos_token_id=eos_token_ids, pad_token_id=pad_token_id, shares_module=False)
        engine.shared_source = share_from if shared else None
        engine.lean_prefill = engine.lean_prefill and model.lean_forward
        return engine
    if spec.name == "vllm":
        from workers.rollout.vllm import VLLMRollout  # noqa: PLC0415 - GPU only; imported lazily

        return VLLMRollout(model.path, config, eos_token_id=eos_token_ids, pad_token_id=pad_token_id,
                           hf_overrides=dict(model.override_config))
    raise ValueError(f"actor_rollout_ref.rollout.name={spec.name!r}; expected hf or vllm")


def skeleton_module(model: ModelSpec, dtype: torch.dtype, device: torch.device) -> Any:
    """The model built from its config alone, on ``device``, with throwaway random weights (then replaced by
    views of the actor's); non-persistent buffers such as rotary frequencies are computed here."""
    return load_module(dataclasses.replace(model, load_format="dummy"), model.path, dtype, device)


def sync_weights(actor_module: Any, engine: Any, device: torch.device, bucket_mb: int) -> float:
    """Stream the actor's weights from its FSDP shards into the engine in buckets; seconds taken.
    An engine that reads the actor's weights in place only re-binds them (no copy)."""
    start = time.perf_counter()
    if getattr(engine, "shared_source", None) is not None:
        from workers.rollout.shared import bind_shared_weights  # noqa: PLC0415

        bind_shared_weights(actor_module, engine.module)
        return time.perf_counter() - start
    dtype = torch.bfloat16 if device.type == "cuda" else None
    sync_rollout_weights(actor_module, engine, dtype=dtype, device="cpu" if device.type == "cpu" else None,
                         bucket_mb=bucket_mb)
    return time.perf_counter() - start
