"""Validation summaries: per data source mean@n, pass@k and maj@n, as tables and tracker metrics.

``summarize_samples`` takes one record per sampled answer::

    {"data_source": "aime", "prompt_id": 17, "correct": True, "pred": "204"}

and returns, per data source, a flat dict whose metric keys already carry their ``@``-suffix::

    {"aime": {"n": 16, "num_prompts": 30, "mean@16": 0.28, "pass@1": 0.28, ..., "pass@16": 0.6, "maj@16": 0.4}}

so ``to_metric_dict`` only prefixes them: ``val-core/aime/acc/mean@16`` (verl's names).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from relift.metrics.pass_at_k import is_correct, maj_at_k, pass_at_k

__all__ = ["summarize_samples", "to_markdown", "to_metric_dict", "default_ks"]

logger = logging.getLogger(__name__)

_REQUIRED = ("data_source", "prompt_id", "correct")


def default_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n, plus n itself when it is not a power of two."""
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    if ks[-1] != n:
        ks.append(n)
    return ks


def summarize_samples(records: Iterable[Mapping[str, Any]], ks: Sequence[int] | None = None
                      ) -> dict[str, dict[str, Any]]:
    """Group records by data source and prompt; compute mean@n, pass@k, maj@n per data source.

    Every prompt of one data source must have the same number of samples n (raises otherwise).
    ``ks`` defaults to :func:`default_ks`; given ks larger than a source's n are skipped for it.
    Data sources and ks keep their first-seen / ascending order.
    """
    grouped: dict[str, dict[Any, tuple[list[float], list[Any]]]] = {}
    for i, rec in enumerate(records):
        missing = [key for key in _REQUIRED if key not in rec]
        if missing:
            raise KeyError(f"record {i} lacks {', '.join(missing)} (has {', '.join(map(str, rec))})")
        by_prompt = grouped.setdefault(str(rec["data_source"]), {})
        corrects, preds = by_prompt.setdefault(_hashable(rec["prompt_id"]), ([], []))
        corrects.append(float(rec["correct"]))
        preds.append(rec.get("pred"))
    if ks is not None and any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must all be >= 1, got {list(ks)}")

    summary: dict[str, dict[str, Any]] = {}
    for source, prompts in grouped.items():
        sizes = {len(c) for c, _ in prompts.values()}
        if len(sizes) != 1:
            counts = sorted(sizes)
            raise ValueError(f"data_source {source!r}: prompts have different numbers of samples {counts}; "
                             "mean@n and pass@k need the same n for every prompt")
        n = sizes.pop()
        source_ks = default_ks(n) if ks is None else sorted({int(k) for k in ks if int(k) <= n})
        if ks is not None and len(source_ks) < len(set(ks)):
            logger.warning("data_source %r has n=%d samples per prompt; skipping pass@k for k > %d", source, n, n)
        row: dict[str, Any] = {"n": n, "num_prompts": len(prompts)}
        row[f"mean@{n}"] = float(np.mean([np.mean(c) for c, _ in prompts.values()]))
        for k in source_ks:
            row[f"pass@{k}"] = float(np.mean([pass_at_k(n, sum(is_correct(x) for x in c), k)
                                              for c, _ in prompts.values()]))
        row[f"maj@{n}"] = float(np.mean([maj_at_k(p, c) for c, p in prompts.values()]))
        summary[source] = row
    return summary


def _hashable(x: Any) -> Any:
    try:
        hash(x)
        return x
    except TypeError:
        return repr(x)


def to_metric_dict(summary: Mapping[str, Mapping[str, Any]], var: str = "acc", prefix: str = "val-core"
                   ) -> dict[str, float]:
    """``{"val-core/<data_source>/<var>/mean@16": 0.28, ...}`` for every ``@``-metric of the summary."""
    return {f"{prefix}/{source}/{var}/{key}": float(value)
            for source, row in summary.items() for key, value in row.items() if "@" in key}


def _column_order(key: str) -> tuple[int, int]:
    kind, _, k = key.partition("@")
    return ({"mean": 0, "pass": 1, "maj": 2}.get(kind, 3), int(k) if k.isdigit() else 0)


def to_markdown(summary: Mapping[str, Mapping[str, Any]], percent: bool = True, digits: int = 1) -> str:
    """A markdown table, one row per data source (values in % by default; ``-`` where absent).

    Columns use generic names (``mean@n``, ``maj@n``) so sources with different n share a column;
    the ``n`` column says which n applies.
    """
    if not summary:
        return "(no samples)"

    def generic(key: str, n: int) -> str:
        return key.replace(f"@{n}", "@n") if key.startswith(("mean@", "maj@")) else key

    keys: list[str] = []
    for row in summary.values():
        for key in row:
            g = generic(key, int(row["n"]))
            if "@" in key and g not in keys:
                keys.append(g)
    keys.sort(key=lambda g: _column_order(g.replace("@n", "@0")))
    header = ["data_source", "prompts", "n"] + keys
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    scale = 100.0 if percent else 1.0
    for source, row in summary.items():
        n = int(row["n"])
        by_generic = {generic(k, n): v for k, v in row.items() if "@" in k}
        cells = [str(source), str(row["num_prompts"]), str(n)]
        cells += [f"{by_generic[g] * scale:.{digits}f}" if g in by_generic else "-" for g in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
