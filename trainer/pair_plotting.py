"""The numbers to watch in a REDI / DPO / SimPO run, per step, and a PNG of them.

Per step the pair losses log (see :mod:`relift.algorithms.losses`): the chosen and rejected
log-probs (REDI, SimPO: mean per token; DPO: summed), their margin, and the fraction of pairs where
chosen > rejected (REDI: per-token log-prob; DPO/SimPO: implicit reward). A healthy REDI run keeps
the chosen log-prob roughly level while the rejected one falls; with alpha near 1 the rejected
log-prob can collapse (fall without bound) and drag the chosen one with it: the left panel shows it.

``plot_pair_metrics({label: metrics.jsonl, ...}, out_png)`` overlays runs; also
``python -m trainer.pair_plotting out.png LABEL=run/metrics.jsonl [...]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trainer.plotting import read_metrics

__all__ = ["pair_metric_keys", "console_keys", "plot_pair_metrics"]


def pair_metric_keys(loss_type: str) -> dict[str, str]:
    """The metric names of chosen / rejected log-prob, margin and chosen > rejected for a pair loss."""
    if loss_type == "redi":
        return {"chosen": "redi/logps/chosen", "rejected": "redi/logps/rejected", "margin": "redi/margins",
                "acc": "redi/accuracies"}
    if loss_type in ("dpo", "simpo"):
        return {"chosen": f"{loss_type}/logps/chosen", "rejected": f"{loss_type}/logps/rejected",
                "margin": f"{loss_type}/rewards/margins", "acc": f"{loss_type}/rewards/accuracies"}
    raise ValueError(f"not a pair loss: {loss_type!r}")


def console_keys(loss_type: str) -> dict[str, str]:
    """Extra console columns for a pair run (short label -> metric)."""
    return {f"lp_{k}" if k in ("chosen", "rejected") else k: v for k, v in pair_metric_keys(loss_type).items()}


def _loss_of(records: list[dict]) -> str | None:
    for rec in records:
        for loss in ("redi", "dpo", "simpo"):
            if f"{loss}/logps/chosen" in rec:
                return loss
    return None


def plot_pair_metrics(runs: dict[str, str | Path], out_png: str | Path, title: str | None = None) -> Path:
    """Three panels: chosen/rejected log-prob, margin, fraction chosen > rejected, per step, per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for k, (label, path) in enumerate(runs.items()):
        records = read_metrics(path)
        loss = _loss_of(records)
        if loss is None:
            raise ValueError(f"{path}: no pair-loss metrics (redi/dpo/simpo logps) in it")
        keys = pair_metric_keys(loss)
        recs = [r for r in records if keys["chosen"] in r]
        steps = [r.get("step", i + 1) for i, r in enumerate(recs)]
        color = f"C{k % 10}"
        axes[0].plot(steps, [r[keys["chosen"]] for r in recs], color=color, label=f"{label}: chosen")
        axes[0].plot(steps, [r[keys["rejected"]] for r in recs], color=color, ls="--", label=f"{label}: rejected")
        axes[1].plot(steps, [r[keys["margin"]] for r in recs], color=color, label=label)
        if keys["acc"] in recs[0]:
            axes[2].plot(steps, [r[keys["acc"]] for r in recs], color=color, label=label)
    axes[0].set_title("log-prob of chosen (solid) and rejected (dashed)")
    axes[0].set_ylabel("mean log-prob per token (DPO: summed)")
    axes[1].set_title("margin (chosen - rejected)")
    axes[2].set_title("fraction of pairs with chosen > rejected")
    axes[2].set_ylim(-0.02, 1.02)
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] in ("-h", "--help") or any("=" not in a for a in args[1:]):
        print("usage: python -m trainer.pair_plotting OUT.png LABEL=run/metrics.jsonl [LABEL=...]", file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    runs = dict(a.split("=", 1) for a in args[1:])
    print(plot_pair_metrics(runs, args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
