"""Knights-and-knaves scorer on the Logic-RL scale, over the public Logic-RL test parquets."""

from __future__ import annotations

import pandas as pd
import pytest

from relift.rewards import kk

GT = {"solution_text_format": "(1) Zoey is a knight\n(2) Oliver is a knave", "statements": "()"}
RIGHT = "(1) Zoey is a knight\n(2) Oliver is a knave"


def _rows(shared_data):
    for n in range(3, 8):
        df = pd.read_parquet(shared_data / "kk_logic_rl" / f"{n}ppl" / "test.parquet")
        assert len(df) == 100 and set(df["data_source"]) == {"kk_logic"}
        for _, row in df.iterrows():
            yield n, row


def _flip_first(text: str) -> str:
    """Flip the role of person (1) in a formatted solution."""
    lines = text.split("\n")
    first = lines[0]
    lines[0] = first.replace("knight", "knave") if "knight" in first else first.replace("knave", "knight")
    return "\n".join(lines)


def test_logic_rl_test_sets_full_scale(shared_data):
    seen = 0
    for n, row in _rows(shared_data):
        gt = row["reward_model"]["ground_truth"]
        sol = gt["solution_text_format"]
        names = list(row["names"])
        assert list(kk.parse_ground_truth(gt)) == names
        roles = kk.parse_ground_truth(gt)
        assert [r == "knight" for r in roles.values()] == list(row["solution"])
        # <think> is prefilled by the Logic-RL prompt, so the response starts inside the thought
        assert row["prompt"][0]["content"].endswith("<think>")
        right = f" Step by step.\n</think>\n<answer>\n{sol}\n</answer>"
        flipped = f" Step by step.\n</think>\n<answer>\n{_flip_first(sol)}\n</answer>"
        no_tags = f"Step by step. {sol}"
        unparsed = f" hmm </think><answer>{sol.replace(names[-1], 'Somebody')}</answer>"
        assert kk.compute_score(right, gt) == 3.0
        assert kk.compute_score(flipped, gt) == -0.5
        assert kk.compute_score(no_tags, gt) == -3.0
        assert kk.compute_score(unparsed, gt) == -1.0
        # the ground truth as the bare string works the same
        assert kk.compute_score(right, sol) == 3.0
        d = kk.compute_score_dict(flipped, gt)
        assert d["acc"] == 0.0 and d["format"] is True and d["pred"].count("=") == n
        assert kk.compute_score_dict(right, gt)["acc"] == 1.0
        seen += 1
    assert seen == 500


@pytest.mark.parametrize("response, expected", [
    (f"<think>r</think><answer>{RIGHT}</answer>", 3.0),  # <think> emitted by the model
    (f"r</think><answer>{RIGHT}</answer>", 3.0),  # <think> prefilled (auto)
    (f"<think>r</think><answer>{RIGHT}</answer><answer>{RIGHT}</answer>", -3.0),  # two answers
    (f"<think>r</think><think>s</think><answer>{RIGHT}</answer>", -3.0),  # two thoughts
    (f"<answer>{RIGHT}</answer><think>r</think>", -3.0),  # wrong order
    (f"<think>r</think>{RIGHT}", -3.0),  # no answer tags
    ("<think>r</think><answer>Zoey is a knight and Oliver is a knave</answer>", 3.0),
    ("<think>r</think><answer>zoey IS A KNIGHT, oliver is a knave</answer>", 3.0),  # case
    ("<think>r</think><answer>Zoey is a knight, Oliver is a knave, knights rule</answer>", -1.0),
    ("<think>r</think><answer>Zoey is a knight</answer>", -1.0),  # a person missing
    ("<think>r</think><answer>Zoey is a knave, Oliver is a knight</answer>", -0.5),
    ("<think>r</think><answer></answer>", -1.0),
])
def test_scale_cases(response, expected):
    assert kk.compute_score(response, GT) == expected


