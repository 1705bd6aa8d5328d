"""The CPU worker's torch thread count: explicit settings in their order, then the node/work rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainer.plan.checker import ConfigChecker
from trainer.plan.common import check_cpu_threads
from workers.cpu_threads import (
    MIN_HIDDEN_FOR_ALL_THREADS,
    choose_cpu_threads,
    omp_wait_policy_for,
    prefer_passive_omp_wait,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("RELIFT_CPU_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    return monkeypatch


def test_config_key_wins_over_both_environment_variables(clean_env):
    clean_env.setenv("RELIFT_CPU_THREADS", "3")
    clean_env.setenv("OMP_NUM_THREADS", "5")
    c = ConfigChecker({"trainer": {"cpu_threads": 2}})
    assert check_cpu_threads(c) == {"cpu_threads": 2, "cpu_threads_from": "trainer.cpu_threads"}
    assert not c.problems


def test_relift_variable_wins_over_omp_and_omp_is_honoured_alone(clean_env):
    clean_env.setenv("OMP_NUM_THREADS", "5")
    c = ConfigChecker({"trainer": {"cpu_threads": None}})
    assert check_cpu_threads(c) == {"cpu_threads": 5, "cpu_threads_from": "OMP_NUM_THREADS"}
    clean_env.setenv("RELIFT_CPU_THREADS", "3")
    assert check_cpu_threads(c) == {"cpu_threads": 3, "cpu_threads_from": "RELIFT_CPU_THREADS"}


def test_nothing_set_leaves_the_choice_to_the_worker(clean_env):
    assert check_cpu_threads(ConfigChecker({"trainer": {}})) == {"cpu_threads": None, "cpu_threads_from": "auto"}


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_bad_environment_value_is_a_plan_problem_naming_the_variable(clean_env, bad):
    clean_env.setenv("OMP_NUM_THREADS", bad)
    c = ConfigChecker({"trainer": {}})
    check_cpu_threads(c)
    assert len(c.problems) == 1 and "OMP_NUM_THREADS" in c.problems[0] and repr(bad) in c.problems[0]


def test_bad_config_value_is_a_plan_problem_naming_the_key(clean_env):
    c = ConfigChecker({"trainer": {"cpu_threads": 0}})
    check_cpu_threads(c)
    assert c.problems and "trainer.cpu_threads" in c.problems[0]


def test_explicit_count_is_used_as_given():
    choice = choose_cpu_threads(7, "RELIFT_CPU_THREADS", cores=2, local_world_size=1, hidden_size=64)
    assert choice.threads == 7 and "RELIFT_CPU_THREADS" in choice.reason


def test_auto_gives_a_wide_model_the_whole_share_of_the_node():
    assert choose_cpu_threads(None, "auto", cores=2, local_world_size=1, hidden_size=256).threads == 2
    assert choose_cpu_threads(None, "auto", cores=16, local_world_size=4, hidden_size=1536).threads == 4
    assert choose_cpu_threads(None, "auto", cores=3, local_world_size=2, hidden_size=4096).threads == 1
    assert choose_cpu_threads(None, "auto", cores=2, local_world_size=4, hidden_size=4096).threads == 1


def test_default_rule_gives_even_the_tiny_model_the_whole_share():
    assert MIN_HIDDEN_FOR_ALL_THREADS == 0  # measured: docs/performance.md section 2
    assert choose_cpu_threads(None, "auto", cores=2, local_world_size=1, hidden_size=64).threads == 2


def test_a_model_below_the_threshold_gets_one_thread():
    choice = choose_cpu_threads(None, "auto", cores=16, local_world_size=1, hidden_size=255, min_hidden=256)
    assert choice.threads == 1 and "255 < 256" in choice.reason
    assert choose_cpu_threads(None, "auto", cores=16, local_world_size=1, hidden_size=256, min_hidden=256).threads == 16


def test_passive_wait_only_on_a_busy_node_and_never_over_the_users_policy(monkeypatch):
    assert omp_wait_policy_for(load=3.0, cores=2) == "PASSIVE"
    assert omp_wait_policy_for(load=2.9, cores=2) is None    # a run that just ended leaves ~cores
    assert omp_wait_policy_for(load=0.1, cores=64) is None
    monkeypatch.setenv("OMP_WAIT_POLICY", "restored-after-the-test")  # records the original for undo
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert prefer_passive_omp_wait() == "PASSIVE" and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert prefer_passive_omp_wait() == "default" and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert prefer_passive_omp_wait() == "ACTIVE"


def test_auto_is_a_pure_function_of_its_inputs():
    args = dict(cores=8, local_world_size=2, hidden_size=512)
    assert {choose_cpu_threads(None, "auto", **args) for _ in range(5)} == {choose_cpu_threads(None, "auto", **args)}


def test_an_explicit_count_below_one_raises():
    with pytest.raises(ValueError, match="trainer.cpu_threads must be >= 1"):
        choose_cpu_threads(0, "trainer.cpu_threads", cores=2, local_world_size=1, hidden_size=64)


def test_entry_points_choose_the_wait_policy_before_torch_loads():
    """libgomp reads the policy once, when torch loads: importing the trainer package must choose it
    first (a choice made after ``import torch`` changes nothing), and leave a user's own policy alone."""
    import subprocess
    import sys

    code = ("import sys, os; import trainer; assert 'torch' not in sys.modules, 'torch loaded too early'; "
            "import trainer.main_rl; print(trainer.OMP_WAIT_POLICY, os.environ.get('OMP_WAIT_POLICY'))")
    for preset in (None, "ACTIVE"):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if preset:
            env["OMP_WAIT_POLICY"] = preset
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        chosen, in_env = out.stdout.strip().splitlines()[-1].split()
        if preset:
            assert (chosen, in_env) == (preset, preset)
        else:  # the load decides; whatever it chose is what libgomp will read
            assert (chosen, in_env) in (("PASSIVE", "PASSIVE"), ("default", "None"))
