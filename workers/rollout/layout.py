"""Where a worker sits in the rollout's tensor-parallel x data-parallel layout.

vLLM with ``tensor_model_parallel_size = tp > 1`` spreads one engine over ``tp`` consecutive
ranks (``external_launcher``: vLLM builds its TP groups from the torch world in rank order), and
requires every rank of a TP group to get the same prompts and the same seeds; each of them returns
the full result. So rank ``r`` is data-parallel rank ``r // tp``, and only the first rank of each
group (``r % tp == 0``) has its result kept. The worker declares this as the ``rollout`` dispatch
mesh (``Worker._register_dispatch_collect_info``) and its ``generate_sequences`` is registered with
``mesh="rollout"`` (verl does the same with its ``rollout`` mesh).
"""

from __future__ import annotations

__all__ = ["ROLLOUT_MESH", "rollout_tp_size", "rollout_dp_layout"]

ROLLOUT_MESH = "rollout"


def rollout_tp_size(engine: str, tensor_model_parallel_size: int) -> int:
    """``tensor_model_parallel_size`` of the engine (the HF engine is always 1)."""
    tp = int(tensor_model_parallel_size or 1)
    if tp < 1:
        raise ValueError(f"actor_rollout_ref.rollout.tensor_model_parallel_size must be >= 1, got {tp}")
    if engine != "vllm" and tp != 1:
        raise ValueError(f"actor_rollout_ref.rollout.tensor_model_parallel_size={tp} needs rollout.name=vllm "
                         f"(the {engine!r} engine has no tensor parallelism)")
    return tp


def rollout_dp_layout(rank: int, world_size: int, tp: int) -> tuple[int, bool]:
    """(data-parallel rank, is this rank's result kept) for ``rank`` of ``world_size`` with TP ``tp``."""
    if tp < 1 or world_size % tp:
        raise ValueError(f"the worker group ({world_size} ranks) must divide by "
                         f"actor_rollout_ref.rollout.tensor_model_parallel_size ({tp})")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside the group of {world_size}")
    return rank // tp, rank % tp == 0
