"""Plan-time checks of data files: every row of every file read and typed before any model loads.

The datasets (:mod:`relift.data.rl_dataset`, ``sft_dataset``, ``pair_dataset``) check their rows
when the trainer builds them; these functions run the same per-row readers earlier, from the plan,
so that a bad file stops the run at once (exit status 2, one line per problem naming the file, the
row and the column) instead of after the model has loaded, or hours in at the batch that holds the
bad row (an unknown ``data_source`` used to fail only when its batch was scored).

Only the columns a dataset reads are loaded (pyarrow column projection). Each check reports the
first failing row and how many rows of the file fail it, never one line per bad row. Prompt lengths
need the tokenizer: :func:`prompt_lengths` renders the prompts exactly as the dataset does and
encodes them in batches with the fast tokenizer.

Results are plain lists of problem and warning strings; :mod:`trainer.plan.data_checks` turns them
into plan problems (``PlanError``) and plan warnings.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from relift.data.io import ParquetTable, as_dict, as_messages, as_text, expand_data_files, read_parquet_table
from relift.data.templated import templated_text

__all__ = ["DataFindings", "PromptRows", "open_columns", "check_rl_files", "check_completion_files",
           "check_prompt_files", "check_prompt_lengths", "check_completion_lengths", "unknown_source_problems"]

_FIRST_ROWS = 3  # rows named in a warning about some None ground truths


@dataclass
class PromptRows:
    """Prompts collected for the length check: the message lists and where each came from."""

    messages: list[list[dict[str, str]]] = field(default_factory=list)
    where: list[tuple[str, int]] = field(default_factory=list)  # (file, row in file)


@dataclass
class DataFindings:
    """What the checks of one config key's files found."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows: int = 0
    prompts: PromptRows = field(default_factory=PromptRows)
    sources: dict[str, tuple[int, str]] = field(default_factory=dict)  # data_source -> (rows, first "file row i")
    none_truths: list[str] = field(default_factory=list)  # "file row i" of rows whose ground truth is None
    none_truth_count: int = 0
    truth_rows: int = 0  # rows whose reward_model cell is a dict with a ground_truth key
    completions: list[tuple[Any, ...]] = field(default_factory=list)  # offline: (prompt, content, ...) per row


class _Tally:
    """First failure and count per check of one file, so a file with 10k bad rows gives one line."""

    def __init__(self) -> None:
        self.first: dict[str, str] = {}
        self.count: dict[str, int] = {}

    def add(self, check: str, message: str) -> None:
        self.first.setdefault(check, message)
        self.count[check] = self.count.get(check, 0) + 1

    def emit(self, out: list[str], key: str, rows: int) -> None:
        for check, message in self.first.items():
            n = self.count[check]
            out.append(f"{key}: {message}" + (f" ({n} of {rows} rows in this file)" if n > 1 else ""))


def open_columns(key: str, files: Sequence[str], required: Sequence[str], optional: Sequence[str],
                 out: DataFindings, alternatives: Callable[[list[str]], list[str] | None] | None = None
                 ) -> list[ParquetTable]:
    """Each local file as a one-file :class:`ParquetTable` of the needed columns; problems recorded.

    A file that is not parquet, is corrupt, has no rows or lacks a required column is a problem
    naming it. ``alternatives(columns)`` may return another required set (a second layout) when the
    first is not all there. Remote files (``hf://``, ``s3://``) are skipped with a warning.
    """
    import pyarrow.parquet as pq  # noqa: PLC0415

    try:
        paths = expand_data_files(list(files))
    except (FileNotFoundError, ValueError) as err:
        out.problems.append(f"{key}: {err}")
        return []
    tables = []
    for path in paths:
        if "://" in path:
            out.warnings.append(f"{key}: {path} is remote; its rows are checked when the dataset loads, not now")
            continue
        try:
            parquet = pq.ParquetFile(path)
            columns = list(parquet.schema_arrow.names)
            rows = parquet.metadata.num_rows
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a bad file
            hint = " (relift reads parquet; convert it, e.g. pandas.read_json(f, lines=True).to_parquet(...))" \
                if path.endswith((".jsonl", ".json", ".csv")) else ""
            out.problems.append(f"{key}: {path} is not a readable parquet file{hint}: {type(err).__name__}: "
                                f"{str(err)[:200]}")
            continue
        if rows == 0:
            out.problems.append(f"{key}: {path} has no rows")
            continue
        need = list(required)
        if alternatives is not None and any(c not in columns for c in need):
            need = alternatives(columns) or need
        missing = [c for c in need if c not in columns]
        if missing:
            out.problems.append(f"{key}: {path} has no column {', '.join(repr(m) for m in missing)} (columns there: "
                                f"{', '.join(columns)})")
            continue
        wanted = list(dict.fromkeys([*need, *(c for c in optional if c in columns)]))
        try:
            arrow = read_parquet_table(path, wanted)
        except Exception as err:  # noqa: BLE001 - a corrupt page is found only when it is read
            out.problems.append(f"{key}: {path} cannot be read: {type(err).__name__}: {str(err)[:200]}")
            continue
        tables.append(ParquetTable(tables=[arrow], files=[path]))
        out.rows += rows
    return tables


