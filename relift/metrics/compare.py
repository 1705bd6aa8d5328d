"""Model comparison tables: models as rows, benchmarks + average as columns (the seeds' table layout).

Input per model is the ``per_source`` mapping of a ``trainer.main_eval`` result (``{benchmark: {"n":
16, "num_prompts": 30, "mean@16": 0.28, "pass@1": ..., ...}}``); nothing is re-sampled or re-scored.
The value shown is one metric: ``mean@n`` (accuracy averaged over the n samples, the "pass@1" of
the REDI/ReLIFT tables) by default, or ``maj@n`` or ``pass@K`` for a fixed K. The average is the
unweighted mean over the benchmarks (as the seed tables average them); a model missing a benchmark
gets ``-`` there and in the average.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["comparison_rows", "comparison_csv", "comparison_markdown", "metric_key"]

PerSource = Mapping[str, Mapping[str, Any]]


def metric_key(metric: str, n: int) -> str:
    """``mean@n`` / ``maj@n`` -> ``mean@16``; ``pass@4`` stays."""
    kind, _, k = metric.partition("@")
    if kind not in ("mean", "pass", "maj") or not k:
        raise ValueError(f"metric must be mean@n, maj@n or pass@K, got {metric!r}")
    if k == "n":
        return f"{kind}@{n}"
    if not k.isdigit():
        raise ValueError(f"metric must be mean@n, maj@n or pass@K with an integer K, got {metric!r}")
    return metric


def comparison_rows(models: Mapping[str, PerSource], metric: str = "mean@n",
                    benchmarks: Sequence[str] | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """(benchmark columns, one row per model ``{"model", <benchmark>: value or None, "average", "n"}``).

    ``benchmarks`` fixes the columns and their order (default: every benchmark, first-seen order).
    ``n`` holds the samples per question per benchmark, so a reader can see unequal protocols.
    """
    if not models:
        raise ValueError("no models to compare")
    metric_key(metric, 1)  # validate early
    cols = list(benchmarks) if benchmarks else []
    if not benchmarks:
        for per_source in models.values():
            cols += [b for b in per_source if b not in cols]
    rows = []
    for label, per_source in models.items():
        row: dict[str, Any] = {"model": label, "n": {}}
        values = []
        for b in cols:
            src = per_source.get(b)
            value = None
            if src is not None:
                value = src.get(metric_key(metric, int(src["n"])))
                row["n"][b] = int(src["n"])
            row[b] = None if value is None else float(value)
            values.append(row[b])
        row["average"] = None if not values or any(v is None for v in values) else sum(values) / len(values)
        rows.append(row)
    return cols, rows


def _fmt(value: float | None, percent: bool, digits: int) -> str:
    return "-" if value is None else f"{value * (100.0 if percent else 1.0):.{digits}f}"


def comparison_markdown(cols: Sequence[str], rows: Sequence[Mapping[str, Any]], metric: str = "mean@n",
                        percent: bool = True, digits: int = 1) -> str:
    """The markdown table, with a line above it naming the metric and the samples per question."""
    ns = sorted({n for row in rows for n in row["n"].values()})
    n_text = f"n = {ns[0]} samples per question" if len(ns) == 1 else \
        "n differs: " + "; ".join(f"{row['model']}: " + ", ".join(f"{b} {n}" for b, n in row["n"].items())
                                  for row in rows)
    head = f"{metric}{' (%)' if percent else ''}, {n_text}\n\n"
    lines = ["| model | " + " | ".join(cols) + " | average |", "|---|" + "---:|" * (len(cols) + 1)]
    for row in rows:
        cells = [_fmt(row[b], percent, digits) for b in cols] + [_fmt(row["average"], percent, digits)]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def comparison_csv(cols: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV with fractions (not %): ``model, <benchmarks...>, average``; empty cells where missing."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model", *cols, "average"])
    for row in rows:
        writer.writerow([row["model"], *("" if row[b] is None else f"{row[b]:.6g}" for b in cols),
                         "" if row["average"] is None else f"{row['average']:.6g}"])
    return buf.getvalue()
