"""Evaluation entry point: ``python -m trainer.main_eval [hydra overrides]``.

Reads generation parquet(s) (``trainer.main_generation``'s output, or any parquet with a list of
responses, ``data_source`` and ``reward_model.ground_truth`` per row), scores every response through
:class:`relift.rewards.RewardPool` (hard per-sample timeout; a hang or an exception scores 0 and is
counted and reported), and prints one markdown row per data source: prompts, n, mean@n, pass@k for
k = 1, 2, 4, ..., n (unbiased estimator) and maj@n. The numbers go to ``data.output_path`` as JSON
(``<first input without .parquet>.json`` by default), one row per response to
``<output stem>.scores.parquet``.

When a row's ``prompt`` is already templated and ends with an opened ``<think>`` (Logic-RL's rows), the
scorer gets that prefill + each response, as in training (:mod:`relift.rewards.prefill`).

A question is one input row, except that rows with the same data source, prompt and ground truth are
pooled into one question with all their samples (``eval.pool_duplicates``, on by default): ReLIFT's
validation file repeats each AIME question 8 times, which with n samples per row is scored as
avg@(8 x n) over 30 questions, and the table says so above its header. A table row whose questions
repeat unevenly (a few accidental duplicates) is not pooled, with a warning. ``eval.group_by=kk_people``
splits a knights-and-knaves source into one row per puzzle size (``kk_logic/3ppl``, ...), the layout
of the Logic-RL tables. A response is correct when the scorer's ``acc`` is >= 0.5 (or, for scorers
without ``acc``, when its score is > 0), the same rule the reward worker uses for training metrics.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from trainer.entry import exit_status, hydra_entry
from trainer.plan import ConfigChecker, PlanError, check_custom_reward, check_files

__all__ = ["EvalSample", "collect_samples", "evaluate", "kk_people", "records_from_scores", "run_main", "summarize"]

logger = logging.getLogger(__name__)

SCORE_BATCH = 2048  # responses per RewardPool.score call (one progress-bar step)
GROUP_BY = (None, "kk_people")


@dataclass
class EvalSample:
    """One response to score."""

    data_source: str
    prompt_id: int
    sample: int
    response: str
    ground_truth: Any
    extra_info: dict[str, Any] | None = None
    response_length: int | None = None
    question_id: int | None = None   # pooled id (rows with the same prompt and ground truth share it)
    group: str | None = None         # the table row it counts in (data_source unless eval.group_by)

    @property
    def qid(self) -> int:
        return self.prompt_id if self.question_id is None else self.question_id

    @property
    def row_key(self) -> str:
        return self.data_source if self.group is None else self.group


@dataclass
class _Settings:
    files: list[str]
    response_key: str
    data_source_key: str
    reward_model_key: str
    output_path: Path
    num_workers: int | None
    timeout: float
    think_format: bool
    custom: tuple[str, str] | None
    ks: list[int] | None
    percent: bool
    save_scores: bool
    pool: bool = True
    group_by: str | None = None
    prompt_key: str = "prompt"
    warnings: list[str] = field(default_factory=list)


def _check(cfg: Any) -> _Settings:
    c = ConfigChecker(cfg)
    files = check_files(c, "data.path", required=True)
    keys = {}
    for key, default in (("response_key", "responses"), ("data_source_key", "data_source"),
                         ("reward_model_key", "reward_model")):
        value = c.raw(f"data.{key}", default)
        if not isinstance(value, str) or not value:
            c.fail(f"data.{key} must name a column, got {value!r}")
        keys[key] = value
    out = c.raw("data.output_path")
    if out is None and files:
        first = Path(files[0]).expanduser()
        out = str(first.with_suffix(".json") if first.suffix == ".parquet" else first.with_name(first.name + ".json"))
    if out is not None and not isinstance(out, str):
        c.fail(f"data.output_path must be a file path, got {out!r}")
    num_workers = c.int("reward.num_workers", min_value=1, allow_none=True)
    timeout = c.float("reward.timeout", min_value=0.0, strict_min=True, default=10.0)
    think = c.bool("reward.think_format")
    custom = None
    if check_custom_reward(c, "reward.custom_reward_function"):
        custom = (str(c.raw("reward.custom_reward_function.path")),
                  str(c.raw("reward.custom_reward_function.name") or "compute_score"))
    ks = c.raw("eval.ks")
    if ks is not None:
        if isinstance(ks, int) and not isinstance(ks, bool):
            ks = [ks]
        if not isinstance(ks, list) or not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1
                                                          for k in ks):
            c.fail(f"eval.ks must be null or a list of integers >= 1, got {ks!r}")
            ks = None
    percent = c.bool("eval.percent", default=True)
    save_scores = c.bool("eval.save_scores", default=True)
    pool = c.bool("eval.pool_duplicates", default=True)
    group_by = c.raw("eval.group_by")
    if group_by not in GROUP_BY:
        c.fail(f"eval.group_by: unknown grouping {group_by!r}; choose null or kk_people")
    prompt_key = c.raw("data.prompt_key", "prompt")
    if not isinstance(prompt_key, str) or not prompt_key:
        c.fail(f"data.prompt_key must name a column, got {prompt_key!r}")
    if c.problems:
        raise PlanError(c.problems)
    return _Settings(files=files, output_path=Path(out).expanduser(), num_workers=num_workers,
                     timeout=float(timeout), think_format=think, custom=custom, ks=ks, percent=percent,
                     save_scores=save_scores, pool=bool(pool), group_by=group_by, prompt_key=prompt_key, **keys)


def _responses(value: Any, key: str, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, list) and not value:
        raise ValueError(f"{where}: column {key!r} is an empty list (no responses to score)")
    raise ValueError(f"{where}: column {key!r} must be a list of response strings, got "
                     f"{type(value).__name__}: {str(value)[:80]!r}")


def kk_people(ground_truth: Any, where: str = "") -> int:
    """People in a knights-and-knaves puzzle: the lines of its ``solution_text_format`` ("(1) ... (n) ...")."""
    text = ground_truth.get("solution_text_format") if isinstance(ground_truth, dict) else ground_truth
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: eval.group_by=kk_people needs a ground truth with solution_text_format, "
                         f"got {str(ground_truth)[:80]!r}")
    return len([line for line in text.strip().splitlines() if line.strip()])


def collect_samples(files: str | os.PathLike | Sequence[str | os.PathLike], response_key: str = "responses",
                    data_source_key: str = "data_source", reward_model_key: str = "reward_model",
                    pool: bool = False, prompt_key: str = "prompt", group_by: str | None = None
                    ) -> list[EvalSample]:
    """One :class:`EvalSample` per response of every row; the prompt id is the global row number.

    ``pool``: rows with the same data source, prompt (``prompt_key``) and ground truth get one
    ``question_id`` (that of the first); without a prompt column nothing is pooled.
    ``group_by="kk_people"``: the table row becomes ``<data_source>/<people>ppl``.
    Raises ``KeyError`` naming missing columns (and the columns that exist), ``ValueError`` naming
    the file and row of a malformed cell.
    """
    from relift.data.io import as_dict, read_parquet_files  # noqa: PLC0415
    from relift.metrics.capability import pool_ids  # noqa: PLC0415

    table = read_parquet_files(files)
    table.require_columns([response_key, data_source_key, reward_model_key], "main_eval")
    has_extra = "extra_info" in table.columns
    has_lengths = "response_lengths" in table.columns
    from relift.rewards.prefill import prefill_from_prompt_cell  # noqa: PLC0415  (a prompt's opened <think> counts)
    has_prompt = prompt_key in table.columns
    pool = pool and prompt_key in table.columns
    uneven: set[str] = set()
    if not pool:
        logger.info("not pooling duplicate prompts (eval.pool_duplicates=false or no %r column)", prompt_key)
    samples: list[EvalSample] = []
    keys: list[Any] = []
    for row in range(len(table)):
        where = table.origin(row)
        responses = _responses(table.cell(row, response_key), response_key, where)
        source = table.cell(row, data_source_key)
        if not isinstance(source, str) or not source:
            raise ValueError(f"{where}: column {data_source_key!r} must be a non-empty string, got {source!r}")
        truth = as_dict(table.cell(row, reward_model_key), reward_model_key, where,
                        required_keys=("ground_truth",))["ground_truth"]
        extra = as_dict(table.cell(row, "extra_info"), "extra_info", where, allow_none=True) if has_extra else None
        lengths = table.cell(row, "response_lengths") if has_lengths else None
        if not isinstance(lengths, list) or len(lengths) != len(responses):
            lengths = [None] * len(responses)
        prefill = prefill_from_prompt_cell(table.cell(row, prompt_key)) if has_prompt else ""
        group = f"{source}/{kk_people(truth, where)}ppl" if group_by == "kk_people" else None
        keys.append((source, repr(table.cell(row, prompt_key)), repr(truth)) if pool else row)
        for j, (text, length) in enumerate(zip(responses, lengths)):
            samples.append(EvalSample(source, row, j, prefill + text, truth, extra or None,
                                      None if length is None else int(length), group=group))
    question_of_row, copies = pool_ids(keys)
    if pool:
        # pooling needs the same number of copies for every question of a table row; where they differ
        # (a file with a few accidental repeats) that row's questions stay one per input row
        per_group: dict[str, set[int]] = {}
        for s in samples:
            per_group.setdefault(s.row_key, set()).add(copies[question_of_row[s.prompt_id]])
        uneven = {g for g, c in per_group.items() if len(c) > 1}
        for g in sorted(uneven):
            logger.warning("%s: duplicated prompts repeat unevenly (copies per question: %s); not pooling them, "
                           "every row counts as one question", g, sorted(per_group[g]))
    for s in samples:
        s.question_id = s.prompt_id if pool and s.row_key in uneven else question_of_row[s.prompt_id]
    return samples


def _score(samples: Sequence[EvalSample], settings: _Settings) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm  # noqa: PLC0415

    from relift.rewards import RewardPool  # noqa: PLC0415

    results: list[dict[str, Any]] = []
    with RewardPool(num_workers=settings.num_workers, timeout=settings.timeout, custom_reward_fn=settings.custom,
                    reward_kwargs={"require_think_format": settings.think_format}) as pool:
        with tqdm(total=len(samples), desc="scoring", unit="response", dynamic_ncols=True) as bar:
            for start in range(0, len(samples), SCORE_BATCH):
                batch = samples[start:start + SCORE_BATCH]
                results.extend(pool.score([s.data_source for s in batch], [s.response for s in batch],
                                          [s.ground_truth for s in batch], [s.extra_info for s in batch]))
                bar.update(len(batch))
    return results


def _correct(result: dict[str, Any]) -> bool:
    acc = result.get("acc")
    return float(acc) >= 0.5 if acc is not None else float(result["score"]) > 0


def records_from_scores(samples: Sequence[EvalSample], results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``{data_source, prompt_id, correct, pred}`` per response (an empty prediction is None)."""
    if len(samples) != len(results):
        raise ValueError(f"{len(samples)} samples but {len(results)} scores")
    records = []
    for s, r in zip(samples, results):
        pred = r.get("pred")
        records.append({"data_source": s.row_key, "prompt_id": s.qid, "correct": _correct(r),
                        "pred": None if pred is None or pred == "" else str(pred)})
    return records


