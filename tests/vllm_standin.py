"""A stand-in ``vllm`` module for CPU tests: the signatures of vLLM 0.30.0 (the pinned release).

Copied facts, not code: the keyword names of ``LLM.__init__`` (explicit ones plus the
``EngineArgs`` dataclass fields its ``**kwargs`` go to), the ``SamplingParams`` fields,
``LLM.generate``, ``LLM.sleep(level, mode)``, ``LLM.wake_up(tags)`` and ``LLM.apply_model(func)`` with
a model whose ``load_weights(weights) -> set[str]`` accepts any subset of the parameters, as read
from the vllm-0.30.0 wheel (``vllm/entrypoints/llm.py``, ``vllm/engine/arg_utils.py``,
``vllm/sampling_params.py``, ``vllm/v1/engine/parallel_sampling.py``, ``models/qwen2.py``).

Behaviour it mimics, because the adapter's correctness depends on it:

* unknown keywords raise ``TypeError`` (as ``EngineArgs(**kwargs)`` and the msgspec
  ``SamplingParams`` do);
* ``max_model_len`` above the model's ``max_position_embeddings`` (after ``hf_overrides``) raises
  the same ``ValueError`` vLLM's ``ModelConfig`` does;
* the ``j``-th of ``n`` samples of a request is drawn with seed ``request seed + j``
  (``ParentRequest``), from ``random.Random(seed)``;
* ``generate`` while the engine sleeps raises (vLLM requires ``wake_up`` before use).

``install(monkeypatch)`` puts it in ``sys.modules['vllm']``; every ``LLM`` built is appended to
``LLM.instances`` and records its calls in ``events``.
"""

from __future__ import annotations

import random
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import torch

VERSION = "0.30.0"
EOS = 2
#: max_position_embeddings of the stand-in model (before hf_overrides)
MAX_POSITIONS = 64

