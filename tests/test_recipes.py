"""The GPU recipes in examples/ compose and pass the plan's checks (so they cannot rot).

Each script runs for real through bash (or sh) with ``PYTHON`` pointing at a stand-in interpreter that
records its calls (so a script that ignored ``PYTHON`` would record nothing and fail), tiny local data
files, and ``trainer.dry_run=true trainer.check_devices=false``; each recorded trainer call is then
composed and planned in this process by what ``trainer.dry_run=true`` runs (tests/recipe_replay.py):
every check runs except the CUDA / vLLM availability ones, which a CPU machine cannot pass. The same
recipes run end to end with the real interpreter in tests/test_every_script.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.recipe_replay import Replayed, composed_config, dry_run, standin_venv

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
            "home": str(d), "python": str(standin_venv(d) / "bin" / "python"), "calls": str(d / "calls")}


def run_recipe(script: str, data: dict[str, str], *args: str, shell: str = "bash", **env: str) -> Replayed:
    full_env = {**os.environ, "PYTHON": data["python"], "TRAIN_FILES": data["train"], "VAL_FILES": data["val"], **env}
    full_env.pop("RAY_ADDRESS", None)
    return dry_run([shell, str(REPO / "examples" / script), *args], full_env, data["home"], Path(data["calls"]))


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
    env.update(PYTHON=data["python"], HOME=data["home"])
    res = dry_run(["bash", str(REPO / "examples" / "7b" / "train.sh"), *DRY], env, data["home"], Path(data["calls"]))
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


# ------------------------------------------------------------------ ReLIFT recipes (train.sh) vs RL only (train_rl.sh)
RECIPE_DIRS = ("math-1.5b", "math-7b", "7b")


def run_sh(script: str, data: dict[str, str], *args: str, **env: str) -> Replayed:
    """Like run_recipe, through `sh` (dash here) from an unrelated directory."""
    return run_recipe(script, data, *args, shell="sh", **env)


def composed(script: str, data: dict[str, str], **env: str) -> dict:
    """The Hydra config a recipe composes (`--cfg job`), as a dict."""
    full_env = {**os.environ, "PYTHON": data["python"], "TRAIN_FILES": data["train"], "VAL_FILES": data["val"], **env}
    full_env.pop("RAY_ADDRESS", None)
    return composed_config(["sh", str(REPO / "examples" / script), "--cfg", "job"], full_env, data["home"],
                           Path(data["calls"]))


@pytest.mark.parametrize("recipe", RECIPE_DIRS)
def test_relift_recipe_plans_with_sh(recipe, data):
    env = {"MODEL_PATH": data["math_model"]} if recipe.startswith("math-") else {}
    res = run_sh(f"{recipe}/train.sh", data, *DRY, **env)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert plan_value(out, "relift sft batch") == "128"
    assert plan_value(out, "total training steps") == "6"         # 3 epochs x 300 // 128
    assert "relift/rewards/math_v3.py:compute_score" in out        # ReLIFT's reward v3 for every source
    assert f"checkpoints/relift/relift-{recipe}" in out
    rl = run_sh(f"{recipe}/train_rl.sh", data, *DRY, **env)
    assert rl.returncode == 0, rl.stderr
    assert "relift sft batch" not in rl.stdout and f"checkpoints/relift/rl-{recipe}" in rl.stdout
    assert plan_value(rl.stdout, "sequences per step") == "1024"


@pytest.mark.parametrize("recipe", RECIPE_DIRS)
def test_relift_and_rl_only_differ_only_in_the_hook(recipe, data):
    relift, rl = composed(f"{recipe}/train.sh", data), composed(f"{recipe}/train_rl.sh", data)
    assert relift["relift"]["enable"] is True and rl["relift"]["enable"] is False
    for cfg in (relift, rl):
        cfg.pop("relift")
        cfg["trainer"].pop("experiment_name")
        cfg["trainer"].pop("default_local_dir")
    assert relift == rl


def test_relift_recipe_settings_are_the_papers(data):
    cfg = composed("math-7b/train.sh", data)
    actor, rollout = cfg["actor_rollout_ref"]["actor"], cfg["actor_rollout_ref"]["rollout"]
    assert cfg["actor_rollout_ref"]["model"]["path"] == "RoadQAQ/Qwen2.5-Math-7B-16k-think"
    assert cfg["data"]["train_batch_size"] == 128 and rollout["n"] == 8 and rollout["temperature"] == 1.0
    assert cfg["data"]["max_response_length"] == 8192 and cfg["data"]["max_target_length"] == 8192
    assert actor["use_kl_loss"] is False and cfg["algorithm"]["use_kl_in_reward"] is False
    assert cfg["algorithm"]["norm_adv_by_std_in_grpo"] is False           # Dr.GRPO
    assert actor["loss_remove_clip"] is True and actor["loss_agg_mode"] == "seq-mean-token-sum-norm"
    assert actor["entropy_coeff"] == 0.001 and actor["optim"]["lr"] == 1e-6 and actor["grad_clip"] == 0.7
    assert actor["optim"]["lr_scheduler_type"] == "constant" and actor["optim"]["weight_decay"] == 0.01
    assert cfg["trainer"]["total_epochs"] == 3
    assert rollout["val_kwargs"] == {**rollout["val_kwargs"], "n": 1, "temperature": 0.6, "top_p": 1.0,
                                     "do_sample": True}
    assert cfg["relift"] == {**cfg["relift"], "enable": True, "max_acc": 0.0, "sft_batch_size": 128,
                             "entropy_coeff": 0.001, "loss_agg_mode": "token-mean", "lr": 1e-6,
                             "sft_optimizer": "separate", "buffer_order": "fifo"}
    assert cfg["reward"]["custom_reward_function"]["path"].endswith("relift/rewards/math_v3.py")
    assert composed("7b/train.sh", data)["actor_rollout_ref"]["model"]["path"] == "RoadQAQ/Qwen2.5-7B-think"
    assert composed("math-1.5b/train.sh", data)["actor_rollout_ref"]["model"]["path"] == \
        "RoadQAQ/Qwen2.5-Math-1.5B-16k-think"


def test_rl_only_two_node_recipes_and_help(data):
    for script in ("math-1.5b/train_rl_2nodes.sh", "math-7b/train_rl_2nodes.sh", "7b/train_rl_2nodes.sh",
                   "7b/train_2nodes.sh"):
        res = run_sh(script, data, *DRY)
        assert res.returncode == 0, (script, res.stderr)
        assert plan_value(res.stdout, "world size") == "16"
        assert ("relift sft batch" in res.stdout) == script.endswith("/train_2nodes.sh")
    for script in ("7b/train.sh", "7b/train_rl.sh", "math-7b/train_2nodes.sh", "math-7b/train_rl_2nodes.sh"):
        res = run_sh(script, data, "--help")
        assert res.returncode == 0 and "relift RL plan" not in res.stdout and res.calls == []  # no python at all
        assert "sh examples/" in res.stdout and not res.stdout.startswith("#")


def test_recipe_without_a_python_says_how_to_make_one(data, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "RELIFT_VENV", "RAY_ADDRESS")}
    # a copy of the examples without a .venv beside them
    import shutil

    shutil.copytree(REPO / "examples", tmp_path / "examples")
    shutil.copytree(REPO / "scripts", tmp_path / "scripts")  # the shared interpreter lookup lives there
    (tmp_path / "relift" / "rewards").mkdir(parents=True)
    res = subprocess.run(["sh", str(tmp_path / "examples" / "7b" / "train.sh"), *DRY], env=env, cwd=data["home"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "bash scripts/setup_env.sh" in res.stderr
