"""Section checks both trainers share: world and devices, model, optimiser, FSDP, trainer, Ray.

Each ``check_*`` reads its keys through a :class:`ConfigChecker` (problems are recorded, naming
the key) and returns the typed section from :mod:`relift.spec`. A section built while problems
were recorded may hold ``None`` in place of a bad value; the builders raise :class:`PlanError`
before such a section can reach a trainer.
"""

from __future__ import annotations

from typing import Any

from relift.spec.sections import (
    CheckpointSpec,
    FSDPSpec,
    MicroBatching,
    ModelSpec,
    OptimSpec,
    RayInitSpec,
    TrainerSpec,
    WorldSpec,
    resolve_warmup,
)
from trainer.plan.checker import ConfigChecker, check_model_path

__all__ = ["world_text", "per_worker", "check_world", "check_cpu_threads", "check_devices_available", "check_trainer",
           "check_optim", "check_model", "check_fsdp", "check_checkpoint", "check_ray_init", "check_micro_batching",
           "resolve_mixed_precision", "dataset_steps"]

_DEVICES = ("auto", "cuda", "cpu")
_BACKENDS = ("auto", "ray", "inprocess")
_SCHEDULES = ("constant", "cosine", "linear")
_LOGGERS = ("console", "jsonl", "wandb", "tensorboard")
_RESUME_MODES = ("auto", "disable", "resume_path")
_MIXED_PRECISION = ("auto", "bf16", "fp16", "fp32")
_PARAM_DTYPES = ("float32", "bfloat16", "float16")
_LOAD_FORMATS = ("auto", "dummy")


def world_text(world: WorldSpec) -> str:
    """How error messages name the world size."""
    size = world.size if world.nnodes and world.n_gpus_per_node else None
    return f"world size {size} (trainer.nnodes {world.nnodes} x trainer.n_gpus_per_node {world.n_gpus_per_node})"


def per_worker(c: ConfigChecker, total: int | None, total_text: str, world: WorldSpec) -> int | None:
    """``total`` split over the workers; a problem showing the arithmetic when it does not divide."""
    W = world.size if world.nnodes and world.n_gpus_per_node else None
    if not (total and W):
        return None
    if total % W:
        c.fail(f"{total_text} must divide by {world_text(world)}: {total} / {W} = {total / W:.4g}")
        return None
    return total // W


def check_devices_available(c: ConfigChecker, rollout_name: str | None = None) -> tuple[str, bool]:
    """Resolve ``trainer.device``; returns (device, checked). With ``trainer.check_devices=false``
    the requested value is kept, so a GPU recipe can be planned on a CPU machine."""
    requested = c.choice("trainer.device", _DEVICES, what="device")
    checked = c.bool("trainer.check_devices", default=True)
    if requested is None:
        return "?", checked
    if not checked:
        return requested, False
    import torch  # noqa: PLC0415 - only when devices are checked

    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        c.fail("trainer.device=cuda but torch sees no CUDA device (torch.cuda.is_available() is False); "
               "use trainer.device=cpu or auto, or trainer.check_devices=false to only plan a GPU run")
        return "cuda", True
    device = requested if requested != "auto" else ("cuda" if has_cuda else "cpu")
    if rollout_name == "vllm":
        if device == "cpu":
            c.fail("actor_rollout_ref.rollout.name=vllm needs CUDA but this run is on cpu "
                   f"(trainer.device={requested}); use actor_rollout_ref.rollout.name=hf on CPU, or "
                   "trainer.check_devices=false to only plan a GPU run")
        else:
            import importlib.util  # noqa: PLC0415

            if importlib.util.find_spec("vllm") is None:
                c.fail("actor_rollout_ref.rollout.name=vllm but the vllm package is not installed: "
                       "pip install 'relift[vllm]', or use actor_rollout_ref.rollout.name=hf")
    return device, True


