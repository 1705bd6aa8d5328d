"""The CPU quickstart: the toy arithmetic data, the report, and (slow) a shortened quickstart whose
GRPO stage must raise the training reward of an SFT-warm-started tiny model."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dataset import toy_arithmetic as ta

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples" / "quickstart"))
import report  # noqa: E402  (examples/quickstart/report.py)

_STEP = re.compile(r"^(\d(?:\+\d)*)=(\d+)$")


# ----------------------------------------------------------------------------- the data
@pytest.mark.parametrize("a,b,expected", [
    (3, 4, "3+4=7 \\boxed{7}"),
    (7, 5, "7+5=12 \\boxed{12}"),
    (47, 85, "7+5=12 4+8+1=13 \\boxed{132}"),
    (99, 9, "9+9=18 9+1=10 \\boxed{108}"),
    (40, 3, "0+3=3 4=4 \\boxed{43}"),
    (0, 0, "0+0=0 \\boxed{0}"),
])
def test_worked_solution_by_hand(a, b, expected):
    assert ta.worked_solution(a, b) == expected
    assert ta.terse_solution(a, b) == "\\boxed{" + str(a + b) + "}"


def test_worked_steps_are_correct_column_addition():
    """Every step's sum is right, the carry feeds the next step, and the digits spell the answer."""
    rng = random.Random(0)
    for _ in range(300):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        *steps, boxed = ta.worked_solution(a, b).split(" ")
        assert boxed == f"\\boxed{{{a + b}}}"
        digits, carry = [], 0
        for i, step in enumerate(steps):
            m = _STEP.match(step)
            assert m, step
            terms = [int(t) for t in m.group(1).split("+")]
            total = int(m.group(2))
            assert sum(terms) == total
            expect = [int(x[::-1][i]) for x in (str(a), str(b)) if i < len(x)] + ([1] if carry else [])
            assert terms == expect
            carry = total // 10
            digits.append(total % 10)
        assert int("".join(map(str, ([carry] if carry else []) + digits[::-1]))) == a + b


def test_rows_format_levels_styles_and_held_out_questions():
    train, val = ta.make_rows(1200, 150, levels=(1, 2, 3), worked_frac=0.5, seed=3)
    assert len(train) == 1200 and len(val) == 150
    row = train[0]
    assert set(row) == {"data_source", "prompt", "ability", "reward_model", "extra_info", "target"}
    assert row["data_source"] == "toy_arithmetic"
    assert row["prompt"][0]["role"] == "user" and row["prompt"][0]["content"].endswith("=")
    assert row["target"][0]["role"] == "assistant"
    for r in train + val:
        a, b = (int(x) for x in r["prompt"][0]["content"][:-1].split("+"))
        assert r["reward_model"]["ground_truth"] == str(a + b)
        da, db = ta.LEVELS[r["extra_info"]["difficulty"]]
        assert (len(str(a)), len(str(b))) == (da, db)
        demo = r["target"][0]["content"]
        assert demo.endswith("\\boxed{" + str(a + b) + "}")
        assert (r["extra_info"]["style"] == "worked") == (demo != ta.terse_solution(a, b))
    levels = [r["extra_info"]["difficulty"] for r in train]
    for lv in (1, 2, 3):                      # uniform spread: 400 expected each
        assert 330 < levels.count(lv) < 470
    worked = sum(r["extra_info"]["style"] == "worked" for r in train) / len(train)
    assert 0.45 < worked < 0.55
    held_out = {r["prompt"][0]["content"] for r in val if r["extra_info"]["difficulty"] > 1}
    assert held_out and not held_out & {r["prompt"][0]["content"] for r in train}
    assert [r["extra_info"]["index"] for r in train] == list(range(1200))
    # the same seed gives the same rows
    assert ta.make_rows(1200, 150, levels=(1, 2, 3), worked_frac=0.5, seed=3) == (train, val)


