"""The knights-and-knaves recipes (examples/kk/) compose and pass their plans' checks under sh and bash.

Each runs for real with ``trainer.dry_run=true trainer.check_devices=false`` on small generated data,
from a working directory outside the checkout, with ``PYTHON`` pointing at a stand-in interpreter that
records each call; the recorded trainer calls are then planned in this process by what
``trainer.dry_run=true`` runs (tests/recipe_replay.py). tests/test_every_script.py runs eval.sh
with the real interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.recipe_replay import Replayed, dry_run, standin_venv

REPO = Path(__file__).resolve().parents[1]
KK = REPO / "examples" / "kk"
DRY = ["trainer.dry_run=true", "trainer.check_devices=false"]


@pytest.fixture(scope="module")
def kk_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kkdata") / "instruct"
    subprocess.run([sys.executable, "-m", "dataset.kk", "generate", "--people", "2..8", "--per-size", "130",
                    "--test-per-size", "2", "--seed", "0", "--out", str(out)], check=True, cwd=REPO,
                   capture_output=True)
    return out


def run(shell: str, script: str, kk_data: Path, cwd: Path, *args: str, **env: str) -> Replayed:
    python = standin_venv(cwd) / "bin" / "python"
    full = {**os.environ, "PYTHON": str(python), "DATA_DIR": str(kk_data), "HOME": str(cwd), **env}
    for k in ("RAY_ADDRESS", "TRAIN_FILES", "VAL_FILES"):
        full.pop(k, None)
    return dry_run([shell, str(KK / script), *args], full, str(cwd), cwd / "calls")


def plan_values(stdout: str, label: str) -> list[str]:
    """The value column of every plan row labelled ``label`` (one per planned stage)."""
    out = []
    for line in stdout.splitlines():
        if line.strip().startswith(label + "  "):
            out.append(line.strip()[len(label):].split()[0])
    return out


def test_grpo_7b_plans_both_phases(kk_data, tmp_path):
    res = run("sh", "grpo_7b.sh", kk_data, tmp_path, *DRY)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "phase 1: steps 1-100, n 8, temperature 1.0" in out and "phase 2: resume" in out
    assert plan_values(out, "sequences per step") == ["1024", "2048"]      # 128 prompts x n 8, then x n 16
    assert plan_values(out, "learning rate") == ["1e-06", "1e-06"]
    assert plan_values(out, "advantage estimator") == ["grpo", "grpo"]
    assert plan_values(out, "world size") == ["4", "4"]
    assert plan_values(out, "max sequence length") == ["2560", "2560"]    # 512 + 2048
    assert plan_values(out, "reference model") == ["yes", "yes"]          # the KL loss needs it


def test_grpo_7b_phase_2_needs_phase_1(kk_data, tmp_path):
    res = run("bash", "grpo_7b.sh", kk_data, tmp_path, PHASE="2")
    assert res.returncode == 2
    assert "global_step_100 not found (run PHASE=1 first)" in res.stderr


def test_reinforce_pp_curriculum_plans_every_size(kk_data, tmp_path):
    res = run("bash", "reinforce_pp_curriculum.sh", kk_data, tmp_path, *DRY)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for n in range(3, 8):
        assert f"stage {n}ppl: from" in out
    assert plan_values(out, "advantage estimator") == ["reinforce_plus_plus"] * 5
    assert plan_values(out, "sequences per step") == ["64"] * 5           # 8 prompts x n 8
    assert plan_values(out, "learning rate") == ["5e-07"] * 5
    assert plan_values(out, "max sequence length") == ["4608"] * 5        # 512 + 4096


def test_distill_then_rl_plans_its_stages(kk_data, tmp_path):
    res = run("sh", "distill_then_rl.sh", kk_data, tmp_path, *DRY)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "1/4 teacher samples: 5 per puzzle" in out and "dry run: skipping 2/4" in out
    assert "3/4 SFT of Qwen/Qwen2.5-1.5B-Instruct" in out and "4/4 GRPO from" in out
    assert plan_values(out, "sequences per step") == ["1024"]             # GRPO: 32 prompts x n 32


def test_eval_plans_one_generation_over_every_size(kk_data, tmp_path):
    res = run("sh", "eval.sh", kk_data, tmp_path, *DRY, MODELS="base=Qwen/Qwen2.5-7B-Instruct-1M")
    assert res.returncode == 0, res.stderr
    assert "base: answering the test puzzles of sizes 2 3 4 5 6 7 8" in res.stdout
    assert plan_values(res.stdout, "prompts") == ["14"]                  # 2 test puzzles x 7 sizes
    assert "dry run: every generation planned" in res.stdout
    bad = run("sh", "eval.sh", kk_data, tmp_path, *DRY, MODELS="nopath")
    assert bad.returncode == 2 and "is not NAME=PATH" in bad.stderr


@pytest.mark.parametrize("script", ["grpo_7b.sh", "reinforce_pp_curriculum.sh", "distill_then_rl.sh", "eval.sh",
                                    "tiny_pipeline.sh"])
@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_help_prints_usage_and_runs_nothing(script, shell, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "RELIFT_VENV")}
    env["PYTHON"] = "/nonexistent/python"   # --help must not start python
    res = subprocess.run([shell, str(KK / script), "--help"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"sh examples/kk/{script}" in res.stdout and "Environment:" in res.stdout
    assert "[kk]" not in res.stdout


def test_table_layout(tmp_path):
    import pandas as pd

    sys.path.insert(0, str(KK))
    try:
        from table import build_table
    finally:
        sys.path.pop(0)
    # model a: 2ppl rows 0, 1 (2 samples each), 3ppl row 2; model b answers 2ppl only
    names = [["A", "B"], ["C", "D"], ["E", "F", "G"]]
    for model, rows, correct in (("a", 3, [True, True, True, False, False, True]), ("b", 2, [False] * 3 + [True])):
        (tmp_path / model).mkdir()
        pd.DataFrame({"names": names[:rows]}).to_parquet(tmp_path / model / "gen.parquet")
        pd.DataFrame({"prompt_id": [i // 2 for i in range(2 * rows)], "correct": correct}).to_parquet(
            tmp_path / model / "eval.scores.parquet")
    table = build_table(tmp_path, ["a", "b"], [2, 3])
    assert table.splitlines() == ["| Model | Avg | 2ppl | 3ppl |", "|---|---|---|---|",
                                  "| a | 0.62 | 0.75 | 0.50 |", "| b | 0.25 | 0.25 | - |"]
    with pytest.raises(FileNotFoundError, match=r"missing .*c/gen.parquet"):
        build_table(tmp_path, ["c"], [2])
