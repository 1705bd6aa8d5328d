"""Knights-and-knaves puzzles drawn the way the K&K benchmark draws them, in the Logic-RL row format.

The statement distribution follows the benchmark's generator (Xie et al. 2024, "On Memorization
of Large Language Models in Logical Reasoning", github.com/AlphaPav/mem-kk-logic,
``data_prep/lib_kk.py``; Logic-RL trains on its ``people{N}_num1000.jsonl`` files). Facts taken
from it, re-implemented here:

* every person speaks one statement, drawn recursively with depth limit 2 and width limit 2: a
  fair six-sided die picks a leaf (1/6, and always at depth 1), ``not`` (1/6), ``and`` / ``or``
  (1/6 each, 2..width operands), ``->`` / ``<=>`` (1/6 each, 2 operands);
* a leaf is ``('telling-truth', j)`` or ``('lying', j)`` with kind and person uniform, redrawn when
  it would be ``('lying', speaker)`` (a paradox);
* the operands of one operator are distinct (redrawn until so);
* a puzzle is kept only with exactly one solution, and no two puzzles of one run share their
  statements;
* names: 51 common first names drawn without replacement; each statement is said through one of
  18 sentence templates; depth-2 statements are worded as "X is (not) a knight/knave", "A and B",
  "A or B", "If A then B", "A if and only if B".

People are 0-based indices (the ``statements`` column), knight = True.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any

__all__ = ["evaluate", "solve", "random_statement", "generate_puzzle", "generate_puzzles",
           "render_statement", "format_quiz", "to_logic_rl_row", "NAMES", "TEMPLATES",
           "KNIGHT_KNAVE", "DEPTH", "WIDTH"]

DEPTH = 2  # the benchmark's depth_constraint default (its wording supports depth <= 2 only)
WIDTH = 2  # the benchmark's width_constraint default

NAMES = (
    "Emma", "Liam", "Olivia", "Noah", "Ava", "Ethan", "Sophia", "Mason", "Isabella", "William",
    "Mia", "James", "Charlotte", "Benjamin", "Amelia", "Lucas", "Harper", "Henry", "Evelyn",
    "Alexander", "Abigail", "Michael", "Emily", "Daniel", "Elizabeth", "Jacob", "Sofia", "Logan",
    "Avery", "Jackson", "Ella", "Sebastian", "Scarlett", "Jack", "Grace", "Aiden", "Chloe", "Owen",
    "Victoria", "Samuel", "Riley", "Matthew", "Aria", "Joseph", "Lily", "Luke", "Aurora", "David",
    "Zoey", "Oliver", "Penelope",
)
TEMPLATES = (
    '{name} said that {content}.',
    '{name} told you that {content}.',
    '{name} said, "{content}."',
    '{name} stated, "{content}".',
    'According to {name}, "{content}".',
    'In {name}\'s words: "{content}".',
    '{name} remarked, "{content}".',
    '"{content}," {name} declared.',
    '{name} was heard saying, "{content}".',
    '{name} expressed that {content}.',
    '"{content}" - {name}.',
    'As {name} put it, "{content}".',
    '{name} asserted: "{content}".',
    '"{content}," {name} mentioned.',
    '{name} commented, "{content}".',
    'In a statement by {name}: "{content}".',
    '{name} noted, "{content}".',
    '"{content}," {name} claimed.',
)
KNIGHT_KNAVE = {"knight": "knight", "knave": "knave", "a_knight": "a knight", "a_knave": "a knave",
                "Knight": "Knight", "Knave": "Knave"}
_HEAD = ("A very special island is inhabited only by knights and knaves. Knights always tell the truth, "
         "and knaves always lie. ")
_TAIL = "So who is a knight and who is a knave?"
_LEAVES = ("telling-truth", "lying")


def evaluate(statement: tuple, knights: Sequence[bool]) -> bool:
    """Truth value of a statement under an assignment (knights[j] is True for a knight)."""
    op = statement[0]
    if op == "telling-truth":
        return bool(knights[statement[1]])
    if op == "lying":
        return not knights[statement[1]]
    if op == "not":
        return not evaluate(statement[1], knights)
    if op == "and":
        return all(evaluate(s, knights) for s in statement[1:])
    if op == "or":
        return any(evaluate(s, knights) for s in statement[1:])
    if op == "->":
        return (not evaluate(statement[1], knights)) or evaluate(statement[2], knights)
    if op == "<=>":
        return evaluate(statement[1], knights) == evaluate(statement[2], knights)
    raise ValueError(f"unknown K&K operator {op!r} in {statement!r}")


def solve(statements: Sequence[tuple]) -> list[tuple[bool, ...]]:
    """Every assignment where each person's statement is true exactly when they are a knight
    (assignments in the benchmark's order: True before False, person 0 slowest)."""
    n = len(statements)
    return [a for a in itertools.product((True, False), repeat=n)
            if all(a[i] == evaluate(s, a) for i, s in enumerate(statements))]


def _leaf(rng: random.Random, n: int, speaker: int) -> tuple:
    while True:
        kind = rng.choice(_LEAVES)
        who = rng.randrange(n)
        if not (kind == "lying" and who == speaker):
            return (kind, who)


def _operands(rng: random.Random, n: int, speaker: int, depth: int, width: int, count: int) -> tuple:
    out: list[tuple] = []
    while len(out) < count:
        s = random_statement(rng, n, speaker, depth - 1, width)
        if s not in out:
            out.append(s)
    return tuple(out)


def random_statement(rng: random.Random, n: int, speaker: int, depth: int = DEPTH,
                     width: int = WIDTH) -> tuple:
    """One statement of ``speaker`` with nesting depth <= ``depth`` (a leaf has depth 1)."""
    dice = rng.randrange(6)
    if depth <= 1 or dice == 0:
        return _leaf(rng, n, speaker)
    if dice == 1:
        return ("not", random_statement(rng, n, speaker, depth - 1, width))
    if dice in (2, 3):
        count = rng.randint(2, max(2, width))
        return (("and", "or")[dice - 2], *_operands(rng, n, speaker, depth, width, count))
    return (("->", "<=>")[dice - 4], *_operands(rng, n, speaker, depth, width, 2))


def _leaf_text(leaf: tuple, names: Sequence[str], negated: bool = False) -> str:
    role = "a knight" if leaf[0] == "telling-truth" else "a knave"
    return f"{names[leaf[1]]} is {'not ' if negated else ''}{role}"


def render_statement(statement: tuple, names: Sequence[str], top: bool = True) -> str:
    """English text of a statement: the benchmark's wording for depth <= 2, parentheses below."""
    op = statement[0]
    if op in _LEAVES:
        return _leaf_text(statement, names)
    if op == "not" and statement[1][0] in _LEAVES:
        return _leaf_text(statement[1], names, negated=True)
    parts = [render_statement(s, names, top=False) for s in statement[1:]]
    if op == "not":
        text = f"it is not the case that {parts[0]}"
    elif op in ("and", "or"):
        text = f" {op} ".join(parts)
    elif op == "->":
        text = f"{'If' if top else 'if'} {parts[0]} then {parts[1]}"
    elif op == "<=>":
        text = f"{parts[0]} if and only if {parts[1]}"
    else:
        raise ValueError(f"unknown K&K operator {op!r} in {statement!r}")
    return text if top else f"({text})"


def format_quiz(statements: Sequence[tuple], names: Sequence[str], templates: Sequence[str]) -> str:
    """The quiz text: island preamble, the inhabitants, one templated sentence per person, question."""
    listed = ", ".join(names[:-1]) + ", and " + names[-1]
    said = "".join(" " + t.format(name=names[i], content=render_statement(s, names))
                   for i, (s, t) in enumerate(zip(statements, templates)))
    return f"{_HEAD}You meet {len(names)} inhabitants: {listed}.{said} {_TAIL}"


def _sample_unique(rng: random.Random, n: int, depth: int, width: int, seen: set,
                   max_tries: int) -> tuple[tuple, tuple[bool, ...]]:
    for _ in range(max_tries):
        statements = tuple(random_statement(rng, n, i, depth, width) for i in range(n))
        if statements in seen:
            continue
        solutions = solve(statements)
        if len(solutions) == 1:
            seen.add(statements)
            return statements, solutions[0]
    raise RuntimeError(f"no new uniquely solvable {n}-person puzzle in {max_tries} tries")


def generate_puzzle(n_people: int, rng: random.Random | int | None = None, depth: int = DEPTH,
                    width: int = WIDTH, names: Sequence[str] | None = None, max_tries: int = 10_000,
                    seen: set | None = None) -> dict[str, Any]:
    """A uniquely solvable puzzle: the benchmark jsonl fields (quiz, names, knight_knave, solution,
    solution_text, solution_text_format, statements). ``seen`` (statement tuples) avoids repeats."""
    if n_people < 2:
        raise ValueError(f"a K&K puzzle needs at least 2 people, got {n_people}")
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    pool = list(names) if names is not None else list(NAMES)
    if len(pool) < n_people:
        raise ValueError(f"{n_people} people but only {len(pool)} names")
    statements, solution = _sample_unique(rng, n_people, depth, width, set() if seen is None else seen,
                                          max_tries)
    who = rng.sample(pool, n_people)
    templates = [rng.choice(TEMPLATES) for _ in range(n_people)]
    roles = [f"{name} is {'a knight' if k else 'a knave'}" for name, k in zip(who, solution)]
    return {
        "quiz": format_quiz(statements, who, templates),
        "names": who,
        "knight_knave": dict(KNIGHT_KNAVE),
        "solution": list(solution),
        "solution_text": ", ".join(roles[:-1]) + ", and " + roles[-1] + ".",
        "solution_text_format": "\n".join(f"({i + 1}) {r}" for i, r in enumerate(roles)),
        "statements": repr(statements),
    }


def generate_puzzles(n_people: int, count: int, seed: int, depth: int = DEPTH, width: int = WIDTH,
                     names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """``count`` distinct puzzles of one size, reproducible from ``seed`` (names from ``names``,
    default :data:`NAMES`)."""
    rng = random.Random(f"kk-{seed}-{n_people}")
    seen: set = set()
    return [generate_puzzle(n_people, rng, depth, width, names=names, seen=seen) for _ in range(count)]


def to_logic_rl_row(puzzle: dict[str, Any], index: int, split: str = "train",
                    template: str = "instruct") -> dict[str, Any]:
    """The puzzle as a Logic-RL parquet row (prompt: one templated user message ending in ``<think>``)."""
    from relift.rewards.kk_prompts import make_prompt  # noqa: PLC0415

    return {
        **puzzle,
        "index": index,
        "data_source": "kk_logic",
        "prompt": [{"role": "user", "content": make_prompt(puzzle["quiz"], template)}],
        "ability": "logic",
        "reward_model": {"style": "rule",
                         "ground_truth": {"solution_text_format": puzzle["solution_text_format"],
                                          "statements": puzzle["statements"]}},
        "extra_info": {"split": split, "index": index},
    }
