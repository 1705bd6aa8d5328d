"""Read parquet files into one table that remembers where each row came from, and normalise cells.

The table is pyarrow's, not a pandas DataFrame: cells come out as plain Python (``to_pylist``), and a
training process does not import pandas (~60 MB of memory, 0.4 s; ``ParquetTable.frame`` still gives
a DataFrame to the tools that write one). :func:`to_python` also normalises values from pandas or
numpy (arrays of dicts, numpy scalars, NaN) so that datasets, templates, reward functions and
pickling see ordinary Python values. Column checks raise errors that name the column, the file and
the row, and say what was expected.

Paths may be local files, folders (every ``*.parquet`` inside, sorted), glob patterns, or fsspec
URLs (``hf://datasets/org/name/file.parquet``, ``s3://...``), which pyarrow opens through fsspec
(``hf://`` needs ``huggingface_hub``, and network access).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "ParquetTable",
    "expand_data_files",
    "read_parquet_files",
    "read_parquet_table",
    "to_python",
    "as_messages",
    "as_text",
    "as_dict",
]

logger = logging.getLogger(__name__)


def _is_url(path: str) -> bool:
    return "://" in path


def expand_data_files(files: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """One path, or many, as a flat list of parquet files (folders and globs expanded, URLs kept)."""
    if isinstance(files, (str, os.PathLike)):
        items = [os.fspath(files)]
    else:
        items = [os.fspath(f) for f in files]  # also takes an omegaconf ListConfig
    if not items:
        raise ValueError("no data files given (an empty list)")
    out: list[str] = []
    for item in items:
        if _is_url(item):
            out.append(item)
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(str(p) for p in path.glob("*.parquet"))
            if not found:
                raise FileNotFoundError(f"data folder {str(path)!r} contains no *.parquet files")
            out.extend(found)
        elif path.is_file():
            out.append(str(path))
        elif glob.has_magic(item):
            found = sorted(glob.glob(os.path.expanduser(item)))
            if not found:
                raise FileNotFoundError(f"data file pattern {item!r} matches no files")
            out.extend(found)
        else:
            raise FileNotFoundError(f"data file {item!r} does not exist")
    return out


_PANDAS_INDEX = re.compile(r"__index_level_\d+__")  # an unnamed pandas index saved beside the data


@dataclass
class ParquetTable:
    """Rows of one or many parquet files, in order, with their origin (file and row in file).

    The files are kept as separate pyarrow tables, not concatenated: a column may hold different
    types in different files (a string ground truth in one, a struct in another), as it may in the
    data sets users mix, and a column missing from a file reads as None there.
    """

    tables: list[pa.Table]
    files: list[str]
    starts: list[int] = field(init=False)  # first global row of each file
    columns: list[str] = field(init=False)  # every column of any file, in order of first appearance
    _column_cache: dict[tuple[int, str], list] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if len(self.tables) != len(self.files):
            raise ValueError(f"ParquetTable needs one table per file, got {len(self.tables)} tables for "
                             f"{len(self.files)} files")
        self.starts = [0]
        for t in self.tables[:-1]:
            self.starts.append(self.starts[-1] + t.num_rows)
        self.columns = list(dict.fromkeys(str(c) for t in self.tables for c in t.column_names))

    def __len__(self) -> int:
        return self.starts[-1] + self.tables[-1].num_rows if self.tables else 0

    @property
    def frame(self) -> Any:
        """The rows as a pandas DataFrame (imports pandas; for tools that write one, not for training)."""
        import pandas as pd  # noqa: PLC0415 - a training process never needs it

        frames = [t.to_pandas() for t in self.tables]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def _file_of(self, row: int) -> int:
        return int(np.searchsorted(self.starts, row, side="right")) - 1

    def origin(self, row: int) -> str:
        """``'<file> row <i>'`` for a global row number (for error messages)."""
        k = self._file_of(row)
        return f"{self.files[k]} row {row - self.starts[k]}"

    def require_columns(self, names: Sequence[str], purpose: str) -> None:
        """Raise a KeyError naming the missing columns, the files and the columns that exist."""
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise KeyError(f"{purpose}: column(s) {missing} missing from {self.files}; "
                           f"available columns: {self.columns}")

    def cell(self, row: int, column: str) -> Any:
        """One cell as plain Python (see :func:`to_python`); None where the row's file lacks the column."""
        k = self._file_of(row)
        values = self._column_cache.get((k, column))
        if values is None:
            table = self.tables[k]
            values = table.column(column).to_pylist() if column in table.column_names else [None] * table.num_rows
            self._column_cache[(k, column)] = values
        return to_python(values[row - self.starts[k]])


