"""Rollout on vLLM (the GPU engine): same interface as :class:`workers.rollout.hf.HFRollout`.

vLLM is an optional extra (``pip install relift[vllm]``) and is imported only inside this class's
methods, so importing this module works everywhere.

What could and could not be run where this was written: the code was written against vLLM's
public offline API (``vllm.LLM``, ``SamplingParams``, ``LLM.sleep`` / ``LLM.wake_up(tags=...)``,
``LLM.apply_model``, ``logprobs_mode="processed_logprobs"``; vLLM >= 0.10.2) and checked only by
reading; the development machine has no GPU, so neither generation, sleep/wake-up nor weight
loading was executed there. The pure helpers it relies on (prompt un-padding, output assembly)
are shared with the HF engine and tested on CPU. ``tests/test_rollout_hf.py`` holds a ``gpu``-marked
check (greedy equality with the HF engine, a weight sync changing the outputs) that runs where CUDA
and vLLM exist; run it on a GPU before trusting this engine.

Design:

* One engine per worker process, in-process: ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` keeps the model
  in this process so a weight update is a local ``load_weights`` call, never a serialised RPC.
  With ``tensor_model_parallel_size > 1`` the engine uses ``distributed_executor_backend=
  "external_launcher"``: each worker is one TP rank of an engine spread over its TP group (torch
  distributed must already be initialised by the worker), all ranks of a TP group must receive the
  SAME prompts, and every rank returns the full result (keep one per group).
* Weight sync, once per step, in bulk: ``update_weights(state_dict)`` wakes the weights, passes the
  whole full state dict (HF names) to the model's ``load_weights`` in one call (vLLM shards each
  tensor for its TP rank), then wakes the KV cache; ``sleep()`` after generation frees the GPU for
  training (level 1: weights offloaded to CPU, KV cache dropped). ``load_format="dummy"`` in the
  config skips reading the checkpoint at start-up when the first sync comes before the first rollout.
* Log-probs: ``logprobs_mode="processed_logprobs"`` makes vLLM report the log-prob of each sampled
  token after temperature (and top-k/top-p) processing, the distribution it was drawn from;
  with top-k/top-p off this equals the actor's ``compute_log_prob`` at the same temperature.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from relift.protocol import DataProto
from workers.rollout.base import BaseRollout, RolloutConfig, SamplingSettings, build_rollout_output, resolve_token_ids

__all__ = ["VLLMRollout", "request_seed", "unpad_prompt_ids"]

logger = logging.getLogger(__name__)


def request_seed(seed: int, index: int) -> int:
    """The vLLM seed of prompt ``index`` in a call reseeded with ``seed`` (distinct for index < 1e6)."""
    return (int(seed) * 1_000_003 + int(index)) % (2**31 - 1)


def unpad_prompt_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    """Left-padded prompts -> lists of their real token ids (what vLLM takes as prompts)."""
    return [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask)]


class VLLMRollout(BaseRollout):
    """vLLM engine behind the rollout interface (GPU only; see the module docstring).

    Args:
        model_path: HF checkpoint folder (config + tokenizer; weights unless ``load_format=dummy``).
        config: rollout config; besides the shared keys it reads ``tensor_model_parallel_size``,
            ``gpu_memory_utilization`` (0.5), ``dtype`` ("bfloat16"), ``enforce_eager`` (False),
            ``max_num_batched_tokens``, ``max_num_seqs``, ``max_model_len`` (prompt + response
            length), ``enable_chunked_prefill``, ``enable_prefix_caching``, ``free_cache_engine``
            (True: sleep between rollouts), ``sleep_level`` (1), ``load_format`` ("auto").
        eos_token_id, pad_token_id: as for :class:`HFRollout` (default: the tokenizer's).
    """

    def __init__(self, model_path: str, config: Any = None, *, eos_token_id: int | Sequence[int] | None = None,
                 pad_token_id: int | None = None, **engine_kwargs: Any) -> None:
        try:
            from vllm import LLM
        except ImportError as err:  # pragma: no cover - needs the GPU extra
            raise ImportError("VLLMRollout needs vLLM (GPU only): pip install 'relift[vllm]', or set "
                              "actor_rollout_ref.rollout.name=hf") from err
        self.config = RolloutConfig.from_any(config)
        extra = self.config.extra
        tp = int(extra.get("tensor_model_parallel_size", 1))
        max_model_len = extra.get("max_model_len") or (
            (self.config.prompt_length or 0) + self.config.response_length if self.config.prompt_length else None)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] != "0":
            logger.warning("VLLM_ENABLE_V1_MULTIPROCESSING is on: every weight sync will serialise the whole "
                           "state dict to the engine process; unset it to keep the engine in-process")
        kwargs: dict[str, Any] = {
            "model": str(model_path),
            "tensor_parallel_size": tp,
            "dtype": extra.get("dtype", "bfloat16"),
            "gpu_memory_utilization": float(extra.get("gpu_memory_utilization", 0.5)),
            "enforce_eager": bool(extra.get("enforce_eager", False)),
            "enable_sleep_mode": bool(extra.get("free_cache_engine", True)),
            "load_format": extra.get("load_format", "auto"),
            "seed": int(self.config.seed),
            "logprobs_mode": "processed_logprobs",
            "trust_remote_code": bool(extra.get("trust_remote_code", False)),
        }
        if tp > 1 or (torch.distributed.is_available() and torch.distributed.is_initialized()):
            kwargs["distributed_executor_backend"] = "external_launcher"
        for key in ("max_num_batched_tokens", "max_num_seqs", "enable_chunked_prefill", "enable_prefix_caching"):
            if extra.get(key) is not None:
                kwargs[key] = extra[key]
        if max_model_len:
            kwargs["max_model_len"] = int(max_model_len)
        kwargs.update(engine_kwargs)
        self.llm = LLM(**kwargs)
        tokenizer = self.llm.get_tokenizer() if hasattr(self.llm, "get_tokenizer") else None
        self.eos_token_id = eos_token_id if eos_token_id is not None else getattr(tokenizer, "eos_token_id", None)
        self.pad_token_id = pad_token_id if pad_token_id is not None else getattr(tokenizer, "pad_token_id", None)
        self.free_cache_engine = kwargs["enable_sleep_mode"]
        self.sleep_level = int(extra.get("sleep_level", 1))
        self._asleep = False
        self._request_seed: int | None = None
        if self.free_cache_engine:
            self.sleep()

    def reseed(self, seed: int) -> bool:
        """Seed every later request: prompt ``i`` of a call samples with ``request_seed(seed, i)``."""
        self._request_seed = int(seed)
        return True

    # ------------------------------------------------------------------------------ memory

    def sleep(self) -> None:
        if self.free_cache_engine and not self._asleep:
            self.llm.sleep(level=self.sleep_level)
            self._asleep = True

    def wake_up(self, tags: Sequence[str] | None = None) -> None:
        if not self.free_cache_engine:
            return
        if tags is None:
            self.llm.wake_up()
            self._asleep = False
        else:
            self.llm.wake_up(tags=list(tags))
            if "kv_cache" in tags:
                self._asleep = False

    # ------------------------------------------------------------------------------ weights

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Bulk-load a full HF-named state dict into the engine, waking weights first.

        Sequence: wake weights -> one ``load_weights`` over all tensors -> wake KV cache. The
        caller frees its own copy afterwards; call :meth:`sleep` after the rollout.
        """
        for name, value in state_dict.items():
            if type(value).__name__ == "DTensor":
                raise TypeError(f"update_weights needs a full (unsharded) state dict; {name!r} is a DTensor")
        self.wake_up(tags=["weights"])
        items = list(state_dict.items())

        def _load(model: torch.nn.Module) -> int:
            loaded = model.load_weights(iter(items))
            return len(loaded) if loaded is not None else -1

        if hasattr(self.llm, "apply_model"):
            counts = self.llm.apply_model(_load)
        else:  # older vLLM: reach the in-process model directly
            model = self.llm.llm_engine.model_executor.driver_worker.worker.model_runner.model
            counts = [_load(model)]
        logger.info("vLLM loaded %s tensors from a state dict of %d", counts, len(items))
        self.wake_up(tags=["kv_cache"])

    # ------------------------------------------------------------------------------ generation

    def _sampling_params(self, settings: SamplingSettings, eos_ids: list[int], seed: int | None = None):
        from vllm import SamplingParams

        kwargs: dict[str, Any] = {
            "n": settings.n,
            "max_tokens": settings.response_length,
            "stop_token_ids": list(eos_ids),
            "detokenize": False,
            "logprobs": 0 if settings.calculate_log_probs else None,
        }
        if settings.greedy:
            kwargs.update(temperature=0.0, top_p=1.0, top_k=-1)
        else:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p,
                          top_k=settings.top_k if settings.top_k > 0 else -1)
            if seed is not None:
                kwargs["seed"] = seed
        return SamplingParams(**kwargs)

    def generate_sequences(self, prompts: DataProto) -> DataProto:
        self.check_prompts(prompts)
        settings = self.config.settings(prompts.meta_info)
        eos_ids, pad_id = resolve_token_ids(prompts.meta_info, self.eos_token_id, self.pad_token_id)
        if self._asleep:
            self.wake_up()
        prompt_ids = unpad_prompt_ids(prompts.batch["input_ids"], prompts.batch["attention_mask"])
        if self._request_seed is None or settings.greedy:
            params: Any = self._sampling_params(settings, eos_ids)
        else:  # one seed per prompt: a shared seed would give every prompt the same random stream
            params = [self._sampling_params(settings, eos_ids, request_seed(self._request_seed, i))
                      for i in range(len(prompt_ids))]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids],
                                    sampling_params=params, use_tqdm=False)
        responses: list[list[int]] = []
        log_probs: list[list[float]] | None = [] if settings.calculate_log_probs else None
        for request in outputs:  # vLLM returns requests in input order, n completions each
            if len(request.outputs) != settings.n:
                raise RuntimeError(f"vLLM returned {len(request.outputs)} completions, expected n={settings.n}")
            for completion in request.outputs:
                ids = list(completion.token_ids)
                responses.append(ids)
                if log_probs is not None:
                    steps = completion.logprobs or []
                    log_probs.append([float(step[tok].logprob) for tok, step in zip(ids, steps)])
        out = build_rollout_output(prompts, responses, settings, eos_ids, pad_id, log_probs=log_probs)
        out.meta_info.setdefault("temperature", 0.0 if settings.greedy else settings.temperature)
        return out