@pytest.mark.parametrize("kwargs,match", [
    ({"n_train": 0, "n_val": 10}, "n_train"),
    ({"n_train": 10, "n_val": 10, "worked_frac": 1.5}, "worked_frac"),
    ({"n_train": 10, "n_val": 10, "levels": (9,)}, "unknown level"),
    ({"n_train": 10, "n_val": 10, "levels": ()}, "levels"),
])
def test_bad_arguments_fail_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ta.make_rows(**kwargs)


def test_demonstrations_score_one_with_the_registered_scorer():
    """toy_arithmetic goes to the math scorer: every demonstration earns 1, a wrong sum 0."""
    from relift.rewards import compute_score

    train, _ = ta.make_rows(40, 0, levels=(1, 2, 3, 4, 5), seed=1)
    for r in train:
        got = compute_score("toy_arithmetic", r["target"][0]["content"], r["reward_model"]["ground_truth"])
        assert (got["score"] if isinstance(got, dict) else got) == 1.0
    wrong = compute_score("toy_arithmetic", "7+5=12 4+8+1=13 \\boxed{131}", "132")
    assert (wrong["score"] if isinstance(wrong, dict) else wrong) == 0.0


def test_cli_writes_parquet_that_fits_the_quickstart_lengths(tmp_path):
    """The parquet loads in the RL and SFT datasets with the tiny tokenizer inside the quickstart's limits."""
    from relift.data.rl_dataset import RLDataset
    from relift.data.sft_dataset import SFTDataset
    from relift.models.tiny import build_tiny_tokenizer

    summary = ta.main(["--out", str(tmp_path), "--train-size", "200", "--val-size", "40", "--seed", "5"])
    assert summary["n_train"] == 200 and summary["n_val"] == 40
    df = pd.read_parquet(tmp_path / "train.parquet")
    assert len(df) == 200 and set(df["data_source"]) == {"toy_arithmetic"}
    tok = build_tiny_tokenizer()
    rl = RLDataset(str(tmp_path / "val.parquet"), tok, max_prompt_length=32, max_response_length=32,
                   truncation="error")
    assert len(rl) == 40
    sft = SFTDataset(str(tmp_path / "train.parquet"), tok, max_length=64, truncation="error")
    assert len(sft) == 200
    longest = max(len(tok(ta.worked_solution(99, 99))["input_ids"]), len(tok(ta.worked_solution(9, 99))["input_ids"]))
    assert longest + 1 <= 32          # + EOS: fits data.max_response_length=32


