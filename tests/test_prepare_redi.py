"""dataset/prepare_redi.py on a small file in OpenR1-Math-Raw's layout, with rows for every filter."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dataset.prepare_redi import main, prepare
from relift.models.tiny import build_tiny_tokenizer


def raw_row(i: int, *, valid="Yes", source="olympiads", gens=("ok",), llama=(True,), mv=(True,), problem=None):
    return {"problem": problem if problem is not None else f"problem {i}", "solution": "s", "answer": str(i),
            "problem_type": "Algebra", "question_type": "math-word-problem", "problem_is_valid": valid,
            "solution_is_valid": "Yes", "source": source, "synthetic": False, "generations": list(gens),
            "generations_count": len(gens),
            "correctness": {"llama_verification": list(llama), "math_verify_answer": list(mv),
                            "math_verify_reparsed_answer": list(mv)},
            "reparsed_answers": [str(i)] * len(gens), "messages": []}


ROWS = [
    raw_row(0, gens=("w0", "c1", "c2"), llama=(True, True, True), mv=(False, True, True)),  # pair (c1, w0)
    raw_row(1, gens=("c0", "c1"), llama=(True, True), mv=(True, True)),                  # sft only
    raw_row(2, gens=("a", "b"), llama=(True, False), mv=(False, True)),                   # no generation passes both
    raw_row(3, valid="No"),                                                               # invalid problem
    raw_row(4, valid=" yes "),                                                            # valid, spaces/case
    raw_row(5, source="cn_k12", gens=("c", "w"), llama=(True, False), mv=(True, False)),  # dropped source
    raw_row(6, gens=("c", "w"), llama=(True,), mv=(True, False)),                          # mismatched flags
    raw_row(7, gens=()),                                                                  # no generations
    raw_row(8, gens=("x" * 60, "w"), llama=(True, False), mv=(True, True)),               # completion too long
    raw_row(9, gens=("c", "w"), llama=(True, True), mv=(True, False), problem="p" * 80),  # prompt too long
]


def test_every_filter_and_the_selected_generations(tmp_path, capsys):
    tok = build_tiny_tokenizer()
    counts = prepare(pd.DataFrame(ROWS), tok, tmp_path, max_prompt_tokens=60, max_completion_tokens=40)
    assert counts == {
        "raw rows": 10, "problem_is_valid == yes": 9, "source != cn_k12": 8,
        "with problem, generations, matching flags": 6,
        "sft: >= 1 correct (llama AND math-verify)": 5, "pairs: >= 1 correct and >= 1 incorrect": 3,
        "sft: prompt <= 60, completion <= 40": 3, "pairs: prompt <= 60, both <= 40": 1}
    out = capsys.readouterr().out
    assert "source != cn_k12" in out and "8" in out  # printed after each filter
    sft = pd.read_parquet(tmp_path / "sft.parquet")
    by_problem = {r["prompt"][0]["content"]: r for _, r in sft.iterrows()}
    assert sorted(by_problem) == ["problem 0", "problem 1", "problem 4"]
    assert by_problem["problem 0"]["target"][0]["content"] == "c1"   # the first generation passing both checks
    assert by_problem["problem 1"]["target"][0]["content"] == "c0"
    pairs = pd.read_parquet(tmp_path / "pairs.parquet")
    assert len(pairs) == 1
    row = pairs.iloc[0]
    assert row["prompt"][0]["content"] == "problem 0"
    assert row["chosen"][0]["content"] == "c1" and row["rejected"][0]["content"] == "w0"
    assert json.loads((tmp_path / "counts.json").read_text()) == counts


def test_shuffle_seed_42_orders_rows_like_datasets(tmp_path):
    tok = build_tiny_tokenizer()
    rows = [raw_row(i, gens=("c", "w"), llama=(True, False), mv=(True, True)) for i in range(20)]
    prepare(pd.DataFrame(rows), tok, tmp_path)
    want = np.random.default_rng(42).permutation(20).tolist()
    for name in ("sft", "pairs"):
        order = [r["raw_index"] for r in pd.read_parquet(tmp_path / f"{name}.parquet")["extra_info"]]
        assert order == want


def test_cli_on_a_parquet_file_and_missing_columns(tmp_path):
    tok_dir = tmp_path / "tok"
    build_tiny_tokenizer().save_pretrained(tok_dir)
    raw = tmp_path / "raw.parquet"
    pd.DataFrame(ROWS).to_parquet(raw)
    counts = main(["--input", str(raw), "--tokenizer", str(tok_dir), "--out", str(tmp_path / "out")])
    assert counts["pairs: >= 1 correct and >= 1 incorrect"] == 3
    pd.DataFrame([{"problem": "p"}]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(KeyError, match=r"bad\.parquet: column\(s\) \['answer', 'problem_is_valid'"):
        main(["--input", str(tmp_path / "bad.parquet"), "--tokenizer", str(tok_dir), "--out", str(tmp_path / "o")])
