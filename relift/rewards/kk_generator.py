"""Knights-and-knaves puzzles of any size, in the Logic-RL row format.

Each person makes one statement built from the leaves ``('telling-truth', j)`` / ``('lying', j)``
(never ``('lying', self)``, which no one could say), ``('not', s)``, ``('and'|'or', s1, s2, ...)``
and ``('->'|'<=>', s1, s2)``; people are 0-based indices, as in Logic-RL's ``statements`` column.
A puzzle is kept only when exactly one knight/knave assignment makes every statement true exactly
for the knights (brute force over the 2^n assignments; knight = True).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any

__all__ = ["evaluate", "solve", "random_statement", "generate_puzzle", "render_statement",
           "to_logic_rl_row", "NAMES"]

NAMES = (
    "Zoey", "Oliver", "Amelia", "Penelope", "Evelyn", "Sofia", "Grace", "Jackson", "Owen", "Emily",
    "Ella", "Scarlett", "Henry", "Liam", "Noah", "Mia", "Lucas", "Aria", "Ethan", "Chloe", "Logan",
    "Harper", "Mason", "Abigail", "James", "Lily", "Benjamin", "Avery", "Elijah", "Nora",
)
_QUIZ_HEAD = ("A very special island is inhabited only by knights and knaves. Knights always tell "
              "the truth, and knaves always lie. You meet {n} inhabitants: {names}.")
_QUIZ_TAIL = "So who is a knight and who is a knave?"
_SAYS = ('{name} said, "{text}."', '{name} told you that {text}.', '{name} claimed, "{text}."',
         'In {name}\'s words: "{text}".')
_SYSTEM = ("<|im_start|>system\nYou are a helpful assistant. The assistant first thinks about the "
           "reasoning process in the mind and then provides the user with the answer. The reasoning "
           "process and answer are enclosed within <think> </think> and<answer> </answer> tags, "
           "respectively, i.e., <think> reasoning process here </think><answer> answer here "
           "</answer>.  Now the user asks you to solve a logical reasoning problem. After thinking, "
           "when you finally reach a conclusion, clearly state the identity of each character "
           "within <answer> </answer> tags. i.e., <answer> (1) Zoey is a knight\n(2) ... "
           "</answer>.\n<|im_end|>\n<|im_start|>user\n")
_ASSISTANT = "\n<|im_end|>\n<|im_start|>assistant\n<think>"


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
    """Every assignment where each person's statement is true exactly when they are a knight."""
    n = len(statements)
    return [a for a in itertools.product((True, False), repeat=n)
            if all(a[i] == evaluate(s, a) for i, s in enumerate(statements))]


def _leaf(rng: random.Random, n: int, speaker: int) -> tuple:
    j = rng.randrange(n)
    if j == speaker:
        return ("telling-truth", j)  # ('lying', self) is a paradox for both roles
    return (rng.choice(("telling-truth", "lying")), j)


def random_statement(rng: random.Random, n: int, speaker: int, depth: int = 2,
                     width: int = 2) -> tuple:
    """A random statement of nesting depth <= ``depth`` (a leaf has depth 1)."""
    if depth <= 1 or rng.random() < 0.35:
        return _leaf(rng, n, speaker)
    op = rng.choice(("not", "and", "or", "->", "<=>"))
    sub = lambda: random_statement(rng, n, speaker, depth - 1, width)  # noqa: E731
    if op == "not":
        return ("not", sub())
    if op in ("and", "or"):
        return (op, *[sub() for _ in range(rng.randint(2, max(2, width)))])
    return (op, sub(), sub())


def render_statement(statement: tuple, names: Sequence[str], top: bool = True) -> str:
    """English text of a statement, in the style of the Logic-RL quizzes."""
    op = statement[0]
    if op in ("telling-truth", "lying"):
        return f"{names[statement[1]]} is a {'knight' if op == 'telling-truth' else 'knave'}"
    if op == "not" and statement[1][0] in ("telling-truth", "lying"):
        inner = statement[1]
        return f"{names[inner[1]]} is not a {'knight' if inner[0] == 'telling-truth' else 'knave'}"
    parts = [render_statement(s, names, top=False) for s in statement[1:]]
    if op == "not":
        text = f"it is not the case that {parts[0]}"
    elif op in ("and", "or"):
        text = f" {op} ".join(parts)
    elif op == "->":
        text = f"if {parts[0]} then {parts[1]}"
    else:
        text = f"{parts[0]} if and only if {parts[1]}"
    return text if top else f"({text})"


def generate_puzzle(n_people: int, rng: random.Random | int | None = None, depth: int = 2,
                    width: int = 2, names: Sequence[str] | None = None,
                    max_tries: int = 10_000) -> dict[str, Any]:
    """A puzzle with a unique solution: quiz, names, solution, solution_text_format, statements."""
    if n_people < 2:
        raise ValueError(f"a K&K puzzle needs at least 2 people, got {n_people}")
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    pool = list(names) if names is not None else list(NAMES)
    if len(pool) < n_people:
        raise ValueError(f"{n_people} people but only {len(pool)} names")
    for _ in range(max_tries):
        statements = tuple(random_statement(rng, n_people, i, depth, width)
                           for i in range(n_people))
        solutions = solve(statements)
        if len(solutions) == 1:
            break
    else:
        raise RuntimeError(f"no uniquely solvable {n_people}-person puzzle in {max_tries} tries")
    who = rng.sample(pool, n_people)
    solution = list(solutions[0])
    said = " ".join(rng.choice(_SAYS).format(name=who[i], text=render_statement(s, who))
                    for i, s in enumerate(statements))
    listed = ", ".join(who[:-1]) + f", and {who[-1]}"
    quiz = f"{_QUIZ_HEAD.format(n=n_people, names=listed)} {said} {_QUIZ_TAIL}"
    fmt = "\n".join(f"({i + 1}) {name} is a {'knight' if k else 'knave'}"
                    for i, (name, k) in enumerate(zip(who, solution)))
    return {"quiz": quiz, "names": who, "solution": solution, "solution_text_format": fmt,
            "statements": repr(statements)}


def to_logic_rl_row(puzzle: dict[str, Any], index: int, split: str = "train") -> dict[str, Any]:
    """The puzzle as a Logic-RL parquet row (prompt with a prefilled ``<think>``)."""
    return {
        "data_source": "kk_logic",
        "prompt": [{"role": "user", "content": _SYSTEM + puzzle["quiz"] + _ASSISTANT}],
        "ability": "logic",
        "reward_model": {"style": "rule",
                         "ground_truth": {"solution_text_format": puzzle["solution_text_format"],
                                          "statements": puzzle["statements"]}},
        "extra_info": {"split": split, "index": index},
        **{k: puzzle[k] for k in ("quiz", "names", "solution", "solution_text_format", "statements")},
    }
