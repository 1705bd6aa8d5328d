"""Collate dataset items into a batch dict (tensors stacked, everything else an object array).

The result feeds ``DataProto.from_single_dict`` directly; :func:`collate_to_dataproto` does both.
"""

from __future__ import annotations

from typing import Any

from relift.protocol import DataProto, collate_rows

__all__ = ["collate_fn", "collate_to_dataproto"]


def collate_fn(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the tensors of equal-length items; non-tensors become 1-D numpy object arrays."""
    return collate_rows(rows)


def collate_to_dataproto(rows: list[dict[str, Any]], meta_info: dict[str, Any] | None = None) -> DataProto:
    """Items -> one DataProto (tensors in ``batch``, the rest in ``non_tensor_batch``)."""
    return DataProto.from_single_dict(collate_rows(rows), meta_info=meta_info)
