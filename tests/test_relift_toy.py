"""The ReLIFT-vs-GRPO toy: data split, the hard source's scorer, the report's json, the script's --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dataset.relift_toy import HARD_SOURCE, write_toy
from relift.rewards import compute_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples" / "quickstart"))
import relift_report  # noqa: E402


def test_toy_split(tmp_path):
    summary = write_toy(tmp_path, n_train=400, n_val=80, hard_level=4, seed=0)
    sft, rl, val = (pd.read_parquet(tmp_path / f"{n}.parquet") for n in ("sft", "rl", "val"))
    level = lambda f: f["extra_info"].map(lambda e: e["difficulty"])  # noqa: E731
    assert set(level(sft)) == {1, 2, 3} and set(level(rl)) == {1, 2, 3, 4}
    assert len(rl) == 400 and len(sft) == (level(rl) != 4).sum() == summary["sft"]["rows"]
    assert all(len(t) == 1 and t[0]["content"] for t in rl["target"])  # every RL row has a demonstration
    assert set(rl["data_source"]) == {"toy_arithmetic"}
    hard = val[level(val) == 4]
    assert len(hard) > 0 and set(hard["data_source"]) == {HARD_SOURCE}
    assert set(val[level(val) != 4]["data_source"]) == {"toy_arithmetic"}
    train_q = {p[0]["content"] for p in rl["prompt"]}
    assert not any(p[0]["content"] in train_q for p, lv in zip(val["prompt"], level(val)) if lv >= 2)
    with pytest.raises(ValueError, match="hard level 5"):
        write_toy(tmp_path / "x", n_train=10, n_val=2, levels=(1, 2), hard_level=5)


def test_hard_source_is_scored_like_toy_arithmetic():
    for source in ("toy_arithmetic", HARD_SOURCE):
        assert compute_score(source, "3+5=8 \\boxed{168}", "168")["score"] == 1.0
        assert compute_score(source, "\\boxed{167}", "168")["score"] == 0.0


def _write_metrics(path: Path, vals: list[tuple[int, float, float, float]], demo: float | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for step, hard, rest, p4 in vals:
        lines.append({"step": step, f"val-core/{HARD_SOURCE}/acc/mean@4": hard,
                      f"val-core/{HARD_SOURCE}/acc/pass@1": hard,
                      f"val-core/{HARD_SOURCE}/acc/pass@4": p4, "val-core/toy_arithmetic/acc/mean@4": rest,
                      "val-core/toy_arithmetic/acc/pass@4": 0.9})
        train = {"step": step + 1, "critic/score/mean": 0.5}
        if demo is not None:
            train["relift/demo_fraction"] = demo * (step + 1) / 10
        lines.append(train)
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")


def test_report_records(tmp_path):
    _write_metrics(tmp_path / "seed1" / "grpo" / "metrics.jsonl", [(0, 0.1, 0.6, 0.2), (10, 0.15, 0.7, 0.3)], None)
    _write_metrics(tmp_path / "seed1" / "relift" / "metrics.jsonl", [(0, 0.1, 0.6, 0.2), (10, 0.4, 0.65, 0.7)], 0.2)
    _write_metrics(tmp_path / "seed2" / "grpo" / "metrics.jsonl", [(0, 0.0, 0.5, 0.1), (10, 0.05, 0.55, 0.1)], None)
    assert relift_report.main(["--out-dir", str(tmp_path), "--seeds", "1 2"]) == 0  # seed2/relift missing: left out
    records = json.loads((tmp_path / "relift_vs_grpo.json").read_text())
    assert records == [
        {"method": "grpo", "seed": 1, "hard_acc": 0.15, "rest_acc": 0.7, "pass_at_k": {"4": 0.3}, "demo_fraction": 0.0},
        {"method": "relift", "seed": 1, "hard_acc": 0.4, "rest_acc": 0.65, "pass_at_k": {"4": 0.7},
         "demo_fraction": pytest.approx(0.2 * 11 / 10)},
        {"method": "grpo", "seed": 2, "hard_acc": 0.05, "rest_acc": 0.55, "pass_at_k": {"4": 0.1},
         "demo_fraction": 0.0},
    ]
    assert (tmp_path / "relift_vs_grpo.png").stat().st_size > 1000
    assert relift_report.main(["--out-dir", str(tmp_path / "empty")]) == 2


def test_report_needs_the_hard_source(tmp_path):
    path = tmp_path / "seed1" / "grpo" / "metrics.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"step": 0, "val-core/toy_arithmetic/acc/mean@4": 0.5}) + "\n")
    with pytest.raises(ValueError, match="no val-core/toy_arithmetic_hard"):
        relift_report.run_record(path, "grpo", 1)


def test_script_help():
    res = subprocess.run(["sh", str(REPO / "examples" / "quickstart" / "relift_vs_grpo.sh"), "--help"],
                         capture_output=True, text=True, timeout=30, cwd="/")
    assert res.returncode == 0 and "relift_vs_grpo.json" in res.stdout and "[relift_vs_grpo]" not in res.stdout
