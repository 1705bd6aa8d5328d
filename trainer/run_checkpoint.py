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

Each checkpoint also holds the run spec it was written under (``run_spec.json``); a resume compares
it with this run's (:mod:`trainer.resume_check`). A save first checks the free space against the
size of the last checkpoint, and a save that fails (disk full, unwritable folder) removes its
partial ``.tmp-`` folder and stops the run with :class:`trainer.run_errors.SaveFailed` naming the
path and the space needed; the previous checkpoint stays the tracked, loadable one.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from relift.spec import SPEC_FILE
from relift.utils import checkpoint as ckpt
from relift.utils.tracking import Tracking
from trainer.resume_check import check_resume
from trainer.run_errors import RunRefused, SaveFailed

__all__ = ["resolve_resume_dir", "save_run_checkpoint", "load_run_checkpoint", "relog_missing_step",
           "check_free_space", "preflight_resume"]

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


def _gib(n: float) -> str:
    """Bytes as MiB below 1 GiB, GiB above."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_free_space(root: str | Path) -> int:
    """Raise :class:`SaveFailed` when ``root``'s file system has less room than the last checkpoint took.

    Returns the bytes needed (0 before the first checkpoint: nothing to compare against).
    """
    root = Path(root)
    last = ckpt.latest_checkpoint(root)
    need = ckpt.tree_size(last) if last is not None else 0
    if need == 0:
        return 0
    free = shutil.disk_usage(root).free
    if free < need:
        raise SaveFailed(
            f"not enough disk space to save a checkpoint in {root}: the last checkpoint ({last}) took {_gib(need)}, "
            f"the file system has {_gib(free)} free. Free at least {_gib(need - free)} there (or keep fewer "
            f"checkpoints), then rerun the same command to resume from {last}.")
    return need


def _is_disk_full(err: BaseException) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(seen) or "Disk quota exceeded" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def save_run_checkpoint(root: str | Path, global_step: int, epoch: int, actor_wg: Any, train_loader: Any,
                        step_metrics: dict[str, Any], max_to_keep: int | None = None,
                        extra: dict[str, Any] | None = None, spec: dict[str, Any] | None = None) -> Path:
    """Atomic save of the actor group's shards, the driver state and ``spec`` (the run spec as a dict)
    for ``global_step``; returns its dir. A failed save raises :class:`SaveFailed` with nothing left behind."""
    root = Path(root)
    ckpt.cleanup_staging(root)
    need = check_free_space(root)
    stage = ckpt.staging_dir(root, global_step)
    try:
        stage = ckpt.begin_checkpoint(root, global_step)
        actor_wg.save_checkpoint(str(stage / "actor"), global_step=global_step)
        ckpt.save_driver_state(stage, {
            "global_step": global_step, "epoch": epoch, "dataloader": train_loader.state_dict(),
            "rng": ckpt.get_rng_state(),
            "metrics": {k: v for k, v in step_metrics.items() if isinstance(v, (int, float))},
            **(extra or {}),
        })
        if spec is not None:
            ckpt.atomic_write_text(stage / SPEC_FILE, json.dumps(spec, indent=2, sort_keys=True) + "\n")
    except Exception as err:
        shutil.rmtree(stage, ignore_errors=True)
        if not isinstance(err, OSError) and not _is_disk_full(err):
            raise
        last = ckpt.latest_checkpoint(root)
        previous = (f"the previous checkpoint {last} is intact and a rerun of the same command resumes from it"
                    if last is not None else "there is no earlier checkpoint")
        space = (f"; the last checkpoint took {_gib(need)}, free at least that much there" if need else "")
        what = "the disk is full" if _is_disk_full(err) else f"the write failed ({err.__class__.__name__}: {err})"
        raise SaveFailed(f"could not save the checkpoint of step {global_step} in {root}: {what}{space}. "
                         f"The partial save was removed; {previous}.") from err
    path = ckpt.commit_checkpoint(root, global_step, max_to_keep=max_to_keep)
    logger.info("checkpoint for step %d committed at %s", global_step, path)
    return path


def load_run_checkpoint(mode: str, root: str | Path, resume_path: str | None, actor_wg: Any, train_loader: Any,
                        tracker: Tracking, spec: dict[str, Any] | None = None,
                        force: bool = False) -> dict[str, Any] | None:
    """Resume per ``mode``: check the checkpoint's run spec against ``spec`` when given (:func:`check_resume`;
    the trainers do it earlier with :func:`preflight_resume`), then restore the actor group, the loader,
    the RNG and the metrics log.

    Returns the driver state (``global_step`` always set, ``checkpoint_dir`` the folder) or None when
    starting fresh. Raises :class:`trainer.run_errors.RunRefused` for a checkpoint of another run.
    """
    path = resolve_resume_dir(mode, root, resume_path)
    if path is None:
        logger.info("starting from scratch (resume_mode=%s, no checkpoint used)", mode)
        return None
    step = _step_of(path)
    if spec is not None:
        check_resume(path, _saved_spec(path), spec, force=force)
    logger.info("resuming from %s (step %d)", path, step)
    try:
        actor_wg.load_checkpoint(str(path / "actor"))
        state = ckpt.load_driver_state(path)
    except Exception as err:
        refused = _unsafe_file_message(err)
        if refused is None:
            raise
        raise RunRefused(f"{refused}. To start afresh instead: trainer.resume_mode=disable or another "
                         f"trainer.default_local_dir.") from err
    state["checkpoint_dir"] = str(path)
    state["global_step"] = int(state.get("global_step", step))
    if state.get("dataloader") is not None:
        train_loader.load_state_dict(state["dataloader"])
    if state.get("rng") is not None:
        ckpt.set_rng_state(state["rng"])
    tracker.truncate_after(state["global_step"])
    relog_missing_step(tracker, state["global_step"], state.get("metrics") or {})
    return state


def _saved_spec(path: Path) -> dict[str, Any] | None:
    return json.loads((path / SPEC_FILE).read_text()) if (path / SPEC_FILE).is_file() else None


def preflight_resume(mode: str, root: str | Path, resume_path: str | None, spec: dict[str, Any], *,
                     force: bool) -> Path | None:
    """Before anything is written or loaded: the checkpoint a resume would use, checked against ``spec``
    (:func:`trainer.resume_check.check_resume` raises :class:`RunRefused` for another run's checkpoint)."""
    path = resolve_resume_dir(mode, root, resume_path)
    if path is not None:
        check_resume(path, _saved_spec(path), spec, force=force)
    return path


def _unsafe_file_message(err: BaseException) -> str | None:
    """The refusal of :func:`relift.utils.checkpoint.safe_load` in ``err`` (also when a worker group wrapped it)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ckpt.UnsafeCheckpointError):
            return str(seen)
        text = str(seen)
        if "refusing to load " in text:
            start = text.index("refusing to load ")
            return text[start:].split("\n", 1)[0]
        seen = seen.__cause__ or seen.__context__
    return None


def relog_missing_step(tracker: Tracking, step: int, metrics: dict[str, Any]) -> None:
    """A kill between the commit and the metrics line loses that line: write it from the driver state."""
    path = tracker.jsonl_path
    if path is None or not metrics or step == 0 or not path.exists():
        return
    steps = [json.loads(line).get("step") for line in path.read_text().splitlines() if line.strip()]
    if step not in steps:
        tracker.backends["jsonl"].log(metrics, step)
