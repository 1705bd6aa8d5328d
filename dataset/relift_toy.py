"""The ReLIFT-vs-GRPO toy: toy arithmetic where one harder level is out of reach of the SFT warm start.

    python -m dataset.relift_toy --out DIR [--train-size 4000 --val-size 400 --hard-level 4 ...]

Built on :mod:`dataset.toy_arithmetic` (same questions, same demonstrations, same scorer): questions
are drawn uniformly from ``levels`` (default 1,2,3,4), and the hardest one (``--hard-level``, default
4: three-digit + two-digit) is *held out of the warm-start data*. Files written to DIR:

* ``sft.parquet``: the training rows of the other levels only (the SFT warm start never sees a
  three-digit operand);
* ``rl.parquet``: every training row, all levels, each with its demonstration in ``target`` (what
  ReLIFT's buffer draws from when a prompt is failed by every rollout);
* ``val.parquet``: validation rows of all levels; the hard level's rows have
  ``data_source = "toy_arithmetic_hard"`` (scored exactly like ``toy_arithmetic``), so the trainer's
  validation reports the two parts separately: ``val-core/toy_arithmetic_hard/acc/...`` (hard) and
  ``val-core/toy_arithmetic/acc/...`` (the rest).

No validation question of level 2 or more appears in the training files (the generator's rule).
The hard level's training rows keep ``data_source = "toy_arithmetic"``; only validation is split.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from dataset.toy_arithmetic import LEVELS, make_rows

__all__ = ["HARD_SOURCE", "split_rows", "write_toy", "main"]

logger = logging.getLogger(__name__)

HARD_SOURCE = "toy_arithmetic_hard"


def split_rows(train: list[dict[str, Any]], val: list[dict[str, Any]], hard_level: int
               ) -> dict[str, list[dict[str, Any]]]:
    """``{"sft": rows without the hard level, "rl": all train rows, "val": val with hard rows relabelled}``."""
    sft = [r for r in train if r["extra_info"]["difficulty"] != hard_level]
    val_out = []
    for r in val:
        r = dict(r)
        if r["extra_info"]["difficulty"] == hard_level:
            r["data_source"] = HARD_SOURCE
        val_out.append(r)
    return {"sft": sft, "rl": list(train), "val": val_out}


def write_toy(out_dir: str | Path, n_train: int = 4000, n_val: int = 400, levels: tuple[int, ...] = (1, 2, 3, 4),
              hard_level: int = 4, worked_frac: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """Write sft/rl/val parquet files; returns a summary (paths and row counts per level)."""
    import pandas as pd  # noqa: PLC0415

    if hard_level not in levels:
        raise ValueError(f"hard level {hard_level} is not among the levels {levels}")
    if len(levels) < 2:
        raise ValueError("need at least one level besides the hard one (the warm start trains on it)")
    train, val = make_rows(n_train, n_val, tuple(levels), worked_frac, seed)
    parts = split_rows(train, val, hard_level)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"hard_level": hard_level, "levels": list(levels)}
    for name, rows in parts.items():
        path = out / f"{name}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        tmp.replace(path)
        summary[name] = {"path": str(path), "rows": len(rows),
                         "levels": {str(k): v for k, v in sorted(Counter(r["extra_info"]["difficulty"]
                                                                         for r in rows).items())},
                         "sources": dict(Counter(r["data_source"] for r in rows))}
    logger.info("relift toy: %s", summary)
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m dataset.relift_toy", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--train-size", type=int, default=4000)
    p.add_argument("--val-size", type=int, default=400)
    p.add_argument("--levels", default="1,2,3,4", help=f"comma-separated levels among {sorted(LEVELS)}")
    p.add_argument("--hard-level", type=int, default=4, help="the level held out of the SFT warm-start data")
    p.add_argument("--worked-frac", type=float, default=0.5, help="fraction of worked demonstrations")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        levels = tuple(int(x) for x in args.levels.split(",") if x.strip())
    except ValueError:
        p.error(f"--levels must be comma-separated integers, got {args.levels!r}")
    summary = write_toy(args.out, args.train_size, args.val_size, levels, args.hard_level, args.worked_frac,
                        args.seed)
    print(json.dumps(summary))
    return summary

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
