"""dataset/prepare_relift.py (and ReLIFT's `cd dataset && python prepare_train.py`) on a small local file
in the real layout of Elliott/Openr1-Math-46k-8192; the public ReLIFT valid.parquet with the RL reader."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dataset.prepare_relift import main, normalise_row, prepare
from relift.data import RLDataset
from relift.models.tiny import build_tiny_tokenizer

REPO = Path(__file__).resolve().parents[1]
SYSTEM = ("Your task is to follow a systematic, thorough reasoning process before providing the final solution. "
          "Put the final answer in \\boxed{}.")


def hub_rows(n: int = 5) -> list[dict]:
    """Rows as the hub set holds them: [system, user] prompt, one assistant target with the R1 trace."""
    rows = []
    for i in range(n):
        rows.append({
            "data_source": "openr1",
            "prompt": [{"content": SYSTEM, "role": "system"}, {"content": f"What is {i} + {i}?", "role": "user"}],
            "target": [{"content": f"<think>\n{i}+{i}={2 * i}\n</think>\n\nThe answer is \\boxed{{{2 * i}}}.",
                        "role": "assistant"}],
            "ability": "math",
            "reward_model": {"ground_truth": str(2 * i), "style": "rule"},
            "extra_info": {"index": i, "split": "default"},
        })
    return rows


@pytest.fixture()
def hub_parquet(tmp_path) -> Path:
    path = tmp_path / "hub" / "train-00000-of-00001.parquet"
    path.parent.mkdir()
    pd.DataFrame(hub_rows()).to_parquet(path)
    return path


def test_prepare_from_local_parquet_and_read_back(hub_parquet, tmp_path):
    out = prepare(str(hub_parquet.parent), tmp_path / "openr1.parquet")
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["data_source", "prompt", "target", "ability", "reward_model", "extra_info"]
    assert len(frame) == 5
    tok = build_tiny_tokenizer(model_max_length=4096)
    ds = RLDataset(out, tok, max_prompt_length=512, max_target_length=128)
    item = ds[3]
    assert ds.has_target and item["reward_model"]["ground_truth"] == "6"
    assert item["raw_prompt"][1] == {"role": "user", "content": "What is 3 + 3?"}
    target_ids = item["tgt_input_ids"][item["tgt_attention_mask"].bool()].tolist()
    assert tok.decode(target_ids) == "<think>\n3+3=6\n</think>\n\nThe answer is \\boxed{6}.<|im_end|>"


def test_strip_think_and_string_targets(tmp_path):
    rows = hub_rows(2)
    rows[1]["target"] = "<think>\nplain string</think> \\boxed{2}"
    pd.DataFrame(rows).to_json(tmp_path / "rows.jsonl", orient="records", lines=True)
    out = prepare(str(tmp_path / "rows.jsonl"), tmp_path / "o.parquet", strip_think=True)
    frame = pd.read_parquet(out)
    assert frame.loc[0, "target"][0]["content"] == "0+0=0\n</think>\n\nThe answer is \\boxed{0}."
    assert list(frame.loc[1, "target"]) == [{"content": "plain string</think> \\boxed{2}", "role": "assistant"}]


def test_limit_and_missing_extra_info(hub_parquet, tmp_path):
    frame = pd.read_parquet(hub_parquet).drop(columns=["extra_info"])
    frame.to_parquet(tmp_path / "noextra.parquet")
    out = prepare(str(tmp_path / "noextra.parquet"), tmp_path / "o.parquet", limit=2)
    back = pd.read_parquet(out)
    assert len(back) == 2 and back.loc[1, "extra_info"] == {"index": 1, "split": "train"}


def test_bad_rows_name_file_row_and_column(tmp_path):
    with pytest.raises(ValueError, match=r"x row 0: missing column\(s\) \['target'\]"):
        normalise_row({k: v for k, v in hub_rows(1)[0].items() if k != "target"}, 0, "x row 0")
    bad = hub_rows(1)[0]
    bad["reward_model"] = {"style": "rule"}
    with pytest.raises(ValueError, match="ground_truth"):
        normalise_row(bad, 0, "f row 0")
    rows = hub_rows(3)
    rows[2]["prompt"] = "not messages"
    with open(tmp_path / "bad.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    assert main(["--source", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "o.parquet")]) == 2
    with pytest.raises(ValueError, match=r"bad.jsonl row 2: column 'prompt'"):
        prepare(str(tmp_path / "bad.jsonl"), tmp_path / "o.parquet")
    assert main(["--source", str(tmp_path / "nothing.parquet"), "--out", str(tmp_path / "o.parquet")]) == 2


@pytest.mark.skipif(importlib.util.find_spec("datasets") is not None, reason="datasets installed: would go online")
def test_hub_id_without_datasets_explains(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "o.parquet")]) == 2
    assert "needs the `datasets` package" in capsys.readouterr().err


def test_relift_readme_command_from_dataset_dir(hub_parquet, tmp_path):
    """`cd dataset && python prepare_train.py` (ReLIFT's README), here with a local source."""
    res = subprocess.run([sys.executable, "prepare_train.py", "--source", str(hub_parquet)], cwd=REPO / "dataset",
                         capture_output=True, text=True, timeout=120)
    try:
        assert res.returncode == 0, res.stderr
        assert "wrote 5 rows" in res.stdout
        assert len(pd.read_parquet(REPO / "dataset" / "train_data" / "openr1.parquet")) == 5
    finally:
        out = REPO / "dataset" / "train_data"
        if out.exists():
            for f in out.iterdir():
                f.unlink()
            out.rmdir()
    helped = subprocess.run([sys.executable, "prepare_train.py", "--help"], cwd=REPO / "dataset",
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--source" in helped.stdout


def test_public_relift_valid_parquet_loads_with_the_rl_reader(shared_data):
    path = shared_data / "relift" / "valid.parquet"
    if not path.exists():
        pytest.skip("shared data copy not present")
    tok = build_tiny_tokenizer(model_max_length=16384)
    ds = RLDataset(path, tok, max_prompt_length=8192, max_response_length=64)
    assert len(ds) == 240 + 240 + 332 + 500 + 675
    assert not ds.has_target  # validation rows carry no demonstration
    sources = json.loads(json.dumps(sorted({ds[i]["data_source"] for i in (0, 300, 700, 1000, 1900)})))
    assert set(sources) <= {"aime", "aime25", "amc", "math", "olympiad_bench"}
    item = ds[0]
    assert item["raw_prompt"][0]["role"] == "system" and item["reward_model"]["ground_truth"] == "204"
