"""Padding-free passes: every row's real tokens concatenated into one packed row (issue 18.3).

Why: a micro-batch of rows of different lengths computes every padding position in every layer.
Packed, the rows' real tokens (left-padded prompt + right-padded response, padding dropped) form
one row of ``N`` tokens whose position ids restart at 0 for each sequence, with no attention mask.
transformers reads that layout as separate sequences: with ``flash_attention_2`` / ``_3`` it runs
the variable-length kernels (``cu_seqlens`` from the position ids; verl's ``use_remove_padding``),
with SDPA or eager it builds a block-diagonal causal mask over all ``N`` tokens. The logits are
taken only where they predict a response token (``logits_to_keep`` as an index tensor).

When it is used: the policy worker (``workers.fsdp_worker``) packs when ``use_remove_padding`` is
on and the model runs a flash-attention kernel. On CPU (SDPA) the dense block-diagonal mask costs attention over ``N^2``
token pairs, which loses to length-sorted, trimmed micro-batches with the prompt run once per group
(:mod:`workers.prompt_sharing`), so CPU keeps those; the packed pass is exact there too, which is
how ``tests/test_packed_forward.py`` checks it against the padded pass (log-probs and gradients).
"""

from __future__ import annotations

import torch
from torch import nn

from relift.models.logits import logprobs_and_entropy

__all__ = ["PACKING_ATTENTION", "packed_log_probs"]

# attention implementations whose kernels take packed sequences without a dense mask
PACKING_ATTENTION = frozenset({"flash_attention_2", "flash_attention_3"})


def packed_log_probs(
    module: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    prompt_len: int,
    responses: torch.Tensor,
    *,
    temperature: float,
    chunk_size: int,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) [b, r] of ``responses`` [b, r] from one packed forward.

    ``input_ids`` etc. [b, prompt_len + r] hold each row's left-padded prompt then its right-padded
    response; the real tokens of a row must be one contiguous run whose position ids count 0, 1, ...
    (the rollout's layout). Positions past a row's response are 0.
    """
    rows, width = input_ids.shape
    resp_width = responses.shape[1]
    if width != prompt_len + resp_width:
        raise ValueError(f"packed pass: {width} columns != prompt {prompt_len} + response {resp_width}")
    real = attention_mask.bool()
    flat_real = real.flatten()
    taken = flat_real.nonzero().squeeze(-1)
    ids = input_ids.flatten().index_select(0, taken).unsqueeze(0)
    pos = position_ids.flatten().index_select(0, taken).unsqueeze(0)
    if pos.numel() and (pos[0, 0] != 0 or bool((pos[0, 1:] - pos[0, :-1] != 1).logical_and(pos[0, 1:] != 0).any())):
        raise ValueError("packed pass: every row's position ids must count 0, 1, 2, ... over its real tokens")
    # column prompt_len - 1 + j of a row predicts its response token j; keep those whose token is real
    wanted = real[:, prompt_len:]  # [b, r]
    packed_index = flat_real.long().cumsum(0).sub_(1).view(rows, width)  # packed position of each real column
    keep = packed_index[:, prompt_len - 1 : width - 1][wanted]
    out = module(input_ids=ids, position_ids=pos, attention_mask=None, use_cache=False, logits_to_keep=keep)
    logits = out.logits if hasattr(out, "logits") else out[0]
    log_probs, entropy = logprobs_and_entropy(logits[0], responses[wanted], temperature=temperature,
                                              chunk_size=chunk_size, with_entropy=with_entropy)
    full = log_probs.new_zeros(rows, resp_width).masked_scatter(wanted, log_probs)
    full_entropy = entropy.new_zeros(rows, resp_width).masked_scatter(wanted, entropy) if entropy is not None else None
    return full, full_entropy
