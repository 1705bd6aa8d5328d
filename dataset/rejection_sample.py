"""Rejection sampling: a generation run's correct responses -> an SFT parquet.

    python -m dataset.rejection_sample --input gen.parquet --output sft.parquet [--keep first|random|all]

Input: ``trainer.main_generation`` output (the prompt file's columns plus ``responses``, a list of n
strings per prompt). Every response is scored by the reward registry (``data_source`` picks the
scorer: math-verify for math sources, the Logic-RL scorer for ``kk_logic``), through
:class:`relift.rewards.RewardPool` (a hang or crash counts as wrong). A response is correct when the
scorer's ``acc`` is >= 0.5 (else when its score is > 0), the rule ``trainer.main_eval`` uses; a
prompt ending with an opened ``<think>`` is scored as prefill + response, as in training.

Output rows (what ``trainer.main_offline``'s SFT dataset reads): the input row's columns except
``responses`` / ``response_lengths``, plus the kept response in ``--response-key`` (default
``target``, relift's SFT default; the prompt stays in ``prompt``, so a templated prompt ending with
``<think>`` continues with the response), ``sample`` (its position among the n), ``score``.
``--keep first`` keeps the first correct response per prompt (the knights-and-knaves distillation
kept one correct answer per puzzle), ``random`` one at random (``--seed``), ``all`` every correct
one. Prompts with no correct response are dropped. Counts are printed, per data source.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

__all__ = ["select", "rejection_sample", "main"]

KEEP = ("first", "random", "all")
_BATCH = 2048


def select(correct: list[bool], keep: str, rng: random.Random) -> list[int]:
    """Indices of the responses to keep among one prompt's, given which are correct."""
    good = [i for i, ok in enumerate(correct) if ok]
    if not good:
        return []
    if keep == "first":
        return good[:1]
    if keep == "random":
        return [rng.choice(good)]
    if keep == "all":
        return good
    raise ValueError(f"--keep must be one of {KEEP}, got {keep!r}")


def _score(samples: list[tuple[str, str, Any, Any]], num_workers: int | None, timeout: float,
           think_format: bool) -> list[dict[str, Any]]:
    from relift.rewards import RewardPool  # noqa: PLC0415

    results: list[dict[str, Any]] = []
    kwargs = {"require_think_format": True} if think_format else {}
    with RewardPool(num_workers=num_workers, timeout=timeout, reward_kwargs=kwargs) as pool:
        with tqdm(total=len(samples), desc="scoring", unit="response", disable=len(samples) < _BATCH) as bar:
            for start in range(0, len(samples), _BATCH):
                chunk = samples[start:start + _BATCH]
                results.extend(pool.score([s[0] for s in chunk], [s[1] for s in chunk], [s[2] for s in chunk],
                                          [s[3] for s in chunk]))
                bar.update(len(chunk))
    return results


def _correct(result: dict[str, Any]) -> bool:
    acc = result.get("acc")
    return float(acc) >= 0.5 if acc is not None else float(result["score"]) > 0


