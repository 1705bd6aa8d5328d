"""Experiment tracking: one ``log(metrics, step)`` call fans out to the configured backends.

Backends (``trainer.logger``):

* ``console``: one compact line per step with the metrics a person watches (reward mean, reward
  errors and timeouts, accuracy, policy loss, grad norm, entropy, response length, step time); which
  ones is configurable.  Lines go through ``tqdm.write`` and, while the backend is open, console
  log handlers through ``tqdm.contrib.logging.logging_redirect_tqdm``, so neither tears the
  progress bar.
* ``jsonl``: one JSON object per step, ``{"step": N, ...metrics}``, appended to
  ``<local_dir>/metrics.jsonl``; every line is flushed and fsync'd so a SIGKILL loses at most the
  line being written. A torn last line is dropped when the file is reopened, and on resume
  :meth:`Tracking.truncate_after` removes the lines of steps the resumed run will redo. Every line
  carries ``"run_id"``: new for each run that starts from scratch, kept by a resumed run (taken
  from the last kept line), so a reader can pick one run out of a file that reruns appended to.
* ``wandb``: imported lazily (``pip install 'relift[wandb]'``); ``WANDB_MODE=offline`` works.
* ``tensorboard``: ``torch.utils.tensorboard`` (or ``tensorboardX``), imported lazily
  (``pip install 'relift[tensorboard]'``); event files under ``$TENSORBOARD_DIR`` or
  ``<local_dir>/tensorboard``.

Numeric backends (console, wandb, tensorboard) skip values that are not numbers. Call ``log``
once per step with all of that step's metrics: the JSONL file then holds one line per step.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

__all__ = ["SUPPORTED_BACKENDS", "DEFAULT_CONSOLE_KEYS", "Tracking", "JsonlLogger", "ConsoleLogger",
           "to_number", "numeric_metrics"]

logger = logging.getLogger(__name__)

SUPPORTED_BACKENDS = ("console", "jsonl", "wandb", "tensorboard")
METRICS_FILENAME = "metrics.jsonl"

# label -> metric names to try in order (the first one present is shown)
DEFAULT_CONSOLE_KEYS: dict[str, tuple[str, ...]] = {
    "reward": ("critic/score/mean",),
    "reward_err": ("reward/errors",),
    "reward_timeout": ("reward/timeouts",),
    "acc": ("critic/acc/mean", "batch/acc", "acc"),
    "pg_loss": ("actor/pg_loss",),
    "grad_norm": ("actor/grad_norm",),
    "entropy": ("actor/entropy",),
    "resp_len": ("response_length/mean",),
    "step_s": ("timing_s/step",),
}


def to_number(value: Any) -> float | int | None:
    """A python int/float for numbers (bools, numpy scalars, 0-d or 1-element tensors); else None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    # numpy scalars / 0-d arrays and torch tensors, without importing either here
    item = getattr(value, "item", None)
    size = getattr(value, "size", None)
    numel = getattr(value, "numel", None)
    try:
        n = numel() if callable(numel) else (size if isinstance(size, int) else None)
    except Exception:  # noqa: BLE001
        n = None
    if callable(item) and n == 1:
        try:
            return to_number(item())
        except Exception:  # noqa: BLE001 - e.g. a non-numeric numpy object scalar
            return None
    return None


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float | int]:
    """The subset of ``metrics`` that are numbers, converted to python scalars."""
    out: dict[str, float | int] = {}
    for k, v in metrics.items():
        num = to_number(v)
        if num is not None:
            out[str(k)] = num
    return out


def _json_value(value: Any) -> Any:
    """A JSON-safe value or ``_SKIP``: numbers (non-finite -> null), strings, lists of those."""
    num = to_number(value)
    if num is not None:
        return num if not (isinstance(num, float) and not math.isfinite(num)) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        items = [_json_value(v) for v in value]
        return _SKIP if any(i is _SKIP for i in items) else items
    return _SKIP


_SKIP = object()


