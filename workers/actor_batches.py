"""Row-layout helpers of the actor: required keys, response masks, micro-batch grouping, pair layout.

Rows use the rollout layout (docs/data_keys.md): ``input_ids`` = left-padded prompt of width P
followed by the right-padded response of width R, and ``responses`` = the response columns. A pair
row holds both sides under ``chosen_*`` / ``rejected_*`` prefixes, each in that layout; the two
sides are stacked into one batch so that a single forward pass scores both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import torch
from torch import nn

from relift.models.packing import contiguous_budget_partitions, token_budget_partitions
from relift.protocol import DataProto

__all__ = ["SEQ_KEYS", "micro_batch_groups", "pad_columns", "pair_keys", "pair_lengths", "pair_side",
           "require_keys", "response_mask", "seq_sum", "stack_sides", "supports_logits_to_keep"]

SEQ_KEYS = ("input_ids", "attention_mask", "position_ids", "responses")


def pad_columns(t: torch.Tensor, left: int, right: int, value: int | float = 0) -> torch.Tensor:
    """Pad the last dimension by ``left`` / ``right`` columns of ``value`` (no copy when both are 0)."""
    if left == 0 and right == 0:
        return t
    return torch.nn.functional.pad(t, (left, right), value=value)


def supports_logits_to_keep(module: nn.Module) -> bool:
    """Whether ``module.forward`` (or a simple wrapper's ``.module``) takes ``logits_to_keep``."""
    import inspect

    inner = getattr(module, "module", module)  # tolerate simple wrappers
    try:
        params = inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return False
    return "logits_to_keep" in params


def require_keys(data: DataProto, keys: tuple[str, ...] | list[str], what: str) -> None:
    """Raise a KeyError naming the missing batch keys (and the ones present) for ``what``."""
    have = set(data.batch.keys()) if data.batch is not None else set()
    missing = [k for k in keys if k not in have]
    if missing:
        raise KeyError(f"{what} needs batch key(s) {missing}; the DataProto has {sorted(have)}")


def response_mask(data: DataProto) -> torch.Tensor:
    """``response_mask`` if present, else the response columns of ``attention_mask``."""
    if "response_mask" in data.batch.keys():
        return data.batch["response_mask"]
    resp_len = data.batch["responses"].shape[1]
    return data.batch["attention_mask"][:, -resp_len:]


def micro_batch_groups(data: DataProto, use_dynamic: bool, micro_batch_size: int | None,
                       max_token_len: int | None, lengths: torch.Tensor | None = None,
                       sort_by_length: bool = False, prompt_groups: list[int] | None = None) -> list[list[int]]:
    """Row indices of each micro-batch: consecutive runs of ``micro_batch_size`` rows, or with
    ``use_dynamic`` the fewest groups whose ``lengths`` (default: attention-mask sums) fit
    ``max_token_len`` each. ``sort_by_length``: groups are runs of the rows ordered by length (ties
    by index) so each micro-batch, trimmed to its own longest prompt and response, carries less
    padding (token-budget runs are as even as their count allows; unsorted, the budget groups are
    LPT-balanced over all rows); the summed loss and its gradient are the same. With
    ``prompt_groups`` (a group id per row: rows with the same prompt) the order keeps each group's
    rows together (groups by their shortest row, rows by length inside), so prompt sharing still
    finds its repeats in every micro-batch."""
    n = len(data)
    if n == 0:
        return []
    if lengths is None and (use_dynamic or (sort_by_length and micro_batch_size and micro_batch_size < n)):
        lengths = data.batch["attention_mask"].sum(dim=-1)
    if use_dynamic:
        if not max_token_len or max_token_len <= 0:
            raise ValueError("use_dynamic_bsz needs a positive max token length per micro-batch")
        if sort_by_length:  # consecutive runs of the length order: similar lengths, prompt groups kept
            return contiguous_budget_partitions(lengths.tolist(), int(max_token_len),
                                                _length_order(lengths, prompt_groups))
        return token_budget_partitions(lengths.tolist(), int(max_token_len))
    if not micro_batch_size or micro_batch_size <= 0:
        raise ValueError(f"micro-batch size must be positive, got {micro_batch_size}")
    if sort_by_length and micro_batch_size < n:
        order = _length_order(lengths, prompt_groups)
        return [sorted(order[s:s + micro_batch_size]) for s in range(0, n, micro_batch_size)]
    return [list(range(s, min(s + micro_batch_size, n))) for s in range(0, n, micro_batch_size)]


def _length_order(lengths: torch.Tensor, prompt_groups: list[int] | None) -> list[int]:
    """Rows by length (ties by index); with ``prompt_groups``, each group's rows side by side
    (groups by their shortest row, rows by length inside)."""
    lens = [int(x) for x in lengths.tolist()]
    if prompt_groups is None:
        return sorted(range(len(lens)), key=lambda i: (lens[i], i))
    shortest: dict[int, tuple[int, int]] = {}
    for i, g in enumerate(prompt_groups):
        shortest[g] = min(shortest.get(g, (lens[i], i)), (lens[i], i))
    return sorted(range(len(lens)), key=lambda i: (shortest[prompt_groups[i]], lens[i], i))


# ---------------------------------------------------------------------------------------- pairs


def pair_side(batch: Mapping[str, torch.Tensor], side: str) -> dict[str, torch.Tensor]:
    """The ``side`` (chosen / rejected) columns of a pair batch, unprefixed, with its response mask."""
    out = {k: batch[f"{side}_{k}"] for k in SEQ_KEYS}
    mask_key = f"{side}_response_mask"
    resp_len = out["responses"].shape[1]
    out["response_mask"] = batch[mask_key] if mask_key in batch.keys() else out["attention_mask"][:, -resp_len:]
    return out


def stack_sides(chosen: dict[str, torch.Tensor], rejected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Both sides as one batch [2b, P + R] (prompts left-padded, responses right-padded to fit)."""
    p_c = chosen["input_ids"].shape[1] - chosen["responses"].shape[1]
    p_r = rejected["input_ids"].shape[1] - rejected["responses"].shape[1]
    r_c, r_r = chosen["responses"].shape[1], rejected["responses"].shape[1]
    p_max, r_max = max(p_c, p_r), max(r_c, r_r)
    parts: dict[str, list[torch.Tensor]] = defaultdict(list)
    for side, p, r in ((chosen, p_c, r_c), (rejected, p_r, r_r)):
        lp, rp = p_max - p, r_max - r
        for key in ("input_ids", "attention_mask", "position_ids"):
            t = side[key]
            prompt, resp = t[..., :p], t[..., p:]
            parts[key].append(torch.cat([pad_columns(prompt, lp, 0), pad_columns(resp, 0, rp)], dim=-1))
        parts["responses"].append(pad_columns(side["responses"], 0, rp))
    return {k: torch.cat(v, dim=0) for k, v in parts.items()}


def pair_lengths(data: DataProto) -> torch.Tensor:
    """Tokens of a pair row (both sides), the size the token budget of a micro-batch counts."""
    return data.batch["chosen_attention_mask"].sum(-1) + data.batch["rejected_attention_mask"].sum(-1)


def pair_keys(data: DataProto, extra: tuple[str, ...] = ()) -> list[str]:
    """The batch keys a pair pass reads (raises naming the missing ones), optional masks included."""
    keys = [f"{side}_{k}" for side in ("chosen", "rejected") for k in SEQ_KEYS]
    require_keys(data, keys + list(extra), "pair update")
    have = set(data.batch.keys())
    keys += [k for k in ("chosen_response_mask", "rejected_response_mask") if k in have]
    return keys + list(extra)


def seq_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence sums [B] of per-token values [B, R] over ``mask``; a [B] input is taken as is."""
    if values.dim() == 1:
        return values.to(torch.float32)
    if values.shape != mask.shape:
        raise ValueError(f"reference log-probs of shape {tuple(values.shape)} do not match the response "
                         f"mask {tuple(mask.shape)}")
    return (values.to(torch.float32) * mask).sum(-1)