#: the fields of vllm 0.30.0 ``EngineArgs`` (where ``LLM(**kwargs)`` sends unknown-to-LLM keywords)
ENGINE_ARGS_FIELDS = frozenset({
    "model", "enable_return_routed_experts", "return_sampling_mask", "model_weights", "served_model_name",
    "tokenizer", "hf_config_path", "runner", "convert", "skip_tokenizer_init", "enable_prompt_embeds",
    "tokenizer_mode", "trust_remote_code", "allowed_local_media_path", "allowed_media_domains", "download_dir",
    "safetensors_load_strategy", "safetensors_prefetch_num_threads", "safetensors_prefetch_block_size",
    "load_format", "config_format", "dtype", "kv_cache_dtype", "seed", "max_model_len", "cudagraph_capture_sizes",
    "max_cudagraph_capture_size", "ir_op_priority", "distributed_executor_backend", "pipeline_parallel_size",
    "master_addr", "master_port", "nnodes", "node_rank", "distributed_timeout_seconds",
    "cpu_distributed_timeout_seconds", "numa_bind", "numa_bind_nodes", "numa_bind_cpus", "device_ids",
    "tensor_parallel_size", "prefill_context_parallel_size", "decode_context_parallel_size", "dcp_comm_backend",
    "dcp_q_replicate", "dcp_kv_cache_interleave_size", "cp_kv_cache_interleave_size", "data_parallel_size",
    "data_parallel_rank", "data_parallel_start_rank", "data_parallel_size_local", "data_parallel_address",
    "data_parallel_rpc_port", "data_parallel_hybrid_lb", "data_parallel_external_lb",
    "data_parallel_multi_port_external_lb", "data_parallel_backend", "enable_expert_parallel",
    "enable_batch_sharded_sampling", "enable_ep_weight_filter", "moe_backend", "linear_backend",
    "sparse_indexer_topk_backend", "all2all_backend", "enable_elastic_ep", "elastic_ep_max_dp_size", "enable_dbo",
    "ubatch_size", "dbo_decode_token_threshold", "dp_sync_interval", "dbo_prefill_token_threshold",
    "disable_nccl_for_dp_synchronization", "eplb_config", "enable_eplb", "expert_placement_strategy",
    "_api_process_count", "_api_process_rank", "max_parallel_loading_workers", "block_size",
    "enable_prefix_caching", "prefix_caching_hash_algo", "prefix_cache_retention_interval",
    "disable_sliding_window", "disable_cascade_attn", "offload_backend", "cpu_offload_gb", "cpu_offload_params",
    "offload_group_size", "offload_num_in_group", "offload_prefetch_step", "offload_params",
    "gpu_memory_utilization", "kv_cache_memory_bytes", "max_num_batched_tokens", "max_num_scheduled_tokens",
    "long_prefill_token_threshold", "max_num_seqs", "max_num_queued_reqs", "max_num_queued_tokens", "max_logprobs",
    "logprobs_mode", "use_fp64_gumbel", "enable_trace_replay", "disable_log_stats", "aggregate_engine_logging",
    "revision", "code_revision", "hf_token", "hf_overrides", "model_class_overrides", "tokenizer_revision",
    "quantization", "quantization_config", "allow_deprecated_quantization", "enforce_eager",
    "disable_custom_all_reduce", "language_model_only", "limit_mm_per_prompt", "enable_mm_embeds",
    "interleave_mm_strings", "media_io_kwargs", "mm_processor_kwargs", "mm_processor_cache_gb",
    "mm_processor_cache_type", "mm_hasher_algorithm", "mm_shm_cache_max_object_size_mb", "mm_encoder_only",
    "mm_encoder_tp_mode", "mm_encoder_attn_backend", "mm_encoder_attn_dtype", "mm_encoder_fp8_scale_path",
    "mm_encoder_fp8_scale_save_path", "mm_encoder_fp8_scale_save_margin", "io_processor_plugin",
    "renderer_num_workers", "skip_mm_profiling", "video_pruning_rate", "video_pruning_method", "mm_tensor_ipc",
    "mm_processor_device", "mm_ipc_gpu_memory_gb", "mm_device_do_normalize", "enable_lora", "max_loras",
    "max_lora_rank", "default_mm_loras", "fully_sharded_loras", "max_cpu_loras", "lora_dtype",
    "lora_target_modules", "enable_tower_connector_lora", "specialize_active_lora", "enable_mixed_moe_lora_format",
    "enable_moe_shared_loras", "ray_workers_use_nsight", "num_gpu_blocks_override", "model_loader_extra_config",
    "ignore_patterns", "enable_chunked_prefill", "disable_chunked_mm_input", "scheduler_reserve_full_isl",
    "prefill_schedule_interval", "watermark", "disable_hybrid_kv_cache_manager", "structured_outputs_config",
    "reasoning_parser", "reasoning_parser_plugin", "speculative_config", "spec_method", "spec_model", "spec_tokens",
    "watermark_config", "diffusion_config", "show_hidden_metrics_for_version", "otlp_traces_endpoint",
    "collect_detailed_traces", "per_request_spec_decode_metrics", "kv_cache_metrics", "kv_cache_metrics_sample",
    "cudagraph_metrics", "enable_layerwise_nvtx_tracing", "enable_mfu_metrics", "enable_logging_iteration_details",
    "jit_monitor_mode", "jit_monitor_verbose", "enable_mm_processor_stats", "scheduling_policy", "scheduler_cls",
    "pooler_config", "compilation_config", "attention_config", "engram_config", "mamba_config", "kernel_config",
    "enable_flashinfer_autotune", "worker_cls", "worker_extension_cls", "profiler_config", "kv_transfer_config",
    "kv_events_config", "ec_transfer_config", "ec_manager_config", "reasoning_config", "generation_config",
    "enable_sleep_mode", "enable_cumem_allocator", "enable_nccl_comm_suspend", "override_generation_config",
    "model_impl", "attention_backend", "kv_cache_dtype_skip_layers", "mamba_cache_dtype", "mamba_ssm_cache_dtype",
    "mamba_block_size", "prefix_match_unit", "mamba_cache_mode", "enable_mamba_fine_grained_prefix_cache",
    "replayssm_buffer_len", "use_replayssm", "mamba_backend", "mamba_ssu_algorithm",
    "enable_mamba_cache_stochastic_rounding", "mamba_cache_philox_rounds", "additional_config", "use_tqdm_on_load",
    "pt_load_map_location", "logits_processors", "async_scheduling", "stream_interval", "kv_sharing_fast_prefill",
    "optimization_level", "performance_mode", "fault_tolerance_config", "enable_fault_tolerance",
    "kv_offloading_size", "kv_offloading_backend", "tokens_only", "shutdown_timeout", "weight_transfer_config",
    "fail_on_environ_validation", "gdn_prefill_backend", "kda_prefill_backend", "kda_decode_backend"
})

