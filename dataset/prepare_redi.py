"""Both REDI stages' data from OpenR1-Math-Raw: SFT positives and (chosen, rejected) pairs.

The rules are the REDI paper's (arXiv 2505.24850, section 4 of REFERENCE.md) as its data scripts
apply them (github.com/Tim-Siu/reinforcement-distillation, ``experiments_trl/data_preprocess``):

1. shuffle the raw rows with seed 42 (before selection, so "first" below is reproducible; the
   permutation is ``numpy.random.default_rng(42).permutation(n)``, the one ``datasets``' ``shuffle``
   draws);
2. keep problems marked valid (``problem_is_valid`` == "yes", case and spaces ignored);
3. drop the ``cn_k12`` source;
4. drop rows without a problem or generations, or whose verification lists do not match the
   number of generations (counted, not silently);
5. a generation is correct only when BOTH ``correctness.llama_verification`` and
   ``correctness.math_verify_reparsed_answer`` say True ("LandMV");
6. SFT set: the first correct generation per problem; pair set: problems with at least one correct
   and one incorrect generation, chosen = the first correct, rejected = the first incorrect;
7. length limits with the target tokenizer: prompt (the chat-templated problem) <= 800 tokens and
   completion <= 19,000 tokens (pairs: both sides).

It prints the row count after each filter. Expected on the full set (the paper's Table 1 counts):
77,629 SFT rows and 53,175 pairs.

OpenR1-Math-Raw's columns (the dataset card's features, as listed for its published sample
``sft-datasets/test``): ``problem`` str, ``solution`` str, ``answer`` str, ``problem_type`` str,
``question_type`` str, ``problem_is_valid`` str ("Yes"/"No"), ``solution_is_valid`` str,
``source`` str, ``synthetic`` bool, ``generations`` list[str], ``generations_count`` int,
``correctness`` struct {``llama_verification``, ``math_verify_answer``,
``math_verify_reparsed_answer``: list[bool]}, ``reparsed_answers`` list[str], ``messages``.

Output (parquet, read by ``relift.data.SFTDataset`` / ``PairDataset`` with the default keys):
``sft.parquet``: ``prompt`` [user turn], ``target`` [assistant turn], ``data_source``, ``answer``,
``extra_info``; ``pairs.parquet``: ``prompt``, ``chosen`` / ``rejected`` [assistant turn],
``data_source``, ``answer``, ``extra_info`` (raw row, generation indices).

CLI::

    python -m dataset.prepare_redi --input PATH_OR_GLOB [...] --tokenizer Qwen/Qwen2.5-Math-1.5B --out DIR
    python -m dataset.prepare_redi --hub-id open-r1/OpenR1-Math-Raw --tokenizer ... --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SHUFFLE_SEED", "EXCLUDED_SOURCE", "MAX_PROMPT_TOKENS", "MAX_COMPLETION_TOKENS", "select_generations",
           "prepare", "main"]

logger = logging.getLogger(__name__)

SHUFFLE_SEED = 42
EXCLUDED_SOURCE = "cn_k12"
MAX_PROMPT_TOKENS = 800
MAX_COMPLETION_TOKENS = 19_000
PAPER_COUNTS = {"sft": 77_629, "pairs": 53_175}
REQUIRED = ("problem", "answer", "problem_is_valid", "source", "generations", "correctness")


def _flags(value: Any) -> list[bool] | None:
    if value is None:
        return None
    try:
        return [bool(v) for v in list(value)]
    except TypeError:
        return None


def select_generations(generations: list[str], llama: list[bool], math_verify: list[bool]
                       ) -> tuple[int | None, int | None]:
    """(index of the first correct, index of the first incorrect) generation; correct = both flags True."""
    correct = [i for i, (a, b) in enumerate(zip(llama, math_verify)) if a and b]
    good = set(correct)
    wrong = [i for i in range(len(generations)) if i not in good]
    return (correct[0] if correct else None), (wrong[0] if wrong else None)


def _say(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = n
    print(f"[prepare_redi] {key:<44} {n:>9,}", flush=True)


def _lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    from relift.data.common import token_lengths  # noqa: PLC0415

    return token_lengths(tokenizer, texts, desc="tokenising")


def prepare(frame: pd.DataFrame, tokenizer: Any, out_dir: str | Path, *, seed: int = SHUFFLE_SEED,
            max_prompt_tokens: int = MAX_PROMPT_TOKENS, max_completion_tokens: int = MAX_COMPLETION_TOKENS,
            where: str = "input") -> dict[str, int]:
    """Apply the rules to the raw rows, write ``sft.parquet`` and ``pairs.parquet``; returns the counts."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise KeyError(f"{where}: column(s) {missing} missing; OpenR1-Math-Raw has {list(REQUIRED)} among others; "
                       f"available: {list(frame.columns)}")
    counts: dict[str, int] = {}
    _say(counts, "raw rows", len(frame))
    order = np.random.default_rng(seed).permutation(len(frame))
    frame = frame.iloc[order].reset_index(drop=True).assign(raw_index=order)
    valid = frame["problem_is_valid"].map(lambda v: isinstance(v, str) and v.strip().lower() == "yes")
    frame = frame[valid]
    _say(counts, "problem_is_valid == yes", len(frame))
    frame = frame[frame["source"] != EXCLUDED_SOURCE]
    _say(counts, f"source != {EXCLUDED_SOURCE}", len(frame))

    sft, pairs = [], []
    usable = 0
    for row in frame.itertuples(index=False):
        gens = list(row.generations) if row.generations is not None else []
        corr = row.correctness if isinstance(row.correctness, dict) else {}
        llama = _flags(corr.get("llama_verification"))
        mv = _flags(corr.get("math_verify_reparsed_answer"))
        if not row.problem or not gens or llama is None or mv is None or not len(llama) == len(mv) == len(gens):
            continue
        usable += 1
        good, bad = select_generations(gens, llama, mv)
        base = {"data_source": f"openr1_math/{row.source}", "prompt": [{"role": "user", "content": row.problem}],
                "answer": row.answer}
        info = {"raw_index": int(row.raw_index), "source": row.source}
        if good is not None:
            sft.append({**base, "target": [{"role": "assistant", "content": gens[good]}],
                        "extra_info": {**info, "generation": good}})
            if bad is not None:
                pairs.append({**base, "chosen": [{"role": "assistant", "content": gens[good]}],
                              "rejected": [{"role": "assistant", "content": gens[bad]}],
                              "extra_info": {**info, "chosen_generation": good, "rejected_generation": bad}})
    _say(counts, "with problem, generations, matching flags", usable)
    _say(counts, "sft: >= 1 correct (llama AND math-verify)", len(sft))
    _say(counts, "pairs: >= 1 correct and >= 1 incorrect", len(pairs))

    def prompt_len(rows: list[dict[str, Any]]) -> list[int]:
        if getattr(tokenizer, "chat_template", None):
            texts = [tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
                     for r in rows]
        else:
            texts = [r["prompt"][0]["content"] for r in rows]
        return _lengths(tokenizer, texts)

    def within(rows: list[dict[str, Any]], sides: tuple[str, ...]) -> list[dict[str, Any]]:
        ok = [n <= max_prompt_tokens for n in prompt_len(rows)]
        for side in sides:
            lens = _lengths(tokenizer, [r[side][0]["content"] for r in rows])
            ok = [a and n <= max_completion_tokens for a, n in zip(ok, lens)]
        return [r for r, keep in zip(rows, ok) if keep]

    sft = within(sft, ("target",))
    _say(counts, f"sft: prompt <= {max_prompt_tokens}, completion <= {max_completion_tokens}", len(sft))
    pairs = within(pairs, ("chosen", "rejected"))
    _say(counts, f"pairs: prompt <= {max_prompt_tokens}, both <= {max_completion_tokens}", len(pairs))

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("sft", sft), ("pairs", pairs)):
        if not rows:
            raise ValueError(f"{where}: no {name} rows left after filtering (counts: {counts})")
        tmp = out / f"{name}.parquet.tmp"
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        tmp.replace(out / f"{name}.parquet")
    (out / "counts.json").write_text(json.dumps(counts, indent=1) + "\n")
    print(f"[prepare_redi] wrote {out / 'sft.parquet'} ({len(sft):,} rows) and {out / 'pairs.parquet'} "
          f"({len(pairs):,} pairs); the paper's full-set counts: {PAPER_COUNTS}", flush=True)
    return counts


