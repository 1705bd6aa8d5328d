"""The RL prompt dataset: parquet rows -> left-padded prompt tensors plus what the reward needs.

Row format (verl / ReLIFT): ``data_source: str``, ``prompt: [{"role", "content"}, ...]`` (or a string
that already holds chat-template tokens; such prompts, like Logic-RL's single ChatML message, are used
as is, see :mod:`relift.data.templated`),
``reward_model: {"style", "ground_truth"}``, optional ``extra_info: dict``, and for ReLIFT an optional
``target: [{"role": "assistant", "content": str}]`` demonstration (a plain string works too).

An item (see docs/data_keys.md) holds tensors ``input_ids``, ``attention_mask``, ``position_ids``
(length ``max_prompt_length``, left-padded) and, when the target column exists, ``tgt_input_ids`` /
``tgt_attention_mask`` (the demonstration text + EOS, right-padded to ``max_target_length``; a row
whose target is empty gets an all-zero mask) and the non-tensor ``target`` (the demonstration text,
None when empty); non-tensors ``data_source``, ``reward_model``,
``extra_info``, ``raw_prompt`` (the messages) and ``index`` (``extra_info["index"]`` if present,
else the row number).

Over-long prompts follow ``truncation``: ``error`` (default) stops at load naming the file, row and
length; ``filter`` (or ``filter_overlong_prompts: true``) drops them at load and logs how many;
``left`` keeps the end of the prompt (where the generation prompt is), ``right`` keeps the start.
Over-long targets follow ``target_truncation``: ``right`` (default: keep the start; the EOS is
cut, so the model is not taught to stop there), ``filter`` or ``error``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from relift.data.common import (
    check_truncation,
    config_from_mapping,
    encode,
    pad_1d,
    position_ids_from_mask,
    render_prompt,
    select_within_limit,
    token_lengths,
    truncate,
)
from relift.data.io import ParquetTable, as_dict, as_messages, as_text, read_parquet_files, to_python
from relift.data.templated import templated_text

__all__ = ["RLDataConfig", "RLDataset"]

logger = logging.getLogger(__name__)


@dataclass
class RLDataConfig:
    """The ``data.*`` keys the RL dataset reads (verl names; other keys in the config are ignored)."""

    prompt_key: str = "prompt"
    max_prompt_length: int = 1024
    truncation: str = "error"
    filter_overlong_prompts: bool = False
    # verl compatibility: raw_prompt is always returned, this flag changes nothing
    return_raw_chat: bool = True
    apply_chat_template: bool = True
    target_key: str | None = "target"
    # None -> max_response_length (a demonstration is a response); both None with a target column is an error
    max_target_length: int | None = None
    max_response_length: int | None = None
    target_truncation: str = "right"
    data_source_key: str = "data_source"
    reward_model_key: str = "reward_model"


class RLDataset(Dataset):
    """Prompts from one or many parquet files, validated and length-checked at load."""

    def __init__(self, data_files: str | os.PathLike | Iterable[str | os.PathLike], tokenizer: Any,
                 config: Any = None, **overrides: Any) -> None:
        self.config = cfg = config_from_mapping(RLDataConfig, config, **overrides)
        if cfg.max_prompt_length <= 0:
            raise ValueError(f"max_prompt_length must be positive, got {cfg.max_prompt_length}")
        check_truncation(cfg.truncation)
        check_truncation(cfg.target_truncation, ("error", "right", "filter"), key="target_truncation")
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad token; load it with relift.models.loading.load_tokenizer "
                             "(which sets pad = eos)")
        self.tokenizer = tokenizer
        self.pad_id = int(tokenizer.pad_token_id)
        self.table: ParquetTable = read_parquet_files(data_files)
        self.table.require_columns([cfg.prompt_key, cfg.data_source_key, cfg.reward_model_key], "RL prompt dataset")
        self.has_target = cfg.target_key is not None and cfg.target_key in self.table.columns

        n = len(self.table)
        texts = [render_prompt(tokenizer, self._row_fields(i)["raw_prompt"], cfg.apply_chat_template)
                 for i in range(n)]
        lengths = token_lengths(tokenizer, texts, desc="measuring prompts")
        mode = "filter" if cfg.filter_overlong_prompts else cfg.truncation
        kept, dropped = select_within_limit(lengths, cfg.max_prompt_length, mode, self.table.origin,
                                            f"the prompt (column {cfg.prompt_key!r} after the chat template)")
        if dropped:
            logger.warning("dropped %d of %d prompts longer than max_prompt_length=%d", dropped, n,
                           cfg.max_prompt_length)
        self.num_filtered = dropped
        rows = kept

        self.max_target_length: int | None = None
        self.num_without_target = 0
        if self.has_target:
            rows = self._check_targets(rows)
        if not rows:
            raise ValueError(f"no rows left in {self.table.files} after the length checks "
                             f"(max_prompt_length={cfg.max_prompt_length})")
        self._rows = rows

    # ------------------------------------------------------------------ load-time checks
    def _row_fields(self, row: int) -> dict[str, Any]:
        """The validated non-tensor fields of one global row."""
        cfg = self.config
        where = self.table.origin(row)
        cell = to_python(self.table.cell(row, cfg.prompt_key))
        if isinstance(cell, str) and templated_text(cell, self.tokenizer) is not None:
            messages = [{"role": "user", "content": cell}]  # an already-templated string: rendered as is
        else:
            messages = as_messages(cell, cfg.prompt_key, where)
        data_source = self.table.cell(row, cfg.data_source_key)
        if not isinstance(data_source, str) or not data_source:
            raise ValueError(f"{where}: column {cfg.data_source_key!r} must be a non-empty string, "
                             f"got {type(data_source).__name__}: {data_source!r}")
        reward_model = as_dict(self.table.cell(row, cfg.reward_model_key), cfg.reward_model_key, where,
                               required_keys=("ground_truth",))
        extra_info = {}
        if "extra_info" in self.table.columns:
            extra_info = as_dict(self.table.cell(row, "extra_info"), "extra_info", where, allow_none=True)
        index = extra_info.get("index", row)
        return {"data_source": data_source, "reward_model": reward_model, "extra_info": extra_info,
                "raw_prompt": messages, "index": index}

    def _target_text(self, row: int) -> str | None:
        key = self.config.target_key
        text = as_text(self.table.cell(row, key), key, self.table.origin(row), allow_none=True)
        return text if text else None

    def _check_targets(self, rows: list[int]) -> list[int]:
        cfg = self.config
        limit = cfg.max_target_length if cfg.max_target_length is not None else cfg.max_response_length
        if limit is None or limit <= 0:
            raise ValueError(f"the data has a {cfg.target_key!r} column (ReLIFT demonstrations) but neither "
                             f"max_target_length nor max_response_length is set to a positive number")
        if self.tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos token, which ends every target demonstration")
        self.max_target_length = int(limit)
        texts = [self._target_text(r) for r in rows]
        present = [i for i, t in enumerate(texts) if t is not None]
        self.num_without_target = len(rows) - len(present)
        if self.num_without_target:
            logger.warning("%d of %d rows have an empty %r column (no demonstration)", self.num_without_target,
                           len(rows), cfg.target_key)
        lengths = [0] * len(rows)
        for i, n in zip(present, token_lengths(self.tokenizer, [texts[i] for i in present],
                                               desc="measuring targets")):
            lengths[i] = n + 1  # + EOS
        kept, dropped = select_within_limit(lengths, self.max_target_length, cfg.target_truncation,
                                            self.table.origin, f"the target (column {cfg.target_key!r} + EOS)",
                                            rows=rows)
        over = sum(n > self.max_target_length for n in lengths)
        if dropped:
            logger.warning("dropped %d rows whose target is longer than max_target_length=%d", dropped,
                           self.max_target_length)
        elif over:
            logger.warning("%d targets are longer than max_target_length=%d and will be cut on the right", over,
                           self.max_target_length)
        self.num_filtered += dropped
        return [rows[i] for i in kept]

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._rows)

    def source_row(self, idx: int) -> str:
        """Where dataset item ``idx`` comes from (``'<file> row <i>'``)."""
        return self.table.origin(self._rows[idx])

    def __getitem__(self, idx: int) -> dict[str, Any]:
        cfg = self.config
        row = self._rows[idx]
        item = self._row_fields(row)
        text = render_prompt(self.tokenizer, item["raw_prompt"], cfg.apply_chat_template)
        ids = encode(self.tokenizer, text)
        if len(ids) > cfg.max_prompt_length:
            if cfg.truncation not in ("left", "right"):  # the tokenizer changed since load: never silently
                raise ValueError(f"{self.table.origin(row)}: prompt is {len(ids)} tokens, over "
                                 f"max_prompt_length={cfg.max_prompt_length}")
            ids = truncate(ids, cfg.max_prompt_length, cfg.truncation)
        input_ids, attention_mask = pad_1d(ids, cfg.max_prompt_length, self.pad_id, "left")
        out: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids_from_mask(attention_mask),
        }
        if self.has_target:
            assert self.max_target_length is not None
            target = self._target_text(row)
            tgt = [] if target is None else encode(self.tokenizer, target) + [int(self.tokenizer.eos_token_id)]
            tgt = truncate(tgt, self.max_target_length, "right")
            out["tgt_input_ids"], out["tgt_attention_mask"] = pad_1d(tgt, self.max_target_length, self.pad_id,
                                                                     "right")
            # the demonstration text itself, untruncated (None: the row has none), for ReLIFT's buffer,
            # which tokenises it after the prompt with the chat template (relift/data/demonstrations.py)
            out["target"] = target
        out.update(item)
        return out

    def __repr__(self) -> str:
        return (f"RLDataset(rows={len(self)}, files={self.table.files}, max_prompt_length="
                f"{self.config.max_prompt_length}, target={self.has_target}, filtered={self.num_filtered})")
