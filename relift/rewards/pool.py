"""A pool of reward worker processes with a hard per-sample timeout.

Why processes: math-verify/sympy can hang for ever on some answers (``\\boxed{9^{9^{9^{9^{9}}}}}``
spends its time in a C big-integer power that holds the GIL), and math-verify's own timeout relies
on ``signal.alarm``, which works only in the main thread.  The only reliable stop is killing the
process that runs the scorer, so every sample is scored in a worker process; a sample that runs past
``timeout`` seconds gets its worker SIGKILLed and replaced, and scores 0 with ``timeout=True``.  A
scorer that raises scores 0 with ``error=True``.  Either is counted in :attr:`RewardPool.stats` and
logged once with its (truncated) input; the other samples of the batch are unaffected.

How workers start: each is a fresh interpreter (``sys.executable -c ...``, the semantics of the
'spawn' start method), never a fork, because the parent usually holds threads (torch, Ray, gRPC)
and forking a threaded process can deadlock the child.  It is launched with ``subprocess`` rather
than ``multiprocessing``'s spawn/forkserver so the parent's ``__main__`` is never re-imported in the
child (inside a Ray actor that is Ray's worker script; in a user script without a main guard it
would re-run the script).  Messages go over two dedicated pipes (``multiprocessing.connection``
framing), so a scorer that prints cannot corrupt them.  Workers are launched from one long-lived
thread of the pool and ask the kernel to SIGKILL them when it exits (``PR_SET_PDEATHSIG``), so they
die with their parent even while stuck in C code; a watchdog thread covers the other cases.

Scheduling: a batch is cut into chunks (about four per worker) handed to idle workers; each worker
reports every sample as it finishes it, so the parent knows when each sample started and can
enforce the per-sample deadline.  The batch therefore returns within about ``timeout`` plus the
normal scoring time even when a sample hangs.  Nothing here uses signals in the parent, so
:meth:`RewardPool.score` works from any thread and inside Ray actors.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection, wait
from typing import Any

from relift.rewards import registry
from relift.rewards.custom import CUSTOM_MODULE_PREFIX, load_custom_reward_fn

logger = logging.getLogger(__name__)

__all__ = ["RewardPool", "default_num_workers"]

_TRUNCATE = 300
_SPAWN_RETRIES = 3


def default_num_workers() -> int:
    """min(8, CPUs this process may use)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _truncate(value: Any, limit: int = _TRUNCATE) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + f"...[{len(text) - limit} more chars]"


# ----------------------------------------------------------------------------------------------
# encoding scorers for the worker processes (by reference, never by value)


def _encode_fn(fn: Callable) -> tuple:
    module = getattr(fn, "__module__", "") or ""
    if module.startswith(CUSTOM_MODULE_PREFIX):
        return ("file", sys.modules[module].__file__, fn.__name__)
    try:
        return ("pickle", pickle.dumps(fn))
    except Exception as exc:  # noqa: BLE001
        raise ValueError(
            f"reward function {fn!r} cannot be sent to reward worker processes ({exc}); define it "
            "at module level in an importable module or in a file loaded with "
            "load_custom_reward_fn") from exc


def _decode_fn(spec: tuple) -> Callable:
    if spec[0] == "file":
        return load_custom_reward_fn(spec[1], spec[2])
    return pickle.loads(spec[1])


def _encode_registry() -> tuple:
    exact, patterns = registry.snapshot()
    return ({k: _encode_fn(f) for k, f in exact.items()}, [(p, _encode_fn(f)) for p, f in patterns])


def _decode_registry(state: tuple) -> None:
    exact, patterns = state
    registry.restore(({k: _decode_fn(s) for k, s in exact.items()},
                      [(p, _decode_fn(s)) for p, s in patterns]))


# ----------------------------------------------------------------------------------------------
# worker side


def _normalise_result(raw: Any) -> dict:
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


def _score_one(custom: Callable | None, options: dict, data_source: str, solution: str,
               ground_truth: Any, extra_info: Any) -> dict:
    if custom is not None:
        raw = custom(data_source, solution, ground_truth, extra_info, **options)
    else:
        raw = registry.compute_score(data_source, solution, ground_truth, extra_info, **options)
    return _normalise_result(raw)


def _set_parent_death_signal() -> None:
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001  (not Linux: the watchdog thread still works)
        pass


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


