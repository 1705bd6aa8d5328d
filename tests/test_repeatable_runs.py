"""Two runs with the same seed, thread counts and versions on one machine log identical metrics
(docs/quickstart.md, "Bit-for-bit repeatable runs"; issue 13, item 7).

Each run is its own ``python -m trainer.main_rl`` process, as a user reruns a command: a tiny model,
three GRPO steps with sampling at temperature 1 and a validation before and after. Every logged number
must be equal, not merely close; only wall-clock timings and the run id may differ. A third run with
another seed must differ somewhere, so the comparison is not between constants.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_rl_trainer import make_workspace, overrides

REPO = Path(__file__).resolve().parents[1]
VOLATILE = ("timing_s/", "perf/", "run_id")


def run(ws: Path, out: Path, seed: int) -> list[dict]:
    args = overrides(
        ws,
        out,
        **{
            "data.val_files": ws / "val.parquet",
            "trainer.val_before_train": "true",
            "trainer.test_freq": 3,
            "trainer.total_training_steps": 3,
            "trainer.seed": seed,
            "trainer.resume_mode": "disable",
            "actor_rollout_ref.rollout.temperature": 1.0,
            "actor_rollout_ref.rollout.val_kwargs.do_sample": "true",
            "actor_rollout_ref.rollout.val_kwargs.temperature": 1.0,
            "actor_rollout_ref.rollout.val_kwargs.n": 2,
        },
    )
    env = {
        **os.environ,
        "RELIFT_CPU_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("RAY_ADDRESS", None)
    res = subprocess.run(
        [sys.executable, "-m", "trainer.main_rl", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in recs]


def test_same_seed_same_threads_gives_identical_metrics(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    first, second = run(ws, tmp_path / "a", seed=3), run(ws, tmp_path / "b", seed=3)
    assert {r["step"] for r in first} == {0, 1, 2, 3}  # validation at 0, three steps, validation at 3
    assert any("val-core/" in k for r in first for k in r) and any("actor/pg_loss" in r for r in first)
    assert first == second  # exact equality of every logged number
    other = run(ws, tmp_path / "c", seed=4)
    assert [r["step"] for r in other] == [r["step"] for r in first]
    assert other != first
