"""Worker start-up: the reward scorers start while the policy model loads (trainer/workers_setup.py)."""

from __future__ import annotations

import threading

import pytest

from trainer.workers_setup import WorkerGroups, _init_models


class _Group:
    def __init__(self, init) -> None:
        self.init_model = init


def test_reward_init_runs_while_the_actor_loads():
    """The actor's load waits for a signal only the reward init gives: done in sequence it would time out."""
    reward_started = threading.Event()
    seen: list[str] = []

    def actor_init() -> None:
        assert reward_started.wait(10), "the reward init did not run during the actor's load"
        seen.append("actor")

    def reward_init() -> None:
        reward_started.set()
        seen.append("reward")

    _init_models(WorkerGroups(actor=_Group(actor_init), reward=_Group(reward_init), backend="inprocess", has_ref=False))
    assert sorted(seen) == ["actor", "reward"]


def test_a_failed_reward_init_surfaces_after_the_actor_finished():
    done: list[str] = []

    def reward_init() -> None:
        raise RuntimeError("a reward worker failed to start")

    groups = WorkerGroups(actor=_Group(lambda: done.append("actor")), reward=_Group(reward_init),
                          backend="inprocess", has_ref=False)
    with pytest.raises(RuntimeError, match="reward worker failed"):
        _init_models(groups)
    assert done == ["actor"]


def test_an_actor_failure_wins_and_waits_for_the_reward_init():
    reward_done = threading.Event()

    def actor_init() -> None:
        raise ValueError("bad checkpoint")

    def reward_init() -> None:
        threading.Event().wait(0.2)
        reward_done.set()

    groups = WorkerGroups(actor=_Group(actor_init), reward=_Group(reward_init), backend="inprocess", has_ref=False)
    with pytest.raises(ValueError, match="bad checkpoint"):
        _init_models(groups)
    assert reward_done.is_set()  # nothing is shut down while the reward init is still running
