"""The quickstart's final table: validation accuracy after SFT (the RL run's step-0 validation) vs
after RL (its last validation), pass@k, the training reward at the start and end of RL, and a PNG
of reward and validation accuracy per step.

    python examples/quickstart/report.py --out-dir outputs/quickstart/seed1 [--wall-s 412]

Reads the last run's lines of ``<out-dir>/rl/metrics.jsonl`` (and ``<out-dir>/sft/metrics.jsonl`` when
present; earlier runs in the same folder are ignored, see ``read_jsonl``); writes
``<out-dir>/quickstart.png`` and ``<out-dir>/results.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

_VAL_KEY = re.compile(r"^val-core/(?P<source>[^/]+)/(?P<var>[^/]+)/(?P<stat>(mean|pass|maj)@\d+)$")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of the file's last run, keeping the last record per step (a resumed run may log a step twice).

    metrics.jsonl is appended to by every run in the same folder; each line names its run
    (``run_id``, relift.utils.tracking), and only the lines of the run that wrote the last line are
    read, so a rerun's report never shows an older run's steps. Files without run ids are read whole.
    """
    records: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), (int, float)):
            records.append(rec)
    current = records[-1].get("run_id") if records else None
    if current is not None:
        records = [r for r in records if r.get("run_id") == current]
    by_step: dict[int, dict[str, Any]] = {}
    for rec in records:
        by_step.setdefault(int(rec["step"]), {}).update(rec)
    return [by_step[s] for s in sorted(by_step)]


def val_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if any(_VAL_KEY.match(k) for k in r)]


def _stat_order(stat: str) -> tuple[int, int]:
    name, k = stat.split("@")
    return ({"mean": 0, "pass": 1, "maj": 2}[name], int(k))


def summarize(rl_records: list[dict[str, Any]], tail: int = 10) -> dict[str, Any]:
    """Before/after validation numbers and the RL reward at the start and the end of training."""
    vals = val_records(rl_records)
    if not vals:
        raise ValueError("no val-core/... metrics in the RL run's metrics.jsonl: was data.val_files set?")
    first, last = vals[0], vals[-1]
    if first["step"] != 0:
        raise ValueError(f"the first validation is at step {first['step']}, not 0: set trainer.val_before_train=true")
    rows = []
    for key in sorted(k for k in first if _VAL_KEY.match(k)):
        m = _VAL_KEY.match(key)
        assert m is not None
        if m["var"] != "acc" or key not in last:
            continue
        rows.append(
            {
                "data_source": m["source"],
                "stat": m["stat"],
                "sft": float(first[key]),
                "rl": float(last[key]),
                "delta": float(last[key]) - float(first[key]),
            }
        )
    rows.sort(key=lambda r: (r["data_source"], _stat_order(r["stat"])))
    scores = [(int(r["step"]), float(r["critic/score/mean"])) for r in rl_records if "critic/score/mean" in r]
    train = {}
    if scores:
        k = min(tail, max(1, len(scores) // 2))
        train = {
            "first_steps": k,
            "score_first": sum(s for _, s in scores[:k]) / k,
            "score_last": sum(s for _, s in scores[-k:]) / k,
        }
    mean_rows = [r for r in rows if r["stat"].startswith("mean@")]
    return {
        "sft_step": int(first["step"]),
        "rl_step": int(last["step"]),
        "rows": rows,
        "sft_acc": sum(r["sft"] for r in mean_rows) / len(mean_rows) if mean_rows else None,
        "rl_acc": sum(r["rl"] for r in mean_rows) / len(mean_rows) if mean_rows else None,
        "train_reward": train,
        "rl_step_s": _mean([r["timing_s/step"] for r in rl_records if "timing_s/step" in r]),
    }


def first_step_s(records: list[dict[str, Any]]) -> float | None:
    """``timing_s/start_to_first_step`` of the run (logged with its first step), if any."""
    for rec in records:
        if "timing_s/start_to_first_step" in rec:
            return float(rec["timing_s/start_to_first_step"])
    return None


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def to_markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"| data_source | metric | after SFT (step {summary['sft_step']}) | after RL (step {summary['rl_step']}) "
        "| change |",
        "|---|---|---:|---:|---:|",
    ]
    for r in summary["rows"]:
        lines.append(
            f"| {r['data_source']} | acc {r['stat']} | {100 * r['sft']:.1f} | {100 * r['rl']:.1f} "
            f"| {100 * r['delta']:+.1f} |"
        )
    tr = summary.get("train_reward") or {}
    if tr:
        lines.append("")
        lines.append(
            f"training reward (critic/score/mean): first {tr['first_steps']} steps {tr['score_first']:.3f}, "
            f"last {tr['first_steps']} steps {tr['score_last']:.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", required=True, help="the quickstart's OUT_DIR")
    p.add_argument("--wall-s", type=float, default=None, help="wall time of the run so far, recorded as is")
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    rl_jsonl = out / "rl" / "metrics.jsonl"
    if not rl_jsonl.is_file():
        sys.exit(f"[report] {rl_jsonl} not found: did the RL stage run with trainer.logger including jsonl?")
    rl_records = read_jsonl(rl_jsonl)
    summary = summarize(rl_records)
    sft_jsonl = out / "sft" / "metrics.jsonl"
    if sft_jsonl.is_file():
        sft_recs = [r for r in read_jsonl(sft_jsonl) if "val/loss" in r]
        if sft_recs:
            summary["sft_val_loss"] = float(sft_recs[-1]["val/loss"])
    summary["wall_s"] = args.wall_s
    summary["time_to_first_step_s"] = {
        stage: first_step_s(read_jsonl(path) if path.is_file() else [])
        for stage, path in (("sft", sft_jsonl), ("rl", rl_jsonl))
    }
    if summary["sft_acc"] is not None:
        summary["delta"] = summary["rl_acc"] - summary["sft_acc"]
    try:
        from trainer.plotting import plot_metrics

        with tempfile.TemporaryDirectory() as tmp:  # plot this run only, not what earlier runs appended
            current = Path(tmp) / "metrics.jsonl"
            current.write_text("".join(json.dumps(r) + "\n" for r in rl_records), encoding="utf-8")
            summary["plot"] = str(
                plot_metrics(
                    current, out / "quickstart.png", title="quickstart: GRPO on toy arithmetic after an SFT warm start"
                )
            )
    except Exception as exc:  # noqa: BLE001 - the table matters more than the picture
        print(f"[report] could not draw the plot: {exc}", file=sys.stderr)
        summary["plot"] = None
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(to_markdown(summary))
    if summary.get("delta") is not None:
        print(
            f"\nvalidation accuracy: {100 * summary['sft_acc']:.1f}% after SFT -> {100 * summary['rl_acc']:.1f}% "
            f"after RL ({100 * summary['delta']:+.1f} points)"
        )
    firsts = summary["time_to_first_step_s"]
    if any(v is not None for v in firsts.values()):
        said = ", ".join(f"{stage.upper()} {v:.1f} s" for stage, v in firsts.items() if v is not None)
        print(f"time to first step (process start to the end of its first step): {said}")
    if summary["plot"]:
        print(f"plot: {summary['plot']}")
    print(f"results: {out / 'results.json'}")
    return summary


if __name__ == "__main__":
    main()
