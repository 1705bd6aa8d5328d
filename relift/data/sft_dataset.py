"""The SFT dataset: prompt + response sequences with a loss mask on the response only.

Columns (names configurable): ``prompt_key`` holds chat messages or a string (a string is sent as
one user message through the chat template, as verl's SFT dataset does; with
``apply_chat_template: false`` it is used as is), ``response_key`` holds a string or assistant
messages, e.g. ReLIFT's ``target`` column. Without a prompt column, ``messages_key`` (or
``response_key``) holds whole conversations: the leading turns are the prompt, the final assistant
turn the response (:mod:`relift.data.completion_rows` reads every layout). With the chat template
the response ends with the template's end-of-turn; EOS follows; both are trained.

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
    select_within_limit,
    token_lengths,
)
from relift.data.completion_rows import (
    check_layout_columns,
    completion_ids,
    prompt_text_of,
    read_sft_row,
    render_completion,
)
from relift.data.io import ParquetTable, as_messages, to_python

__all__ = ["SFTDataConfig", "SFTDataset", "prompt_messages"]

logger = logging.getLogger(__name__)


@dataclass
class SFTDataConfig:
    """The ``data.*`` keys the SFT dataset reads (other keys in the config are ignored)."""

    prompt_key: str = "prompt"
    response_key: str = "target"
    messages_key: str = "messages"  # conversations, read when there is no prompt column
    max_length: int = 1024
    truncation: str = "error"
    apply_chat_template: bool = True


def prompt_messages(value: Any, column: str, where: str) -> list[dict[str, str]]:
    """A prompt cell (messages or a plain string) as a list of messages."""
    value = to_python(value)
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return as_messages(value, column, where)


class SFTDataset(Dataset):
    """Demonstrations for supervised fine-tuning, validated and length-checked at load."""

    def __init__(self, data_files: str | os.PathLike | Iterable[str | os.PathLike], tokenizer: Any,
                 config: Any = None, **overrides: Any) -> None:
        self.config = cfg = config_from_mapping(SFTDataConfig, config, **overrides)
        self.table: ParquetTable = open_completion_table(data_files, tokenizer, cfg.max_length, cfg.truncation,
                                                         [], "SFT dataset")
        self.layout = check_layout_columns(self.table, cfg.prompt_key, [cfg.response_key], "SFT dataset",
                                           messages_key=cfg.messages_key)
        self.tokenizer = tokenizer
        self.pad_id = int(tokenizer.pad_token_id)
        self.eos_id = int(tokenizer.eos_token_id)

        n = len(self.table)
        prompts, responses = zip(*(self._texts(i) for i in range(n))) if n else ((), ())
        p_len = token_lengths(tokenizer, list(prompts), desc="measuring prompts")
        r_len = token_lengths(tokenizer, list(responses), desc="measuring responses")
        lengths = [p + r + (0 if text.endswith(tokenizer.eos_token) else 1)
                   for p, r, text in zip(p_len, r_len, responses)]
        kept, dropped = select_within_limit(lengths, cfg.max_length, cfg.truncation, self.table.origin,
                                            "prompt + response + EOS")
        if dropped:
            logger.warning("dropped %d of %d SFT rows longer than max_length=%d", dropped, n, cfg.max_length)
        self.num_filtered = dropped
        if not kept:
            raise ValueError(f"no rows left in {self.table.files} (max_length={cfg.max_length})")
        self._rows = kept

    def _texts(self, row: int) -> tuple[str, str]:
        """(rendered prompt, completion text incl. the template's end-of-turn; EOS not yet added)."""
        cfg = self.config
        prompt, content = read_sft_row(self.table, row, self.layout, cfg.prompt_key, cfg.response_key,
                                       cfg.messages_key)
        text = prompt_text_of(self.tokenizer, prompt, cfg.apply_chat_template)
        return text, render_completion(self.tokenizer, prompt, text, content, cfg.apply_chat_template,
                                       self.table.origin(row))

    def __len__(self) -> int:
        return len(self._rows)

    def source_row(self, idx: int) -> str:
        return self.table.origin(self._rows[idx])

    def __getitem__(self, idx: int) -> dict[str, Any]:
        row = self._rows[idx]
        prompt, response = self._texts(row)
        item: dict[str, Any] = build_completion_sequence(
            encode(self.tokenizer, prompt), completion_ids(self.tokenizer, response),
            self.config.max_length, self.config.truncation, self.pad_id)
        item["index"] = row
        return item
