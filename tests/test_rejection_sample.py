"""dataset.rejection_sample: generation output -> SFT parquet, for knights-and-knaves and math."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dataset.rejection_sample import rejection_sample, select
from relift.rewards.kk_prompts import make_prompt

REPO = Path(__file__).resolve().parents[1]
GT = {"solution_text_format": "(1) Zoey is a knight\n(2) Oliver is a knave", "statements": "()"}
RIGHT = "ok </think><answer>(1) Zoey is a knight\n(2) Oliver is a knave</answer>"
WRONG = "ok </think><answer>(1) Zoey is a knave\n(2) Oliver is a knave</answer>"
TWO_THINKS = "<think>ok </think><answer>(1) Zoey is a knight\n(2) Oliver is a knave</answer>"  # prefill + this fails


@pytest.fixture()
def gen_file(tmp_path) -> list[str]:
    kk_prompt = [{"role": "user", "content": make_prompt("Zoey said ... who is who?", "compact")}]
    rows = [
        {"data_source": "kk_logic", "prompt": kk_prompt, "reward_model": {"ground_truth": GT},
         "extra_info": {"index": 0}, "responses": [WRONG, RIGHT, TWO_THINKS, RIGHT + " "], "response_lengths": [1] * 4},
        {"data_source": "kk_logic", "prompt": kk_prompt, "reward_model": {"ground_truth": GT},
         "extra_info": {"index": 1}, "responses": [WRONG, TWO_THINKS, WRONG, WRONG], "response_lengths": [1] * 4},
        {"data_source": "math", "prompt": [{"role": "user", "content": "2+2?"}],
         "reward_model": {"ground_truth": "4"}, "extra_info": {"index": 2},
         "responses": ["\\boxed{4}", "\\boxed{5}", "so \\boxed{4}", "\\boxed{3}"], "response_lengths": [1] * 4},
    ]
    # one file per task (a ground truth is a dict for K&K, a string for math: parquet keeps one type)
    pd.DataFrame(rows[:2]).to_parquet(tmp_path / "gen_kk.parquet")
    pd.DataFrame(rows[2:]).to_parquet(tmp_path / "gen_math.parquet")
    return [str(tmp_path / "gen_kk.parquet"), str(tmp_path / "gen_math.parquet")]


def test_select_modes():
    rng = random.Random(0)
    assert select([False, True, False, True], "first", rng) == [1]
    assert select([False, True, False, True], "all", rng) == [1, 3]
    assert select([False, False], "all", rng) == []
    picks = {select([True, False, True, True], "random", random.Random(s))[0] for s in range(40)}
    assert picks == {0, 2, 3}


def test_first_keeps_one_correct_per_prompt(gen_file, tmp_path):
    out = tmp_path / "sft.parquet"
    summary = rejection_sample(gen_file[0], out, keep="first", num_workers=1)
    assert summary["by_source"]["kk_logic"] == {"prompts": 2, "responses": 8, "correct_responses": 2,
                                                "prompts_with_correct": 1, "rows_written": 1}
    df = pd.read_parquet(out)
    assert list(df["target"]) == [RIGHT] and list(df["sample"]) == [1] and list(df["score"]) == [3.0]
    assert "responses" not in df.columns and list(df["data_source"]) == ["kk_logic"]
    summary = rejection_sample(gen_file[1], tmp_path / "math.parquet", keep="first", num_workers=1)
    assert summary["by_source"]["math"]["correct_responses"] == 2
    df = pd.read_parquet(tmp_path / "math.parquet")
    assert list(df["target"]) == ["\\boxed{4}"] and list(df["score"]) == [1.0]


def test_all_and_random(gen_file, tmp_path):
    summary = rejection_sample(gen_file[0], tmp_path / "all.parquet", keep="all", num_workers=1)
    assert summary["total"]["rows_written"] == 2
    assert list(pd.read_parquet(tmp_path / "all.parquet")["sample"]) == [1, 3]
    samples = {int(pd.read_parquet(tmp_path / "r.parquet")["sample"][0])
               for seed in range(12) if rejection_sample(gen_file[0], tmp_path / "r.parquet", keep="random",
                                                          seed=seed, num_workers=1)}
    assert samples == {1, 3}


def test_mixed_ground_truth_types_get_a_clear_error(gen_file, tmp_path):
    with pytest.raises(ValueError, match="need one run each"):
        rejection_sample(gen_file, tmp_path / "mixed.parquet", keep="first", num_workers=1)
    assert not (tmp_path / "mixed.parquet").exists()


def test_output_feeds_the_sft_dataset(gen_file, tmp_path):
    from relift.data.sft_dataset import SFTDataset
    from relift.models.tiny import build_tiny_tokenizer

    rejection_sample(gen_file[0], tmp_path / "sft.parquet", keep="first", num_workers=1)
    tok = build_tiny_tokenizer()
    ds = SFTDataset(str(tmp_path / "sft.parquet"), tok, max_length=256)
    item = ds[0]
    ids = item["input_ids"][item["attention_mask"].bool()]
    prompt = pd.read_parquet(gen_file[0])["prompt"][0][0]["content"]
    # the templated prompt is used as is; the completion ends with the end-of-turn (<|im_end|>\n) and EOS
    assert tok.decode(ids) == prompt + RIGHT + "<|im_end|>\n<|im_end|>"
    assert tok.decode(item["input_ids"][item["loss_mask"].bool()]) == RIGHT + "<|im_end|>\n<|im_end|>"


def test_cli_prints_counts_and_fails_cleanly(gen_file, tmp_path):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "dataset.rejection_sample", "--input", gen_file[0], "--output",
                          str(tmp_path / "o.parquet"), "--num-workers", "1"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert "| kk_logic | 2 | 8 | 2 | 1 | 1 |" in res.stdout
    assert json.loads(res.stdout.strip().splitlines()[-1])["total"]["rows_written"] == 1
    df = pd.read_parquet(gen_file[0])
    df["responses"] = [[WRONG]] * 2
    df.to_parquet(tmp_path / "none.parquet")
    res = subprocess.run([sys.executable, "-m", "dataset.rejection_sample", "--input", str(tmp_path / "none.parquet"),
                          "--output", str(tmp_path / "o2.parquet"), "--num-workers", "1"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "no correct response" in res.stderr
    assert not (tmp_path / "o2.parquet").exists()
