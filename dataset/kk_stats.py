"""Statistics of a set of knights-and-knaves puzzles, to compare a generator with the benchmark.

``puzzle_stats(rows)`` takes rows with ``statements`` (the benchmark's repr string or tuples) and
``quiz`` and returns: ``top_ops`` (share of each person's statement by top operator, ``leaf`` for a
bare claim), ``node_ops`` (share of every operator node incl. nested ones, leaves excluded),
``leaf_fraction`` (= ``top_ops['leaf']``), ``mean_depth`` / ``max_depth`` (a leaf has depth 1),
``mean_width`` (operands per and/or), ``templates`` (how many of the 18 sentence templates occur),
``names`` (distinct names), ``statements`` (how many were counted).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from relift.rewards.kk_generator import TEMPLATES

__all__ = ["puzzle_stats", "depth", "template_patterns"]

_LEAVES = ("telling-truth", "lying")


def depth(statement: tuple) -> int:
    """Nesting depth; a leaf has depth 1."""
    if statement[0] in _LEAVES:
        return 1
    return 1 + max(depth(s) for s in statement[1:])


def _walk(statement: tuple, ops: Counter, widths: list[int]) -> None:
    if statement[0] in _LEAVES:
        return
    ops[statement[0]] += 1
    if statement[0] in ("and", "or"):
        widths.append(len(statement) - 1)
    for s in statement[1:]:
        _walk(s, ops, widths)


def template_patterns() -> list[re.Pattern]:
    """One regex per sentence template (name: a capitalised word, content: anything short)."""
    out = []
    for t in TEMPLATES:
        rx = re.escape(t).replace(r"\{name\}", r"[A-Z][a-z]+").replace(r"\{content\}", r"[^\"]{3,200}?")
        out.append(re.compile(rx))
    return out


def puzzle_stats(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """See the module docstring."""
    top: Counter = Counter()
    nodes: Counter = Counter()
    widths: list[int] = []
    depths: list[int] = []
    names: set[str] = set()
    used: set[int] = set()
    patterns = template_patterns()
    for row in rows:
        statements = row["statements"]
        if isinstance(statements, str):
            statements = ast.literal_eval(statements)
        for s in statements:
            top["leaf" if s[0] in _LEAVES else s[0]] += 1
            depths.append(depth(s))
            _walk(s, nodes, widths)
        names.update(str(n) for n in row.get("names", []))
        quiz = row.get("quiz", "")
        for i, p in enumerate(patterns):
            if i not in used and p.search(quiz):
                used.add(i)
    total = sum(top.values())
    if total == 0:
        raise ValueError("no statements to count")
    node_total = max(1, sum(nodes.values()))
    return {
        "statements": total,
        "top_ops": {k: v / total for k, v in sorted(top.items())},
        "node_ops": {k: v / node_total for k, v in sorted(nodes.items())},
        "leaf_fraction": top["leaf"] / total,
        "mean_depth": sum(depths) / total,
        "max_depth": max(depths),
        "mean_width": sum(widths) / len(widths) if widths else 0.0,
        "templates": len(used),
        "names": len(names),
    }
