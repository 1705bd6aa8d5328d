"""How long each fault takes to end a run, and what it loses (not a test; figures for docs/reliability.md).

Runs ``python -m trainer.main_rl`` on a tiny random model (CPU, in-process backend unless said)
and injects, one at a time: SIGTERM after step 2; Ctrl-C twice (SIGINT to the process group, as a
terminal sends it); Ctrl-C once on the Ray backend; a scorer that sleeps for ever under
``trainer.hang_timeout_s``; ``trainer.nnodes=2`` on a one-node Ray instance. For each it reports the
exit status, the seconds from the signal (or from the hung step's start) to the process's exit, the
last committed checkpoint and the last step logged, and the run's last ``[relift]`` line.

    .venv/bin/python bench/bench_faults.py --out /tmp/faults.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from relift.models.tiny import build_tiny_model
from relift.utils import checkpoint as ck

REPO = Path(__file__).resolve().parents[1]
REWARD = "def compute_score(data_source, solution_str, ground_truth, extra_info=None):\n    return 0.0\n"
HANG = (
    "import time\n\ndef compute_score(data_source, solution_str, ground_truth, extra_info=None):\n"
    "    time.sleep(600)\n    return 0.0\n"
)


def workspace(root: Path) -> Path:
    build_tiny_model(
        root / "model",
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    rows = [
        {
            "data_source": "toy",
            "prompt": [{"role": "user", "content": f"q{i}"}],
            "ability": "toy",
            "reward_model": {"style": "rule", "ground_truth": "7"},
            "extra_info": {"index": i},
        }
        for i in range(64)
    ]
    pd.DataFrame(rows).to_parquet(root / "train.parquet")
    (root / "reward.py").write_text(REWARD)
    (root / "hang.py").write_text(HANG)
    return root


def command(ws: Path, out: Path, **extra: object) -> list[str]:
    base = {
        "data.train_files": ws / "train.parquet",
        "actor_rollout_ref.model.path": ws / "model",
        "data.max_prompt_length": 32,
        "data.max_response_length": 16,
        "data.train_batch_size": 4,
        "actor_rollout_ref.rollout.n": 4,
        "actor_rollout_ref.actor.ppo_mini_batch_size": 4,
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 16,
        "reward.custom_reward_function.path": ws / "reward.py",
        "reward.num_workers": 1,
        "trainer.total_training_steps": 50,
        "trainer.default_local_dir": out,
        "trainer.device": "cpu",
        "trainer.logger": "[jsonl]",
        "trainer.backend": "inprocess",
        "trainer.save_freq": 1,
    }
    base.update(extra)
    return [sys.executable, "-m", "trainer.main_rl", *[f"{k}={v}" for k, v in base.items()]]


def steps_logged(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(int(json.loads(line)["step"]))
        except (ValueError, KeyError):
            pass
    return steps


def scenario(name: str, cmd: list[str], out: Path, logs: Path, inject) -> dict:
    env = {**os.environ, "RELIFT_CPU_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    err = logs / f"{name}.err"
    with open(logs / f"{name}.out", "w") as fo, open(err, "w") as fe:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fo, stderr=fe, start_new_session=True)
        t_fault = inject(proc, out, err)
        rc = proc.wait(timeout=600)
        t_end, wall_end = time.monotonic(), time.time()
    last = [line for line in err.read_text().splitlines() if line.startswith("[relift]")]
    if t_fault is None:  # the fault is the run's own (watchdog, topology): from the process start
        t_fault = t0
    return {
        "scenario": name,
        "exit": rc,
        "seconds_fault_to_exit": round(t_end - t_fault, 2),
        "seconds_total": round(t_end - t0, 2),
        "last_checkpoint": ck.read_tracker(out),
        "last_step_logged": max(steps_logged(out), default=None),
        "partial_saves_left": len(list(out.glob(".tmp-*"))) if out.exists() else 0,
        # the [relift] line is the last thing the run prints: after it only the interpreter's exit
        "seconds_last_line_to_exit": round(wall_end - os.path.getmtime(err), 2),
        "last_line": last[-1] if last else None,
    }


def wait_step(proc, out: Path, step: int) -> None:
    while step not in steps_logged(out):
        if proc.poll() is not None:
            raise RuntimeError(f"run ended early (rc {proc.returncode})")
        time.sleep(0.05)


def sigterm(proc, out, err):
    wait_step(proc, out, 2)
    proc.send_signal(signal.SIGTERM)
    return time.monotonic()


def ctrl_c_twice(proc, out, err):
    wait_step(proc, out, 2)
    os.killpg(proc.pid, signal.SIGINT)
    while "finishing step" not in err.read_text():
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    return time.monotonic()


def ctrl_c_once(proc, out, err):
    wait_step(proc, out, 2)
    os.killpg(proc.pid, signal.SIGINT)
    return time.monotonic()


def hung_step_start(logs: Path) -> float | None:
    """Wall time of the 'starting from scratch' log line: the first step starts right after it."""
    text = (logs / "hang.out").read_text()
    m = re.search(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\]\[trainer.run_checkpoint\]", text, re.M)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


SCENARIOS = ("sigterm", "ctrl_c_twice", "ctrl_c_ray", "hang", "topology")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="also write the results here (json)")
    ap.add_argument("--hang-timeout", type=float, default=10.0, help="trainer.hang_timeout_s of the hang case")
    ap.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS), help="run these cases only")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="relift_faults_"))
    ws = workspace(root / "ws")
    logs = root / "logs"
    logs.mkdir()
    ray = {"trainer.backend": "ray", "ray_init.num_cpus": 2}
    hang = {
        "reward.custom_reward_function.path": ws / "hang.py",
        "reward.timeout": 600,
        "trainer.hang_timeout_s": args.hang_timeout,
    }
    two_nodes = {**ray, "trainer.nnodes": 2, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 8}
    plan = {
        "sigterm": ({"trainer.save_freq": -1}, sigterm),
        "ctrl_c_twice": ({}, ctrl_c_twice),
        "ctrl_c_ray": (ray, ctrl_c_once),
        "hang": (hang, lambda *a: None),
        "topology": (two_nodes, lambda *a: None),
    }
    results = []
    for name in args.only:
        extra, inject = plan[name]
        out = root / name
        res = scenario(name, command(ws, out, **extra), out, logs, inject)
        if name == "hang":
            start = hung_step_start(logs)
            if start is not None:  # from the hung step's start to the last write on stderr (the exit line)
                res["seconds_fault_to_exit"] = round(os.path.getmtime(logs / "hang.err") - start, 2)
            res["hang_timeout_s"] = args.hang_timeout
        results.append(res)
    report = {
        "cpus": os.cpu_count(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "results": results,
        "logs": str(logs),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
