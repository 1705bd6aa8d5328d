"""The ReLIFT README's command lines, verbatim, run here with relift doing each job (issue 13, item 8).

The commands are ReLIFT's (github.com/TheRoadQaQ/ReLIFT, README.md, "Usage"), each run by bash from the
checkout's root with the environment active (its bin/ first on PATH, as ReLIFT's `conda activate`),
followed only by what turns it into a dry run: ``--help``, ``trainer.dry_run=true`` (recipes pass extra
arguments to the trainer) or ``DRY_RUN=1`` (the Ray scripts). Tiny local data stands in for the hub.

The training commands run with the environment's python replaced by a stand-in that records each call;
the recorded trainer calls are planned in this process by what ``trainer.dry_run=true`` runs
(tests/recipe_replay.py). ``sh ./examples/math-7b/train.sh`` (a dry run and ``--cfg job``) and the
evaluation command also run with the real interpreter, as does one recipe per launcher in
tests/test_every_script.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.recipe_replay import dry_run, standin_venv

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
DRY = "trainer.dry_run=true trainer.check_devices=false"

# ReLIFT README.md, in order: data preparation, training (three models), multi-node, evaluation
README = [
    "cd dataset && python prepare_train.py",
    "sh ./examples/7b/train.sh",
    "sh ./examples/math-1.5b/train.sh",
    "sh ./examples/math-7b/train.sh",
    "source ./examples/ray_start.sh",
    "source ./examples/ray_connect.sh",
    "sh ./examples/math-7b/train_two_nodes.sh",
    "sh ./eval_scripts/inference.sh",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("relift_readme")
    system = {"role": "system", "content": "Think first, then answer."}
    user = {"role": "user", "content": "1+1?"}
    row = {
        "data_source": "math",
        "prompt": [user],
        "reward_model": {"style": "rule", "ground_truth": "2"},
        "target": [{"role": "assistant", "content": "<think>\n1+1=2</think>\n\\boxed{2}"}],
    }
    pd.DataFrame([row] * 300).to_parquet(d / "openr1.parquet")
    pd.DataFrame([{**row, "prompt": [system, user]}] * 10).to_parquet(d / "valid.parquet")
    (d / "qwen-math").mkdir()
    (d / "qwen-math" / "config.json").write_text(
        json.dumps({"model_type": "qwen2", "max_position_embeddings": 4096, "rope_theta": 10000.0})
    )
    (d / "wide").mkdir()  # 32768 positions (ReLIFT's models have 16k+): room for 1024 + 8192 tokens
    (d / "wide" / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 32768}))
    return {
        "home": str(d),
        "train": str(d / "openr1.parquet"),
        "val": str(d / "valid.parquet"),
        "model": str(d / "qwen-math"),
        "wide": str(d / "wide"),
    }


def _env(venv: Path, data: dict[str, str], **env: str) -> dict[str, str]:
    """This process's environment without cluster / model settings, with ``venv`` activated."""
    full = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHON", "RAY_ADDRESS", "MODEL_PATH", "MODEL_ROOT_PATH", "MASTER_ADDR")
        and not k.startswith("RAY_")
    }
    full.update(
        {
            "PATH": f"{venv / 'bin'}{os.pathsep}{full.get('PATH', '')}",
            "RELIFT_VENV": str(venv),
            "HOME": data["home"],
            "TRAIN_FILES": data["train"],
            "VAL_FILES": data["val"],
            **env,
        }
    )
    return full


