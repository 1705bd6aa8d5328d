"""Checkpoints load without running code (issue 19.2), and a resume applies this run's optimiser settings.

A real checkpoint of a tiny 2-step RL run is doctored file by file (driver state, model, optimiser and
extra-state shards, a DataProto file): each holds an object whose unpickling would create a marker
file. Every load must refuse it, name the file, and the marker must not appear. The same doctored file
loaded the old way (``weights_only=False``) does create the marker, so the test can fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from relift.protocol import DataProto
from relift.utils import checkpoint as ck
from relift.utils.optim import build_lr_scheduler, build_optimizer
from workers.fsdp_checkpoint import TrainState, load_train_state

pytestmark = pytest.mark.faults  # fault injection (issue 19): `bash scripts/test.sh -m faults`

REPO = Path(__file__).resolve().parents[1]
CONTENTS = ("model", "optimizer", "extra")


class _RunsCode:
    """Unpickling this calls ``os.system(cmd)``: what a hostile checkpoint does."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    from test_rl_trainer import make_workspace, train

    root = tmp_path_factory.mktemp("safe_ckpt")
    ws = make_workspace(root / "ws")
    out = root / "out"
    train(ws, out, **{"trainer.total_training_steps": 2, "trainer.save_freq": 1})
    return ws, out


def _copy_step(out: Path, dest: Path) -> Path:
    shutil.copytree(out, dest)
    return ck.latest_checkpoint(dest)


def _doctor(path: Path, marker: Path) -> None:
    obj = ck.safe_load(path)  # the genuine file loads safely
    obj["payload"] = _RunsCode(f"touch {marker}")
    torch.save(obj, path)


def _train_state(ws: Path, lr: float, schedule: str = "constant", total: int = 2) -> TrainState:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(ws / "model")
    opt = build_optimizer(model.parameters(), lr=lr)
    sched = build_lr_scheduler(opt, total_steps=total, schedule=schedule)
    return TrainState(
        module=model,
        optimizer=opt,
        lr_scheduler=sched,
        sft_optimizer=None,
        tokenizer=AutoTokenizer.from_pretrained(ws / "model"),
        rank=0,
        world_size=1,
    )


def test_the_doctored_file_would_run_code_when_loaded_unsafely(run, tmp_path):
    _, out = run
    step = _copy_step(out, tmp_path / "c")
    marker = tmp_path / "ran"
    _doctor(step / ck.DRIVER_STATE_FILE, marker)
    torch.load(step / ck.DRIVER_STATE_FILE, weights_only=False)
    assert marker.exists()


def test_doctored_driver_state_is_refused_naming_it(run, tmp_path):
    _, out = run
    step = _copy_step(out, tmp_path / "c")
    marker = tmp_path / "ran"
    _doctor(step / ck.DRIVER_STATE_FILE, marker)
    with pytest.raises(ck.UnsafeCheckpointError, match=str(step / ck.DRIVER_STATE_FILE)):
        ck.load_driver_state(step)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["model", "optim", "extra_state"])
def test_doctored_worker_shards_are_refused_naming_them(run, tmp_path, kind):
    ws, out = run
    step = _copy_step(out, tmp_path / "c")
    marker = tmp_path / "ran"
    target = ck.rank_file(step / "actor", kind, 0, 1)
    _doctor(target, marker)
    with pytest.raises(ck.UnsafeCheckpointError, match=str(target)):
        load_train_state(_train_state(ws, lr=1e-3), step / "actor", CONTENTS, optimizer_offload=False)
    assert not marker.exists()


def test_doctored_dataproto_file_is_refused(tmp_path):
    marker = tmp_path / "ran"
    d = DataProto.from_dict({"x": torch.arange(4)}, {"uid": ["a", "b", "c", "d"]}, {"temperature": 1.0})
    path = tmp_path / "batch.dp"
    d.save_to_disk(path)
    back = DataProto.load_from_disk(path)
    assert torch.equal(back.batch["x"], torch.arange(4)) and list(back.non_tensor_batch["uid"]) == list("abcd")
    assert back.meta_info == {"temperature": 1.0}
    with np.load(path, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}
    evil = np.empty(1, dtype=object)
    evil[0] = _RunsCode(f"touch {marker}")
    entries["tensor_0"] = evil
    with open(path, "wb") as f:
        np.savez(f, **entries)
    with pytest.raises(ValueError, match="cannot load a DataProto"):
        DataProto.load_from_disk(path)
    assert not marker.exists()