def test_think_prefilled_modes():
    no_open = f"r</think><answer>{RIGHT}</answer>"
    with_open = f"<think>r</think><answer>{RIGHT}</answer>"
    assert kk.compute_score(no_open, GT, think_prefilled=False) == -3.0
    assert kk.compute_score(no_open, GT, think_prefilled=True) == 3.0
    assert kk.compute_score(with_open, GT, think_prefilled=True) == -3.0  # two <think> then
    assert kk.compute_score(with_open, GT, think_prefilled=False) == 3.0


def test_answer_is_last_answer_block_and_pred_is_canonical():
    d = kk.compute_score_dict(f"<think>r</think><answer>{RIGHT}</answer>", GT)
    assert d == {"score": 3.0, "acc": 1.0, "format": True,
                 "pred": "Zoey=knight, Oliver=knave"}
    # format fails (two answer blocks) but the last block still gives the parsed prediction
    d = kk.compute_score_dict("<think>r</think><answer>x</answer><answer>Zoey is a knave, "
                              "Oliver is a knave</answer>", GT)
    assert d["score"] == -3.0 and d["acc"] == 0.0 and d["pred"] == "Zoey=knave, Oliver=knave"


def test_bad_ground_truth_raises():
    with pytest.raises(ValueError, match="solution_text_format"):
        kk.compute_score("x", {"statements": "()"})
    with pytest.raises(ValueError, match="cannot parse"):
        kk.compute_score("x", "(1) Zoey might be anything")
    with pytest.raises(TypeError):
        kk.compute_score("x", 3)
    # the reward_model dict itself (ground truth nested one level) is accepted
    assert kk.compute_score(f"r</think><answer>{RIGHT}</answer>", {"ground_truth": GT}) == 3.0


# ------------------------------------------------------------------------- puzzle generator


def test_solver_reproduces_logic_rl_solutions(shared_data):
    import ast

    from relift.rewards.kk_generator import solve

    for _, row in _rows(shared_data):
        statements = ast.literal_eval(row["statements"])
        assert solve(statements) == [tuple(bool(x) for x in row["solution"])]


def test_generator_makes_unique_well_formed_puzzles():
    import ast
    import random

    from relift.rewards.kk_generator import evaluate, generate_puzzle, solve, to_logic_rl_row

    rng = random.Random(0)
    for n in (2, 3, 5, 8):
        puzzle = generate_puzzle(n, rng)
        statements = ast.literal_eval(puzzle["statements"])
        assert len(statements) == n == len(puzzle["names"]) == len(set(puzzle["names"]))
        assert solve(statements) == [tuple(puzzle["solution"])]
        for i, s in enumerate(statements):
            assert s != ("lying", i)
            assert evaluate(s, puzzle["solution"]) == puzzle["solution"][i]
        for name in puzzle["names"]:
            assert name in puzzle["quiz"]
        row = to_logic_rl_row(puzzle, index=7)
        gt = row["reward_model"]["ground_truth"]
        assert row["prompt"][0]["content"].endswith("<think>")
        answer = f" ok </think><answer>{puzzle['solution_text_format']}</answer>"
        assert kk.compute_score(answer, gt) == 3.0
    # seeded: the same seed gives the same puzzle
    assert generate_puzzle(4, 123) == generate_puzzle(4, 123)
    with pytest.raises(ValueError, match="at least 2"):
        generate_puzzle(1)


def test_render_statement():
    from relift.rewards.kk_generator import render_statement

    names = ["Ann", "Bob"]
    s = ("<=>", ("telling-truth", 0), ("not", ("lying", 1)))
    assert render_statement(s, names) == "Ann is a knight if and only if Bob is not a knave"
    s = ("or", ("->", ("lying", 1), ("telling-truth", 0)), ("telling-truth", 1))
    assert render_statement(s, names) == "(if Bob is a knave then Ann is a knight) or Bob is a knight"