def run(command: str, data: dict[str, str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=_env(VENV, data, **env), capture_output=True,
                          text=True, timeout=300)


def standin_env(data: dict[str, str], **env: str) -> dict[str, str]:
    """run()'s environment with the stand-in environment activated instead of the real one."""
    return _env(standin_venv(Path(data["home"])), data, **env)


def plan_value(stdout: str, label: str) -> str:
    for line in stdout.splitlines():
        if line.strip().startswith(label + "  "):
            return line.strip()[len(label) :].split()[0]
    raise AssertionError(f"no plan row {label!r} in:\n{stdout}")


@pytest.fixture(autouse=True)
def leaves_the_checkout_alone():
    before = sorted(p.name for p in REPO.iterdir())
    yield
    assert sorted(p.name for p in REPO.iterdir()) == before


def test_prepare_train_from_inside_dataset(data):
    res = run(f"{README[0]} --help", data)
    assert res.returncode == 0, res.stderr
    assert "usage: python prepare_train.py" in res.stdout and "Elliott/Openr1-Math-46k-8192" in res.stdout


@pytest.mark.parametrize(
    "command, model, n_gpus",
    [(README[1], None, 8), (README[2], "model", 8), (README[3], "model", 8), (README[6], "model", 16)],
)
def test_training_commands_plan_relift(command, model, n_gpus, data):
    env = standin_env(data, **({"MODEL_PATH": data[model]} if model else {}))
    res = dry_run(["bash", "-c", f"{command} {DRY}"], env, str(REPO), Path(data["home"]) / "calls")
    assert res.returncode == 0, res.stderr[-3000:]
    assert plan_value(res.stdout, "world size") == str(n_gpus)
    assert plan_value(res.stdout, "relift sft batch") == "128"  # ReLIFT's fine-tuning hook is on
    assert "relift/rewards/math_v3.py:compute_score" in res.stdout  # its reward_impl_version=3


def test_relifts_model_root_path_names_the_model(data):
    # with the real interpreter: the one run of Hydra's own `--cfg job` through a recipe
    res = run(f"{README[3]} --cfg job", data, MODEL_ROOT_PATH="/models")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "path: /models/Qwen2.5-Math-7B-16k-think" in res.stdout


def test_the_math_7b_command_plans_with_the_real_interpreter(data):
    res = run(f"{README[3]} {DRY}", data, MODEL_PATH=data["model"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert plan_value(res.stdout, "world size") == "8" and plan_value(res.stdout, "relift sft batch") == "128"


@pytest.mark.parametrize(
    "command, want", [(README[4], "ray start --head --port=6379"), (README[5], "ray start --address=10.0.0.9:6379")]
)
def test_sourcing_the_ray_scripts_keeps_the_shell(command, want, data):
    probe = (
        f'set -- a b; before="$(set +o)$-$#"; {command}; rc=$?; [ "$before" = "$(set +o)$-$#" ] && echo same; '
        'echo "alive rc=$rc"'
    )
    res = run(probe, data, DRY_RUN="1", MASTER_ADDR="10.0.0.9")
    assert want in res.stdout and "same" in res.stdout and "alive rc=0" in res.stdout, (res.stdout, res.stderr)
    helped = run(f"{command} --help; echo alive", data, RELIFT_VENV=str(Path(data["home"]) / "no-venv"))
    assert "Sourcing is safe" in helped.stdout and helped.stdout.rstrip().endswith("alive")


def test_inference_evaluates_relifts_models_the_relift_way(data, tmp_path):
    helped = run(f"{README[7]} --help", data)
    assert helped.returncode == 0
    for model in (
        "RoadQAQ/ReLIFT-Qwen2.5-7B-Zero",
        "RoadQAQ/ReLIFT-Qwen2.5-Math-1.5B-Zero",
        "RoadQAQ/ReLIFT-Qwen2.5-Math-7B-Zero",
    ):
        assert model in helped.stdout  # ReLIFT's three models by default
    out = tmp_path / "results"
    res = run(f"{README[7]} {DRY}", data, MODELS=f"tiny={data['wide']}", DATA=data["val"], OUTPUT_DIR=str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "the system message removed from 10" in res.stdout
    assert "n 1 | temperature 0.6 | top_p 1.0" in res.stdout  # ReLIFT's generate_vllm.py settings
    assert "scoring skipped" in res.stdout
    prompts = pd.read_parquet(out / "data" / "valid.nosystem.parquet")["prompt"]
    assert [m["role"] for m in prompts.iloc[0]] == ["user"]
