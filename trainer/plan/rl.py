"""Online RL config -> :class:`relift.spec.RLRunSpec`: every batch-size and path problem up front.

``build_rl_plan(cfg)`` reads a composed Hydra config (or a plain dict with the same keys), checks
it section by section, derives the batch arithmetic and returns the frozen run spec the trainer
and the workers receive. All problems are raised together as one :class:`PlanError`; each line
names the keys and shows the arithmetic, e.g.::

    data.train_batch_size (128) x actor_rollout_ref.rollout.n (8) = 1024 sequences per step must
    divide by world size 3 (trainer.nnodes 1 x trainer.n_gpus_per_node 3)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from relift.spec import PolicyWorkerSpec
from relift.spec.run import RLBatchPlan, RLRunSpec
from relift.spec.sections import DataSpec, RolloutSpec, WorldSpec
from trainer.plan.checker import ConfigChecker, PlanError, check_files, max_positions
from trainer.plan.common import (
    check_model,
    check_ray_init,
    check_trainer,
    check_world,
    dataset_steps,
    world_text,
)
from trainer.plan.data_checks import check_rl_data
from trainer.plan.rl_sections import (
    RO,
    A,
    check_actor,
    check_algorithm,
    check_ref,
    check_relift,
    check_reward,
    check_rollout,
)

__all__ = ["build_rl_plan", "build_policy_worker_spec"]

_TRUNCATION = ("error", "left", "right", "filter")


def _check_data(c: ConfigChecker) -> DataSpec:
    truncation = c.choice("data.truncation", _TRUNCATION, what="truncation mode")
    if c.bool("data.filter_overlong_prompts"):  # verl's switch: the same as truncation=filter
        truncation = "filter"
    c.bool("data.return_raw_chat")  # verl compatibility: raw prompts are always kept
    target = c.raw("data.target_key")
    return DataSpec(
        train_files=tuple(check_files(c, "data.train_files", required=True)),
        val_files=tuple(check_files(c, "data.val_files", required=False)),
        prompt_key=str(c.raw("data.prompt_key")), reward_fn_key=str(c.raw("data.reward_fn_key")),
        target_key=None if target is None else str(target),
        max_prompt_length=c.int("data.max_prompt_length", min_value=1),
        max_response_length=c.int("data.max_response_length", min_value=1),
        max_target_length=c.int("data.max_target_length", min_value=1, allow_none=True),
        train_batch_size=c.int("data.train_batch_size", min_value=1),
        val_batch_size=c.int("data.val_batch_size", min_value=1, allow_none=True), truncation=truncation,
        shuffle=c.bool("data.shuffle"), seed=c.int("data.seed", min_value=0),
        dataloader_num_workers=c.int("data.dataloader_num_workers", min_value=0),
        apply_chat_template=c.bool("data.apply_chat_template", default=True),
    )


def _mini_batch_per_worker(c: ConfigChecker, world: WorldSpec, B: int | None, n: int | None) -> int | None:
    """Sequences per optimiser step on one worker; checks every division on the way."""
    W = world.size if world.nnodes and world.n_gpus_per_node else None
    mini = c.int(f"{A}.ppo_mini_batch_size", min_value=1)
    seqs = B * n if B and n else None
    if seqs and W and seqs % W:
        c.fail(f"data.train_batch_size ({B}) x {RO}.n ({n}) = {seqs} sequences per step must divide by "
               f"{world_text(world)}: {seqs} / {W} = {seqs / W:.4g}")
    if B and mini:
        if mini > B:
            c.fail(f"{A}.ppo_mini_batch_size ({mini}) must be <= data.train_batch_size ({B}) (both count prompts)")
        elif B % mini:
            c.fail(f"data.train_batch_size ({B}) must divide by {A}.ppo_mini_batch_size ({mini}): "
                   f"{B} / {mini} = {B / mini:.4g} mini-batches per step")
    mini_seqs = mini * n if mini and n else None
    if not (mini_seqs and W):
        return None
    if mini_seqs % W:
        c.fail(f"{A}.ppo_mini_batch_size ({mini}) x {RO}.n ({n}) = {mini_seqs} sequences per mini-batch "
               f"must divide by {world_text(world)}: {mini_seqs} / {W} = {mini_seqs / W:.4g}")
        return None
    return mini_seqs // W


def _worker_sections(c: ConfigChecker, world: WorldSpec, P: int | None, R: int | None, B: int | None,
                     total: int | None) -> tuple[Any, ...]:
    """model, actor, rollout, ref, relift: what the policy workers need."""
    longest = P + R if P and R else None
    seed = c.int("trainer.seed", min_value=0)
    n = c.int(f"{RO}.n", min_value=1)
    model, model_cfg = check_model(c, "actor_rollout_ref.model")
    mpe = max_positions(model_cfg, model.override_config)
    if mpe is not None and longest and longest > mpe:
        c.fail(f"data.max_prompt_length ({P}) + data.max_response_length ({R}) = {longest} exceeds the model's "
               f"max_position_embeddings ({mpe}) in {model.path}/config.json; "
               "shorten them or set actor_rollout_ref.model.override_config.max_position_embeddings")
    actor = check_actor(c, world, n, _mini_batch_per_worker(c, world, B, n), longest, R, total)
    rollout = check_rollout(c, world, P, R, seed)
    in_reward = bool(c.raw("algorithm.use_kl_in_reward"))
    ref = check_ref(c, world, actor.policy_loss.use_kl_loss or in_reward, model.path, longest,
                    f"data.max_prompt_length ({P}) + data.max_response_length ({R})")
    relift = check_relift(c, world, P)
    return model, actor, rollout, ref, relift


def build_policy_worker_spec(cfg: Any, total_steps: int | None = None) -> PolicyWorkerSpec:
    """The policy workers' spec alone (no data files needed): for tools, benchmarks and tests."""
    c = ConfigChecker(cfg)
    world = check_world(c, c.raw(f"{RO}.name"))
    P, R = c.int("data.max_prompt_length", min_value=1), c.int("data.max_response_length", min_value=1)
    model, actor, rollout, ref, relift = _worker_sections(c, world, P, R, c.int("data.train_batch_size", min_value=1),
                                                          total_steps)
    if c.problems:
        raise PlanError(c.problems)
    return PolicyWorkerSpec(mode="rl", world=world, seed=c.int("trainer.seed"), model=model, actor=actor,
                            rollout=rollout, ref=ref, relift=relift, loss=None,
                            max_actor_ckpt_to_keep=c.int("trainer.max_actor_ckpt_to_keep", allow_none=True))


