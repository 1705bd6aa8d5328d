"""dataset/build_pairs.py: a generation run + main_eval scores -> SFT and pair parquet by REDI's rules."""

from __future__ import annotations

import pandas as pd
import pytest

from dataset.build_pairs import build_pairs
from relift.data import PairDataset
from relift.models.tiny import build_tiny_tokenizer


def write_run(tmp_path, drop_error: bool = True):
    gen = tmp_path / "gen.parquet"
    pd.DataFrame({
        "data_source": ["toy_arithmetic"] * 4,
        "prompt": [[{"role": "user", "content": f"{i}+1="}] for i in range(4)],
        "reward_model": [{"style": "rule", "ground_truth": str(i + 1)} for i in range(4)],
        "responses": [["w", "c1", "c2"], ["c"], ["w1", "w2"], ["t", "c", "w"]],
    }).to_parquet(gen)
    rows = [(0, 0, False), (0, 1, True), (0, 2, True), (1, 0, True), (2, 0, False), (2, 1, False),
            (3, 0, False), (3, 1, True), (3, 2, False)]
    pd.DataFrame({"data_source": "toy_arithmetic", "prompt_id": [r[0] for r in rows], "sample": [r[1] for r in rows],
                  "score": [float(r[2]) for r in rows], "correct": [r[2] for r in rows], "pred": None,
                  "timeout": [r[:2] == (3, 0) for r in rows], "error": False}
                 ).to_parquet(tmp_path / "gen.scores.parquet")
    return gen


def test_first_correct_and_first_incorrect_and_timeouts_skipped(tmp_path, capsys):
    gen = write_run(tmp_path)
    counts = build_pairs(gen, tmp_path / "out", seed=None)
    assert counts["sft: prompts with >= 1 correct"] == 3
    assert counts["pairs: >= 1 correct and >= 1 incorrect"] == 2
    assert counts["scored without timeout or error"] == 8
    pairs = pd.read_parquet(tmp_path / "out" / "pairs.parquet")
    got = [(r["prompt"][0]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"])
           for _, r in pairs.iterrows()]
    # prompt 3: sample 0 timed out, so its "incorrect" is no verdict; rejected is sample 2
    assert got == [("0+1=", "c1", "w"), ("3+1=", "c", "w")]
    sft = pd.read_parquet(tmp_path / "out" / "sft.parquet")
    assert [r[0]["content"] for r in sft["target"]] == ["c1", "c", "c"]
    assert sft["reward_model"][1]["ground_truth"] == "2"
    assert "[build_pairs] pairs: >= 1 correct and >= 1 incorrect" in capsys.readouterr().out
    ds = PairDataset(tmp_path / "out" / "pairs.parquet", build_tiny_tokenizer(), max_length=64)  # trainable as is
    assert len(ds) == 2


def test_missing_scores_and_foreign_scores(tmp_path):
    gen = write_run(tmp_path)
    (tmp_path / "gen.scores.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"gen\.scores\.parquet' not found; run `python -m trainer\.main_eval"):
        build_pairs(gen, tmp_path / "out")
    pd.DataFrame({"prompt_id": [9], "sample": [0], "correct": [True]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="prompt_id 9 is past the 4 rows"):
        build_pairs(gen, tmp_path / "out", tmp_path / "other.parquet")
