"""Math benchmarks (AIME24, AMC23, MATH-500, Minerva, OlympiadBench): raw jsonl -> RL parquet rows.

Each benchmark's raw file (``<input_dir>/<name>.jsonl``, the common public copies: one JSON object
per line) becomes ``<out_dir>/<name>.parquet`` in the RL row format (REFERENCE section 3)::

    data_source  "math500"  (a name the reward registry scores with math-verify)
    prompt       [{"role": "system", ...}?, {"role": "user", "content": <template with the problem>}]
    ability      "math"
    reward_model {"style": "rule", "ground_truth": <reference answer as a LaTeX string>}
    extra_info   {"split": "test", "index": <row>, "source_id": <the raw file's id, as a string>}

Where each benchmark keeps its question and answer:

==============  =============  ===================================================================
benchmark       question       ground truth
==============  =============  ===================================================================
aime24          ``problem``    ``answer``
amc23           ``problem``    ``answer`` (a float in the raw file; integral values become "27")
math500         ``problem``    ``answer``
minerva_math    ``problem``    ``answer`` when the row has one (the hub copy), else the last ``\\boxed{...}``
                               of ``solution`` (the Qwen2.5-Math jsonl has no answer field)
olympiadbench   ``question``   ``final_answer`` (a list of one string) with its ``$`` signs removed
==============  =============  ===================================================================

The prompt template holds ``{problem}`` where the question goes (``str.replace``, not ``format``, so
the template may contain ``\\boxed{}``). The default asks for step-by-step reasoning and a boxed
final answer, the convention of Qwen2.5-Math / DeepSeek-R1 evaluations.

Without the raw files, ``--download`` fetches them from the Hugging Face hub first (ids, splits and
revisions in :mod:`dataset.benchmark_hub`; needs the ``datasets`` package and hub access) into
``--input_dir`` (default ``<repo>/data/benchmarks``); files already there are kept.

CLI::

    python -m dataset.math_benchmarks --download [--input_dir DIR] [--out_dir DIR]
    python -m dataset.math_benchmarks --input_dir DIR --out_dir DIR \\
        [--benchmarks aime24,amc23,math500,minerva_math,olympiadbench] [--template '...{problem}...'] \\
        [--system_prompt '...'] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "BENCHMARKS",
    "DEFAULT_TEMPLATE",
    "EXPECTED_ROWS",
    "BenchmarkSpec",
    "build_prompt",
    "convert_benchmark",
    "extract_ground_truth",
    "read_jsonl",
    "write_benchmarks",
    "main",
]

logger = logging.getLogger(__name__)

PROBLEM_PLACEHOLDER = "{problem}"
DEFAULT_TEMPLATE = "{problem}\nLet's think step by step and output the final answer within \\boxed{}."

DEFAULT_RAW_DIR = Path(__file__).resolve().parent.parent / "data" / "benchmarks"

# rows in the public copies (REFERENCE section 6); a different count is logged, not an error
EXPECTED_ROWS = {"aime24": 30, "amc23": 40, "math500": 500, "minerva_math": 272, "olympiadbench": 675}


def _last_boxed(text: str) -> str | None:
    from relift.rewards.math import last_boxed_content  # noqa: PLC0415 - light, but only needed here

    return last_boxed_content(text)


def _number_text(value: Any) -> str:
    """27.0 -> "27"; other numbers and strings as written."""
    if isinstance(value, bool):
        raise ValueError(f"a boolean is not an answer: {value!r}")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _strip_dollars(text: str) -> str:
    """"$\\frac{1}{2}$" -> "\\frac{1}{2}"; "$69$,$84$" -> "69,84" (inline math only in these answers)."""
    return text.replace("$", "").strip()


def _answer_field(field: str) -> Callable[[dict[str, Any]], str | None]:
    def get(row: dict[str, Any]) -> str | None:
        value = row.get(field)
        return None if value is None else _number_text(value)
    return get


def _minerva_answer(row: dict[str, Any]) -> str | None:
    if row.get("answer") is not None and str(row["answer"]).strip():
        return _number_text(row["answer"])
    solution = row.get("solution")
    return _last_boxed(solution) if isinstance(solution, str) else None


def _olympiad_answer(row: dict[str, Any]) -> str | None:
    value = row.get("final_answer")
    if isinstance(value, list):
        if not value:
            return None
        value = ", ".join(_strip_dollars(str(v)) for v in value)
        return value or None
    if isinstance(value, str):
        return _strip_dollars(value) or None
    return None


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where one benchmark keeps its question, answer and id in the raw jsonl."""

    name: str
    question_keys: tuple[str, ...]
    answer: Callable[[dict[str, Any]], str | None]
    answer_desc: str
    id_keys: tuple[str, ...]


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "aime24": BenchmarkSpec("aime24", ("problem", "question"), _answer_field("answer"), "answer", ("id",)),
    "amc23": BenchmarkSpec("amc23", ("problem", "question"), _answer_field("answer"), "answer", ("id",)),
    "math500": BenchmarkSpec("math500", ("problem",), _answer_field("answer"), "answer", ("unique_id",)),
    "minerva_math": BenchmarkSpec("minerva_math", ("problem", "question"), _minerva_answer,
                                  "answer, or the last \\boxed{} of solution",
                                  ("idx",)),
    "olympiadbench": BenchmarkSpec("olympiadbench", ("question",), _olympiad_answer, "final_answer", ("id",)),
}


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """One dict per non-empty line; a bad line raises naming the file and line number."""
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {lineno}: not valid JSON ({err})") from err
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def build_prompt(problem: str, template: str = DEFAULT_TEMPLATE, system_prompt: str | None = None
                 ) -> list[dict[str, str]]:
    """The chat messages for one problem: optional system message, then the filled user template."""
    if PROBLEM_PLACEHOLDER not in template:
        raise ValueError(f"the prompt template must contain {PROBLEM_PLACEHOLDER!r} where the problem goes; "
                         f"got {template!r}")
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": template.replace(PROBLEM_PLACEHOLDER, problem.strip())})
    return messages


