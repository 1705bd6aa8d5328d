"""Rollout on vLLM (the GPU engine): same interface as :class:`workers.rollout.hf.HFRollout`.

vLLM is an optional extra (``pip install relift[vllm]``) and is imported only inside this class's
methods, so importing this module works everywhere.

Pinned version: vLLM 0.30.0 (the newest release whose wheel declares ``torch==2.13.0`` and no
upper bound on transformers; see docs/gpu.md). Everything below was checked against that wheel's
source (``vllm/entrypoints/llm.py``, ``vllm/sampling_params.py``, ``vllm/engine/arg_utils.py``,
``vllm/v1/engine/parallel_sampling.py``) and exercised on CPU against the stand-in module in
``tests/vllm_standin.py``, which mimics those signatures and refuses unknown keywords. No GPU run
of this adapter has been recorded yet (``scripts/gpu_smoke.sh`` is the first thing to run on one).

Design:

* One engine per worker process, in-process: ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` keeps the model
  in this process so a weight update is a local ``load_weights`` call (``LLM.apply_model``), never
  a serialised RPC. With torch.distributed initialised (FSDP workers) the engine uses
  ``distributed_executor_backend="external_launcher"``: each worker is one TP rank of an engine
  spread over its TP group. All ranks of a TP group must receive the SAME prompts and seeds and
  every rank returns the full result: the worker declares the ``rollout`` dispatch mesh
  (:func:`workers.rollout.layout.rollout_dp_layout`) so the group does exactly that.
* ``hf_overrides``: the model's ``override_config`` (e.g. ``max_position_embeddings`` for the math
  recipes' longer context) reaches vLLM's config too, so its ``max_model_len`` check sees it.
* Weight sync, bucketed: :meth:`update_weights_bucketed` wakes the weights, loads each bucket with
  one ``model.load_weights`` call (vLLM shards each tensor for its TP rank), then wakes the KV
  cache (:mod:`workers.weight_sync` streams the buckets from the FSDP shards).
* Memory: with ``free_cache_engine`` (default) the engine sleeps after every generation
  (level ``sleep_level``, 1: weights offloaded to CPU, KV cache dropped), so the training step
  that follows has the GPU; the next weight sync or generation wakes it.
* Seeds: vLLM gives the ``j``-th of ``n`` samples of a request the seed ``seed + j``
  (``parallel_sampling.py``), so request seeds are spaced ``n`` apart (:func:`request_seed`).
* Log-probs: ``logprobs_mode="processed_logprobs"`` makes vLLM report the log-prob of each sampled
  token after temperature (and top-k/top-p) processing, the distribution it was drawn from;
  with top-k/top-p off this equals the actor's ``compute_log_prob`` at the same temperature.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from relift.protocol import DataProto
from workers.rollout.base import BaseRollout, RolloutConfig, SamplingSettings, build_rollout_output, resolve_token_ids

__all__ = ["VLLMRollout", "request_seed", "unpad_prompt_ids"]

logger = logging.getLogger(__name__)


SEED_STRIDE = 1_000_003  # request seeds of neighbouring reseed values are this far apart


def request_seed(seed: int, index: int, n: int = 1) -> int:
    """The vLLM seed of prompt ``index`` of a call reseeded with ``seed``, ``n`` samples per prompt.

    vLLM seeds the ``j``-th sample of a request with ``request seed + j``, so consecutive prompts'
    seeds are ``n`` apart: the samples of one call use ``base + index * n + j``, all distinct, and
    calls reseeded with neighbouring values (the DP ranks: ``step_seed + dp_rank``) stay apart
    while ``prompts * n < SEED_STRIDE``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return (int(seed) * SEED_STRIDE) % (2**31 - 1) + int(index) * int(n)