def check_world(c: ConfigChecker, rollout_name: str | None = None) -> WorldSpec:
    nnodes = c.int("trainer.nnodes", min_value=1)
    per_node = c.int("trainer.n_gpus_per_node", min_value=1)
    backend = c.choice("trainer.backend", _BACKENDS, what="backend")
    device, checked = check_devices_available(c, rollout_name)
    if backend == "inprocess" and nnodes and per_node and nnodes * per_node != 1:
        c.fail(f"trainer.backend=inprocess runs one worker, but the world size is {nnodes * per_node} "
               "(trainer.nnodes x trainer.n_gpus_per_node); use trainer.backend=ray or auto")
    return WorldSpec(nnodes=nnodes, n_gpus_per_node=per_node, device=device, devices_checked=checked,
                     backend=backend, **check_cpu_threads(c))


def check_cpu_threads(c: ConfigChecker) -> dict[str, Any]:
    """``trainer.cpu_threads``, else the driver's ``RELIFT_CPU_THREADS``, else its ``OMP_NUM_THREADS``
    (read here, on the driver: Ray sets OMP_NUM_THREADS=1 inside its workers); None = the worker's rule."""
    import os  # noqa: PLC0415

    value = c.int("trainer.cpu_threads", min_value=1, allow_none=True)
    if value is not None:
        return {"cpu_threads": value, "cpu_threads_from": "trainer.cpu_threads"}
    for var in ("RELIFT_CPU_THREADS", "OMP_NUM_THREADS"):
        text = os.environ.get(var, "").strip()
        if text:
            if not text.isdigit() or int(text) < 1:
                c.fail(f"environment variable {var}={text!r} must be a positive integer (torch threads per worker)")
                return {"cpu_threads": None, "cpu_threads_from": "auto"}
            return {"cpu_threads": int(text), "cpu_threads_from": var}
    return {"cpu_threads": None, "cpu_threads_from": "auto"}


def check_ray_init(c: ConfigChecker) -> RayInitSpec:
    return RayInitSpec(num_cpus=c.int("ray_init.num_cpus", min_value=1, allow_none=True),
                       address=c.raw("ray_init.address"),
                       include_dashboard=c.bool("ray_init.include_dashboard"))


def check_trainer(c: ConfigChecker, ckpt_keep_key: str, *, online: bool) -> TrainerSpec:
    """``trainer.*``; ``total_training_steps`` is left None for the builder to derive from the data."""
    loggers = c.str_list("trainer.logger")
    for name in loggers:
        if name not in _LOGGERS:
            c.fail(f"trainer.logger: unknown backend {name!r}; choose from {', '.join(_LOGGERS)}")
    mode = c.choice("trainer.resume_mode", _RESUME_MODES, what="resume mode")
    resume_path = c.raw("trainer.resume_from_path")
    if mode == "resume_path":
        from pathlib import Path  # noqa: PLC0415

        if resume_path is None:
            c.fail("trainer.resume_mode=resume_path needs trainer.resume_from_path (a global_step_N directory)")
        elif not Path(str(resume_path)).expanduser().is_dir():
            c.fail(f"trainer.resume_from_path: directory not found: {resume_path}")
    local_dir = c.raw("trainer.default_local_dir")
    if "jsonl" in loggers and not local_dir:
        c.fail("trainer.logger includes jsonl, which writes <trainer.default_local_dir>/metrics.jsonl, "
               "but trainer.default_local_dir is not set")
    save_freq = c.int("trainer.save_freq")
    test_freq = c.int("trainer.test_freq")
    return TrainerSpec(
        project_name=str(c.raw("trainer.project_name")), experiment_name=str(c.raw("trainer.experiment_name")),
        logger=tuple(loggers), total_epochs=c.int("trainer.total_epochs", min_value=1),
        total_training_steps=None, save_freq=save_freq if save_freq is not None else -1,
        test_freq=test_freq if test_freq is not None else -1,
        val_before_train=c.bool("trainer.val_before_train"),
        val_only=c.bool("trainer.val_only") if online else False,
        val_capability=c.bool("trainer.val_capability") if online else False,
        default_local_dir=str(local_dir) if local_dir else "", resume_mode=mode,
        resume_from_path=None if resume_path is None else str(resume_path),
        resume_force=c.bool("trainer.resume_force"),
        max_ckpt_to_keep=c.int(ckpt_keep_key, min_value=1, allow_none=True), seed=c.int("trainer.seed", min_value=0),
        balance_batch=c.bool("trainer.balance_batch") if online else False,
        export_hf=c.bool("trainer.export_hf") if not online else False, dry_run=c.bool("trainer.dry_run"),
        hang_timeout_s=c.float("trainer.hang_timeout_s", min_value=0.0),
    )


