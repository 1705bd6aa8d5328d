"""The preference-pair dataset (REDI, DPO, SimPO): one prompt, a chosen and a rejected completion.

Columns (names configurable): ``prompt_key`` (chat messages or a string, rendered as in the SFT
dataset), ``chosen_key`` and ``rejected_key`` (strings or assistant messages); or, without a prompt
column, ``chosen``/``rejected`` as whole conversations ([user, assistant], the REDI repo's and TRL's
conversational layout) whose shared leading turns are the prompt (see
:mod:`relift.data.completion_rows`). Each side is prompt + completion (with the template's
end-of-turn) + EOS, right-padded to ``max_length``, so a worker can stack chosen and rejected into
one forward pass.

An item: ``chosen_input_ids``, ``chosen_attention_mask``, ``chosen_position_ids``,
``chosen_loss_mask`` and the same four ``rejected_*`` tensors (each ``[max_length]``; loss masks
are 1 on completion tokens incl. EOS, aligned with the ids), plus the non-tensor ``index``.
``truncation`` as in the SFT dataset; ``filter`` drops the pair when either side is too long.
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
    read_pair_row,
    render_completion,
)
from relift.data.io import ParquetTable

__all__ = ["PairDataConfig", "PairDataset"]

logger = logging.getLogger(__name__)

SIDES = ("chosen", "rejected")


@dataclass
class PairDataConfig:
    """The ``data.*`` keys the pair dataset reads (other keys in the config are ignored)."""

    prompt_key: str = "prompt"
    chosen_key: str = "chosen"
    rejected_key: str = "rejected"
    max_length: int = 1024
    truncation: str = "error"
    apply_chat_template: bool = True


class PairDataset(Dataset):
    """(prompt, chosen, rejected) rows, validated and length-checked at load."""

    def __init__(self, data_files: str | os.PathLike | Iterable[str | os.PathLike], tokenizer: Any,
                 config: Any = None, **overrides: Any) -> None:
        self.config = cfg = config_from_mapping(PairDataConfig, config, **overrides)
        self.table: ParquetTable = open_completion_table(data_files, tokenizer, cfg.max_length, cfg.truncation,
                                                         [], "preference-pair dataset")
        self.layout = check_layout_columns(self.table, cfg.prompt_key, [cfg.chosen_key, cfg.rejected_key],
                                           "preference-pair dataset")
        self.tokenizer = tokenizer
        self.pad_id = int(tokenizer.pad_token_id)
        self.eos_id = int(tokenizer.eos_token_id)

        n = len(self.table)
        texts = [self._texts(i) for i in range(n)]
        p_len = token_lengths(tokenizer, [t[0] for t in texts], desc="measuring prompts")
        kept = list(range(n))
        self.num_filtered = 0
        for k, side in enumerate(SIDES, start=1):
            c_len = token_lengths(tokenizer, [t[k] for t in texts], desc=f"measuring {side}")
            eos = [0 if texts[i][k].endswith(tokenizer.eos_token) else 1 for i in range(n)]
            lengths = [p_len[i] + c_len[i] + eos[i] for i in kept]
            pos, dropped = select_within_limit(lengths, cfg.max_length, cfg.truncation, self.table.origin,
                                               f"prompt + {side} + EOS", rows=kept)
            if dropped:
                logger.warning("dropped %d pairs whose %s sequence is longer than max_length=%d", dropped, side,
                               cfg.max_length)
            self.num_filtered += dropped
            kept = [kept[i] for i in pos]
        if not kept:
            raise ValueError(f"no pairs left in {self.table.files} (max_length={cfg.max_length})")
        self._rows = kept

    def _texts(self, row: int) -> tuple[str, str, str]:
        """(rendered prompt, chosen text, rejected text); completions hold the template's end-of-turn."""
        cfg = self.config
        where = self.table.origin(row)
        prompt, chosen, rejected = read_pair_row(self.table, row, self.layout, cfg.prompt_key, cfg.chosen_key,
                                                 cfg.rejected_key)
        text = prompt_text_of(self.tokenizer, prompt, cfg.apply_chat_template)
        return (text, render_completion(self.tokenizer, prompt, text, chosen, cfg.apply_chat_template, where),
                render_completion(self.tokenizer, prompt, text, rejected, cfg.apply_chat_template, where))

    def __len__(self) -> int:
        return len(self._rows)

    def source_row(self, idx: int) -> str:
        return self.table.origin(self._rows[idx])

    def __getitem__(self, idx: int) -> dict[str, Any]:
        row = self._rows[idx]
        prompt, *completions = self._texts(row)
        prompt_ids = encode(self.tokenizer, prompt)
        item: dict[str, Any] = {}
        for side, text in zip(SIDES, completions):
            seq = build_completion_sequence(prompt_ids, completion_ids(self.tokenizer, text),
                                            self.config.max_length, self.config.truncation, self.pad_id)
            item.update({f"{side}_{k}": v for k, v in seq.items()})
        item["index"] = row
        return item
