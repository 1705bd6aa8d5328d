"""Capability analysis of scored samples: ``python -m trainer.main_capability [NAME=]SCORES... --out_dir DIR``.

Each SCORES is a ``<run>.scores.parquet`` written by ``trainer.main_eval`` (one row per response) or a
folder holding exactly one. For every benchmark (table row of main_eval: pooled duplicates and
``kk_people`` groups carry over) it writes to ``--out_dir``:

* ``passk_<benchmark>.png``: pass@k for k = 1, 2, 4, ..., n on a log axis, one curve per model
  (unbiased estimator, so k = n uses every sample);
* ``solve_rate_<benchmark>.png``: questions per solve-rate bin 0, (0,1/8], ..., (7/8,1), 1;
* ``capability.md`` / ``capability.json``: the same numbers as tables, plus the transition table of
  every other model against the first (questions gained / lost per difficulty bucket of the first).

Why: arXiv 2505.14216 found RLVR lifts pass@1 by improving already-solvable questions while the
hardest ones get worse, which pass@1 tables hide and these views show.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from relift.metrics.capability import (
    DEFAULT_BINS,
    pass_at_k_curve,
    question_counts,
    solve_rate_histogram,
    transition_table,
)

__all__ = ["analyse", "load_scores", "main", "render_markdown"]


def _scores_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.glob("*.scores.parquet"))
        if len(found) != 1:
            raise FileNotFoundError(f"{path}: expected exactly one *.scores.parquet, found "
                                    f"{[f.name for f in found] or 'none'}; pass the file itself")
        return found[0]
    raise FileNotFoundError(f"{path}: no such file or folder")


def load_scores(spec: str) -> tuple[str, list[dict[str, Any]], Path]:
    """(model name, one record per response, file) from ``[NAME=]PATH``."""
    import pandas as pd  # noqa: PLC0415

    name, sep, raw = spec.partition("=")
    if not sep:
        name, raw = "", spec
    path = Path(raw).expanduser()
    f = _scores_file(path)
    frame = pd.read_parquet(f)
    missing = [c for c in ("data_source", "prompt_id", "correct") if c not in frame.columns]
    if missing:
        raise ValueError(f"{f}: columns {missing} missing (has {list(frame.columns)}); expected trainer.main_eval's "
                         "<run>.scores.parquet")
    source = frame["group"] if "group" in frame.columns else frame["data_source"]
    qid = frame["question_id"] if "question_id" in frame.columns else frame["prompt_id"]
    records = [{"data_source": str(s), "prompt_id": int(q), "correct": bool(c)}
               for s, q, c in zip(source, qid, frame["correct"])]
    label = name or (path.name if path.is_dir() else f.parent.name)
    return label, records, f


def analyse(models: Mapping[str, Sequence[Mapping[str, Any]]], bins: int = DEFAULT_BINS,
            sources: Sequence[str] | None = None) -> dict[str, Any]:
    """``{benchmark: {"curves", "histograms", "transitions", "n"}}`` for the models (first = baseline)."""
    counts = {label: question_counts(recs) for label, recs in models.items()}
    names = list(sources) if sources else []
    if not sources:
        for per in counts.values():
            names += [s for s in per if s not in names]
    first = next(iter(counts))
    out: dict[str, Any] = {}
    for src in names:
        have = {label: per[src] for label, per in counts.items() if src in per}
        if not have:
            raise ValueError(f"benchmark {src!r} is in none of the score files (have {sorted(counts[first])})")
        res: dict[str, Any] = {
            "n": {label: min(n for n, _ in c.values()) for label, c in have.items()},
            "questions": {label: len(c) for label, c in have.items()},
            "curves": {label: pass_at_k_curve(c) for label, c in have.items()},
            "histograms": {label: solve_rate_histogram(c, bins) for label, c in have.items()},
            "transitions": {},
        }
        if first in have:
            for label, c in have.items():
                if label != first:
                    res["transitions"][f"{first} -> {label}"] = transition_table(have[first], c, bins)
        out[src] = res
    return out


def render_markdown(result: Mapping[str, Any]) -> str:
    """pass@k, histogram and transition tables per benchmark, for a person to read."""
    lines: list[str] = []
    for src, res in result.items():
        lines.append(f"## {src}\n")
        labels = list(res["curves"])
        ks = sorted({k for curve in res["curves"].values() for k in curve})
        lines.append("| model | questions | n | " + " | ".join(f"pass@{k}" for k in ks) + " |")
        lines.append("|---|---:|---:|" + "---:|" * len(ks))
        for label in labels:
            curve = res["curves"][label]
            cells = [f"{100 * curve[k]:.1f}" if k in curve else "-" for k in ks]
            lines.append(f"| {label} | {res['questions'][label]} | {res['n'][label]} | " + " | ".join(cells) + " |")
        bins = [row["label"] for row in res["histograms"][labels[0]]]
        lines.append("\nquestions per solve rate (correct samples / n):\n")
        lines.append("| model | " + " | ".join(bins) + " |")
        lines.append("|---|" + "---:|" * len(bins))
        for label in labels:
            lines.append(f"| {label} | " + " | ".join(str(r["questions"]) for r in res["histograms"][label]) + " |")
        for pair, rows in res["transitions"].items():
            a, b = pair.split(" -> ")
            lines.append(f"\ntransitions {pair}, by {a}'s solve rate (gained: {a} never right in its n samples, "
                         f"{b} at least once; lost: the reverse):\n")
            lines.append(f"| {a} solve rate | questions | {a} mean | {b} mean | gained | lost | {b} higher | "
                         f"{b} lower |")
            lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
            for r in rows:
                if r["questions"]:
                    lines.append(f"| {r['bucket']} | {r['questions']} | {100 * r['a_rate']:.1f} | "
                                 f"{100 * r['b_rate']:.1f} | {r['gained']} | {r['lost']} | {r['up']} | {r['down']} |")
        lines.append("")
    return "\n".join(lines)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.main_capability", description=__doc__.split("\n\n")[0])
    p.add_argument("scores", nargs="+", help="[NAME=]<run>.scores.parquet or a folder with one; the first is the "
                                            "baseline of the transition tables")
    p.add_argument("--out_dir", required=True, help="folder for the PNGs, capability.md and capability.json")
    p.add_argument("--benchmarks", default=None, help="comma-separated subset (default: all)")
    p.add_argument("--bins", type=int, default=DEFAULT_BINS, help="solve-rate bins between 0 and 1 (default 8)")
    args = p.parse_args(argv)
    try:
        if args.bins < 1:
            raise ValueError(f"--bins must be >= 1, got {args.bins}")
        models: dict[str, list[dict[str, Any]]] = {}
        for spec in args.scores:
            label, records, _ = load_scores(spec)
            if label in models:
                raise ValueError(f"two score files are named {label!r}; name them with NAME=PATH")
            models[label] = records
        sources = [s.strip() for s in args.benchmarks.split(",") if s.strip()] if args.benchmarks else None
        result = analyse(models, args.bins, sources)
    except (FileNotFoundError, ValueError) as err:
        print(f"[relift] {err}", file=sys.stderr)
        return 2
    from relift.metrics.plots import plot_pass_at_k, plot_solve_rate_histograms  # noqa: PLC0415

    out = Path(args.out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src, res in result.items():
        written.append(plot_pass_at_k(res["curves"], out / f"passk_{_safe(src)}.png", f"{src}: pass@k"))
        written.append(plot_solve_rate_histograms(res["histograms"], out / f"solve_rate_{_safe(src)}.png",
                                                  f"{src}: per-question solve rate"))
    text = render_markdown(result)
    (out / "capability.md").write_text(text)
    (out / "capability.json").write_text(json.dumps(
        {src: {**res, "curves": {m: {str(k): v for k, v in c.items()} for m, c in res["curves"].items()}}
         for src, res in result.items()}, indent=1))
    print(text)
    print(f"[relift] wrote {out / 'capability.md'}, {out / 'capability.json'} and {len(written)} plots: "
          + ", ".join(Path(w).name for w in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