def _prompt_messages(cell: Any, column: str, where: str, tokenizer: Any, strings_are_user: bool
                     ) -> list[dict[str, str]]:
    """The prompt as the datasets read it; ValueError naming the row otherwise."""
    if isinstance(cell, str):
        if strings_are_user or templated_text(cell, tokenizer) is not None or tokenizer is None:
            return [{"role": "user", "content": cell}]
    return as_messages(cell, column, where)


def check_rl_files(key: str, files: Sequence[str], *, prompt_key: str, source_key: str, target_key: str | None,
                   tokenizer: Any = None, reward_model_key: str = "reward_model") -> DataFindings:
    """Read every row of RL prompt files as :class:`relift.data.RLDataset` does (prompt, data_source,
    reward_model with ground_truth, extra_info, target); tally sources and None ground truths."""
    out = DataFindings()
    optional = ["extra_info"] + ([target_key] if target_key else [])
    for table in open_columns(key, files, [prompt_key, source_key, reward_model_key], optional, out):
        tally, unsure = _Tally(), _Tally()
        has_extra, has_target = "extra_info" in table.columns, bool(target_key) and target_key in table.columns
        path = table.files[0]
        for row in range(len(table)):
            where = table.origin(row)
            try:
                cell = table.cell(row, prompt_key)
                if tokenizer is None and isinstance(cell, str) and templated_text(cell) is None:
                    unsure.add(prompt_key, f"{where}: column {prompt_key!r} is a plain string; the RL dataset takes "
                                           "a string only when it holds the tokenizer's chat-template tokens "
                                           "(not confirmed: no tokenizer at plan time)")
                messages = _prompt_messages(cell, prompt_key, where, tokenizer, False)
                out.prompts.messages.append(messages)
                out.prompts.where.append((path, row))
            except ValueError as err:
                tally.add(prompt_key, str(err))
            source = table.cell(row, source_key)
            if not isinstance(source, str) or not source:
                tally.add(source_key, f"{where}: column {source_key!r} must be a non-empty string, got "
                                      f"{type(source).__name__}: {source!r}")
            else:
                n, first = out.sources.get(source, (0, where))
                out.sources[source] = (n + 1, first)
            try:
                reward_model = as_dict(table.cell(row, reward_model_key), reward_model_key, where,
                                       required_keys=("ground_truth",))
                out.truth_rows += 1
                if reward_model["ground_truth"] is None:
                    out.none_truth_count += 1
                    if len(out.none_truths) < _FIRST_ROWS:
                        out.none_truths.append(where)
            except ValueError as err:
                tally.add(reward_model_key, str(err))
            if has_extra:
                try:
                    as_dict(table.cell(row, "extra_info"), "extra_info", where, allow_none=True)
                except ValueError as err:
                    tally.add("extra_info", str(err))
            if has_target:
                try:
                    as_text(table.cell(row, target_key), target_key, where, allow_none=True)
                except ValueError as err:
                    tally.add(target_key, str(err))
        tally.emit(out.problems, key, len(table))
        unsure.emit(out.warnings, key, len(table))
    return out


