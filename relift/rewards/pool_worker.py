"""The process side of :class:`relift.rewards.RewardPool`: a zygote that forks scoring workers.

Why a zygote: a hung scorer can only be stopped by killing its process, and the samples that hang
must each get a process of their own at once, or they wait for one another (8 hangs with a 3 s
timeout on 2 workers used to take 19 s).  A fresh interpreter needs 1-3 s to import sympy and
math-verify, too slow to hand out on demand; so one fresh interpreter (the zygote, started with
``subprocess``, never forked from the threaded parent) imports the scorers once and then
``fork()``s a worker per request, in milliseconds.  The zygote runs no thread and no scorer, so
forking it is safe.

Pipes: the parent creates each worker's task and result pipes and sends their ends to the zygote
over a Unix socket (``socket.send_fds``); the zygote forks, the child keeps them, the zygote
closes its copies and reports the child's pid.  Messages use ``multiprocessing.connection``
framing on dedicated pipes, so a scorer that prints cannot corrupt them; on this side
:class:`relift.rewards.pipe_wire.PipeEnd` writes and reads it, which spares these processes the
import of ``multiprocessing``.  Every process asks the kernel to SIGKILL it when its parent dies
(``PR_SET_PDEATHSIG``) and polls ``getppid`` as a fallback; the zygote ignores SIGCHLD so the
kernel reaps the workers the parent kills.

What the zygote preloads: when relift's registered scorers are in use (no custom function),
math-verify and sympy, warmed up by grading one answer; with a custom function, its file (so its
top-level imports) and whatever the file's optional ``relift_warm_up()`` loads
(``relift/rewards/math_v3.py`` warms up math-verify). A custom function replaces every scorer, so its
workers do not carry math-verify (~44 MB of RSS per process) unless it uses it. Modules a scorer
imports only when called (as ``from math_verify import ...`` inside the function) are learnt: a
worker reports each module it imported while scoring, before the sample's result, and the parent
passes the names on to the zygote, which imports them; so only the first workers pay such an
import, and later forks (after a timeout, a crash or a suspect) start with it and share its pages.
"""

from __future__ import annotations

import math
import os
import pickle
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from relift.rewards import registry
from relift.rewards.custom import CUSTOM_MODULE_PREFIX, WARM_UP_NAME, load_custom_reward_fn
from relift.rewards.pipe_wire import PipeEnd

__all__ = ["encode_fn", "encode_registry", "zygote_main", "ZYGOTE_CMD"]

ZYGOTE_CMD = "from relift.rewards.pool_worker import zygote_main; zygote_main()"
_ERR_LIMIT = 2000  # characters of an exception message sent back


def encode_fn(fn: Callable) -> tuple:
    """A scorer by reference (file path + name, or a pickle of a module-level function)."""
    module = getattr(fn, "__module__", "") or ""
    if module.startswith(CUSTOM_MODULE_PREFIX):
        return ("file", sys.modules[module].__file__, fn.__name__)
    try:
        return ("pickle", pickle.dumps(fn))
    except Exception as exc:  # noqa: BLE001
        raise ValueError(
            f"reward function {fn!r} cannot be sent to reward worker processes ({exc}); define it "
            "at module level in an importable module or in a file loaded with "
            "load_custom_reward_fn"
        ) from exc


def _decode_fn(spec: tuple) -> Callable:
    if spec[0] == "file":
        return load_custom_reward_fn(spec[1], spec[2])
    return pickle.loads(spec[1])


def encode_registry() -> tuple:
    """The parent's registry, by reference, for the zygote."""
    exact, patterns = registry.snapshot()
    return ({k: encode_fn(f) for k, f in exact.items()}, [(p, encode_fn(f)) for p, f in patterns])


def _decode_registry(state: tuple) -> None:
    exact, patterns = state
    registry.restore(({k: _decode_fn(s) for k, s in exact.items()}, [(p, _decode_fn(s)) for p, s in patterns]))


def normalise_result(raw: Any) -> dict:
    """Scorer output -> dict with a finite float ``score`` (raises on anything else)."""
    if isinstance(raw, dict):
        if "score" not in raw:
            raise ValueError(f"reward function returned a dict without 'score': keys {sorted(raw)}")
        out = dict(raw)
    elif isinstance(raw, (int, float)) or hasattr(raw, "__float__"):
        out = {"score": raw}
    else:
        raise TypeError(f"reward function returned {type(raw).__name__}, expected float or dict")
    score = float(out["score"])
    if not math.isfinite(score):
        raise ValueError(f"reward function returned a non-finite score {score}")
    out["score"] = score
    return out


