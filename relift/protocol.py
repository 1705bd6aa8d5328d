"""DataProto: the one container passed between the driver and the workers.

A DataProto holds three things about the same N rows:

* ``batch``: a :class:`tensordict.TensorDict` of tensors that share the leading dim N;
* ``non_tensor_batch``: a dict of 1-D numpy object arrays of length N (strings, dicts, ids);
* ``meta_info``: a plain dict that describes the whole batch (temperature, metrics, ...).

Row operations (chunk, concat, repeat, split, select, index) keep the three in step. Pickling
turns tensors into numpy views so Ray's object store can hand them out without copies.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

__all__ = ["DataProto", "DataProtoFuture", "collate_rows"]


def _as_object_array(values: Any, name: str) -> np.ndarray:
    """Return a 1-D object array; lists of dicts or lists stay one element per row."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype == object:
        return values
    values = list(values)
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    if out.ndim != 1:
        raise ValueError(f"non-tensor field {name!r} must be one value per row, got shape {out.shape}")
    return out


def _equal_values(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b)))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return bool(np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object)))
        except Exception:  # noqa: BLE001 - unequal shapes or incomparable objects
            return False
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001
        return False


class DataProto:
    """Rows of tensors plus rows of python objects plus batch-level metadata."""

    def __init__(self, batch: TensorDict | None = None, non_tensor_batch: dict[str, np.ndarray] | None = None,
                 meta_info: dict[str, Any] | None = None) -> None:
        self.batch = batch
        self.non_tensor_batch = dict(non_tensor_batch or {})
        self.meta_info = dict(meta_info or {})
        self.check_consistency()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, tensors: dict[str, torch.Tensor] | None = None,
                  non_tensors: dict[str, Any] | None = None,
                  meta_info: dict[str, Any] | None = None) -> DataProto:
        """Build from plain dicts; every tensor and non-tensor field must have the same length."""
        tensors = dict(tensors or {})
        non_tensors = {k: _as_object_array(v, k) for k, v in (non_tensors or {}).items()}
        batch = None
        if tensors:
            sizes = {k: (t.shape[0] if t.dim() > 0 else None) for k, t in tensors.items()}
            lengths = set(sizes.values())
            if None in lengths or len(lengths) != 1:
                raise ValueError(f"all tensors must share the leading (row) dimension, got {sizes}")
            n = lengths.pop()
            batch = TensorDict(tensors, batch_size=[n])
        return cls(batch=batch, non_tensor_batch=non_tensors, meta_info=meta_info)

    @classmethod
    def from_single_dict(cls, data: dict[str, Any], meta_info: dict[str, Any] | None = None) -> DataProto:
        """Split one mixed dict into tensors and non-tensors (as a dataloader's collate gives it)."""
        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        non_tensors = {k: v for k, v in data.items() if not isinstance(v, torch.Tensor)}
        return cls.from_dict(tensors, non_tensors, meta_info)

    def check_consistency(self) -> None:
        n = len(self.batch) if self.batch is not None else None
        for key, val in self.non_tensor_batch.items():
            if not isinstance(val, np.ndarray) or val.ndim != 1:
                raise TypeError(f"non_tensor_batch[{key!r}] must be a 1-D numpy array, got {type(val).__name__}")
            if n is None:
                n = len(val)
            elif len(val) != n:
                raise ValueError(f"non_tensor_batch[{key!r}] has {len(val)} rows but the batch has {n}")

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        if self.batch is not None:
            return int(self.batch.batch_size[0])
        for val in self.non_tensor_batch.values():
            return len(val)
        return 0

    def __repr__(self) -> str:
        keys = list(self.batch.keys()) if self.batch is not None else []
        return (f"DataProto(len={len(self)}, batch={keys}, non_tensor={list(self.non_tensor_batch)}, "
                f"meta_info={list(self.meta_info)})")

    def __getitem__(self, item: int | slice | Sequence[int] | np.ndarray | torch.Tensor) -> DataProto:
        """Index rows; an int keeps a batch of one row so the result is still a DataProto."""
        if isinstance(item, int):
            item = slice(item, item + 1) if item != -1 else slice(item, None)
        if isinstance(item, slice):
            idx_np: Any = item
            idx_t: Any = item
        else:
            idx_t = torch.as_tensor(np.asarray(item), dtype=torch.long) if not isinstance(item, torch.Tensor) else item
            if idx_t.dtype == torch.bool:
                idx_t = idx_t.nonzero().flatten()
            idx_np = idx_t.cpu().numpy()
        batch = self.batch[idx_t] if self.batch is not None else None
        non_tensor = {k: v[idx_np] for k, v in self.non_tensor_batch.items()}
        return DataProto(batch, non_tensor, dict(self.meta_info))

    def reorder(self, indices: torch.Tensor | Sequence[int]) -> DataProto:
        """Rows in the given order (a permutation or any index list)."""
        return self[indices if isinstance(indices, torch.Tensor) else list(indices)]

    def to(self, device: str | torch.device) -> DataProto:
        if self.batch is not None:
            self.batch = self.batch.to(device)
        return self

    @property
    def device(self) -> torch.device | None:
        return None if self.batch is None else self.batch.device

    # ------------------------------------------------------------------ row groups
    def chunk(self, chunks: int) -> list[DataProto]:
        """Split into ``chunks`` equal parts (the length must divide; see :meth:`pad_to_divisor`)."""
        n = len(self)
        if chunks <= 0:
            raise ValueError(f"chunk count must be positive, got {chunks}")
        if n % chunks != 0:
            raise ValueError(f"cannot chunk {n} rows into {chunks} equal parts ({n} % {chunks} = {n % chunks}); "
                             f"pad first with pad_to_divisor({chunks})")
        return self.split(n // chunks) if n else [self[0:0] for _ in range(chunks)]

    def split(self, split_size: int) -> list[DataProto]:
        """Consecutive parts of ``split_size`` rows (the last one may be shorter)."""
        if split_size <= 0:
            raise ValueError(f"split size must be positive, got {split_size}")
        return [self[i:i + split_size] for i in range(0, len(self), split_size)]

    @staticmethod
    def concat(data: Iterable[DataProto]) -> DataProto:
        """Rows of all parts in order; meta_info is taken from the first part."""
        data = list(data)
        if not data:
            raise ValueError("concat needs at least one DataProto")
        batches = [d.batch for d in data]
        if any(b is None for b in batches) and not all(b is None for b in batches):
            raise ValueError("cannot concat DataProtos where only some have tensors")
        batch = None if batches[0] is None else torch.cat(batches, dim=0)
        keys = set(data[0].non_tensor_batch)
        for d in data[1:]:
            if set(d.non_tensor_batch) != keys:
                raise ValueError(f"non-tensor keys differ between parts: {sorted(keys)} vs "
                                 f"{sorted(d.non_tensor_batch)}")
        non_tensor = {k: np.concatenate([d.non_tensor_batch[k] for d in data]) for k in keys}
        return DataProto(batch, non_tensor, dict(data[0].meta_info))

    def repeat(self, repeat_times: int = 2, interleave: bool = True) -> DataProto:
        """Repeat rows: interleaved gives a,a,b,b; tiled gives a,b,a,b."""
        if repeat_times < 1:
            raise ValueError(f"repeat_times must be >= 1, got {repeat_times}")
        n = len(self)
        if interleave:
            index = torch.arange(n).repeat_interleave(repeat_times)
        else:
            index = torch.arange(n).repeat(repeat_times)
        return self[index]

    def pad_to_divisor(self, divisor: int) -> tuple[DataProto, int]:
        """Append copies of leading rows so the length divides; returns (padded, pad_size)."""
        n = len(self)
        pad = (-n) % divisor
        if pad == 0:
            return self, 0
        if n == 0:
            raise ValueError("cannot pad an empty DataProto")
        index = torch.arange(pad) % n
        return DataProto.concat([self, self[index]]), pad

    def unpad(self, pad_size: int) -> DataProto:
        """Remove the rows that :meth:`pad_to_divisor` appended."""
        return self if pad_size == 0 else self[0:len(self) - pad_size]

    # ------------------------------------------------------------------ columns
    def select(self, batch_keys: Sequence[str] | None = None, non_tensor_batch_keys: Sequence[str] | None = None,
               meta_info_keys: Sequence[str] | None = None, deepcopy: bool = False) -> DataProto:
        """A view with only the named columns (None keeps all of that kind)."""
        self._check_keys(batch_keys, non_tensor_batch_keys, meta_info_keys)
        batch = self.batch
        if batch is not None and batch_keys is not None:
            batch = batch.select(*batch_keys)
        non_tensor = {k: v for k, v in self.non_tensor_batch.items()
                      if non_tensor_batch_keys is None or k in non_tensor_batch_keys}
        meta = {k: v for k, v in self.meta_info.items() if meta_info_keys is None or k in meta_info_keys}
        out = DataProto(batch, non_tensor, meta)
        return copy.deepcopy(out) if deepcopy else out

    def pop(self, batch_keys: Sequence[str] | None = None, non_tensor_batch_keys: Sequence[str] | None = None,
            meta_info_keys: Sequence[str] | None = None) -> DataProto:
        """Remove the named columns from self and return them as a new DataProto."""
        batch_keys = list(batch_keys or [])
        non_tensor_batch_keys = list(non_tensor_batch_keys or [])
        meta_info_keys = list(meta_info_keys or [])
        self._check_keys(batch_keys, non_tensor_batch_keys, meta_info_keys)
        tensors = {k: self.batch.pop(k) for k in batch_keys} if batch_keys else {}
        non_tensor = {k: self.non_tensor_batch.pop(k) for k in non_tensor_batch_keys}
        meta = {k: self.meta_info.pop(k) for k in meta_info_keys}
        batch = TensorDict(tensors, batch_size=self.batch.batch_size) if tensors else None
        return DataProto(batch, non_tensor, meta)

    def _check_keys(self, batch_keys, non_tensor_batch_keys, meta_info_keys) -> None:
        have = set(self.batch.keys()) if self.batch is not None else set()
        for kind, want, have_keys in (("batch", batch_keys, have),
                                      ("non_tensor_batch", non_tensor_batch_keys, set(self.non_tensor_batch)),
                                      ("meta_info", meta_info_keys, set(self.meta_info))):
            missing = [k for k in (want or []) if k not in have_keys]
            if missing:
                raise KeyError(f"{kind} has no key(s) {missing}; it has {sorted(have_keys)}")

    def union(self, other: DataProto) -> DataProto:
        """Merge the columns of ``other`` into self; a key present in both must hold equal values."""
        if len(self) != len(other) and len(self) and len(other):
            raise ValueError(f"union of DataProtos with different lengths {len(self)} and {len(other)}")
        if other.batch is not None:
            if self.batch is None:
                self.batch = other.batch.clone(recurse=False)
            else:
                for key, val in other.batch.items():
                    if key in self.batch.keys() and not _equal_values(self.batch[key], val):
                        raise ValueError(f"union: batch key {key!r} holds different values in the two DataProtos")
                    self.batch[key] = val
        for key, val in other.non_tensor_batch.items():
            if key in self.non_tensor_batch and not _equal_values(self.non_tensor_batch[key], val):
                raise ValueError(f"union: non_tensor_batch key {key!r} holds different values in the two DataProtos")
            self.non_tensor_batch[key] = val
        for key, val in other.meta_info.items():
            if key in self.meta_info and not _equal_values(self.meta_info[key], val):
                raise ValueError(f"union: meta_info key {key!r} differs: {self.meta_info[key]!r} vs {val!r}")
            self.meta_info[key] = val
        self.check_consistency()
        return self

    # ------------------------------------------------------------------ serialisation
    def __getstate__(self) -> dict[str, Any]:
        # Tensors travel as numpy arrays: pickle protocol 5 (which Ray uses) passes their buffers
        # out of band, so a large batch is neither copied into the pickle stream nor re-encoded.
        tensors = {}
        if self.batch is not None:
            for key, t in self.batch.items():
                t = t.detach().cpu().contiguous()
                if t.dtype == torch.bfloat16:
                    tensors[key] = ("bf16", t.view(torch.int16).numpy())
                else:
                    tensors[key] = ("np", t.numpy())
        n = len(self)
        return {"tensors": tensors, "n": n, "non_tensor_batch": self.non_tensor_batch, "meta_info": self.meta_info}

    def __setstate__(self, state: dict[str, Any]) -> None:
        tensors = {}
        for key, (kind, arr) in state["tensors"].items():
            # arrays coming out of Ray's object store are read-only views; torch needs writeable memory
            if not arr.flags.writeable:
                arr = arr.copy()
            t = torch.from_numpy(arr)
            tensors[key] = t.view(torch.bfloat16) if kind == "bf16" else t
        self.batch = TensorDict(tensors, batch_size=[state["n"]]) if tensors else None
        self.non_tensor_batch = state["non_tensor_batch"]
        self.meta_info = state["meta_info"]

    def save_to_disk(self, path: str | Path) -> None:
        """Write to ``path`` as a numpy ``.npz`` archive: one array per tensor / numeric column, and the
        object columns plus ``meta_info`` as JSON; loading never unpickles (no code runs from the file).

        Object values must be JSON data (str, numbers, bool, None, lists, dicts; numpy scalars and
        arrays become numbers and lists, tuples become lists); anything else is a TypeError naming the key.
        """
        arrays: dict[str, np.ndarray] = {}
        tensors = []
        if self.batch is not None:
            for i, (key, t) in enumerate(self.batch.items()):
                t = t.detach().cpu().contiguous()
                kind = "bf16" if t.dtype == torch.bfloat16 else "np"
                arrays[f"tensor_{i}"] = t.view(torch.int16).numpy() if kind == "bf16" else t.numpy()
                tensors.append({"key": key, "entry": f"tensor_{i}", "kind": kind})
        columns, numeric = {}, []
        for i, (key, arr) in enumerate(self.non_tensor_batch.items()):
            if arr.dtype != object:
                arrays[f"column_{i}"] = arr
                numeric.append({"key": key, "entry": f"column_{i}"})
            else:
                columns[key] = [_json_ready(v, f"non_tensor_batch[{key!r}]") for v in arr.tolist()]
        header = {"format": _DISK_FORMAT, "n": len(self), "tensors": tensors, "numeric_columns": numeric,
                  "columns": columns, "meta_info": _json_ready(self.meta_info, "meta_info")}
        arrays["header_json"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        with open(path, "wb") as f:  # a file object: np.savez would append .npz to a path
            np.savez(f, **arrays)

    @staticmethod
    def load_from_disk(path: str | Path) -> DataProto:
        """Read what :meth:`save_to_disk` wrote (``allow_pickle=False``: object arrays are refused)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["header_json"]).decode())
                if header.get("format") != _DISK_FORMAT:
                    raise ValueError(f"{path}: not a DataProto file (format {header.get('format')!r})")
                tensors = {}
                for t in header["tensors"]:
                    arr = torch.from_numpy(z[t["entry"]].copy())
                    tensors[t["key"]] = arr.view(torch.bfloat16) if t["kind"] == "bf16" else arr
                non_tensor = {c["key"]: z[c["entry"]].copy() for c in header["numeric_columns"]}
        except (ValueError, KeyError, OSError) as err:
            raise ValueError(f"cannot load a DataProto from {path}: {err}") from None
        for key, values in header["columns"].items():
            non_tensor[key] = _as_object_array(values, key)
        n = int(header["n"])
        return DataProto(TensorDict(tensors, batch_size=[n]) if tensors else None, non_tensor, header["meta_info"])


_DISK_FORMAT = "relift-dataproto-1"


def _json_ready(value: Any, where: str) -> Any:
    """``value`` as JSON data (numpy scalars / arrays and tensors become numbers / lists)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return _json_ready(value.tolist(), where)
    if isinstance(value, (list, tuple)):
        return [_json_ready(v, where) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"DataProto.save_to_disk: {where} has a non-string dict key {k!r}")
            out[k] = _json_ready(v, where)
        return out
    raise TypeError(f"DataProto.save_to_disk: {where} holds a {type(value).__name__}, which is not JSON data; "
                    "only str, numbers, bool, None, lists and dicts can be saved")


class DataProtoFuture:
    """A DataProto that is still being computed on workers: ``get()`` collects and concatenates.

    ``collect_fn`` turns the list of per-worker results into one value (concat for data-parallel
    calls); ``futures`` are Ray object refs, or already-computed values for the in-process backend.
    """

    def __init__(self, futures: list[Any], collect_fn: Any, getter: Any = None) -> None:
        self.futures = futures
        self.collect_fn = collect_fn
        self._getter = getter

    def get(self) -> Any:
        results = self._getter(self.futures) if self._getter is not None else self.futures
        return self.collect_fn(results)


def collate_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate dataset rows: tensors are stacked, everything else becomes an object array."""
    if not rows:
        raise ValueError("cannot collate an empty list of rows")
    out: dict[str, Any] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = _as_object_array(values, key)
    return out
