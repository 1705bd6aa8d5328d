"""What the model will see: the first row of a dataset decoded as ``prompt:`` / ``completion (trained):``.

A dry run prints these lines so a user sees at once whether the layout was read right (issue 12
item 9): the completion line holds exactly the tokens whose loss mask is 1, so a prompt read as
part of the completion, or a missing end-of-turn / EOS, shows up before any training.
Newlines are written as ``\\n`` so each sequence stays on its two labelled lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["preview_lines", "rl_preview_lines"]


def _escape(text: str) -> str:
    return text.replace("\n", "\\n")


def _side(ids: torch.Tensor, attn: torch.Tensor | None, loss: torch.Tensor, tokenizer: Any) -> tuple[str, str]:
    ids, loss = torch.as_tensor(ids).view(-1), torch.as_tensor(loss).view(-1).bool()
    real = torch.ones_like(loss) if attn is None else torch.as_tensor(attn).view(-1).bool()
    trained_pos = torch.nonzero(loss & real).view(-1)
    first = int(trained_pos[0]) if len(trained_pos) else int(real.sum())
    prompt_ids = ids[:first][real[:first]]
    decode = lambda t: tokenizer.decode(t.tolist(), skip_special_tokens=False)  # noqa: E731
    return decode(prompt_ids), decode(ids[loss & real])


def preview_lines(row: Mapping[str, Any], tokenizer: Any) -> list[str]:
    """Two labelled lines per sequence of one dataset item (SFT: one sequence; pairs: chosen, rejected)."""
    sides = [p for p in ("chosen_", "rejected_") if f"{p}input_ids" in row] or [""]
    lines: list[str] = []
    for p in sides:
        if f"{p}loss_mask" not in row:
            raise KeyError(f"preview_lines: the row has no {p}loss_mask; keys: {sorted(row)}")
        prompt, completion = _side(row[f"{p}input_ids"], row.get(f"{p}attention_mask"), row[f"{p}loss_mask"],
                                   tokenizer)
        label = f"[{p[:-1]}] " if p else ""
        lines += [f"{label}prompt: {_escape(prompt)}", f"{label}completion (trained): {_escape(completion)}"]
    return lines


def rl_preview_lines(row: Mapping[str, Any], tokenizer: Any) -> list[str]:
    """The RL dataset's first prompt as the rollout sees it (left-padded ``input_ids``)."""
    ids = torch.as_tensor(row["input_ids"]).view(-1)
    attn = torch.as_tensor(row.get("attention_mask", torch.ones_like(ids))).view(-1).bool()
    return [f"prompt: {_escape(tokenizer.decode(ids[attn].tolist(), skip_special_tokens=False))}"]
