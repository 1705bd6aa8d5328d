"""Bucketed weight sync: stream the actor's parameters from its FSDP shards into the rollout engine.

Why: the old sync called ``get_model_state_dict(full_state_dict=True)`` on every rank, so each rank
held a second, unsharded copy of the whole model (15 GB for a 7B model in bf16) next to its shards,
its optimiser state and the engine's own weights. Here each parameter is all-gathered on its own
(``DTensor.full_tensor()``, a collective every rank joins in the same order), cast to the engine's
dtype, and collected into a bucket of about ``rollout.weight_sync_bucket_mb`` MiB; a full bucket
goes to the engine (``BaseRollout.update_weights_bucketed``) and is freed before the next one is
gathered. Peak extra memory is one bucket plus the largest single tensor, not the model.

On GPU the gathered tensors stay on the GPU (NCCL all-gather, then vLLM's ``load_weights`` copies
them into its own, possibly TP-sharded, parameters): nothing goes through host memory.

Reference point: verl reports a full 7B sync over NCCL in about 5-6 s (its bucketed
``update_weights`` path); ``bench/bench_weight_sync.py`` measures this code (see docs/gpu.md).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn as nn

__all__ = ["DEFAULT_BUCKET_MB", "SyncStats", "iter_full_tensors", "iter_buckets", "bucket_bytes",
           "sync_rollout_weights"]

#: default of ``actor_rollout_ref.rollout.weight_sync_bucket_mb`` (verl's ``update_weights_bucket_megabytes``)
DEFAULT_BUCKET_MB = 512


@dataclasses.dataclass
class SyncStats:
    """What one sync did: tensors, buckets, bytes sent to the engine, the largest bucket, seconds."""

    tensors: int = 0
    buckets: int = 0
    bytes: int = 0
    max_bucket_bytes: int = 0
    seconds: float = 0.0


def bucket_bytes(bucket_mb: float | int | None) -> int:
    """Bucket size in bytes from the config value in MiB (None: the default); must be > 0."""
    mb = DEFAULT_BUCKET_MB if bucket_mb is None else float(bucket_mb)
    if not mb > 0:
        raise ValueError(f"actor_rollout_ref.rollout.weight_sync_bucket_mb must be > 0, got {bucket_mb!r}")
    return int(mb * 2**20)


def _is_dtensor(t: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def iter_full_tensors(model: nn.Module, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, full tensor) for every entry of ``model.state_dict()``, one gather at a time.

    Collective for sharded models: every rank must consume the whole iterator (same order on all
    ranks: ``state_dict()`` order). Floating tensors are cast to ``dtype`` (sharded ones before the
    gather, so only the engine-dtype tensor is ever full); everything is moved to ``device`` when
    given. Plain (unsharded) tensors are passed through without a copy.
    """
    for name, value in model.state_dict().items():
        value = value.detach()
        if _is_dtensor(value):
            if dtype is not None and value.is_floating_point() and value.dtype != dtype:
                value = value.to(dtype)   # cast the local shard first: half the gather traffic for fp32 -> bf16
            full = value.full_tensor()
        else:
            full = value
        if dtype is not None and full.is_floating_point() and full.dtype != dtype:
            full = full.to(dtype)
        if device is not None and full.device != torch.device(device):
            full = full.to(device)
        yield name, full


def iter_buckets(named: Iterable[tuple[str, torch.Tensor]], max_bytes: int
                 ) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Group tensors into lists of at most ``max_bytes`` (a larger tensor travels alone), in order."""
    if max_bytes <= 0:
        raise ValueError(f"bucket size must be > 0 bytes, got {max_bytes}")
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, t in named:
        nbytes = t.numel() * t.element_size()
        if bucket and size + nbytes > max_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, t))
        size += nbytes
    if bucket:
        yield bucket


def sync_rollout_weights(model: nn.Module, engine: Any, *, bucket_mb: float | int | None = DEFAULT_BUCKET_MB,
                         dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> SyncStats:
    """Stream ``model``'s weights into ``engine`` in buckets; returns what was sent.

    ``engine`` is a :class:`workers.rollout.base.BaseRollout` (its ``update_weights_bucketed``
    takes an iterable of buckets and consumes it lazily). Collective for FSDP models.
    """
    stats = SyncStats()
    start = time.perf_counter()
    limit = bucket_bytes(bucket_mb)

    def counted() -> Iterator[list[tuple[str, torch.Tensor]]]:
        for bucket in iter_buckets(iter_full_tensors(model, dtype=dtype, device=device), limit):
            nbytes = sum(t.numel() * t.element_size() for _, t in bucket)
            stats.tensors += len(bucket)
            stats.buckets += 1
            stats.bytes += nbytes
            stats.max_bucket_bytes = max(stats.max_bucket_bytes, nbytes)
            yield bucket

    engine.update_weights_bucketed(counted())
    stats.seconds = time.perf_counter() - start
    return stats