def check_optim(c: ConfigChecker, prefix: str, total_steps: int | None) -> OptimSpec:
    lr = c.float(f"{prefix}.lr", min_value=0.0)
    warmup = c.int(f"{prefix}.lr_warmup_steps", allow_none=True)
    ratio = c.float(f"{prefix}.lr_warmup_steps_ratio", min_value=0.0, max_value=1.0, allow_none=True)
    # verl's older name for the schedule key is accepted where the new one is absent
    sched_key = f"{prefix}.lr_scheduler_type" if c.has(f"{prefix}.lr_scheduler_type") else f"{prefix}.warmup_style"
    schedule = c.choice(sched_key, _SCHEDULES, what="schedule")
    min_lr = c.float(f"{prefix}.min_lr_ratio", min_value=0.0, max_value=1.0, allow_none=True)
    wd = c.float(f"{prefix}.weight_decay", min_value=0.0, allow_none=True)
    betas = c.raw(f"{prefix}.betas")
    if betas is not None and not (isinstance(betas, (list, tuple)) and len(betas) == 2
                                  and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)):
        c.fail(f"{prefix}.betas must be two numbers in [0, 1), got {betas!r}")
        betas = None
    return OptimSpec(lr=lr, weight_decay=wd if wd is not None else 0.0,
                     betas=tuple(float(b) for b in betas) if betas is not None else (0.9, 0.999),
                     lr_scheduler_type=schedule, warmup_steps=resolve_warmup(warmup, ratio, total_steps),
                     lr_warmup_steps=warmup if warmup is not None else -1, lr_warmup_steps_ratio=ratio or 0.0,
                     min_lr_ratio=min_lr or 0.0, total_training_steps=total_steps)


def check_model(c: ConfigChecker, prefix: str) -> tuple[ModelSpec, dict[str, Any] | None]:
    """The model block and the local config.json (None for a hub id) for length checks."""
    model_cfg = check_model_path(c, f"{prefix}.path")
    tok = c.raw(f"{prefix}.tokenizer_path")
    if tok is not None:
        check_model_path(c, f"{prefix}.tokenizer_path")
    override = c.raw(f"{prefix}.override_config", {})
    if override is None:
        override = {}
    if not isinstance(override, dict):
        c.fail(f"{prefix}.override_config must be a mapping, got {override!r}")
        override = {}
    path = c.raw(f"{prefix}.path")
    spec = ModelSpec(path=None if path is None else str(path), tokenizer_path=str(tok or path),
                     trust_remote_code=c.bool(f"{prefix}.trust_remote_code"),
                     enable_gradient_checkpointing=c.bool(f"{prefix}.enable_gradient_checkpointing"),
                     dtype=c.choice(f"{prefix}.dtype", _PARAM_DTYPES, what="dtype"),
                     attn_implementation=c.raw(f"{prefix}.attn_implementation"), override_config=dict(override),
                     load_format=c.choice(f"{prefix}.load_format", _LOAD_FORMATS, what="load format"),
                     use_remove_padding=c.bool(f"{prefix}.use_remove_padding"),
                     share_prompt_prefix=c.bool(f"{prefix}.share_prompt_prefix"),
                     lean_activations=c.bool(f"{prefix}.lean_activations"),
                     lean_forward=c.bool(f"{prefix}.lean_forward"))
    return spec, model_cfg


