"""DataProto: row operations keep tensors, non-tensors and meta_info in step."""

import pickle

import numpy as np
import pytest
import torch

from relift.protocol import DataProto


def make(n: int = 6) -> DataProto:
    return DataProto.from_dict(
        tensors={"ids": torch.arange(n * 3).view(n, 3), "score": torch.arange(n, dtype=torch.float32)},
        non_tensors={"uid": [f"u{i}" for i in range(n)], "gt": [{"a": i} for i in range(n)]},
        meta_info={"temperature": 1.0},
    )


def test_from_dict_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="leading"):
        DataProto.from_dict(tensors={"a": torch.zeros(3, 2), "b": torch.zeros(4)})
    with pytest.raises(ValueError, match="rows"):
        DataProto.from_dict(tensors={"a": torch.zeros(3, 2)}, non_tensors={"x": [1, 2]})


def test_dict_values_stay_one_per_row():
    d = make(4)
    assert d.non_tensor_batch["gt"].shape == (4,)
    assert d.non_tensor_batch["gt"][2] == {"a": 2}


def test_chunk_concat_round_trip():
    d = make(6)
    parts = d.chunk(3)
    assert [len(p) for p in parts] == [2, 2, 2]
    assert parts[1].non_tensor_batch["uid"].tolist() == ["u2", "u3"]
    back = DataProto.concat(parts)
    assert torch.equal(back.batch["ids"], d.batch["ids"])
    assert back.non_tensor_batch["uid"].tolist() == d.non_tensor_batch["uid"].tolist()
    assert back.meta_info == {"temperature": 1.0}
    with pytest.raises(ValueError, match="pad_to_divisor"):
        d.chunk(4)


def test_repeat_interleaved_vs_tiled():
    d = make(2)
    inter = d.repeat(3, interleave=True)
    tiled = d.repeat(3, interleave=False)
    assert inter.batch["score"].tolist() == [0, 0, 0, 1, 1, 1]
    assert tiled.batch["score"].tolist() == [0, 1, 0, 1, 0, 1]
    assert inter.non_tensor_batch["uid"].tolist() == ["u0", "u0", "u0", "u1", "u1", "u1"]
    assert tiled.non_tensor_batch["uid"].tolist() == ["u0", "u1", "u0", "u1", "u0", "u1"]


def test_union_merges_and_raises_on_conflict():
    d = make(3)
    extra = DataProto.from_dict(tensors={"adv": torch.ones(3), "score": torch.arange(3, dtype=torch.float32)},
                                non_tensors={"acc": [True, False, True]}, meta_info={"step": 1})
    d.union(extra)
    assert set(d.batch.keys()) == {"ids", "score", "adv"}
    assert d.meta_info == {"temperature": 1.0, "step": 1}
    clash = DataProto.from_dict(tensors={"score": torch.zeros(3)})
    with pytest.raises(ValueError, match="score"):
        make(3).union(clash)
    with pytest.raises(ValueError, match="uid"):
        make(3).union(DataProto.from_dict(non_tensors={"uid": ["x", "y", "z"]}))
    with pytest.raises(ValueError, match="temperature"):
        make(3).union(DataProto.from_dict(tensors={"q": torch.ones(3)}, meta_info={"temperature": 0.5}))


def test_select_pop_split():
    d = make(5)
    s = d.select(batch_keys=["ids"], non_tensor_batch_keys=["uid"])
    assert list(s.batch.keys()) == ["ids"] and list(s.non_tensor_batch) == ["uid"]
    with pytest.raises(KeyError, match="nope"):
        d.select(batch_keys=["nope"])
    popped = d.pop(batch_keys=["score"], non_tensor_batch_keys=["gt"])
    assert "score" not in d.batch.keys() and "gt" not in d.non_tensor_batch
    assert popped.batch["score"].tolist() == [0, 1, 2, 3, 4]
    parts = make(5).split(2)
    assert [len(p) for p in parts] == [2, 2, 1]
    assert parts[-1].non_tensor_batch["uid"].tolist() == ["u4"]


def test_pad_to_divisor_and_back():
    d = make(5)
    padded, pad = d.pad_to_divisor(4)
    assert pad == 3 and len(padded) == 8
    assert padded.non_tensor_batch["uid"].tolist()[5:] == ["u0", "u1", "u2"]
    back = padded.unpad(pad)
    assert torch.equal(back.batch["ids"], d.batch["ids"])
    same, zero = d.pad_to_divisor(5)
    assert zero == 0 and same is d


def test_index_by_mask_and_list():
    d = make(4)
    assert d[torch.tensor([True, False, True, False])].batch["score"].tolist() == [0, 2]
    assert d[[3, 1]].non_tensor_batch["uid"].tolist() == ["u3", "u1"]
    assert len(d[2]) == 1


def test_pickle_round_trip_keeps_dtypes_and_values():
    d = make(4)
    d.batch["half"] = torch.randn(4, 2).to(torch.bfloat16)
    back = pickle.loads(pickle.dumps(d, protocol=5))
    for key in d.batch.keys():
        assert back.batch[key].dtype == d.batch[key].dtype
        assert torch.equal(back.batch[key], d.batch[key])
    assert back.non_tensor_batch["gt"][3] == {"a": 3}
    assert back.meta_info == d.meta_info


def test_pickle5_passes_tensor_buffers_out_of_band():
    d = DataProto.from_dict(tensors={"x": torch.zeros(1024, 1024, dtype=torch.int64)})
    buffers = []
    payload = pickle.dumps(d, protocol=5, buffer_callback=buffers.append)
    # the 8 MiB tensor travels as a buffer, not inside the pickle stream
    assert len(payload) < 10_000
    assert sum(memoryview(b).nbytes for b in buffers) == 1024 * 1024 * 8
    back = pickle.loads(payload, buffers=buffers)
    assert back.batch["x"].shape == (1024, 1024)


def test_non_tensor_only_proto():
    d = DataProto.from_dict(non_tensors={"a": np.array([1, 2, 3], dtype=object)})
    assert len(d) == 3
    assert [len(p) for p in d.chunk(3)] == [1, 1, 1]
