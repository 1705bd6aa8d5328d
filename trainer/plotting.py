"""A PNG of a run's training reward and validation accuracy per step, from its metrics.jsonl.

``plot_metrics(jsonl_path, out_png)`` draws two panels: the mean training score
(``critic/score/mean``, with ``critic/acc/mean`` when logged and different), drawn faint per step
with a bold moving average over about a twentieth of the run (one step's reward is noisy), and
every ``val-core/.../acc/mean@n`` series. Uses matplotlib's Agg backend (no display needed).
Also ``python -m trainer.plotting metrics.jsonl out.png``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import defaultdict
from pathlib import Path

__all__ = ["read_metrics", "plot_metrics", "moving_average"]

logger = logging.getLogger(__name__)


def read_metrics(jsonl_path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl (unparseable lines skipped, with a warning)."""
    records = []
    for i, line in enumerate(Path(jsonl_path).read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            logger.warning("%s line %d is not JSON; skipped", jsonl_path, i + 1)
    return records


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (the first points average what there is so far)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_metrics(jsonl_path: str | Path, out_png: str | Path, title: str | None = None) -> Path:
    """Write the reward / validation-accuracy PNG; returns its path. Raises if nothing can be plotted."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    records = read_metrics(jsonl_path)
    train: dict[str, list[tuple[int, float]]] = defaultdict(list)
    val: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for rec in records:
        step = rec.get("step")
        if not isinstance(step, (int, float)):
            continue
        for key in ("critic/score/mean", "critic/acc/mean"):
            if isinstance(rec.get(key), (int, float)):
                train[key].append((int(step), float(rec[key])))
        for key, value in rec.items():
            if key.startswith("val-core/") and "/acc/mean@" in key and isinstance(value, (int, float)):
                val[key[len("val-core/"):]].append((int(step), float(value)))
    if not train and not val:
        raise ValueError(f"{jsonl_path}: no critic/score/mean or val-core/.../acc/mean@n values to plot")
    if train.get("critic/acc/mean") == train.get("critic/score/mean"):   # a 0/1 reward: the same curve
        train.pop("critic/acc/mean", None)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for color, (key, points) in zip(("tab:blue", "tab:orange"), train.items()):
        xs, ys = zip(*sorted(points))
        window = max(1, len(ys) // 20)
        axes[0].plot(xs, ys, color=color, alpha=0.3 if window > 1 else 1.0, linewidth=0.8,
                     label=key if window == 1 else None)
        if window > 1:
            axes[0].plot(xs, moving_average(list(ys), window), color=color, linewidth=2,
                         label=f"{key} ({window}-step mean)")
    axes[0].set_title("training reward")
    axes[0].set_xlabel("step")
    for key, points in val.items():
        xs, ys = zip(*sorted(points))
        axes[1].plot(xs, ys, marker="o", label=key)
    axes[1].set_title("validation accuracy")
    axes[1].set_xlabel("step")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m trainer.plotting <metrics.jsonl> <out.png>")
    print(plot_metrics(sys.argv[1], sys.argv[2]))
