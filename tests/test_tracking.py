"""Tracking backends (jsonl, console, wandb/tensorboard laziness), the step timer, seeding and RNG state."""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import torch

from relift.utils.seed import get_rng_state, set_rng_state, set_seed
from relift.utils.timer import timed
from relift.utils.tracking import ConsoleLogger, JsonlLogger, Tracking


def read_jsonl(path) -> list[dict]:
    """The lines without their run id (tests of the run id read the file themselves)."""
    return [{k: v for k, v in json.loads(line).items() if k != "run_id"} for line in path.read_text().splitlines()]


# -------------------------------------------------------------------------------------------------- jsonl


def test_jsonl_one_object_per_step_with_converted_values(tmp_path):
    tr = Tracking("p", "e", backends=["jsonl"], local_dir=tmp_path)
    tr.log({"critic/score/mean": torch.tensor(0.5), "actor/grad_norm": np.float32(1.25), "n": np.int64(3),
            "flag": True, "note": "hi", "lens": [1, 2.5], "bad": float("nan"), "obj": object(),
            "t": torch.tensor([2.0])}, step=1)
    tr.log({"critic/score/mean": 0.75}, step=2)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert rows == [
        {"step": 1, "critic/score/mean": 0.5, "actor/grad_norm": 1.25, "n": 3, "flag": 1, "note": "hi",
         "lens": [1, 2.5], "bad": None, "t": 2.0},
        {"step": 2, "critic/score/mean": 0.75},
    ]
    assert tr.jsonl_path == tmp_path / "metrics.jsonl"
    tr.finish()
    tr.finish()  # idempotent


def test_jsonl_lines_are_on_disk_before_finish_and_survive_sigkill(tmp_path):
    code = ("import os, signal, sys\n"
            "from relift.utils.tracking import Tracking\n"
            "tr = Tracking('p', 'e', backends=['jsonl'], local_dir=sys.argv[1])\n"
            "for s in range(1, 4):\n    tr.log({'x': s * 0.5}, step=s)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == -9
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"step": s, "x": s * 0.5} for s in (1, 2, 3)]


def test_jsonl_drops_a_torn_last_line_and_appends_after_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "x": 1}\n{"step": 2, "x"')
    log = JsonlLogger(tmp_path)
    log.log({"x": 2}, step=2)
    log.finish()
    assert read_jsonl(path) == [{"step": 1, "x": 1}, {"step": 2, "x": 2}]


def test_truncate_after_resume_step(tmp_path):
    tr = Tracking("p", "e", backends=["jsonl", "console"], local_dir=tmp_path, console_stream=io.StringIO())
    for s in range(1, 6):
        tr.log({"x": s}, step=s)
    assert tr.truncate_after(3) == 2
    tr.log({"x": 40}, step=4)
    tr.finish()
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"step": 1, "x": 1}, {"step": 2, "x": 2}, {"step": 3, "x": 3},
                                                      {"step": 4, "x": 40}]
    assert not (tmp_path / "metrics.jsonl.tmp").exists()
    # appending to an existing file in a new Tracking (a resumed process)
    tr2 = Tracking("p", "e", backends="jsonl", local_dir=tmp_path)
    assert tr2.truncate_after(0) == 4
    tr2.finish()
    assert (tmp_path / "metrics.jsonl").read_text() == ""


# ------------------------------------------------------------------------------------------------ console


def test_console_line_shows_the_key_metrics():
    buf = io.StringIO()
    tr = Tracking("p", "e", backends=["console"], console_stream=buf)
    tr.log({"critic/score/mean": 0.5, "critic/acc/mean": torch.tensor(0.25), "actor/pg_loss": -0.012345,
            "actor/grad_norm": 1.5, "actor/entropy": 2.1, "response_length/mean": 100.0, "timing_s/step": 12.34,
            "actor/lr": 1e-6, "val-core/math/acc/mean@1": 0.125, "note": "skipped"}, step=3)
    assert buf.getvalue() == ("step 3 | reward 0.5 | acc 0.25 | pg_loss -0.01235 | grad_norm 1.5 | entropy 2.1 | "
                              "resp_len 100 | step_s 12.34 | math/acc/mean@1 0.125\n")
    tr.finish()


def test_console_keys_are_configurable_and_absent_ones_left_out():
    log = ConsoleLogger(keys={"lr": "actor/lr", "loss": ["sft/loss", "actor/pg_loss"]})
    assert log.format({"actor/lr": 1e-6, "actor/pg_loss": 0.5}, step=7) == "step 7 | lr 1e-06 | loss 0.5"
    assert log.format({}, step=1) == "step 1"
    log.finish()


# ---------------------------------------------------------------------------------------- optional backends


