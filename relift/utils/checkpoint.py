"""Atomic checkpoint IO: staging directories, the tracker file, rotation, RNG and driver state.

Layout under a checkpoint root (``trainer.default_local_dir``)::

    <root>/latest_checkpointed_iteration.txt      the step of the newest complete checkpoint
    <root>/global_step_N/actor/...                per-rank model / optimiser / extra-state files
    <root>/global_step_N/driver_state.pt          sampler position, step, KL controller, buffers
    <root>/.tmp-global_step_N/                    a save in progress (never read; removed on retry)

A save is atomic at the level of the whole step directory::

    stage = begin_checkpoint(root, step)            # fresh <root>/.tmp-global_step_N
    actor_wg.save_checkpoint(str(stage / "actor"), global_step=step)   # every rank writes its files
    save_driver_state(stage, {"sampler": ..., "step": step})
    commit_checkpoint(root, step, max_to_keep=k)    # rename into place, then the tracker, then rotate

A process killed anywhere before the rename leaves only a ``.tmp-`` directory behind, and one
killed before the tracker write leaves the tracker on the previous step: readers trust the tracker,
so they always see a complete checkpoint. Single files are written with :func:`atomic_save`
(temporary file, fsync, ``os.replace``) and get the mode the user's umask gives a new file (0644
under umask 022), not ``mkstemp``'s 0600, so colleagues can read a shared run (issue 13).

Loading never runs code from the file: :func:`safe_load` is ``torch.load(weights_only=True)``
(tensors, numbers, strings, lists, tuples, dicts only), and a file that needs more is refused with
:class:`UnsafeCheckpointError` naming it. A doctored checkpoint used to run a shell command on resume
(issue 19); see https://pytorch.org/docs/stable/notes/serialization.html#weights-only .
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from relift.utils.seed import get_rng_state, set_rng_state  # re-exported: checkpoints carry RNG

__all__ = [
    "TRACKER_FILE", "DRIVER_STATE_FILE", "step_dir", "staging_dir", "atomic_save", "atomic_write_text",
    "begin_checkpoint", "commit_checkpoint", "read_tracker", "write_tracker", "list_checkpoints",
    "latest_checkpoint", "rotate_checkpoints", "cleanup_staging", "save_driver_state", "load_driver_state",
    "get_rng_state", "set_rng_state", "write_meta", "read_meta", "check_world_size", "rank_file",
    "CheckpointError", "UnsafeCheckpointError", "safe_load", "current_umask", "tree_size",
]

logger = logging.getLogger(__name__)

TRACKER_FILE = "latest_checkpointed_iteration.txt"
DRIVER_STATE_FILE = "driver_state.pt"
META_FILE = "meta.json"
_STEP_RE = re.compile(r"^global_step_(\d+)$")
_STAGING_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used as asked (missing, partial, other world size)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file that would need arbitrary code to load (pickled objects beyond plain data)."""


def safe_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a file that needs more is refused, naming it."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain data, and loading those "
            f"runs code from the file. Only load checkpoints you trust; this one was not written by relift "
            f"or was modified ({str(err).splitlines()[0]})") from None


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def tree_size(path: str | Path) -> int:
    """Bytes in the files under ``path`` (0 when it does not exist)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


# ---------------------------------------------------------------------------- paths
def step_dir(root: str | Path, step: int) -> Path:
    """``<root>/global_step_<step>``."""
    return Path(root) / f"global_step_{int(step)}"


def staging_dir(root: str | Path, step: int) -> Path:
    """Where a save of ``step`` is written before it is renamed into place."""
    return Path(root) / f"{_STAGING_PREFIX}global_step_{int(step)}"


def rank_file(folder: str | Path, kind: str, rank: int, world_size: int) -> Path:
    """verl's per-rank file name: ``<kind>_world_size_<W>_rank_<r>.pt``."""
    return Path(folder) / f"{kind}_world_size_{world_size}_rank_{rank}.pt"


# ---------------------------------------------------------------------------- atomic single files
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str | Path, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a plain open() would follow the umask
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace``."""
    return _atomic_write(path, lambda f: torch.save(obj, f), "wb")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a small text file atomically."""
    return _atomic_write(path, lambda f: f.write(text), "w")


# ---------------------------------------------------------------------------- tracker
def read_tracker(root: str | Path) -> int | None:
    """The step in ``latest_checkpointed_iteration.txt`` or None when there is none."""
    path = Path(root) / TRACKER_FILE
    if not path.is_file():
        return None
    text = path.read_text().strip()
    try:
        return int(text)
    except ValueError as err:
        raise CheckpointError(f"{path} holds {text!r}, not a step number; fix or delete it") from err


def write_tracker(root: str | Path, step: int) -> Path:
    """Atomically point the tracker at ``step``."""
    return atomic_write_text(Path(root) / TRACKER_FILE, f"{int(step)}\n")


# ---------------------------------------------------------------------------- save protocol
def begin_checkpoint(root: str | Path, step: int) -> Path:
    """Create a fresh, empty staging directory for ``step`` (a stale one from a killed save is removed)."""
    stage = staging_dir(root, step)
    if stage.exists():
        logger.warning("removing the partial checkpoint %s left by an interrupted save", stage)
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage


