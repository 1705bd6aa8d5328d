"""The GPU recipes in examples/ compose and pass the plan's checks (so they cannot rot).

Each script runs for real through bash with ``PYTHON`` pointing at this interpreter (so a script
that ignored ``PYTHON`` would fail: the system python3 has no hydra), tiny local data files, and
``trainer.dry_run=true trainer.check_devices=false``: the config is composed and every check runs
except the CUDA / vLLM availability ones, which a CPU machine cannot pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
DRY = ["trainer.dry_run=true", "trainer.check_devices=false"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("recipes")
    row = {"data_source": "math", "prompt": [{"role": "user", "content": "1+1?"}],
           "reward_model": {"style": "rule", "ground_truth": "2"}}
    pd.DataFrame([row] * 300).to_parquet(d / "train.parquet")
    pd.DataFrame([row] * 10).to_parquet(d / "valid.parquet")
    # a checkpoint dir shaped like Qwen2.5-Math's: only 4096 positions unless the recipe widens them
    (d / "qwen-math").mkdir()
    (d / "qwen-math" / "config.json").write_text(json.dumps({"max_position_embeddings": 4096, "rope_theta": 10000.0}))
    return {"train": str(d / "train.parquet"), "val": str(d / "valid.parquet"), "math_model": str(d / "qwen-math"),
            "home": str(d)}


def run_recipe(script: str, data: dict[str, str], *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHON": sys.executable, "TRAIN_FILES": data["train"], "VAL_FILES": data["val"], **env}
    full_env.pop("RAY_ADDRESS", None)
    return subprocess.run(["bash", str(REPO / "examples" / script), *args], env=full_env, cwd=data["home"],
                          capture_output=True, text=True, timeout=120)


def plan_value(stdout: str, label: str) -> str:
    """The value column of the plan row whose label is ``label``."""
    for line in stdout.splitlines():
        if line.strip().startswith(label + "  "):
            return line.strip()[len(label):].split()[0]
    raise AssertionError(f"no plan row {label!r} in:\n{stdout}")


@pytest.mark.parametrize("script, tp", [("math-1.5b/train.sh", 1), ("math-7b/train.sh", 2), ("7b/train.sh", 2)])
def test_single_node_recipe_plans(script, tp, data):
    # the Qwen2.5-Math recipes get a local checkpoint dir shaped like Qwen2.5-Math's (4096 positions):
    # they only pass because they widen the context with override_config; 7b keeps its hub id
    env = {"MODEL_PATH": data["math_model"]} if script.startswith("math-") else {}
    res = run_recipe(script, data, *DRY, **env)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "relift RL plan" in out
    assert plan_value(out, "device") == "cuda"
    assert plan_value(out, "world size") == "8"
    assert plan_value(out, "sequences per step") == "1024"        # 128 prompts x n 8
    assert plan_value(out, "sequences per worker") == "128"
    assert plan_value(out, "sequences per mini-batch") == "512"   # 64 prompts x 8
    assert plan_value(out, "optimiser steps per step") == "2"
    assert plan_value(out, "max sequence length") == "9216"       # 1024 + 8192
    assert plan_value(out, "rollout") == "vllm" and f"{8 // tp} engine(s) x tensor parallel {tp}" in out
    assert plan_value(out, "advantage estimator") == "grpo"
    assert plan_value(out, "reference model") == "no"
    assert plan_value(out, "mixed precision") == "bf16"
    assert plan_value(out, "learning rate") == "1e-06"
    assert plan_value(out, "steps per epoch") == "2"              # 300 rows // 128
    assert plan_value(out, "validation") == "on"


def test_two_node_recipes_plan_world_size_16(data):
    for script in ("math-1.5b/train_2nodes.sh", "math-7b/train_2nodes.sh", "7b/train_2nodes.sh"):
        res = run_recipe(script, data, *DRY)
        assert res.returncode == 0, (script, res.stderr)
        assert plan_value(res.stdout, "world size") == "16"
        assert plan_value(res.stdout, "sequences per worker") == "64"
        assert "[wait_for_nodes]" not in res.stdout  # a dry run never touches Ray


def test_math_recipe_widens_the_qwen_math_context(data):
    """Dropping the recipe's override_config makes the plan fail on the length arithmetic against a
    Qwen2.5-Math-like config (4096 positions); with it the recipe plans (test above)."""
    res = run_recipe("math-1.5b/train.sh", data, *DRY,
                     "~actor_rollout_ref.model.override_config.max_position_embeddings",
                     MODEL_PATH=data["math_model"])
    assert res.returncode == 2
    assert "= 9216 exceeds the model's max_position_embeddings (4096)" in res.stderr


def test_recipe_default_data_paths_are_checked(data):
    env = {k: v for k, v in os.environ.items() if k not in ("TRAIN_FILES", "VAL_FILES", "RAY_ADDRESS")}
    env.update(PYTHON=sys.executable, HOME=data["home"])
    res = subprocess.run(["bash", str(REPO / "examples" / "7b" / "train.sh"), *DRY], env=env, cwd=data["home"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert f"data.train_files: file not found: {data['home']}/data/openr1/train.parquet" in res.stderr
    assert f"data.val_files: file not found: {data['home']}/data/openr1/valid.parquet" in res.stderr


def test_wait_for_nodes_fails_fast_on_an_unreachable_cluster(data):
    env = {**os.environ, "PYTHON": sys.executable, "RAY_ADDRESS": "127.0.0.1:1", "NNODES": "2"}
    res = subprocess.run(["bash", str(REPO / "examples" / "wait_for_nodes.sh")], env=env, cwd=data["home"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "the Ray cluster at 127.0.0.1:1 (from RAY_ADDRESS) does not answer" in res.stderr
    assert "examples/ray_connect.sh" in res.stderr


def test_on_nodes_needs_a_recipe(data):
    res = subprocess.run(["bash", str(REPO / "examples" / "common" / "on_nodes.sh"), "no/such/train.sh"],
                         env={**os.environ, "PYTHON": sys.executable}, cwd=data["home"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "usage: bash examples/common/on_nodes.sh" in res.stderr