def test_dataproto_round_trip_keeps_bf16_numeric_columns_and_nested_rows(tmp_path):
    d = DataProto.from_dict(
        {"h": torch.tensor([[1.5, -2.0], [0.25, 3.0]], dtype=torch.bfloat16)},
        {"gt": [{"a": [1, 2]}, {"a": []}]},
        {"n": 2},
    )
    d.non_tensor_batch["score"] = np.array([0.5, 1.0])
    d.save_to_disk(tmp_path / "b")
    back = DataProto.load_from_disk(tmp_path / "b")
    assert back.batch["h"].dtype == torch.bfloat16 and torch.equal(back.batch["h"], d.batch["h"])
    assert back.non_tensor_batch["gt"].tolist() == [{"a": [1, 2]}, {"a": []}]
    assert back.non_tensor_batch["score"].dtype == np.float64 and back.non_tensor_batch["score"].tolist() == [0.5, 1.0]
    bad = DataProto.from_dict({"x": torch.arange(1)}, {"o": [object()]})
    with pytest.raises(TypeError, match="non_tensor_batch\\['o'\\]"):
        bad.save_to_disk(tmp_path / "c")


def test_resume_uses_this_runs_lr_and_schedule_with_the_saved_moments(run):
    ws, out = run
    step = ck.latest_checkpoint(out)
    saved_extra = ck.safe_load(ck.rank_file(step / "actor", "extra_state", 0, 1))
    saved_optim = ck.safe_load(ck.rank_file(step / "actor", "optim", 0, 1))
    last_epoch = saved_extra["lr_scheduler"]["last_epoch"]
    assert last_epoch == 2 and saved_optim["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3)

    state = _train_state(ws, lr=0.25, schedule="linear", total=10)
    load_train_state(state, step / "actor", CONTENTS, optimizer_offload=False)
    group = state.optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(0.25 * (1 - 2 / 10))  # new lr, new schedule, saved position
    assert state.lr_scheduler.last_epoch == 2 and state.lr_scheduler.get_last_lr()[0] == group["lr"]
    state.optimizer.step()  # (zero grads: only the schedule moves)
    state.lr_scheduler.step()
    assert state.optimizer.param_groups[0]["lr"] == pytest.approx(0.25 * (1 - 3 / 10))
    moments = next(iter(state.optimizer.state.values()))
    saved_moments = saved_optim["optimizer"]["state"][0]
    assert torch.equal(moments["exp_avg"], saved_moments["exp_avg"])  # the moments came from the checkpoint


@pytest.mark.timeout(300)
def test_main_rl_refuses_a_doctored_checkpoint_with_one_message(run, tmp_path):
    from test_rl_trainer import overrides

    ws, out = run
    step = _copy_step(out, tmp_path / "c")
    marker = tmp_path / "ran"
    _doctor(step / ck.DRIVER_STATE_FILE, marker)
    env = {**os.environ, "RELIFT_CPU_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.main_rl",
            *overrides(ws, tmp_path / "c", **{"trainer.total_training_steps": 3, "trainer.save_freq": 1}),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert f"refusing to load {step / ck.DRIVER_STATE_FILE}" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists()


def test_a_refusal_wrapped_by_a_worker_group_is_still_found():
    from trainer.run_checkpoint import _unsafe_file_message

    inner = ck.UnsafeCheckpointError("refusing to load /ck/optim.pt: it holds objects other than tensors")
    try:
        try:
            raise inner
        except ck.UnsafeCheckpointError as e:
            raise RuntimeError("worker failed") from e
    except RuntimeError as outer:
        assert _unsafe_file_message(outer) == str(inner)
    # Ray re-raises the worker's exception as text inside its own error type
    ray_like = RuntimeError(
        "ray::Worker.load_checkpoint() (pid=7)\n  File x\nrelift.utils.checkpoint."
        "UnsafeCheckpointError: refusing to load /ck/optim.pt: it holds objects\nmore"
    )
    assert _unsafe_file_message(ray_like) == "refusing to load /ck/optim.pt: it holds objects"
    assert _unsafe_file_message(RuntimeError("shape mismatch")) is None
