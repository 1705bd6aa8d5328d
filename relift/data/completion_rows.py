"""Read one SFT or preference-pair row in any layout users bring, as (prompt, final assistant turn).

Layouts (REFERENCE.md section 4; TRL's dataset formats):

* (a) ``prompt`` + completion strings (``target`` for SFT, ``chosen``/``rejected`` for pairs);
* (b) ``prompt`` + completions as assistant message lists (``[{'role': 'assistant', ...}]``);
* (c) conversations without a prompt column: the REDI repo's pair files (TRL's conversational
  preference layout) hold ``chosen``/``rejected`` as ``[user, assistant]``; SFT files hold
  ``messages``. The prompt is the leading turns, the completion the final assistant turn. The
  two sides of a pair must share their leading turns (else an error naming the row).

A completion list that repeats the prompt turns before the answer (a full conversation next to a
``prompt`` column) is accepted when those turns equal the prompt; any other non-assistant turn in a
completion is an error: training on it would train on prompt text.

Only the final assistant turn carries loss. With the chat template on, its text is what the
template writes after the generation prompt: the content, then the template's end-of-turn (for
ChatML/Qwen ``<|im_end|>`` and a newline), and then EOS is appended, all trained
(:func:`completion_ids`). Without the template the content is used as is, followed by EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relift.data.common import encode, render_prompt
from relift.data.io import ParquetTable, as_messages, to_python
from relift.data.templated import templated_text

__all__ = ["Prompt", "read_prompt", "split_completion", "read_sft_row", "read_pair_row", "render_completion",
           "completion_ids", "check_layout_columns", "prompt_text_of"]

Prompt = list[dict[str, str]] | str  # messages, or a plain string (used as is without a template)


def read_prompt(value: Any, column: str, where: str) -> Prompt:
    """A prompt cell: a plain string, or a non-empty message list."""
    value = to_python(value)
    if isinstance(value, str):
        return value
    return as_messages(value, column, where)


def _prompt_as_messages(prompt: Prompt) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def _same_turns(a: Sequence[dict[str, str]], b: Sequence[dict[str, str]]) -> bool:
    return [(m["role"], m["content"]) for m in a] == [(m["role"], m["content"]) for m in b]


def split_completion(value: Any, column: str, where: str) -> tuple[list[dict[str, str]], str]:
    """A completion cell as (leading turns, final assistant content).

    A string is the content with no leading turns; a single assistant message (or a dict) likewise;
    several trailing assistant messages are joined (one turn split into parts). The last message
    must be an assistant turn.
    """
    value = to_python(value)
    if value is None:
        raise ValueError(f"{where}: column {column!r} is empty (None)")
    if isinstance(value, str):
        return [], value
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"{where}: column {column!r} must be a string or a list of messages, "
                         f"got {type(value).__name__}: {str(value)[:80]!r}")
    msgs = as_messages(value, column, where)
    if msgs[-1]["role"] != "assistant":
        raise ValueError(f"{where}: column {column!r} must end with an assistant message (the completion), "
                         f"its last message has role {msgs[-1]['role']!r}")
    k = len(msgs)
    while k > 0 and msgs[k - 1]["role"] == "assistant":
        k -= 1
    return msgs[:k], "".join(m["content"] for m in msgs[k:])


def _resolve_prompt(prompt: Prompt | None, leading: list[dict[str, str]], column: str, where: str) -> Prompt:
    if prompt is None:
        if not leading:
            raise ValueError(f"{where}: there is no prompt column and column {column!r} holds no prompt turns "
                             f"before its assistant turn; give a prompt column or full conversations")
        return leading
    if leading and not _same_turns(leading, _prompt_as_messages(prompt)):
        raise ValueError(f"{where}: column {column!r} holds turns before its final assistant turn that differ from "
                         f"the prompt column; only the final assistant turn may be a completion (training on the "
                         f"other turns would train on prompt text)")
    return prompt


def check_layout_columns(table: ParquetTable, prompt_key: str, completion_keys: Sequence[str], what: str,
                         messages_key: str | None = None) -> str:
    """Which layout the table has: ``'prompt'`` (a/b) or ``'conversation'`` (c); KeyError naming files."""
    cols = set(table.columns)
    if prompt_key in cols and all(k in cols for k in completion_keys):
        return "prompt"
    if messages_key is not None and messages_key in cols:
        return "conversation"
    if prompt_key not in cols and all(k in cols for k in completion_keys):
        return "conversation"
    need = [prompt_key, *completion_keys]
    alt = f" (or a {messages_key!r} column of conversations)" if messages_key else \
        f" (or {list(completion_keys)} as full conversations without {prompt_key!r})"
    raise KeyError(f"{what}: {table.files} need columns {need}{alt}; available columns: {table.columns}")


def read_sft_row(table: ParquetTable, row: int, layout: str, prompt_key: str, response_key: str,
                 messages_key: str) -> tuple[Prompt, str]:
    """(prompt, final assistant content) of one SFT row."""
    where = table.origin(row)
    if layout == "prompt":
        prompt = read_prompt(table.cell(row, prompt_key), prompt_key, where)
        leading, content = split_completion(table.cell(row, response_key), response_key, where)
        return _resolve_prompt(prompt, leading, response_key, where), content
    column = messages_key if messages_key in table.columns else response_key
    leading, content = split_completion(table.cell(row, column), column, where)
    return _resolve_prompt(None, leading, column, where), content


def read_pair_row(table: ParquetTable, row: int, layout: str, prompt_key: str, chosen_key: str,
                  rejected_key: str) -> tuple[Prompt, str, str]:
    """(prompt, chosen content, rejected content) of one pair row; both sides share the prompt."""
    where = table.origin(row)
    prompt = read_prompt(table.cell(row, prompt_key), prompt_key, where) if layout == "prompt" else None
    c_lead, chosen = split_completion(table.cell(row, chosen_key), chosen_key, where)
    r_lead, rejected = split_completion(table.cell(row, rejected_key), rejected_key, where)
    if prompt is None and not _same_turns(c_lead, r_lead):
        raise ValueError(f"{where}: the prompt turns of {chosen_key!r} and {rejected_key!r} differ; a pair must "
                         f"answer one prompt (chosen starts {str(c_lead)[:80]!r}, rejected starts "
                         f"{str(r_lead)[:80]!r})")
    p = _resolve_prompt(prompt, c_lead, chosen_key, where)
    _resolve_prompt(p, r_lead, rejected_key, where)
    return p, chosen, rejected


def render_completion(tokenizer: Any, prompt: Prompt, prompt_text: str, content: str,
                      apply_chat_template: bool, where: str = "") -> str:
    """The completion text the model must write: content + the template's end-of-turn.

    Rendered as the template renders the whole conversation minus the rendered prompt, so the
    end-of-turn is whatever the template writes (ChatML: ``<|im_end|>\\n``). Without a template (or
    for a plain-string prompt with the template off) it is the content alone.
    """
    if not apply_chat_template:
        return content
    if templated_text(prompt, tokenizer) is not None:  # an already templated prompt: add the turn's end
        return content + _end_of_turn(tokenizer)
    msgs = _prompt_as_messages(prompt) + [{"role": "assistant", "content": content}]
    full = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    if not full.startswith(prompt_text):
        raise ValueError(f"{where}: the chat template renders the conversation with a different prefix than the "
                         f"prompt alone (it rewrites earlier turns), so the completion cannot be cut out of it; "
                         f"set data.apply_chat_template=false and give templated text")
    return full[len(prompt_text):]


def _end_of_turn(tokenizer: Any) -> str:
    """What the chat template writes after an assistant message (ChatML: ``<|im_end|>\\n``); empty without one."""
    if not getattr(tokenizer, "chat_template", None):
        return ""
    marker = "RELIFT_END_OF_TURN_PROBE"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "u"}, {"role": "assistant", "content": marker}],
                                         tokenize=False, add_generation_prompt=False)
    return text.split(marker, 1)[1] if marker in text else ""


def completion_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a completion, ending in EOS (appended unless the text already ends with it)."""
    ids = encode(tokenizer, text)
    eos = int(tokenizer.eos_token_id)
    if not ids or ids[-1] != eos:
        ids.append(eos)
    return ids


def prompt_text_of(tokenizer: Any, prompt: Prompt, apply_chat_template: bool) -> str:
    """The rendered prompt: template + generation prompt, or a plain string as is."""
    if isinstance(prompt, str) and not apply_chat_template:
        return prompt
    return render_prompt(tokenizer, _prompt_as_messages(prompt), apply_chat_template)
