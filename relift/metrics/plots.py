"""PNG plots of the capability analysis (matplotlib, headless): pass@k curves and solve-rate histograms."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["plot_pass_at_k", "plot_solve_rate_histograms"]


def _pyplot() -> Any:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # no display on clusters and CI
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def plot_pass_at_k(curves: Mapping[str, Mapping[int, float]], path: str | os.PathLike, title: str = "") -> str:
    """Overlay one pass@k curve per model (log2 k on x, % on y); returns the path written."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        ks = sorted(curve)
        ax.plot(ks, [100.0 * curve[k] for k in ks], marker="o", ms=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k (%)")
    ax.set_title(title or "pass@k (unbiased estimator)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def plot_solve_rate_histograms(hists: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike,
                               title: str = "") -> str:
    """Grouped bars: questions per solve-rate bin, one colour per model; returns the path written."""
    plt = _pyplot()
    labels = [row["label"] for row in next(iter(hists.values()))]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(hists), 1)
    for i, (model, rows) in enumerate(hists.items()):
        xs = [j + (i - (len(hists) - 1) / 2) * width for j in range(len(rows))]
        ax.bar(xs, [row["questions"] for row in rows], width=width, label=model)
    ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_xlabel("solve rate (correct samples / samples) of a question")
    ax.set_ylabel("questions")
    ax.set_title(title or "per-question solve rate")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