def check_fsdp(c: ConfigChecker, prefix: str, world: WorldSpec, *, trainable: bool = True) -> FSDPSpec:
    """FSDP2 options; a reference policy has no optimiser (``trainable=False``) and no mixed-precision key."""
    fsdp_size = c.int(f"{prefix}.fsdp_size", allow_none=True, default=-1)
    if fsdp_size is not None and fsdp_size != -1 and world.nnodes and world.n_gpus_per_node \
            and fsdp_size != world.size:
        # the workers shard every model over all ranks (no hybrid sharding / replication groups yet)
        c.fail(f"{prefix}.fsdp_size ({fsdp_size}) must be -1 or the {world_text(world)}: "
               "sharding over a subset of the workers is not supported")
    return FSDPSpec(
        param_offload=c.bool(f"{prefix}.param_offload"),
        optimizer_offload=c.bool(f"{prefix}.optimizer_offload") if trainable else False,
        mixed_precision=c.choice(f"{prefix}.mixed_precision", _MIXED_PRECISION, default="auto",
                                 what="mixed precision"),
        reshard_after_forward=c.bool(f"{prefix}.reshard_after_forward", default=True),
        init_on_rank0=c.bool(f"{prefix}.init_on_rank0", default=True),
    )


def check_checkpoint(c: ConfigChecker, prefix: str) -> CheckpointSpec:
    allowed = ("model", "optimizer", "extra", "hf_model")
    out = []
    for key in ("save_contents", "load_contents"):
        values = c.str_list(f"{prefix}.{key}") if c.has(f"{prefix}.{key}") else ["model", "optimizer", "extra"]
        for v in values:
            if v not in allowed:
                c.fail(f"{prefix}.{key}: unknown item {v!r}; choose from {', '.join(allowed)}")
        out.append(tuple(values))
    return CheckpointSpec(save_contents=out[0], load_contents=out[1])


def check_micro_batching(c: ConfigChecker, dyn_key: str, micro_key: str, budget_key: str,
                         longest: int | None, longest_text: str) -> MicroBatching:
    """A fixed micro-batch size or (``dyn_key``) a token budget that fits the longest sequence."""
    dyn = c.bool(dyn_key)
    micro = c.int(micro_key, min_value=1, allow_none=dyn)
    budget = c.int(budget_key, min_value=1, allow_none=not dyn)
    if dyn and budget is not None and longest is not None and budget < longest:
        c.fail(f"{budget_key} ({budget}) must be >= {longest_text} = {longest}, the longest sequence")
    return MicroBatching(use_dynamic_bsz=dyn, micro_batch_size_per_gpu=micro,
                         max_token_len_per_gpu=budget if budget is not None else 0)


def resolve_mixed_precision(mp: str | None, device: str) -> str:
    if mp != "auto":
        return str(mp)
    if device == "cuda":
        return "bf16"
    if device == "cpu":
        return "fp32"
    return "auto (bf16 on cuda, fp32 on cpu)"


def dataset_steps(c: ConfigChecker, dataset_len: int | None, batch: int | None, batch_key: str,
                  epochs: int | None, total: int | None, files_key: str) -> tuple[int | None, int | None]:
    """(steps per epoch, total training steps); a partial last batch is dropped."""
    steps_per_epoch = None
    if dataset_len is not None and batch:
        if dataset_len < 0:
            raise ValueError(f"dataset_len must be >= 0, got {dataset_len}")
        steps_per_epoch = dataset_len // batch
        if steps_per_epoch == 0:
            c.fail(f"{files_key} has {dataset_len} rows, fewer than {batch_key} ({batch}): "
                   f"{dataset_len} // {batch} = 0 full steps per epoch (a partial last batch is dropped)")
    if total is not None:
        return steps_per_epoch, total
    if steps_per_epoch and epochs:
        return steps_per_epoch, steps_per_epoch * epochs
    return steps_per_epoch, None
