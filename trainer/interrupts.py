"""Stopping a run on request: SIGTERM / Ctrl-C save and exit resumable; a second one stops at once.

A cluster scheduler preempts with SIGTERM; a person stops a run with Ctrl-C (SIGINT). Either one:
the current step finishes, a checkpoint is saved (even with ``trainer.save_freq=-1``, unless that
step was just saved), the groups and a Ray instance the run started are shut down, and the entry
point prints ONE line naming the checkpoint and the command that resumes it, then exits with
:data:`EXIT_STOPPED_SAVED`. A second signal (Ctrl-C again, or a scheduler's second SIGTERM) stops at
once: the step in flight is lost, a half-written ``.tmp-global_step_N`` save is removed, and the exit
status is :data:`EXIT_ABORTED`. The hang watchdog (:mod:`trainer.watchdog`) ends a run with
:data:`EXIT_HUNG` through the same path.

Exit statuses of ``python -m trainer.main_rl`` / ``main_offline`` (docs/reliability.md):

====  ==========================================================================
0     finished
1     an error (a traceback names it)
2     a config that cannot run, or a cluster that does not match it (one line per problem)
3     the hang watchdog stopped the run (stack dump in the run folder)
75    stopped by SIGTERM or a first Ctrl-C after saving a checkpoint: resume it
      (75 is EX_TEMPFAIL of sysexits.h: "try again later")
130   stopped at once by a second signal: the step in flight is lost (128 + SIGINT)
====  ==========================================================================

The signal handlers only set a flag the step loop reads between steps (:meth:`RunGuard.after_step`);
only the second signal raises, as :class:`Aborted` (a ``KeyboardInterrupt``, so code that catches
``Exception`` does not swallow it). Ray installs its own SIGTERM handler in ``ray.init`` (it calls
``sys.exit``); :meth:`RunGuard.install` is called again after the workers start to take it back.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from relift.utils import checkpoint as ckpt
from trainer.phases import TRACKER, phase

__all__ = [
    "EXIT_STOPPED_SAVED",
    "EXIT_ABORTED",
    "EXIT_HUNG",
    "SignalStop",
    "StoppedForResume",
    "Aborted",
    "HangDetected",
    "RunGuard",
    "resume_command",
    "report_stop",
    "stop_behind",
    "record_stop",
]

logger = logging.getLogger(__name__)

EXIT_HUNG = 3
EXIT_STOPPED_SAVED = 75
EXIT_ABORTED = 130
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalStop(BaseException):
    """The run stopped on purpose (signal or watchdog); ``exit_code`` and the run folder travel with it.

    A ``BaseException`` so that a worker's or scorer's ``except Exception`` never swallows it.
    """

    exit_code = 1

    def __init__(
        self, message: str, *, local_dir: str = "", step: int = 0, checkpoint: Path | None = None, signal_name: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.local_dir = local_dir
        self.step = step
        self.checkpoint = checkpoint
        self.signal_name = signal_name


class StoppedForResume(SignalStop):
    """SIGTERM or a first Ctrl-C: the step finished and ``checkpoint`` holds it."""

    exit_code = EXIT_STOPPED_SAVED


class Aborted(SignalStop, KeyboardInterrupt):
    """A second signal: stopped at once, the step in flight lost, its partial save removed."""

    exit_code = EXIT_ABORTED


class HangDetected(SignalStop, KeyboardInterrupt):
    """The watchdog saw no progress for ``trainer.hang_timeout_s``; ``message`` names phase and workers.

    A ``KeyboardInterrupt`` like :class:`Aborted`: Ray's blocking calls end cleanly on one (other
    exceptions raised from a signal handler inside ``ray.wait`` come out as ``SystemError``).
    """

    exit_code = EXIT_HUNG


_RAISED: list[SignalStop] = []  # the stop raised from a signal handler in this process, if any


def record_stop(stop: SignalStop) -> SignalStop:
    """Remember a stop raised from a signal handler: Ray's ``ray.get``/``ray.wait`` turn an exception
    raised in a handler into ``SystemError`` (or a plain ``KeyboardInterrupt``), losing its type."""
    _RAISED[:] = [stop]
    return stop


def stop_behind(exc: BaseException) -> SignalStop | None:
    """The :class:`SignalStop` that ``exc`` is, was caused by, or arrived with (see :func:`record_stop`)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, SignalStop):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    if _RAISED:
        return _RAISED[0]
    return None


