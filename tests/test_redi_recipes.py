"""examples/redi/*.sh compose and pass the plan's checks with the REDI paper's settings (dry runs).

Each recipe runs for real under both ``sh`` and ``bash``, from a directory outside the repo, with
tiny local data and a local config dir shaped like Qwen2.5-Math-1.5B's (4096 positions): the plans
only pass because the recipes widen the context. The training recipes run with ``PYTHON`` pointing at
a stand-in interpreter that records each call; the recorded trainer call is then planned in this
process by what ``trainer.dry_run=true`` runs (tests/recipe_replay.py); tests/test_every_script.py runs
redi.sh with the real interpreter. eval.sh runs with this interpreter (its python calls also prepare data).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.recipe_replay import Replayed, dry_run, standin_venv

REPO = Path(__file__).resolve().parents[1]
DRY = ["trainer.dry_run=true", "trainer.check_devices=false"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("redi_recipes")
    user = [{"role": "user", "content": "1+1?"}]
    pd.DataFrame({"prompt": [user] * 640,
                  "target": [[{"role": "assistant", "content": "2"}]] * 640}).to_parquet(d / "sft.parquet")
    pd.DataFrame({"chosen": [user + [{"role": "assistant", "content": "2"}]] * 320,
                  "rejected": [user + [{"role": "assistant", "content": "3"}]] * 320}).to_parquet(d / "pairs.parquet")
    (d / "qwen-math").mkdir()
    (d / "qwen-math" / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 4096,
                                                             "rope_theta": 10000.0}))
    (d / "bench").mkdir()
    (d / "bench" / "math500.jsonl").write_text(json.dumps({"problem": "1+1?", "answer": "2", "unique_id": "a"}) + "\n")
    return {"sft": str(d / "sft.parquet"), "pairs": str(d / "pairs.parquet"), "model": str(d / "qwen-math"),
            "home": str(d)}


def run(shell: str, script: str, data: dict[str, str], *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHON": sys.executable, "MODEL_PATH": data["model"], **env}
    full.pop("RAY_ADDRESS", None)
    return subprocess.run([shell, str(REPO / "examples" / "redi" / script), *args], env=full, cwd=data["home"],
                          capture_output=True, text=True, timeout=180)


def plan(shell: str, script: str, data: dict[str, str], *args: str, **env: str) -> Replayed:
    """Like run(), through the stand-in interpreter; the trainer call is planned in this process."""
    python = standin_venv(Path(data["home"])) / "bin" / "python"
    full = {**os.environ, "PYTHON": str(python), "MODEL_PATH": data["model"], **env}
    full.pop("RAY_ADDRESS", None)
    return dry_run([shell, str(REPO / "examples" / "redi" / script), *args], full, data["home"],
                   Path(data["home"]) / "calls")


def plan_value(stdout: str, label: str) -> str:
    for line in stdout.splitlines():
        if line.strip().startswith(label + "  "):
            return line.strip()[len(label):].split()[0]
    raise AssertionError(f"no plan row {label!r} in:\n{stdout}")


EXPECTED = {  # script: (files, loss row, learning rate, examples per step)
    "sft.sh": ("sft", "sft", "5e-05", "128"),
    "redi.sh": ("pairs", "redi", "1e-06", "32"),
    "dpo.sh": ("pairs", "dpo", "2e-07", "32"),
    "simpo.sh": ("pairs", "simpo", "5e-07", "32"),
}


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_recipe_plans_with_the_paper_settings(shell, script, data):
    files, loss, lr, per_step = EXPECTED[script]
    res = plan(shell, script, data, *DRY, TRAIN_FILES=data[files])
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert plan_value(out, "loss") == loss
    assert plan_value(out, "learning rate") == lr and "linear, warmup" in out
    assert plan_value(out, "world size") == "8"
    assert plan_value(out, "max sequence length") == "20480"
    assert plan_value(out, "mixed precision") == "bf16"
    if loss == "redi":
        assert "alpha=0.8" in out
    if loss == "dpo":
        assert "beta=0.001" in out and plan_value(out, "reference model") != "no"
    if loss == "simpo":
        assert "beta=2, gamma=1" in out
    label = "pairs per step" if files == "pairs" else "examples per step"
    assert plan_value(out, label) == per_step


def test_recipe_needs_the_widened_context(data):
    res = plan("sh", "redi.sh", data, *DRY, "~model.override_config.max_position_embeddings", TRAIN_FILES=data["pairs"])
    assert res.returncode == 2
    assert "exceeds the model's max_position_embeddings (4096)" in res.stderr


def test_eval_plans_the_paper_protocol(data):
    res = run("sh", "eval.sh", data, *DRY, BENCH_DIR=str(Path(data["home"]) / "bench"), BENCHMARKS="math500",
              OUT_DIR=str(Path(data["home"]) / "eval"), PYTHON=sys.executable)
    assert res.returncode == 0, res.stderr
    assert "n 16 | temperature 0.6 | top_p 0.95" in res.stdout
    assert "scoring skipped" in res.stdout


@pytest.mark.parametrize("script", ["sft.sh", "redi.sh", "dpo.sh", "simpo.sh", "eval.sh"])
def test_help_prints_usage_and_does_nothing_else(script, tmp_path):
    res = subprocess.run(["sh", str(REPO / "examples" / "redi" / script), "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHON": "/nonexistent"})
    assert res.returncode == 0 and "sh examples/redi/" in res.stdout
    assert list(tmp_path.iterdir()) == []
