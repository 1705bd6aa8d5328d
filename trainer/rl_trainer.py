"""The online RL loop (GRPO / REINFORCE++ / REINFORCE++-baseline / RLOO), driven from one process.

One step, as data (DESIGN.md): a batch of prompts (``uid`` per prompt) -> ``generate_sequences``
(n samples per prompt, interleaved like ``repeat(n, interleave=True)``) -> ``compute_score``
(``token_level_scores``) -> ``compute_log_prob`` (``old_log_probs``; SKIPPED when the update is
exactly on-policy) -> ``compute_ref_log_prob`` (only with a KL term) -> the advantage estimator on
the driver -> ``update_actor`` -> the ``post_update_hooks`` (where ReLIFT plugs in) -> metrics,
validation every ``trainer.test_freq`` steps, a checkpoint every ``trainer.save_freq`` steps.

On-policy skip: with ``actor.ppo_epochs == 1`` and ``actor.ppo_mini_batch_size ==
data.train_batch_size`` (one optimiser step per RL step) and no KL-in-reward (which needs the old
log-probs on the driver), the old policy IS the current one, so the actor uses its own log-probs,
detached, inside the update; ``timing_s/old_log_prob`` is then absent from the metrics.

Hooks: ``trainer.post_update_hooks`` is a list of callables ``hook(trainer, batch, metrics) -> None``
run after every RL update, in order; they may call the worker groups (``trainer.actor_wg``) and add
to ``metrics``. A hook that keeps state across steps (a ReLIFT buffer) should have a ``name`` and
``state_dict()`` / ``load_state_dict(state)``: the state goes into the driver state of every
checkpoint under ``hooks[<name>]`` and comes back on resume before the first resumed step.

Checkpoints and exact resume: at a save step the policy workers write their shards into the
staging dir, the driver writes ``driver_state.pt`` (global step, epoch, the data loader's
``state_dict``, the KL controller, the driver's RNG, hook state, and that step's metrics), and the
directory is committed atomically. ``trainer.resume_mode``: ``auto`` (the newest checkpoint in
``trainer.default_local_dir``, if any), ``resume_path`` (``trainer.resume_from_path``) or ``disable``.
On resume the metrics.jsonl lines after the resumed step are cut (they will be logged again). Rollout
sampling is reseeded every step from (``trainer.seed``, step) (see :mod:`trainer.workers_setup`),
so a resumed run draws the same samples as an uninterrupted one.

Backends: ``trainer.backend`` ``auto`` | ``ray`` | ``inprocess`` (see :mod:`trainer.workers_setup`).
``trainer.val_before_train`` validates only on a fresh start (a resumed run already has its line).
``trainer.balance_batch`` reorders the scored rows before the log-prob and update passes so every
worker's contiguous chunk holds the same number of rows and near-equal tokens
(:mod:`relift.utils.seqlen_balancing`); ``global_seqlen/*`` reports the chunks' token sums. With one
worker, or a row count the workers cannot share equally, the order is kept.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from relift.algorithms.advantages import apply_kl_penalty_to_rewards, compute_advantage
from relift.algorithms.kl_control import get_kl_controller
from relift.protocol import DataProto
from relift.rewards.guard import RewardErrorGuard
from relift.spec import RLRunSpec
from relift.utils.seqlen_balancing import balance_permutation, partition_stats
from relift.utils.timer import timed
from trainer.data_configs import rl_data_config
from trainer.phases import phase
from trainer.run_checkpoint import resolve_resume_dir
from trainer.step_loop import StepLoop
from trainer.validation import run_validation
from workers.rollout.base import GEN_KEYS

__all__ = ["RLTrainer", "run", "compute_data_metrics", "reduce_metrics", "resolve_resume_dir", "Hook"]

logger = logging.getLogger(__name__)

Hook = Callable[["RLTrainer", DataProto, dict], None]
# seeds of the per-step rollout sampler: far apart from the worker seeds (seed + 1000 x rank)
_STEP_SEED_STRIDE = 7919
_VAL_SEED_OFFSET = 10_000_019


def reduce_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Worker metrics (floats or per-optimiser-step lists) -> one float each (list mean)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, (list, tuple)):
            if value:
                out[key] = float(np.mean([float(v) for v in value]))
        elif isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, torch.Tensor) and value.numel() == 1:
            out[key] = float(value.item())
    return out


def _stats(prefix: str, values: torch.Tensor) -> dict[str, float]:
    values = values.float()
    if values.numel() == 0:
        return {}
    return {f"{prefix}/mean": float(values.mean()), f"{prefix}/max": float(values.max()),
            f"{prefix}/min": float(values.min())}


def compute_data_metrics(batch: DataProto, max_response_length: int) -> dict[str, float]:
    """verl's per-step data metrics: scores, rewards, advantages, lengths, solve rates."""
    b = batch.batch
    mask = b["response_mask"].bool()
    metrics: dict[str, float] = {}
    metrics.update(_stats("critic/score", b["token_level_scores"].sum(-1)))
    rewards = b["token_level_rewards"] if "token_level_rewards" in b.keys() else b["token_level_scores"]
    metrics.update(_stats("critic/rewards", rewards.sum(-1)))
    if "advantages" in b.keys():
        metrics.update(_stats("critic/advantages", b["advantages"][mask]))
    if "returns" in b.keys():
        metrics.update(_stats("critic/returns", b["returns"][mask]))
    resp_len = mask.sum(-1).float()
    metrics.update(_stats("response_length", resp_len))
    metrics["response_length/clip_ratio"] = float((resp_len >= max_response_length).float().mean())
    prompt_width = b["prompts"].shape[1] if "prompts" in b.keys() else b["input_ids"].shape[1] - mask.shape[1]
    prompt_len = b["attention_mask"][:, :prompt_width].sum(-1).float()
    metrics.update(_stats("prompt_length", prompt_len))
    nt = batch.non_tensor_batch
    if "acc" in nt:
        acc = np.asarray([float(a) for a in nt["acc"]])
        metrics["critic/acc/mean"] = float(acc.mean())
        if "uid" in nt:
            groups: dict[Any, list[float]] = defaultdict(list)
            for uid, a in zip(nt["uid"], acc):
                groups[uid].append(a)
            means = np.asarray([np.mean(v) for v in groups.values()])
            metrics["batch/solve_none"] = float((means == 0).mean())
            metrics["batch/solve_all"] = float((means == 1).mean())
    metrics["reward/timeouts"] = float(sum(bool(v) for v in nt.get("reward_timeout", [])))
    metrics["reward/errors"] = float(sum(bool(v) for v in nt.get("reward_error", [])))
    return metrics


