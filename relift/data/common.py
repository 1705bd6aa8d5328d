"""Tokenisation helpers shared by the RL, SFT and pair datasets.

Conventions (the same as verl): a chat is rendered to text with the tokenizer's chat template and
``add_generation_prompt=True``, then encoded with ``add_special_tokens=False`` (the template already
holds any special tokens); a completion is its text followed by the EOS token.

Datasets measure every row's length once at load (batch-encoding, lengths kept, ids dropped, so a
large dataset costs no memory) to apply the truncation policy before training starts, and encode a
row again when it is fetched.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

__all__ = [
    "TRUNCATION_MODES",
    "config_from_mapping",
    "render_prompt",
    "encode",
    "token_lengths",
    "check_truncation",
    "select_within_limit",
    "truncate",
    "pad_1d",
    "position_ids_from_mask",
    "build_completion_sequence",
]

logger = logging.getLogger(__name__)

TRUNCATION_MODES = ("error", "left", "right", "filter")

T = TypeVar("T")


def config_from_mapping(cls: type[T], config: Any = None, **overrides: Any) -> T:
    """Build the dataclass ``cls`` from a dict / DictConfig / dataclass, ignoring unrelated keys.

    A data config holds more keys than one dataset uses (batch sizes, file lists), so unknown keys
    are skipped; ``overrides`` must all be known fields (a typo there is an error).
    """
    if config is None:
        values: dict[str, Any] = {}
    elif isinstance(config, cls):
        values = dataclasses.asdict(config)
    elif dataclasses.is_dataclass(config):
        values = dataclasses.asdict(config)
    else:
        from omegaconf import DictConfig, OmegaConf

        if not isinstance(config, (Mapping, DictConfig)):
            raise TypeError(f"{cls.__name__}: config must be a mapping or dataclass, got {type(config).__name__}")
        # read only our keys, so an unrelated key that does not resolve cannot break the dataset
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in config:
                value = config[f.name]
                values[f.name] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no option(s) {unknown}; known options: {sorted(names)}")
    values = {k: v for k, v in values.items() if k in names}
    values.update(overrides)
    return cls(**values)


def render_prompt(tokenizer: Any, messages: list[dict[str, str]], apply_chat_template: bool = True) -> str:
    """The prompt text the model sees: chat template + generation prompt, or the plain fallback.

    Plain fallback (``apply_chat_template=False``): the message contents joined by newlines, for
    base models without a template or data whose content is already templated.
    A prompt that already holds chat-template tokens is returned as is either way
    (:mod:`relift.data.templated`).
    """
    from relift.data.templated import templated_text  # noqa: PLC0415

    already = templated_text(messages, tokenizer)
    if already is not None:
        return already
    if not apply_chat_template:
        return "\n".join(m["content"] for m in messages)
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        raise ValueError(f"tokenizer {name!r} has no chat template; use a tokenizer that has one, or set "
                         f"apply_chat_template=false (data.apply_chat_template=false) to join the message "
                         f"contents with newlines instead")
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without added special tokens."""
    return list(tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"])


def token_lengths(tokenizer: Any, texts: Sequence[str], batch_size: int = 1024, desc: str | None = None) -> list[int]:
    """Lengths of many texts, encoded in batches (the fast tokenizer runs each batch in parallel)."""
    out: list[int] = []
    starts = range(0, len(texts), batch_size)
    for s in tqdm(starts, desc=desc, disable=len(texts) <= 4 * batch_size or desc is None, leave=False):
        chunk = list(texts[s:s + batch_size])
        if not chunk:
            continue
        ids = tokenizer(chunk, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
        out.extend(len(x) for x in ids)
    return out


def open_completion_table(data_files: Any, tokenizer: Any, max_length: int, truncation: str,
                          columns: Sequence[str], what: str) -> Any:
    """The checks a prompt + completion dataset (SFT, preference pairs) makes, then its parquet table.

    Fails early, before any row is tokenised: a non-positive ``max_length``, an unknown truncation
    mode, a tokenizer without pad/eos tokens (sequences end in EOS and pad with pad), missing columns.
    """
    from relift.data.io import read_parquet_files  # noqa: PLC0415

    if max_length <= 0:
        raise ValueError(f"max_length must be positive, got {max_length}")
    check_truncation(truncation)
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("tokenizer needs pad and eos tokens; load it with relift.models.loading.load_tokenizer")
    table = read_parquet_files(data_files)
    table.require_columns(list(columns), what)
    return table


def check_truncation(mode: str, allowed: Sequence[str] = TRUNCATION_MODES, key: str = "truncation") -> str:
    if mode not in allowed:
        raise ValueError(f"{key} must be one of {list(allowed)}, got {mode!r}")
    return mode


def select_within_limit(lengths: Sequence[int], limit: int, mode: str, origin: Callable[[int], str],
                        what: str, rows: Sequence[int] | None = None) -> tuple[list[int], int]:
    """Apply the overlong-row policy; return (kept positions, number dropped).

    ``error`` raises naming the first overlong row (file, row in file, length vs limit) and how many
    rows are over; ``filter`` drops them; ``left``/``right`` keep every row (truncated when fetched).
    ``rows`` maps positions to global row numbers for ``origin``.
    """
    over = [i for i, n in enumerate(lengths) if n > limit]
    if not over or mode in ("left", "right"):
        return list(range(len(lengths))), 0
    if mode == "error":
        first = over[0]
        row = rows[first] if rows is not None else first
        raise ValueError(f"{origin(row)}: {what} is {lengths[first]} tokens, over the limit of {limit} "
                         f"({len(over)} of {len(lengths)} rows are over); raise the limit or set truncation to "
                         f"'filter', 'left' or 'right'")
    over_set = set(over)
    kept = [i for i in range(len(lengths)) if i not in over_set]
    return kept, len(over)


def truncate(ids: list[int], limit: int, side: str) -> list[int]:
    """Keep ``limit`` tokens: ``left`` drops from the start (keeps the end), ``right`` from the end."""
    if len(ids) <= limit:
        return ids
    return ids[len(ids) - limit:] if side == "left" else ids[:limit]


def pad_1d(ids: list[int], length: int, pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask) padded to ``length`` on ``side``; both int64."""
    if len(ids) > length:
        raise ValueError(f"sequence of {len(ids)} tokens does not fit in {length}")
    n_pad = length - len(ids)
    t = torch.full((length,), pad_id, dtype=torch.long)
    m = torch.zeros(length, dtype=torch.long)
    if side == "left":
        t[n_pad:] = torch.tensor(ids, dtype=torch.long)
        m[n_pad:] = 1
    else:
        t[:len(ids)] = torch.tensor(ids, dtype=torch.long)
        m[:len(ids)] = 1
    return t, m


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """``cumsum(mask) - 1`` clamped at 0: real tokens count from 0 whichever side the padding is."""
    return (torch.cumsum(mask, dim=-1) - 1).clamp(min=0)


def build_completion_sequence(prompt_ids: list[int], response_ids: list[int], max_length: int, truncation: str,
                              pad_id: int) -> dict[str, torch.Tensor]:
    """prompt + response, right-padded to ``max_length``, with a loss mask on the response tokens.

    ``loss_mask[t] = 1`` where token t is a response token (EOS included); it is aligned with
    ``input_ids`` (not shifted): the loss on token t uses the logits at t-1.
    Over-long sequences are cut per ``truncation`` (``left`` drops from the start, ``right`` from
    the end); ``error``/``filter`` rows must have been handled at load.
    """
    ids = prompt_ids + response_ids
    is_resp = [0] * len(prompt_ids) + [1] * len(response_ids)
    if len(ids) > max_length:
        if truncation not in ("left", "right"):
            raise ValueError(f"sequence of {len(ids)} tokens is over max_length {max_length} "
                             f"(truncation={truncation!r})")
        ids = truncate(ids, max_length, truncation)
        is_resp = truncate(is_resp, max_length, truncation)
    input_ids, attention_mask = pad_1d(ids, max_length, pad_id, "right")
    loss_mask = torch.zeros(max_length, dtype=torch.long)
    loss_mask[:len(is_resp)] = torch.tensor(is_resp, dtype=torch.long)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids_from_mask(attention_mask),
        "loss_mask": loss_mask,
    }
