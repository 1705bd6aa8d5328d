"""ReLIFT's math reward (its ``reward_impl_version=3``), for parity with the paper's runs.

What the public LUFFY/ReLIFT code does (``reward_fn_math_verify`` -> ``RewardMathFn`` with
``think_format=True``; see REFERENCE.md section 3): the scored text must contain both ``<think>``
and ``</think>``, else the sample fails (score 0 here; the failure is reported as ``format=False``
and counted in ``format_failure``); the answer text is ``text.split("</think>")[1]`` -- between the
first ``</think>`` and the next one, so an answer written after a second ``</think>`` is not seen;
it is graded with math-verify (gold first); 1.0 if correct, else 0.0.

The public code scores the decoded prompt + response, so a ``<think>`` that the chat template
prefilled (the "-think" models) counts. Here the scorer sees the response only, so
``think_prefilled`` says what the prompt did: ``True`` prepends ``<think>``, ``False`` scores the
response as it is, ``None`` (default) prepends it only when the response has no ``<think>`` of its
own (right for the -think models, whose prompts always prefill it). It is read from the option of
that name, else from ``extra_info["think_prefilled"]``.

Selecting it: every ``data_source`` at once through the custom-reward hook
(``reward.custom_reward_function.path=<repo>/relift/rewards/math_v3.py``,
``reward.custom_reward_function.name=compute_score``), as the ReLIFT recipes do; or per source: it is
registered in :mod:`relift.rewards.registry` under ``relift_v3`` (and ``math_v3``), so a row whose
``data_source`` is one of those is scored with it. Both run inside the reward pool's processes,
which enforce the hard per-sample timeout; loaded as the custom function, this module's
``relift_warm_up`` (math-verify's) runs in the pool's zygote before any worker starts.
"""

from __future__ import annotations

from typing import Any

from relift.rewards.math import grade, relift_warm_up

__all__ = ["V3_SOURCES", "answer_segment", "compute_score", "compute_score_dict", "relift_warm_up", "scored_text"]

V3_SOURCES = ("relift_v3", "math_v3")
_OPEN, _CLOSE = "<think>", "</think>"


def scored_text(solution_str: str, think_prefilled: bool | None = None) -> str:
    """The text the public code would score: the prefilled ``<think>`` (if any) + the response."""
    if think_prefilled or (think_prefilled is None and _OPEN not in solution_str):
        return _OPEN + solution_str
    return solution_str


def answer_segment(text: str) -> str | None:
    """``text.split("</think>")[1]`` when both tags are present, else None (a format failure)."""
    if _OPEN not in text or _CLOSE not in text:
        return None
    return text.split(_CLOSE)[1]


def _ground_truth(ground_truth: Any) -> str:
    if isinstance(ground_truth, dict):
        ground_truth = ground_truth.get("ground_truth", ground_truth.get("answer"))
    if isinstance(ground_truth, (list, tuple)) and len(ground_truth) == 1:
        ground_truth = ground_truth[0]
    if ground_truth is None:
        raise ValueError("math ground truth is missing")
    return str(ground_truth)


def compute_score_dict(solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                       think_prefilled: bool | None = None, **_options: Any) -> dict:
    """``dict(score, acc, pred, format, format_failure)`` under ReLIFT's reward v3."""
    if not isinstance(solution_str, str):
        raise TypeError(f"solution_str must be str, got {type(solution_str).__name__}")
    if think_prefilled is None and isinstance(extra_info, dict) and extra_info.get("think_prefilled") is not None:
        think_prefilled = bool(extra_info["think_prefilled"])
    gt = _ground_truth(ground_truth)
    segment = answer_segment(scored_text(solution_str, think_prefilled))
    if segment is None:
        return {"score": 0.0, "acc": 0.0, "pred": "", "format": False, "format_failure": 1.0}
    correct, pred = grade(segment, gt) if segment.strip() else (False, "")
    value = 1.0 if correct else 0.0
    return {"score": value, "acc": value, "pred": pred, "format": True, "format_failure": 0.0}


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                  **options: Any) -> dict:
    """Custom-reward signature (``reward.custom_reward_function``): the same score for every source."""
    return compute_score_dict(solution_str, ground_truth, extra_info, **options)
