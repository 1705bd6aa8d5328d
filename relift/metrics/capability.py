"""Capability analysis from scored samples: pass@k curves, solve-rate histograms, two-model transitions.

Accuracy (pass@1) says how often a model answers a question right; capability (pass@k at large k)
says which questions it can answer at all. The RL-vs-distillation paper (Kim et al., "Reinforcement
Learning vs. Distillation: Understanding Accuracy and Capability in LLM Reasoning", arXiv 2505.14216)
found that RLVR raises accuracy on the easier questions while the hardest ones get worse, so pass@k
at large k does not grow. These functions make that visible for any two models:

* :func:`question_counts`: per data source and question, ``(n, c)`` = samples and correct samples;
* :func:`pass_at_k_curve`: the mean unbiased pass@k over questions for k = 1, 2, 4, ... up to n;
* :func:`solve_rate_histogram`: questions per solve-rate bin ``0, (0,1/8], ..., (7/8,1), 1``;
* :func:`transition_table`: per difficulty bucket of model A, how many questions B newly solves
  (A never solved it in n samples, B at least once) and how many it loses;
* :func:`pool_ids`: rows with the same key (prompt + ground truth) become one question, so a file
  that repeats every AIME question 8 times (ReLIFT's ``valid.parquet``) counts 30 questions with
  8x the samples instead of 240 questions.

All functions are pure (lists and numpy in, dicts out) so training validation, the CLI and the tests
share them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from relift.metrics.pass_at_k import is_correct, pass_at_k
from relift.metrics.tables import default_ks

__all__ = ["DEFAULT_BINS", "bin_labels", "bin_keys", "capability_metrics", "pass_at_k_curve", "pool_ids",
           "question_counts", "solve_rate_bin", "solve_rate_histogram", "transition_table"]

DEFAULT_BINS = 8  # (0, 1/8], (1/8, 2/8], ...: the binning; the ends 0 and 1 get bins of their own

Counts = Mapping[Hashable, tuple[int, int]]


def pool_ids(keys: Sequence[Hashable]) -> tuple[list[int], list[int]]:
    """Question id per row (rows with equal keys share the id of the first) and copies per question.

    ``pool_ids(["a", "b", "a"]) == ([0, 1, 0], [2, 1])``.
    """
    first: dict[Hashable, int] = {}
    ids: list[int] = []
    copies: list[int] = []
    for key in keys:
        if key not in first:
            first[key] = len(copies)
            copies.append(0)
        ids.append(first[key])
        copies[first[key]] += 1
    return ids, copies


def question_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[Hashable, tuple[int, int]]]:
    """``{data_source: {prompt_id: (n, c)}}`` from one record per sample (``correct`` >= 0.5 counts).

    Records are the ones :func:`relift.metrics.summarize_samples` takes (``data_source``,
    ``prompt_id``, ``correct``); a record lacking one raises ``KeyError`` naming its position.
    """
    out: dict[str, dict[Hashable, list[int]]] = {}
    for i, rec in enumerate(records):
        missing = [k for k in ("data_source", "prompt_id", "correct") if k not in rec]
        if missing:
            raise KeyError(f"record {i} lacks {', '.join(missing)} (has {', '.join(map(str, rec))})")
        nc = out.setdefault(str(rec["data_source"]), {}).setdefault(rec["prompt_id"], [0, 0])
        nc[0] += 1
        nc[1] += int(is_correct(rec["correct"]))
    return {src: {q: (nc[0], nc[1]) for q, nc in qs.items()} for src, qs in out.items()}


def _check_counts(counts: Counts, what: str) -> None:
    if not counts:
        raise ValueError(f"{what}: no questions")
    for q, (n, c) in counts.items():
        if n < 1 or not 0 <= c <= n:
            raise ValueError(f"{what}: question {q!r} has n={n}, c={c}; need n >= 1 and 0 <= c <= n")


def pass_at_k_curve(counts: Counts, ks: Sequence[int] | None = None) -> dict[int, float]:
    """``{k: mean over questions of the unbiased pass@k}``; ks default to 1, 2, 4, ..., n_min and n_min.

    With different n per question the curve stops at the smallest n (the estimator needs k <= n);
    a given k above it raises ``ValueError``.
    """
    _check_counts(counts, "pass_at_k_curve")
    n_min = min(n for n, _ in counts.values())
    ks = default_ks(n_min) if ks is None else sorted({int(k) for k in ks})
    too_big = [k for k in ks if k > n_min or k < 1]
    if too_big:
        raise ValueError(f"pass_at_k_curve: k={too_big} outside 1..{n_min} (the fewest samples of any question)")
    return {k: float(np.mean([pass_at_k(n, c, k) for n, c in counts.values()])) for k in ks}


def solve_rate_bin(n: int, c: int, bins: int = DEFAULT_BINS) -> int:
    """Bin index of the solve rate c/n: 0 for c = 0, ``bins + 1`` for c = n, else ceil(bins * c / n).

    Integer arithmetic, so c/n = 1/8 falls in bin 1 ``(0, 1/8]`` exactly.
    """
    if n < 1 or not 0 <= c <= n or bins < 1:
        raise ValueError(f"solve_rate_bin needs n >= 1, 0 <= c <= n, bins >= 1; got n={n}, c={c}, bins={bins}")
    if c == 0:
        return 0
    if c == n:
        return bins + 1
    return -(-c * bins // n)


def bin_labels(bins: int = DEFAULT_BINS) -> list[str]:
    """Human labels: ``["0", "(0,1/8]", "(1/8,2/8]", ..., "(7/8,1)", "1"]``."""
    def frac(i: int) -> str:
        return "0" if i == 0 else f"{i}/{bins}"

    mid = [f"({frac(i - 1)},{frac(i)}]" for i in range(1, bins)]
    last = f"({frac(bins - 1)},1)"
    return ["0"] + mid + [last, "1"]


def bin_keys(bins: int = DEFAULT_BINS) -> list[str]:
    """Metric-name-safe keys for the bins: ``eq0, le1_8, le2_8, ..., lt1, eq1``."""
    return ["eq0"] + [f"le{i}_{bins}" for i in range(1, bins)] + ["lt1", "eq1"]


def solve_rate_histogram(counts: Counts, bins: int = DEFAULT_BINS) -> list[dict[str, Any]]:
    """One dict per bin: ``label``, ``key``, ``questions`` and ``fraction`` of all questions."""
    _check_counts(counts, "solve_rate_histogram")
    hist = [0] * (bins + 2)
    for n, c in counts.values():
        hist[solve_rate_bin(n, c, bins)] += 1
    total = len(counts)
    return [{"label": lab, "key": key, "questions": h, "fraction": h / total}
            for lab, key, h in zip(bin_labels(bins), bin_keys(bins), hist)]


def transition_table(counts_a: Counts, counts_b: Counts, bins: int = DEFAULT_BINS) -> list[dict[str, Any]]:
    """Per difficulty bucket of model A (its solve-rate bin), how model B's solves moved; then a total.

    Each row: ``bucket`` (A's bin label), ``questions``, ``a_rate`` / ``b_rate`` (mean solve rate),
    ``gained`` (A solved it in none of its samples, B in at least one), ``lost`` (the reverse),
    ``up`` / ``down`` (B's solve rate higher / lower than A's), ``solved_a`` / ``solved_b`` (at least
    once). Both models must have scored the same questions (raises naming a few that differ).
    """
    _check_counts(counts_a, "transition_table (model A)")
    _check_counts(counts_b, "transition_table (model B)")
    only_a = [q for q in counts_a if q not in counts_b]
    only_b = [q for q in counts_b if q not in counts_a]
    if only_a or only_b:
        raise ValueError(f"transition_table: the two models scored different questions ({len(only_a)} only in A, "
                         f"e.g. {only_a[:3]}; {len(only_b)} only in B, e.g. {only_b[:3]})")
    labels = bin_labels(bins)
    rows = [{"bucket": lab, "questions": 0, "a_rate": 0.0, "b_rate": 0.0, "gained": 0, "lost": 0, "up": 0,
             "down": 0, "solved_a": 0, "solved_b": 0} for lab in labels]
    total = {"bucket": "all", "questions": 0, "a_rate": 0.0, "b_rate": 0.0, "gained": 0, "lost": 0, "up": 0,
             "down": 0, "solved_a": 0, "solved_b": 0}
    for q, (na, ca) in counts_a.items():
        nb, cb = counts_b[q]
        ra, rb = ca / na, cb / nb
        for row in (rows[solve_rate_bin(na, ca, bins)], total):
            row["questions"] += 1
            row["a_rate"] += ra
            row["b_rate"] += rb
            row["gained"] += int(ca == 0 and cb > 0)
            row["lost"] += int(ca > 0 and cb == 0)
            row["up"] += int(rb > ra)
            row["down"] += int(rb < ra)
            row["solved_a"] += int(ca > 0)
            row["solved_b"] += int(cb > 0)
    for row in rows + [total]:
        if row["questions"]:
            row["a_rate"] /= row["questions"]
            row["b_rate"] /= row["questions"]
    return rows + [total]


def capability_metrics(records: Iterable[Mapping[str, Any]], bins: int = DEFAULT_BINS, prefix: str = "val-cap"
                       ) -> dict[str, float]:
    """Tracker metrics per data source: pass@k at the largest k (= the fewest samples n of a question)
    and the fraction of questions per solve-rate bin.

    ``{"val-cap/<source>/pass@<n>": ..., "val-cap/<source>/solve_rate/<bin key>": ...}`` (bin keys from
    :func:`bin_keys`). Used by training validation with ``trainer.val_capability=true``.
    """
    out: dict[str, float] = {}
    for source, counts in question_counts(records).items():
        n_min = min(n for n, _ in counts.values())
        out[f"{prefix}/{source}/pass@{n_min}"] = pass_at_k_curve(counts, [n_min])[n_min]
        for row in solve_rate_histogram(counts, bins):
            out[f"{prefix}/{source}/solve_rate/{row['key']}"] = float(row["fraction"])
    return out
