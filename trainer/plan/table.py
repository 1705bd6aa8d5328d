"""The plan table the entry points print: each derived number with the keys it comes from."""

from __future__ import annotations

from typing import Any

from relift.spec import OfflineRunSpec, RLRunSpec
from trainer.plan.common import resolve_mixed_precision

__all__ = ["render_plan", "render_spec", "rl_rows", "offline_rows"]

Row = tuple[str, Any, str]


def render_plan(title: str, rows: list[Row], warnings: list[str] | tuple[str, ...]) -> str:
    """A small aligned table: key, value, how it was derived; warnings below."""
    shown = [(k, "-" if v is None else str(v), how) for k, v, how in rows]
    w_key = max(len(k) for k, _, _ in shown)
    w_val = max(len(v) for _, v, _ in shown)
    lines = [title]
    for k, v, how in shown:
        lines.append(f"  {k:<{w_key}}  {v:>{w_val}}" + (f"  {how}" if how else ""))
    for w in warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


def _world_rows(spec: RLRunSpec | OfflineRunSpec) -> list[Row]:
    w = spec.world
    return [("device", w.device, "" if w.devices_checked else "(not checked: trainer.check_devices=false)"),
            ("world size", w.size, f"= trainer.nnodes {w.nnodes} x trainer.n_gpus_per_node {w.n_gpus_per_node}")]


def _schedule_rows(spec: RLRunSpec | OfflineRunSpec, unit_batch: int) -> list[Row]:
    optim, t, b = spec.actor.optim, spec.trainer, spec.batch
    warm = optim.warmup_steps if optim.warmup_steps is not None else "?"
    validation = bool(spec.data.val_files)
    return [
        ("mixed precision", resolve_mixed_precision(spec.actor.fsdp.mixed_precision, spec.world.device), ""),
        ("learning rate", f"{optim.lr:g}", f"{optim.lr_scheduler_type}, warmup {warm} steps"),
        ("train rows", b.dataset_rows, "data.train_files"),
        ("steps per epoch", b.steps_per_epoch,
         f"= {b.dataset_rows} // {unit_batch}" if b.steps_per_epoch is not None
         else "unknown until the data is loaded"),
        ("total training steps", t.total_training_steps,
         f"trainer.total_epochs {t.total_epochs}" if t.total_training_steps is not None
         else "derived from the data at start"),
        ("validation", "on" if validation else "off",
         f"every {t.test_freq} steps" if validation and t.test_freq > 0 else ""),
        ("checkpoints", f"every {t.save_freq}" if t.save_freq > 0 else "off", t.default_local_dir),
        ("loggers", ",".join(t.logger) or "none", ""),
    ]


def rl_rows(spec: RLRunSpec) -> list[Row]:
    b, d, a, ro = spec.batch, spec.data, spec.actor, spec.rollout
    n, W = ro.sampling.n, spec.world.size
    rows: list[Row] = _world_rows(spec) + [
        ("prompts per step", d.train_batch_size, "data.train_batch_size"),
        ("samples per prompt", n, "actor_rollout_ref.rollout.n"),
        ("sequences per step", b.sequences_per_step, f"= {d.train_batch_size} x {n}"),
        ("sequences per worker", b.sequences_per_worker, f"= {b.sequences_per_step} / {W}"),
        ("prompts per mini-batch", a.ppo_mini_batch_size, "actor.ppo_mini_batch_size"),
        ("sequences per mini-batch", b.sequences_per_mini_batch, f"= {a.ppo_mini_batch_size} x {n}"),
        ("  per worker", a.sequences_per_mini_batch_per_worker, f"= {b.sequences_per_mini_batch} / {W}"),
        ("optimiser steps per step", b.optimizer_steps_per_step,
         f"= {d.train_batch_size} / {a.ppo_mini_batch_size} mini-batches x {a.ppo_epochs} ppo_epochs"
         + (" (on-policy)" if b.on_policy_update else "")),
    ]
    longest = d.max_prompt_length + d.max_response_length
    if a.train_micro.use_dynamic_bsz:
        rows.append(("token budget per micro-batch", a.train_micro.max_token_len_per_gpu,
                     f"actor.ppo_max_token_len_per_gpu (longest sequence {longest})"))
    else:
        rows.append(("micro-batch per worker", a.train_micro.micro_batch_size_per_gpu,
                     "actor.ppo_micro_batch_size_per_gpu"))
        rows.append(("micro-batches per mini-batch", b.micro_batches_per_mini_batch,
                     f"= {a.sequences_per_mini_batch_per_worker} / {a.train_micro.micro_batch_size_per_gpu} "
                     "(gradient accumulation)"))
    rows += [
        ("max sequence length", longest, f"= prompt {d.max_prompt_length} + response {d.max_response_length}"),
        ("rollout", ro.name, f"{b.rollout_replicas} engine(s) x tensor parallel {ro.tensor_model_parallel_size}"),
        ("advantage estimator", spec.algorithm.adv_estimator, "algorithm.adv_estimator"),
        ("old log-prob pass", "skipped (on-policy)" if spec.on_policy else "yes", ""),
        ("reference model", "yes" if spec.ref.enabled else "no", "KL loss or KL in reward"),
    ]
    rows += _schedule_rows(spec, d.train_batch_size)
    custom = spec.reward.custom_reward_function
    if custom is not None:
        rows.append(("custom reward", f"{custom.path}:{custom.name}", ""))
    r = spec.relift
    if r.enable:
        rows.append(("relift sft batch", r.sft_batch_size, "relift.sft_batch_size"))
        rows.append(("  per worker", r.sft_per_worker, f"= {r.sft_batch_size} / {W}"
                     + (f", {b.relift_sft_micro_batches} micro-batches" if b.relift_sft_micro_batches else "")))
    return rows


def offline_rows(spec: OfflineRunSpec) -> list[Row]:
    b, d, loss = spec.batch, spec.data, spec.loss
    unit = "pairs" if d.kind == "pairs" else "examples"
    params = {"redi": {"alpha": loss.alpha}, "dpo": {"beta": loss.beta},
              "simpo": {"beta": loss.beta, "gamma": loss.gamma, "cpo_alpha": loss.cpo_alpha}}.get(loss.type, {})
    rows: list[Row] = _world_rows(spec) + [
        ("loss", loss.type, ", ".join(f"{k}={v:g}" for k, v in params.items())),
        (f"{unit} per step", d.train_batch_size, "data.train_batch_size (one optimiser step)"),
        (f"{unit} per worker", b.examples_per_worker, f"= {d.train_batch_size} / {spec.world.size}"),
        ("micro-batch per worker", d.micro_batch_size_per_gpu, "data.micro_batch_size_per_gpu"),
        ("micro-batches per step", b.micro_batches_per_step,
         f"= {b.examples_per_worker} / {d.micro_batch_size_per_gpu} (gradient accumulation)"),
        ("sequences per forward", b.sequences_per_forward, "chosen + rejected stacked" if d.kind == "pairs" else ""),
        ("max sequence length", d.max_length, "data.max_length"),
        ("reference model", "precomputed once, cached" if spec.ref.precompute else "yes" if spec.ref.enabled else "no",
         "ref.precompute" if spec.ref.precompute else ""),
    ]
    return rows + _schedule_rows(spec, d.train_batch_size)


def render_spec(spec: RLRunSpec | OfflineRunSpec) -> str:
    """The table an entry point prints before any worker starts."""
    if isinstance(spec, RLRunSpec):
        return render_plan("relift RL plan", rl_rows(spec), spec.warnings)
    return render_plan("relift offline plan", offline_rows(spec), spec.warnings)
