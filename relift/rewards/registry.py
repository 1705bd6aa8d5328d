"""Reward functions chosen by a row's ``data_source``, and custom reward functions from a file.

A registered scorer has the signature ``fn(solution_str, ground_truth, extra_info=None, **options)``
and returns a float or a dict with a ``score`` key (plus optional ``acc``, ``pred``, ``format``).
``solution_str`` is the response text only.  Keys are exact ``data_source`` strings or glob
patterns (``numina_*``); exact names win, then patterns, the most recently registered first.

Default sources (see ``DEFAULT_MATH_SOURCES`` / ``DEFAULT_KK_SOURCES``):
  * math (math-verify, 1/0): the names used by ReLIFT, verl, DeepScaleR, OpenR1 and the REDI
    evaluation: ``math``, ``aime``, ``aime25``, ``amc``, ``olympiad_bench``, ``minerva``,
    ``math500``, ``lighteval/MATH``, ``HuggingFaceH4/MATH-500``, ``openai/gsm8k``,
    ``deepscaler``, ``OpenR1-Math-220k``... and the patterns ``numina_*``, ``aime*``, ``amc*``.
  * knights and knaves (Logic-RL scale): ``kk_logic`` (the Logic-RL parquet's value) and aliases.
  * ReLIFT's math reward v3 (``relift/rewards/math_v3.py``): ``relift_v3``, ``math_v3``.

Add a source with the decorator, in a module that both the driver and the reward workers import
(the reward pool ships a snapshot of this registry to its worker processes by reference)::

    @register_reward("my_source", "my_source_v2")
    def my_score(solution_str, ground_truth, extra_info=None, **options): ...

or replace every scorer with ``load_custom_reward_fn(path, name)`` (verl's
``custom_reward_function.path`` / ``.name``), whose function is called as
``fn(data_source, solution_str, ground_truth, extra_info=None, **options)``.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from typing import Any

from relift.rewards import kk as _kk
from relift.rewards import math as _math
from relift.rewards import math_v3 as _math_v3
from relift.rewards.custom import load_custom_reward_fn  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

__all__ = [
    "register_reward",
    "get_reward_fn",
    "known_data_sources",
    "compute_score",
    "load_custom_reward_fn",
    "snapshot",
    "restore",
    "DEFAULT_MATH_SOURCES",
    "DEFAULT_KK_SOURCES",
]

RewardFn = Callable[..., "float | dict"]

DEFAULT_MATH_SOURCES: tuple[str, ...] = (
    # ReLIFT / LUFFY validation and training files
    "math", "aime", "aime25", "amc", "olympiad_bench", "minerva", "openr1", "OpenR1-Math-220k",
    "open-r1/OpenR1-Math-220k", "open-r1/OpenR1-Math-Raw", "openr1_math",
    # verl data_source names
    "lighteval/MATH", "DigitalLearningGmbH/MATH-lighteval", "openai/gsm8k", "gsm8k",
    "HuggingFaceH4/MATH-500", "math500", "MATH500", "math_dapo", "BytedTsinghua-SIA/DAPO-Math-17k",
    # DeepScaleR / evaluation suites
    "deepscaler", "agentica-org/DeepScaleR-Preview-Dataset", "aime24", "aime2024", "aime2025",
    "amc23", "olympiadbench", "minerva_math", "AI-MO/NuminaMath-CoT", "numina_math",
    # relift's own toy task (dataset/toy_arithmetic.py, the CPU quickstart): integer answers in \boxed{};
    # toy_arithmetic_hard: its held-out hard level in the ReLIFT-vs-GRPO toy (dataset/relift_toy.py)
    "toy_arithmetic", "toy_arithmetic_hard",
)
# NuminaMath sub-sources as DeepScaleR/PRIME name them (numina_amc_aime, numina_olympiads, ...)
DEFAULT_MATH_PATTERNS: tuple[str, ...] = ("numina_*", "aime*", "amc*")
DEFAULT_KK_SOURCES: tuple[str, ...] = ("kk_logic", "kk", "knights_and_knaves", "K-and-K/knights-and-knaves")

_exact: dict[str, RewardFn] = {}
_patterns: list[tuple[str, RewardFn]] = []


def _is_pattern(key: str) -> bool:
    return any(ch in key for ch in "*?[")


def _same_fn(a: RewardFn, b: RewardFn) -> bool:
    # a module reloaded (or a file loaded twice) re-registers an equal function: allow it
    return a is b or (getattr(a, "__module__", None) == getattr(b, "__module__", None)
                      and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None))


def register_reward(*data_sources: str, override: bool = False) -> Callable[[RewardFn], RewardFn]:
    """Decorator: score rows whose ``data_source`` is one of ``data_sources`` (globs allowed).

    Registering a name that another function already holds raises unless ``override=True``.
    """
    if not data_sources or not all(isinstance(s, str) and s for s in data_sources):
        raise ValueError(f"register_reward needs one or more non-empty strings, got {data_sources!r}")

    def decorator(fn: RewardFn) -> RewardFn:
        if not callable(fn):
            raise TypeError(f"register_reward must decorate a callable, got {fn!r}")
        for key in data_sources:
            if _is_pattern(key):
                old = next((f for p, f in _patterns if p == key), None)
                if old is not None and not override and not _same_fn(old, fn):
                    raise ValueError(f"data_source pattern {key!r} is already registered to "
                                     f"{_name(old)}; pass override=True to replace it")
                _patterns[:] = [(p, f) for p, f in _patterns if p != key]
                _patterns.insert(0, (key, fn))
            else:
                old = _exact.get(key)
                if old is not None and not override and not _same_fn(old, fn):
                    raise ValueError(f"data_source {key!r} is already registered to {_name(old)}; "
                                     "pass override=True to replace it")
                _exact[key] = fn
        return fn

    return decorator


def _name(fn: RewardFn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def known_data_sources() -> list[str]:
    """Registered names and patterns, sorted."""
    return sorted(_exact) + sorted(p for p, _ in _patterns)


def get_reward_fn(data_source: str) -> RewardFn:
    """The scorer for ``data_source``; a clear ``KeyError`` naming the known sources otherwise."""
    key = str(data_source)
    fn = _exact.get(key)
    if fn is not None:
        return fn
    for pattern, fn in _patterns:
        if fnmatch.fnmatchcase(key, pattern):
            return fn
    raise KeyError(
        f"no reward function for data_source {key!r}. Known: {', '.join(known_data_sources())}. "
        "Add one with @relift.rewards.register_reward(" + repr(key) + ") on a function "
        "fn(solution_str, ground_truth, extra_info=None, **options), or set a custom reward "
        "function (custom_reward_function.path / .name) that handles every source.")


def compute_score(data_source: str, solution_str: str, ground_truth: Any,
                  extra_info: dict | None = None, **options: Any) -> float | dict:
    """Score one response with the scorer registered for ``data_source`` (float or dict)."""
    return get_reward_fn(data_source)(solution_str, ground_truth, extra_info=extra_info, **options)


def snapshot() -> tuple[dict[str, RewardFn], list[tuple[str, RewardFn]]]:
    """The registry's state, picklable when every scorer is a module-level function."""
    return dict(_exact), list(_patterns)


