"""examples/kk/tiny_pipeline.sh end to end at CI size (FAST=1): every stage hands the next what it needs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_distill_then_rl_pipeline(tmp_path):
    out = tmp_path / "kk_tiny"
    env = {**os.environ, "PYTHON": sys.executable, "FAST": "1", "OUT_DIR": str(out)}
    env.pop("RAY_ADDRESS", None)
    res = subprocess.run(["sh", str(REPO / "examples" / "kk" / "tiny_pipeline.sh")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # 2: the teacher was fine-tuned and exported
    assert (out / "teacher" / "hf" / "config.json").is_file()
    # 3: 5 samples per 2-person training puzzle
    samples = pd.read_parquet(out / "teacher_samples.parquet")
    assert len(samples) == 96 and all(len(r) == 5 for r in samples["responses"])
    # 4: rejection sampling kept at most one per puzzle, each one scoring 3 (fully correct)
    counts = json.loads((out / "rejection.log").read_text().strip().splitlines()[-1])["total"]
    kept = pd.read_parquet(out / "distill.parquet")
    assert len(kept) == counts["rows_written"] == counts["prompts_with_correct"] >= 1
    assert set(kept["score"]) == {3.0}
    # 5-6: the student was fine-tuned and trained with GRPO
    assert (out / "student_sft" / "hf" / "config.json").is_file()
    assert (out / "student_rl" / "global_step_2" / "actor" / "huggingface" / "config.json").is_file()
    # 7: the seed's table for three models over the evaluated sizes
    table = (out / "table.md").read_text().splitlines()
    assert table[0] == "| Model | Avg | 2ppl | 3ppl |"
    assert [row.split("|")[1].strip() for row in table[2:]] == ["teacher", "student_sft", "student_rl"]
    for row in table[2:]:
        for cell in row.split("|")[2:-1]:
            assert re.fullmatch(r"[01]\.\d\d", cell.strip())
    assert "(wall " in res.stdout
