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

A prompt is one input row (duplicated rows, as some suites use for AIME, count as separate prompts);
a response is correct when the scorer's ``acc`` is >= 0.5 (or, for scorers without ``acc``, when its
score is > 0), the same rule the reward worker uses for training metrics.
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

__all__ = ["EvalSample", "collect_samples", "evaluate", "records_from_scores", "run_main", "summarize"]

logger = logging.getLogger(__name__)

SCORE_BATCH = 2048  # responses per RewardPool.score call (one progress-bar step)


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
    if c.problems:
        raise PlanError(c.problems)
    return _Settings(files=files, output_path=Path(out).expanduser(), num_workers=num_workers,
                     timeout=float(timeout), think_format=think, custom=custom, ks=ks, percent=percent,
                     save_scores=save_scores, **keys)


def _responses(value: Any, key: str, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, list) and not value:
        raise ValueError(f"{where}: column {key!r} is an empty list (no responses to score)")
    raise ValueError(f"{where}: column {key!r} must be a list of response strings, got "
                     f"{type(value).__name__}: {str(value)[:80]!r}")


def collect_samples(files: str | os.PathLike | Sequence[str | os.PathLike], response_key: str = "responses",
                    data_source_key: str = "data_source", reward_model_key: str = "reward_model",
                    prompt_key: str = "prompt") -> list[EvalSample]:
    """One :class:`EvalSample` per response of every row; the prompt id is the global row number.

    Raises ``KeyError`` naming missing columns (and the columns that exist), ``ValueError`` naming
    the file and row of a malformed cell.
    """
    from relift.data.io import as_dict, read_parquet_files  # noqa: PLC0415

    table = read_parquet_files(files)
    table.require_columns([response_key, data_source_key, reward_model_key], "main_eval")
    has_extra = "extra_info" in table.columns
    has_lengths = "response_lengths" in table.columns
    from relift.rewards.prefill import prefill_from_prompt_cell  # noqa: PLC0415  (a prompt's opened <think> counts)
    has_prompt = prompt_key in table.columns
    samples: list[EvalSample] = []
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
        for j, (text, length) in enumerate(zip(responses, lengths)):
            samples.append(EvalSample(source, row, j, prefill + text, truth, extra or None,
                                      None if length is None else int(length)))
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
        records.append({"data_source": s.data_source, "prompt_id": s.prompt_id, "correct": _correct(r),
                        "pred": None if pred is None or pred == "" else str(pred)})
    return records


def summarize(samples: Sequence[EvalSample], results: Sequence[dict[str, Any]], ks: Sequence[int] | None = None
              ) -> dict[str, Any]:
    """Per data source: the pass@k summary plus timeouts, errors and mean response length."""
    from relift.metrics import summarize_samples, to_metric_dict  # noqa: PLC0415

    summary = summarize_samples(records_from_scores(samples, results), ks=ks)
    for source, row in summary.items():
        mine = [(s, r) for s, r in zip(samples, results) if s.data_source == source]
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
    return to_markdown(table, percent=percent)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)


def _write_scores(path: Path, samples: Sequence[EvalSample], results: Sequence[dict[str, Any]]) -> None:
    import pandas as pd  # noqa: PLC0415

    frame = pd.DataFrame({
        "data_source": [s.data_source for s in samples], "prompt_id": [s.prompt_id for s in samples],
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
                                  settings.reward_model_key)
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
    print(f"[relift] wrote {settings.output_path}", flush=True)
    if settings.save_scores:
        scores_path = settings.output_path.with_name(settings.output_path.stem + ".scores.parquet")
        _write_scores(scores_path, samples, results)
        payload["scores_path"] = str(scores_path)
    payload["output_path"] = str(settings.output_path)
    return payload


def run_main(cfg: DictConfig) -> int:
    """Evaluate with a composed config; returns the exit status (2 for bad config or input)."""
    return exit_status(evaluate, cfg)


main = hydra_entry("evaluation", run_main)


if __name__ == "__main__":
    main()