def _recover_replaced(root: Path) -> None:
    """Finish a commit that was killed between moving the old step dir away and renaming the new one."""
    for old in root.glob(f"{_OLD_PREFIX}global_step_*"):
        final = root / old.name[len(_OLD_PREFIX):]
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            logger.warning("restoring %s from an interrupted re-save", final)
            os.replace(old, final)


def commit_checkpoint(root: str | Path, step: int, max_to_keep: int | None = None) -> Path:
    """Rename the staging dir of ``step`` into place, write the tracker, then rotate old steps."""
    root = Path(root)
    stage = staging_dir(root, step)
    if not stage.is_dir():
        raise CheckpointError(f"no staging directory {stage}; call begin_checkpoint({str(root)!r}, {step}) "
                              "and write the checkpoint into it first")
    _fsync_dir(stage)
    final = step_dir(root, step)
    _recover_replaced(root)
    if final.exists():  # re-saving a step (e.g. after a resume): keep the old one until the new is in place
        old = root / f"{_OLD_PREFIX}{final.name}"
        os.replace(final, old)
        os.replace(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, final)
    _fsync_dir(root)
    write_tracker(root, step)
    if max_to_keep is not None and max_to_keep > 0:
        rotate_checkpoints(root, max_to_keep)
    logger.info("checkpoint committed: %s", final)
    return final


def list_checkpoints(root: str | Path) -> list[int]:
    """Steps of the committed ``global_step_N`` directories, ascending."""
    root = Path(root)
    if not root.is_dir():
        return []
    steps = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir():
            steps.append(int(m.group(1)))
    return sorted(steps)


def rotate_checkpoints(root: str | Path, max_to_keep: int) -> list[int]:
    """Delete all but the newest ``max_to_keep`` steps (never the tracker's step); returns deleted steps."""
    if max_to_keep <= 0:
        return []
    root = Path(root)
    tracked = read_tracker(root)
    steps = list_checkpoints(root)
    keep = set(steps[-max_to_keep:])
    if tracked is not None:
        keep.add(tracked)
    removed = []
    for s in steps:
        if s not in keep:
            shutil.rmtree(step_dir(root, s), ignore_errors=True)
            removed.append(s)
    if removed:
        logger.info("removed old checkpoints %s (max_to_keep=%d)", removed, max_to_keep)
    return removed


def cleanup_staging(root: str | Path) -> list[Path]:
    """Remove leftover ``.tmp-`` directories (interrupted saves); call from the driver before saving."""
    root = Path(root)
    if not root.is_dir():
        return []
    _recover_replaced(root)
    removed = []
    for p in root.glob(f"{_STAGING_PREFIX}global_step_*"):
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def latest_checkpoint(root: str | Path) -> Path | None:
    """The directory the tracker points to, or None when the root holds no committed checkpoint."""
    root = Path(root)
    if root.is_dir():
        _recover_replaced(root)
    step = read_tracker(root)
    if step is None:
        return None
    path = step_dir(root, step)
    if not path.is_dir():
        raise CheckpointError(f"{root / TRACKER_FILE} says step {step} but {path} does not exist; "
                              f"the checkpoints present are {list_checkpoints(root)}")
    return path


# ---------------------------------------------------------------------------- driver state
def save_driver_state(ckpt_dir: str | Path, state: dict[str, Any]) -> Path:
    """Driver-side state (sampler, step, KL controller, ReLIFT buffer) into the (staging) step dir."""
    if not isinstance(state, dict):
        raise TypeError(f"driver state must be a dict, got {type(state).__name__}")
    return atomic_save(state, Path(ckpt_dir) / DRIVER_STATE_FILE)


def load_driver_state(ckpt_dir: str | Path) -> dict[str, Any]:
    """The dict that :func:`save_driver_state` wrote; an empty dict when the step has none.

    Loaded with :func:`safe_load`: driver state is plain data (ints, floats, strings, lists, dicts,
    tensors; the RNG capture of :mod:`relift.utils.seed` holds no numpy objects).
    """
    path = Path(ckpt_dir) / DRIVER_STATE_FILE
    if not path.is_file():
        return {}
    state = safe_load(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not the dict save_driver_state writes")
    return state


# ---------------------------------------------------------------------------- sharded-save metadata
def write_meta(folder: str | Path, **meta: Any) -> Path:
    """``meta.json`` beside the per-rank files: world size, step, time, whatever else helps loading."""
    meta.setdefault("saved_at", time.strftime("%Y-%m-%d %H:%M:%S"))
    return atomic_write_text(Path(folder) / META_FILE, json.dumps(meta, indent=2, sort_keys=True, default=str))


def read_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {folder} is not a complete sharded checkpoint")
    return json.loads(path.read_text())


def check_world_size(folder: str | Path, world_size: int) -> dict[str, Any]:
    """Raise a clear error when the checkpoint was written by a different number of ranks."""
    meta = read_meta(folder)
    saved = int(meta.get("world_size", -1))
    if saved != world_size:
        raise CheckpointError(
            f"checkpoint {folder} was saved with world size {saved} but this run has world size {world_size}. "
            f"Per-rank shards cannot be loaded by a different number of ranks: resume with "
            f"trainer.nnodes * trainer.n_gpus_per_node = {saved}, or start a new run from the exported model "
            f"(actor/huggingface, written by export_hf) via actor_rollout_ref.model.path and "
            f"trainer.resume_mode=disable.")
    return meta