def summarize(samples: Sequence[EvalSample], results: Sequence[dict[str, Any]], ks: Sequence[int] | None = None
              ) -> dict[str, Any]:
    """Per data source: the pass@k summary plus timeouts, errors and mean response length."""
    from relift.metrics import summarize_samples, to_metric_dict  # noqa: PLC0415

    summary = summarize_samples(records_from_scores(samples, results), ks=ks)
    for source, row in summary.items():
        mine = [(s, r) for s, r in zip(samples, results) if s.row_key == source]
        row["rows"] = len({s.prompt_id for s, _ in mine})
        row["timeouts"] = sum(bool(r.get("timeout")) for _, r in mine)
        row["errors"] = sum(bool(r.get("error")) for _, r in mine)
        lengths = [s.response_length for s, _ in mine if s.response_length is not None]
        row["mean_response_length"] = sum(lengths) / len(lengths) if lengths else None
    average = _macro_average(summary)
    return {"per_source": summary, "average": average, "metrics": to_metric_dict(summary),
            "num_samples": len(samples), "timeouts": sum(bool(r.get("timeout")) for r in results),
            "errors": sum(bool(r.get("error")) for r in results)}


def _macro_average(summary: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The unweighted mean over data sources of every @-metric they all share (same n only)."""
    if len(summary) < 2 or len({row["n"] for row in summary.values()}) != 1:
        return None
    rows = list(summary.values())
    keys = [k for k in rows[0] if "@" in k and all(k in r for r in rows)]
    out: dict[str, Any] = {"n": rows[0]["n"], "num_prompts": sum(r["num_prompts"] for r in rows),
                           "num_sources": len(rows)}
    out.update({k: sum(float(r[k]) for r in rows) / len(rows) for k in keys})
    return out


def render_table(result: dict[str, Any], percent: bool = True) -> str:
    """The markdown table (an ``average`` row when every source has the same n)."""
    from relift.metrics import to_markdown  # noqa: PLC0415

    table = {src: {k: v for k, v in row.items() if k in ("n", "num_prompts") or "@" in k}
             for src, row in result["per_source"].items()}
    if result.get("average"):
        table["average"] = {k: v for k, v in result["average"].items() if k != "num_sources"}
    return "".join(pooling_notes(result["per_source"])) + to_markdown(table, percent=percent)


def pooling_notes(per_source: dict[str, dict[str, Any]]) -> list[str]:
    """One line per source whose duplicated rows were pooled, e.g. ``aime: 240 rows -> 30 questions ...``."""
    notes = []
    for src, row in per_source.items():
        rows, questions, n = row.get("rows"), row["num_prompts"], row["n"]
        if rows and rows != questions:
            copies = rows / questions
            per_row = n / copies
            notes.append(f"{src}: {rows} rows pooled into {questions} questions ({copies:g} copies each): "
                         f"n = {per_row:g} samples x {copies:g} copies = {n} per question, mean@n = avg@{n}\n")
    return notes


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)


def _write_scores(path: Path, samples: Sequence[EvalSample], results: Sequence[dict[str, Any]]) -> None:
    import pandas as pd  # noqa: PLC0415

    frame = pd.DataFrame({
        "data_source": [s.data_source for s in samples], "group": [s.row_key for s in samples],
        "prompt_id": [s.prompt_id for s in samples], "question_id": [s.qid for s in samples],
        "sample": [s.sample for s in samples], "score": [float(r["score"]) for r in results],
        "correct": [_correct(r) for r in results],
        "pred": [None if r.get("pred") is None else str(r.get("pred")) for r in results],
        "timeout": [bool(r.get("timeout")) for r in results], "error": [bool(r.get("error")) for r in results],
    })
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def evaluate(cfg: Any) -> dict[str, Any]:
    """Score, summarise, print and write; returns the JSON payload. Raises PlanError for bad input."""
    settings = _check(cfg)
    try:
        samples = collect_samples(settings.files, settings.response_key, settings.data_source_key,
                                  settings.reward_model_key, pool=settings.pool, prompt_key=settings.prompt_key,
                                  group_by=settings.group_by)
    except (KeyError, ValueError) as err:
        raise PlanError([str(err).strip("'\"")], what="input data") from err
    if not samples:
        raise PlanError([f"data.path {settings.files} has no rows"], what="input data")
    try:
        results = _score(samples, settings)
    except KeyError as err:  # a data_source with no scorer: the pool refuses before scoring
        raise PlanError([str(err).strip("'\"")], what="input data") from err
    try:
        result = summarize(samples, results, settings.ks)
    except ValueError as err:  # e.g. prompts of one source with different n
        raise PlanError([str(err)], what="input data") from err
    reward = {"timeout_s": settings.timeout, "think_format": settings.think_format,
              "custom_reward_function": settings.custom}
    payload = {"inputs": settings.files, "reward": reward, **result}
    print(render_table(result, settings.percent), flush=True)
    print(f"[relift] scored {result['num_samples']} responses: {result['timeouts']} reward timeouts, "
          f"{result['errors']} reward errors (each scored 0)", flush=True)
    _write_json(settings.output_path, payload)
    if settings.save_scores:
        scores_path = settings.output_path.with_name(settings.output_path.stem + ".scores.parquet")
        _write_scores(scores_path, samples, results)
        payload["scores_path"] = str(scores_path)
    payload["output_path"] = str(settings.output_path)
    print(f"[relift] numbers (JSON): {settings.output_path}", flush=True)
    if settings.save_scores:
        print(f"[relift] one row per response: {payload['scores_path']} (input of trainer.main_capability)",
              flush=True)
    return payload


def run_main(cfg: DictConfig) -> int:
    """Evaluate with a composed config; returns the exit status (2 for bad config or input)."""
    return exit_status(evaluate, cfg)


main = hydra_entry("evaluation", run_main)


if __name__ == "__main__":
    main()
