"""Fault injection on a tiny CPU model (issue 19): what a multi-day run meets, each case checked.

* SIGTERM (a scheduler's preemption) mid-run: the step finishes, a checkpoint is saved although
  ``trainer.save_freq=-1``, ONE line names it and the resume command, exit 75; running that
  command finishes the run with the uninterrupted run's metrics; no child process outlives it.
* Ctrl-C twice (the terminal's SIGINT to the whole process group): exit 130 at once, no traceback,
  no ``.tmp-`` save, no child process left; a second Ctrl-C landing inside a save removes it and
  keeps the previous checkpoint.
* A first Ctrl-C on the Ray backend: the Ray workers survive the terminal's SIGINT, the step
  finishes, exit 75, and no Ray process (GCS, raylet, workers) is left.
* The hang watchdog: a scorer that sleeps -> exit 3 within seconds, a message naming the phase
  (``reward``) and the busy worker group, the driver's stacks in the run folder.
* kill -9 of the driver right after a checkpoint, then again in the middle of the next save: each
  resume starts at the last committed step, never from the half-written ``.tmp-`` folder, and the
  finished run logs the uninterrupted run's metrics exactly.
* Topology: ``trainer.nnodes=2`` on a one-node Ray cluster fails at start (exit 2) naming both;
  the run's local Ray instance (GCS, raylet) listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_rl_trainer import make_workspace, overrides, read_jsonl

from relift.utils import checkpoint as ck

pytestmark = pytest.mark.faults  # fault injection (issue 19): `bash scripts/test.sh -m faults`

REPO = Path(__file__).resolve().parents[1]
STEPS = 4
_VOLATILE = ("timing_s/", "perf/throughput", "perf/time_per_step", "run_id")  # wall-clock, run ids: never compared
SLOW_REWARD_PY = """
import time


def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    time.sleep(0.2)  # 16 samples, one scoring process: a step of over 3 s, so both Ctrl-C land inside one
    return 0.0
"""
HANG_REWARD_PY = """
import time


def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    time.sleep(600)
    return 0.0
"""


# ----------------------------------------------------------------------------------- helpers
def _cmd(ws: Path, out: Path, **extra: object) -> list[str]:
    base = {
        "trainer.total_training_steps": STEPS,
        "trainer.save_freq": -1,
        "actor_rollout_ref.rollout.n": 4,
        "actor_rollout_ref.actor.optim.lr": 1e-2,
        "data.val_files": ws / "val.parquet",
        "trainer.test_freq": 2,
        "actor_rollout_ref.rollout.val_kwargs.n": 2,
        "actor_rollout_ref.rollout.val_kwargs.do_sample": True,
        "actor_rollout_ref.rollout.val_kwargs.temperature": 1.0,
        # off-policy (2 optimiser steps per RL step): old log-probs and the optimiser state matter
        "actor_rollout_ref.actor.ppo_mini_batch_size": 2,
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 4,
    }
    base.update(extra)
    return [sys.executable, "-m", "trainer.main_rl", *overrides(ws, out, **base)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env["RELIFT_CPU_THREADS"] = "1"
    return env


class Run:
    """A training subprocess in its own session (so a group signal reaches it as a terminal's would)."""

    def __init__(self, cmd: list[str], log_dir: Path, name: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
        self._out, self._err = open(self.out_path, "w"), open(self.err_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=_env(), stdout=self._out, stderr=self._err, start_new_session=True
        )
        self.started = time.monotonic()

    def wait(self, timeout: float = 240) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self._out.close()
            self._err.close()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def text(self) -> str:
        return self.out_path.read_text() + self.err_path.read_text()

    def wait_for_step(self, jsonl: Path, step: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the run ended (rc {self.proc.returncode}) before step {step}: {self.text()[-3000:]}"
                )
            if jsonl.exists() and any(r.get("step") == step for r in _records(jsonl)):
                return
            time.sleep(0.05)
        raise AssertionError(f"step {step} never appeared in {jsonl}")

    def wait_for_text(self, pattern: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.stderr):
                return
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} never appeared on stderr: {self.stderr[-2000:]}")


def _records(jsonl: Path) -> list[dict]:
    out = []
    for line in jsonl.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            pass
    return out


def _stable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if not k.startswith(_VOLATILE)}


