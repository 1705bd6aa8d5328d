"""The plan's data checks: every row of the train and validation files, before any model loads.

Called by the RL, offline and generation plan builders once the config's own keys are read. Each
problem found in the data becomes one plan problem naming the config key, the file, the row and the
column, so the entry points stop with exit status 2 and a short message (:mod:`trainer.entry`):

* a file that is not parquet, is corrupt or empty, or lacks a column the dataset reads;
* a cell of the wrong type (prompt not chat messages, ``reward_model`` without ``ground_truth``,
  ``data_source`` not a string, an SFT/pair completion that is not text or assistant messages);
* RL: a ``data_source`` value that no registered scorer handles, on any row of the train or
  validation files (unless ``reward.custom_reward_function`` replaces every scorer);
* RL: ``reward_model.ground_truth`` None on every row (a warning naming the first rows when only
  some are None; only a warning with a custom reward function, which may need no ground truth);
* prompts longer than ``data.max_prompt_length`` under ``data.truncation=error`` (RL, generation).

The length check needs the tokenizer. It is loaded from local files only (a checkpoint folder or the
hub cache, never a download); without one the length check is skipped with a plan warning and the
dataset still checks lengths when it loads. Policy for large files: every row is measured (the issue
asks for any row) under ``truncation=error`` and ``filter``, none under ``left``/``right`` (nothing can
fail there). Rendering + a batched fast-tokenizer pass costs about what the dataset's own measurement
at load costs (numbers in docs/data_keys.md); a progress bar shows on files over 4096 rows.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

from relift.data.validate import (
    DataFindings,
    check_completion_files,
    check_completion_lengths,
    check_prompt_files,
    check_prompt_lengths,
    check_rl_files,
    unknown_source_problems,
)
from relift.spec.sections import DataSpec, ModelSpec, OfflineDataSpec
from trainer.plan.checker import ConfigChecker

__all__ = ["check_rl_data", "check_offline_data", "check_generation_data", "plan_tokenizer"]

logger = logging.getLogger(__name__)

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
_FIRST_PROBLEMS = 20  # more data problems than this are counted, not listed


@functools.lru_cache(maxsize=4)
def plan_tokenizer(path: str, trust_remote_code: bool = False) -> tuple[Any, str | None]:
    """(tokenizer, None) from local files only, or (None, why not); cached per process."""
    local = Path(path).expanduser()
    if local.is_dir() and not any((local / f).is_file() for f in _TOKENIZER_FILES):
        return None, f"{path} holds no tokenizer files"
    start = time.perf_counter()
    try:
        from relift.models.loading import load_tokenizer  # noqa: PLC0415 - transformers import

        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - any failure only means: lengths are checked later
        return None, f"no tokenizer in local files at {path!r} ({type(err).__name__})"
    logger.info("plan: loaded the tokenizer of %s in %.2f s", path, time.perf_counter() - start)
    return tokenizer, None


def _existing(files: tuple[str, ...] | list[str]) -> list[str]:
    """The files check_files did not already report missing."""
    return [f for f in files if "://" in f or Path(f).expanduser().exists() or any(ch in f for ch in "*?[")]


def _record(c: ConfigChecker, found: DataFindings) -> None:
    room = max(0, _FIRST_PROBLEMS - len(c.problems))
    c.problems.extend(found.problems[:room])
    if len(found.problems) > room:
        c.problems.append(f"... and {len(found.problems) - room} more data problems")
    c.warnings.extend(found.warnings)


def _ground_truth(c: ConfigChecker, key: str, found: DataFindings, custom: bool) -> None:
    n, none = found.truth_rows, found.none_truth_count
    if not n or not none:
        return
    column = "reward_model.ground_truth"
    first = "; ".join(found.none_truths)
    if none == n and not custom:
        c.fail(f"{key}: column {column!r} is None on every row ({n} rows; first: {first}): every reward would "
               "fail; fill the ground truth, or set reward.custom_reward_function.path to a scorer that needs none")
    elif none == n:
        c.warn(f"{key}: column {column!r} is None on every row ({n} rows); the custom reward function gets None")
    else:
        c.warn(f"{key}: {none} of {n} rows have {column!r} None (first: {first}); their rewards will fail")


def _check_lengths(c: ConfigChecker, key: str, found: DataFindings, tokenizer_path: str | None,
                   trust_remote_code: bool, limit: int | None, truncation: str | None, apply_chat_template: bool,
                   prompt_key: str, fixes: str) -> None:
    if not found.prompts.messages or not limit or truncation not in ("error", "filter") or not tokenizer_path:
        return  # left/right cut over-long prompts at fetch time: nothing to stop, so no pass over the data
    tokenizer, why = plan_tokenizer(tokenizer_path, trust_remote_code)
    if tokenizer is None:
        if truncation == "error":
            c.warn(f"{key}: prompt lengths not checked at plan time ({why}); the dataset checks them when it loads")
        return
    start = time.perf_counter()
    out = DataFindings()
    check_prompt_lengths(key, found.prompts, tokenizer, limit=limit, truncation=truncation,
                         apply_chat_template=apply_chat_template, prompt_key=prompt_key, fixes=fixes, out=out)
    logger.info("plan: measured %d prompts of %s in %.2f s", len(found.prompts.messages), key,
                time.perf_counter() - start)
    _record(c, out)


def check_rl_data(c: ConfigChecker, data: DataSpec, model: ModelSpec | None, custom_reward: bool) -> None:
    """Every row of ``data.train_files`` and ``data.val_files`` as the RL dataset and the scorers read it."""
    from relift.rewards.registry import get_reward_fn, known_data_sources  # noqa: PLC0415

    tokenizer = None
    if model is None or not model.path:
        model = None
    else:
        tokenizer, _ = plan_tokenizer(model.tokenizer_path, model.trust_remote_code)
    for key, files in (("data.train_files", data.train_files), ("data.val_files", data.val_files)):
        files = _existing(files)
        if not files or not data.prompt_key or not data.reward_fn_key:
            continue
        found = check_rl_files(key, files, prompt_key=data.prompt_key, source_key=data.reward_fn_key,
                               target_key=data.target_key, tokenizer=tokenizer)
        _record(c, found)
        if not custom_reward:
            for line in unknown_source_problems(key, found.sources, known_data_sources(), get_reward_fn,
                                                data.reward_fn_key):
                c.fail(line)
        _ground_truth(c, key, found, custom_reward)
        if model is not None and not found.problems:
            _check_lengths(c, key, found, model.tokenizer_path, model.trust_remote_code, data.max_prompt_length,
                           data.truncation, data.apply_chat_template, data.prompt_key, "filter|left|right")


def check_offline_data(c: ConfigChecker, data: OfflineDataSpec, model: ModelSpec | None = None) -> None:
    """Every row of the SFT or pair files, read with the datasets' own row readers, and (with a local
    tokenizer) every sequence measured against ``data.max_length`` under ``truncation=error|filter``."""
    from relift.data.completion_rows import read_pair_row, read_sft_row  # noqa: PLC0415
    from relift.data.sft_dataset import SFTDataConfig  # noqa: PLC0415

    if data.kind not in ("sft", "pairs"):
        return
    messages_key = SFTDataConfig.messages_key if data.kind == "sft" else None
    if data.kind == "sft":
        keys = [data.response_key]

        def read(table: Any, row: int, layout: str) -> Any:
            return read_sft_row(table, row, layout, data.prompt_key, data.response_key, messages_key)
    else:
        keys = [data.chosen_key, data.rejected_key]

        def read(table: Any, row: int, layout: str) -> Any:
            return read_pair_row(table, row, layout, data.prompt_key, data.chosen_key, data.rejected_key)
    for key, files in (("data.train_files", data.train_files), ("data.val_files", data.val_files)):
        files = _existing(files)
        if not files:
            continue
        found = check_completion_files(key, files, kind=data.kind, prompt_key=data.prompt_key,
                                       completion_keys=keys, messages_key=messages_key, read_row=read)
        _record(c, found)
        if found.problems or model is None or not model.path or not data.max_length or not data.truncation:
            continue
        tokenizer, why = plan_tokenizer(model.tokenizer_path, model.trust_remote_code)
        if tokenizer is None:
            if data.truncation == "error":
                c.warn(f"{key}: sequence lengths not checked at plan time ({why}); the dataset checks them when "
                       "it loads")
            continue
        out = DataFindings()
        check_completion_lengths(key, found, tokenizer, limit=data.max_length, truncation=data.truncation,
                                 apply_chat_template=data.apply_chat_template,
                                 sides=tuple(keys), out=out)
        _record(c, out)


def check_generation_data(c: ConfigChecker, files: list[str], prompt_key: str, tokenizer_path: str | None,
                          trust_remote_code: bool, max_prompt_length: int | None, truncation: str | None,
                          apply_chat_template: bool) -> None:
    """Every prompt of ``data.path`` typed, and measured (over-long ones: ``data.truncation``)."""
    files = _existing(files)
    if not files:
        return
    found = check_prompt_files("data.path", files, prompt_key)
    _record(c, found)
    if not found.problems:
        _check_lengths(c, "data.path", found, tokenizer_path, trust_remote_code, max_prompt_length, truncation,
                       apply_chat_template, prompt_key, "left|right")