class RunGuard:
    """Signal handling and the hang watchdog around one :meth:`StepLoop.fit`.

    ``RunGuard(loop)`` installs the handlers (main thread only) and starts the watchdog when
    ``trainer.hang_timeout_s > 0``; :meth:`after_step` turns a pending request into a checkpoint and
    :class:`StoppedForResume`; :meth:`close` (last thing in ``fit``'s ``finally``, after the workers
    are down) restores the handlers, stops the watchdog and removes a partial save after an abort.
    """

    def __init__(self, loop: Any) -> None:
        from trainer.watchdog import Watchdog  # noqa: PLC0415 - watchdog imports interrupts

        self.loop = loop
        self.local_dir = str(loop.local_dir or "")
        self.requested: str | None = None
        self.aborted = False
        self.saved: tuple[int, Path] | None = None  # (step, checkpoint) once a requested stop has saved
        self._bar: Any = None
        self._old: dict[int, Any] = {}
        _RAISED.clear()
        TRACKER.reset("setup")
        self.install()
        timeout = float(getattr(loop.spec.trainer, "hang_timeout_s", 0) or 0)
        self.watchdog = Watchdog(timeout, self.local_dir, lambda: loop.groups) if timeout > 0 else None
        if self.watchdog is not None:
            self.watchdog.start()

    # ------------------------------------------------------------------ signals
    def install(self) -> None:
        """(Re)take SIGINT and SIGTERM; a no-op outside the main thread (signals go to the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            old = signal.signal(sig, self._on_signal)
            if old is not self._on_signal and sig not in self._old:
                self._old[sig] = old

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.aborted:
            return  # already stopping at once; the cleanup must not be cut short
        state = TRACKER.state()
        if self.requested is None:
            self.requested = name
            print(
                ("\n" if self._bar is not None else "")  # end the progress bar's line first
                + f"[relift] {name}: finishing step {state.step} (now in {TRACKER.path()}), then saving a "
                "checkpoint and stopping; Ctrl-C again to stop at once",
                file=sys.stderr,
                flush=True,
            )
            return
        self.aborted = True
        if self.saved is not None:  # the checkpoint is complete: only the shutdown is cut short
            raise record_stop(
                Aborted(
                    f"stopped at once by a second signal ({self.requested}, then {name}) while "
                    f"shutting down after step {self.saved[0]}",
                    local_dir=self.local_dir,
                    step=self.saved[0],
                    checkpoint=self.saved[1],
                    signal_name=name,
                )
            )
        raise record_stop(
            Aborted(
                f"stopped at once by a second signal ({self.requested}, then {name}) during step "
                f"{state.step} ({TRACKER.path()})",
                local_dir=self.local_dir,
                step=state.step,
                signal_name=name,
            )
        )

    # ------------------------------------------------------------------ the loop's hook
    def progress(self, bar: Any) -> Any:
        """Remember the progress bar, so that :meth:`close` ends its line before the run's last line."""
        self._bar = bar
        return bar

    def after_step(self, loop: Any, metrics: dict[str, Any], is_last: bool) -> None:
        """Between steps: on a pending request save (unless this step just was) and raise StoppedForResume."""
        if self.requested is None or is_last:
            return
        step = loop.global_step
        if ckpt.read_tracker(self.local_dir) == step:
            path = ckpt.step_dir(self.local_dir, step)
        else:
            with phase("save"):
                path = loop.save_checkpoint(metrics)
        self.saved = (step, Path(path))
        raise StoppedForResume(
            f"stopped by {self.requested} after step {step}",
            local_dir=self.local_dir,
            step=step,
            checkpoint=Path(path),
            signal_name=self.requested,
        )

    def close(self) -> None:
        """Stop the watchdog, put the old handlers back, and remove a partial save after an abort."""
        if self.watchdog is not None:
            self.watchdog.stop()
        if self._bar is not None:
            self._bar.close()  # idempotent; after a stop the bar's line ends here, not in the last message
        if threading.current_thread() is threading.main_thread():
            for sig, old in self._old.items():
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old.clear()
        if self.aborted and self.local_dir:
            for path in ckpt.cleanup_staging(self.local_dir):
                logger.info("removed the partial save %s", path)


# ---------------------------------------------------------------------- what the entry point prints
def resume_command(stop: SignalStop, argv: list[str] | None = None) -> str:
    """The command line that resumes this run: the one that started it, with the checkpoint named
    when ``trainer.resume_mode`` would not find it by itself; prefixed with ``cd`` to this directory."""
    argv = list(argv if argv is not None else getattr(sys, "orig_argv", sys.argv))
    mode = next((a.split("=", 1)[1] for a in argv if a.startswith("trainer.resume_mode=")), "auto")
    ckpt_path = stop.checkpoint
    if ckpt_path is None and stop.local_dir:
        ckpt_path = _latest(stop.local_dir)
    if mode != "auto" and ckpt_path is not None:
        argv = [a for a in argv if not a.startswith(("trainer.resume_mode=", "trainer.resume_from_path="))]
        argv += ["trainer.resume_mode=resume_path", f"trainer.resume_from_path={Path(ckpt_path).resolve()}"]
    return f"cd {shlex.quote(os.getcwd())} && {shlex.join(argv)}"


def _latest(local_dir: str) -> Path | None:
    try:
        return ckpt.latest_checkpoint(local_dir)
    except ckpt.CheckpointError:
        return None


def report_stop(stop: SignalStop, argv: list[str] | None = None) -> int:
    """Print the one line a stopped run ends with (stderr) and return its exit status.

    From here on the process only exits: a further Ctrl-C or SIGTERM ends it at once with the same
    status instead of a ``KeyboardInterrupt`` traceback from the interpreter's shutdown.
    """
    if threading.current_thread() is threading.main_thread():
        for sig in _SIGNALS:
            signal.signal(sig, lambda signum, frame, code=stop.exit_code: os._exit(code))
    if isinstance(stop, StoppedForResume):
        line = f"[relift] {stop.message}: checkpoint {stop.checkpoint}; resume: {resume_command(stop, argv)}"
    elif isinstance(stop, Aborted) and stop.checkpoint is not None:
        line = (
            f"[relift] {stop.message}: checkpoint {stop.checkpoint} is complete; resume: {resume_command(stop, argv)}"
        )
    elif isinstance(stop, Aborted):
        last = _latest(stop.local_dir) if stop.local_dir else None
        tail = (
            f"last good checkpoint {last}; resume: {resume_command(stop, argv)}"
            if last is not None
            else "no checkpoint to resume from"
        )
        line = f"[relift] {stop.message}: nothing saved for it; {tail}"
    else:
        line = f"[relift] {stop.message}"
    print(line, file=sys.stderr, flush=True)
    return stop.exit_code