def _same_metrics(full: list[dict], resumed: list[dict]) -> None:
    assert [r["step"] for r in resumed] == [r["step"] for r in full] == list(range(STEPS + 1))
    for a, b in zip(full, resumed):
        a, b = _stable(a), _stable(b)
        assert a.keys() == b.keys(), (a["step"], set(a) ^ set(b))
        for key in a:
            assert math.isclose(a[key], b[key], rel_tol=1e-5, abs_tol=1e-6), (a["step"], key, a[key], b[key])
    # not constants: the sampled lengths and the update's gradient norm move from step to step
    # (pg_loss alone can be ~0 at every step when the tiny policy earns almost no reward)
    moving = {(round(r["response_length/mean"], 6), round(r["actor/grad_norm"], 6))
              for r in resumed if "actor/grad_norm" in r}
    assert len(moving) > 1, moving


def _ppid_map() -> dict[int, int]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            out[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for child, parent in _ppid_map().items():
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def _alive(pids: set[int]) -> dict[int, str]:
    """The pids still running (zombies count as gone), with their command names."""
    out = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            out[pid] = stat.split("(", 1)[1].rsplit(")", 1)[0]
    return out


def _assert_all_gone(pids: set[int], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pids), f"processes left behind: {_alive(pids)}"


def _listening(pid: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) of the TCP sockets ``pid`` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            f = row.split()
            if f[3] == "0A" and f[9] in inodes:  # state LISTEN
                found.append(f[1].split(":")[0])
    return found


_LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1 in /proc/net/tcp and tcp6


def _relift_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("[relift]")]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("faults_ws"))
    (ws / "hang_reward.py").write_text(HANG_REWARD_PY)
    (ws / "slow_reward.py").write_text(SLOW_REWARD_PY)
    return ws


