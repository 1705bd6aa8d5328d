"""Offline (SFT / REDI / DPO / SimPO) config -> :class:`relift.spec.OfflineRunSpec`.

The offline yaml names its sections ``model`` / ``optim`` / ``loss`` / ``ref``; here they become the
same typed actor and reference sections the RL trainer's workers get, so one worker class serves
both trainers without translating config keys at run time.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from relift.spec.run import OfflineBatchPlan, OfflineRunSpec
from relift.spec.sections import ActorSpec, CheckpointSpec, LossSpec, MicroBatching, OfflineDataSpec, RefSpec, WorldSpec
from trainer.plan.checker import ConfigChecker, PlanError, check_files, check_model_path, max_positions
from trainer.plan.common import (
    check_fsdp,
    check_model,
    check_optim,
    check_ray_init,
    check_trainer,
    check_world,
    dataset_steps,
    per_worker,
)
from trainer.plan.data_checks import check_offline_data

__all__ = ["build_offline_plan", "OFFLINE_LOSSES"]

OFFLINE_LOSSES = {"sft": "sft", "redi": "pairs", "dpo": "pairs", "simpo": "pairs"}
_DEFAULT_BETA = {"dpo": 0.1, "simpo": 2.0}
_TRUNCATION = ("error", "left", "right", "filter")
_FULL_CHECKPOINT = ("model", "optimizer", "extra")


def _check_data(c: ConfigChecker) -> OfflineDataSpec:
    return OfflineDataSpec(
        kind=c.choice("data.kind", ("sft", "pairs"), what="data kind"),
        train_files=tuple(check_files(c, "data.train_files", required=True)),
        val_files=tuple(check_files(c, "data.val_files", required=False)),
        prompt_key=str(c.raw("data.prompt_key")), response_key=str(c.raw("data.response_key")),
        chosen_key=str(c.raw("data.chosen_key")), rejected_key=str(c.raw("data.rejected_key")),
        max_length=c.int("data.max_length", min_value=2),
        truncation=c.choice("data.truncation", _TRUNCATION, what="truncation mode"),
        train_batch_size=c.int("data.train_batch_size", min_value=1),
        micro_batch_size_per_gpu=c.int("data.micro_batch_size_per_gpu", min_value=1),
        val_batch_size=c.int("data.val_batch_size", min_value=1),
        shuffle=c.bool("data.shuffle"), seed=c.int("data.seed", min_value=0),
        dataloader_num_workers=c.int("data.dataloader_num_workers", min_value=0),
        apply_chat_template=c.bool("data.apply_chat_template", default=True),
    )


def _check_loss(c: ConfigChecker, kind: str | None) -> LossSpec:
    loss = c.choice("loss.type", tuple(OFFLINE_LOSSES), what="loss")
    if kind and loss and OFFLINE_LOSSES[loss] != kind:
        c.fail(f"loss.type={loss} needs data.kind={OFFLINE_LOSSES[loss]}, got data.kind={kind}")
    alpha = c.float("loss.alpha", min_value=0.0)
    if loss == "redi" and alpha is not None and alpha > 1:
        c.warn(f"loss.alpha={alpha:g} > 1 weighs the rejected term above the chosen one; the REDI paper uses 0.8")
    beta = c.float("loss.beta", min_value=0.0, strict_min=True, allow_none=True) if loss in _DEFAULT_BETA \
        else c.raw("loss.beta")
    if beta is None:
        beta = _DEFAULT_BETA.get(loss)
    return LossSpec(type=loss, alpha=alpha, beta=beta, gamma=c.float("loss.gamma"),
                    cpo_alpha=c.float("loss.cpo_alpha", min_value=0.0))


def _examples_per_worker(c: ConfigChecker, world: WorldSpec, B: int | None, micro: int | None
                         ) -> tuple[int | None, int | None]:
    per_w = per_worker(c, B, f"data.train_batch_size ({B})", world)
    micro_batches = None
    W = world.size if per_w else None
    if per_w and micro:
        if per_w % micro:
            c.fail(f"examples per worker {per_w} (= data.train_batch_size {B} / world size {W}) must divide by "
                   f"data.micro_batch_size_per_gpu ({micro}): {per_w} / {micro} = {per_w / micro:.4g}")
        else:
            micro_batches = per_w // micro
    return per_w, micro_batches


def build_offline_plan(cfg: Any, dataset_len: int | None = None) -> OfflineRunSpec:
    """Check an offline-trainer config (``trainer/config/offline_trainer.yaml`` keys); return its run spec."""
    c = ConfigChecker(cfg)
    world = check_world(c)
    data = _check_data(c)
    loss = _check_loss(c, data.kind)
    per_w, micro_batches = _examples_per_worker(c, world, data.train_batch_size, data.micro_batch_size_per_gpu)
    trainer = check_trainer(c, "trainer.max_ckpt_to_keep", online=False)
    steps_per_epoch, total = dataset_steps(c, dataset_len, data.train_batch_size, "data.train_batch_size",
                                           trainer.total_epochs,
                                           c.int("trainer.total_training_steps", min_value=1, allow_none=True),
                                           "data.train_files")
    trainer = dataclasses.replace(trainer, total_training_steps=total)
    model, model_cfg = check_model(c, "model")
    check_offline_data(c, data, model)
    mpe = max_positions(model_cfg, model.override_config)
    L = data.max_length
    if mpe is not None and L and L > mpe:
        c.fail(f"data.max_length ({L}) exceeds the model's max_position_embeddings ({mpe}) in "
               f"{model.path}/config.json; shorten it or set model.override_config.max_position_embeddings")
    micro = MicroBatching(use_dynamic_bsz=False, micro_batch_size_per_gpu=data.micro_batch_size_per_gpu,
                          max_token_len_per_gpu=0)
    actor = ActorSpec(
        ppo_mini_batch_size=data.train_batch_size, sequences_per_mini_batch_per_worker=per_w, ppo_epochs=1,
        shuffle=False, train_micro=micro, log_prob_micro=micro, policy_loss=None, loss_scale_factor=None,
        grad_clip=c.float("optim.grad_clip", min_value=0.0, strict_min=True, allow_none=True),
        logits_chunk_size=c.int("model.logits_chunk_size", min_value=1), optim=check_optim(c, "optim", total),
        fsdp=check_fsdp(c, "model.fsdp_config", world),
        checkpoint=CheckpointSpec(save_contents=_FULL_CHECKPOINT, load_contents=_FULL_CHECKPOINT))
    uses_ref = loss.type == "dpo"
    ref_path = c.raw("ref.model_path")
    if uses_ref and ref_path is not None:
        check_model_path(c, "ref.model_path")
    precompute = c.bool("ref.precompute") and uses_ref
    if precompute and ref_path is not None and str(ref_path) != str(model.path):
        c.fail(f"ref.precompute=true takes the reference from the policy before training (model.path); "
               f"ref.model_path={ref_path!r} is another model: drop one of the two settings")
    ref_micro = c.int("ref.log_prob_micro_batch_size_per_gpu", min_value=1) if uses_ref \
        else c.raw("ref.log_prob_micro_batch_size_per_gpu")
    ref = RefSpec(enabled=uses_ref, model_path=str(ref_path or model.path),
                  log_prob_micro=MicroBatching(False, ref_micro, 0),
                  fsdp=check_fsdp(c, "ref.fsdp_config", world, trainable=False), precompute=precompute)
    if not data.val_files and trainer.test_freq and trainer.test_freq > 0:
        c.warn(f"trainer.test_freq={trainer.test_freq} but data.val_files is not set: no validation")
    ray_init = check_ray_init(c)
    if c.problems:
        raise PlanError(c.problems)
    pair = data.kind == "pairs"
    batch = OfflineBatchPlan(examples_per_worker=per_w, micro_batches_per_step=micro_batches,
                             sequences_per_forward=data.micro_batch_size_per_gpu * (2 if pair else 1),
                             dataset_rows=dataset_len, steps_per_epoch=steps_per_epoch)
    return OfflineRunSpec(world=world, ray_init=ray_init, data=data, model=model, actor=actor, ref=ref, loss=loss,
                          trainer=trainer, batch=batch, warnings=tuple(c.warnings))

