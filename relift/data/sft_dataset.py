"""The SFT dataset: prompt + response sequences with a loss mask on the response only.

Columns (names configurable): ``prompt_key`` holds chat messages or a string (a string is sent as
one user message through the chat template, as verl's SFT dataset does; with
``apply_chat_template: false`` it is used as is), ``response_key`` holds a string or assistant
messages (their contents joined), e.g. ReLIFT's ``target`` column. The response is followed by EOS.

An item: ``input_ids``, ``attention_mask``, ``position_ids``, ``loss_mask`` (each ``[max_length]``,
right-padded), and the non-tensor ``index``. ``loss_mask`` is 1 on response tokens (EOS included)
and 0 on the prompt and padding; it is aligned with ``input_ids``, so the loss of token t uses the
logits at position t-1. ``truncation``: ``error`` | ``filter`` (checked at load, naming the row) |
``left`` (drop from the start of the prompt) | ``right`` (drop from the end of the response).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from relift.data.common import (
    build_completion_sequence,
    config_from_mapping,
    encode,
    open_completion_table,
    render_prompt,
    select_within_limit,
    token_lengths,
)
from relift.data.io import ParquetTable, as_messages, as_text, to_python

__all__ = ["SFTDataConfig", "SFTDataset", "prompt_messages"]

logger = logging.getLogger(__name__)


@dataclass
class SFTDataConfig:
    """The ``data.*`` keys the SFT dataset reads (other keys in the config are ignored)."""

    prompt_key: str = "prompt"
    response_key: str = "target"
    max_length: int = 1024
    truncation: str = "error"
    apply_chat_template: bool = True


def prompt_messages(value: Any, column: str, where: str) -> list[dict[str, str]]:
    """A prompt cell (messages or a plain string) as a list of messages."""
    value = to_python(value)
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return as_messages(value, column, where)


def prompt_text(tokenizer: Any, value: Any, column: str, where: str, apply_chat_template: bool) -> str:
    """The rendered prompt for a cell; a plain string passes through when no template is applied."""
    value = to_python(value)
    if isinstance(value, str) and not apply_chat_template:
        return value
    return render_prompt(tokenizer, prompt_messages(value, column, where), apply_chat_template)


class SFTDataset(Dataset):
    """Demonstrations for supervised fine-tuning, validated and length-checked at load."""

    def __init__(self, data_files: str | os.PathLike | Iterable[str | os.PathLike], tokenizer: Any,
                 config: Any = None, **overrides: Any) -> None:
        self.config = cfg = config_from_mapping(SFTDataConfig, config, **overrides)
        self.table: ParquetTable = open_completion_table(data_files, tokenizer, cfg.max_length, cfg.truncation,
                                                         [cfg.prompt_key, cfg.response_key], "SFT dataset")
        self.tokenizer = tokenizer
        self.pad_id = int(tokenizer.pad_token_id)
        self.eos_id = int(tokenizer.eos_token_id)

        n = len(self.table)
        prompts, responses = zip(*(self._texts(i) for i in range(n))) if n else ((), ())
        p_len = token_lengths(tokenizer, list(prompts), desc="measuring prompts")
        r_len = token_lengths(tokenizer, list(responses), desc="measuring responses")
        lengths = [p + r + 1 for p, r in zip(p_len, r_len)]
        kept, dropped = select_within_limit(lengths, cfg.max_length, cfg.truncation, self.table.origin,
                                            "prompt + response + EOS")
        if dropped:
            logger.warning("dropped %d of %d SFT rows longer than max_length=%d", dropped, n, cfg.max_length)
        self.num_filtered = dropped
        if not kept:
            raise ValueError(f"no rows left in {self.table.files} (max_length={cfg.max_length})")
        self._rows = kept

    def _texts(self, row: int) -> tuple[str, str]:
        cfg = self.config
        where = self.table.origin(row)
        prompt = prompt_text(self.tokenizer, self.table.cell(row, cfg.prompt_key), cfg.prompt_key, where,
                             cfg.apply_chat_template)
        response = as_text(self.table.cell(row, cfg.response_key), cfg.response_key, where)
        return prompt, response

    def __len__(self) -> int:
        return len(self._rows)

    def source_row(self, idx: int) -> str:
        return self.table.origin(self._rows[idx])

    def __getitem__(self, idx: int) -> dict[str, Any]:
        row = self._rows[idx]
        prompt, response = self._texts(row)
        item: dict[str, Any] = build_completion_sequence(
            encode(self.tokenizer, prompt), encode(self.tokenizer, response) + [self.eos_id],
            self.config.max_length, self.config.truncation, self.pad_id)
        item["index"] = row
        return item
