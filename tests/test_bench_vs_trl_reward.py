"""bench/vs_trl gives relift and TRL the same reward function (boxed_reward.py)."""

from __future__ import annotations

from pathlib import Path

from relift.rewards.custom import load_custom_reward_fn

HERE = Path(__file__).resolve().parents[1] / "bench" / "vs_trl"


def test_the_boxed_reward_reads_the_last_box_as_relift_loads_it():
    fn = load_custom_reward_fn(HERE / "boxed_reward.py", "compute_score")  # how relift's reward processes load it
    assert fn("toy_arithmetic", "first \\boxed{3} then \\boxed{ 7 }", "7") == 1.0
    assert fn("toy_arithmetic", "\\boxed{7} then \\boxed{3}", "7") == 0.0  # the last box counts
    assert fn("toy_arithmetic", "7", "7") == 0.0  # no box, no credit (relift's math-verify scorer would give 1)
    assert fn("toy_arithmetic", "\\boxed{\\frac{1}{2}}", "\\frac{1}{2}") == 0.0  # nested braces never match


def test_relift_runs_get_the_file_trl_imports(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(HERE))
    import run
    import trl_job

    cmd = run.relift_cmd(tmp_path, "tiny", steps=2, seed=1, lr=1e-5, out=tmp_path / "out")
    assert f"reward.custom_reward_function.path={HERE / 'boxed_reward.py'}" in cmd
    assert "reward.custom_reward_function.name=compute_score" in cmd
    completions = [[{"role": "assistant", "content": "so \\boxed{5}"}], "\\boxed{4}"]
    assert trl_job._boxed_reward(completions, ["5", "5"]) == [1.0, 0.0]
