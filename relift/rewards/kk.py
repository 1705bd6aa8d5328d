"""Knights-and-knaves answers on the Logic-RL reward scale.

Score = format part + answer part:
  * format +1 when ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` each occur exactly once and
    in that order, else -1.  Logic-RL prompts end with a prefilled ``<think>``, so the response alone
    usually has no ``<think>``: with ``think_prefilled=None`` (auto) a response without any
    ``<think>`` is checked as if it started with one; ``True`` always prepends one (a response that
    opens another ``<think>`` then has two and fails); ``False`` checks the response as it is.
  * answer, from the last ``<answer>...</answer>``: it parses when the words "knight"/"knave"
    (case-insensitive substrings, as Logic-RL counts them) occur exactly once per person and each
    ground-truth name appears as ``NAME is a knight|knave``.  +2 if every role matches the ground
    truth, -1.5 if it parses but differs, -2 if it does not parse, has no answer, or the format
    failed.
Totals: 3 (right), -0.5 (wrong), -1 (unparseable answer), -3 (format failed).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "compute_score",
    "compute_score_dict",
    "parse_ground_truth",
    "parse_answer",
    "check_format",
    "FORMAT_REWARD",
    "ANSWER_REWARD",
]

FORMAT_REWARD = 1.0
ANSWER_REWARD = 2.0
WRONG_ANSWER = -1.5
UNPARSED_ANSWER = -2.0

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_GT_LINE = re.compile(r"^\s*(?:\(\d+\)\s*)?(.+?)\s+is\s+a\s+(knight|knave)\b", re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def parse_ground_truth(ground_truth: Any) -> dict[str, str]:
    """Names -> "knight"/"knave" from Logic-RL's ``solution_text_format``.

    Accepts the dict stored in ``reward_model.ground_truth`` (with ``solution_text_format``), that
    dict nested under ``ground_truth``, or the formatted string itself.
    """
    gt = ground_truth
    if isinstance(gt, dict) and "solution_text_format" not in gt and "ground_truth" in gt:
        gt = gt["ground_truth"]
    if isinstance(gt, dict):
        if "solution_text_format" not in gt:
            raise ValueError("K&K ground truth dict has no 'solution_text_format' key; "
                             f"keys are {sorted(gt)}")
        gt = gt["solution_text_format"]
    if not isinstance(gt, str):
        raise TypeError(f"K&K ground truth must be a dict or str, got {type(gt).__name__}")
    roles: dict[str, str] = {}
    for line in gt.strip().splitlines():
        if not line.strip():
            continue
        m = _GT_LINE.match(line)
        if m is None:
            raise ValueError(f"cannot parse K&K ground-truth line {line!r} "
                             "(expected '(k) NAME is a knight|knave')")
        roles[m.group(1).strip()] = m.group(2).lower()
    if not roles:
        raise ValueError(f"empty K&K ground truth {gt!r}")
    return roles


def check_format(solution_str: str, think_prefilled: bool | None = None) -> bool:
    """Each tag exactly once, in the order think, /think, answer, /answer."""
    text = solution_str
    if think_prefilled or (think_prefilled is None and "<think>" not in text):
        text = "<think>" + text
    positions = []
    for tag in _TAGS:
        if text.count(tag) != 1:
            return False
        positions.append(text.find(tag))
    return positions == sorted(positions)


def parse_answer(answer_text: str, names: list[str]) -> dict[str, str] | None:
    """Names -> roles stated in an answer, or None when it does not parse (see module doc)."""
    lowered = answer_text.lower()
    if lowered.count("knight") + lowered.count("knave") != len(names):
        return None
    roles: dict[str, str] = {}
    for name in names:
        m = re.search(rf"\b{re.escape(name)}\b\s+is\s+a\s+(knight|knave)\b", answer_text,
                      re.IGNORECASE)
        if m is None:
            return None
        roles[name] = m.group(1).lower()
    return roles


def compute_score_dict(solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                       think_prefilled: bool | None = None, **_options: Any) -> dict:
    """``dict(score, acc, format, pred)`` on the Logic-RL scale (see the module docstring).

    ``pred`` is the parsed assignment as "Name=role, ..." (ground-truth name order), "" if none.
    Unknown keyword options are ignored (one option dict is shared by all scorers).
    """
    if not isinstance(solution_str, str):
        raise TypeError(f"solution_str must be str, got {type(solution_str).__name__}")
    truth = parse_ground_truth(ground_truth)
    names = list(truth)
    fmt = check_format(solution_str, think_prefilled)
    matches = _ANSWER.findall(solution_str)
    pred_roles = parse_answer(matches[-1], names) if matches else None
    pred = ", ".join(f"{n}={pred_roles[n]}" for n in names) if pred_roles else ""
    correct = pred_roles is not None and pred_roles == truth
    if not fmt or pred_roles is None:
        answer_part = UNPARSED_ANSWER
    else:
        answer_part = ANSWER_REWARD if correct else WRONG_ANSWER
    score = (FORMAT_REWARD if fmt else -FORMAT_REWARD) + answer_part
    return {"score": score, "acc": 1.0 if (fmt and correct) else 0.0, "format": fmt, "pred": pred}


def compute_score(solution_str: str, ground_truth: Any, think_prefilled: bool | None = None) -> float:
    """Logic-RL score of a response: 3, -0.5, -1 or -3."""
    return compute_score_dict(solution_str, ground_truth, think_prefilled=think_prefilled)["score"]
