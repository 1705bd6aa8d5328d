"""Exact resume: ``python -m trainer.main_rl`` SIGKILLed after step k and resumed logs the same
metrics for the later steps as an uninterrupted run. Plus a Ray-backend smoke run at world size 2."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_rl_trainer import make_workspace, overrides, read_jsonl

from tests.proc_utils import sigkill_after

REPO = Path(__file__).resolve().parents[1]
STEPS, KILL_AFTER = 5, 2
# wall-clock dependent: never compared
_VOLATILE = ("timing_s/", "perf/throughput", "perf/time_per_step", "run_id")


def _cmd(ws: Path, out: Path) -> list[str]:
    extra = {"trainer.total_training_steps": STEPS, "trainer.save_freq": 1, "actor_rollout_ref.rollout.n": 4,
             "actor_rollout_ref.actor.optim.lr": 1e-2, "data.val_files": ws / "val.parquet",
             "trainer.test_freq": 2, "actor_rollout_ref.rollout.val_kwargs.n": 2,
             "actor_rollout_ref.rollout.val_kwargs.do_sample": True,
             "actor_rollout_ref.rollout.val_kwargs.temperature": 1.0,
             # off-policy (2 optimiser steps per RL step): old log-probs and the optimiser state matter
             "actor_rollout_ref.actor.ppo_mini_batch_size": 2,
             "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 4}
    return [sys.executable, "-m", "trainer.main_rl", *overrides(ws, out, **extra)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env["RELIFT_CPU_THREADS"] = "1"
    return env


def _stable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if not k.startswith(_VOLATILE)}


def _wait_for_step(proc: subprocess.Popen, jsonl: Path, step: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before step {step}: {proc.stdout.read()}")
        if jsonl.exists() and any(r.get("step") == step for r in read_jsonl(jsonl)):
            return
        time.sleep(0.05)
    raise AssertionError(f"step {step} never appeared in {jsonl}")


@pytest.mark.faults
@pytest.mark.timeout(300)
def test_sigkill_and_resume_logs_the_same_metrics(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    full_out, cut_out = tmp_path / "full", tmp_path / "cut"

    subprocess.run(_cmd(ws, full_out), cwd=REPO, env=_env(), check=True, capture_output=True, text=True)
    full = read_jsonl(full_out / "metrics.jsonl")
    assert [r["step"] for r in full] == [0, 1, 2, 3, 4, 5]

    proc = subprocess.Popen(_cmd(ws, cut_out), cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    with sigkill_after(proc):
        _wait_for_step(proc, cut_out / "metrics.jsonl", KILL_AFTER)
    before = read_jsonl(cut_out / "metrics.jsonl")
    last_logged = max(r["step"] for r in before)
    assert KILL_AFTER <= last_logged < STEPS, f"killed too late to test resume (step {last_logged} logged)"

    res = subprocess.run(_cmd(ws, cut_out), cwd=REPO, env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "resuming from" in res.stdout + res.stderr
    resumed = read_jsonl(cut_out / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4, 5]  # no duplicate or missing lines
    for a, b in zip(full, resumed):
        a, b = _stable(a), _stable(b)
        assert a.keys() == b.keys(), (a["step"], set(a) ^ set(b))
        for key in a:
            assert math.isclose(a[key], b[key], rel_tol=1e-5, abs_tol=1e-6), (a["step"], key, a[key], b[key])
    # the resumed steps really trained something (the comparison is not between constants)
    # (sampled lengths and gradient norms move; pg_loss alone can be ~0 when the reward is ~0 everywhere)
    moving = {(round(r["response_length/mean"], 6), round(r["actor/grad_norm"], 6))
              for r in resumed if "actor/grad_norm" in r}
    assert len(moving) > 1, moving


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_ray_backend_world_size_two(ray_local, tmp_path):
    from trainer.plan import build_rl_plan, compose_config
    from trainer.rl_trainer import RLTrainer

    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "run"
    cfg = compose_config("rl_trainer", overrides(ws, out, **{
        "trainer.backend": "ray", "trainer.n_gpus_per_node": 2, "trainer.total_training_steps": 2,
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 8,
        "trainer.save_freq": 2, "data.val_files": ws / "val.parquet"}))
    trainer = RLTrainer(build_rl_plan(cfg))
    trainer.fit()
    assert trainer.groups.backend == "ray" and trainer.actor_wg.world_size == 2
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2]
    for rec in records[1:]:
        assert rec["critic/score/mean"] >= 0 and math.isfinite(rec["actor/pg_loss"])
        assert rec["perf/total_num_tokens"] > 0
        # trainer.balance_batch (on by default): the two workers' chunks after reordering
        assert rec["global_seqlen/balanced_max"] - rec["global_seqlen/balanced_min"] <= 48   # longest row
        assert rec["global_seqlen/balanced_max"] <= rec["global_seqlen/max"]
    assert "val-core/toy/acc/mean@1" in records[0] and "val-core/toy/acc/mean@1" in records[2]
    assert (out / "global_step_2" / "actor" / "model_world_size_2_rank_1.pt").is_file()
    assert json.loads((out / "global_step_2" / "actor" / "meta.json").read_text())["world_size"] == 2