@pytest.fixture(scope="module")
def reference(ws, tmp_path_factory) -> list[dict]:
    """The uninterrupted run's metrics.jsonl."""
    out = tmp_path_factory.mktemp("reference")
    res = subprocess.run(_cmd(ws, out), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return read_jsonl(out / "metrics.jsonl")


# ----------------------------------------------------------------------------------- SIGTERM
@pytest.mark.timeout(300)
def test_sigterm_saves_names_the_resume_command_and_the_resume_matches(ws, reference, tmp_path):
    out = tmp_path / "run"
    run = Run(_cmd(ws, out), tmp_path, "cut")
    run.wait_for_step(out / "metrics.jsonl", 1)
    children = _descendants(run.proc.pid)
    run.proc.send_signal(signal.SIGTERM)
    rc = run.wait()
    assert rc == 75, run.text()[-3000:]
    lines = _relift_lines(run.stderr)
    final = [line for line in lines if line.startswith("[relift] stopped by SIGTERM")]
    assert len(final) == 1, lines
    m = re.match(r"\[relift\] stopped by SIGTERM after step (\d+): checkpoint (\S+); resume: (.+)$", final[0])
    assert m, final[0]
    step, saved, resume = int(m.group(1)), Path(m.group(2)), m.group(3)
    assert 1 <= step < STEPS
    assert saved == out / f"global_step_{step}" and (saved / "actor" / "meta.json").is_file()
    assert ck.read_tracker(out) == step and not list(out.glob(".tmp-*"))
    assert "Traceback" not in run.stderr
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == list(range(step + 1))
    _assert_all_gone(children)

    res = subprocess.run(["sh", "-c", resume], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"global_step_{step}" in res.stdout + res.stderr  # "resuming from ..."
    _same_metrics(reference, read_jsonl(out / "metrics.jsonl"))


# ----------------------------------------------------------------------------------- Ctrl-C
@pytest.mark.timeout(200)
def test_double_ctrl_c_stops_at_once_without_traceback_or_leftovers(ws, tmp_path):
    out = tmp_path / "run"
    slow = {"reward.custom_reward_function.path": ws / "slow_reward.py", "data.val_files": "null"}
    run = Run(_cmd(ws, out, **{"trainer.save_freq": 1, "trainer.total_training_steps": 50, **slow}), tmp_path, "cc")
    run.wait_for_step(out / "metrics.jsonl", 1)
    time.sleep(1.0)  # into step 2 (over 3 s long), past the moment between steps where one Ctrl-C stops at once
    children = _descendants(run.proc.pid)
    os.killpg(run.proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    run.wait_for_text(r"SIGINT: finishing step")
    os.killpg(run.proc.pid, signal.SIGINT)
    rc = run.wait()
    assert rc == 130, run.text()[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    final = [line for line in _relift_lines(run.stderr) if "stopped at once" in line]
    assert len(final) == 1, _relift_lines(run.stderr)
    last = out / f"global_step_{ck.read_tracker(out)}"
    assert f"during step {ck.read_tracker(out) + 1} " in final[0], final[0]  # the step in flight is lost
    assert f"last good checkpoint {last};" in final[0], final[0]
    assert "resume: cd " in final[0]
    assert not list(out.glob(".tmp-*"))
    _assert_all_gone(children)


@pytest.mark.timeout(200)
def test_second_ctrl_c_inside_a_save_removes_it_and_keeps_the_previous_checkpoint(ws, tmp_path, monkeypatch):
    """In-process: the first SIGINT from a hook in step 2, the second from inside step 2's save."""
    from trainer.interrupts import Aborted
    from trainer.plan import build_rl_plan, compose_config
    from trainer.rl_trainer import RLTrainer

    out = tmp_path / "run"
    cfg = compose_config("rl_trainer", _cmd(ws, out, **{"trainer.save_freq": 1})[3:])
    trainer_ref: dict = {}

    def first_ctrl_c(trainer, batch, metrics):
        trainer_ref["t"] = trainer
        if trainer.global_step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    real_save_driver_state = ck.save_driver_state

    def save_then_second_ctrl_c(stage, state):
        if state["global_step"] == 2:
            assert (Path(stage) / "actor" / "meta.json").is_file()  # the shards are half the save
            os.kill(os.getpid(), signal.SIGINT)
        return real_save_driver_state(stage, state)

    monkeypatch.setattr(ck, "save_driver_state", save_then_second_ctrl_c)
    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Aborted) as info:
        RLTrainer(build_rl_plan(cfg), post_update_hooks=[first_ctrl_c]).fit()
    assert info.value.exit_code == 130 and info.value.step == 2
    assert signal.getsignal(signal.SIGINT) is handler_before  # the handlers are put back
    assert not list(out.glob(".tmp-*")) and not (out / "global_step_2").exists()
    assert ck.read_tracker(out) == 1 and ck.latest_checkpoint(out) == out / "global_step_1"
    assert ck.load_driver_state(out / "global_step_1")["global_step"] == 1


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_ctrl_c_on_the_ray_backend_finishes_the_step_and_leaves_no_ray_process(ws, tmp_path):
    """The terminal's SIGINT reaches Ray's own processes too: they must survive it (and listen on 127.0.0.1)."""
    out = tmp_path / "run"
    run = Run(
        _cmd(ws, out, **{"trainer.backend": "ray", "ray_init.num_cpus": 2, "trainer.total_training_steps": 50}),
        tmp_path,
        "ray",
    )
    run.wait_for_step(out / "metrics.jsonl", 1)
    children = _descendants(run.proc.pid)
    ray_procs = {pid: name for pid, name in _alive(children).items() if name in ("raylet", "gcs_server")}
    assert set(ray_procs.values()) == {"raylet", "gcs_server"}, _alive(children)  # the run's own instance
    for pid, name in ray_procs.items():  # it listens on the loopback interface only
        addrs = _listening(pid)
        assert addrs and set(addrs) <= _LOOPBACK, (name, addrs)
    os.killpg(run.proc.pid, signal.SIGINT)
    rc = run.wait()
    assert rc == 75, run.text()[-3000:]
    final = [line for line in _relift_lines(run.stderr) if line.startswith("[relift] stopped by SIGINT")]
    assert len(final) == 1, _relift_lines(run.stderr)
    step = ck.read_tracker(out)
    assert step is not None and f"checkpoint {out / f'global_step_{step}'};" in final[0]
    assert "Traceback" not in run.stderr
    _assert_all_gone(children)


# ----------------------------------------------------------------------------------- watchdog
@pytest.mark.timeout(200)
def test_watchdog_names_the_hung_phase_and_dumps_stacks(ws, tmp_path):
    out = tmp_path / "run"
    run = Run(
        _cmd(
            ws,
            out,
            **{
                "reward.custom_reward_function.path": ws / "hang_reward.py",
                "reward.timeout": 600,
                "trainer.hang_timeout_s": 10,
                "data.val_files": "null",
            },
        ),
        tmp_path,
        "hang",
    )
    deadline = time.monotonic() + 120
    children: set[int] = set()
    while run.proc.poll() is None and time.monotonic() < deadline:
        children |= _descendants(run.proc.pid)
        time.sleep(0.2)
    rc = run.wait(timeout=5)
    assert rc == 3, run.text()[-3000:]
    lines = [line for line in _relift_lines(run.stderr) if "hang:" in line]
    assert len(lines) == 1, _relift_lines(run.stderr)
    assert "in phase 'reward' (setup/step/reward) of step 1" in lines[0]
    assert "RewardWorker" in lines[0] and "trainer.hang_timeout_s" in lines[0]
    dump = out / "hang_step1_reward.txt"
    assert str(dump) in lines[0]
    text = dump.read_text()
    assert "=== driver" in text and "compute_score" in text and "train_step" in text
    assert "Traceback" not in run.stderr
    assert children and not list(out.glob("global_step_*"))
    _assert_all_gone(children)  # the scorer that still sleeps was killed too


# ----------------------------------------------------------------------------------- kill -9
KILL_IN_SAVE = textwrap.dedent("""
    import os, signal, sys
    from relift.utils import checkpoint as ck
    real = ck.save_driver_state
    def save(stage, state):
        if state["global_step"] == int(os.environ["KILL_AT_SAVE"]):
            os.kill(os.getpid(), signal.SIGKILL)  # the shards are written, the driver state is not
        return real(stage, state)
    ck.save_driver_state = save
    sys.argv = ["trainer.main_rl", *sys.argv[1:]]
    from trainer.main_rl import main
    main()
""")


@pytest.mark.timeout(300)
def test_kill9_after_a_checkpoint_and_during_a_save_resume_exactly(ws, reference, tmp_path):
    out = tmp_path / "run"
    cmd = _cmd(ws, out, **{"trainer.save_freq": 1})
    run = Run(cmd, tmp_path, "k1")
    run.wait_for_step(out / "metrics.jsonl", 1)
    run.proc.send_signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    first = ck.read_tracker(out)
    assert first is not None and first < STEPS - 1, f"killed too late (checkpoint {first})"

    # resume, and die in the middle of the next save
    res = subprocess.run(
        [sys.executable, "-c", KILL_IN_SAVE, *cmd[3:]],
        cwd=REPO,
        env={**_env(), "KILL_AT_SAVE": str(first + 1)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
    assert f"resuming from {out / f'global_step_{first}'}" in res.stdout + res.stderr
    assert (out / f".tmp-global_step_{first + 1}" / "actor").is_dir()  # the half-written save
    assert ck.read_tracker(out) == first

    res = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming from {out / f'global_step_{first}'}" in res.stdout + res.stderr
    assert not list(out.glob(".tmp-*")) and ck.read_tracker(out) == STEPS
    _same_metrics(reference, read_jsonl(out / "metrics.jsonl"))


# ----------------------------------------------------------------------------------- topology
def test_check_topology_names_what_was_asked_and_what_the_cluster_has():
    from relift.single_controller.ray_init import TopologyError, check_topology

    one = [
        {"Alive": True, "NodeManagerAddress": "10.0.0.1", "Resources": {"CPU": 8.0, "GPU": 4.0}},
        {"Alive": False, "NodeManagerAddress": "10.0.0.2", "Resources": {"CPU": 8.0, "GPU": 4.0}},
    ]
    check_topology(1, 4, use_gpu=True, nodes=one)
    check_topology(1, 8, use_gpu=False, nodes=one)
    with pytest.raises(TopologyError, match=r"trainer.nnodes=2 x trainer.n_gpus_per_node=4 .* 1 alive node"):
        check_topology(2, 4, use_gpu=True, nodes=one)  # the dead node does not count
    with pytest.raises(TopologyError, match=r"8 GPU\(s\) each.*10\.0\.0\.1 \(CPU 8, GPU 4\)"):
        check_topology(1, 8, use_gpu=True, nodes=one)


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_two_nodes_asked_on_a_one_node_cluster_fails_at_start(ws, tmp_path):
    out = tmp_path / "run"
    res = subprocess.run(
        _cmd(
            ws,
            out,
            **{"trainer.backend": "ray", "trainer.nnodes": 2, "trainer.n_gpus_per_node": 1, "ray_init.num_cpus": 2},
        ),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr[-3000:]
    line = [line for line in _relift_lines(res.stderr) if "trainer.nnodes=2" in line]
    assert len(line) == 1 and "1 alive node(s)" in line[0] and "(CPU 2, GPU 0)" in line[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr and not (out / "global_step_1").exists()
