"""The resumable sampler: a resumed run sees exactly the batches an uninterrupted run sees."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.data import Dataset

from relift.data import ResumableRandomSampler, make_dataloader


class Numbers(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"x": torch.tensor(i), "tag": f"row{i}"}


def perm(n: int, seed: int) -> list[int]:
    g = torch.Generator()
    g.manual_seed(seed)
    return torch.randperm(n, generator=g).tolist()


def take(loader, count: int) -> list[list[int]]:
    """The next ``count`` batches, starting a new pass over the loader whenever one ends
    (what a trainer's epoch loop does), never pulling more than ``count`` batches."""
    out: list[list[int]] = []
    while len(out) < count:
        got = 0
        for batch in loader:
            out.append(batch["x"].tolist())
            got += 1
            if len(out) == count:
                break
        assert got or len(out) == count, "a pass over the loader yielded nothing"
    return out


def test_epoch_orders_follow_seed_plus_epoch():
    s = ResumableRandomSampler(10, seed=7)
    assert [list(s) for _ in range(3)] == [perm(10, 7), perm(10, 8), perm(10, 9)]
    assert s.state_dict()["epoch"] == 3 and s.state_dict()["offset"] == 0
    assert list(ResumableRandomSampler(5, seed=7, shuffle=False)) == [0, 1, 2, 3, 4]
    assert perm(10, 7) != perm(10, 8)


def test_sampler_state_resumes_mid_epoch_and_at_the_boundary():
    ref = ResumableRandomSampler(6, seed=3)
    full = list(ref) + list(ref)
    for k in (0, 4, 6, 9):
        a = ResumableRandomSampler(6, seed=3)
        it, first = iter(a), []
        while len(first) < k:
            try:
                first.append(next(it))
            except StopIteration:
                it = iter(a)
        state = pickle.loads(pickle.dumps(a.state_dict()))
        b = ResumableRandomSampler(6, seed=3)
        b.load_state_dict(state)
        rest = []
        while len(first) + len(rest) < 12:
            rest.extend(b)
        assert first + rest[: 12 - k] == full, k


@pytest.mark.parametrize("drop_last", [True, False])
def test_loader_resume_matches_uninterrupted_run_across_epochs(drop_last):
    ds = Numbers(10)  # batch 4: 2 (drop_last) or 3 batches per epoch
    per_epoch = 2 if drop_last else 3
    total = 4 * per_epoch
    full = take(make_dataloader(ds, batch_size=4, seed=11, drop_last=drop_last), total)
    # independent expectation: epoch e is randperm(10, seed 11 + e), cut into batches of 4
    expected = []
    for e in range(4):
        p = perm(10, 11 + e)
        p = p[:8] if drop_last else p
        expected += [p[i:i + 4] for i in range(0, len(p), 4)]
    assert full == expected
    for k in range(1, total):  # every batch boundary, including the epoch ends
        loader = make_dataloader(ds, batch_size=4, seed=11, drop_last=drop_last)
        first = take(loader, k)
        state = pickle.loads(pickle.dumps(loader.state_dict()))
        resumed = make_dataloader(ds, batch_size=4, seed=11, drop_last=drop_last)
        resumed.load_state_dict(state)
        rest = take(resumed, total - k)
        assert first + rest == full, f"resume after {k} batches"


def test_loader_resume_after_a_finished_pass():
    ds = Numbers(8)
    full = take(make_dataloader(ds, batch_size=4, seed=0), 6)
    loader = make_dataloader(ds, batch_size=4, seed=0)
    first = [b["x"].tolist() for b in loader]  # one complete pass: the iterator is finished
    resumed = make_dataloader(ds, batch_size=4, seed=0)
    resumed.load_state_dict(loader.state_dict())
    second = [b["x"].tolist() for b in resumed]
    assert len(second) == 2 and first + second == full[:4]


def test_loader_resume_with_worker_processes():
    ds = Numbers(12)
    full = take(make_dataloader(ds, batch_size=4, seed=5, drop_last=True), 6)
    loader = make_dataloader(ds, batch_size=4, seed=5, drop_last=True, num_workers=2)
    first = take(loader, 4)  # into the second epoch, with prefetching ahead of it
    state = loader.state_dict()
    resumed = make_dataloader(ds, batch_size=4, seed=5, drop_last=True, num_workers=2)
    resumed.load_state_dict(state)
    assert first + take(resumed, 2) == full


def test_non_tensor_fields_are_collated_as_object_arrays():
    batch = next(iter(make_dataloader(Numbers(4), batch_size=2, seed=0, shuffle=False)))
    assert batch["tag"].dtype == object and list(batch["tag"]) == ["row0", "row1"]


def test_state_from_other_data_is_refused():
    a = ResumableRandomSampler(10, seed=1)
    with pytest.raises(ValueError, match="saved data_len=10 but this run has data_len=12"):
        ResumableRandomSampler(12, seed=1).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="saved seed=1"):
        ResumableRandomSampler(10, seed=2).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="no batch would ever be produced"):
        ResumableRandomSampler(3, batch_size=4, drop_last=True)
