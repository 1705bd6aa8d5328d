"""The knights-and-knaves results table: rows = models, columns = Avg, 2ppl .. 8ppl (the seed's layout).

    python examples/kk/table.py --root outputs/kk_eval --models base distilled [--sizes 2 3 4 5 6 7 8]

Reads ``ROOT/<model>/<N>ppl.json`` (``trainer.main_eval`` output for that size's test file) and takes
the ``mean@n`` accuracy of its (single) data source; Avg is the unweighted mean over the sizes
present, as in the seed's table. A missing file is an error naming it (``--allow-missing`` prints
``-`` instead and averages over what exists).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["accuracy", "build_table", "main"]


def accuracy(path: Path) -> float:
    """The ``mean@n`` of the one data source in a main_eval JSON file."""
    payload = json.loads(path.read_text())
    per_source = payload.get("per_source") or {}
    if len(per_source) != 1:
        raise ValueError(f"{path}: expected one data source, found {sorted(per_source)}")
    row = next(iter(per_source.values()))
    keys = [k for k in row if k.startswith("mean@")]
    if not keys:
        raise ValueError(f"{path}: no mean@n entry in {sorted(row)}")
    return float(row[keys[0]])


def build_table(root: Path, models: list[str], sizes: list[int], allow_missing: bool = False) -> str:
    """The markdown table (accuracies as fractions with two decimals)."""
    head = "| Model | Avg | " + " | ".join(f"{n}ppl" for n in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 2) + "|"]
    for model in models:
        cells, values = [], []
        for n in sizes:
            path = root / model / f"{n}ppl.json"
            if not path.is_file():
                if not allow_missing:
                    raise FileNotFoundError(f"no evaluation for {model} at {n} people: {path}")
                cells.append("-")
                continue
            acc = accuracy(path)
            values.append(acc)
            cells.append(f"{acc:.2f}")
        avg = f"{sum(values) / len(values):.2f}" if values else "-"
        lines.append(f"| {model} | {avg} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--sizes", nargs="+", type=int, default=list(range(2, 9)))
    ap.add_argument("--allow-missing", action="store_true")
    args = ap.parse_args(argv)
    try:
        table = build_table(args.root, args.models, args.sizes, args.allow_missing)
    except (ValueError, FileNotFoundError) as exc:
        print(f"table.py: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(table)
    return table


if __name__ == "__main__":
    main()