def _load(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    if args.hub_id:
        try:
            from datasets import load_dataset  # noqa: PLC0415
        except ImportError as err:
            raise SystemExit("--hub-id needs the `datasets` package (pip install datasets), or download the "
                             "parquet files and pass them with --input") from err
        return load_dataset(args.hub_id, split=args.split).to_pandas(), args.hub_id
    from relift.data.io import read_parquet_files  # noqa: PLC0415

    table = read_parquet_files(args.input)
    return table.frame, ", ".join(table.files)


def main(argv: list[str] | None = None) -> dict[str, int]:
    p = argparse.ArgumentParser(prog="python -m dataset.prepare_redi", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", help="local parquet file(s), folders or globs (or hf:// URLs)")
    src.add_argument("--hub-id", help="dataset id for datasets.load_dataset, e.g. open-r1/OpenR1-Math-Raw")
    p.add_argument("--split", default="train")
    p.add_argument("--tokenizer", required=True, help="the target model's tokenizer (path or hub id)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=SHUFFLE_SEED)
    p.add_argument("--max-prompt-tokens", type=int, default=MAX_PROMPT_TOKENS)
    p.add_argument("--max-completion-tokens", type=int, default=MAX_COMPLETION_TOKENS)
    args = p.parse_args(argv)
    from relift.models.loading import load_tokenizer  # noqa: PLC0415

    frame, where = _load(args)
    tokenizer = load_tokenizer(args.tokenizer)
    return prepare(frame, tokenizer, args.out, seed=args.seed, max_prompt_tokens=args.max_prompt_tokens,
                   max_completion_tokens=args.max_completion_tokens, where=where)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