def test_cli_rejects_bad_levels(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ta.main(["--out", str(tmp_path), "--levels", "1,7"])
    assert "levels must be among" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the report
def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_report_summary_by_hand(tmp_path):
    key = "val-core/toy_arithmetic/acc"
    recs = [{"step": 0, f"{key}/mean@4": 0.5, f"{key}/pass@4": 0.8, "val-core/toy_arithmetic/reward/mean@4": 0.5}]
    for s in range(1, 7):
        recs.append({"step": s, "critic/score/mean": 0.1 * s, "timing_s/step": 2.0})
    recs[1]["timing_s/start_to_first_step"] = 7.5
    recs.append({"step": 6, f"{key}/mean@4": 0.7, f"{key}/pass@4": 0.9})
    _write_jsonl(tmp_path / "rl" / "metrics.jsonl", recs)
    _write_jsonl(tmp_path / "sft" / "metrics.jsonl", [{"step": 5, "val/loss": 0.25}])
    summary = report.main(["--out-dir", str(tmp_path), "--wall-s", "12"])
    assert summary["sft_step"] == 0 and summary["rl_step"] == 6
    assert summary["sft_acc"] == pytest.approx(0.5) and summary["rl_acc"] == pytest.approx(0.7)
    assert summary["delta"] == pytest.approx(0.2)
    rows = {r["stat"]: r for r in summary["rows"]}
    assert set(rows) == {"mean@4", "pass@4"}          # acc only, not reward
    assert rows["pass@4"]["delta"] == pytest.approx(0.1)
    tr = summary["train_reward"]                       # 6 steps -> first/last 3
    assert tr["first_steps"] == 3
    assert tr["score_first"] == pytest.approx(0.2) and tr["score_last"] == pytest.approx(0.5)
    assert summary["sft_val_loss"] == 0.25 and summary["wall_s"] == 12
    assert summary["time_to_first_step_s"] == {"sft": None, "rl": 7.5}
    assert json.loads((tmp_path / "results.json").read_text())["delta"] == pytest.approx(0.2)
    assert (tmp_path / "quickstart.png").stat().st_size > 1000
    assert "| toy_arithmetic | acc mean@4 | 50.0 | 70.0 | +20.0 |" in report.to_markdown(summary)


def test_report_needs_a_step_zero_validation(tmp_path):
    _write_jsonl(tmp_path / "rl" / "metrics.jsonl",
                 [{"step": 3, "val-core/toy_arithmetic/acc/mean@1": 0.5}])
    with pytest.raises(ValueError, match="val_before_train"):
        report.main(["--out-dir", str(tmp_path)])
    _write_jsonl(tmp_path / "rl" / "metrics.jsonl", [{"step": 1, "critic/score/mean": 0.5}])
    with pytest.raises(ValueError, match="val_files"):
        report.main(["--out-dir", str(tmp_path)])


# ----------------------------------------------------------------------------- learning
# The quickstart with its defaults (200 GRPO steps) but 2 validation samples instead of 4 and
# validation only before and after. The least-squares line through the training rewards of the full
# runs rose by 0.102, 0.080 and 0.177 over the 200 steps for seeds 1, 2, 3 (docs/quickstart.md); one
# step's reward is noisy (sd ~0.05), the fitted rise much less (sd ~0.02). Until 2026-12-02 this test ran
# 100 steps (rises then 0.118, 0.089, 0.124); with the current code the first 100 steps rose only 0.040,
# 0.026 and 0.115, too close to the threshold, so it runs the whole 200 now (about 4 minutes).
CI_ENV = {"SEED": "1", "RL_STEPS": "200", "RL_TEST_FREQ": "200", "VAL_N": "2"}


def fitted_rise(values: list[float]) -> float:
    """Slope of the least-squares line through ``values`` (one per step) times the number of steps."""
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    cov = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    var = sum((i - mean_x) ** 2 for i in range(n))
    return cov / var * n


def test_fitted_rise_by_hand():
    assert fitted_rise([0.0, 1.0, 2.0, 3.0]) == pytest.approx(4.0)       # slope 1 x 4 steps
    assert fitted_rise([1.0, 0.0, 1.0, 0.0]) == pytest.approx(-0.8)      # slope -0.2 x 4
    assert fitted_rise([0.5] * 10) == 0.0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quickstart_script_runs_and_grpo_raises_the_reward(tmp_path):
    env = {**os.environ, **CI_ENV, "OUT_DIR": str(tmp_path / "qs")}
    proc = subprocess.run(["sh", str(REPO / "examples" / "quickstart" / "train.sh")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=880)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "qs"
    recs = report.read_jsonl(out / "rl" / "metrics.jsonl")
    scores = [r["critic/score/mean"] for r in recs if "critic/score/mean" in r]
    assert len(scores) == int(CI_ENV["RL_STEPS"])
    rise = fitted_rise(scores)
    assert rise > 0.04, f"reward did not rise: fitted rise {rise:.3f} over {len(scores)} steps: {scores}"
    results = json.loads((out / "results.json").read_text())
    assert results["sft_step"] == 0 and results["rl_step"] == int(CI_ENV["RL_STEPS"])
    assert 0.0 < results["sft_acc"] < 1.0
    first = results["time_to_first_step_s"]  # logged by both trainers with their first step
    assert 0 < first["sft"] < 600 and 0 < first["rl"] < 600, first
    assert "time to first step (process start to the end of its first step): SFT" in proc.stdout
    assert (out / "quickstart.png").stat().st_size > 1000
    assert (out / "sft" / "hf" / "config.json").is_file()
    rl_hf = out / "rl" / f"global_step_{CI_ENV['RL_STEPS']}" / "actor" / "huggingface"
    assert (rl_hf / "config.json").is_file() and list(rl_hf.glob("*.safetensors"))   # the RL model, loadable
    assert "validation accuracy:" in proc.stdout
