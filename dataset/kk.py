"""Knights-and-knaves parquet files in Logic-RL's layout: generate new puzzles, or convert K&K jsonl.

    python -m dataset.kk generate --people 2..8 --per-size 900 --seed 0 --out data/kk/instruct
    python -m dataset.kk convert --input raw/knights-and-knaves --out data/kk/instruct [--template base]

Both write ``OUT/{N}ppl/train.parquet`` and ``OUT/{N}ppl/test.parquet`` (the folder layout of
Logic-RL's ``data/kk/instruct``), one row per puzzle with the benchmark's columns (``quiz``,
``names``, ``knight_knave``, ``solution``, ``solution_text``, ``solution_text_format``,
``statements``, ``index``) plus the RL columns (``data_source: kk_logic``, ``prompt`` as one user
message holding the already-templated prompt, ``ability``, ``reward_model.ground_truth`` =
``{solution_text_format, statements}``, ``extra_info {split, index}``).

``generate`` draws puzzles with the benchmark's statement distribution
(:mod:`relift.rewards.kk_generator`), unique solutions only, no repeated puzzle within a size;
the test rows come first in the stream (index 0..), as in the benchmark's files.  The chain-of-
thought columns of the benchmark (``cot_*``) are not produced; ``--with-target`` adds a ``target``
column (the answer alone, after the prefilled ``<think>``) for SFT on the ground truth.

``convert`` reads the public K&K files (huggingface.co/datasets/K-and-K/knights-and-knaves:
``train/people{N}_num1000.jsonl``, ``test/people{N}_num100.jsonl``; download them with
``huggingface-cli download K-and-K/knights-and-knaves --repo-type dataset --local-dir DIR``) from
files or folders; a file's split is its folder name (``train``/``test``), else ``train``.
``--test-size K`` holds out the last K rows of a size with no test file (Logic-RL's 900/100 split).

Prompt templates (``--template``): ``instruct`` (Logic-RL's Qwen ChatML, the default), ``base``
(Logic-RL's base-model template), ``compact`` (short, for tiny byte-level models); see
:mod:`relift.rewards.kk_prompts`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from relift.rewards.kk_generator import generate_puzzles, to_logic_rl_row
from relift.rewards.kk_prompts import TEMPLATES

__all__ = ["parse_people", "terse_target", "generate", "convert", "read_kk_jsonl", "main"]

_FILE = re.compile(r"people(\d+)_num(\d+)")
_REQUIRED = ("quiz", "names", "solution", "statements")


def parse_people(text: str) -> list[int]:
    """``"2..8"``, ``"3,5,7"`` or ``"5"`` -> sorted sizes (each >= 2)."""
    sizes: set[int] = set()
    try:
        for part in text.split(","):
            if ".." in part:
                lo, hi = (int(x) for x in part.split(".."))
                sizes.update(range(lo, hi + 1))
            else:
                sizes.add(int(part))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--people must look like 2..8 or 3,5,7, got {text!r}") from exc
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError(f"--people needs sizes >= 2, got {text!r}")
    return sorted(sizes)


def _write(rows: list[dict[str, Any]], path: Path) -> None:
    import pandas as pd  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pd.DataFrame(rows).to_parquet(tmp, index=False)
    tmp.replace(path)


def terse_target(puzzle: dict[str, Any]) -> str:
    """A demonstration without reasoning, continuing a prompt that prefills ``<think>``."""
    return f"</think><answer>{puzzle['solution_text_format']}</answer>"


def generate(out: str | Path, people: list[int], per_size: int, seed: int, test_per_size: int | None = None,
             template: str = "instruct", with_target: bool = False,
             name_pool: int | None = None) -> dict[str, dict[str, int]]:
    """Write generated puzzles; returns ``{"Nppl": {"train": rows, "test": rows}}``.

    ``with_target`` adds a ``target`` column (:func:`terse_target`) for SFT on the ground truth;
    ``name_pool`` draws names from the first K of the benchmark's 51 only (a smaller task for tiny
    models; not the benchmark's distribution).
    """
    from relift.rewards.kk_generator import NAMES  # noqa: PLC0415

    if name_pool is not None and not max(people) <= name_pool <= len(NAMES):
        raise ValueError(f"--name-pool must be between {max(people)} (the most people) and {len(NAMES)}, "
                         f"got {name_pool}")
    names = None if name_pool is None else NAMES[:name_pool]
    if per_size < 1:
        raise ValueError(f"--per-size must be >= 1, got {per_size}")
    n_test = max(1, per_size // 9) if test_per_size is None else test_per_size
    summary = {}
    for n in tqdm(people, desc="sizes", disable=len(people) < 2):
        puzzles = generate_puzzles(n, n_test + per_size, seed, names=names)
        splits = {"test": puzzles[:n_test], "train": puzzles[n_test:]}
        summary[f"{n}ppl"] = {}
        offset = 0
        for split, chunk in splits.items():
            rows = []
            for i, p in enumerate(chunk):
                row = to_logic_rl_row(p, index=i, split=split, template=template)
                row["index"] = offset + i  # the puzzle's position in the size's stream
                if with_target:
                    row["target"] = terse_target(p)
                rows.append(row)
            offset += len(chunk)
            if rows:
                _write(rows, Path(out) / f"{n}ppl" / f"{split}.parquet")
            summary[f"{n}ppl"][split] = len(rows)
    return summary


def read_kk_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of one K&K jsonl file, checked for the fields a row needs (errors name file and line)."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
            missing = [k for k in _REQUIRED if k not in row]
            if missing:
                raise ValueError(f"{path}:{line_no}: K&K row lacks key(s) {missing}; it has {sorted(row)}")
            if len(row["names"]) != len(row["solution"]):
                raise ValueError(f"{path}:{line_no}: {len(row['names'])} names but {len(row['solution'])} roles")
            if "solution_text_format" not in row:
                row["solution_text_format"] = "\n".join(
                    f"({i + 1}) {name} is {'a knight' if k else 'a knave'}"
                    for i, (name, k) in enumerate(zip(row["names"], row["solution"])))
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _inputs(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*.jsonl") if _FILE.search(f.name))
            if not found:
                raise FileNotFoundError(f"{p}: no people*_num*.jsonl files in this folder")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"--input {p}: no such file or folder")
    return files


def convert(inputs: list[str], out: str | Path, template: str = "instruct", test_size: int = 0,
            data_source: str = "kk_logic") -> dict[str, dict[str, int]]:
    """Convert K&K jsonl files; returns ``{"Nppl": {"train": rows, "test": rows}}``."""
    groups: dict[int, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for f in _inputs(inputs):
        m = _FILE.search(f.name)
        rows = read_kk_jsonl(f)
        n = int(m.group(1)) if m else len(rows[0]["names"])
        split = f.parent.name if f.parent.name in ("train", "test") else "train"
        for line, row in enumerate(rows, 1):
            if len(row["names"]) != n:
                raise ValueError(f"{f}:{line}: {len(row['names'])} people in a people{n} file")
        groups[n][split].extend(rows)
    summary = {}
    for n, splits in sorted(groups.items()):
        if test_size and not splits["test"]:
            if test_size >= len(splits["train"]):
                raise ValueError(f"{n}ppl: --test-size {test_size} leaves no training rows "
                                 f"({len(splits['train'])} rows)")
            splits["test"] = splits["train"][-test_size:]
            splits["train"] = splits["train"][:-test_size]
        summary[f"{n}ppl"] = {}
        for split in ("train", "test"):
            rows = []
            for i, raw in enumerate(splits.get(split, [])):
                puzzle = {k: v for k, v in raw.items() if k != "index"}
                row = to_logic_rl_row(puzzle, index=i, split=split, template=template)
                row["index"] = raw.get("index", i)
                row["data_source"] = data_source
                rows.append(row)
            if rows:
                _write(rows, Path(out) / f"{n}ppl" / f"{split}.parquet")
            summary[f"{n}ppl"][split] = len(rows)
    return summary


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m dataset.kk", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="new puzzles with the benchmark's statement distribution")
    g.add_argument("--people", type=parse_people, default=parse_people("2..8"), help="sizes, e.g. 2..8 or 3,5")
    g.add_argument("--per-size", type=int, required=True, help="training puzzles per size")
    g.add_argument("--test-per-size", type=int, default=None, help="test puzzles per size [per-size // 9]")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", required=True, help="output folder (OUT/Nppl/{train,test}.parquet)")
    g.add_argument("--template", choices=sorted(TEMPLATES), default="instruct")
    g.add_argument("--with-target", action="store_true",
                   help="add a 'target' column: '</think><answer>' + the solution + '</answer>' (SFT on the truth)")
    g.add_argument("--name-pool", type=int, default=None,
                   help="draw names from the first K of the 51 only (tiny-model runs; not the benchmark's)")
    c = sub.add_parser("convert", help="K&K jsonl files (people5_num1000.jsonl ...) -> parquet")
    c.add_argument("--input", nargs="+", required=True, help="jsonl files or folders holding them")
    c.add_argument("--out", required=True)
    c.add_argument("--template", choices=sorted(TEMPLATES), default="instruct")
    c.add_argument("--test-size", type=int, default=0,
                   help="hold out the last K rows of a size that has no test file [0]")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI: write the parquet files and print a JSON summary."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "generate":
            summary = generate(args.out, args.people, args.per_size, args.seed, args.test_per_size, args.template,
                               args.with_target, args.name_pool)
        else:
            summary = convert(args.input, args.out, args.template, args.test_size)
    except (ValueError, FileNotFoundError) as exc:
        print(f"dataset.kk {args.command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(json.dumps({"out": str(args.out), "template": args.template, "rows": summary}))
    return summary


if __name__ == "__main__":
    main()