class RLTrainer(StepLoop):
    """Holds the loop's state; ``fit()`` (:class:`trainer.step_loop.StepLoop`) runs it."""

    progress_name = "rl steps"

    def __init__(self, spec: RLRunSpec, post_update_hooks: list[Hook] | None = None) -> None:
        if not isinstance(spec, RLRunSpec):
            raise TypeError("RLTrainer takes the run spec from trainer.plan.build_rl_plan(cfg), "
                            f"got {type(spec).__name__}")
        super().__init__(spec)
        self.post_update_hooks: list[Hook] = list(post_update_hooks or [])
        if spec.relift.enable and not any(getattr(h, "name", None) == "relift" for h in self.post_update_hooks):
            from trainer.relift_hook import ReliftHook  # noqa: PLC0415

            self.post_update_hooks.append(ReliftHook.from_spec(spec))
        self.reward_wg: Any = None
        self.last_val_metrics: dict[str, float] = {}
        self.n = spec.rollout.sampling.n
        self.batch_size = spec.data.train_batch_size
        self.kl_ctrl = get_kl_controller(spec.algorithm.kl_ctrl) if spec.algorithm.use_kl_in_reward else None
        self.world_size = spec.world.size
        self.reward_guard = RewardErrorGuard(spec.reward.max_error_fraction, spec.reward.max_error_steps)

    # ------------------------------------------------------------------ setup
    def _build_data(self) -> None:
        from relift.data import RLDataset  # noqa: PLC0415
        from relift.models.loading import load_tokenizer  # noqa: PLC0415

        spec, data = self.spec, self.spec.data
        self.tokenizer = load_tokenizer(spec.model.tokenizer_path, trust_remote_code=spec.model.trust_remote_code)
        data_cfg = rl_data_config(data)
        self.train_dataset = RLDataset(list(data.train_files), self.tokenizer, config=data_cfg)
        val_ds = RLDataset(list(data.val_files), self.tokenizer, config=data_cfg) if data.val_files else None
        self._make_loaders(self.train_dataset, val_ds, batch_size=self.batch_size, data=data,
                           val_batch_size=data.val_batch_size)
        logger.info("train: %d prompts, %d steps per epoch, %d steps in all; validation: %d prompts",
                    len(self.train_dataset), len(self.train_loader), self.total_steps,
                    sum(len(b) for b in self.val_batches))

    def _build_workers(self) -> None:
        from trainer.workers_setup import build_worker_groups  # noqa: PLC0415

        spec = self.spec
        self.groups = build_worker_groups(spec.worker(), spec.ray_init, with_ref=spec.ref.enabled, reward=spec.reward)
        self.actor_wg, self.reward_wg = self.groups.actor, self.groups.reward

    # ------------------------------------------------------------------ checkpoints
    def hook_state(self) -> dict[str, Any]:
        """State of the hooks that have ``state_dict`` (keyed by their ``name``)."""
        out = {}
        for i, hook in enumerate(self.post_update_hooks):
            if hasattr(hook, "state_dict"):
                out[str(getattr(hook, "name", f"hook{i}"))] = hook.state_dict()
        return out

    def _load_hook_state(self, state: dict[str, Any]) -> None:
        for i, hook in enumerate(self.post_update_hooks):
            name = str(getattr(hook, "name", f"hook{i}"))
            if hasattr(hook, "load_state_dict"):
                if name in state:
                    hook.load_state_dict(state[name])
                else:
                    logger.warning("checkpoint has no state for hook %r; it starts fresh", name)

    def _driver_extra(self) -> dict[str, Any]:
        return {"kl_ctrl": self.kl_ctrl.state_dict() if self.kl_ctrl is not None else None,
                "hooks": self.hook_state()}

    def _restore_extra(self, state: dict[str, Any]) -> None:
        if self.kl_ctrl is not None and state.get("kl_ctrl"):
            self.kl_ctrl.load_state_dict(state["kl_ctrl"])
        self._load_hook_state(state.get("hooks") or {})

    # ------------------------------------------------------------------ the step
    def _step_seed(self, step: int) -> int:
        return self.seed * 1_000_003 + step * _STEP_SEED_STRIDE

    def validate(self) -> dict[str, float]:
        """A validation pass (empty dict when there are no validation files)."""
        if not self.val_batches:
            return {}
        metrics, _ = run_validation(self.actor_wg, self.reward_wg, self.val_batches, global_step=self.global_step,
                                    capability=self.spec.trainer.val_capability,
                                    seed=self._step_seed(self.global_step) + _VAL_SEED_OFFSET)
        self.last_val_metrics = metrics
        return metrics

    def train_step(self, batch: DataProto) -> dict[str, Any]:
        """One RL step on a batch of prompts; returns its metrics (without validation/checkpoint)."""
        step = self.global_step
        timings: dict[str, float] = {}
        metrics: dict[str, Any] = {}
        with timed("step", timings):
            batch.non_tensor_batch["uid"] = np.array([f"{step}-{i}" for i in range(len(batch))], dtype=object)
            gen_in = batch.select(batch_keys=list(GEN_KEYS), non_tensor_batch_keys=[])
            gen_in.meta_info = {"global_step": step}
            self.actor_wg.set_rollout_seed(self._step_seed(step))
            with timed("gen", timings), phase("generate", self.actor_wg):
                gen_out = self.actor_wg.generate_sequences(gen_in)
            worker_timing = gen_out.meta_info.pop("timing", None) or {}
            if "weight_sync" in worker_timing:
                metrics["timing_s/weight_sync"] = float(worker_timing["weight_sync"])
            if len(gen_out) != len(batch) * self.n:
                raise RuntimeError(f"the rollout returned {len(gen_out)} rows for {len(batch)} prompts x n={self.n}")
            batch = batch.repeat(self.n, interleave=True)
            batch.pop(batch_keys=[k for k in GEN_KEYS if k in batch.batch.keys()])
            batch = batch.union(gen_out)
            batch.meta_info["global_step"] = step

            with timed("reward", timings), phase("reward", self.reward_wg):
                scored = self.reward_wg.compute_score(batch)
                scored.meta_info.pop("metrics", None)
                batch = batch.union(scored)
                metrics.update(self.reward_guard.check(step, batch.non_tensor_batch))  # stops on failing rewards

            if self.spec.trainer.balance_batch:
                batch = self._balance(batch, metrics)

            if not self.spec.on_policy:
                with timed("old_log_prob", timings), phase("old_log_prob", self.actor_wg):
                    old = self.actor_wg.compute_log_prob(batch)
                    batch = batch.union(old)
                ent = batch.batch["entropys"]
                mask = batch.batch["response_mask"].float()
                metrics["actor/entropy"] = float((ent * mask).sum() / mask.sum().clamp(min=1))

            if self.spec.ref.enabled:
                with timed("ref", timings), phase("ref", self.actor_wg):
                    batch = batch.union(self.actor_wg.compute_ref_log_prob(batch))

            with timed("adv", timings):
                self._compute_advantage(batch, metrics)

            with timed("update_actor", timings), phase("update", self.actor_wg):
                out = self.actor_wg.update_actor(batch)
            worker = reduce_metrics(out.meta_info.get("metrics", {}))
            worker.pop("timing_s/update_actor_worker", None)
            metrics.update(worker)

            for hook in self.post_update_hooks:
                with phase(f"hook:{getattr(hook, 'name', type(hook).__name__)}", self.actor_wg):
                    hook(self, batch, metrics)

        metrics.update(compute_data_metrics(batch, self.spec.data.max_response_length))
        metrics.update(timings)
        total_tokens = float(batch.batch["attention_mask"].sum())
        step_time = timings["timing_s/step"]
        metrics["perf/total_num_tokens"] = total_tokens
        metrics["perf/time_per_step"] = step_time
        metrics["perf/throughput"] = total_tokens / max(step_time, 1e-9) / self.world_size
        return metrics

    def _balance(self, batch: DataProto, metrics: dict[str, Any]) -> DataProto:
        """Reorder rows so the workers' chunks carry near-equal tokens (rows grouped by uid stay valid)."""
        k = self.world_size
        if k <= 1 or len(batch) % k:
            return batch
        seqlens = batch.batch["attention_mask"].sum(dim=-1).tolist()
        order = balance_permutation(seqlens, k)
        metrics.update(partition_stats(seqlens, k))
        balanced = partition_stats(seqlens, k, order)
        metrics["global_seqlen/balanced_min"] = balanced["global_seqlen/min"]
        metrics["global_seqlen/balanced_max"] = balanced["global_seqlen/max"]
        return batch.reorder(order)

    def _compute_advantage(self, batch: DataProto, metrics: dict[str, Any]) -> None:
        b = batch.batch
        scores = b["token_level_scores"]
        mask = b["response_mask"]
        alg = self.spec.algorithm
        if alg.use_kl_in_reward:
            rewards, kl_metrics = apply_kl_penalty_to_rewards(
                scores, b["old_log_probs"], b["ref_log_prob"], mask, kl_coef=self.kl_ctrl.value,
                kl_penalty=alg.kl_penalty)
            self.kl_ctrl.update(kl_metrics["actor/reward_kl_penalty"], n_steps=len(batch) // self.n)
            metrics.update(kl_metrics)
        else:
            rewards = scores
        kwargs: dict[str, Any] = {}
        if alg.adv_estimator == "grpo":
            kwargs["norm_adv_by_std_in_grpo"] = alg.norm_adv_by_std_in_grpo
        elif alg.adv_estimator == "reinforce_plus_plus":
            kwargs["gamma"] = alg.gamma
        adv, ret = compute_advantage(alg.adv_estimator, rewards, mask, index=batch.non_tensor_batch["uid"], **kwargs)
        b["token_level_rewards"] = rewards
        b["advantages"] = adv
        b["returns"] = ret

    # ------------------------------------------------------------------ around the loop
    def _before_steps(self, resumed: bool) -> dict[str, Any] | None:
        """Validate before the first step of a fresh run (and stop there with ``trainer.val_only``)."""
        t = self.spec.trainer
        if self.val_batches and (t.val_only or (not resumed and t.val_before_train)):
            val_timings: dict[str, float] = {}
            with timed("testing", val_timings), phase("validate", self.actor_wg):
                val = self.validate()
            self.tracker.log({**val, **val_timings}, step=self.global_step)
            if t.val_only:
                return val
        return None


def run(spec: RLRunSpec) -> dict[str, Any]:
    """Entry point used by ``python -m trainer.main_rl``: build the trainer and fit."""
    logging.getLogger("relift").setLevel(logging.INFO)
    return RLTrainer(spec).fit()