def _score_one(custom: Callable | None, options: dict, item: tuple) -> dict:
    _, data_source, solution, ground_truth, extra_info = item
    if custom is not None:
        raw = custom(data_source, solution, ground_truth, extra_info, **options)
    else:
        raw = registry.compute_score(data_source, solution, ground_truth, extra_info, **options)
    return normalise_result(raw)


def _set_parent_death_signal() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001  (not Linux: the getppid checks still work)
        pass


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


def _worker_loop(
    tasks: PipeEnd, results: PipeEnd, custom: Callable | None, options: dict, parent_pid: int
) -> None:
    """A forked worker: score every item of every ("batch", items) message, one answer each."""
    _set_parent_death_signal()
    if os.getppid() != parent_pid:
        os._exit(0)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    results.send(("ready", os.getpid()))
    known = set(sys.modules)
    while True:
        try:
            msg = tasks.recv()
        except (EOFError, OSError):
            break
        if msg[0] == "stop":
            break
        for item in msg[1]:
            try:
                out = ("res", item[0], _score_one(custom, options, item), None)
            except (KeyboardInterrupt, SystemExit):
                os._exit(1)
            except BaseException as exc:  # noqa: BLE001  (math-verify's TimeoutException too)
                out = ("res", item[0], None, f"{type(exc).__name__}: {exc}"[:_ERR_LIMIT])
            if len(sys.modules) != len(known):  # the scorer imported a module: the zygote should import it too
                current = set(sys.modules)
                imported = sorted(current - known)
                known = current  # also forgets dropped ones, so the length check stays a one-off
                if imported:
                    results.send(("imported", imported))
            try:
                results.send(out)
            except Exception as exc:  # noqa: BLE001  (an unpicklable field in the result)
                results.send(("res", item[0], None, f"result not picklable: {exc}"))
    os._exit(0)


def _warm_up(custom: Callable | None) -> None:
    """Once, before any fork: math-verify's warm-up for the registered scorers, else the custom
    file's own ``relift_warm_up`` if it has one (nothing otherwise: the custom function replaces
    every scorer, so math-verify may never be needed)."""
    if custom is None:
        from relift.rewards import math as _math

        _math.relift_warm_up()
        return
    hook = getattr(sys.modules.get(getattr(custom, "__module__", "") or ""), WARM_UP_NAME, None)
    if callable(hook):
        hook()


def _preload(names: list[str]) -> None:
    """Import modules a worker imported while scoring, so the workers forked from now on have them.
    A name that cannot be imported here (an alias, a module built at run time) is skipped: the
    worker that needs it imports it itself, as it would without the zygote."""
    import importlib

    for name in names:
        if name in sys.modules or name.startswith(CUSTOM_MODULE_PREFIX) or name.startswith("__"):
            continue
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001, S112
            continue


def zygote_main() -> None:
    """Entry point of the zygote (argv: task fd, result fd, control socket fd, parent pid)."""
    task_fd, result_fd, ctl_fd, parent_pid = (int(a) for a in sys.argv[1:5])
    _set_parent_death_signal()
    if os.getppid() != parent_pid:
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    tasks = PipeEnd(task_fd)
    results = PipeEnd(result_fd)
    ctl = socket.socket(fileno=ctl_fd)
    try:
        _, state, custom_spec, options = tasks.recv()
        _decode_registry(state)
        custom = _decode_fn(custom_spec) if custom_spec is not None else None
        _warm_up(custom)
    except BaseException:  # noqa: BLE001
        results.send(("init_error", traceback.format_exc()))
        os._exit(1)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps killed workers
    results.send(("ready", os.getpid()))
    me = os.getpid()
    while True:
        readable, _, _ = select.select([tasks, ctl], [], [], 1.0)
        if os.getppid() != parent_pid:
            os._exit(0)
        if tasks in readable:  # first, so a fork asked for after a preload gets the preloaded modules
            try:
                _, names = tasks.recv()
            except (EOFError, OSError):
                os._exit(0)
            _preload(names)
        if ctl not in readable:
            continue
        try:
            msg, fds, _, _ = socket.recv_fds(ctl, 16, 2)
        except OSError:
            os._exit(0)
        if not msg:  # the parent closed the socket
            os._exit(0)
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            results.send(("fork_error", f"expected 2 pipe ends, got {len(fds)}"))
            continue
        pid = os.fork()
        if pid == 0:
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                ctl.close()
                tasks.close()
                results.close()
                _worker_loop(PipeEnd(fds[0]), PipeEnd(fds[1]), custom, options, me)
            finally:
                os._exit(1)
        for fd in fds:
            os.close(fd)
        results.send(("forked", pid))
