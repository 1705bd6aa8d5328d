"""A reasoning block the prompt opens: scored as part of the response.

Logic-RL's prompts end with ``<|im_start|>assistant\\n<think>``: the model's text starts inside the
thought, and Logic-RL's format check runs on the assistant turn, prefilled ``<think>`` included
(its ``extract_solution`` keeps everything after ``<|im_start|>assistant``). relift's scorers get
the response only, so the reward paths (the reward worker for training and validation,
``trainer.main_eval`` for generated files) prepend the prompt's opened block: the format check
then sees prefill + response, a response that opens a second ``<think>`` fails it, and a prompt
without the prefill gets no free ``<think>``.

The prefill is the prompt's last ``<think>`` and what follows it, when only whitespace follows.
"""

from __future__ import annotations

from typing import Any

__all__ = ["THINK_OPEN", "think_prefill", "prompt_prefills", "prefill_from_prompt_cell"]

THINK_OPEN = "<think>"
_TAIL_TOKENS = 8  # prompt tokens decoded to look for the prefill (the tag is 1-3 tokens)


def think_prefill(prompt_text: str, tag: str = THINK_OPEN) -> str:
    """``'<think>'`` (plus trailing whitespace) when ``prompt_text`` ends with an opened ``tag``, else ``''``."""
    i = prompt_text.rfind(tag)
    if i < 0 or prompt_text[i + len(tag):].strip():
        return ""
    return prompt_text[i:]


def prompt_prefills(tokenizer: Any, prompts: Any, prompt_mask: Any) -> list[str]:
    """The prefill of each row of a left-padded prompt batch (``prompts`` [B, P], ``prompt_mask`` [B, P])."""
    out = []
    for ids, mask in zip(prompts.tolist(), prompt_mask.tolist()):
        valid = [t for t, m in zip(ids, mask) if m][-_TAIL_TOKENS:]
        text = tokenizer.decode(valid, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        out.append(think_prefill(text))
    return out


def prefill_from_prompt_cell(cell: Any) -> str:
    """The prefill of a prompt cell of a data file when it is already templated (a string, or one
    message holding template tokens, see :mod:`relift.data.templated`), else ``''`` (a chat prompt
    rendered by a tokenizer later cannot be read from the cell)."""
    from relift.data.io import to_python  # noqa: PLC0415
    from relift.data.templated import templated_text  # noqa: PLC0415

    cell = to_python(cell)
    if isinstance(cell, list) and len(cell) == 1 and isinstance(cell[0], dict):
        text = templated_text(cell) or ""
    elif isinstance(cell, str):
        text = cell
    else:
        return ""
    return think_prefill(text)