def _spec(name: str) -> BenchmarkSpec:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None


def extract_ground_truth(name: str, row: dict[str, Any]) -> str | None:
    """The reference answer of one raw row as the string the math scorer compares with."""
    return _spec(name).answer(row)


def convert_benchmark(name: str, jsonl_path: str | os.PathLike, template: str = DEFAULT_TEMPLATE,
                      system_prompt: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """Read one benchmark's raw jsonl and return its RL rows (see the module docstring).

    Raises ``ValueError`` naming the file and line of a row without a question or an answer.
    ``limit`` keeps the first ``limit`` rows (smoke tests).
    """
    spec = _spec(name)
    build_prompt("", template)  # a bad template fails before reading anything
    rows = read_jsonl(jsonl_path)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        rows = rows[:limit]
    elif name in EXPECTED_ROWS and len(rows) != EXPECTED_ROWS[name]:
        logger.warning("%s has %d rows; the public %s has %d", jsonl_path, len(rows), name, EXPECTED_ROWS[name])
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        where = f"{jsonl_path} row {i}"
        question = next((row[k] for k in spec.question_keys if isinstance(row.get(k), str) and row[k].strip()), None)
        if question is None:
            raise ValueError(f"{where}: no question (looked for a non-empty {' or '.join(spec.question_keys)}); "
                             f"keys: {sorted(row)}")
        answer = spec.answer(row)
        if not answer:
            raise ValueError(f"{where}: no reference answer ({spec.answer_desc}); keys: {sorted(row)}")
        source_id = next((row[k] for k in spec.id_keys if row.get(k) is not None), i)
        out.append({
            "data_source": spec.name,
            "prompt": build_prompt(question, template, system_prompt),
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": {"split": "test", "index": i, "source_id": str(source_id)},
        })
    if not out:
        raise ValueError(f"{jsonl_path} has no rows")
    return pd.DataFrame(out)


def _write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def write_benchmarks(input_dir: str | os.PathLike, out_dir: str | os.PathLike,
                     benchmarks: Iterable[str] = tuple(BENCHMARKS), template: str = DEFAULT_TEMPLATE,
                     system_prompt: str | None = None, limit: int | None = None) -> dict[str, Path]:
    """Convert ``<input_dir>/<name>.jsonl`` to ``<out_dir>/<name>.parquet`` for each benchmark."""
    names = list(benchmarks)
    if not names:
        raise ValueError("no benchmarks given")
    for name in names:
        _spec(name)
    src = Path(input_dir).expanduser()
    missing = [str(src / f"{n}.jsonl") for n in names if not (src / f"{n}.jsonl").is_file()]
    if missing:
        raise FileNotFoundError(
            f"benchmark file(s) not found: {missing}. Two ways to get them: (1) put <name>.jsonl for each "
            f"benchmark into {src} (the public copies, see eval_scripts/README.md), or (2) download them from "
            "the Hugging Face hub: python -m dataset.math_benchmarks --download --input_dir "
            f"{src} (needs `pip install datasets` and hub access)")
    dst = Path(out_dir).expanduser()
    dst.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name in names:
        frame = convert_benchmark(name, src / f"{name}.jsonl", template, system_prompt, limit)
        path = dst / f"{name}.parquet"
        _write_parquet_atomic(frame, path)
        logger.info("wrote %d rows of %s to %s", len(frame), name, path)
        written[name] = path
    return written


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dataset.math_benchmarks",
                                description="Convert math benchmark jsonl files to RL parquet files.")
    p.add_argument("--input_dir", default=None,
                   help=f"folder with <benchmark>.jsonl files (default with --download: {DEFAULT_RAW_DIR})")
    p.add_argument("--out_dir", default=None,
                   help="folder for <benchmark>.parquet (created if missing); optional with --download")
    p.add_argument("--download", action="store_true",
                   help="fetch missing <benchmark>.jsonl files from the Hugging Face hub first (dataset.benchmark_hub)")
    p.add_argument("--overwrite", action="store_true", help="with --download: fetch again even if the file exists")
    p.add_argument("--revision", action="append", default=[], metavar="NAME=SHA",
                   help="with --download: pin a hub revision for one benchmark (repeatable)")
    p.add_argument("--benchmarks", default=",".join(BENCHMARKS),
                   help=f"comma-separated subset of {','.join(BENCHMARKS)} (default: all)")
    p.add_argument("--template", default=None,
                   help="user-message template with {problem} where the question goes (default: the problem, then "
                        "\"Let's think step by step and output the final answer within \\boxed{}.\")")
    p.add_argument("--template_file", default=None, help="read the template from this file instead")
    p.add_argument("--system_prompt", default=None, help="optional system message")
    p.add_argument("--limit", type=int, default=None, help="keep only the first N rows of each benchmark")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    """CLI entry point; prints one JSON line per written file."""
    args = _parse_args(argv)
    if args.template is not None and args.template_file is not None:
        raise SystemExit("give --template or --template_file, not both")
    template = DEFAULT_TEMPLATE
    if args.template_file is not None:
        template = Path(args.template_file).read_text(encoding="utf-8")
    elif args.template is not None:
        template = args.template
    names = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    input_dir = args.input_dir
    if args.download:
        from dataset.benchmark_hub import download_benchmarks  # noqa: PLC0415

        input_dir = input_dir or str(DEFAULT_RAW_DIR)
        revisions = dict(r.split("=", 1) for r in args.revision if "=" in r)
        bad = [r for r in args.revision if "=" not in r]
        if bad:
            raise SystemExit(f"--revision takes NAME=SHA, got {bad}")
        for name, path in download_benchmarks(input_dir, names, revisions=revisions, overwrite=args.overwrite).items():
            print(json.dumps({"benchmark": name, "raw": str(path)}))
        if args.out_dir is None:
            return {}
    if input_dir is None or args.out_dir is None:
        raise SystemExit("give --input_dir and --out_dir (or --download to fetch the raw files from the hub first)")
    written = write_benchmarks(input_dir, args.out_dir, names, template, args.system_prompt, args.limit)
    for name, path in written.items():
        print(json.dumps({"benchmark": name, "path": str(path), "rows": pd.read_parquet(path).shape[0]}))
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    main()
