"""Run each distinct prompt of a micro-batch once and share its keys/values with all its samples.

Why: GRPO-style batches hold ``n`` samples of every prompt, and a plain forward runs each prompt
``n`` times. Here the distinct prompts go through the model once (``use_cache=True``), their per-layer
keys/values are gathered to the rows that use them (``index_select``: differentiable, so every
sample's gradient flows back into its one prompt pass), and the responses run on top of that cache.
Responses of very different lengths run in separate passes, rows of similar length together
(:func:`response_chunks`), where that saves more padded tokens than the extra pass costs: the
samples of one prompt stay in one micro-batch for the sharing, and without this every one of them
padded to the group's longest response (19% of the small bench job's response tokens).
Same numbers as the plain forward up to float summation order (``tests/test_prompt_sharing.py``
compares log-probs and parameter gradients, plain and FSDP2-sharded); on the tiny bench job the
update's forward + backward took 17-19% less time (docs/performance.md). Through the lean passes
(``lean``) the prompts and every response group are one packed pass
(:meth:`workers.lean_forward.LeanLlamaPasses.shared`).

Taken only where it is exact and pays: a transformers causal LM whose forward accepts a cache,
without gradient checkpointing (transformers turns the cache off there), and a micro-batch in
which at least one prompt repeats. Otherwise :func:`shared_prompt_logits` returns None and the
caller runs its plain forward.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workers.lean_forward import LeanLlamaPasses, is_checkpointing

__all__ = ["can_share_prompts", "prompt_group_ids", "shared_prompt_logits", "response_chunks", "CHUNK_PENALTY_TOKENS"]

# One more forward + backward call costs about what this many tokens do (tiny CPU models: ~100 tokens
# of compute per extra call; larger models: fewer), so a regrouping must save more than this.
CHUNK_PENALTY_TOKENS = 128


def can_share_prompts(module: nn.Module) -> bool:
    """Whether ``module`` is a causal LM whose forward can continue from a prompt's cache with gradients."""
    inner = getattr(module, "model", None)
    if inner is None or not hasattr(module, "config") or is_checkpointing(module):
        return False
    layers = getattr(inner, "layers", None)
    return layers is not None and len(layers) > 0


def prompt_group_ids(prompts: torch.Tensor, attention_mask: torch.Tensor) -> list[int]:
    """One id per row; rows whose (unpadded) prompt tokens are equal share it."""
    return _distinct(prompts, attention_mask[:, : prompts.shape[1]])[1].tolist()


