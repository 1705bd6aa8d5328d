"""The step watchdog: no phase transition for ``trainer.hang_timeout_s`` -> stacks dumped, run stopped.

A run that hangs (a collective waiting for a dead peer, a scorer stuck in C code, a deadlocked data
worker) otherwise sits silent until someone notices. A daemon thread reads the phase tracker
(:mod:`trainer.phases`) every ``min(5, timeout/4)`` seconds; when no phase has begun or ended for
``timeout`` seconds it

1. writes ``<trainer.default_local_dir>/hang_step<N>_<phase>.txt``: every thread of the driver
   (``sys._current_frames``; with the in-process backend the workers run in these threads) and every
   Ray worker of the run (``py-spy dump --pid``, run by the driver for workers on its own node and
   by a zero-CPU task pinned to the worker's node for the others; py-spy ships with ``ray[default]``
   and is what ``ray stack`` uses, https://docs.ray.io/en/latest/ray-observability/user-guides/debug-apps/debug-hangs.html);
2. names the phase, the step and the workers still busy (a worker whose stack shows frames of
   relift's own code is busy; one waiting in Ray's task loop is idle);
3. raises :class:`trainer.interrupts.HangDetected` in the driver's main thread (SIGUSR2 to that
   thread interrupts a blocking wait), so the normal teardown runs and the entry point exits with
   :data:`trainer.interrupts.EXIT_HUNG`. ``ray.wait`` without a timeout never looks at signals, so
   when the main thread is still blocked 5 s later the watchdog ``ray.kill``-s the run's Ray workers,
   which ends the wait. When the main thread does not answer within ``grace_s`` (stuck in C code
   holding the GIL) the watchdog kills the worker processes and ends the process itself with
   ``os._exit(EXIT_HUNG)``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.interrupts import EXIT_HUNG, HangDetected, record_stop
from trainer.phases import TRACKER, PhaseState

__all__ = ["Watchdog", "driver_stacks", "py_spy_dump"]

logger = logging.getLogger(__name__)

_OWN_FRAME = re.compile(r"(?<![\w/])(?:workers|relift|trainer)/\w+")
_RAY_FRAME = re.compile(r"ray/")


def driver_stacks() -> str:
    """Every thread of this process, innermost frame last (the watchdog's own thread included)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        parts.append(f"--- thread {names.get(ident, '?')} ({ident})\n" + "".join(traceback.format_stack(frame)))
    return "\n".join(parts)


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def py_spy_dump(pid: int, timeout_s: float = 30.0) -> str:
    """``py-spy dump --pid`` of one process, or why it could not be taken."""
    exe = _py_spy()
    if exe is None:
        return "py-spy not found (it comes with ray[default]); no stack for this worker"
    try:
        res = subprocess.run([exe, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"py-spy dump --pid {pid} failed: {exc}"
    return (res.stdout + res.stderr).strip() or f"py-spy dump --pid {pid}: no output (exit {res.returncode})"


def _looks_busy(stack: str) -> bool:
    """A Ray worker is busy when its stack holds a frame of relift's own packages (not Ray's loop)."""
    return any(_OWN_FRAME.search(line) and not _RAY_FRAME.search(line) for line in stack.splitlines())


def _ray_worker_dumps(groups: Any) -> list[tuple[str, str, bool]]:
    """(name, stack text, busy) for every Ray worker of ``groups`` (WorkerGroups); [] without Ray."""
    out: list[tuple[str, str, bool]] = []
    members = [g for g in (getattr(groups, "actor", None), getattr(groups, "reward", None)) if g is not None]
    ray_groups = [g for g in members if hasattr(g, "worker_info")]
    if not ray_groups:
        return out
    import ray  # noqa: PLC0415

    try:
        here = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - Ray already down
        here = None
    remote_dump = ray.remote(num_cpus=0, max_retries=0)(py_spy_dump)
    for g in ray_groups:
        for rank, info in enumerate(g.worker_info):
            name = f"{g.name}:{rank} (node {info.get('node_ip')}, pid {info.get('pid')})"
            try:
                if info.get("node_id") == here:
                    text = py_spy_dump(int(info["pid"]))
                else:
                    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: PLC0415

                    task = remote_dump.options(
                        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=info["node_id"], soft=False)
                    )
                    text = ray.get(task.remote(int(info["pid"])), timeout=60)
            except Exception as exc:  # noqa: BLE001 - a dump that fails is reported, not fatal
                text = f"no stack: {type(exc).__name__}: {exc}"
            out.append((name, text, _looks_busy(text)))
    return out


def _group_label(group: Any) -> str:
    if group is None:
        return "the driver"
    name = getattr(group, "name", type(group).__name__)
    if hasattr(group, "worker_info"):
        return f"worker group {name}"
    return f"worker group {name} (in-process, driver pid {os.getpid()})"


class Watchdog:
    """A daemon thread that stops the run after ``timeout_s`` without a phase transition."""

    def __init__(self, timeout_s: float, local_dir: str, groups: Callable[[], Any], grace_s: float = 30.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"trainer.hang_timeout_s must be > 0 to watch (0 turns the watchdog off), got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.local_dir = local_dir or "."
        self.groups = groups
        self.grace_s = grace_s
        self.fired: HangDetected | None = None
        self.dump_path: Path | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relift-watchdog", daemon=True)
        self._main = threading.main_thread().ident
        self._old_usr2: Any = None
        self._can_signal = threading.current_thread() is threading.main_thread()

    def start(self) -> None:
        if self._can_signal:
            self._old_usr2 = signal.signal(signal.SIGUSR2, self._on_usr2)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        if self._can_signal and self._old_usr2 is not None:
            signal.signal(signal.SIGUSR2, self._old_usr2)
            self._old_usr2 = None

    def _on_usr2(self, signum: int, frame: Any) -> None:
        if self.fired is not None:
            raise self.fired

    def _run(self) -> None:
        poll = min(5.0, self.timeout_s / 4)
        while not self._stop.wait(poll):
            state = TRACKER.state()
            if time.monotonic() - state.since >= self.timeout_s:
                self._fire(state)
                return

    def _fire(self, state: PhaseState) -> None:
        path = TRACKER.path()
        groups = self.groups()
        workers = _ray_worker_dumps(groups) if groups is not None else []
        safe = re.sub(r"[^\w.-]", "_", state.name)
        dump = Path(self.local_dir) / f"hang_step{state.step}_{safe}.txt"
        text = [
            f"no progress for {self.timeout_s:g} s; step {state.step}, phases {path}",
            "",
            f"=== driver (pid {os.getpid()})",
            driver_stacks(),
        ]
        for name, stack, busy in workers:
            text += ["", f"=== {name}{' [busy]' if busy else ' [idle]'}", stack]
        try:
            dump.parent.mkdir(parents=True, exist_ok=True)
            dump.write_text("\n".join(text) + "\n")
            where = str(dump)
        except OSError as exc:
            where = f"(not written: {exc})"
        self.dump_path = dump
        busy = [n for n, _, b in workers if b] or [_group_label(state.group)]
        message = (
            f"hang: no progress for {self.timeout_s:g} s (trainer.hang_timeout_s) in phase '{state.name}' "
            f"({path}) of step {state.step}; still busy: {'; '.join(busy)}; stacks of the driver and "
            f"{len(workers)} Ray worker(s) in {where}"
        )
        logger.error(message)
        self.fired = record_stop(HangDetected(message, local_dir=self.local_dir, step=state.step))
        if self._can_signal:
            signal.pthread_kill(self._main, signal.SIGUSR2)
        if self._stop.wait(min(5.0, self.grace_s)):
            return
        # ray.wait without a timeout does not look at signals: killing the workers ends the wait
        logger.error("the driver is still blocked; killing the run's Ray workers to release it")
        _kill_ray_actors(groups)
        if self._stop.wait(max(0.0, self.grace_s - 5.0)):
            return
        print(
            f"[relift] {message}; the driver did not stop within {self.grace_s:g} s, exiting now",
            file=sys.stderr,
            flush=True,
        )
        _kill_ray_workers(groups)
        os._exit(EXIT_HUNG)


def _kill_ray_actors(groups: Any) -> None:
    """``ray.kill`` every worker of the run's Ray groups (their pending calls then fail at once)."""
    for g in (getattr(groups, "actor", None), getattr(groups, "reward", None)):
        if g is None or not hasattr(g, "worker_info"):
            continue
        import ray  # noqa: PLC0415

        for actor in list(getattr(g, "workers", [])):
            try:
                ray.kill(actor, no_restart=True)
            except Exception as exc:  # noqa: BLE001 - already dead
                logger.debug("ray.kill failed: %s", exc)


def _kill_ray_workers(groups: Any) -> None:
    for g in (getattr(groups, "actor", None), getattr(groups, "reward", None)):
        for info in getattr(g, "worker_info", []) if g is not None else []:
            try:
                os.kill(int(info["pid"]), signal.SIGKILL)
            except (OSError, KeyError, ValueError):
                pass
    try:
        import ray  # noqa: PLC0415

        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001
        pass