def unknown_source_problems(key: str, sources: dict[str, tuple[int, str]], known: Sequence[str],
                            get_fn: Callable[[str], Any], source_key: str = "data_source",
                            max_lines: int = 5) -> list[str]:
    """One line per ``data_source`` value that no scorer handles (``get_fn`` raises KeyError), the first
    ``max_lines`` of them, then one line counting the rest."""
    unknown = []
    for source, (n, first) in sources.items():
        try:
            get_fn(source)
        except KeyError:
            unknown.append((source, n, first))
    lines = []
    for source, n, first in unknown[:max_lines]:
        close = difflib.get_close_matches(source, list(known), n=3)
        hint = f"; close known names: {', '.join(close)}" if close else ""
        lines.append(f"{key}: {first}: column {source_key!r} is {source!r}, which no reward function scores "
                     f"({n} row{'s' if n != 1 else ''}){hint}; register one with "
                     f"@relift.rewards.register_reward({source!r}) or set reward.custom_reward_function.path "
                     f"(known sources: relift/rewards/registry.py)")
    if len(unknown) > max_lines:
        rest = unknown[max_lines:]
        lines.append(f"{key}: {len(rest)} more {source_key!r} values have no reward function "
                     f"({sum(n for _, n, _ in rest)} rows), e.g. {', '.join(repr(s) for s, _, _ in rest[:3])}")
    return lines


def check_completion_files(key: str, files: Sequence[str], *, kind: str, prompt_key: str,
                           completion_keys: Sequence[str], messages_key: str | None = None,
                           read_row: Callable[[ParquetTable, int, str], Any] | None = None) -> DataFindings:
    """Read every row of SFT (``kind='sft'``) or pair files with the datasets' own row readers.

    ``read_row(table, row, layout)`` is :func:`relift.data.completion_rows.read_sft_row` or
    ``read_pair_row`` with the column names bound; it raises ValueError naming the row.
    """
    from relift.data.completion_rows import check_layout_columns  # noqa: PLC0415

    out = DataFindings()
    optional = [prompt_key, *([messages_key] if messages_key else [])]

    def layout_columns(columns: list[str]) -> list[str] | None:
        if messages_key and messages_key in columns:
            return [messages_key]
        return None

    for table in open_columns(key, files, list(completion_keys), optional, out, alternatives=layout_columns):
        try:
            layout = check_layout_columns(table, prompt_key, list(completion_keys), f"{kind} data",
                                          messages_key=messages_key)
        except KeyError as err:
            out.problems.append(f"{key}: {str(err).strip(chr(34))}")
            continue
        tally = _Tally()
        for row in range(len(table)):
            try:
                out.completions.append(read_row(table, row, layout))
                out.prompts.where.append((table.files[0], row))
            except ValueError as err:
                message = str(err)
                column = next((c for c in (prompt_key, *completion_keys, messages_key or "")
                               if c and f"column {c!r}" in message), "row")
                tally.add(column, message)
        tally.emit(out.problems, key, len(table))
    return out


def check_prompt_files(key: str, files: Sequence[str], prompt_key: str) -> DataFindings:
    """Generation prompts: a string (one user message) or a message list on every row."""
    out = DataFindings()
    for table in open_columns(key, files, [prompt_key], [], out):
        tally = _Tally()
        for row in range(len(table)):
            where = table.origin(row)
            try:
                out.prompts.messages.append(_prompt_messages(table.cell(row, prompt_key), prompt_key, where, None,
                                                             True))
                out.prompts.where.append((table.files[0], row))
            except ValueError as err:
                tally.add(prompt_key, str(err))
        tally.emit(out.problems, key, len(table))
    return out


