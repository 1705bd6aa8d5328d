"""ReLIFT demonstrations -> the tensors of the actor's fine-tuning step (``update_sft``).

The demonstration is trained as the assistant turn that follows the very prompt the policy saw:
the prompt is rendered with the chat template and ``add_generation_prompt=True`` (a prompt already
rendered to a string is used as is), and the completion is

    demonstration text + the template's end-of-turn (``<|im_end|>`` + newline for ChatML/Qwen) + EOS

with every completion token trained (end-of-turn and EOS included; EOS is not repeated when the
end-of-turn already holds it, as for chat models whose EOS is ``<|im_end|>``). When the prompt ends
with an opened ``<think>`` (the "-think" models prefill ``<think>\\n``), a leading ``<think>`` in the
demonstration is removed so the model does not learn to open a second one. Completions longer than
``max_target_length`` are cut on the right (counted in :class:`DemoStats`; their EOS is then lost).

Layout (the rollout's, which ``workers/actor.py`` ``update_sft`` reads; see docs/data_keys.md):
``input_ids`` [B, P+R] = left-padded prompt (width P) + right-padded completion (width R),
``attention_mask``, ``position_ids`` (``cumsum(mask) - 1``), ``responses`` [B, R] (the completion,
padded with the pad id), ``response_mask`` [B, R] (1 on the tokens that carry the loss).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from relift.data.common import encode, pad_1d, position_ids_from_mask, render_prompt
from relift.data.io import as_messages, as_text, to_python
from relift.protocol import DataProto

__all__ = ["DemoStats", "end_of_turn_text", "prompt_text", "encode_demonstration", "build_sft_batch",
           "build_sft_batch_from_items"]

_THINK = "<think>"
_SENTINEL = "RELIFTDEMONSTRATIONSENTINEL"


@dataclass
class DemoStats:
    """Counts for one batch of demonstrations."""

    num_rows: int = 0
    num_truncated: int = 0       # completions cut at max_target_length
    num_think_stripped: int = 0  # leading <think> removed because the prompt opened one
    num_tokens: int = 0          # completion tokens that carry the loss

    def metrics(self) -> dict[str, float]:
        return {"relift/demo_truncated": float(self.num_truncated),
                "relift/demo_think_stripped": float(self.num_think_stripped),
                "relift/sft_tokens": float(self.num_tokens)}


def end_of_turn_text(tokenizer: Any, apply_chat_template: bool = True) -> str:
    """What the chat template writes after an assistant message's content ("" without a template).

    Found by rendering a one-turn conversation with a sentinel answer and taking what follows it,
    so it is right for any template (ChatML: ``<|im_end|>\\n``).
    """
    if not apply_chat_template:
        return ""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": _SENTINEL}], tokenize=False,
        add_generation_prompt=False)
    pos = rendered.rfind(_SENTINEL)
    if pos < 0:
        raise ValueError("the chat template drops the assistant message's content; cannot find its end-of-turn")
    return rendered[pos + len(_SENTINEL):]


def prompt_text(tokenizer: Any, prompt: Any, apply_chat_template: bool = True) -> str:
    """The prompt the policy saw: chat messages are rendered with the generation prompt; a string
    is taken as already rendered."""
    prompt = to_python(prompt)
    if isinstance(prompt, str):
        return prompt
    return render_prompt(tokenizer, as_messages(prompt, "prompt", "demonstration prompt"), apply_chat_template)


def _demo_text(demonstration: Any) -> str:
    text = as_text(demonstration, "demonstration", "demonstration")
    assert text is not None
    return text


def encode_demonstration(tokenizer: Any, prompt: Any, demonstration: Any, max_target_length: int,
                         apply_chat_template: bool = True, eot: str | None = None
                         ) -> tuple[list[int], list[int], bool, bool]:
    """``(prompt_ids, completion_ids, truncated, think_stripped)`` for one demonstration."""
    if max_target_length <= 0:
        raise ValueError(f"max_target_length must be positive, got {max_target_length}")
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token, which ends every demonstration")
    ptext = prompt_text(tokenizer, prompt, apply_chat_template)
    demo = _demo_text(demonstration)
    stripped = False
    if ptext.rstrip().endswith(_THINK) and demo.lstrip().startswith(_THINK):
        demo = demo.lstrip()[len(_THINK):]
        if ptext.endswith("\n") and demo.startswith("\n"):  # the prefill already holds the newline
            demo = demo[1:]
        stripped = True
    eot = end_of_turn_text(tokenizer, apply_chat_template) if eot is None else eot
    eos = int(tokenizer.eos_token_id)
    eot_ids = encode(tokenizer, eot) if eot else []
    completion = encode(tokenizer, demo) + eot_ids
    if eos not in eot_ids:
        completion.append(eos)
    truncated = len(completion) > max_target_length
    return encode(tokenizer, ptext), completion[:max_target_length], truncated, stripped


def build_sft_batch(tokenizer: Any, prompts: Sequence[Any], demonstrations: Sequence[Any], max_target_length: int,
                    max_prompt_length: int | None = None, apply_chat_template: bool = True
                    ) -> tuple[DataProto, DemoStats]:
    """Tensors for ``update_sft`` from (prompt, demonstration) pairs, plus their counts.

    ``prompts[i]``: chat messages or an already rendered prompt string; ``demonstrations[i]``: a
    string or assistant messages (ReLIFT's ``target``). Width P = ``max_prompt_length`` when given
    (a longer prompt is an error naming the row), else the longest prompt; width R =
    ``max_target_length``.
    """
    if len(prompts) != len(demonstrations):
        raise ValueError(f"{len(prompts)} prompts but {len(demonstrations)} demonstrations")
    if not prompts:
        raise ValueError("no demonstrations to build a fine-tuning batch from")
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token; load it with relift.models.loading.load_tokenizer")
    pad = int(tokenizer.pad_token_id)
    eot = end_of_turn_text(tokenizer, apply_chat_template)
    stats = DemoStats(num_rows=len(prompts))
    encoded = []
    for i, (prompt, demo) in enumerate(zip(prompts, demonstrations)):
        try:
            p_ids, c_ids, truncated, stripped = encode_demonstration(tokenizer, prompt, demo, max_target_length,
                                                                     apply_chat_template, eot)
        except ValueError as err:
            raise ValueError(f"demonstration row {i}: {err}") from err
        stats.num_truncated += truncated
        stats.num_think_stripped += stripped
        stats.num_tokens += len(c_ids)
        encoded.append((p_ids, c_ids))
    width_p = max(len(p) for p, _ in encoded)
    if max_prompt_length is not None:
        if width_p > max_prompt_length:
            row = max(range(len(encoded)), key=lambda k: len(encoded[k][0]))
            raise ValueError(f"demonstration row {row}: prompt is {width_p} tokens, over max_prompt_length="
                             f"{max_prompt_length}")
        width_p = int(max_prompt_length)
    rows_p = [pad_1d(p, width_p, pad, "left") for p, _ in encoded]
    rows_r = [pad_1d(c, int(max_target_length), pad, "right") for _, c in encoded]
    prompt_ids = torch.stack([t for t, _ in rows_p])
    responses = torch.stack([t for t, _ in rows_r])
    response_mask = torch.stack([m for _, m in rows_r])
    attention_mask = torch.cat([torch.stack([m for _, m in rows_p]), response_mask], dim=1)
    batch = {
        "prompts": prompt_ids,
        "responses": responses,
        "response_mask": response_mask,
        "input_ids": torch.cat([prompt_ids, responses], dim=1),
        "attention_mask": attention_mask,
        "position_ids": position_ids_from_mask(attention_mask),
    }
    return DataProto.from_dict(tensors=batch, meta_info={"temperature": 1.0}), stats


def build_sft_batch_from_items(tokenizer: Any, items: Sequence[Any], max_target_length: int,
                               prompt_key: str = "raw_prompt", max_prompt_length: int | None = None,
                               apply_chat_template: bool = True) -> tuple[DataProto, DemoStats]:
    """:func:`build_sft_batch` for :class:`relift.algorithms.hardest_buffer.BufferItem` s whose payload
    holds the prompt under ``prompt_key``."""
    prompts = []
    for it in items:
        payload: Mapping[str, Any] = it.payload
        if prompt_key not in payload:
            raise KeyError(f"buffer item {it.uid}: payload has no {prompt_key!r} (keys: {sorted(payload)}); "
                           "add the prompt the policy saw to the payload when calling add_batch")
        prompts.append(payload[prompt_key])
    return build_sft_batch(tokenizer, prompts, [it.demonstration for it in items], max_target_length,
                           max_prompt_length, apply_chat_template)