def test_unknown_backend_and_jsonl_without_dir():
    known = "console, jsonl, wandb, tensorboard"
    with pytest.raises(ValueError, match=r"unknown logger backend\(s\) \['mlflow'\].*" + known):
        Tracking("p", "e", backends=["console", "mlflow"])
    with pytest.raises(ValueError, match="trainer.default_local_dir"):
        Tracking("p", "e", backends=["jsonl"], local_dir=None)


def test_wandb_missing_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError, installed or not
    with pytest.raises(ImportError, match=r"pip install 'relift\[wandb\]'"):
        Tracking("p", "e", backends=["jsonl", "wandb"], local_dir=tmp_path)


def test_tensorboard_missing_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"pip install 'relift\[tensorboard\]'"):
        Tracking("p", "e", backends=["tensorboard"], local_dir=tmp_path)


def test_wandb_gets_numeric_metrics_and_a_plain_config(monkeypatch, tmp_path):
    from omegaconf import OmegaConf

    calls: dict = {"log": []}

    class Run:
        def log(self, metrics, step):
            calls["log"].append((metrics, step))

        def finish(self):
            calls["finished"] = True

    def init(**kwargs):
        calls["init"] = kwargs
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    cfg = OmegaConf.create({"a": 1, "b": "${a}"})
    tr = Tracking("proj", "exp", backends=["wandb"], config=cfg, local_dir=tmp_path)
    tr.log({"x": torch.tensor(1.5), "s": "text", "l": [1, 2]}, step=4)
    tr.finish()
    assert calls["init"] == {"project": "proj", "name": "exp", "config": {"a": 1, "b": 1}, "dir": str(tmp_path)}
    assert calls["log"] == [({"x": 1.5}, 4)] and calls["finished"]


def test_tensorboard_writes_numeric_scalars(monkeypatch, tmp_path):
    scalars = []

    class Writer:
        def __init__(self, log_dir):
            scalars.append(("dir", log_dir))

        def add_scalar(self, k, v, step):
            scalars.append((k, v, step))

        def flush(self):
            pass

        def close(self):
            scalars.append("closed")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    monkeypatch.delenv("TENSORBOARD_DIR", raising=False)
    tr = Tracking("p", "exp", backends=["tensorboard"], local_dir=tmp_path)
    tr.log({"a": 1.0, "skip": "x"}, step=2)
    tr.finish()
    assert scalars == [("dir", str(tmp_path / "tensorboard" / "exp")), ("a", 1.0, 2), "closed"]


def test_step_must_be_an_int(tmp_path):
    tr = Tracking("p", "e", backends=["jsonl"], local_dir=tmp_path)
    with pytest.raises(TypeError, match="step must be an int"):
        tr.log({"x": 1}, step=1.5)
    tr.finish()


# -------------------------------------------------------------------------------------------------- timer


def test_timed_accumulates_and_records_on_error(monkeypatch):
    ticks = iter([10.0, 12.5, 20.0, 21.0, 30.0, 30.25])
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks))
    timings: dict[str, float] = {}
    with timed("gen", timings):
        pass
    with timed("timing_s/gen", timings):  # the prefix is not doubled; times add up
        pass
    with pytest.raises(RuntimeError), timed("update_actor", timings):
        raise RuntimeError("boom")
    assert timings == {"timing_s/gen": 3.5, "timing_s/update_actor": 0.25}


def test_timed_measures_real_time():
    timings: dict[str, float] = {}
    with timed("sleep", timings):
        time.sleep(0.01)
    assert timings["timing_s/sleep"] >= 0.01
    with pytest.raises(ValueError):
        with timed("", timings):
            pass


# ------------------------------------------------------------------------------------------------ seeding


def _draw() -> tuple:
    return random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3).tolist()


def test_set_seed_is_reproducible():
    set_seed(123)
    a = _draw()
    set_seed(123)
    assert _draw() == a
    set_seed(124)
    assert _draw() != a
    with pytest.raises(ValueError):
        set_seed(-1)
    with pytest.raises(TypeError):
        set_seed("1")


def test_rng_state_round_trip_through_torch_save(tmp_path):
    set_seed(7)
    _draw()
    np.random.randn()  # leaves a cached gaussian in numpy's state
    state = get_rng_state()
    expected = _draw()
    torch.save(state, tmp_path / "rng.pt")
    set_seed(999)
    _draw()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert _draw() == expected
    with pytest.raises(KeyError, match="numpy"):
        set_rng_state({"python": state["python"], "torch": state["torch"]})


def test_gauss_cache_is_restored():
    set_seed(3)
    np.random.randn()
    state = get_rng_state()
    after = np.random.randn()
    set_rng_state(state)
    assert math.isclose(np.random.randn(), after, rel_tol=0, abs_tol=0)