#: the keyword-only parameters ``LLM.__init__`` names itself in 0.30.0
LLM_KWARGS = frozenset({
    "runner", "convert", "tokenizer", "tokenizer_mode", "skip_tokenizer_init", "trust_remote_code",
    "allowed_local_media_path", "allowed_media_domains", "tensor_parallel_size", "dtype", "quantization", "revision",
    "tokenizer_revision", "chat_template", "seed", "gpu_memory_utilization", "cpu_offload_gb", "offload_group_size",
    "offload_num_in_group", "offload_prefetch_step", "offload_params", "enforce_eager", "enable_return_routed_experts",
    "return_sampling_mask", "disable_custom_all_reduce", "hf_token", "hf_overrides", "mm_processor_kwargs",
    "pooler_config", "structured_outputs_config", "profiler_config", "attention_config", "kv_cache_memory_bytes",
    "compilation_config", "quantization_config", "logits_processors", "spec_method", "spec_model", "spec_tokens",
})

#: the public fields of vllm 0.30.0 ``SamplingParams``
SAMPLING_FIELDS = frozenset({
    "n", "presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "watermarking", "top_p", "top_k",
    "min_p", "seed", "stop", "stop_token_ids", "ignore_eos", "max_tokens", "min_tokens", "logprobs", "prompt_logprobs",
    "logprob_token_ids", "flat_logprobs", "detokenize", "skip_special_tokens", "spaces_between_special_tokens",
    "include_stop_str_in_output", "output_kind", "stream_interval", "skip_clone", "output_text_buffer_length",
    "structured_outputs", "logit_bias", "allowed_token_ids", "extra_args", "bad_words", "skip_reading_prefix_cache",
    "thinking_token_budget", "repetition_detection", "routed_experts_prompt_start", "trace_decode_token_ids",
})

WAKE_TAGS = ("weights", "kv_cache", "scheduling")


class SamplingParams:
    """Keyword-only, like the msgspec struct; ``top_k`` 0 disables (-1 is accepted), < -1 raises."""

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - SAMPLING_FIELDS)
        if unknown:
            raise TypeError(f"Unexpected keyword argument(s) {unknown} for SamplingParams")
        self.kwargs = dict(kwargs)
        self.n = int(kwargs.get("n", 1))
        self.seed = kwargs.get("seed")
        self.temperature = float(kwargs.get("temperature", 1.0))
        self.top_k = int(kwargs.get("top_k", 0))
        self.max_tokens = kwargs.get("max_tokens", 16)
        if self.top_k < -1:
            raise ValueError(f"top_k must be 0 (disable), or at least 1, got {self.top_k}.")
        logprobs = kwargs.get("logprobs")
        if logprobs is not None and logprobs != -1 and logprobs < 0:
            raise ValueError(f"logprobs must be non-negative or -1, got {logprobs}.")