def _worker_main() -> None:
    """Entry point of a reward worker process (argv: task fd, result fd, parent pid)."""
    import signal

    task_fd, result_fd, parent_pid = (int(a) for a in sys.argv[1:4])
    _set_parent_death_signal()
    if os.getppid() != parent_pid:
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    tasks = Connection(task_fd, writable=False)
    results = Connection(result_fd, readable=False)
    try:
        _, state, custom_spec, options = tasks.recv()
        _decode_registry(state)
        custom = _decode_fn(custom_spec) if custom_spec is not None else None
        # warm up: import math-verify/sympy now, not inside the first sample's deadline
        from relift.rewards import math as _math

        _math.compute_score("\\boxed{1}", "1")
    except BaseException:  # noqa: BLE001
        results.send(("init_error", traceback.format_exc()))
        os._exit(1)
    results.send(("ready", os.getpid()))
    while True:
        try:
            msg = tasks.recv()
        except (EOFError, OSError):
            break
        if msg[0] == "stop":
            break
        for idx, data_source, solution, ground_truth, extra_info in msg[1]:
            try:
                out = ("res", idx, _score_one(custom, options, data_source, solution,
                                              ground_truth, extra_info), None)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001  (math-verify's TimeoutException too)
                out = ("res", idx, None, f"{type(exc).__name__}: {exc}")
            try:
                results.send(out)
            except Exception as exc:  # noqa: BLE001  (an unpicklable field in the result)
                results.send(("res", idx, None, f"result not picklable: {exc}"))
    os._exit(0)


# ----------------------------------------------------------------------------------------------
# parent side


class _Worker:
    """Handle on one worker process: its pipes, readiness and the chunk it is scoring."""

    def __init__(self, proc: subprocess.Popen, tasks: Connection, results: Connection) -> None:
        self.proc = proc
        self.tasks = tasks
        self.results = results
        self.ready = False
        self.chunk: deque = deque()  # items sent and not yet answered, in order
        self.started = 0.0  # when the item at the head of ``chunk`` started (approximately)

    def kill(self) -> None:
        _kill_proc(self.proc)
        for conn in (self.tasks, self.results):
            try:
                conn.close()
            except OSError:
                pass


def _kill_proc(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover  (a process in uninterruptible sleep)
        logger.warning("reward worker %d did not exit after SIGKILL", proc.pid)


def _shutdown(procs: dict) -> None:
    """Finaliser: kill every worker still alive (also runs at interpreter exit)."""
    for proc in list(procs.values()):
        _kill_proc(proc)
    procs.clear()


class RewardPool:
    """Score responses in worker processes with a hard per-sample timeout.

    Args:
        num_workers: worker processes (default :func:`default_num_workers`).
        timeout: seconds one sample may take; past it the sample scores 0, ``timeout=True``.
        custom_reward_fn: ``(path, name)`` of a function that replaces every registered scorer
            (verl's ``custom_reward_function``), called as ``fn(data_source, solution_str,
            ground_truth, extra_info, **reward_kwargs)``.
        reward_kwargs: options passed to every scorer call (e.g. ``require_think_format``).
        max_logged_failures: how many timeouts/errors get a warning with their input; later ones
            are only counted (a note says so once).

    Use as a context manager (``with RewardPool() as pool: pool.score(...)``) or call
    :meth:`close`.  The registry (including scorers registered by the caller) is copied into the
    workers when they start, by reference.
    """

    def __init__(self, num_workers: int | None = None, timeout: float = 10.0,
                 custom_reward_fn: tuple[str, str] | None = None,
                 reward_kwargs: dict | None = None, max_logged_failures: int = 20) -> None:
        if num_workers is None:
            num_workers = default_num_workers()
        if int(num_workers) < 1:
            raise ValueError(f"RewardPool num_workers must be >= 1, got {num_workers}")
        if not timeout or timeout <= 0:
            raise ValueError(f"RewardPool timeout must be > 0 seconds, got {timeout}")
        self.num_workers = int(num_workers)
        self.timeout = float(timeout)
        self.reward_kwargs = dict(reward_kwargs or {})
        self.max_logged_failures = max_logged_failures
        self._custom = None
        custom_spec = None
        if custom_reward_fn is not None:
            path, name = custom_reward_fn
            self._custom = load_custom_reward_fn(path, name)  # fails here, early
            custom_spec = ("file", os.path.abspath(path), name)
        self._init_msg = ("init", _encode_registry(), custom_spec, self.reward_kwargs)
        pickle.dumps(self._init_msg)  # unpicklable options fail here, not in a worker
        self.stats: dict[str, int] = {"reward/samples": 0, "reward/timeouts": 0,
                                      "reward/errors": 0, "reward/worker_restarts": 0}
        self.last_metrics: dict[str, int] = {"reward/timeouts": 0, "reward/errors": 0}
        self._logged = 0
        self._init_failures = 0
        self._lock = threading.Lock()
        self._closed = False
        self._procs: dict[int, subprocess.Popen] = {}
        self._finalizer = weakref.finalize(self, _shutdown, self._procs)
        # one long-lived thread launches every worker: PR_SET_PDEATHSIG fires when the launching
        # *thread* exits, so launching from short-lived caller threads would kill live workers
        self._launcher = ThreadPoolExecutor(1, thread_name_prefix="reward-pool-launcher")
        self._workers: list[_Worker] = []
        try:
            for _ in range(self.num_workers):
                self._workers.append(self._spawn())
        except BaseException:
            self.close()
            raise

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker (politely, then SIGKILL) and release the pipes."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for w in self._workers:
                try:
                    w.tasks.send(("stop",))
                except (OSError, ValueError):
                    pass
            deadline = time.monotonic() + 2.0
            for w in self._workers:
                try:
                    w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                w.kill()
                self._procs.pop(w.proc.pid, None)
            self._workers.clear()
            self._finalizer()
            self._launcher.shutdown(wait=True)

    def wait_ready(self, timeout: float | None = 60.0) -> None:
        """Block until every worker has started (imported its scorers); optional, for benchmarks
        and tests: :meth:`score` waits for workers by itself."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._closed:
                raise RuntimeError("RewardPool is closed")
            self._run([], ready_deadline=deadline)

    @property
    def pids(self) -> list[int]:
        """PIDs of the current worker processes."""
        return [w.proc.pid for w in self._workers]

    def _spawn(self) -> _Worker:
        task_r, task_w = os.pipe()
        res_r, res_w = os.pipe()
        env = dict(os.environ)
        paths = [p or os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, "1")
        cmd = [sys.executable, "-c", "from relift.rewards.pool import _worker_main; _worker_main()",
               str(task_r), str(res_w), str(os.getpid())]
        try:
            proc = self._launcher.submit(subprocess.Popen, cmd, env=env, stdin=subprocess.DEVNULL,
                                         pass_fds=(task_r, res_w), close_fds=True).result()
        finally:
            os.close(task_r)
            os.close(res_w)
        worker = _Worker(proc, Connection(task_w, readable=False), Connection(res_r, writable=False))
        self._procs[proc.pid] = proc
        worker.tasks.send(self._init_msg)
        return worker

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._procs.pop(worker.proc.pid, None)
        self._workers.remove(worker)
        self._workers.append(self._spawn())
        self.stats["reward/worker_restarts"] += 1

    # -- scoring --------------------------------------------------------------------------------

    def score(self, data_sources: Sequence[str], solution_strs: Sequence[str],
              ground_truths: Sequence[Any], extra_infos: Sequence[Any] | None = None) -> list[dict]:
        """Score a batch; one dict per sample with ``score``, ``timeout``, ``error`` and the
        scorer's extra fields (``acc``, ``pred``, ``format``...).

        Keys are the same for every row: a field some rows lack is None there, except ``acc``,
        which is 0.0 on a timeout/error.  Counters for this batch are in :attr:`last_metrics`.
        """
        n = len(solution_strs)
        if extra_infos is None:
            extra_infos = [None] * n
        lengths = {"data_sources": len(data_sources), "solution_strs": n,
                   "ground_truths": len(ground_truths), "extra_infos": len(extra_infos)}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"RewardPool.score needs equal lengths, got {lengths}")
        data_sources = [str(s) for s in data_sources]
        if self._custom is None:  # unknown data_source is bad input: fail early, in the caller
            for source in dict.fromkeys(data_sources):
                registry.get_reward_fn(source)
        items = [(i, data_sources[i], solution_strs[i], ground_truths[i], extra_infos[i])
                 for i in range(n)]
        with self._lock:
            if self._closed:
                raise RuntimeError("RewardPool is closed")
            try:
                raw = self._run(items) if n else []
            except BaseException:
                # workers still holding items of this batch would answer the next one with stale
                # results: replace them before letting the error through
                for w in [w for w in self._workers if w.chunk]:
                    self._replace(w)
                raise
        return self._finish(raw, items)

    def _run(self, items: list[tuple], ready_deadline: float | None = None) -> list[tuple]:
        """Schedule ``items`` over the workers; returns (result, error, timed_out) per item.

        With ``ready_deadline`` (a ``time.monotonic()`` value, or inf) also keep going until
        every worker is ready, raising ``TimeoutError`` past the deadline.
        """
        n = len(items)
        chunk_size = max(1, min(64, math.ceil(n / (4 * self.num_workers))))
        pending: deque = deque(items[i:i + chunk_size] for i in range(0, n, chunk_size))
        out: list = [None] * n
        remaining = n
        while remaining or (ready_deadline is not None
                            and not all(w.ready for w in self._workers)):
            now = time.monotonic()
            if not remaining and now > ready_deadline:
                raise TimeoutError("reward workers are not ready yet")
            for w in list(self._workers):
                if w.ready and not w.chunk and pending:
                    chunk = pending.popleft()
                    try:
                        w.tasks.send(("batch", chunk))
                    except OSError:  # it died while idle (OOM killer, someone's kill -9)
                        pending.appendleft(chunk)
                        self._replace(w)
                        continue
                    w.chunk.extend(chunk)
                    w.started = time.monotonic()
            busy = [w for w in self._workers if w.chunk]
            wait_s = min((w.started + self.timeout - now for w in busy), default=1.0)
            wait_s = min(max(wait_s, 0.0), 1.0)
            for conn in wait([w.results for w in self._workers], timeout=wait_s):
                worker = next(w for w in self._workers if w.results is conn)
                try:
                    while conn.poll():
                        msg = conn.recv()
                        if msg[0] == "res":
                            _, idx, result, err = msg
                            worker.chunk.popleft()
                            worker.started = time.monotonic()
                            out[idx] = (result, err, False)
                            remaining -= 1
                        elif msg[0] == "ready":
                            worker.ready = True
                            self._init_failures = 0
                        elif msg[0] == "init_error":
                            self._raise_init_error(msg[1])
                except (EOFError, OSError):
                    code = worker.proc.poll()
                    if not worker.ready:
                        self._init_failures += 1
                        if self._init_failures > _SPAWN_RETRIES:
                            raise RuntimeError(f"reward workers keep dying at start-up (exit code "
                                               f"{code}); see the log above") from None
                    if worker.chunk:  # the item it was on crashed the process
                        idx = worker.chunk.popleft()[0]
                        out[idx] = (None, f"reward worker died (exit code {code})", False)
                        remaining -= 1
                        if worker.chunk:
                            pending.appendleft(list(worker.chunk))
                    self._replace(worker)
            now = time.monotonic()
            for w in list(self._workers):
                if w.chunk and now - w.started > self.timeout:
                    idx = w.chunk.popleft()[0]
                    out[idx] = (None, None, True)
                    remaining -= 1
                    if w.chunk:
                        pending.appendleft(list(w.chunk))
                    w.chunk.clear()
                    self._replace(w)
        return out

    def _raise_init_error(self, tb: str) -> None:
        # a worker that cannot import its scorers is a configuration error: stop and say why
        raise RuntimeError("a reward worker failed to start:\n" + tb)

    def _finish(self, raw: list[tuple], items: list[tuple]) -> list[dict]:
        rows: list[dict] = []
        timeouts = errors = 0
        for (result, err, timed_out), item in zip(raw, items):
            if result is not None:
                rows.append({**result, "timeout": False, "error": False})
                continue
            if timed_out:
                timeouts += 1
                reason = f"timed out after {self.timeout:g}s"
            else:
                errors += 1
                reason = f"raised {err}"
            self._log_failure(reason, item)
            rows.append({"score": 0.0, "timeout": timed_out, "error": not timed_out})
        keys = list(dict.fromkeys(k for row in rows for k in row))
        for row in rows:
            for key in keys:
                if key not in row:
                    row[key] = 0.0 if key == "acc" and (row["timeout"] or row["error"]) else None
        self.last_metrics = {"reward/timeouts": timeouts, "reward/errors": errors}
        self.stats["reward/samples"] += len(rows)
        self.stats["reward/timeouts"] += timeouts
        self.stats["reward/errors"] += errors
        return rows

    def _log_failure(self, reason: str, item: tuple) -> None:
        self._logged += 1
        if self._logged > self.max_logged_failures:
            if self._logged == self.max_logged_failures + 1:
                logger.warning("more reward timeouts/errors follow; they are counted in "
                               "reward/timeouts and reward/errors but no longer logged")
            return
        idx, data_source, solution, ground_truth, extra_info = item
        logger.warning("reward sample %d (data_source=%r) %s; scored 0. response=%s "
                       "ground_truth=%s extra_info=%s", idx, data_source, reason,
                       _truncate(solution), _truncate(ground_truth), _truncate(extra_info))