def _refuse_dtensors(items: Sequence[tuple[str, torch.Tensor]]) -> None:
    for name, value in items:
        if type(value).__name__ == "DTensor":
            raise TypeError(f"update_weights needs full (unsharded) tensors; {name!r} is a DTensor")


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
        hf_overrides: HF config keys to override in vLLM's model config (the worker passes
            ``actor_rollout_ref.model.override_config``); also read from the rollout config key
            ``hf_overrides``.
    """

    def __init__(self, model_path: str, config: Any = None, *, eos_token_id: int | Sequence[int] | None = None,
                 pad_token_id: int | None = None, hf_overrides: Mapping[str, Any] | None = None,
                 **engine_kwargs: Any) -> None:
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
        overrides = {**dict(extra.get("hf_overrides") or {}), **dict(hf_overrides or {})}
        if overrides:
            kwargs["hf_overrides"] = overrides
        kwargs.update(engine_kwargs)
        self.llm = LLM(**kwargs)
        tokenizer = self.llm.get_tokenizer() if hasattr(self.llm, "get_tokenizer") else None
        self.eos_token_id = eos_token_id if eos_token_id is not None else getattr(tokenizer, "eos_token_id", None)
        self.pad_token_id = pad_token_id if pad_token_id is not None else getattr(tokenizer, "pad_token_id", None)
        self.free_cache_engine = kwargs["enable_sleep_mode"]
        self.sleep_level = int(extra.get("sleep_level", 1))
        self._awake: set[str] = set(self._TAGS)
        self._request_seed: int | None = None
        if self.free_cache_engine:
            self.sleep()

    def reseed(self, seed: int) -> bool:
        """Seed every later request: prompt ``i`` of a call gets ``request_seed(seed, i, n)``."""
        self._request_seed = int(seed)
        return True

    # ------------------------------------------------------------------------------ memory

    _TAGS = frozenset({"weights", "kv_cache"})

    def sleep(self) -> None:
        """Release the GPU (``LLM.sleep(level)``) when sleep mode is on and anything is awake."""
        if self.free_cache_engine and self._awake:
            self.llm.sleep(level=self.sleep_level)
            self._awake = set()

    def wake_up(self, tags: Sequence[str] | None = None) -> None:
        """Re-acquire ``tags`` (None: everything); asks vLLM only for what is still asleep."""
        if not self.free_cache_engine:
            return
        want = set(self._TAGS if tags is None else tags)
        todo = want - self._awake
        if not todo:
            return
        if tags is None and not self._awake:
            self.llm.wake_up()
        else:
            self.llm.wake_up(tags=sorted(todo))
        self._awake |= todo

    @property
    def _asleep(self) -> bool:
        return self.free_cache_engine and self._awake != set(self._TAGS)

    # ------------------------------------------------------------------------------ weights

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a full HF-named state dict (one bucket); see :meth:`update_weights_bucketed`."""
        self.update_weights_bucketed([list(state_dict.items())])

    def update_weights_bucketed(self, buckets: Iterable[Sequence[tuple[str, torch.Tensor]]]) -> None:
        """Wake the weights, ``load_weights`` each bucket as it arrives, then wake the KV cache.

        Each bucket is freed by the caller before the next is gathered (:mod:`workers.weight_sync`);
        vLLM's ``load_weights`` accepts any subset of the parameters per call.
        """
        self.wake_up(tags=["weights"])
        total = 0
        for bucket in buckets:
            items = list(bucket)
            _refuse_dtensors(items)

            def _load(model: torch.nn.Module, items: list[tuple[str, torch.Tensor]] = items) -> int:
                loaded = model.load_weights(iter(items))
                return len(loaded) if loaded is not None else -1

            self.llm.apply_model(_load)
            total += len(items)
            del bucket, items, _load  # free this bucket before the generator gathers the next one
        logger.info("vLLM loaded %d tensors", total)
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
            kwargs.update(temperature=0.0, top_p=1.0, top_k=0)
        else:  # top_k=0 disables top-k in vLLM 0.30 (SamplingParams docs)
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p,
                          top_k=settings.top_k if settings.top_k > 0 else 0)
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
            params = [self._sampling_params(settings, eos_ids, request_seed(self._request_seed, i, settings.n))
                      for i in range(len(prompt_ids))]
        try:
            outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids],
                                        sampling_params=params, use_tqdm=False)
        finally:  # free the KV cache (and offload weights) for the training step that follows
            self.sleep()
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
