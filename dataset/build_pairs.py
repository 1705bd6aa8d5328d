"""REDI data from your own teacher: a generation run + its scores -> SFT and pair parquet.

Run your teacher with several samples per prompt and score them::

    python -m trainer.main_generation data.path=prompts.parquet data.n_samples=8 \\
        data.output_path=out/gen.parquet model.path=TEACHER ...
    python -m trainer.main_eval data.path=out/gen.parquet          # writes out/gen.scores.parquet
    python -m dataset.build_pairs --generations out/gen.parquet --out out/redi

``gen.parquet`` holds the input columns plus ``responses`` (n strings per prompt);
``gen.scores.parquet`` one row per response (``prompt_id`` = row of the generation file,
``sample`` = index in ``responses``, ``correct``). The rules are those of
:mod:`dataset.prepare_redi` (the REDI paper's): SFT rows = the first correct response per prompt;
pairs = prompts with at least one correct and one incorrect response, chosen = the first correct,
rejected = the first incorrect; responses that timed out or errored in scoring are left out (their
"incorrect" is not a verdict). Optional length limits (tokens, with ``--tokenizer``) and a seeded
shuffle of the output. It prints the count after each step.

Output: ``sft.parquet`` (``prompt``, ``target`` [assistant turn], and the input's ``data_source``,
``reward_model``, ``extra_info`` when present) and ``pairs.parquet`` (``prompt``, ``chosen``,
``rejected`` as assistant turns, same extra columns): the default keys of the offline trainer.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["build_pairs", "main"]

logger = logging.getLogger(__name__)

KEEP = ("data_source", "reward_model", "extra_info", "ability")


def _say(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = n
    print(f"[build_pairs] {key:<46} {n:>9,}", flush=True)


def build_pairs(generations: str | Path, out_dir: str | Path, scores: str | Path | None = None, *,
                prompt_key: str = "prompt", response_key: str = "responses", tokenizer: Any = None,
                max_prompt_tokens: int | None = None, max_completion_tokens: int | None = None,
                seed: int | None = 42) -> dict[str, int]:
    """Write ``sft.parquet`` and ``pairs.parquet`` under ``out_dir``; returns the counts per step."""
    from relift.data.completion_rows import read_prompt  # noqa: PLC0415
    from relift.data.io import read_parquet_files  # noqa: PLC0415

    gen = read_parquet_files(generations)
    gen.require_columns([prompt_key, response_key], "build_pairs generations")
    scores = Path(scores) if scores else Path(str(gen.files[0]).removesuffix(".parquet") + ".scores.parquet")
    if not scores.is_file():
        raise FileNotFoundError(f"scores file {str(scores)!r} not found; run `python -m trainer.main_eval "
                                f"data.path={gen.files[0]}` first, or pass --scores")
    sc = pd.read_parquet(scores)
    missing = [c for c in ("prompt_id", "sample", "correct") if c not in sc.columns]
    if missing:
        raise KeyError(f"{scores}: column(s) {missing} missing; expected trainer.main_eval's scores file")
    counts: dict[str, int] = {}
    _say(counts, "prompts", len(gen))
    _say(counts, "scored responses", len(sc))
    bad = pd.Series(False, index=sc.index)
    for flag in ("timeout", "error"):
        if flag in sc.columns:
            bad |= sc[flag].astype(bool)
    sc = sc[~bad]
    _say(counts, "scored without timeout or error", len(sc))
    verdicts: dict[int, dict[int, bool]] = {}
    for pid, sample, correct in zip(sc["prompt_id"], sc["sample"], sc["correct"]):
        verdicts.setdefault(int(pid), {})[int(sample)] = bool(correct)
    if verdicts and max(verdicts) >= len(gen):
        raise ValueError(f"{scores}: prompt_id {max(verdicts)} is past the {len(gen)} rows of {gen.files}; "
                         f"the scores belong to another generation file")
    extra = [c for c in KEEP if c in gen.columns]
    sft, pairs = [], []
    for row in range(len(gen)):
        where = gen.origin(row)
        responses = gen.cell(row, response_key)
        responses = [responses] if isinstance(responses, str) else list(responses or [])
        marks = verdicts.get(row, {})
        good = [j for j in range(len(responses)) if marks.get(j) is True]
        wrong = [j for j in range(len(responses)) if marks.get(j) is False]
        prompt = read_prompt(gen.cell(row, prompt_key), prompt_key, where)
        base = {"prompt": [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt,
                **{c: gen.cell(row, c) for c in extra}}
        if good:
            sft.append({**base, "target": [{"role": "assistant", "content": responses[good[0]]}]})
            if wrong:
                pairs.append({**base, "chosen": [{"role": "assistant", "content": responses[good[0]]}],
                              "rejected": [{"role": "assistant", "content": responses[wrong[0]]}]})
    _say(counts, "sft: prompts with >= 1 correct", len(sft))
    _say(counts, "pairs: >= 1 correct and >= 1 incorrect", len(pairs))
    if tokenizer is not None and (max_prompt_tokens or max_completion_tokens):
        from relift.data.common import render_prompt, token_lengths  # noqa: PLC0415

        def keep(rows: list[dict[str, Any]], sides: tuple[str, ...]) -> list[dict[str, Any]]:
            ok = [True] * len(rows)
            if max_prompt_tokens:
                texts = [render_prompt(tokenizer, r["prompt"], bool(getattr(tokenizer, "chat_template", None)))
                         for r in rows]
                ok = [a and n <= max_prompt_tokens for a, n in zip(ok, token_lengths(tokenizer, texts))]
            for side in sides if max_completion_tokens else ():
                lens = token_lengths(tokenizer, [r[side][0]["content"] for r in rows])
                ok = [a and n <= max_completion_tokens for a, n in zip(ok, lens)]
            return [r for r, k in zip(rows, ok) if k]

        sft, pairs = keep(sft, ("target",)), keep(pairs, ("chosen", "rejected"))
        _say(counts, "sft: within the length limits", len(sft))
        _say(counts, "pairs: within the length limits", len(pairs))
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("sft", sft), ("pairs", pairs)):
        if seed is not None:
            rows = [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))]
        if not rows:
            print(f"[build_pairs] warning: no {name} rows; {out / (name + '.parquet')} not written", flush=True)
            continue
        tmp = out / f"{name}.parquet.tmp"
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        tmp.replace(out / f"{name}.parquet")
    return counts


def main(argv: list[str] | None = None) -> dict[str, int]:
    p = argparse.ArgumentParser(prog="python -m dataset.build_pairs", description=__doc__.split("\n\n")[0])
    p.add_argument("--generations", required=True, help="trainer.main_generation's output parquet")
    p.add_argument("--scores", help="trainer.main_eval's scores parquet (default: <generations stem>.scores.parquet)")
    p.add_argument("--out", required=True, help="output folder for sft.parquet and pairs.parquet")
    p.add_argument("--prompt-key", default="prompt")
    p.add_argument("--response-key", default="responses")
    p.add_argument("--tokenizer", help="tokenizer path or hub id, for the length limits")
    p.add_argument("--max-prompt-tokens", type=int)
    p.add_argument("--max-completion-tokens", type=int)
    p.add_argument("--seed", type=int, default=42, help="shuffle seed for the output rows (-1: keep input order)")
    args = p.parse_args(argv)
    tokenizer = None
    if args.tokenizer:
        from relift.models.loading import load_tokenizer  # noqa: PLC0415

        tokenizer = load_tokenizer(args.tokenizer)
    elif args.max_prompt_tokens or args.max_completion_tokens:
        p.error("--max-prompt-tokens / --max-completion-tokens need --tokenizer")
    return build_pairs(args.generations, args.out, args.scores, prompt_key=args.prompt_key,
                       response_key=args.response_key, tokenizer=tokenizer, max_prompt_tokens=args.max_prompt_tokens,
                       max_completion_tokens=args.max_completion_tokens, seed=None if args.seed < 0 else args.seed)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
