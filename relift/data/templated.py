"""Prompts that are already chat-templated: detected and used as is, never templated twice.

Some public data ships prompts rendered with a chat template: Logic-RL's knights-and-knaves parquet
holds one user message whose content is the whole ChatML string (``<|im_start|>system ...
<|im_start|>assistant\\n<think>``). Sending that through the tokenizer's template again would wrap it
in a second user turn. A prompt counts as templated when it is a single message (or a plain
string) whose text holds a chat-template control token: one of :data:`TEMPLATE_MARKERS` (ChatML,
Llama 3, Llama 2/Mistral, Gemma, Phi, DeepSeek) or one of the tokenizer's own special tokens other
than its BOS/EOS/pad names. Such a prompt is used verbatim, whatever ``data.apply_chat_template``
says, and a notice is logged once per process.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["TEMPLATE_MARKERS", "template_marker", "templated_text"]

logger = logging.getLogger(__name__)

TEMPLATE_MARKERS: tuple[str, ...] = (
    "<|im_start|>", "<|im_end|>",                                  # ChatML (Qwen, tiny models)
    "<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>",      # Llama 3
    "[INST]", "[/INST]",                                           # Llama 2, Mistral
    "<start_of_turn>", "<end_of_turn>",                            # Gemma
    "<|user|>", "<|assistant|>", "<|system|>", "<|end|>",          # Phi-3, Zephyr
    "<｜User｜>", "<｜Assistant｜>",                                  # DeepSeek-R1
)
_noticed: set[str] = set()


def _tokenizer_markers(tokenizer: Any) -> list[str]:
    if tokenizer is None:
        return []
    specials = list(getattr(tokenizer, "additional_special_tokens", None) or [])
    return [t for t in specials if isinstance(t, str) and len(t) > 2 and t.startswith("<")
            and t not in ("<think>", "</think>", "<answer>", "</answer>")]


def template_marker(text: str, tokenizer: Any = None) -> str | None:
    """The first chat-template control token found in ``text``, or None."""
    for marker in (*TEMPLATE_MARKERS, *_tokenizer_markers(tokenizer)):
        if marker in text:
            return marker
    return None


def templated_text(prompt: Any, tokenizer: Any = None) -> str | None:
    """The prompt's text when it is already templated (see the module doc), else None.

    ``prompt`` is a string or a list of ``{"role", "content"}`` messages.
    """
    if isinstance(prompt, str):
        text = prompt
    elif isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], dict) \
            and isinstance(prompt[0].get("content"), str):
        text = prompt[0]["content"]
    else:
        return None
    marker = template_marker(text, tokenizer)
    if marker is None:
        return None
    if marker not in _noticed:
        _noticed.add(marker)
        logger.warning("prompts already hold chat-template tokens (found %r): used as is, not templated again "
                       "(see data.apply_chat_template)", marker)
    return text
