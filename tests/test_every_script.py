"""Every shell script in examples/, eval_scripts/ and scripts/ as a new user runs it (issue 13, item 1).

* ``--help`` / ``-h`` under ``sh`` (dash here) and ``bash`` prints usage and does nothing else: no
  python is looked for (``RELIFT_VENV`` points nowhere), no file appears in the working directory.
* Each recipe plans with ``sh`` from an unrelated directory and ``trainer.dry_run=true`` on tiny local
  data. One recipe per launcher family (:data:`REAL_PYTHON`) runs end to end with the real interpreter,
  picked the documented way (``RELIFT_VENV``; ``PYTHON`` unset). The others run the same way with
  ``RELIFT_VENV`` naming a stand-in interpreter that records each call; the recorded trainer calls are
  then composed and planned in this process by the functions ``trainer.dry_run=true`` runs
  (tests/recipe_replay.py): same shell, same overrides, same checks, without 5-10 s of imports each.
* The scripts meant to be sourced (``examples/ray_start.sh``, ``examples/ray_connect.sh``) never exit
  the sourcing shell and leave its options, variables and positional parameters as they were.
* Without an environment a script says how to make one (``bash scripts/setup_env.sh``), exit 2.

A new script must be added to one of the tables below, or ``test_every_script_is_classified`` fails.
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
VENV = Path(sys.executable).parent.parent  # the environment running the tests: RELIFT_VENV for the scripts
DRY = ["trainer.dry_run=true", "trainer.check_devices=false"]
ALL_SCRIPTS = sorted(
    str(p.relative_to(REPO)) for d in ("examples", "eval_scripts", "scripts") for p in (REPO / d).rglob("*.sh")
)

# sourced by other scripts, define functions only; not entry points
LIBRARIES = {"examples/kk/common.sh", "scripts/find_python.sh", "eval_scripts/protocols.sh"}

# entry points that are not dry-run recipes, and where they are exercised
NOT_RECIPES = {
    "examples/ray_start.sh": "sourced / run on the head; DRY_RUN=1 below and in test_single_controller_multinode",
    "examples/ray_connect.sh": "sourced / run on workers; DRY_RUN=1 below and in test_single_controller_multinode",
    "examples/wait_for_nodes.sh": "needs a cluster; test_recipes (fails fast without one)",
    "examples/common/on_nodes.sh": "run by every train_2nodes.sh recipe below",
    "examples/common/grpo_relift_settings.sh": "run by every ReLIFT recipe below",
    "examples/redi/_offline.sh": "run by every REDI recipe below",
    "examples/kk/tiny_pipeline.sh": "a CPU pipeline that trains; FAST=1 run in test_kk_tiny_pipeline",
    "examples/quickstart/train.sh": "a CPU pipeline that trains; test_quickstart_learning",
    "examples/quickstart/relift_vs_grpo.sh": "a CPU pipeline that trains; test_relift_toy",
    "examples/quickstart/redi_vs_baselines.sh": "a CPU pipeline that trains; test_redi_vs_baselines",
    "examples/quickstart/capability.sh": "evaluates a finished quickstart run (main_generation/main_eval/compare)",
    "eval_scripts/compare.sh": "reads finished evaluations (trainer.main_compare; test_eval_analysis)",
    "eval_scripts/capability.sh": "reads finished evaluations (trainer.main_capability; test_capability)",
    "scripts/gpu_smoke.sh": "needs CUDA; test_gpu_smoke",
    "scripts/setup_env.sh": "builds the environment these tests run in",
    "scripts/test.sh": "runs these tests",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    """Tiny local inputs for every recipe: RL/SFT/pair parquet, a config-only model folder, a benchmark, KK."""
    d = tmp_path_factory.mktemp("every_script")
    user = [{"role": "user", "content": "1+1?"}]
    row = {"data_source": "math", "prompt": user, "reward_model": {"style": "rule", "ground_truth": "2"}}
    pd.DataFrame([row] * 300).to_parquet(d / "train.parquet")
    pd.DataFrame([{**row, "prompt": [{"role": "system", "content": "think"}] + user}] * 10).to_parquet(
        d / "valid.parquet"
    )
    pd.DataFrame({"prompt": [user] * 640, "target": [[{"role": "assistant", "content": "2"}]] * 640}).to_parquet(
        d / "sft.parquet"
    )
    pd.DataFrame(
        {
            "chosen": [user + [{"role": "assistant", "content": "2"}]] * 320,
            "rejected": [user + [{"role": "assistant", "content": "3"}]] * 320,
        }
    ).to_parquet(d / "pairs.parquet")
    (d / "qwen-math").mkdir()  # shaped like Qwen2.5-Math's: 4096 positions unless a recipe widens them
    (d / "qwen-math" / "config.json").write_text(
        json.dumps({"model_type": "qwen2", "max_position_embeddings": 4096, "rope_theta": 10000.0})
    )
    (d / "wide").mkdir()  # 32768 positions, like the released 16k / REDI models: room for 1024 + 8192 tokens
    (d / "wide" / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 32768}))
    (d / "bench").mkdir()
    (d / "bench" / "math500.jsonl").write_text(json.dumps({"problem": "1+1?", "answer": "2", "unique_id": "a"}) + "\n")
    kk = d / "kk"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dataset.kk",
            "generate",
            "--people",
            "2..8",
            "--per-size",
            "130",
            "--test-per-size",
            "2",
            "--seed",
            "0",
            "--out",
            str(kk),
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    (d / "cwd").mkdir()
    return {
        k: str(v)
        for k, v in {
            "home": d,
            "cwd": d / "cwd",
            "train": d / "train.parquet",
            "val": d / "valid.parquet",
            "sft": d / "sft.parquet",
            "pairs": d / "pairs.parquet",
            "model": d / "qwen-math",
            "wide": d / "wide",
            "bench": d / "bench",
            "kk": kk,
        }.items()
    }


def _relift(d: dict[str, str], math: bool) -> dict[str, str]:
    env = {"TRAIN_FILES": d["train"], "VAL_FILES": d["val"]}
    return {**env, "MODEL_PATH": d["model"]} if math else env


# script -> (environment from the data fixture, a line the plan must print)
RECIPES = {
    **{
        f"examples/{r}/{s}": (lambda d, r=r: _relift(d, r.startswith("math-")), "relift RL plan")
        for r in ("7b", "math-1.5b", "math-7b")
        for s in ("train.sh", "train_rl.sh", "train_2nodes.sh", "train_rl_2nodes.sh")
    },
    "examples/math-7b/train_two_nodes.sh": (lambda d: _relift(d, True), "relift RL plan"),
    "examples/redi/sft.sh": (lambda d: {"MODEL_PATH": d["model"], "TRAIN_FILES": d["sft"]}, "relift offline plan"),
    **{
        f"examples/redi/{s}": (lambda d: {"MODEL_PATH": d["model"], "TRAIN_FILES": d["pairs"]}, "relift offline plan")
        for s in ("redi.sh", "dpo.sh", "simpo.sh")
    },
    "examples/redi/eval.sh": (
        lambda d: {
            "MODEL_PATH": d["model"],
            "BENCH_DIR": d["bench"],
            "BENCHMARKS": "math500",
            "OUT_DIR": d["home"] + "/redi_eval",
        },
        "scoring skipped",
    ),
    "examples/kk/grpo_7b.sh": (lambda d: {"DATA_DIR": d["kk"]}, "relift RL plan"),
    "examples/kk/reinforce_pp_curriculum.sh": (lambda d: {"DATA_DIR": d["kk"]}, "relift RL plan"),
    "examples/kk/distill_then_rl.sh": (lambda d: {"DATA_DIR": d["kk"]}, "relift offline plan"),
    "examples/kk/eval.sh": (lambda d: {"DATA_DIR": d["kk"], "MODELS": f"m={d['wide']}"}, "every generation planned"),
    "eval_scripts/eval_math.sh": (
        lambda d: {
            "MODEL_PATH": d["model"],
            "BENCH_DIR": d["bench"],
            "BENCHMARKS": "math500",
            "OUT_DIR": d["home"] + "/eval",
        },
        "scoring skipped",
    ),
    "eval_scripts/inference.sh": (
        lambda d: {"MODELS": f"m={d['wide']}", "DATA": d["val"], "OUTPUT_DIR": d["home"] + "/results"},
        "scoring skipped",
    ),
}


def clean_env(**env: str) -> dict[str, str]:
    """The test's environment without interpreter or cluster settings, plus ``env``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "PYTHON",
            "RELIFT_VENV",
            "RAY_ADDRESS",
            "TRAIN_FILES",
            "VAL_FILES",
            "MODEL_PATH",
            "MODEL_ROOT_PATH",
            "MASTER_ADDR",
        )
        and not k.startswith("RAY_")
    }
    return {**base, **env}


