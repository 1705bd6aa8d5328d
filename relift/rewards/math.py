"""Math answers graded with math-verify (gold first), with no signal-based timeouts.

math-verify's own timeouts use ``signal.alarm``, which only works in the main thread of the main
interpreter; they are disabled here (``parsing_timeout=None``, ``timeout_seconds=None``) and the hard
per-sample timeout lives in :class:`relift.rewards.pool.RewardPool`, which runs scorers in worker
processes.  The bare functions below may therefore hang on adversarial inputs (for example
``\\boxed{9^{9^{9^{9^{9}}}}}``) or raise; call them through the pool in training.

Answer extraction:
  1. the answer text is what follows the last ``</think>`` when the response has one (the whole
     response otherwise);
  2. inside it, the content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces handled,
     ``\\boxed 5`` too) is graded when there is one (two plain integers are compared as integers,
     math-verify's verdict for them at a fraction of its cost); otherwise math-verify extracts the
     last expression of the answer text itself.

Think format (ReLIFT-style, checked always, enforced only with ``require_think_format=True``):
the response contains exactly one ``</think>``; at most one ``<think>``, and if present it comes
before ``</think>`` (zero ``<think>`` is accepted because chat templates often prefill it in the
prompt); the text between the start (or ``<think>``) and ``</think>`` is not blank; and the text
after ``</think>`` is not blank.  With ``require_think_format=True`` a response that fails this
scores 0 whatever its answer.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "compute_score",
    "compute_score_dict",
    "extract_answer_text",
    "last_boxed_content",
    "check_think_format",
    "grade",
    "relift_warm_up",
]

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"


def _find_matching_brace(text: str, open_pos: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``open_pos`` (escaped braces ignored), or -1."""
    depth = 0
    i = open_pos
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":  # skip escaped characters such as \{ and \}
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def last_boxed_content(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` or ``\\fbox{...}`` in ``text``.

    Also accepts the brace-less form ``\\boxed 5`` (content up to whitespace or ``$``).  Returns
    ``None`` when there is no complete box (an unclosed ``\\boxed{`` at the end is skipped and an
    earlier box is used instead).
    """
    positions: list[tuple[int, str]] = []
    for cmd in _BOX_COMMANDS:
        for m in re.finditer(re.escape(cmd) + r"(?![A-Za-z])", text):
            positions.append((m.start(), cmd))
    for start, cmd in sorted(positions, reverse=True):
        i = start + len(cmd)
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            end = _find_matching_brace(text, i)
            if end != -1:
                return text[i + 1:end].strip()
            continue
        if i > start + len(cmd):  # "\boxed 5": a space then a bare token
            m = re.match(r"[^\s$]+", text[i:])
            if m:
                return m.group(0)
    return None


def check_think_format(solution_str: str) -> bool:
    """ReLIFT-style think format (see the module docstring for the exact rule)."""
    if solution_str.count(_THINK_CLOSE) != 1 or solution_str.count(_THINK_OPEN) > 1:
        return False
    close = solution_str.index(_THINK_CLOSE)
    start = 0
    if _THINK_OPEN in solution_str:
        open_pos = solution_str.index(_THINK_OPEN)
        if open_pos > close:
            return False
        start = open_pos + len(_THINK_OPEN)
    thought = solution_str[start:close]
    answer = solution_str[close + len(_THINK_CLOSE):]
    return bool(thought.strip()) and bool(answer.strip())


def extract_answer_text(solution_str: str) -> str:
    """The part of a response that holds the final answer: after the last ``</think>``."""
    if _THINK_CLOSE in solution_str:
        return solution_str.rsplit(_THINK_CLOSE, 1)[1]
    return solution_str


@lru_cache(maxsize=1)
def _math_verify():
    # imported lazily: math-verify pulls in sympy (~1 s), which drivers that only build a pool
    # don't need.  Its "timeout is disabled" warning is expected here (the pool enforces one).
    logging.getLogger("math_verify.parser").setLevel(logging.ERROR)
    logging.getLogger("math_verify.grader").setLevel(logging.ERROR)
    import math_verify

    return math_verify


def relift_warm_up() -> None:
    """Import math-verify and sympy and run the parser once. The reward pool's zygote calls this
    before it forks its workers (for the registered scorers, or as a custom reward module's
    ``relift_warm_up``), so no worker pays the 1-3 s import inside a sample's deadline and all share
    its pages. A fraction, not an integer: integers are graded without math-verify."""
    grade("$\\frac{1}{2}$", "0.5")


@lru_cache(maxsize=4096)
def _parse_gold(ground_truth: str) -> tuple:
    mv = _math_verify()
    gt = ground_truth.strip()
    gold = mv.parse("$" + gt + "$", parsing_timeout=None)
    if not gold:  # e.g. ground truth already wrapped in \boxed{} or plain text
        gold = mv.parse(gt, parsing_timeout=None)
    return tuple(gold)


def grade(pred_text: str, ground_truth: str) -> tuple[bool, str]:
    """Grade an extracted answer against the ground truth; returns (correct, parsed pred string).

    ``verify(gold, pred)`` with the gold first (the order matters to math-verify).
    """
    mv = _math_verify()
    gold = list(_parse_gold(str(ground_truth)))
    if not gold:
        raise ValueError(f"math-verify could not parse the ground truth {ground_truth!r}")
    pred = mv.parse(pred_text, parsing_timeout=None)
    if not pred:
        return False, ""
    pred_str = str(pred[-1]) if isinstance(pred[-1], str) else str(pred[0])
    return bool(mv.verify(gold, pred, timeout_seconds=None)), pred_str


# a plain integer: optional minus, ASCII digits only; the cap keeps int() far below Python's 4300-digit limit
_PLAIN_INTEGER = re.compile(r"-?[0-9]{1,100}", re.ASCII)


def _same_integer(boxed: str, ground_truth: str) -> bool | None:
    """Whether two plain integers are equal; None when either is anything else (math-verify decides).

    Why: math-verify costs ~0.6-1 ms per answer, and most math and toy answers are integers, for which
    its verdict is integer equality (leading zeros, ``-0`` and surrounding spaces included;
    tests/test_rewards_math.py compares the two on random pairs)."""
    a, b = boxed.strip(), ground_truth.strip()
    if _PLAIN_INTEGER.fullmatch(a) and _PLAIN_INTEGER.fullmatch(b):
        return int(a) == int(b)
    return None


def compute_score_dict(solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                       require_think_format: bool = False, **_options: Any) -> dict:
    """Score a math response: ``dict(score, acc, pred, format)``.

    ``score`` and ``acc`` are 1.0 for a correct answer (and, with ``require_think_format``, a
    valid think format), else 0.0; ``pred`` is the extracted answer string ("" if none);
    ``format`` is the think-format check (reported always).  Unknown keyword options are ignored
    so one option dict can be shared by the scorers of several data sources.
    """
    if not isinstance(solution_str, str):
        raise TypeError(f"solution_str must be str, got {type(solution_str).__name__}")
    if isinstance(ground_truth, dict):  # some parquet files keep {"ground_truth": ...} nested
        ground_truth = ground_truth.get("ground_truth", ground_truth.get("answer"))
    if isinstance(ground_truth, (list, tuple)) and len(ground_truth) == 1:
        ground_truth = ground_truth[0]
    if ground_truth is None:
        raise ValueError("math ground truth is missing")
    fmt = check_think_format(solution_str)
    answer_text = extract_answer_text(solution_str)
    boxed = last_boxed_content(answer_text)
    if boxed is not None:
        correct = _same_integer(boxed, str(ground_truth))
        if correct is None:
            correct, _ = grade("$" + boxed + "$", str(ground_truth)) if boxed else (False, "")
        pred = boxed
    else:
        correct, pred = grade(answer_text, str(ground_truth))
    ok = correct and (fmt or not require_think_format)
    return {"score": 1.0 if ok else 0.0, "acc": 1.0 if ok else 0.0, "pred": pred, "format": fmt}


def compute_score(solution_str: str, ground_truth: Any, require_think_format: bool = False) -> float:
    """1.0 if the response's final answer equals the ground truth under math-verify, else 0.0."""
    return compute_score_dict(solution_str, ground_truth,
                              require_think_format=require_think_format)["score"]
