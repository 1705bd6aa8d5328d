"""A trainer run's checkpoint: the policy workers' shards plus the driver's state, saved atomically.

Both trainers (RL and offline) checkpoint the same way:

* save: clear stale staging, ``begin_checkpoint``, the actor group writes its shards into
  ``<stage>/actor``, the driver writes ``driver_state.pt`` (global step, epoch, the data loader's
  ``state_dict``, the driver's RNG, that step's numeric metrics, and whatever the trainer adds), then
  ``commit_checkpoint`` renames the stage into place and rotates old ones;
* resume: ``trainer.resume_mode`` picks the directory (:func:`resolve_resume_dir`), the actor group
  loads its shards, the loader and RNG come back, the metrics.jsonl lines after the resumed step are
  cut (they will be logged again) and the resumed step's own line is rewritten from the driver state
  when a kill landed between the commit and that line.

What only one trainer has (the RL trainer's KL controller and hook state) travels in ``extra`` on save
and comes back in the returned state on resume.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from relift.utils import checkpoint as ckpt
from relift.utils.tracking import Tracking

__all__ = ["resolve_resume_dir", "save_run_checkpoint", "load_run_checkpoint", "relog_missing_step"]

logger = logging.getLogger(__name__)


def resolve_resume_dir(mode: str, root: str | Path, resume_path: str | None) -> Path | None:
    """The checkpoint dir to resume from (``global_step_N``), or None to start fresh."""
    if mode == "disable":
        return None
    if mode == "auto":
        return ckpt.latest_checkpoint(root)
    if mode == "resume_path":
        if not resume_path:
            raise ValueError("trainer.resume_mode=resume_path needs trainer.resume_from_path=<.../global_step_N>")
        path = Path(resume_path).expanduser()
        if not (path / "actor").is_dir():
            raise ckpt.CheckpointError(f"trainer.resume_from_path={resume_path}: no actor/ checkpoint in it "
                                       "(expected a committed global_step_N directory)")
        return path
    raise ValueError(f"trainer.resume_mode={mode!r}; expected auto, disable or resume_path")


def _step_of(path: Path) -> int:
    name = path.name
    if name.startswith("global_step_"):
        try:
            return int(name[len("global_step_"):])
        except ValueError:
            pass
    return int(ckpt.read_meta(path / "actor").get("global_step", 0))


def save_run_checkpoint(root: str | Path, global_step: int, epoch: int, actor_wg: Any, train_loader: Any,
                        step_metrics: dict[str, Any], max_to_keep: int | None = None,
                        extra: dict[str, Any] | None = None) -> Path:
    """Atomic save of the actor group's shards and the driver state for ``global_step``; returns its dir."""
    root = Path(root)
    ckpt.cleanup_staging(root)
    stage = ckpt.begin_checkpoint(root, global_step)
    actor_wg.save_checkpoint(str(stage / "actor"), global_step=global_step)
    ckpt.save_driver_state(stage, {
        "global_step": global_step, "epoch": epoch, "dataloader": train_loader.state_dict(),
        "rng": ckpt.get_rng_state(),
        "metrics": {k: v for k, v in step_metrics.items() if isinstance(v, (int, float))},
        **(extra or {}),
    })
    path = ckpt.commit_checkpoint(root, global_step, max_to_keep=max_to_keep)
    logger.info("checkpoint for step %d committed at %s", global_step, path)
    return path


def load_run_checkpoint(mode: str, root: str | Path, resume_path: str | None, actor_wg: Any, train_loader: Any,
                        tracker: Tracking) -> dict[str, Any] | None:
    """Resume per ``mode``: restore the actor group, the loader, the RNG and the metrics log.

    Returns the driver state (``global_step`` always set) or None when starting fresh.
    """
    path = resolve_resume_dir(mode, root, resume_path)
    if path is None:
        logger.info("starting from scratch (resume_mode=%s, no checkpoint used)", mode)
        return None
    step = _step_of(path)
    logger.info("resuming from %s (step %d)", path, step)
    actor_wg.load_checkpoint(str(path / "actor"))
    state = ckpt.load_driver_state(path)
    state["global_step"] = int(state.get("global_step", step))
    if state.get("dataloader") is not None:
        train_loader.load_state_dict(state["dataloader"])
    if state.get("rng") is not None:
        ckpt.set_rng_state(state["rng"])
    tracker.truncate_after(state["global_step"])
    relog_missing_step(tracker, state["global_step"], state.get("metrics") or {})
    return state


def relog_missing_step(tracker: Tracking, step: int, metrics: dict[str, Any]) -> None:
    """A kill between the commit and the metrics line loses that line: write it from the driver state."""
    path = tracker.jsonl_path
    if path is None or not metrics or step == 0 or not path.exists():
        return
    steps = [json.loads(line).get("step") for line in path.read_text().splitlines() if line.strip()]
    if step not in steps:
        tracker.backends["jsonl"].log(metrics, step)
