"""Toy arithmetic: the CPU quickstart's task, with verifiable answers and a demonstration per question.

Questions are integer additions ``a+b=`` at a spread of difficulty levels (number of digits of the
two operands, see :data:`LEVELS`). The ground truth is the sum as a string; the math scorer
(``data_source: toy_arithmetic`` -> math-verify) grades the last ``\\boxed{...}`` of a response.

Every row carries a demonstration (the ``target`` column, as ReLIFT's parquet does) in one of two
styles, drawn per row with probability ``worked_frac``:

* worked: column addition from the units digit up, one step per digit, carries written out, then
  the answer, e.g. ``47+85=`` -> ``7+5=12 4+8+1=13 \\boxed{132}``;
* terse: the answer alone, ``\\boxed{132}``.

Both styles are correct. A tiny model that imitates them (the SFT warm start) learns to answer in
both styles, but it can only carry digits reliably when it writes the steps out; so its accuracy
is moderate, and the RL stage has something real to learn: which style pays (plus sharper digit
facts). That mirrors what RL does for real reasoning models (it selects and sharpens the
behaviours that reach correct answers) at a size that trains in minutes on two CPU cores.

Train and validation rows are drawn from the same distribution; no validation question of level 2
or more appears in the training file (level 1 has only 100 distinct questions, all of which the
training file holds: it is the memorisation level).

CLI: ``python -m dataset.toy_arithmetic --out DIR`` writes ``DIR/train.parquet`` and
``DIR/val.parquet`` (rows in the RL format of REFERENCE.md section 3, usable by the SFT dataset too).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["DATA_SOURCE", "LEVELS", "make_question", "worked_solution", "terse_solution", "make_rows",
           "write_dataset", "main"]

logger = logging.getLogger(__name__)

DATA_SOURCE = "toy_arithmetic"
# level -> (digits of a, digits of b)
LEVELS: dict[int, tuple[int, int]] = {1: (1, 1), 2: (2, 1), 3: (2, 2), 4: (3, 2), 5: (3, 3)}
DEFAULT_LEVELS = (1, 2, 3)


def _random_operand(rng: random.Random, digits: int) -> int:
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(low, 10 ** digits - 1)


def make_question(rng: random.Random, level: int) -> tuple[int, int]:
    """Two operands with the digit counts of ``level``."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level}; known levels: {sorted(LEVELS)}")
    da, db = LEVELS[level]
    return _random_operand(rng, da), _random_operand(rng, db)


def worked_solution(a: int, b: int) -> str:
    """Column addition, units first: ``47+85`` -> ``7+5=12 4+8+1=13 \\boxed{132}``."""
    if a < 0 or b < 0:
        raise ValueError(f"operands must be non-negative, got {a} and {b}")
    ra, rb = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(ra), len(rb))):
        terms = [x[i] for x in (ra, rb) if i < len(x)] + (["1"] if carry else [])
        total = sum(int(t) for t in terms)
        carry = total // 10
        steps.append("+".join(terms) + "=" + str(total))
    return " ".join(steps) + " " + terse_solution(a, b)


def terse_solution(a: int, b: int) -> str:
    """The answer alone: ``\\boxed{132}``."""
    return "\\boxed{" + str(a + b) + "}"


def _row(a: int, b: int, level: int, split: str, index: int, worked: bool) -> dict[str, Any]:
    demo = worked_solution(a, b) if worked else terse_solution(a, b)
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": f"{a}+{b}="}],
        "ability": "arithmetic",
        "reward_model": {"style": "rule", "ground_truth": str(a + b)},
        "extra_info": {"split": split, "index": index, "difficulty": level,
                       "style": "worked" if worked else "terse"},
        "target": [{"role": "assistant", "content": demo}],
    }


def make_rows(n_train: int, n_val: int, levels: tuple[int, ...] = DEFAULT_LEVELS, worked_frac: float = 0.5,
              seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and validation rows; levels are drawn uniformly, styles with ``worked_frac``."""
    if n_train <= 0 or n_val < 0:
        raise ValueError(f"need n_train > 0 and n_val >= 0, got {n_train} and {n_val}")
    if not 0.0 <= worked_frac <= 1.0:
        raise ValueError(f"worked_frac must be in [0, 1], got {worked_frac}")
    if not levels:
        raise ValueError("levels must not be empty")
    for level in levels:
        if level not in LEVELS:
            raise ValueError(f"unknown level {level}; known levels: {sorted(LEVELS)}")
    rng = random.Random(seed)
    val, held_out = [], set()
    for i in range(n_val):
        level = rng.choice(levels)
        a, b = make_question(rng, level)
        val.append(_row(a, b, level, "val", i, rng.random() < worked_frac))
        if level > 1:
            held_out.add((a, b))
    train = []
    attempts = 0
    while len(train) < n_train:
        level = rng.choice(levels)
        a, b = make_question(rng, level)
        while (a, b) in held_out:  # redraw within the level so the level mix stays uniform
            attempts += 1
            if attempts > 100 * n_train:
                raise RuntimeError("could not draw enough training questions outside the validation set; "
                                   "lower n_val or add harder levels")
            a, b = make_question(rng, level)
        train.append(_row(a, b, level, "train", len(train), rng.random() < worked_frac))
    return train, val


def write_dataset(out_dir: str | Path, n_train: int = 4000, n_val: int = 300,
                  levels: tuple[int, ...] = DEFAULT_LEVELS, worked_frac: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """Write ``train.parquet`` and ``val.parquet`` under ``out_dir``; returns a summary dict."""
    import pandas as pd

    train, val = make_rows(n_train, n_val, levels, worked_frac, seed)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in (("train", train), ("val", val)):
        path = out / f"{name}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        tmp.replace(path)
        paths[name] = str(path)
    summary = {
        **paths,
        "n_train": len(train),
        "n_val": len(val),
        "levels": {str(k): v for k, v in sorted(Counter(r["extra_info"]["difficulty"] for r in train).items())},
        "worked_frac": round(sum(r["extra_info"]["style"] == "worked" for r in train) / len(train), 3),
    }
    logger.info("toy arithmetic: %s", summary)
    return summary


def _parse_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"levels must be comma-separated integers, got {text!r}") from exc
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
        raise argparse.ArgumentTypeError(f"levels must be among {sorted(LEVELS)}, got {text!r}")
    return levels


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI: write the parquet files and print a JSON summary."""
    p = argparse.ArgumentParser(prog="python -m dataset.toy_arithmetic", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--train-size", type=int, default=4000)
    p.add_argument("--val-size", type=int, default=300)
    p.add_argument("--levels", type=_parse_levels, default=DEFAULT_LEVELS,
                   help=f"comma-separated difficulty levels among {sorted(LEVELS)} (default 1,2,3)")
    p.add_argument("--worked-frac", type=float, default=0.5, help="fraction of worked demonstrations")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    summary = write_dataset(args.out, args.train_size, args.val_size, args.levels, args.worked_frac, args.seed)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
