"""Evaluation analysis end to end on hand-made samples: pooling of duplicated rows, the knights-and-knaves
per-size table, the model comparison table, the capability CLI (tables + PNGs) and validation's
capability metrics. Every expected number is worked out by hand in a comment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from relift.protocol import DataProto
from trainer import main_capability, main_compare, main_eval
from trainer.plan import compose_config
from trainer.validation import run_validation


def _eval(tmp_path: Path, rows: list[dict], *overrides: str) -> dict:
    path = tmp_path / "gen.parquet"
    pd.DataFrame(rows).to_parquet(path)
    cfg = compose_config("evaluation", [f"data.path={path}", "reward.num_workers=1", *overrides])
    return main_eval.evaluate(cfg)


def _row(source: str, prompt: str, truth, responses: list[str]) -> dict:
    return {"data_source": source, "prompt": [{"role": "user", "content": prompt}],
            "reward_model": {"style": "rule", "ground_truth": truth}, "responses": responses}


def test_duplicated_rows_are_pooled_into_one_question(tmp_path, capsys):
    # "q1" appears 3 times with 2 samples each -> one question with n = 6, c = 1 + 2 + 0 = 3;
    # "q2" likewise: c = 0 + 0 + 2 = 2. mean@6 = (3/6 + 2/6) / 2 = 5/12. pass@6 = 1 for both.
    rows = [_row("aime24", "q1", "4", ["\\boxed{4}", "\\boxed{5}"]),
            _row("aime24", "q2", "7", ["\\boxed{1}", "\\boxed{2}"]),
            _row("aime24", "q1", "4", ["\\boxed{4}", "\\boxed{4}"]),
            _row("aime24", "q2", "7", ["\\boxed{1}", "\\boxed{1}"]),
            _row("aime24", "q1", "4", ["\\boxed{0}", "\\boxed{0}"]),
            _row("aime24", "q2", "7", ["\\boxed{7}", "\\boxed{7}"])]
    payload = _eval(tmp_path, rows)
    aime = payload["per_source"]["aime24"]
    assert aime["n"] == 6 and aime["num_prompts"] == 2 and aime["rows"] == 6
    assert aime["mean@6"] == pytest.approx(5 / 12)
    assert aime["pass@6"] == pytest.approx(1.0)
    # pass@2 of (n=6, c=3): 1 - C(3,2)/C(6,2) = 1 - 3/15 = 0.8; of (6, 2): 1 - C(4,2)/C(6,2) = 1 - 6/15 = 0.6
    assert aime["pass@2"] == pytest.approx(0.7)
    out = capsys.readouterr().out
    assert "aime24: 6 rows pooled into 2 questions (3 copies each): n = 2 samples x 3 copies = 6 per question" in out
    scores = pd.read_parquet(tmp_path / "gen.scores.parquet")
    assert sorted(set(scores["question_id"])) == [0, 1] and sorted(set(scores["prompt_id"])) == list(range(6))

    # the same file with pooling off: 6 questions of n = 2
    payload = _eval(tmp_path, rows, "eval.pool_duplicates=false")
    assert payload["per_source"]["aime24"]["num_prompts"] == 6 and payload["per_source"]["aime24"]["n"] == 2


def test_uneven_copies_are_not_pooled(tmp_path, caplog):
    # q1 twice, q2 once: pooling would give n = 2 and n = 1 in one table row, so every row stays a question
    rows = [_row("aime24", "q1", "4", ["\\boxed{4}"]), _row("aime24", "q1", "4", ["\\boxed{5}"]),
            _row("aime24", "q2", "7", ["\\boxed{7}"]), _row("math500", "q3", "1", ["\\boxed{1}"]),
            _row("math500", "q3", "1", ["\\boxed{1}"])]
    payload = _eval(tmp_path, rows)
    assert payload["per_source"]["aime24"]["num_prompts"] == 3 and payload["per_source"]["aime24"]["n"] == 1
    assert payload["per_source"]["aime24"]["mean@1"] == pytest.approx(2 / 3)
    assert payload["per_source"]["math500"]["num_prompts"] == 1 and payload["per_source"]["math500"]["n"] == 2
    assert "aime24: duplicated prompts repeat unevenly (copies per question: [1, 2])" in caplog.text


def _kk_truth(names_roles: list[tuple[str, str]]) -> dict:
    text = "\n".join(f"({i + 1}) {n} is a {r}" for i, (n, r) in enumerate(names_roles))
    return {"solution_text_format": text, "statements": "()"}


def _kk_answer(names_roles: list[tuple[str, str]]) -> str:
    body = "\n".join(f"({i + 1}) {n} is a {r}" for i, (n, r) in enumerate(names_roles))
    return f"<think>reasoning</think><answer>{body}</answer>"


def test_kk_people_groups_one_row_per_puzzle_size(tmp_path):
    two = [("Ann", "knight"), ("Bob", "knave")]
    three = [("Cy", "knave"), ("Di", "knave"), ("Ed", "knight")]
    wrong3 = [("Cy", "knight"), ("Di", "knave"), ("Ed", "knight")]
    rows = [_row("kk_logic", "p2a", _kk_truth(two), [_kk_answer(two)]),                  # 2ppl: right
            _row("kk_logic", "p3a", _kk_truth(three), [_kk_answer(three)]),              # 3ppl: right
            _row("kk_logic", "p3b", _kk_truth(three), [_kk_answer(wrong3)])]             # 3ppl: wrong
    payload = _eval(tmp_path, rows, "eval.group_by=kk_people")
    per = payload["per_source"]
    assert list(per) == ["kk_logic/2ppl", "kk_logic/3ppl"]
    assert per["kk_logic/2ppl"]["mean@1"] == 1.0 and per["kk_logic/3ppl"]["mean@1"] == 0.5
    assert payload["average"]["mean@1"] == pytest.approx(0.75)  # unweighted over the sizes, as the KK tables
    assert main_eval.kk_people("(1) A is a knight\n(2) B is a knave\n") == 2
    with pytest.raises(ValueError, match="solution_text_format"):
        main_eval.kk_people({"x": 1}, "f row 0")


# ------------------------------------------------------------------------------------------ compare

def _result(folder: Path, per_source: dict, name: str = "gen.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({"per_source": per_source}))
    return folder


def test_compare_table_from_result_folders(tmp_path, capsys):
    sft = _result(tmp_path / "sft", {"aime24": {"n": 16, "num_prompts": 30, "mean@16": 0.10, "pass@1": 0.10},
                                     "math500": {"n": 16, "num_prompts": 500, "mean@16": 0.50, "pass@1": 0.50}})
    rl = _result(tmp_path / "rl", {"aime24": {"n": 16, "num_prompts": 30, "mean@16": 0.20, "pass@1": 0.20}})
    _result(rl, {"math500": {"n": 16, "num_prompts": 500, "mean@16": 0.60, "pass@1": 0.60}}, "other.json")
    out = tmp_path / "cmp" / "table"
    assert main_compare.main([str(sft), f"GRPO={rl}", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mean@n (%), n = 16 samples per question" in text
    assert "| model | aime24 | math500 | average |" in text
    assert "| sft | 10.0 | 50.0 | 30.0 |" in text            # (10 + 50) / 2
    assert "| GRPO | 20.0 | 60.0 | 40.0 |" in text            # two result files of one model merged
    assert (out.parent / "table.csv").read_text().splitlines() == ["model,aime24,math500,average",
                                                                   "sft,0.1,0.5,0.3", "GRPO,0.2,0.6,0.4"]
    assert (out.parent / "table.md").read_text().startswith("mean@n (%)")


def test_compare_missing_benchmark_and_errors(tmp_path, capsys):
    a = _result(tmp_path / "a", {"x": {"n": 4, "num_prompts": 2, "mean@4": 0.5, "maj@4": 1.0}})
    b = _result(tmp_path / "b", {"x": {"n": 8, "num_prompts": 2, "mean@8": 0.25, "maj@8": 0.5},
                                 "y": {"n": 8, "num_prompts": 2, "mean@8": 1.0, "maj@8": 1.0}})
    assert main_compare.main([str(a), str(b), "--metric", "maj@n", "--out", str(tmp_path / "t")]) == 0
    text = capsys.readouterr().out
    assert "| a | 100.0 | - | - |" in text and "| b | 50.0 | 100.0 | 75.0 |" in text
    assert "n differs: a: x 4; b: x 8, y 8" in text
    assert main_compare.main([str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    _result(tmp_path / "c", {"x": {"n": 1, "num_prompts": 1, "mean@1": 1.0}})
    _result(tmp_path / "c", {"x": {"n": 1, "num_prompts": 1, "mean@1": 0.0}}, "again.json")
    assert main_compare.main([str(tmp_path / "c")]) == 2
    assert "benchmark 'x' is in both" in capsys.readouterr().err
    assert main_compare.main([str(a), "--metric", "best@3"]) == 2


# ------------------------------------------------------------------------------------------ capability CLI

def _scores(path: Path, counts: dict[int, tuple[int, int]], source: str = "math500") -> Path:
    rows = [{"data_source": source, "group": source, "prompt_id": q, "question_id": q, "sample": i,
             "correct": i < c} for q, (n, c) in counts.items() for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_capability_cli_tables_and_plots(tmp_path, capsys):
    # SFT: q0 0/4, q1 1/4, q2 2/4, q3 4/4; RL: q0 1/4, q1 0/4, q2 3/4, q3 4/4 (see test_capability.py)
    _scores(tmp_path / "sft" / "run.scores.parquet", {0: (4, 0), 1: (4, 1), 2: (4, 2), 3: (4, 4)})
    rl = _scores(tmp_path / "rl.scores.parquet", {0: (4, 1), 1: (4, 0), 2: (4, 3), 3: (4, 4)})
    out = tmp_path / "cap"
    assert main_capability.main([str(tmp_path / "sft"), f"RL={rl}", "--out_dir", str(out)]) == 0
    md = (out / "capability.md").read_text()
    # pass@1 = 43.75 -> 43.8 (SFT), RL (1+0+3+4)/16 = 50.0; SFT pass@2 = (0 + 1/2 + 5/6 + 1) / 4 = 58.3;
    # pass@4 = 75.0 for both
    assert "| sft | 4 | 4 | 43.8 | 58.3 | 75.0 |" in md
    assert "| RL | 4 | 4 | 50.0 | 62.5 | 75.0 |" in md      # RL pass@2: (0.5 + 0 + 1 + 1) / 4
    assert "| sft | 1 | 0 | 1 | 0 | 1 | 0 | 0 | 0 | 0 | 1 |" in md
    assert "| 0 | 1 | 0.0 | 25.0 | 1 | 0 | 1 | 0 |" in md      # the never-solved question gained
    assert "| all | 4 | 43.8 | 50.0 | 1 | 1 | 2 | 1 |" in md
    for name in ("passk_math500.png", "solve_rate_math500.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "capability.json").read_text())
    assert data["math500"]["curves"]["RL"]["4"] == pytest.approx(0.75)
    assert "wrote" in capsys.readouterr().out
    # a folder with no score file is refused with its name
    (tmp_path / "empty").mkdir()
    assert main_capability.main([str(tmp_path / "empty"), "--out_dir", str(out)]) == 2
    assert "expected exactly one *.scores.parquet" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ validation

class _Actor:
    """Two samples per prompt; prompt 0 answers right once, prompt 1 never."""

    def generate_sequences(self, gen_in: DataProto) -> DataProto:
        assert gen_in.meta_info["validate"]  # the engine samples with its own val_kwargs (n = 2 here)
        n = 2
        rows = len(gen_in) * n
        return DataProto.from_dict(tensors={"responses": torch.zeros(rows, 3, dtype=torch.long),
                                            "response_mask": torch.ones(rows, 3, dtype=torch.long)})


class _Reward:
    def compute_score(self, full: DataProto) -> DataProto:
        acc = np.array([1.0, 0.0, 0.0, 0.0])  # rows: p0 s0, p0 s1, p1 s0, p1 s1
        scores = torch.zeros(len(full), 3)
        scores[:, -1] = torch.as_tensor(acc, dtype=torch.float32)
        return DataProto.from_dict(tensors={"token_level_scores": scores},
                                   non_tensors={"acc": acc, "pred": np.array(["1", "2", "3", "3"], dtype=object)})


def test_validation_logs_capability_when_asked():
    batch = DataProto.from_dict(tensors={"input_ids": torch.ones(2, 2, dtype=torch.long),
                                         "attention_mask": torch.ones(2, 2, dtype=torch.long),
                                         "position_ids": torch.zeros(2, 2, dtype=torch.long)},
                                non_tensors={"data_source": np.array(["toy", "toy"], dtype=object)})
    metrics, _ = run_validation(_Actor(), _Reward(), [batch], capability=True)
    # pass@2: p0 (n 2, c 1) -> 1, p1 -> 0: 0.5; solve rates 1/2 -> bin (3/8,4/8], 0 -> bin 0
    assert metrics["val-cap/toy/pass@2"] == pytest.approx(0.5)
    assert metrics["val-cap/toy/solve_rate/eq0"] == 0.5 and metrics["val-cap/toy/solve_rate/le4_8"] == 0.5
    assert metrics["val-core/toy/acc/mean@2"] == pytest.approx(0.25)
    plain, _ = run_validation(_Actor(), _Reward(), [batch])
    assert not any(k.startswith("val-cap/") for k in plain)


def test_relift_validation_file_is_pooled_per_question(shared_data, tmp_path, capsys):
    """ReLIFT's valid.parquet: AIME24/AIME25 rows repeated 8x, AMC 4x. One response per row holding
    the reference answer (so every sample is right) must give 30 AIME questions with n = 8, 83 AMC
    questions with n = 4, and MATH-500 / OlympiadBench unchanged."""
    frame = pd.read_parquet(shared_data / "relift" / "valid.parquet")
    frame["responses"] = [["\\boxed{" + str(rm["ground_truth"]) + "}"] for rm in frame["reward_model"]]
    keep = frame[frame["data_source"].isin(["aime", "amc"])]   # the duplicated sources, to keep the test short
    path = tmp_path / "valid_gen.parquet"
    keep.to_parquet(path)
    payload = main_eval.evaluate(compose_config("evaluation", [f"data.path={path}", "reward.num_workers=1"]))
    aime, amc = payload["per_source"]["aime"], payload["per_source"]["amc"]
    assert (aime["rows"], aime["num_prompts"], aime["n"]) == (240, 30, 8)
    assert (amc["rows"], amc["num_prompts"], amc["n"]) == (332, 83, 4)
    assert aime["mean@8"] == 1.0
    out = capsys.readouterr().out
    assert "aime: 240 rows pooled into 30 questions (8 copies each): n = 1 samples x 8 copies = 8" in out
