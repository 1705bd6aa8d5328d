"""No silent zero (issue 13 item 3, console part of item 6): reward failures are counted per step,
shown on the console line without tearing the progress bar, and stop a run after
``reward.max_error_steps`` failing steps in a row, naming the first failure and its row."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from relift.rewards.guard import RewardErrorGuard, RewardFailureError, failure_metrics
from relift.utils.tracking import ConsoleLogger, Tracking

REPO = Path(__file__).resolve().parents[1]


def _nt(errors, timeouts, msgs=None, start=0):
    n = len(errors)
    return {
        "reward_error": np.array(errors, dtype=object),
        "reward_timeout": np.array(timeouts, dtype=object),
        "reward_error_msg": np.array(msgs or [None] * n, dtype=object),
        "index": np.array([start + i for i in range(n)], dtype=object),
        "uid": np.array([f"u{start + i}" for i in range(n)], dtype=object),
        "data_source": np.array(["toy"] * n, dtype=object),
    }


# ------------------------------------------------------------------------------------------ guard


def test_failure_metrics_by_hand():
    m = failure_metrics(_nt([True, False, False, False], [False, True, False, False]))
    assert m == {"reward/errors": 1.0, "reward/timeouts": 1.0, "reward/error_fraction": 0.5}
    assert failure_metrics({})["reward/error_fraction"] == 0.0


def test_guard_stops_after_max_steps_failing_steps_in_a_row_naming_the_first():
    guard = RewardErrorGuard(max_fraction=0.5, max_steps=3)
    bad = [True, True, True, False]  # 75 % > 50 %
    # step 1 fails, step 2 is at exactly 50 % (not above): the streak restarts
    guard.check(1, _nt(bad, [False] * 4, ["raised A", "raised B", None, None]))
    assert guard.check(2, _nt([True, True, False, False], [False] * 4))["reward/error_fraction"] == 0.5
    assert guard.streak == 0
    # steps 3, 4 fail: counted, not stopped yet
    msgs = [None, "raised ValueError: math-verify could not parse the ground truth 'x'", "raised C", None]
    m3 = guard.check(3, _nt([False, True, True, True], [False] * 4, msgs, start=40))
    assert m3 == {"reward/errors": 3.0, "reward/timeouts": 0.0, "reward/error_fraction": 0.75}
    guard.check(4, _nt([False, False, False, False], [True, True, True, False]))
    with pytest.raises(RewardFailureError) as info:
        guard.check(5, _nt(bad, [False] * 4))
    text = str(info.value)
    # the first failure of the streak (step 3, batch row 1 = data index 41), not step 1's
    assert "First failure: step 3, batch row 1 (data index 41, uid 'u41', data_source 'toy')" in text
    assert "could not parse the ground truth 'x'" in text
    assert "for 3 steps in a row" in text and "reward.max_error_fraction" in text


def test_guard_fraction_one_never_stops_and_bad_settings_fail():
    guard = RewardErrorGuard(max_fraction=1.0, max_steps=1)
    for step in range(5):
        guard.check(step, _nt([True] * 4, [False] * 4))
    with pytest.raises(ValueError, match="max_error_fraction"):
        RewardErrorGuard(1.5, 3)
    with pytest.raises(ValueError, match="max_error_steps"):
        RewardErrorGuard(0.5, 0)


# ---------------------------------------------------------------------------------------- console


def test_console_line_shows_reward_and_failures():
    log = ConsoleLogger(stream=io.StringIO())
    try:
        line = log.format(
            {"critic/score/mean": 0.25, "reward/errors": 3.0, "reward/timeouts": 1.0, "critic/acc/mean": 0.5}, step=2
        )
    finally:
        log.finish()
    assert line == "step 2 | reward 0.25 | reward_err 3 | reward_timeout 1 | acc 0.5"


def test_console_line_and_log_records_do_not_tear_the_progress_bar():
    from tqdm import tqdm

    buf = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    root.addHandler(handler)
    try:
        bar = tqdm(total=5, file=buf, desc="rl steps", ascii=True)
        bar.update(1)
        tr = Tracking("p", "e", backends=["console"], console_stream=buf)
        # while the console backend is open, console log handlers write through tqdm
        assert handler not in root.handlers
        assert any(type(h).__name__ == "_TqdmLoggingHandler" for h in root.handlers)
        tr.log({"critic/score/mean": 0.5, "reward/errors": 2}, step=1)
        bar.update(1)
        bar.close()
        tr.finish()
        assert handler in root.handlers  # restored
    finally:
        root.removeHandler(handler)
    text = buf.getvalue()
    pos = text.index("step 1 | reward 0.5 | reward_err 2")
    # the bar was cleared (carriage return + blank) before the line, and the line ends with a newline
    before = text[:pos]
    assert before.endswith("\r"), repr(before[-40:])
    assert text[pos:].split("\n", 1)[0] == "step 1 | reward 0.5 | reward_err 2"
    # plain print() would have glued the line to the bar: "...1/5 [...]step 1 | ..."
    assert "]step 1" not in text


# ---------------------------------------------------------------------------------- end to end

RAISING_REWARD = """
def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    raise RuntimeError("scorer exploded on purpose")
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    from tests.test_rl_trainer import make_workspace

    root = make_workspace(tmp_path_factory.mktemp("reward_err_ws"), n_train=16, n_val=0)
    (root / "raising_reward.py").write_text(RAISING_REWARD)
    return root


@pytest.mark.faults
def test_a_scorer_that_always_raises_stops_the_run_non_zero(ws, tmp_path):
    from tests.test_rl_trainer import overrides

    out = tmp_path / "run"
    args = overrides(
        ws,
        out,
        **{
            "reward.custom_reward_function.path": ws / "raising_reward.py",
            "trainer.total_training_steps": 4,
            "reward.max_error_steps": 2,
            "trainer.logger": "[console,jsonl]",
            "trainer.val_before_train": "false",
        },
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.main_rl", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 4, output[-3000:]  # trainer.entry.EXIT_REWARDS_FAILED
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]  # one message, not a traceback
    assert "for 2 steps in a row" in output
    # the first failure: step 1, first row of the batch (uid 1-0), its data index and data_source
    assert "First failure: step 1, batch row 0 (data index " in output
    assert "uid '1-0', data_source 'toy'): raised RuntimeError: scorer exploded on purpose" in output
    # step 1 was logged with its failures; step 2 stopped the run before the update
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1]
    assert records[0]["reward/errors"] == 16.0 and records[0]["reward/error_fraction"] == 1.0
    assert "step 1 | reward 0 | reward_err 16 | reward_timeout 0" in proc.stdout