class FakeModel(torch.nn.Module):
    """What ``apply_model`` hands to the function: parameters with HF names, ``load_weights``."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        super().__init__()
        self.store = {name: torch.zeros(shape) for name, shape in shapes.items()}
        self.load_calls: list[list[str]] = []

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        loaded = set()
        names = []
        for name, tensor in weights:
            if name not in self.store:
                raise KeyError(f"stand-in vLLM model has no parameter {name!r}")
            self.store[name].copy_(tensor)
            loaded.add(name)
            names.append(name)
        self.load_calls.append(names)
        return loaded


class LLM:
    instances: list[LLM] = []
    #: parameter shapes of the stand-in model (tests may replace it before building)
    shapes: dict[str, tuple[int, ...]] = {"embed.weight": (8, 4), "head.weight": (8, 4)}

    def __init__(self, model: str, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - LLM_KWARGS - ENGINE_ARGS_FIELDS)
        if unknown:
            raise TypeError(f"EngineArgs.__init__() got unexpected keyword argument(s) {unknown}")
        self.model_path = model
        self.kwargs = dict(kwargs)
        overrides = dict(kwargs.get("hf_overrides") or {})
        derived = int(overrides.get("max_position_embeddings", MAX_POSITIONS))
        max_len = kwargs.get("max_model_len")
        if max_len is not None and int(max_len) > derived:
            raise ValueError(f"User-specified max_model_len ({max_len}) is greater than the derived max_model_len "
                             f"(max_position_embeddings={derived} in model's config.json).")
        self.model = FakeModel(dict(self.shapes))
        self.events: list[tuple[Any, ...]] = []
        self.sleeping: set[str] = set()
        LLM.instances.append(self)

    def get_tokenizer(self) -> Any:
        return SimpleNamespace(eos_token_id=EOS, pad_token_id=0)

    def sleep(self, level: int = 1, mode: str = "abort") -> None:
        if not self.kwargs.get("enable_sleep_mode"):
            raise ValueError("Sleep mode is not enabled (enable_sleep_mode=False)")
        self.events.append(("sleep", level))
        self.sleeping = {"weights", "kv_cache"}

    def wake_up(self, tags: list[str] | None = None) -> None:
        if tags is not None and any(t not in WAKE_TAGS for t in tags):
            raise ValueError(f"wake_up tags must be in {WAKE_TAGS}, got {tags}")
        self.events.append(("wake_up", None if tags is None else tuple(tags)))
        self.sleeping -= set(WAKE_TAGS if tags is None else tags)

    def apply_model(self, func: Callable[[torch.nn.Module], Any]) -> list[Any]:
        if "weights" in self.sleeping:
            raise RuntimeError("apply_model while the weights sleep")
        self.events.append(("apply_model",))
        return [func(self.model)]

    def generate(self, prompts: Any, sampling_params: SamplingParams | Sequence[SamplingParams] | None = None, *,
                 use_tqdm: Any = True, lora_request: Any = None, priority: list[int] | None = None,
                 tokenization_kwargs: dict[str, Any] | None = None,
                 mm_processor_kwargs: dict[str, Any] | None = None) -> list[Any]:
        if self.sleeping:
            raise RuntimeError(f"generate while asleep ({sorted(self.sleeping)}); call wake_up first")
        prompts = list(prompts)
        if isinstance(sampling_params, (list, tuple)):
            params = list(sampling_params)
        else:
            params = [sampling_params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        self.events.append(("generate", [list(p["prompt_token_ids"]) for p in prompts], [sp.seed for sp in params]))
        out = []
        for prompt, sp in zip(prompts, params):
            comps = []
            for j in range(sp.n):  # ParentRequest: child j gets seed + j
                rng = random.Random(None if sp.seed is None else sp.seed + j)
                tokens = [rng.randint(3, 60) for _ in range(4)] + [EOS]
                comps.append(SimpleNamespace(token_ids=tokens, logprobs=None))
            out.append(SimpleNamespace(prompt_token_ids=prompt["prompt_token_ids"], outputs=comps))
        return out


def install(monkeypatch: Any) -> types.ModuleType:
    """Make ``import vllm`` give this stand-in for one test."""
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams, module.__version__ = LLM, SamplingParams, VERSION
    LLM.instances = []
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return module
