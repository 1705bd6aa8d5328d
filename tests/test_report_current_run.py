"""metrics.jsonl names its run on every line, and the quickstart report reads only the last run (issue 13, item 7).

Before, a rerun into the same folder appended to metrics.jsonl and the report merged both runs by step:
a shorter rerun showed the older run's last validation as "after RL".
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from relift.utils.tracking import Tracking

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("qs_report", REPO / "examples" / "quickstart" / "report.py")
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)

ACC = "val-core/toy_arithmetic/acc/mean@4"


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def log_run(out: Path, steps: dict[int, dict[str, float]], resume_at: int | None = None) -> str:
    """One run through the real tracker (a fresh Tracking, as a new process makes); returns its run id."""
    tr = Tracking("p", "e", backends=["jsonl"], local_dir=out)
    if resume_at is not None:
        tr.truncate_after(resume_at)
    for step, metrics in steps.items():
        tr.log(metrics, step=step)
    tr.finish()
    return lines(out / "metrics.jsonl")[-1]["run_id"]


def test_each_run_has_its_own_id_and_a_resume_keeps_it(tmp_path):
    a = log_run(tmp_path, {s: {"x": float(s)} for s in range(4)})
    b = log_run(tmp_path, {0: {"x": 10.0}, 1: {"x": 11.0}})
    assert a != b and isinstance(a, str) and len(a) > 8
    recs = lines(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["run_id"]) for r in recs] == [(0, a), (1, a), (2, a), (3, a), (0, b), (1, b)]
    # a resumed run (truncate_after: the trainer's resume path) continues run b, under b's id
    c = log_run(tmp_path, {2: {"x": 12.0}}, resume_at=1)
    assert c == b
    assert [r["x"] for r in report.read_jsonl(tmp_path / "metrics.jsonl")] == [10.0, 11.0, 12.0]


def write_run(path: Path, run_id: str, accs: dict[int, float], scores: list[float]) -> None:
    recs = [{"step": s, "run_id": run_id, ACC: v} for s, v in accs.items()]
    recs += [{"step": i + 1, "run_id": run_id, "critic/score/mean": v} for i, v in enumerate(scores)]
    recs.sort(key=lambda r: r["step"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in recs))


def test_a_rerun_report_shows_the_new_runs_numbers(tmp_path):
    jsonl = tmp_path / "rl" / "metrics.jsonl"
    # the first run: 6 steps, 50% -> 90%
    write_run(jsonl, "run-1", {0: 0.5, 6: 0.9}, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    first = report.main(["--out-dir", str(tmp_path)])
    assert (first["sft_acc"], first["rl_acc"], first["rl_step"]) == (0.5, 0.9, 6)
    # the rerun into the same folder, shorter: 2 steps, 20% -> 30%. Merged by step (the old reader),
    # "after RL" would have been the first run's step 6 (90%).
    write_run(jsonl, "run-2", {0: 0.2, 2: 0.3}, [0.7, 0.8])
    second = report.main(["--out-dir", str(tmp_path)])
    assert second["sft_acc"] == pytest.approx(0.2) and second["rl_acc"] == pytest.approx(0.3)
    assert second["rl_step"] == 2 and second["delta"] == pytest.approx(0.1)
    assert second["train_reward"]["score_first"] == pytest.approx(0.7)
    assert json.loads((tmp_path / "results.json").read_text())["rl_acc"] == pytest.approx(0.3)
    assert (tmp_path / "quickstart.png").stat().st_size > 1000


def test_files_without_run_ids_are_read_whole(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 0, ACC: 0.4}) + "\n" + json.dumps({"step": 3, ACC: 0.6}) + "\n")
    assert [r["step"] for r in report.read_jsonl(path)] == [0, 3]
