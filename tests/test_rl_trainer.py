"""The online RL trainer on a tiny random model: learning, estimators, the old-log-prob skip, the
reference policy, validation metrics, checkpoints, hooks, the plot. In-process backend (fast)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from relift.protocol import DataProto
from relift.utils import checkpoint as ck
from trainer.plan import build_rl_plan, compose_config
from trainer.rl_trainer import RLTrainer, compute_data_metrics, reduce_metrics, resolve_resume_dir
from trainer.workers_setup import resolve_backend

# rewards the fraction of response characters that are the digit 7: easy to learn, graded
REWARD_PY = '''
def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    s = solution_str
    if not s:
        return {"score": 0.0, "acc": 0.0}
    frac = s.count("7") / len(s)
    return {"score": frac, "acc": float(frac > 0.5)}
'''


def make_workspace(root: Path, n_train: int = 64, n_val: int = 4) -> Path:
    """A tiny model, train/val parquet of trivial prompts, and the reward file under ``root``."""
    from relift.models.tiny import build_tiny_model

    root.mkdir(parents=True, exist_ok=True)
    if not (root / "model" / "config.json").exists():
        build_tiny_model(root / "model", hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                         intermediate_size=64, max_position_embeddings=128)
    rows = [{"data_source": "toy", "prompt": [{"role": "user", "content": f"q{i}"}], "ability": "toy",
             "reward_model": {"style": "rule", "ground_truth": "7"}, "extra_info": {"split": "train", "index": i}}
            for i in range(n_train)]
    pd.DataFrame(rows).to_parquet(root / "train.parquet")
    pd.DataFrame(rows[:n_val]).to_parquet(root / "val.parquet")
    (root / "reward.py").write_text(REWARD_PY)
    return root


def overrides(ws: Path, out: Path, **extra: object) -> list[str]:
    """Hydra overrides for a tiny, fast run (B=4 prompts, n=4, 16-token responses)."""
    base = {
        "data.train_files": ws / "train.parquet", "actor_rollout_ref.model.path": ws / "model",
        "data.max_prompt_length": 32, "data.max_response_length": 16, "data.train_batch_size": 4,
        "actor_rollout_ref.rollout.n": 4, "actor_rollout_ref.actor.ppo_mini_batch_size": 4,
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 16, "actor_rollout_ref.actor.optim.lr": 1e-3,
        "reward.custom_reward_function.path": ws / "reward.py", "reward.num_workers": 1,
        "trainer.total_training_steps": 1, "trainer.default_local_dir": out, "trainer.device": "cpu",
        "trainer.logger": "[jsonl]", "trainer.backend": "inprocess",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train(ws: Path, out: Path, hooks=None, **extra: object) -> tuple[RLTrainer, list[dict]]:
    cfg = compose_config("rl_trainer", overrides(ws, out, **extra))
    trainer = RLTrainer(build_rl_plan(cfg), post_update_hooks=hooks)
    trainer.fit()
    return trainer, read_jsonl(out / "metrics.jsonl")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("rl_ws"))


def _step_records(records: list[dict]) -> list[dict]:
    return [r for r in records if "critic/score/mean" in r]


def _all_finite(rec: dict) -> bool:
    return all(math.isfinite(v) for v in rec.values() if isinstance(v, (int, float)))


# ----------------------------------------------------------------------------------- learning


def test_grpo_reward_rises(ws, tmp_path):
    torch.manual_seed(0)
    _, records = train(ws, tmp_path / "run", **{
        "data.train_batch_size": 8, "actor_rollout_ref.rollout.n": 8,
        "actor_rollout_ref.actor.ppo_mini_batch_size": 8, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 64,
        "actor_rollout_ref.actor.optim.lr": 1e-2, "trainer.total_training_steps": 20})
    scores = [r["critic/score/mean"] for r in _step_records(records)]
    assert len(scores) == 20
    steps = _step_records(records)  # time to first step: logged once, and it covers the whole first step
    assert [i for i, r in enumerate(steps) if "timing_s/start_to_first_step" in r] == [0]
    assert steps[0]["timing_s/start_to_first_step"] > steps[0]["timing_s/step"] > 0
    first, last = np.mean(scores[:5]), np.mean(scores[-5:])
    assert last > first + 0.2, f"reward did not rise: first 5 {first:.3f}, last 5 {last:.3f}: {scores}"


# ----------------------------------------------------------------------------------- estimators


@pytest.mark.parametrize("extra", [
    {"algorithm.adv_estimator": "grpo"},
    {"algorithm.adv_estimator": "grpo", "algorithm.norm_adv_by_std_in_grpo": False},
    {"algorithm.adv_estimator": "reinforce_plus_plus"},
    {"algorithm.adv_estimator": "reinforce_plus_plus", "algorithm.use_kl_in_reward": True,
     "algorithm.kl_ctrl.type": "adaptive"},
    {"algorithm.adv_estimator": "reinforce_plus_plus_baseline"},
    {"algorithm.adv_estimator": "rloo", "actor_rollout_ref.actor.entropy_coeff": 0.01},
], ids=["grpo", "drgrpo", "rpp", "rpp_kl_in_reward", "rpp_baseline", "rloo_entropy"])
def test_each_estimator_runs_and_logs_finite_metrics(ws, tmp_path, extra):
    trainer, records = train(ws, tmp_path / "run", **extra)
    (rec,) = _step_records(records)
    assert rec["step"] == 1 and rec["training/global_step"] == 1
    assert _all_finite(rec)
    for key in ("critic/score/mean", "critic/score/max", "critic/score/min", "critic/rewards/mean",
                "critic/advantages/mean", "critic/advantages/max", "critic/advantages/min", "critic/acc/mean",
                "actor/pg_loss", "actor/grad_norm", "response_length/mean", "response_length/clip_ratio",
                "prompt_length/mean", "timing_s/gen", "timing_s/reward", "timing_s/adv", "timing_s/update_actor",
                "timing_s/step", "perf/total_num_tokens", "perf/throughput", "perf/time_per_step",
                "batch/solve_none", "batch/solve_all", "reward/timeouts", "reward/errors", "training/epoch"):
        assert key in rec, key
    if extra.get("algorithm.use_kl_in_reward"):
        assert trainer.groups.has_ref and "timing_s/ref" in rec and "timing_s/old_log_prob" in rec
        assert "actor/reward_kl_penalty" in rec
        assert trainer.kl_ctrl.value != 0.001  # the adaptive controller moved
        # rewards = scores - beta * KL: they differ from the scores once the policy left the reference
    else:
        assert "timing_s/ref" not in rec
        assert rec["critic/rewards/mean"] == pytest.approx(rec["critic/score/mean"])
    if "entropy_coeff" in str(extra):
        assert "actor/entropy" in rec


def test_old_log_prob_skipped_only_when_on_policy(ws, tmp_path):
    _, on = train(ws, tmp_path / "on")
    assert "timing_s/old_log_prob" not in _step_records(on)[0]
    _, off = train(ws, tmp_path / "off", **{"actor_rollout_ref.actor.ppo_mini_batch_size": 2,
                                            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 8})
    rec = _step_records(off)[0]
    assert rec["timing_s/old_log_prob"] > 0 and "actor/entropy" in rec
    _, epochs = train(ws, tmp_path / "epochs", **{"actor_rollout_ref.actor.ppo_epochs": 2})
    assert "timing_s/old_log_prob" in _step_records(epochs)[0]


def test_kl_loss_builds_the_reference(ws, tmp_path):
    trainer, records = train(ws, tmp_path / "run", **{"actor_rollout_ref.actor.use_kl_loss": True,
                                                      "trainer.total_training_steps": 2})
    assert trainer.groups.has_ref and trainer.groups.ref is trainer.actor_wg
    recs = _step_records(records)
    assert all("timing_s/ref" in r and "actor/kl_loss" in r for r in recs)
    assert recs[0]["actor/kl_loss"] == pytest.approx(0.0, abs=1e-6)  # step 1: policy == reference
    trainer2, _ = train(ws, tmp_path / "noref")
    assert not trainer2.groups.has_ref


# ----------------------------------------------------------------------------------- validation


def test_validation_metric_names_before_during_and_after(ws, tmp_path):
    _, records = train(ws, tmp_path / "run", **{
        "data.val_files": ws / "val.parquet", "trainer.total_training_steps": 3, "trainer.test_freq": 2,
        "actor_rollout_ref.rollout.val_kwargs.n": 2, "actor_rollout_ref.rollout.val_kwargs.do_sample": True,
        "actor_rollout_ref.rollout.val_kwargs.temperature": 1.0})
    val_steps = [r["step"] for r in records if "val-core/toy/acc/mean@2" in r]
    assert val_steps == [0, 2, 3]  # before training, test_freq, the end
    rec = records[0]
    for key in ("val-core/toy/acc/mean@2", "val-core/toy/acc/pass@1", "val-core/toy/acc/pass@2",
                "val-core/toy/reward/mean@2", "timing_s/testing"):
        assert key in rec, key
    assert 0.0 <= rec["val-core/toy/acc/pass@1"] <= rec["val-core/toy/acc/pass@2"] <= 1.0
    assert rec["val-core/toy/acc/pass@1"] == pytest.approx(rec["val-core/toy/acc/mean@2"])


# ----------------------------------------------------------------------------------- checkpoints, hooks


class CountingHook:
    """A stateful post-update hook: counts calls and adds a metric."""

    name = "counter"

    def __init__(self) -> None:
        self.calls = 0
        self.rows: list[int] = []

    def __call__(self, trainer, batch, metrics) -> None:
        self.calls += 1
        self.rows.append(len(batch))
        assert "advantages" in batch.batch.keys() and "actor/pg_loss" in metrics
        metrics["hook/calls"] = self.calls

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state["calls"])


def test_checkpoints_at_save_freq_and_hook_state(ws, tmp_path):
    out = tmp_path / "run"
    hook = CountingHook()
    _, records = train(ws, out, hooks=[hook], **{"trainer.total_training_steps": 3, "trainer.save_freq": 2})
    assert ck.list_checkpoints(out) == [2, 3]          # save_freq and the end
    assert ck.read_tracker(out) == 3
    state = ck.load_driver_state(out / "global_step_2")
    assert state["global_step"] == 2 and state["hooks"] == {"counter": {"calls": 2}}
    assert "dataloader" in state and "rng" in state
    assert (out / "global_step_2" / "actor" / "meta.json").is_file()
    assert hook.calls == 3 and hook.rows == [16, 16, 16]
    assert [r["hook/calls"] for r in _step_records(records)] == [1, 2, 3]
    # resume_mode=auto with a finished run: nothing more to do, the hook state comes back
    hook2 = CountingHook()
    _, records2 = train(ws, out, hooks=[hook2], **{"trainer.total_training_steps": 3, "trainer.save_freq": 2})
    assert hook2.calls == 3 and records2 == records


def test_resume_dir_resolution(tmp_path):
    assert resolve_resume_dir("disable", tmp_path, None) is None
    assert resolve_resume_dir("auto", tmp_path, None) is None
    with pytest.raises(ValueError, match="resume_from_path"):
        resolve_resume_dir("resume_path", tmp_path, None)
    with pytest.raises(ck.CheckpointError, match="no actor"):
        resolve_resume_dir("resume_path", tmp_path, str(tmp_path))
    with pytest.raises(ValueError, match="resume_mode"):
        resolve_resume_dir("sometimes", tmp_path, None)


# ----------------------------------------------------------------------------------- small pieces


def test_compute_data_metrics_by_hand():
    # 2 prompts x 2 samples; prompt a: both right, prompt b: none right
    R = 4
    scores = torch.zeros(4, R)
    scores[0, 1], scores[1, 3] = 1.0, 1.0
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]])
    attn = torch.cat([torch.tensor([[0, 1], [0, 1], [1, 1], [1, 1]]), mask], dim=1)
    adv = torch.tensor([[1.0, 1.0, 0, 0], [2.0, 2.0, 2.0, 2.0], [-1.0, 0, 0, 0], [-3.0, -3.0, -3.0, 0]])
    data = DataProto.from_dict(
        tensors={"token_level_scores": scores, "token_level_rewards": scores, "response_mask": mask,
                 "attention_mask": attn, "prompts": torch.zeros(4, 2, dtype=torch.long), "advantages": adv},
        non_tensors={"uid": np.array(["a", "a", "b", "b"], dtype=object), "acc": np.array([1.0, 1.0, 0.0, 0.0]),
                     "reward_timeout": np.array([False, True, False, False], dtype=object),
                     "reward_error": np.array([False, False, False, False], dtype=object)})
    m = compute_data_metrics(data, max_response_length=R)
    assert m["critic/score/mean"] == pytest.approx(0.5) and m["critic/score/min"] == 0.0
    assert m["critic/advantages/max"] == 2.0 and m["critic/advantages/min"] == -3.0
    assert m["critic/advantages/mean"] == pytest.approx((2 + 8 - 1 - 9) / 10)
    assert m["response_length/mean"] == pytest.approx(2.5) and m["response_length/clip_ratio"] == 0.25
    assert m["prompt_length/mean"] == pytest.approx(1.5)
    assert m["batch/solve_all"] == 0.5 and m["batch/solve_none"] == 0.5
    assert m["reward/timeouts"] == 1.0 and m["reward/errors"] == 0.0


def test_reduce_metrics_and_backend_choice(monkeypatch):
    assert reduce_metrics({"a": [1.0, 3.0], "b": 2, "c": "x", "d": []}) == {"a": 2.0, "b": 2.0}
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_backend("auto", 1) == "inprocess"
    assert resolve_backend("auto", 2) == "ray"
    assert resolve_backend("auto", 1, ray_address="10.0.0.1:6379") == "ray"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert resolve_backend("auto", 1) == "ray"
    with pytest.raises(ValueError, match="inprocess runs one worker"):
        resolve_backend("inprocess", 2)
    with pytest.raises(ValueError, match="trainer.backend"):
        resolve_backend("mpi", 1)


def test_plot_png_written(tmp_path):
    from trainer.plotting import plot_metrics

    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 0, "val-core/toy/acc/mean@1": 0.1}] + \
            [{"step": s, "critic/score/mean": s / 10, "critic/acc/mean": s / 20} for s in range(1, 6)] + \
            [{"step": 5, "val-core/toy/acc/mean@1": 0.4}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = plot_metrics(path, tmp_path / "plots" / "rl.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"step": 1, "x": 1}) + "\n")
    with pytest.raises(ValueError, match="nothing|no critic"):
        plot_metrics(empty, tmp_path / "x.png")


def test_balance_batch_reorders_rows_for_equal_worker_tokens(ws, tmp_path):
    """Two workers: the rows move (with their uids and scores) so both chunks get 11 tokens, not 19 | 2."""
    cfg = compose_config("rl_trainer", overrides(ws, tmp_path, **{
        "trainer.n_gpus_per_node": 2, "trainer.backend": "auto",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 8}))
    trainer = RLTrainer(build_rl_plan(cfg))
    lengths = [10, 9, 1, 1]
    mask = torch.zeros(4, 12, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    batch = DataProto.from_dict({"attention_mask": mask, "token_level_scores": torch.arange(4.0)[:, None]},
                                {"uid": np.array(["a", "b", "c", "d"], dtype=object)})
    metrics: dict = {}
    out = trainer._balance(batch, metrics)
    assert list(out.non_tensor_batch["uid"]) == ["a", "d", "b", "c"]
    assert out.batch["token_level_scores"][:, 0].tolist() == [0.0, 3.0, 1.0, 2.0]
    assert out.batch["attention_mask"].sum(-1).tolist() == [10, 1, 9, 1]
    assert metrics["global_seqlen/minmax_diff"] == 17.0
    assert metrics["global_seqlen/balanced_min"] == 10.0 and metrics["global_seqlen/balanced_max"] == 11.0
    # one worker, or rows the workers cannot share equally: the order is kept and nothing is logged
    trainer.world_size = 3
    assert trainer._balance(batch, metrics := {}) is batch and metrics == {}


def test_moving_average_by_hand():
    from trainer.plotting import moving_average

    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert moving_average([2.0, 4.0], 1) == [2.0, 4.0]
    assert moving_average([1.0, 2.0, 3.0], 5) == [1.0, 1.5, 2.0]
    with pytest.raises(ValueError, match="window"):
        moving_average([1.0], 0)
