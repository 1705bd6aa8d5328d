"""A policy worker's checkpoint files: its local shards, optimiser(s), schedule and RNG; HF export.

Per-rank files of local shards (see :mod:`relift.utils.fsdp`) go into the folder the driver gives
(normally ``<root>/.tmp-global_step_N/actor`` from :func:`relift.utils.checkpoint.begin_checkpoint`;
the driver commits it atomically): ``model_/optim_/extra_state_world_size_W_rank_R.pt``,
``meta.json`` and ``huggingface/`` (config + tokenizer). The folder must be on a file system every
rank sees. Atomicity and rotation belong to the driver.

Every file is loaded with ``weights_only=True`` (:func:`relift.utils.checkpoint.safe_load`): a doctored
file is refused instead of run. On resume the optimiser's moments and step counts and the schedule's
position come from the checkpoint, but its settings (lr, betas, weight decay, the schedule's shape and
length) come from this run's spec: a resume with a new ``optim.lr`` or ``total_training_steps`` uses
them from the next step on (they used to be overwritten by the saved ones without a word).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from relift.utils import checkpoint as ckpt
from relift.utils import fsdp as fsdp_utils
from workers.fsdp_model import DTYPES

__all__ = ["TrainState", "save_train_state", "load_train_state", "export_hf_folder"]

logger = logging.getLogger(__name__)


@dataclass
class TrainState:
    """What a checkpoint of the actor holds (the worker owns these objects; this names them)."""

    module: Any
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    sft_optimizer: torch.optim.Optimizer | None
    tokenizer: Any
    rank: int
    world_size: int


def _barrier(world_size: int) -> None:
    if dist.is_initialized() and world_size > 1:
        dist.barrier()


def save_train_state(state: TrainState, folder: Path, contents: tuple[str, ...], *, actor_version: int,
                     global_step: int, role: str, model_path: str, model_dtype: str) -> None:
    """Write this rank's part of ``contents`` (model, optimizer, extra, hf_model) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ws, rank = state.world_size, state.rank
    if "model" in contents:
        ckpt.atomic_save(fsdp_utils.local_model_state(state.module), ckpt.rank_file(folder, "model", rank, ws))
    if "optimizer" in contents:
        optim_state = {"optimizer": fsdp_utils.local_optim_state(state.optimizer)}
        if state.sft_optimizer is not None:
            optim_state["sft_optimizer"] = fsdp_utils.local_optim_state(state.sft_optimizer)
        ckpt.atomic_save(optim_state, ckpt.rank_file(folder, "optim", rank, ws))
    if "extra" in contents:
        extra = {"lr_scheduler": state.lr_scheduler.state_dict(), "rng": ckpt.get_rng_state(),
                 "actor_version": actor_version, "global_step": int(global_step)}
        ckpt.atomic_save(extra, ckpt.rank_file(folder, "extra_state", rank, ws))
    if "hf_model" in contents:
        export_hf_folder(state, folder / "huggingface", model_dtype)
    if rank == 0:
        hf_dir = folder / "huggingface"
        hf_dir.mkdir(exist_ok=True)
        state.module.config.save_pretrained(hf_dir)
        state.tokenizer.save_pretrained(hf_dir)
        ckpt.write_meta(folder, world_size=ws, global_step=int(global_step), role=role, contents=list(contents),
                        model_path=model_path)
    _barrier(ws)


def load_train_state(state: TrainState, folder: Path, contents: tuple[str, ...], *,
                     optimizer_offload: bool) -> int:
    """Restore what :func:`save_train_state` wrote; returns the checkpoint's global step.

    Raises :class:`relift.utils.checkpoint.CheckpointError` when the world size differs.
    """
    meta = ckpt.check_world_size(folder, state.world_size)
    saved = set(meta.get("contents", contents))
    ws, rank = state.world_size, state.rank
    fresh = _fresh_settings(state)
    if "model" in contents and "model" in saved:
        weights = ckpt.safe_load(ckpt.rank_file(folder, "model", rank, ws))
        fsdp_utils.load_local_model_state(state.module, weights)
    if "optimizer" in contents and "optimizer" in saved:
        optim_state = ckpt.safe_load(ckpt.rank_file(folder, "optim", rank, ws))
        fsdp_utils.load_local_optim_state(state.optimizer, optim_state["optimizer"])
        if state.sft_optimizer is not None:
            if "sft_optimizer" not in optim_state:
                logger.warning("checkpoint %s has no separate SFT optimiser state; starting it fresh", folder)
            else:
                fsdp_utils.load_local_optim_state(state.sft_optimizer, optim_state["sft_optimizer"])
        if optimizer_offload:
            fsdp_utils.move_optimizer_state(state.optimizer, "cpu")
    if "extra" in contents and "extra" in saved:
        extra = ckpt.safe_load(ckpt.rank_file(folder, "extra_state", rank, ws))
        state.lr_scheduler.load_state_dict(extra["lr_scheduler"])
        ckpt.set_rng_state(extra["rng"])
    _reapply_settings(state, fresh)
    _barrier(ws)
    return int(meta.get("global_step", 0))