def check_prompt_lengths(key: str, prompts: PromptRows, tokenizer: Any, *, limit: int, truncation: str,
                         apply_chat_template: bool, prompt_key: str, limit_key: str = "data.max_prompt_length",
                         truncation_key: str = "data.truncation", fixes: str = "filter|left|right",
                         out: DataFindings) -> None:
    """Render every prompt as the dataset does, count its tokens, apply the over-long policy.

    ``error``: a problem naming the first over-long row (file, row, length, limit) and the count;
    ``filter``: a warning with the count (a problem when no row would be left); ``left``/``right``:
    a warning that the prompts will be cut.
    """
    from relift.data.common import render_prompt, token_lengths  # noqa: PLC0415

    if not prompts.messages:
        return
    try:
        texts = [render_prompt(tokenizer, m, apply_chat_template) for m in prompts.messages]
    except ValueError as err:  # e.g. the tokenizer has no chat template
        out.problems.append(f"{key}: {err}")
        return
    lengths = token_lengths(tokenizer, texts, desc=f"{key}: measuring prompts")
    over = [i for i, n in enumerate(lengths) if n > limit]
    if not over:
        return
    total, first = len(lengths), over[0]
    path, row = prompts.where[first]
    what = f"{len(over)} of {total} prompts are over {limit_key}={limit}"
    if truncation == "error":
        out.problems.append(f"{key}: {path} row {row}: the prompt (column {prompt_key!r} after the chat template) "
                            f"is {lengths[first]} tokens, over {limit_key}={limit} ({len(over)} of {total} rows "
                            f"are over); raise {limit_key} or set {truncation_key}={fixes}")
    elif truncation == "filter":
        if len(over) == total:
            out.problems.append(f"{key}: every prompt is over {limit_key}={limit} (the shortest is {min(lengths)} "
                                f"tokens); {truncation_key}=filter would leave no rows")
        else:
            out.warnings.append(f"{key}: {what} and will be dropped ({truncation_key}=filter; first: {path} "
                                f"row {row}, {lengths[first]} tokens)")
    else:
        out.warnings.append(f"{key}: {what} and will be cut ({truncation_key}={truncation})")


def check_completion_lengths(key: str, found: DataFindings, tokenizer: Any, *, limit: int, truncation: str,
                             apply_chat_template: bool, sides: Sequence[str], out: DataFindings) -> None:
    """SFT / pair rows: prompt + completion (+ the template's end-of-turn) + EOS against ``data.max_length``,
    counted as :class:`relift.data.SFTDataset` / ``PairDataset`` count them; policy as for prompts."""
    from relift.data.common import token_lengths  # noqa: PLC0415
    from relift.data.completion_rows import prompt_text_of, render_completion  # noqa: PLC0415

    if not found.completions or truncation in ("left", "right"):
        return
    prompts: list[str] = []
    texts: list[list[str]] = [[] for _ in sides]
    try:
        for (prompt, *contents), (path, row) in zip(found.completions, found.prompts.where):
            text = prompt_text_of(tokenizer, prompt, apply_chat_template)
            prompts.append(text)
            for k, content in enumerate(contents):
                texts[k].append(render_completion(tokenizer, prompt, text, content, apply_chat_template,
                                                  f"{path} row {row}"))
    except ValueError as err:
        out.problems.append(f"{key}: {err}")
        return
    p_len = token_lengths(tokenizer, prompts, desc=f"{key}: measuring prompts")
    eos = tokenizer.eos_token
    total = len(prompts)
    keep = [True] * total
    for side, side_texts in zip(sides, texts):
        lengths = [p + c + (0 if t.endswith(eos) else 1)
                   for p, c, t in zip(p_len, token_lengths(tokenizer, side_texts, desc=f"{key}: measuring {side}"),
                                      side_texts)]
        over = [i for i, n in enumerate(lengths) if n > limit]
        for i in over:
            keep[i] = False
        if over and truncation == "error":
            path, row = found.prompts.where[over[0]]
            out.problems.append(f"{key}: {path} row {row}: prompt + {side} + EOS is {lengths[over[0]]} tokens, over "
                                f"data.max_length={limit} ({len(over)} of {total} rows are over); raise "
                                "data.max_length or set data.truncation=filter|left|right")
    dropped = total - sum(keep)
    if truncation == "filter" and dropped == total:
        out.problems.append(f"{key}: every row is over data.max_length={limit}; data.truncation=filter would "
                            "leave no rows")
    elif truncation == "filter" and dropped:
        out.warnings.append(f"{key}: {dropped} of {total} rows are over data.max_length={limit} and will be "
                            "dropped (data.truncation=filter)")
