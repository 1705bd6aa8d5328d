"""Collect the ReLIFT-vs-GRPO toy runs into relift_vs_grpo.json, a markdown table and a plot.

    python examples/quickstart/relift_report.py --out-dir OUT_DIR [--seeds "1 2 3"] [--methods "grpo relift"]

Reads ``OUT_DIR/seed<S>/<method>/metrics.jsonl`` (written by examples/quickstart/relift_vs_grpo.sh) and
takes each run's last validation: ``hard_acc`` = ``val-core/toy_arithmetic_hard/acc/mean@n`` (the
level held out of the warm start), ``rest_acc`` = ``val-core/toy_arithmetic/acc/mean@n``,
``pass_at_k`` = ``{k: pass@k}`` on the hard part at the largest k measured, ``demo_fraction`` = the
run's last ``relift/demo_fraction`` (0.0 when the run logged none: GRPO, or ReLIFT before the hook is
wired). Writes ``OUT_DIR/relift_vs_grpo.json`` (a list of those records) and
``OUT_DIR/relift_vs_grpo.png`` (final accuracies per method and seed; hard accuracy per step).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

HARD, REST = "toy_arithmetic_hard", "toy_arithmetic"
_KEY = re.compile(r"^val-core/(?P<source>[^/]+)/acc/(?P<stat>mean|pass)@(?P<k>\d+)$")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records by step (the last record of a step wins), sorted."""
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), (int, float)):
            by_step.setdefault(int(rec["step"]), {}).update(rec)
    return [by_step[s] for s in sorted(by_step)]


def _val(rec: dict[str, Any], source: str) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {"mean": {}, "pass": {}}
    for key, value in rec.items():
        m = _KEY.match(key)
        if m and m["source"] == source:
            out[m["stat"]][int(m["k"])] = float(value)
    return out


def run_record(metrics_path: Path, method: str, seed: int) -> tuple[dict[str, Any], list[tuple[int, float]]]:
    """The json record of one run, and its (step, hard acc) curve."""
    records = read_jsonl(metrics_path)
    vals = [r for r in records if _val(r, HARD)["mean"]]
    if not vals:
        raise ValueError(f"{metrics_path}: no val-core/{HARD}/acc metrics (was the toy's val.parquet the val file?)")
    last = vals[-1]
    hard, rest = _val(last, HARD), _val(last, REST)
    if not rest["mean"]:
        raise ValueError(f"{metrics_path}: step {last['step']} has no val-core/{REST}/acc metrics")
    k = max(hard["pass"]) if hard["pass"] else max(hard["mean"])
    demo = [float(r["relift/demo_fraction"]) for r in records if "relift/demo_fraction" in r]
    rec = {"method": method, "seed": int(seed), "hard_acc": hard["mean"][max(hard["mean"])],
           "rest_acc": rest["mean"][max(rest["mean"])],
           "pass_at_k": {str(k): hard["pass"].get(k, hard["mean"].get(k, 0.0))},
           "demo_fraction": demo[-1] if demo else 0.0}
    curve = [(int(r["step"]), _val(r, HARD)["mean"][max(_val(r, HARD)["mean"])]) for r in vals]
    return rec, curve


def plot(records: list[dict[str, Any]], curves: dict[tuple[str, int], list[tuple[int, float]]], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    methods = sorted({r["method"] for r in records}, key=lambda m: (m != "grpo", m))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, field, title in ((axes[0], "hard_acc", "hard level (held out of SFT)"), (axes[1], "rest_acc", "rest")):
        for i, m in enumerate(methods):
            vals = [r[field] for r in records if r["method"] == m]
            ax.bar(i, sum(vals) / len(vals), color=f"C{i}", alpha=0.5, label=m)
            ax.scatter([i] * len(vals), vals, color=f"C{i}", zorder=3)
        ax.set_xticks(range(len(methods)), methods)
        ax.set_ylim(0, 1)
        ax.set_title(f"final val accuracy: {title}")
    for (m, seed), curve in sorted(curves.items()):
        axes[2].plot([s for s, _ in curve], [a for _, a in curve], color=f"C{methods.index(m)}", alpha=0.8,
                     label=f"{m} seed {seed}")
    axes[2].set_xlabel("RL step")
    axes[2].set_ylabel("hard-level val accuracy")
    axes[2].set_ylim(0, 1)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(records: list[dict[str, Any]]) -> str:
    lines = ["| method | seed | hard acc | rest acc | pass@k (hard) | demo fraction |", "|---|---|---|---|---|---|"]
    for r in records:
        (k, v), = r["pass_at_k"].items()
        lines.append(f"| {r['method']} | {r['seed']} | {r['hard_acc']:.3f} | {r['rest_acc']:.3f} | "
                     f"pass@{k} {v:.3f} | {r['demo_fraction']:.3f} |")
    for m in sorted({r["method"] for r in records}):
        rs = [r for r in records if r["method"] == m]
        lines.append(f"| {m} | mean of {len(rs)} | {sum(r['hard_acc'] for r in rs) / len(rs):.3f} | "
                     f"{sum(r['rest_acc'] for r in rs) / len(rs):.3f} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", required=True)
    p.add_argument("--seeds", default="1 2 3")
    p.add_argument("--methods", default="grpo relift")
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    records, curves, missing = [], {}, []
    for seed in args.seeds.split():
        for method in args.methods.split():
            path = out / f"seed{seed}" / method / "metrics.jsonl"
            if not path.is_file():
                missing.append(str(path))
                continue
            rec, curve = run_record(path, method, int(seed))
            records.append(rec)
            curves[(method, int(seed))] = curve
    if missing:
        print(f"[relift_report] missing runs (left out): {', '.join(missing)}", file=sys.stderr)
    if not records:
        print(f"[relift_report] no runs found under {out}", file=sys.stderr)
        return 2
    (out / "relift_vs_grpo.json").write_text(json.dumps(records, indent=2) + "\n")
    plot(records, curves, out / "relift_vs_grpo.png")
    print(table(records))
    print(f"[relift_report] wrote {out / 'relift_vs_grpo.json'} and {out / 'relift_vs_grpo.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
