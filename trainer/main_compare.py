"""Compare models from existing evaluation results: ``python -m trainer.main_compare RESULT... [options]``.

Each RESULT is a ``trainer.main_eval`` JSON file or a folder holding such files (``eval_math.sh``'s
OUT_DIR: one folder per model); ``NAME=RESULT`` sets the row's name (default: the folder's name).
A folder with several result files contributes every benchmark they hold; the same benchmark twice
in one model's results is refused (ambiguous). Prints one markdown table (models as rows,
benchmarks + average as columns) and writes it as ``--out``.md and ``--out``.csv. Nothing is sampled
or scored again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relift.metrics.compare import comparison_csv, comparison_markdown, comparison_rows

__all__ = ["load_results", "main"]


def _result_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json") if not p.name.startswith("."))
        found = [p for p in files if "per_source" in _read(p)]
        if not found:
            raise FileNotFoundError(f"{path}: no trainer.main_eval result (*.json with per_source) in this folder")
        return found
    raise FileNotFoundError(f"{path}: no such file or folder")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable JSON file ({err})") from err
    return data if isinstance(data, dict) else {}


def load_results(specs: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model name: per_source}`` from ``[NAME=]PATH`` arguments (see the module docstring)."""
    models: dict[str, dict[str, dict[str, Any]]] = {}
    for spec in specs:
        name, sep, raw = spec.partition("=")
        if not sep:
            name, raw = "", spec
        path = Path(raw).expanduser()
        files = _result_files(path)
        label = name or (path.name if path.is_dir() else path.parent.name or path.stem)
        if label in models:
            raise ValueError(f"two results are named {label!r}; name them with NAME=PATH")
        per_source: dict[str, dict[str, Any]] = {}
        origin: dict[str, Path] = {}
        for f in files:
            data = _read(f)
            if "per_source" not in data:
                raise ValueError(f"{f}: not a trainer.main_eval result (no per_source key)")
            for source, row in data["per_source"].items():
                if source in per_source:
                    raise ValueError(f"{label}: benchmark {source!r} is in both {origin[source]} and {f}; "
                                     "pass the result file you mean instead of the folder")
                per_source[source], origin[source] = row, f
        models[label] = per_source
    return models


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.main_compare", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="[NAME=]result.json or [NAME=]folder with result JSON files")
    p.add_argument("--metric", default="mean@n", help="mean@n (default: pass@1 averaged over n), maj@n or pass@K")
    p.add_argument("--benchmarks", default=None, help="comma-separated columns in this order (default: all)")
    p.add_argument("--out", default="comparison", help="write <out>.md and <out>.csv (default: ./comparison)")
    p.add_argument("--fraction", action="store_true", help="show fractions instead of %% in the markdown")
    args = p.parse_args(argv)
    try:
        models = load_results(args.results)
        benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()] if args.benchmarks else None
        cols, rows = comparison_rows(models, args.metric, benchmarks)
    except (FileNotFoundError, ValueError) as err:
        print(f"[relift] {err}", file=sys.stderr)
        return 2
    table = comparison_markdown(cols, rows, args.metric, percent=not args.fraction)
    print(table)
    out = Path(args.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    md, csv_path = out.with_name(out.name + ".md"), out.with_name(out.name + ".csv")
    md.write_text(table + "\n")
    csv_path.write_text(comparison_csv(cols, rows))
    print(f"[relift] wrote {md} and {csv_path} (fractions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
