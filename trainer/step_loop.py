"""What the RL and offline trainers share: loaders, tracker, checkpoints, and the step loop itself.

A trainer subclass supplies its datasets, its worker groups, ``train_step(batch)`` and
``validate()``; :meth:`StepLoop.fit` does the rest in one order for both: seed, data, the run
spec saved beside the run (``run_spec.json``), tracker, workers, resume, an optional validation
before the first step, then per step: train, validate every ``trainer.test_freq`` steps and at the
end, checkpoint every ``trainer.save_freq`` steps and at the end, log, advance the progress bar.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from relift.protocol import DataProto
from relift.spec import save_spec_json, spec_to_dict
from relift.utils.timer import seconds_since_process_start, timed
from relift.utils.tracking import Tracking
from trainer.interrupts import RunGuard
from trainer.phases import TRACKER, phase
from trainer.resume_check import already_complete_message
from trainer.run_checkpoint import load_run_checkpoint, preflight_resume, save_run_checkpoint
from trainer.run_lock import RunLock

__all__ = ["StepLoop"]

logger = logging.getLogger(__name__)


class StepLoop(ABC):
    """The shared driver loop over a frozen run spec (``RLRunSpec`` or ``OfflineRunSpec``)."""

    progress_name = "steps"
    console_keys: dict[str, str] | None = None

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.local_dir = spec.trainer.default_local_dir
        self.seed = spec.trainer.seed
        self.global_step = 0
        self.epoch = 0
        self.groups: Any = None
        self.actor_wg: Any = None
        self.tracker: Tracking | None = None
        self.train_loader: Any = None
        self.val_batches: list[DataProto] = []
        self.total_steps = 0
        self.total_epochs = spec.trainer.total_epochs

    # ------------------------------------------------------------------ what a trainer supplies
    @abstractmethod
    def _build_data(self) -> None:
        """Tokenizer, datasets, and :meth:`_make_loaders`."""

    @abstractmethod
    def _build_workers(self) -> None:
        """Start the worker groups (``self.groups``, ``self.actor_wg``)."""

    @abstractmethod
    def train_step(self, batch: DataProto) -> dict[str, Any]:
        """One step on one batch; its metrics."""

    @abstractmethod
    def validate(self) -> dict[str, float]:
        """A validation pass; empty without validation data."""

    def _driver_extra(self) -> dict[str, Any]:
        """Driver state beyond step, loader and RNG that a checkpoint must hold (KL controller, hooks)."""
        return {}

    def _restore_extra(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`_driver_extra` saved."""

    def _before_steps(self, resumed: bool) -> dict[str, Any] | None:
        """Work before the first step (validation); a dict ends the run with those metrics."""
        return None

    def _after_steps(self) -> None:
        """Work after the last step (an export)."""

    # ------------------------------------------------------------------ shared pieces
    def _make_loaders(self, train_dataset: Any, val_dataset: Any, *, batch_size: int, data: Any,
                      val_batch_size: int | None) -> None:
        """The resumable train loader and the fixed validation batches; the total steps from them."""
        from relift.data import collate_to_dataproto, make_dataloader  # noqa: PLC0415

        if len(train_dataset) < batch_size:
            raise ValueError(f"data.train_files has {len(train_dataset)} usable rows, fewer than "
                             f"data.train_batch_size ({batch_size})")
        self.train_loader = make_dataloader(train_dataset, batch_size=batch_size, seed=data.seed, shuffle=data.shuffle,
                                            drop_last=True, collate_fn=collate_to_dataproto,
                                            num_workers=data.dataloader_num_workers)
        self.val_batches = []
        if val_dataset is not None:
            vbs = val_batch_size or len(val_dataset)
            rows = [val_dataset[i] for i in range(len(val_dataset))]
            self.val_batches = [collate_to_dataproto(rows[s:s + vbs]) for s in range(0, len(rows), vbs)]
        steps_per_epoch = len(self.train_loader)
        total = self.spec.trainer.total_training_steps
        epochs = self.spec.trainer.total_epochs
        self.total_steps = int(total) if total else steps_per_epoch * epochs
        self.total_epochs = max(epochs, math.ceil(int(total) / max(steps_per_epoch, 1))) if total else epochs
        self.spec = self.spec.with_total_steps(self.total_steps)

    def _build_tracker(self) -> None:
        t = self.spec.trainer
        self.tracker = Tracking(t.project_name, t.experiment_name, list(t.logger), config=spec_to_dict(self.spec),
                                local_dir=self.local_dir, console_keys=self.console_keys)

    def save_checkpoint(self, step_metrics: dict[str, Any]) -> Path:
        """Atomic save of the policy workers and the driver state for ``self.global_step``."""
        return save_run_checkpoint(self.local_dir, self.global_step, self.epoch, self.actor_wg, self.train_loader,
                                   step_metrics, max_to_keep=self.spec.trainer.max_ckpt_to_keep,
                                   extra=self._driver_extra(), spec=spec_to_dict(self.spec))

    def load_checkpoint(self) -> bool:
        """Resume per ``trainer.resume_mode``; returns True when a checkpoint was loaded."""
        t = self.spec.trainer
        state = load_run_checkpoint(t.resume_mode, self.local_dir, t.resume_from_path, self.actor_wg,
                                    self.train_loader, self.tracker)
        if state is None:
            return False
        self.resumed_from = state.get("checkpoint_dir")
        self.global_step = state["global_step"]
        self.epoch = int(state.get("epoch", 0))
        self._restore_extra(state)
        return True

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """:meth:`_fit` holding the output directory's run lock (one run per directory)."""
        lock = RunLock(self.local_dir).acquire() if self.local_dir else None
        try:
            return self._fit()
        finally:
            if lock is not None:
                lock.release()

    def _fit(self) -> dict[str, Any]:
        """Set up, (resume,) train to the last step; returns the last step's metrics."""
        from tqdm.auto import tqdm  # noqa: PLC0415

        from relift.utils.seed import set_seed  # noqa: PLC0415

        set_seed(self.seed)
        self._build_data()
        t = self.spec.trainer  # another run's checkpoint is refused before anything is written or loaded
        preflight_resume(t.resume_mode, self.local_dir, t.resume_from_path, spec_to_dict(self.spec),
                         force=t.resume_force)
        save_spec_json(self.spec, self.local_dir)
        self._build_tracker()
        last: dict[str, Any] = {}
        guard = RunGuard(self)  # SIGTERM / Ctrl-C and the hang watchdog (trainer/interrupts.py)
        try:
            with phase("start_workers"):
                self._build_workers()
            guard.install()  # ray.init installs its own SIGTERM handler: take it back
            with phase("load_checkpoint"):
                resumed = self.load_checkpoint()
            early = self._before_steps(resumed)
            if early is not None:
                return early
            if self.global_step >= self.total_steps:
                logger.warning(already_complete_message(getattr(self, "resumed_from", None), self.global_step,
                                                        self.total_steps))
                return last
            t = self.spec.trainer
            bar = guard.progress(tqdm(total=self.total_steps, initial=self.global_step, desc=self.progress_name,
                                      unit="step", dynamic_ncols=True))
            steps_per_epoch = max(len(self.train_loader), 1)
            first_step = True
            while self.global_step < self.total_steps:  # the sampler moves on to the next epoch by itself
                for batch in self.train_loader:
                    self.global_step += 1
                    self.epoch = (self.global_step - 1) // steps_per_epoch
                    TRACKER.set_step(self.global_step)
                    with phase("step"):
                        metrics = self.train_step(batch)
                    if first_step:  # what a user waits for before training moves (issue 18.5)
                        first_step = False
                        metrics["timing_s/start_to_first_step"] = seconds_since_process_start()
                        logger.info("first step done %.1f s after the process started",
                                    metrics["timing_s/start_to_first_step"])
                    metrics["training/global_step"] = self.global_step
                    metrics["training/epoch"] = self.epoch
                    is_last = self.global_step >= self.total_steps
                    if self.val_batches and ((t.test_freq > 0 and self.global_step % t.test_freq == 0) or is_last):
                        with timed("testing", metrics), phase("validate"):
                            metrics.update(self.validate())
                    if t.save_freq > 0 and (self.global_step % t.save_freq == 0 or is_last):
                        with timed("save_checkpoint", metrics), phase("save"):
                            self.save_checkpoint(metrics)
                    self.tracker.log(metrics, step=self.global_step)
                    bar.update(1)
                    last = metrics
                    guard.after_step(self, metrics, is_last)  # a SIGTERM / Ctrl-C: save and stop here
                    if is_last:
                        break
            bar.close()
            self._after_steps()
            logger.info("training finished at step %d", self.global_step)
            return last
        finally:
            if self.groups is not None:
                self.groups.shutdown()
            if self.tracker is not None:
                self.tracker.finish()
            guard.close()