def new_run_id() -> str:
    """A sortable, unique id for one run: UTC start time plus a random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


class JsonlLogger:
    """Appends ``{"step": N, "run_id": ..., ...}`` lines to ``<local_dir>/metrics.jsonl``, durably."""

    def __init__(self, local_dir: str | os.PathLike) -> None:
        self.run_id = new_run_id()
        self.path = Path(local_dir).expanduser() / METRICS_FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run

    def _drop_torn_tail(self) -> None:
        """A SIGKILL mid-write can leave a last line without its newline: cut it off."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1  # 0 when the only line is torn
            logger.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run",
                           self.path, len(data) - cut)
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        record: dict[str, Any] = {"step": int(step), "run_id": self.run_id}
        for k, v in metrics.items():
            if k in ("step", "run_id"):
                continue
            val = _json_value(v)
            if val is not _SKIP:
                record[str(k)] = val
        self._fh.write(json.dumps(record, allow_nan=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def truncate_after(self, step: int) -> int:
        """Keep only lines with ``step <= step`` (and parseable ones); returns how many were dropped.

        Rewrites the file through a temporary file and an atomic rename, so a crash during the
        rewrite leaves either the old or the new file, never a mix.
        """
        self._fh.close()
        kept: list[str] = []
        dropped = 0
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec_step = json.loads(line)["step"]
                except (ValueError, KeyError, TypeError):
                    dropped += 1
                    continue
                if isinstance(rec_step, (int, float)) and rec_step <= step:
                    kept.append(line)
                    self.run_id = json.loads(line).get("run_id", self.run_id)  # a resume continues its run
                else:
                    dropped += 1
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in kept))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        if dropped:
            logger.info("%s: dropped %d line(s) after step %d (resume)", self.path, dropped, step)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        return dropped

    def finish(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class ConsoleLogger:
    """One compact line per step: ``step 3 | score 0.5 | acc 0.5 | pg_loss -0.01 | ...``.

    ``keys`` maps a label to a metric name or to a list of names (the first present is shown);
    labels whose metrics are absent are left out. Validation means (``val-core/<source>/.../mean@n``)
    are appended when present.
    """

    def __init__(self, keys: Mapping[str, str | Sequence[str]] | None = None, stream: TextIO | None = None) -> None:
        from tqdm.contrib.logging import logging_redirect_tqdm  # noqa: PLC0415

        keys = DEFAULT_CONSOLE_KEYS if keys is None else keys
        self.keys = {label: (names,) if isinstance(names, str) else tuple(names) for label, names in keys.items()}
        self.stream = stream
        # from the start of the run to finish(), records of console log handlers (reward failures...)
        # are written above the progress bar instead of into it
        self._redirect: Any = logging_redirect_tqdm()
        self._redirect.__enter__()

    def format(self, metrics: Mapping[str, Any], step: int) -> str:
        nums = numeric_metrics(metrics)
        parts = [f"step {int(step)}"]
        for label, names in self.keys.items():
            for name in names:
                if name in nums:
                    parts.append(f"{label} {_fmt(nums[name])}")
                    break
        for name, val in nums.items():
            if name.startswith("val-core/") and "/mean@" in name:
                parts.append(f"{name[len('val-core/'):]} {_fmt(val)}")
        return " | ".join(parts)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        from tqdm import tqdm  # noqa: PLC0415

        stream = self.stream if self.stream is not None else sys.stdout
        tqdm.write(self.format(metrics, step), file=stream)  # clears the bar, prints, redraws it
        stream.flush()

    def finish(self) -> None:
        if self._redirect is not None:
            redirect, self._redirect = self._redirect, None
            redirect.__exit__(None, None, None)


def _fmt(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


class _WandbLogger:
    def __init__(self, project_name: str, experiment_name: str, config: Any, local_dir: str | None) -> None:
        try:
            import wandb  # noqa: PLC0415 - optional extra
        except ImportError as e:
            raise ImportError("trainer.logger includes 'wandb' but the wandb package is not installed: "
                              "pip install 'relift[wandb]' (or drop wandb from trainer.logger)") from e
        kwargs: dict[str, Any] = {"project": project_name, "name": experiment_name, "config": config}
        if local_dir is not None:
            Path(local_dir).expanduser().mkdir(parents=True, exist_ok=True)
            kwargs["dir"] = str(Path(local_dir).expanduser())
        self._wandb = wandb
        self._run = wandb.init(**kwargs)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        self._run.log(numeric_metrics(metrics), step=int(step))

    def finish(self) -> None:
        self._run.finish()


class _TensorboardLogger:
    def __init__(self, experiment_name: str, local_dir: str | None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - optional extra
        except ImportError:
            try:
                from tensorboardX import SummaryWriter  # noqa: PLC0415
            except ImportError as e:
                raise ImportError("trainer.logger includes 'tensorboard' but neither tensorboard nor tensorboardX "
                                  "is installed: pip install 'relift[tensorboard]' "
                                  "(or drop tensorboard from trainer.logger)") from e
        log_dir = os.environ.get("TENSORBOARD_DIR")
        if log_dir is None:
            base = Path(local_dir).expanduser() if local_dir is not None else Path("tensorboard_log")
            log_dir = str(base / "tensorboard" / experiment_name)
        self._writer = SummaryWriter(log_dir=log_dir)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        for k, v in numeric_metrics(metrics).items():
            self._writer.add_scalar(k, v, int(step))
        self._writer.flush()

    def finish(self) -> None:
        self._writer.close()


def _plain_config(config: Any) -> Any:
    """An OmegaConf config as plain containers (wandb wants dicts); anything else unchanged."""
    if config is None:
        return None
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf  # noqa: PLC0415
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        return config
    if isinstance(config, (DictConfig, ListConfig)):
        return OmegaConf.to_container(config, resolve=True)
    return config


class Tracking:
    """Fan-out logger over the backends named in ``backends`` (``trainer.logger``).

    ``local_dir`` (``trainer.default_local_dir``) is required by ``jsonl`` and is where wandb and
    tensorboard put their files. ``console_keys`` overrides :data:`DEFAULT_CONSOLE_KEYS`.
    """

    def __init__(self, project_name: str, experiment_name: str, backends: str | Iterable[str] = "console",
                 config: Any = None, local_dir: str | os.PathLike | None = None,
                 console_keys: Mapping[str, str | Sequence[str]] | None = None,
                 console_stream: TextIO | None = None) -> None:
        names = [backends] if isinstance(backends, str) else [str(b) for b in (backends or [])]
        unknown = [b for b in names if b not in SUPPORTED_BACKENDS]
        if unknown:
            raise ValueError(f"unknown logger backend(s) {unknown} in trainer.logger; "
                             f"supported: {', '.join(SUPPORTED_BACKENDS)}")
        if "jsonl" in names and local_dir is None:
            raise ValueError("the jsonl logger writes <trainer.default_local_dir>/metrics.jsonl: "
                             "local_dir (trainer.default_local_dir) must be set")
        self.project_name = project_name
        self.experiment_name = experiment_name
        self.local_dir = None if local_dir is None else str(local_dir)
        self.backends: dict[str, Any] = {}
        try:
            for name in dict.fromkeys(names):  # de-duplicated, order kept
                if name == "console":
                    self.backends[name] = ConsoleLogger(console_keys, console_stream)
                elif name == "jsonl":
                    self.backends[name] = JsonlLogger(self.local_dir)
                elif name == "wandb":
                    self.backends[name] = _WandbLogger(project_name, experiment_name, _plain_config(config),
                                                       self.local_dir)
                elif name == "tensorboard":
                    self.backends[name] = _TensorboardLogger(experiment_name, self.local_dir)
        except BaseException:
            self.finish()
            raise

    @property
    def jsonl_path(self) -> Path | None:
        backend = self.backends.get("jsonl")
        return backend.path if backend is not None else None

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Send one step's metrics to every backend."""
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(f"step must be an int, got {step!r}")
        for backend in self.backends.values():
            backend.log(metrics, int(step))

    def truncate_after(self, step: int) -> int:
        """On resume from ``step``: drop JSONL lines of later steps (they will be logged again)."""
        backend = self.backends.get("jsonl")
        return backend.truncate_after(step) if backend is not None else 0

    def finish(self) -> None:
        """Close every backend; safe to call twice."""
        for name, backend in list(self.backends.items()):
            try:
                backend.finish()
            except Exception:  # noqa: BLE001 - one failing backend must not hide the others
                logger.exception("closing the %s logger failed", name)

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()