def read_parquet_table(path: str, columns: Sequence[str] | None = None) -> pa.Table:
    """One parquet file (local path or fsspec URL) as a pyarrow table, without a saved pandas index.

    Read through ``ParquetFile``, not ``pq.read_table``: the latter loads pyarrow's dataset module,
    which imports pandas.
    """
    wanted = list(columns) if columns is not None else None
    if _is_url(path):
        import fsspec  # noqa: PLC0415 - only remote files need it

        filesystem, inner = fsspec.core.url_to_fs(path)
        with filesystem.open(inner, "rb") as handle:
            table = pq.ParquetFile(handle).read(columns=wanted)
    else:
        with pq.ParquetFile(path) as parquet:
            table = parquet.read(columns=wanted)
    dropped = [c for c in table.column_names if _PANDAS_INDEX.fullmatch(c)]
    return table.drop_columns(dropped) if dropped else table


def read_parquet_files(files: str | os.PathLike | Iterable[str | os.PathLike],
                       columns: Sequence[str] | None = None) -> ParquetTable:
    """Read parquet files (local or fsspec URLs) into one :class:`ParquetTable`, rows in file order."""
    paths = expand_data_files(files)
    tables: list[pa.Table] = []
    for path in paths:
        try:
            table = read_parquet_table(path, columns)
        except FileNotFoundError:
            raise
        except ImportError as err:
            raise ImportError(f"reading {path!r} needs an fsspec backend that is not installed: {err}") from err
        except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise ValueError(f"could not read parquet file {path!r}: {type(err).__name__}: {err}") from err
        tables.append(table)
        logger.info("read %d rows from %s", table.num_rows, path)
    cols = [t.column_names for t in tables]
    if any(set(c) != set(cols[0]) for c in cols[1:]):
        logger.warning("parquet files have different columns: %s", {p: c for p, c in zip(paths, cols)})
    return ParquetTable(tables=tables, files=paths)


def to_python(value: Any) -> Any:
    """Plain Python for a parquet cell: arrays -> lists, numpy scalars -> Python, NaN -> None."""
    if isinstance(value, np.ndarray):
        return [to_python(v) for v in value.tolist()] if value.dtype != object else [to_python(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN, as pandas fills missing cells
        return None
    pd = sys.modules.get("pandas")  # its missing-value markers exist only once pandas is imported
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return None
    return value


def _type_name(value: Any) -> str:
    return type(value).__name__


def as_messages(value: Any, column: str, where: str) -> list[dict[str, str]]:
    """A cell as a chat: a non-empty list of ``{'role': str, 'content': str}`` dicts, else ValueError."""
    value = to_python(value)
    expected = "a list of chat messages [{'role': str, 'content': str}, ...]"
    if not isinstance(value, list):
        raise ValueError(f"{where}: column {column!r} must be {expected}, got {_type_name(value)}: {str(value)[:80]!r}")
    if not value:
        raise ValueError(f"{where}: column {column!r} is an empty list of messages")
    out = []
    for j, msg in enumerate(value):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or not isinstance(msg.get("content"), str):
            raise ValueError(f"{where}: column {column!r} message {j} must be a dict with str 'role' and str "
                             f"'content', got {str(msg)[:120]!r}")
        out.append({k: v for k, v in msg.items() if v is not None})
    return out


def as_text(value: Any, column: str, where: str, allow_none: bool = False) -> str | None:
    """A completion cell as text: a string, or assistant messages whose contents are joined.

    Any other turn is an error: joining a user turn into a completion would train on prompt text
    (conversations with prompt turns are read by :mod:`relift.data.completion_rows`).
    """
    value = to_python(value)
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{where}: column {column!r} is empty (None)")
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        msgs = as_messages(value, column, where)
        roles = sorted({m["role"] for m in msgs} - {"assistant"})
        if roles:
            raise ValueError(f"{where}: column {column!r} must hold only assistant messages (a completion), "
                             f"it also holds role(s) {roles}")
        return "".join(m["content"] for m in msgs)
    raise ValueError(f"{where}: column {column!r} must be a string or a list of messages, "
                     f"got {_type_name(value)}: {str(value)[:80]!r}")


def as_dict(value: Any, column: str, where: str, required_keys: Sequence[str] = (),
            allow_none: bool = False) -> dict[str, Any]:
    """A struct cell as a dict with the given keys; None becomes ``{}`` when allowed."""
    value = to_python(value)
    if value is None and allow_none:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: column {column!r} must be a dict (parquet struct), "
                         f"got {_type_name(value)}: {str(value)[:80]!r}")
    missing = [k for k in required_keys if k not in value]
    if missing:
        raise ValueError(f"{where}: column {column!r} lacks key(s) {missing}; it has {sorted(value)}")
    return value
