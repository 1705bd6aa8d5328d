"""Rollout engines behind one interface (:class:`BaseRollout`): ``hf`` (transformers, any device)
and ``vllm`` (GPU, optional extra; :class:`VLLMRollout` is imported on first use so that importing
this package never imports vLLM)."""

from __future__ import annotations

from typing import Any

from workers.rollout.base import BaseRollout, RolloutConfig, SamplingSettings, build_rollout_output
from workers.rollout.hf import HFRollout

__all__ = ["BaseRollout", "HFRollout", "RolloutConfig", "SamplingSettings", "VLLMRollout", "build_rollout_output"]


def __getattr__(name: str) -> Any:
    if name == "VLLMRollout":
        from workers.rollout.vllm import VLLMRollout

        return VLLMRollout
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