def test_every_script_is_classified():
    tables = LIBRARIES | set(NOT_RECIPES) | set(RECIPES)
    assert set(ALL_SCRIPTS) - tables == set(), "new script: add it to RECIPES (dry run) or NOT_RECIPES"
    assert tables - set(ALL_SCRIPTS) == set(), "a listed script no longer exists"
    assert not (set(RECIPES) & set(NOT_RECIPES))


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_help_prints_usage_and_does_nothing_else(shell, flag, tmp_path):
    env = clean_env(RELIFT_VENV=str(tmp_path / "no-venv"), HOME=str(tmp_path))  # a python lookup would fail
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    failures = []
    for script in ALL_SCRIPTS:
        if script in LIBRARIES:
            continue
        res = subprocess.run(
            [shell, str(REPO / script), flag], cwd=cwd, env=env, capture_output=True, text=True, timeout=30
        )
        lines = res.stdout.strip().splitlines()
        if (
            res.returncode != 0
            or len(lines) < 2
            or res.stderr
            or any(line.startswith(("#", "set -", "if [")) for line in lines)
        ):  # script lines leaking into usage
            failures.append((script, res.returncode, res.stdout[:300], res.stderr[:300]))
    assert failures == []
    assert list(cwd.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["cwd"]


# one recipe per launcher family runs with the real interpreter: grpo_relift_settings.sh (single node),
# the train_two_nodes.sh -> train_2nodes.sh -> common/on_nodes.sh chain, redi/_offline.sh, kk/common.sh
# (eval.sh: one python call; grpo_7b.sh makes two), and the evaluation scripts, whose python calls also
# prepare data (not replayable by the stand-in)
REAL_PYTHON = {
    "examples/math-7b/train.sh",
    "examples/math-7b/train_two_nodes.sh",
    "examples/redi/redi.sh",
    "examples/kk/eval.sh",
    "examples/redi/eval.sh",
    "eval_scripts/eval_math.sh",
    "eval_scripts/inference.sh",
}


def test_every_recipe_is_planned_one_way_or_the_other():
    assert REAL_PYTHON <= set(RECIPES)
    families = {"examples/math-7b/train.sh", "examples/math-7b/train_two_nodes.sh", "examples/redi/redi.sh"}
    assert families | {"examples/kk/eval.sh"} <= REAL_PYTHON


@pytest.mark.parametrize("script", sorted(set(RECIPES) - REAL_PYTHON))
def test_recipe_plans_with_sh_through_a_standin_python(script, data, tmp_path):
    make_env, marker = RECIPES[script]
    venv = standin_venv(tmp_path)
    env = clean_env(RELIFT_VENV=str(venv), HOME=data["home"], **make_env(data))
    res = dry_run(["sh", str(REPO / script), *DRY], env, data["cwd"], tmp_path / "calls")
    assert res.returncode == 0, (script, res.stdout[-2000:], res.stderr[-3000:])
    assert marker in res.stdout, (script, res.stdout[-2000:])
    assert {c.cwd for c in res.calls} == {data["cwd"]}  # the trainer ran where the user stood


@pytest.mark.parametrize("script", sorted(REAL_PYTHON))
def test_recipe_plans_with_sh_and_the_documented_python(script, data):
    make_env, marker = RECIPES[script]
    env = clean_env(RELIFT_VENV=str(VENV), HOME=data["home"], **make_env(data))
    res = subprocess.run(
        ["sh", str(REPO / script), *DRY], cwd=data["cwd"], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, (script, res.stdout[-2000:], res.stderr[-3000:])
    assert marker in res.stdout, (script, res.stdout[-2000:])


def test_a_recipe_without_an_environment_says_how_to_make_one(data, tmp_path):
    env = clean_env(RELIFT_VENV=str(tmp_path / "missing"), HOME=data["home"], **_relift(data, True))
    for script in (
        "examples/math-7b/train.sh",
        "examples/redi/sft.sh",
        "examples/kk/grpo_7b.sh",
        "eval_scripts/eval_math.sh",
        "eval_scripts/inference.sh",
        "examples/wait_for_nodes.sh",
    ):
        res = subprocess.run(
            ["sh", str(REPO / script), *DRY[1:]], cwd=data["cwd"], env=env, capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 2, (script, res.stderr)
        assert f"no python at {tmp_path}/missing/bin/python (RELIFT_VENV=" in res.stderr, (script, res.stderr)
        assert "bash scripts/setup_env.sh" in res.stderr


# ------------------------------------------------------------------------- the scripts meant to be sourced
# each snippet prints the shell's options and variables before and after sourcing, and "still-here"
PROBE = (
    'before="$(set +o) $- $# ${1:-}"; {src}; rc=$?; after="$(set +o) $- $# ${1:-}"; '
    '[ "$before" = "$after" ] && echo same-shell; echo "still-here rc=$rc"; '
    'echo "leaks:${_relift_ray_dir:-}${_relift_ray_exec:-}${RAY_AUTH_MODE:-}"; '
    "command -v _relift_ray_start >/dev/null || command -v _relift_ray_connect >/dev/null || echo no-functions"
)


def probe(shell: str, src: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = clean_env(HOME=str(tmp_path), **env)
    return subprocess.run(
        [shell, "-c", PROBE.replace("{src}", src), "probe", "arg1", "arg2"],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("shell, source", [("bash", "source"), ("bash", "."), ("sh", ".")])
@pytest.mark.parametrize("name", ["ray_start.sh", "ray_connect.sh"])
def test_sourcing_never_exits_or_changes_the_shell(shell, source, name, tmp_path):
    # a dry run: prints the `ray start` command
    res = probe(shell, f"{source} ./examples/{name}", tmp_path, DRY_RUN="1", MASTER_ADDR="10.0.0.7")
    out = res.stdout
    assert "ray start" in out and "same-shell" in out and "still-here rc=0" in out, (out, res.stderr)
    assert "leaks:\n" in out and "no-functions" in out
    want = "--node-ip-address=10.0.0.7" if name == "ray_start.sh" else "--address=10.0.0.7:6379"
    assert want in out
    # a failure (no environment) returns 2 to the shell instead of exiting it
    bad = probe(
        shell,
        f"{source} ./examples/{name}",
        tmp_path,
        RELIFT_VENV=str(tmp_path / "none"),
        MASTER_ADDR="10.0.0.7",
        RAY_AUTH_MODE="disabled",
    )
    assert "same-shell" in bad.stdout and "still-here rc=2" in bad.stdout, (bad.stdout, bad.stderr)
    assert "no python at" in bad.stderr and "ray start" not in bad.stdout
    # under set -u and set -e the script's own settings still do not leak
    strict = probe(shell, f"set -u; {source} ./examples/{name}", tmp_path, DRY_RUN="1", MASTER_ADDR="10.0.0.7")
    assert "still-here rc=0" in strict.stdout, strict.stderr


@pytest.mark.parametrize("name", ["ray_start.sh", "ray_connect.sh"])
def test_sourced_help_with_bash_starts_nothing(name, tmp_path):
    # bash passes `source FILE --help`'s argument; RELIFT_VENV points nowhere, so anything more would fail
    res = probe("bash", f"source ./examples/{name} --help", tmp_path, RELIFT_VENV=str(tmp_path / "none"))
    assert "still-here rc=0" in res.stdout and "same-shell" in res.stdout, (res.stdout, res.stderr)
    assert "Sourcing is safe" in res.stdout and res.stderr == ""


def test_run_as_a_script_rejects_arguments(tmp_path):
    res = subprocess.run(
        ["sh", str(REPO / "examples" / "ray_start.sh"), "--head"],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2 and "unknown argument '--head'" in res.stderr


def test_an_explicit_python_without_hydra_is_refused(data, tmp_path):
    fake = tmp_path / "python3"  # stands for a system python3: runs, but has no hydra
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    env = clean_env(PYTHON=str(fake), HOME=data["home"], **_relift(data, True))
    res = subprocess.run(
        ["sh", str(REPO / "examples/math-7b/train.sh"), *DRY], cwd=data["cwd"], env=env, capture_output=True, text=True
    )
    assert res.returncode == 2 and f"PYTHON={fake} is not relift's environment" in res.stderr


def test_sourced_from_plain_sh_outside_the_checkout_says_so(tmp_path):
    # POSIX `.` does not tell a script where it is: outside the checkout it cannot find scripts/
    script = f"{REPO}/examples/ray_start.sh"
    res = subprocess.run(
        ["sh", "-c", f'. {script}; echo "alive rc=$?"'],
        cwd=tmp_path,
        env=clean_env(DRY_RUN="1"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "alive rc=2" in res.stdout and "cannot tell where the relift checkout is" in res.stderr
