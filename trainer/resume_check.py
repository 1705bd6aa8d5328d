"""Resume only the run a checkpoint belongs to, and say what changed.

Every checkpoint carries the run spec it was written under (``global_step_N/run_spec.json``,
:func:`relift.spec.spec_to_dict`). Before a resume loads anything, :func:`check_resume` compares it
with this run's spec, setting by setting (flattened to dotted names such as ``actor.optim.lr``):

* settings that can change safely mid-run (learning rate and its schedule, total steps or epochs,
  save / test frequency, loggers, validation settings, micro-batch sizes, offload and other memory
  or speed knobs, worker counts: a different world size is refused separately by the shard loader)
  take effect and are listed in one notice;
* everything else (model, training data, batch plan, algorithm, losses, sampling, seeds) describes
  another run: the resume stops with both values and the ways forward, unless
  ``trainer.resume_force=true``;
* a setting only one side has (a newer or older relift) is listed in the notice, never refused.

Why: with ``resume_mode=auto`` and a shared default directory, a second run used to continue an
unrelated checkpoint without a word (issue 13), and a changed lr was printed but not used (issue 19).
"""

from __future__ import annotations

import fnmatch
import json
import logging
from pathlib import Path
from typing import Any

from trainer.run_errors import RunRefused

__all__ = ["SAFE_ON_RESUME", "flatten", "spec_changes", "check_resume", "already_complete_message"]

logger = logging.getLogger(__name__)

# fnmatch patterns over the flattened spec; anything not matched must be equal to resume
SAFE_ON_RESUME: tuple[str, ...] = (
    "warnings",
    "world.*",
    "ray_init.*",
    "trainer.project_name",
    "trainer.experiment_name",
    "trainer.logger",
    "trainer.total_epochs",
    "trainer.total_training_steps",
    "trainer.save_freq",
    "trainer.test_freq",
    "trainer.val_*",
    "trainer.default_local_dir",
    "trainer.resume_*",
    "trainer.max_ckpt_to_keep",
    "trainer.export_hf",
    "trainer.dry_run",
    "trainer.balance_batch",
    "trainer.hang_timeout_s",
    "actor.optim.*",
    "relift.lr",
    "data.val_files",
    "data.val_batch_size",
    "data.dataloader_num_workers",
    "rollout.val_sampling.*",
    "rollout.gpu_memory_utilization",
    "rollout.enforce_eager",
    "rollout.free_cache_engine",
    "rollout.max_num_batched_tokens",
    "rollout.micro_batch_size",
    "rollout.weight_sync_bucket_mb",
    "rollout.tensor_model_parallel_size",
    "actor.train_micro.*",
    "actor.log_prob_micro.*",
    "ref.log_prob_micro.*",
    "relift.micro.*",
    "actor.sequences_per_mini_batch_per_worker",
    "actor.logits_chunk_size",
    "actor.fsdp.*",
    "ref.fsdp.*",
    "actor.checkpoint.*",
    "model.enable_gradient_checkpointing",
    "model.attn_implementation",
    "reward.num_workers",
    "reward.timeout",
    "reward.max_error_*",
    "batch.sequences_per_worker",
    "batch.micro_batches_per_mini_batch",
    "batch.rollout_replicas",
    "batch.relift_sft_micro_batches",
    "batch.examples_per_worker",
    "batch.micro_batches_per_step",
    "batch.sequences_per_forward",
)

# counted from the data when the plan can read it (None for remote files): unknown on one side is no change
_NONE_IS_UNKNOWN = ("batch.dataset_rows", "batch.steps_per_epoch")

_MISSING = object()


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, val in tree.items():
        name = f"{prefix}{key}"
        if isinstance(val, dict):
            out.update(flatten(val, name + "."))
        else:
            out[name] = val
    return out


def _safe(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pat) for pat in SAFE_ON_RESUME)


def spec_changes(
    saved: dict[str, Any], new: dict[str, Any]
) -> tuple[list[tuple[str, Any, Any]], list[tuple[str, Any, Any]]]:
    """``(safe, unsafe)`` lists of ``(key, saved value, new value)``; a key one side lacks is safe."""
    a, b = flatten(saved), flatten(new)
    safe, unsafe = [], []
    for key in sorted(set(a) | set(b)):
        old, now = a.get(key, _MISSING), b.get(key, _MISSING)
        if old == now:
            continue
        row = (key, old, now)
        unknown = key in _NONE_IS_UNKNOWN and (old is None or now is None)
        if old is _MISSING or now is _MISSING or unknown or _safe(key):
            safe.append(row)
        else:
            unsafe.append(row)
    return safe, unsafe


def _show(val: Any) -> str:
    return "(not recorded)" if val is _MISSING else json.dumps(val)


def check_resume(
    ckpt_dir: str | Path, saved: dict[str, Any] | None, new: dict[str, Any] | None, *, force: bool
) -> list[tuple[str, Any, Any]]:
    """Refuse (:class:`RunRefused`) a checkpoint of another run; log and return the safe changes."""
    if saved is None or new is None:
        logger.warning(
            "checkpoint %s holds no run_spec.json (written by an older relift): cannot check that it "
            "belongs to this run; resuming as asked",
            ckpt_dir,
        )
        return []
    if saved.get("__spec__") != new.get("__spec__"):
        if not force:
            raise RunRefused(
                f"checkpoint {ckpt_dir} was written by a {saved.get('__spec__')} run, this is a {new.get('__spec__')} "
                f"run. {_ways_forward()}"
            )
        logger.warning(
            "trainer.resume_force=true: resuming a %s checkpoint in a %s run",
            saved.get("__spec__"),
            new.get("__spec__"),
        )
    safe, unsafe = spec_changes(saved, new)
    if unsafe:
        lines = "\n".join(f"  {k}: checkpoint {_show(o)}  ->  now {_show(n)}" for k, o, n in unsafe)
        if not force:
            raise RunRefused(
                f"checkpoint {ckpt_dir} belongs to a different run; these settings differ and cannot change on "
                f"resume:\n{lines}\n{_ways_forward()}"
            )
        logger.warning("trainer.resume_force=true: resuming %s although these settings differ:\n%s", ckpt_dir, lines)
    if safe:
        lines = "\n".join(f"  {k}: {_show(o)} -> {_show(n)}" for k, o, n in safe)
        logger.warning(
            "resuming %s with these settings changed (they take effect from the next step):\n%s", ckpt_dir, lines
        )
    return safe


def _ways_forward() -> str:
    return (
        "Ways forward: give this run its own directory (trainer.default_local_dir=... or another "
        "trainer.experiment_name); or start from scratch in this directory with trainer.resume_mode=disable "
        "(older checkpoints there are overwritten step by step); or, if the change is intended, "
        "trainer.resume_force=true."
    )


def already_complete_message(ckpt_dir: str | Path | None, step: int, total: int) -> str:
    """What to print when the resumed checkpoint is already at (or past) the last step."""
    where = f"checkpoint {ckpt_dir}" if ckpt_dir else "the checkpoint"
    return (
        f"nothing to train: this run is already complete ({where} is at step {step} of {total}). "
        f"To train further raise trainer.total_training_steps or trainer.total_epochs; to start over use "
        f"another trainer.experiment_name or trainer.resume_mode=disable."
    )
