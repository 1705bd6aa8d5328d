"""A shuffled sampler whose position can be saved and restored, and the data loader built on it.

Epoch e visits the rows in the order ``randperm(data_len, seed + e)`` (or 0..n-1 without shuffle),
so the order depends only on (seed, epoch), never on how many runs it took to get there. The
state is (epoch, offset) where offset counts the indices of epoch e already handed out; a resumed
run restores it and sees exactly the sequence an uninterrupted run would have seen, across epoch
boundaries too. With ``drop_last`` the sampler itself stops each epoch at a multiple of the batch
size, so a saved position never points into a batch that would be dropped.

The sampler's iterator writes its progress back into the sampler, which is what makes torchdata's
``StatefulDataLoader`` (single or multi-process) checkpoint it: the loader records
``sampler.state_dict()`` at the step it yields and restores it with ``load_state_dict``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["ResumableRandomSampler", "make_dataloader", "epoch_order"]

logger = logging.getLogger(__name__)


def epoch_order(data_len: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """The row order of one epoch (a pure function of its arguments)."""
    if not shuffle:
        return list(range(data_len))
    gen = torch.Generator()
    gen.manual_seed(int(seed) + int(epoch))
    return torch.randperm(data_len, generator=gen).tolist()


class _SamplerIterator(Iterator[int]):
    """Yields the rest of the sampler's current epoch and advances the sampler's state as it goes."""

    def __init__(self, sampler: ResumableRandomSampler) -> None:
        self.sampler = sampler
        if sampler.offset >= sampler.num_samples:  # a finished epoch: the next pass is the next epoch
            sampler.epoch += 1
            sampler.offset = 0
        self.epoch = sampler.epoch
        self.order = epoch_order(sampler.data_len, sampler.seed, sampler.epoch, sampler.shuffle)
        self.done = False

    def __iter__(self) -> _SamplerIterator:
        return self

    def __next__(self) -> int:
        s = self.sampler
        if self.done:
            raise StopIteration
        if s.epoch != self.epoch:
            raise RuntimeError("the sampler's state changed under a running iterator (load_state_dict or a second "
                               "iterator); create a new iterator")
        if s.offset >= s.num_samples:
            s.epoch += 1
            s.offset = 0
            self.done = True
            raise StopIteration
        idx = self.order[s.offset]
        s.offset += 1
        return idx


class ResumableRandomSampler(Sampler[int]):
    """Shuffled indices per epoch from ``seed + epoch``; ``state_dict`` = (epoch, offset).

    ``batch_size`` + ``drop_last`` shorten each epoch to a multiple of the batch size (what a data
    loader with ``drop_last`` would use), so that every saved position is a batch boundary.
    """

    def __init__(self, data_len: int, seed: int = 0, shuffle: bool = True, batch_size: int | None = None,
                 drop_last: bool = False) -> None:
        if data_len <= 0:
            raise ValueError(f"data_len must be positive, got {data_len}")
        self.data_len = int(data_len)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.num_samples = self.data_len
        if drop_last:
            if not batch_size or batch_size <= 0:
                raise ValueError("drop_last needs a positive batch_size")
            self.num_samples = (self.data_len // batch_size) * batch_size
            if self.num_samples == 0:
                raise ValueError(f"batch_size {batch_size} > dataset size {self.data_len} with drop_last: "
                                 f"no batch would ever be produced")
        self.epoch = 0
        self.offset = 0

    def __iter__(self) -> Iterator[int]:
        return _SamplerIterator(self)

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Jump to the start of ``epoch`` (for callers that count epochs themselves)."""
        self.epoch = int(epoch)
        self.offset = 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset, "seed": self.seed, "data_len": self.data_len,
                "num_samples": self.num_samples, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position; a state from a different dataset size, seed or shuffle is refused."""
        for key in ("seed", "data_len", "num_samples", "shuffle"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"cannot resume the sampler: saved {key}={state[key]!r} but this run has "
                                 f"{key}={getattr(self, key)!r} (the data or the seed changed since the checkpoint)")
        epoch, offset = int(state["epoch"]), int(state["offset"])
        if epoch < 0 or not 0 <= offset <= self.num_samples:
            raise ValueError(f"invalid sampler state epoch={epoch} offset={offset} (epoch length {self.num_samples})")
        self.epoch, self.offset = epoch, offset


def make_dataloader(dataset: Dataset, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = True,
                    collate_fn: Callable[[list[Any]], Any] | None = None, num_workers: int = 0, **kwargs: Any):
    """A torchdata ``StatefulDataLoader`` over ``dataset`` driven by a :class:`ResumableRandomSampler`.

    ``loader.state_dict()`` / ``loader.load_state_dict()`` save and restore the position; the
    sampler is ``loader.sampler``. ``collate_fn`` defaults to :func:`relift.data.collate.collate_fn`.
    """
    from torchdata.stateful_dataloader import StatefulDataLoader

    from relift.data.collate import collate_fn as default_collate

    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    sampler = ResumableRandomSampler(len(dataset), seed=seed, shuffle=shuffle, batch_size=batch_size,
                                     drop_last=drop_last)
    with warnings.catch_warnings():  # torchdata 0.11 calls a deprecated torch API on construction
        warnings.filterwarnings("ignore", message=".*set_vital.*deprecated", category=UserWarning)
        return StatefulDataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                                  collate_fn=collate_fn or default_collate, num_workers=num_workers, **kwargs)
