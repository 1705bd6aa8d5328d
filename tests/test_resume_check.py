"""No silent resume of another run (issues 13.4, 19.3): the run spec saved in each checkpoint is
compared with the new one; safe changes are listed and take effect, the rest stop the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_rl_trainer import make_workspace, overrides, read_jsonl

from trainer.resume_check import already_complete_message, check_resume, flatten, spec_changes
from trainer.run_errors import RunRefused

pytestmark = pytest.mark.faults  # fault injection (issue 19): `bash scripts/test.sh -m faults`

REPO = Path(__file__).resolve().parents[1]


def _spec(**over: object) -> dict:
    spec = {
        "__spec__": "RLRunSpec",
        "model": {"path": "/m/a"},
        "data": {"train_files": ["/d/train.parquet"], "train_batch_size": 4},
        "actor": {"optim": {"lr": 1e-3}, "train_micro": {"micro_batch_size_per_gpu": 8}},
        "algorithm": {"adv_estimator": "grpo"},
        "trainer": {"total_training_steps": 5, "save_freq": 1, "logger": ["jsonl"]},
        "batch": {"dataset_rows": 64, "sequences_per_step": 16},
    }
    flat = flatten(spec)
    flat.update(over)
    out: dict = {}
    for key, val in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = val
    return out


def test_flatten_and_classify():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}}) == {"a.b": 1, "a.c.d": [1, 2]}
    safe, unsafe = spec_changes(
        _spec(),
        _spec(
            **{
                "actor.optim.lr": 5e-4,
                "trainer.total_training_steps": 9,
                "actor.train_micro.micro_batch_size_per_gpu": 2,
                "model.path": "/m/b",
                "data.train_batch_size": 8,
                "algorithm.adv_estimator": "rloo",
            }
        ),
    )
    assert [k for k, _, _ in safe] == [
        "actor.optim.lr",
        "actor.train_micro.micro_batch_size_per_gpu",
        "trainer.total_training_steps",
    ]
    assert [(k, o, n) for k, o, n in unsafe] == [
        ("algorithm.adv_estimator", "grpo", "rloo"),
        ("data.train_batch_size", 4, 8),
        ("model.path", "/m/a", "/m/b"),
    ]
    # a setting only one side has (another relift version) and an uncounted dataset are not refusals
    new = _spec(**{"batch.dataset_rows": None, "trainer.hang_timeout_s": 600, "reward.new_knob": 1})
    safe, unsafe = spec_changes(_spec(), new)
    assert unsafe == [] and {k for k, _, _ in safe} == {
        "batch.dataset_rows",
        "trainer.hang_timeout_s",
        "reward.new_knob",
    }


def test_check_resume_refuses_with_both_values_and_the_ways_forward(caplog):
    with pytest.raises(RunRefused) as err:
        check_resume("/ck/global_step_3", _spec(), _spec(**{"model.path": "/m/b"}), force=False)
    msg = str(err.value)
    assert 'model.path: checkpoint "/m/a"  ->  now "/m/b"' in msg and "/ck/global_step_3" in msg
    for way in ("trainer.default_local_dir", "trainer.resume_mode=disable", "trainer.resume_force=true"):
        assert way in msg
    assert err.value.exit_code == 2
    with caplog.at_level("WARNING"):
        safe = check_resume("/ck", _spec(), _spec(**{"model.path": "/m/b", "actor.optim.lr": 2e-3}), force=True)
    assert "resume_force=true" in caplog.text and "actor.optim.lr: 0.001 -> 0.002" in caplog.text
    assert [k for k, _, _ in safe] == ["actor.optim.lr"]
    with pytest.raises(RunRefused, match="OfflineRunSpec"):
        check_resume("/ck", _spec(), _spec(**{"__spec__": "OfflineRunSpec"}), force=False)


def test_already_complete_message_names_the_step():
    msg = already_complete_message("/ck/global_step_5", 5, 5)
    assert "already complete" in msg and "/ck/global_step_5" in msg and "step 5 of 5" in msg


def _main_rl(ws: Path, out: Path, **extra: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "RELIFT_CPU_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "trainer.main_rl", *overrides(ws, out, **extra)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )


@pytest.mark.timeout(900)
def test_main_rl_resume_refuses_other_runs_applies_lr_and_says_when_complete(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "out"
    base = {"trainer.save_freq": 1, "trainer.total_training_steps": 2}
    first = _main_rl(ws, out, **base)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "global_step_2" / "run_spec.json").is_file()

    # another run in the same directory (other batch size, other model path): refused, nothing written
    other_model = tmp_path / "ws2"
    make_workspace(other_model, n_train=64)
    before, spec_before = (out / "metrics.jsonl").read_text(), (out / "run_spec.json").read_text()
    res = _main_rl(
        ws,
        out,
        **{
            **base,
            "trainer.total_training_steps": 3,
            "data.train_batch_size": 8,
            "actor_rollout_ref.model.path": other_model / "model",
        },
    )
    assert res.returncode == 2, res.stderr[-3000:]
    assert "data.train_batch_size: checkpoint 4  ->  now 8" in res.stderr
    assert "model.path" in res.stderr and "Traceback" not in res.stderr
    assert (out / "metrics.jsonl").read_text() == before and not (out / "global_step_3").exists()
    assert (out / "run_spec.json").read_text() == spec_before  # refused before writing anything

    # the same run with a new lr and one more step: listed, and the new lr is the one used
    res = _main_rl(ws, out, **{**base, "trainer.total_training_steps": 3, "actor_rollout_ref.actor.optim.lr": 5e-4})
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert "actor.optim.lr: 0.001 -> 0.0005" in log and "trainer.total_training_steps: 2 -> 3" in log
    lrs = {r["step"]: r.get("actor/lr") for r in read_jsonl(out / "metrics.jsonl")}
    assert lrs[2] == pytest.approx(1e-3) and lrs[3] == pytest.approx(5e-4)

    # nothing left to train: said as such with the checkpoint's step, exit 0
    res = _main_rl(ws, out, **{**base, "trainer.total_training_steps": 3, "actor_rollout_ref.actor.optim.lr": 5e-4})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "already complete" in res.stdout + res.stderr and "step 3 of 3" in res.stdout + res.stderr