def rejection_sample(inputs: str | list[str], output: str | Path, keep: str = "first", seed: int = 0,
                     response_key: str = "target", prompt_key: str = "prompt", num_workers: int | None = None,
                     timeout: float = 10.0, think_format: bool = False) -> dict[str, Any]:
    """Write the SFT parquet; returns the counts (overall and per data source)."""
    import pandas as pd  # noqa: PLC0415

    from relift.data.io import as_dict, read_parquet_files, to_python  # noqa: PLC0415
    from relift.rewards.prefill import prefill_from_prompt_cell  # noqa: PLC0415

    if keep not in KEEP:
        raise ValueError(f"--keep must be one of {KEEP}, got {keep!r}")
    table = read_parquet_files(inputs)
    table.require_columns(["responses", "data_source", "reward_model", prompt_key], "rejection_sample")
    if response_key in table.columns:
        raise ValueError(f"the input already has a column {response_key!r}; choose another --response-key")
    rows, samples, owner = [], [], []
    for r in range(len(table)):
        where = table.origin(r)
        responses = to_python(table.cell(r, "responses"))
        if isinstance(responses, str):
            responses = [responses]
        if not isinstance(responses, list) or not responses or not all(isinstance(x, str) for x in responses):
            raise ValueError(f"{where}: column 'responses' must be a non-empty list of strings")
        source = table.cell(r, "data_source")
        truth = as_dict(table.cell(r, "reward_model"), "reward_model", where, required_keys=("ground_truth",))
        extra = as_dict(table.cell(r, "extra_info"), "extra_info", where, allow_none=True) \
            if "extra_info" in table.columns else None
        prefill = prefill_from_prompt_cell(table.cell(r, prompt_key))
        rows.append(responses)
        for j, text in enumerate(responses):
            samples.append((str(source), prefill + text, truth["ground_truth"], extra or None))
            owner.append((r, j))
    results = _score(samples, num_workers, timeout, think_format)
    per_row: dict[int, list[tuple[bool, float]]] = defaultdict(list)
    for (r, _), res in zip(owner, results):
        per_row[r].append((_correct(res), float(res["score"])))

    rng = random.Random(seed)
    out_rows = []
    counts: dict[str, Counter] = defaultdict(Counter)
    drop = {"responses", "response_lengths"}
    for r, responses in enumerate(rows):
        source = str(table.cell(r, "data_source"))
        flags = [ok for ok, _ in per_row[r]]
        c = counts[source]
        c["prompts"] += 1
        c["responses"] += len(responses)
        c["correct_responses"] += sum(flags)
        c["prompts_with_correct"] += any(flags)
        for j in select(flags, keep, rng):
            base = {k: to_python(table.cell(r, k)) for k in table.columns if k not in drop}
            out_rows.append({**base, response_key: responses[j], "sample": j, "score": per_row[r][j][1]})
            c["rows_written"] += 1
    if not out_rows:
        raise ValueError(f"no correct response in {table.files}: nothing to write")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".parquet.tmp")
    import pyarrow as pa  # noqa: PLC0415

    try:
        pd.DataFrame(out_rows).to_parquet(tmp, index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot write the kept rows as one parquet ({exc}); rows of different tasks whose "
                         "ground truths differ in type (a dict for K&K, a string for math) need one run each") from exc
    tmp.replace(output)
    total = sum(counts.values(), Counter())
    return {"output": str(output), "keep": keep, "total": dict(total),
            "by_source": {k: dict(v) for k, v in sorted(counts.items())}}


def _print_table(summary: dict[str, Any]) -> None:
    cols = ("prompts", "responses", "correct_responses", "prompts_with_correct", "rows_written")
    print("| data_source | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, c in [*summary["by_source"].items(), ("total", summary["total"])]:
        print(f"| {name} | " + " | ".join(str(c.get(k, 0)) for k in cols) + " |")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m dataset.rejection_sample", description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", nargs="+", required=True, help="main_generation output parquet(s)")
    ap.add_argument("--output", required=True, help="SFT parquet to write")
    ap.add_argument("--keep", choices=KEEP, default="first", help="correct responses kept per prompt [first]")
    ap.add_argument("--seed", type=int, default=0, help="for --keep random")
    ap.add_argument("--response-key", default="target", help="column of the kept response [target]")
    ap.add_argument("--prompt-key", default="prompt")
    ap.add_argument("--num-workers", type=int, default=None, help="scoring processes [cpu count]")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per response before it counts as wrong")
    ap.add_argument("--think-format", action="store_true", help="math: require a <think> block to count")
    args = ap.parse_args(argv)
    try:
        summary = rejection_sample(args.input, args.output, args.keep, args.seed, args.response_key,
                                   args.prompt_key, args.num_workers, args.timeout, args.think_format)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"rejection_sample: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    _print_table(summary)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
