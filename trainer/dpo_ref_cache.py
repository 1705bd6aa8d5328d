"""DPO's reference log-probs computed once, before training, and cached (``ref.precompute: true``).

In the REDI paper DPO's reference is the stage-1 SFT model, the model DPO starts from. So the
policy itself, before its first update, gives every reference log-prob: one pass over the pairs
before step 1, kept as per-sequence sums keyed by dataset row, and no second live model (the
colocated reference policy) is needed: the memory of a second copy of the weights is saved for
the price of one extra forward pass over the data (TRL calls this ``precompute_ref_log_probs``).

The cache is saved to ``<default_local_dir>/dpo_ref_cache.pt`` so a resumed run reuses it (the
policy has moved by then and could not recompute it); resuming without that file is an error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from relift.protocol import DataProto

__all__ = ["RefLogProbCache", "CACHE_FILE"]

logger = logging.getLogger(__name__)

CACHE_FILE = "dpo_ref_cache.pt"


class RefLogProbCache:
    """Per-row summed reference log-probs of the chosen and rejected completions."""

    def __init__(self, sums: dict[str, tuple[float, float]]) -> None:
        self.sums = sums  # "<split>:<dataset row>" -> (chosen sum, rejected sum)

    @classmethod
    def compute(cls, seq_log_probs: Any, splits: dict[str, list[DataProto]], to_pair_layout: Any,
                side: Any) -> RefLogProbCache:
        """Forward every pair once through ``seq_log_probs`` (the not-yet-trained policy)."""
        from tqdm.auto import tqdm

        sums: dict[str, tuple[float, float]] = {}
        for split, batches in splits.items():
            for batch in tqdm(batches, desc=f"DPO reference log-probs, {split} (once)", unit="batch", leave=False):
                data = to_pair_layout(batch)
                per_side = []
                for name in ("chosen", "rejected"):
                    d = side(data, name)
                    lp = seq_log_probs(d)
                    per_side.append((lp * d.batch["response_mask"].to(lp.dtype)).sum(-1))
                for k, index in enumerate(batch.non_tensor_batch["index"]):
                    sums[f"{split}:{int(index)}"] = (float(per_side[0][k]), float(per_side[1][k]))
        logger.info("DPO reference: cached summed log-probs of %d pairs", len(sums))
        return cls(sums)

    def lookup(self, batch: DataProto, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sequence reference sums [B] of the chosen and rejected sides of ``batch``."""
        index = batch.non_tensor_batch.get("index")
        if index is None:
            raise KeyError("the batch has no 'index' column to look the DPO reference up by")
        keys = [f"{split}:{int(i)}" for i in index]
        missing = [k for k in keys if k not in self.sums]
        if missing:
            raise KeyError(f"DPO reference cache has no entry for {missing[:5]}; it was made for other data "
                           f"(delete {CACHE_FILE} in the run folder to recompute)")
        return (torch.tensor([self.sums[k][0] for k in keys], dtype=torch.float32),
                torch.tensor([self.sums[k][1] for k in keys], dtype=torch.float32))

    def attach(self, data: DataProto, batch: DataProto, split: str = "train") -> DataProto:
        """``data`` plus ``ref_chosen_log_prob`` / ``ref_rejected_log_prob`` (per-sequence sums [B])."""
        c, r = self.lookup(batch, split)
        return data.union(DataProto.from_dict(tensors={"ref_chosen_log_prob": c, "ref_rejected_log_prob": r}))

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CACHE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.sums, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> RefLogProbCache | None:
        path = Path(folder) / CACHE_FILE
        return cls(torch.load(path, weights_only=True)) if path.is_file() else None


def prepare_ref_cache(trainer: Any, resumed: bool) -> RefLogProbCache:
    """The offline trainer's cache: loaded from its run folder, else computed now (never after a resume)."""
    from relift.data import collate_to_dataproto

    cache = RefLogProbCache.load(trainer.local_dir)
    if cache is not None:
        return cache
    if resumed:
        raise FileNotFoundError(f"ref.precompute=true: resuming needs {Path(trainer.local_dir) / CACHE_FILE} "
                                f"(the reference log-probs of the untrained model); it is missing")
    ds, bs = trainer.train_dataset, trainer.batch_size
    train = [collate_to_dataproto([ds[i] for i in range(s, min(s + bs, len(ds)))]) for s in range(0, len(ds), bs)]
    from trainer.offline_trainer import _side, to_pair_layout  # noqa: PLC0415 - the trainer's own layout

    cache = RefLogProbCache.compute(trainer._seq_log_probs, {"train": train, "val": trainer.val_batches},
                                    to_pair_layout, _side)
    cache.save(trainer.local_dir)
    return cache