def restore(state: tuple[dict[str, RewardFn], list[tuple[str, RewardFn]]]) -> None:
    """Replace the registry's state with a :func:`snapshot` (used inside reward workers)."""
    exact, patterns = state
    _exact.clear()
    _exact.update(exact)
    _patterns[:] = list(patterns)


def _math_scorer(solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                 **options: Any) -> dict:
    return _math.compute_score_dict(solution_str, ground_truth, extra_info, **options)


def _kk_scorer(solution_str: str, ground_truth: Any, extra_info: dict | None = None,
               **options: Any) -> dict:
    if "think_prefilled" not in options and isinstance(extra_info, dict) \
            and "think_prefilled" in extra_info:
        options["think_prefilled"] = extra_info["think_prefilled"]
    return _kk.compute_score_dict(solution_str, ground_truth, extra_info, **options)


def _math_v3_scorer(solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                    **options: Any) -> dict:
    return _math_v3.compute_score_dict(solution_str, ground_truth, extra_info, **options)


register_reward(*DEFAULT_MATH_SOURCES, *reversed(DEFAULT_MATH_PATTERNS))(_math_scorer)
# ReLIFT's reward_impl_version=3 (relift/rewards/math_v3.py); recipes select it for every source
# through reward.custom_reward_function.path=<repo>/relift/rewards/math_v3.py
register_reward(*_math_v3.V3_SOURCES)(_math_v3_scorer)
register_reward(*DEFAULT_KK_SOURCES)(_kk_scorer)
