"""dataset.kk: generated puzzles match the benchmark's statement distribution; convert keeps the layout."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dataset.kk import convert, generate, parse_people
from dataset.kk_stats import depth, puzzle_stats
from relift.rewards import kk
from relift.rewards.kk_generator import NAMES, TEMPLATES, generate_puzzles, solve
from relift.rewards.kk_prompts import make_prompt

REPO = Path(__file__).resolve().parents[1]
SIZES = range(3, 8)
# tolerances (absolute): 1000 generated statements per size give a standard error of ~0.005 on a share
OP_TOL = 0.03
DEPTH_TOL = 0.03


@pytest.fixture(scope="module")
def reference(shared_data):
    rows = []
    for n in SIZES:
        rows += pd.read_parquet(shared_data / "kk_logic_rl" / f"{n}ppl" / "train.parquet").to_dict("records")
    return puzzle_stats(rows)


@pytest.fixture(scope="module")
def generated():
    return puzzle_stats([p for n in SIZES for p in generate_puzzles(n, 200, seed=0)])


def test_reference_is_what_the_issue_measured(reference):
    # the Logic-RL data: about 15% bare claims, depth <= 2, all 18 sentence templates, width 2
    assert 0.14 < reference["leaf_fraction"] < 0.17
    assert reference["max_depth"] == 2 and reference["mean_width"] == 2.0
    assert reference["templates"] == len(TEMPLATES) == 18


def test_operator_shares_match_the_benchmark(reference, generated):
    for key in ("top_ops", "node_ops"):
        assert set(generated[key]) == set(reference[key])
        for op, share in reference[key].items():
            assert abs(generated[key][op] - share) < OP_TOL, (key, op, generated[key][op], share)
    assert abs(generated["leaf_fraction"] - reference["leaf_fraction"]) < OP_TOL


def test_depth_width_and_variety_match(reference, generated):
    assert abs(generated["mean_depth"] - reference["mean_depth"]) < DEPTH_TOL
    assert generated["max_depth"] == reference["max_depth"] == 2
    assert generated["mean_width"] == reference["mean_width"]
    assert generated["templates"] == reference["templates"]
    assert generated["names"] >= 45 and reference["names"] >= 45


def test_the_old_easy_distribution_would_fail(reference):
    """A generator with 32% bare claims (what the issue measured before) is outside the tolerance."""
    assert abs(0.32 - reference["leaf_fraction"]) > OP_TOL


def test_generated_puzzles_are_unique_and_well_formed():
    puzzles = generate_puzzles(4, 300, seed=3)
    keys = [p["statements"] for p in puzzles]
    assert len(set(keys)) == len(keys)
    for p in puzzles[:50]:
        statements = ast.literal_eval(p["statements"])
        assert solve(statements) == [tuple(p["solution"])]
        assert all(depth(s) <= 2 for s in statements)
        for i, s in enumerate(statements):
            assert s != ("lying", i)
            if s[0] in ("and", "or", "->", "<=>"):
                assert len(set(s[1:])) == len(s) - 1  # operands are distinct
        assert set(p["names"]) <= set(NAMES)
        assert p["solution_text"].endswith(".") and ", and " in p["solution_text"]
    assert generate_puzzles(4, 5, seed=3) == puzzles[:5]          # seeded
    assert generate_puzzles(4, 5, seed=4) != puzzles[:5]


def test_depth_two_wording_matches_the_benchmark(shared_data):
    """The quiz text of a reference row is rebuilt exactly from its statements, names and templates."""
    from relift.rewards.kk_generator import render_statement

    df = pd.read_parquet(shared_data / "kk_logic_rl" / "5ppl" / "train.parquet")
    hits = 0
    for _, row in df.head(100).iterrows():
        statements = ast.literal_eval(row["statements"])
        for name, s in zip(row["names"], statements):
            text = render_statement(s, list(row["names"]))
            hits += any(t.format(name=name, content=text) in row["quiz"] for t in TEMPLATES)
    assert hits == 500


def test_generate_cli_writes_the_logic_rl_layout(tmp_path, shared_data):
    out = tmp_path / "kk"
    res = subprocess.run([sys.executable, "-m", "dataset.kk", "generate", "--people", "2..3", "--per-size", "9",
                          "--seed", "1", "--out", str(out)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["rows"] == {"2ppl": {"test": 1, "train": 9},
                                                                       "3ppl": {"test": 1, "train": 9}}
    ours = pd.read_parquet(out / "3ppl" / "train.parquet")
    ref = pd.read_parquet(shared_data / "kk_logic_rl" / "3ppl" / "train.parquet")
    required = {"quiz", "names", "solution", "solution_text_format", "statements", "prompt", "reward_model",
                "extra_info", "data_source", "ability", "knight_knave", "solution_text", "index"}
    assert required <= set(ours.columns) and required <= set(ref.columns)
    row = ours.iloc[0]
    assert row["data_source"] == "kk_logic" and row["extra_info"] == {"split": "train", "index": 0}
    assert row["prompt"][0]["content"] == make_prompt(row["quiz"], "instruct")
    assert set(row["reward_model"]["ground_truth"]) == set(ref.iloc[0]["reward_model"]["ground_truth"])
    answer = f"x </think><answer>{row['solution_text_format']}</answer>"
    assert kk.compute_score(answer, row["reward_model"]["ground_truth"]) == 3.0
    test = pd.read_parquet(out / "3ppl" / "test.parquet")
    assert not set(test["statements"]) & set(ours["statements"])


def test_convert_reads_kk_jsonl_with_both_templates(tmp_path, shared_data):
    ref = pd.read_parquet(shared_data / "kk_logic_rl" / "4ppl" / "test.parquet")
    keys = ["quiz", "names", "knight_knave", "solution", "solution_text", "solution_text_format", "cot_head",
            "cot_repeat_steps", "cot_foot", "statements", "index"]
    raw = tmp_path / "raw" / "train"
    raw.mkdir(parents=True)
    with open(raw / "people4_num10.jsonl", "w") as fh:
        for _, r in ref.head(10).iterrows():
            fh.write(json.dumps({k: (r[k].tolist() if hasattr(r[k], "tolist") else r[k]) for k in keys}) + "\n")
    summary = convert([str(tmp_path / "raw")], tmp_path / "instruct", "instruct", test_size=2)
    assert summary == {"4ppl": {"train": 8, "test": 2}}
    got = pd.read_parquet(tmp_path / "instruct" / "4ppl" / "train.parquet")
    # the instruct prompt is byte-identical to Logic-RL's released parquet
    assert [p[0]["content"] for p in got["prompt"]] == [p[0]["content"] for p in ref["prompt"].head(8)]
    assert got["cot_head"].iloc[0] == ref["cot_head"].iloc[0]
    convert([str(raw / "people4_num10.jsonl")], tmp_path / "base", "base")
    base = pd.read_parquet(tmp_path / "base" / "4ppl" / "train.parquet")
    content = base["prompt"].iloc[0][0]["content"]
    assert content.startswith("The User asks a question") and content.endswith("\nAssistant: <think>")
    assert "<|im_start|>" not in content


def test_convert_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "people3_num2.jsonl"
    bad.write_text(json.dumps({"quiz": "q", "names": ["A", "B", "C"], "solution": [True, False, True],
                               "statements": "()"}) + "\n" + json.dumps({"quiz": "q"}) + "\n")
    with pytest.raises(ValueError, match=r"people3_num2.jsonl:2: K&K row lacks key\(s\) \['names', 'solution'"):
        convert([str(bad)], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no such file"):
        convert([str(tmp_path / "nope.jsonl")], tmp_path / "out")


def test_parse_people():
    assert parse_people("2..8") == [2, 3, 4, 5, 6, 7, 8]
    assert parse_people("3,5,7") == [3, 5, 7]
    with pytest.raises(Exception, match="sizes >= 2"):
        parse_people("1..3")


def test_generate_refuses_nonsense(tmp_path):
    with pytest.raises(ValueError, match="per-size"):
        generate(tmp_path, [3], 0, 0)


def test_with_target_and_name_pool(tmp_path):
    generate(tmp_path, [2, 3], 6, seed=2, test_per_size=1, template="compact", with_target=True, name_pool=4)
    df = pd.read_parquet(tmp_path / "3ppl" / "train.parquet")
    assert set(n for names in df["names"] for n in names) <= set(NAMES[:4])
    for _, row in df.iterrows():
        assert row["target"] == f"</think><answer>{row['solution_text_format']}</answer>"
        prompt = row["prompt"][0]["content"]
        assert prompt.endswith("<|im_start|>assistant\n<think>")
        # prompt prefill + target is a fully correct Logic-RL answer
        assert kk.compute_score("<think>" + row["target"], row["reward_model"]["ground_truth"]) == 3.0
    with pytest.raises(ValueError, match="--name-pool must be between 3"):
        generate(tmp_path, [2, 3], 6, seed=2, name_pool=2)
