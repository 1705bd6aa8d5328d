"""The knights-and-knaves results table: rows = models, columns = Avg, 2ppl .. 8ppl (the seed's layout).

    python examples/kk/table.py --root outputs/kk_eval --models base distilled [--sizes 2 3 4 5 6 7 8]

For each model, reads ``ROOT/<model>/gen.parquet`` (``trainer.main_generation`` output over the test
files of every size; a row's size is the length of its ``names``) and ``ROOT/<model>/eval.scores.parquet``
(``trainer.main_eval``'s per-response scores; ``prompt_id`` is the generation row). A size's accuracy is
the mean of ``correct`` over its responses (mean@n); Avg is the unweighted mean over the sizes, as
in the seed's table. ``--markdown-out FILE`` also writes the table to FILE.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["per_size_accuracy", "build_table", "main"]


def per_size_accuracy(model_dir: Path) -> dict[int, float]:
    """Size -> mean accuracy over that size's responses, from one model's evaluation folder."""
    import pandas as pd  # noqa: PLC0415

    gen, scores = model_dir / "gen.parquet", model_dir / "eval.scores.parquet"
    for f in (gen, scores):
        if not f.is_file():
            raise FileNotFoundError(f"missing {f} (run examples/kk/eval.sh for this model)")
    names = pd.read_parquet(gen, columns=["names"])["names"]
    frame = pd.read_parquet(scores, columns=["prompt_id", "correct"])
    if frame["prompt_id"].max() >= len(names):
        raise ValueError(f"{scores} names prompt {frame['prompt_id'].max()} but {gen} has {len(names)} rows")
    frame["size"] = [len(names.iloc[i]) for i in frame["prompt_id"]]
    return {int(k): float(v) for k, v in frame.groupby("size")["correct"].mean().items()}


def build_table(root: Path, models: list[str], sizes: list[int]) -> str:
    """The markdown table (accuracies as fractions with two decimals; '-' for a size not evaluated)."""
    lines = ["| Model | Avg | " + " | ".join(f"{n}ppl" for n in sizes) + " |", "|---" * (len(sizes) + 2) + "|"]
    for model in models:
        acc = per_size_accuracy(root / model)
        values = [acc[n] for n in sizes if n in acc]
        cells = [f"{acc[n]:.2f}" if n in acc else "-" for n in sizes]
        avg = f"{sum(values) / len(values):.2f}" if values else "-"
        lines.append(f"| {model} | {avg} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--sizes", nargs="+", type=int, default=list(range(2, 9)))
    ap.add_argument("--markdown-out", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        table = build_table(args.root, args.models, args.sizes)
    except (ValueError, FileNotFoundError) as exc:
        print(f"table.py: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(table)
    if args.markdown_out:
        args.markdown_out.write_text(table + "\n")
    return table


if __name__ == "__main__":
    main()