def _distinct(prompt: torch.Tensor, mask: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(number of distinct prompts, each row's index among them); padding ids never tell prompts apart."""
    distinct, which = torch.unique(torch.cat([prompt * mask, mask], dim=1), dim=0, return_inverse=True)
    return distinct.shape[0], which


class _HFPasses:
    """The two passes through the module's own forward and a transformers cache."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.cache: Any = None

    def prompt(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
               ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        out = self.module(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        self.cache = out.past_key_values
        if self.cache is None or not hasattr(self.cache, "layers"):
            raise RuntimeError(
                "the prompt pass returned no per-layer cache: set "
                "actor_rollout_ref.model.share_prompt_prefix=false for this model"
            )
        return out.logits[:, -1:], [(layer.keys, layer.values) for layer in self.cache.layers]

    def can_split(self) -> bool:
        """Whether the cache can be reset for a second response pass (transformers' DynamicLayer)."""
        return all(type(layer).__name__ == "DynamicLayer" for layer in self.cache.layers)

    def responses(self, past: list[tuple[torch.Tensor, torch.Tensor]], ids: torch.Tensor, mask: torch.Tensor,
                  positions: torch.Tensor) -> torch.Tensor:
        for layer, (keys, values) in zip(self.cache.layers, past, strict=True):
            layer.keys, layer.values = keys, values  # a fresh prompt cache: the pass appends to it
        out = self.module(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=self.cache,
                          use_cache=True, logits_to_keep=ids.shape[1])
        return out.logits


def shared_prompt_logits(
    module: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    prompt_end: int,
    keep_r: int,
    lean: bool = False,
) -> torch.Tensor | None:
    """Logits [b, keep_r, V] that predict the first ``keep_r`` response tokens of every row.

    ``input_ids`` etc. are the trimmed micro-batch: prompt columns ``[:prompt_end]`` (left-padded),
    then ``keep_r`` response columns. Returns None when no prompt repeats (nothing to share).
    ``lean``: one packed pass through :class:`workers.lean_forward.LeanLlamaPasses` (the caller checked
    :func:`workers.lean_forward.lean_forward_applies`), else the module's forward: the prompts, then
    each response group on their cache.
    """
    rows = input_ids.shape[0]
    prompt = input_ids[:, :prompt_end]
    prompt_mask = attention_mask[:, :prompt_end]
    count, which = _distinct(prompt, prompt_mask)
    if count == rows:
        return None
    first = torch.full((count,), rows, dtype=torch.long, device=input_ids.device)
    first = first.scatter_reduce(0, which, torch.arange(rows, device=input_ids.device), reduce="amin")
    prompts = (prompt[first], prompt_mask[first], position_ids[first, :prompt_end])
    widths = _response_widths(attention_mask[:, prompt_end:])
    chunks = response_chunks(widths, CHUNK_PENALTY_TOKENS)
    if len(chunks) == 1:
        chunks = [torch.arange(rows, device=input_ids.device)]  # one group: keep the rows' order
    # rows of similar response length run together, each group as wide as its longest response; a
    # row's last response token predicts nothing that is scored, so a group stops one token short
    groups = [(rows_c, int(widths[rows_c].max()) - 1) for rows_c in chunks]

    def responses(rows_c: torch.Tensor, width: int) -> tuple[torch.Tensor, ...]:
        end = prompt_end + width
        return (which[rows_c], input_ids[rows_c, prompt_end:end], attention_mask[rows_c, :end],
                position_ids[rows_c, prompt_end:end])

    if lean:
        lean_passes = LeanLlamaPasses(module)
        last, hidden = lean_passes.shared(*prompts, [responses(r, w) for r, w in groups if w > 0])
        if len(groups) == 1:  # every row in order: one LM head over [the prompt's last position | responses]
            per_row = [last.index_select(0, which)[:, None]] + hidden
            logits = lean_passes.logits(torch.cat(per_row, dim=1) if hidden else per_row[0])
            return F.pad(logits, (0, 0, 0, keep_r - logits.shape[1])) if logits.shape[1] < keep_r else logits
        first_token = lean_passes.logits(last[:, None]).index_select(0, which)  # the last prompt position: token 0
        group_logits = iter([lean_passes.logits(h) for h in hidden])
    else:
        hf_passes = _HFPasses(module)
        last_logits, prompt_kv = hf_passes.prompt(*prompts)
        first_token = last_logits.index_select(0, which)
        if len(groups) > 1 and not hf_passes.can_split():  # a cache that cannot be reset: one pass
            chunks = [torch.arange(rows, device=input_ids.device)]
            groups = [(chunks[0], int(widths.max()) - 1)]

        def hf_responses() -> Iterator[torch.Tensor]:
            for rows_c, width in groups:
                if width > 0:
                    prefix, ids, mask, positions = responses(rows_c, width)
                    past = [(k.index_select(0, prefix), v.index_select(0, prefix)) for k, v in prompt_kv]
                    yield hf_passes.responses(past, ids, mask, positions)

        group_logits = hf_responses()
    parts = []
    for rows_c, width in groups:
        if width == 0:  # one-token responses: the prompt pass predicted all there is
            parts.append(first_token.new_zeros(len(rows_c), keep_r - 1, first_token.shape[-1]))
            continue
        logits = next(group_logits)
        # positions past a row's response are never read (the caller masks them): zeros stand in
        parts.append(logits if width == keep_r - 1 else F.pad(logits, (0, 0, 0, keep_r - 1 - width)))
    order = torch.cat(chunks)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)
    return torch.cat([first_token, torch.cat(parts).index_select(0, inverse)], dim=1)


def _response_widths(response_mask: torch.Tensor) -> torch.Tensor:
    """Each row's response width: one past its last real token (at least 1)."""
    cols = torch.arange(1, response_mask.shape[1] + 1, device=response_mask.device)
    return (response_mask.to(cols.dtype) * cols).amax(dim=1).clamp(min=1)


def response_chunks(widths: torch.Tensor, penalty_tokens: int) -> list[torch.Tensor]:
    """Rows grouped by response width so that padded tokens plus ``penalty_tokens`` per extra group
    are fewest (each group pads to its widest row); returns row indices, narrowest group first.

    An exact split of the rows sorted by width (dynamic programming over the split points). The
    penalty stands for one more forward/backward call, so a split that saves less is not made.
    """
    order = torch.argsort(widths, stable=True)
    w = widths[order].cpu().numpy().astype(np.float64)
    n = len(w)
    # a group ends only where the width changes (or at the end): ends[k] rows are in the first groups
    ends = np.flatnonzero(np.append(w[1:] != w[:-1], True)) + 1
    starts = np.concatenate([[0], ends[:-1]])
    best = np.full(len(ends) + 1, np.inf)  # best[k]: cost of the rows before ends[k - 1]
    best[0] = 0.0
    cut = np.zeros(len(ends) + 1, dtype=np.int64)
    for k, end in enumerate(ends, start=1):
        # the last group holds rows starts[m] .. end for some m < k; a group after the first pays the penalty
        costs = best[:k] + (end - starts[:k]) * w[end - 1] + np.where(np.arange(k) > 0, penalty_tokens, 0)
        cut[k] = int(np.argmin(costs))
        best[k] = costs[cut[k]]
    bounds, k = [], len(ends)
    while k > 0:
        m = int(cut[k])
        bounds.append((int(starts[m]), int(ends[k - 1])))
        k = m
    assert bounds[-1][0] == 0 and bounds[0][1] == n
    return [order[i:j] for i, j in reversed(bounds)]
