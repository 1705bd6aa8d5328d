"""Run each distinct prompt of a micro-batch once and share its keys/values with all its samples.

Why: GRPO-style batches hold ``n`` samples of every prompt, and a plain forward runs each prompt
``n`` times. Here the distinct prompts go through the model once (``use_cache=True``), their per-layer
keys/values are gathered to the rows that use them (``index_select``: differentiable, so every
sample's gradient flows back into its one prompt pass), and the responses run on top of that cache.
Same numbers as the plain forward up to float summation order (``tests/test_prompt_sharing.py``
compares log-probs and parameter gradients, plain and FSDP2-sharded); on the tiny bench job the
update's forward + backward took 17-19% less time (docs/performance.md).

Taken only where it is exact and pays: a transformers causal LM whose forward accepts a cache,
without gradient checkpointing (transformers turns the cache off there), and a micro-batch in
which at least one prompt repeats. Otherwise :func:`shared_prompt_logits` returns None and the
caller runs its plain forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["can_share_prompts", "prompt_group_ids", "shared_prompt_logits"]


def can_share_prompts(module: nn.Module) -> bool:
    """Whether ``module`` is a causal LM whose forward can continue from a prompt's cache with gradients."""
    inner = getattr(module, "model", None)
    if inner is None or not hasattr(module, "config") or _checkpointing(module):
        return False
    layers = getattr(inner, "layers", None)
    return layers is not None and len(layers) > 0


def _checkpointing(module: nn.Module) -> bool:
    name = "is_activation_checkpointing"  # transformers >= 5 (is_gradient_checkpointing before)
    return bool(getattr(module, name if hasattr(type(module), name) else "is_gradient_checkpointing", False))


def prompt_group_ids(prompts: torch.Tensor, attention_mask: torch.Tensor) -> list[int]:
    """One id per row; rows whose (unpadded) prompt tokens are equal share it."""
    return _distinct(prompts, attention_mask[:, : prompts.shape[1]])[1].tolist()


def _distinct(prompt: torch.Tensor, mask: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(number of distinct prompts, each row's index among them); padding ids never tell prompts apart."""
    distinct, which = torch.unique(torch.cat([prompt * mask, mask], dim=1), dim=0, return_inverse=True)
    return distinct.shape[0], which


def shared_prompt_logits(
    module: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    prompt_end: int,
    keep_r: int,
) -> torch.Tensor | None:
    """Logits [b, keep_r, V] that predict the first ``keep_r`` response tokens of every row.

    ``input_ids`` etc. are the trimmed micro-batch: prompt columns ``[:prompt_end]`` (left-padded),
    then ``keep_r`` response columns. Returns None when no prompt repeats (nothing to share).
    """
    rows = input_ids.shape[0]
    prompt = input_ids[:, :prompt_end]
    prompt_mask = attention_mask[:, :prompt_end]
    count, which = _distinct(prompt, prompt_mask)
    if count == rows:
        return None
    first = torch.full((count,), rows, dtype=torch.long, device=input_ids.device)
    first = first.scatter_reduce(0, which, torch.arange(rows, device=input_ids.device), reduce="amin")
    kwargs: dict[str, Any] = {"use_cache": True, "logits_to_keep": 1}
    prompt_out = module(
        input_ids=prompt[first],
        attention_mask=prompt_mask[first],
        position_ids=position_ids[first, :prompt_end],
        **kwargs,
    )
    cache = prompt_out.past_key_values
    if cache is None or not hasattr(cache, "layers"):
        raise RuntimeError(
            "the prompt pass returned no per-layer cache: set "
            "actor_rollout_ref.model.share_prompt_prefix=false for this model"
        )
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, which)
        layer.values = layer.values.index_select(0, which)
    response_out = module(
        input_ids=input_ids[:, prompt_end:],
        attention_mask=attention_mask,
        position_ids=position_ids[:, prompt_end:],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=keep_r,
    )
    first_token = prompt_out.logits[:, -1:].index_select(0, which)  # the last prompt position predicts token 0
    return torch.cat([first_token, response_out.logits[:, : keep_r - 1]], dim=1)
