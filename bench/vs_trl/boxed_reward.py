"""The bench's reward, one function for both systems: 1.0 when the last ``\\boxed{...}`` equals the answer.

TRL's job calls :func:`boxed_score` in-process; relift loads this file as its
``reward.custom_reward_function`` and calls :func:`compute_score` in its reward worker processes. Until
round 8 (docs/performance.md) relift scored with its registered math-verify scorer instead, which
parses the whole response when there is no ``\\boxed{}`` (every response of the bench's random model):
~0.25 ms per response, work TRL's side did not do. ``--variants mathverify:reward.custom_reward_function.path=null``
reruns that setup.
"""

from __future__ import annotations

import re
from typing import Any

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def boxed_score(text: str, answer: Any) -> float:
    """1.0 when the last ``\\boxed{...}`` (no nested braces) holds ``answer`` exactly, else 0.0."""
    found = _BOXED.findall(text)
    return 1.0 if found and found[-1].strip() == str(answer) else 0.0


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None) -> float:
    """relift's custom reward signature (``reward.custom_reward_function.name=compute_score``)."""
    return boxed_score(solution_str, ground_truth)