def _group_settings(optimizer: torch.optim.Optimizer | None) -> list[dict[str, Any]] | None:
    if optimizer is None:
        return None
    return [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]


def _fresh_settings(state: TrainState) -> dict[str, Any]:
    """This run's optimiser and schedule settings, captured before a checkpoint overwrites them."""
    sched = state.lr_scheduler
    lambdas = getattr(sched, "lr_lambdas", None)
    return {"optim": _group_settings(state.optimizer), "sft": _group_settings(state.sft_optimizer),
            "lambdas": None if lambdas is None else [dict(getattr(fn, "__dict__", {})) for fn in lambdas]}


def _reapply_settings(state: TrainState, fresh: dict[str, Any]) -> None:
    """Put this run's settings back over the loaded ones, keeping the loaded moments and schedule position.

    ``LambdaLR.load_state_dict`` restores ``base_lrs`` and the callable schedule's fields, and
    ``Optimizer.load_state_dict`` the saved param groups (lr included): without this, a resumed run
    trains at the old lr whatever it was asked.
    """
    pairs = ((state.optimizer, fresh["optim"], True), (state.sft_optimizer, fresh["sft"], False))
    for opt, groups, rescheduled in pairs:
        if opt is None or groups is None:
            continue
        for group, settings in zip(opt.param_groups, groups):
            for key, val in settings.items():
                if key != "lr" or not rescheduled:
                    group[key] = val
    sched = state.lr_scheduler
    if sched is None or fresh["lambdas"] is None or state.optimizer is None:
        return
    for fn, settings in zip(sched.lr_lambdas, fresh["lambdas"]):
        if settings:
            fn.__dict__.update(settings)
    sched.base_lrs = [g["initial_lr"] for g in fresh["optim"]]
    lrs = [base * fn(sched.last_epoch) for base, fn in zip(sched.base_lrs, sched.lr_lambdas)]
    for group, lr in zip(state.optimizer.param_groups, lrs):
        group["lr"] = lr
    sched._last_lr = lrs


def export_hf_folder(state: TrainState, out: Path, dtype: str) -> None:
    """Write the actor as a HF folder (config, safetensors weights, tokenizer) transformers loads.

    Collective (every rank gathers its shards to rank 0); rank 0 writes.
    """
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    full = fsdp_utils.gather_full_state_dict(state.module, rank0_only=True)
    if state.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        torch_dtype = DTYPES[dtype.lower()]
        hf_config = state.module.config
        with torch.device("meta"):
            clean = AutoModelForCausalLM.from_config(hf_config, dtype=torch_dtype)
        clean.load_state_dict({k: v.to(torch_dtype) for k, v in full.items()}, strict=True, assign=True)
        clean.tie_weights()
        for name, buf in dict(state.module.named_buffers()).items():  # rotary tables etc.
            owner, _, leaf = name.rpartition(".")
            mod = clean.get_submodule(owner) if owner else clean
            if buf.device.type != "meta":
                mod._buffers[leaf] = buf.detach().cpu().clone()
        clean.config.use_cache = True
        gen_config = getattr(state.module, "generation_config", None)
        if gen_config is not None:
            clean.generation_config = gen_config
        clean.save_pretrained(out)
        state.tokenizer.save_pretrained(out)
        logger.info("exported the actor (%s) to %s", torch_dtype, out)
    del full
    _barrier(state.world_size)
