"""The actor core under FSDP2: the two data-parallel rules every rank must agree on."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from relift.protocol import DataProto
from workers.actor import DataParallelActor

__all__ = ["FSDPActor"]


class FSDPActor(DataParallelActor):
    """The actor core with two data-parallel rules.

    * Every rank runs the same number of micro-batches: FSDP2 all-gathers each layer on every
      forward, so ranks must make the same number of forward calls. Fixed micro-batch sizes over
      equal chunks give that already; token-budget micro-batches (``use_dynamic_bsz``) do not, so
      the count is agreed on (all-reduce MAX) and ranks with fewer split their largest ones.
    * Loss normalisers are global: each mini-batch's token and sequence totals are summed over the
      ranks (divided by the world size, because FSDP averages the gradients), so ``token-mean``
      and the ``seq-mean-*`` modes give the gradient of the whole global mini-batch, whatever the
      world size and however unevenly the tokens fall on the ranks.
    """

    def _normalizers(self, mini: DataProto, mask: torch.Tensor) -> dict[str, Any]:
        norms = DataParallelActor._normalizers(mini, mask)
        explicit = mini.meta_info.get("global_num_tokens") is not None or \
            mini.meta_info.get("global_num_seqs") is not None
        if explicit or not dist.is_initialized() or dist.get_world_size() == 1:
            return norms
        world = dist.get_world_size()
        totals = torch.tensor([float(norms["num_tokens"]), float(norms["num_seqs"])], dtype=torch.float64)
        dist.all_reduce(totals)
        norms["num_tokens"] = float(totals[0]) / world
        norms["num_seqs"] = float(totals[1]) / world
        return norms

    def _micro_batches(self, data: DataProto, use_dynamic: bool, micro_batch_size: int | None,
                       max_token_len: int | None, lengths: torch.Tensor | None = None
                       ) -> tuple[list[DataProto], list[list[int]]]:
        parts, groups = super()._micro_batches(data, use_dynamic, micro_batch_size, max_token_len, lengths)
        if not dist.is_initialized() or dist.get_world_size() == 1:
            return parts, groups
        count = torch.tensor([len(groups)], dtype=torch.long)
        dist.all_reduce(count, op=dist.ReduceOp.MAX)
        target = int(count.item())
        if target == len(groups):
            return parts, groups
        if target > len(data):
            raise RuntimeError(f"ranks disagree on the micro-batch count ({target}) and this rank has only "
                               f"{len(data)} rows; give every rank the same number of rows")
        groups = [list(g) for g in groups]
        while len(groups) < target:
            i = max(range(len(groups)), key=lambda j: len(groups[j]))
            g = groups.pop(i)
            half = len(g) // 2
            groups[i:i] = [g[:half], g[half:]]
        return [data[g] for g in groups], groups