def _batch_plan(c: ConfigChecker, data: DataSpec, rollout: RolloutSpec, world: WorldSpec, mini_per_w: int | None,
                micro: Any, sft_per_w: int | None, sft_micro: Any, dataset_len: int | None,
                steps_per_epoch: int | None, epochs: int | None) -> RLBatchPlan:
    W = world.size if world.nnodes and world.n_gpus_per_node else None
    B, n = data.train_batch_size, rollout.sampling.n
    mini = c.raw(f"{A}.ppo_mini_batch_size")
    seqs = B * n if B and n else None
    micro_batches = None
    if not micro.use_dynamic_bsz and mini_per_w and micro.micro_batch_size_per_gpu:
        m = micro.micro_batch_size_per_gpu
        if mini_per_w % m:
            c.fail(f"sequences per mini-batch per worker {mini_per_w} (= {A}.ppo_mini_batch_size {mini} x {RO}.n {n} "
                   f"/ world size {W}) must divide by {A}.ppo_micro_batch_size_per_gpu ({m}): "
                   f"{mini_per_w} / {m} = {mini_per_w / m:.4g}")
        else:
            micro_batches = mini_per_w // m
    sft_micro_batches = None
    if sft_per_w and not sft_micro.use_dynamic_bsz and sft_micro.micro_batch_size_per_gpu \
            and sft_per_w % sft_micro.micro_batch_size_per_gpu == 0:
        sft_micro_batches = sft_per_w // sft_micro.micro_batch_size_per_gpu
    mini_batches = B // mini if B and isinstance(mini, int) and mini else None
    tp = rollout.tensor_model_parallel_size
    return RLBatchPlan(
        sequences_per_step=seqs, sequences_per_worker=seqs // W if seqs and W else None,
        sequences_per_mini_batch=mini * n if isinstance(mini, int) and n else None,
        mini_batches_per_step=mini_batches,
        optimizer_steps_per_step=mini_batches * epochs if mini_batches and epochs else None,
        micro_batches_per_mini_batch=micro_batches, rollout_replicas=W // tp if W and tp else None,
        dataset_rows=dataset_len, steps_per_epoch=steps_per_epoch, relift_sft_micro_batches=sft_micro_batches)


def build_rl_plan(cfg: Any, dataset_len: int | None = None) -> RLRunSpec:
    """Check an online-trainer config (``trainer/config/rl_trainer.yaml`` keys); return its run spec.

    ``dataset_len`` (train rows) lets the plan derive steps per epoch and, when
    ``trainer.total_training_steps`` is null, the total steps. Raises :class:`PlanError` listing
    every problem found.
    """
    c = ConfigChecker(cfg)
    world = check_world(c, c.raw(f"{RO}.name"))
    data = _check_data(c)
    P, R, B = data.max_prompt_length, data.max_response_length, data.train_batch_size
    trainer = check_trainer(c, "trainer.max_actor_ckpt_to_keep", online=True)
    steps_per_epoch, total = dataset_steps(c, dataset_len, B, "data.train_batch_size", trainer.total_epochs,
                                           c.int("trainer.total_training_steps", min_value=1, allow_none=True),
                                           "data.train_files")
    trainer = dataclasses.replace(trainer, total_training_steps=total)
    model, actor, rollout, ref, relift = _worker_sections(c, world, P, R, B, total)
    algorithm = check_algorithm(c, actor.policy_loss.use_kl_loss)
    n = rollout.sampling.n
    if n == 1 and algorithm.adv_estimator in ("grpo", "rloo", "reinforce_plus_plus_baseline"):
        c.warn(f"{RO}.n=1 with algorithm.adv_estimator={algorithm.adv_estimator}: groups of one have no baseline")
    reward = check_reward(c)
    check_rl_data(c, data, model, custom_reward=c.raw("reward.custom_reward_function.path") is not None)
    if trainer.val_only and not data.val_files:
        c.fail("trainer.val_only=true needs data.val_files")
    if not data.val_files and trainer.test_freq and trainer.test_freq > 0:
        c.warn(f"trainer.test_freq={trainer.test_freq} but data.val_files is not set: no validation")
    batch = _batch_plan(c, data, rollout, world, actor.sequences_per_mini_batch_per_worker, actor.train_micro,
                        relift.sft_per_worker, relift.micro, dataset_len, steps_per_epoch, actor.ppo_epochs)
    ray_init = check_ray_init(c)
    if c.problems:
        raise PlanError(c.problems)
    return RLRunSpec(world=world, ray_init=ray_init, data=data, model=model, actor=actor, rollout=rollout, ref=ref,
                     reward=reward, algorithm=algorithm, relift=relift, trainer=trainer, batch=batch,
                     warnings=tuple(c.warnings))
