"""A pool of reward worker processes with a hard per-sample timeout that a hang cannot stretch.

Why processes: math-verify/sympy can hang for ever on some answers (``\\boxed{9^{9^{9^{9^{9}}}}}``
spends its time in a C big-integer power that holds the GIL), and math-verify's own timeout relies
on ``signal.alarm``, which works only in the main thread.  The only reliable stop is killing the
process that runs the scorer, so every sample is scored in a worker process; a sample that runs past
``timeout`` seconds gets its worker SIGKILLed, and scores 0 with ``timeout=True``.  A scorer that
raises scores 0 with ``error=True`` and its message in ``error_msg``.  Either is counted in
:attr:`RewardPool.stats` / :attr:`RewardPool.last_metrics`; the first ``max_logged_failures`` are
logged with their input (at most 3 per batch), the others as one summary line per batch with
their count and most common reasons (never dropped silently).

How workers start: :mod:`relift.rewards.pool_worker` (a zygote interpreter that imports the
scorers once and forks workers in milliseconds; never a fork of this threaded process; modules a
scorer imports only when called are passed on to it, so later forks have them too).

Scheduling, and why a hang costs at most its timeout: a batch is cut into chunks (about four per
worker) handed to idle workers; each worker reports every sample as it finishes it, so the parent
knows when each sample started.  A sample still running after ``suspect_after`` seconds (a small
multiple (5x) of the mean sample time, 0.5 s at least, half the timeout at most) makes its worker a
suspect: the samples queued behind it go back to the queue at once, and two fresh workers are
forked (one in its place, one more because hangs come in clusters), so each round of suspicion
doubles the workers looking.  So every hung sample starts within a few ``suspect_after`` of the
batch start and ends at most ``timeout`` later, instead of waiting for the hangs before it.  A
suspect that finishes in time returns its result and is retired; one that reaches the timeout is
SIGKILLed and not waited for (a hang may hold gigabytes that take seconds to free).  At most ``max_extra_workers`` extra
processes live at once (beyond that, further hangs wait for a slot); extras are stopped when the
batch is done.  Nothing here uses signals in the parent, so :meth:`RewardPool.score` works from
any thread and inside Ray actors.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection, wait
from typing import Any

from relift.rewards import registry
from relift.rewards.custom import load_custom_reward_fn
from relift.rewards.pool_procs import ScorerProcess, WorkerHandle, kill_all
from relift.rewards.pool_worker import ZYGOTE_CMD, encode_registry

logger = logging.getLogger(__name__)

__all__ = ["RewardPool", "default_num_workers"]

_TRUNCATE = 300
_SPAWN_RETRIES = 3
_SUSPECT_MIN_S = 0.5  # a sample running this long (or 5x the mean) makes its worker a suspect
_ZYGOTE_START_S = 300.0
_LOG_PER_BATCH = 3  # failures of one batch logged in full; the rest are summarised


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


class RewardPool:
    """Score responses in worker processes with a hard per-sample timeout.

    Args:
        num_workers: worker processes (default :func:`default_num_workers`).
        timeout: seconds one sample may take; past it the sample scores 0, ``timeout=True``.
        custom_reward_fn: ``(path, name)`` of a function that replaces every registered scorer
            (verl's ``custom_reward_function``), called as ``fn(data_source, solution_str,
            ground_truth, extra_info, **reward_kwargs)``.
        reward_kwargs: options passed to every scorer call (e.g. ``require_think_format``).
        max_logged_failures: how many timeouts/errors get a warning with their input (at most 3
            per batch); the others are summarised in one warning per batch.
        max_extra_workers: processes allowed beyond ``num_workers`` while samples hang
            (default ``max(8, num_workers)``).

    Use as a context manager (``with RewardPool() as pool: pool.score(...)``) or call
    :meth:`close`.  The registry (including scorers registered by the caller) is copied into the
    workers when the pool starts, by reference.
    """

    def __init__(
        self,
        num_workers: int | None = None,
        timeout: float = 10.0,
        custom_reward_fn: tuple[str, str] | None = None,
        reward_kwargs: dict | None = None,
        max_logged_failures: int = 20,
        max_extra_workers: int | None = None,
    ) -> None:
        if num_workers is None:
            num_workers = default_num_workers()
        if int(num_workers) < 1:
            raise ValueError(f"RewardPool num_workers must be >= 1, got {num_workers}")
        if not timeout or timeout <= 0:
            raise ValueError(f"RewardPool timeout must be > 0 seconds, got {timeout}")
        self.num_workers = int(num_workers)
        self.timeout = float(timeout)
        self.max_extra_workers = (
            max(8, self.num_workers) if max_extra_workers is None else max(0, int(max_extra_workers))
        )
        self.reward_kwargs = dict(reward_kwargs or {})
        self.max_logged_failures = max_logged_failures
        self._custom = None
        custom_spec = None
        if custom_reward_fn is not None:
            path, name = custom_reward_fn
            self._custom = load_custom_reward_fn(path, name)  # fails here, early
            custom_spec = ("file", os.path.abspath(path), name)
        self._init_msg = ("init", encode_registry(), custom_spec, self.reward_kwargs)
        pickle.dumps(self._init_msg)  # unpicklable options fail here, not in a worker
        self.stats: dict[str, int] = {
            "reward/samples": 0,
            "reward/timeouts": 0,
            "reward/errors": 0,
            "reward/worker_restarts": 0,
        }
        self.last_metrics: dict[str, int] = {"reward/timeouts": 0, "reward/errors": 0}
        self._logged = 0
        self._init_failures = 0
        self._mean_s = 0.0  # running mean of one sample's scoring time
        self._lock = threading.Lock()
        self._closed = False
        self._procs: dict[int, Any] = {}
        self._finalizer = weakref.finalize(self, kill_all, self._procs)
        # one long-lived thread launches the zygote: PR_SET_PDEATHSIG fires when the launching
        # *thread* exits, so launching from a short-lived caller thread would kill it
        self._launcher = ThreadPoolExecutor(1, thread_name_prefix="reward-pool-launcher")
        self._zygote: subprocess.Popen | None = None
        self._workers: list[WorkerHandle] = []
        self._dying: list[ScorerProcess] = []  # killed, maybe still freeing memory
        self._lazy_imports: dict[str, None] = {}  # modules the scorers imported when called (pool_worker)
        try:
            self._start_zygote()
            for _ in range(self.num_workers):
                self._workers.append(self._fork())
        except BaseException:
            self.close()
            raise

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker and the zygote (SIGKILL: workers hold no state) and release pipes."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for w in self._workers:
                w.kill()
                self._dying.append(w.proc)
            self._workers.clear()
            for proc in self._dying:
                proc.wait(5.0)
            self._dying.clear()
            self._stop_zygote()
            self._finalizer()
            self._launcher.shutdown(wait=True)

    def wait_ready(self, timeout: float | None = 60.0) -> None:
        """Block until every worker has reported ready; optional (for benchmarks and tests):
        :meth:`score` waits for workers by itself."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._closed:
                raise RuntimeError("RewardPool is closed")
            self._run([], ready_deadline=deadline)

    @property
    def pids(self) -> list[int]:
        """PIDs of the current worker processes."""
        return [w.proc.pid for w in self._workers]

    def _start_zygote(self) -> None:
        task_r, task_w = os.pipe()
        res_r, res_w = os.pipe()
        ctl_parent, ctl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        paths = [p or os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, "1")
        cmd = [sys.executable, "-c", ZYGOTE_CMD, str(task_r), str(res_w), str(ctl_child.fileno()), str(os.getpid())]
        try:
            proc = self._launcher.submit(
                subprocess.Popen,
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                pass_fds=(task_r, res_w, ctl_child.fileno()),
                close_fds=True,
            ).result()
        finally:
            os.close(task_r)
            os.close(res_w)
            ctl_child.close()
        self._zygote = proc
        self._procs[proc.pid] = proc
        self._z_tasks = Connection(task_w, readable=False)
        self._z_results = Connection(res_r, writable=False)
        self._z_ctl = ctl_parent
        self._z_tasks.send(self._init_msg)
        if not self._z_results.poll(_ZYGOTE_START_S):
            raise RuntimeError(f"the reward zygote did not start within {_ZYGOTE_START_S:g}s")
        try:
            msg = self._z_results.recv()
        except (EOFError, OSError):
            raise RuntimeError(
                f"the reward zygote died at start-up (exit code {proc.wait()}); see the log above"
            ) from None
        if msg[0] == "init_error":
            # a zygote that cannot import its scorers is a configuration error: stop and say why
            raise RuntimeError("a reward worker failed to start:\n" + msg[1])
        if self._lazy_imports:  # a restarted zygote: what the old one had learnt
            self._send_preload(list(self._lazy_imports))

    def _send_preload(self, names: list[str]) -> None:
        try:
            self._z_tasks.send(("preload", names))
        except OSError:  # the zygote died: the next fork restarts it, and this method resends
            pass

    def _stop_zygote(self) -> None:
        if self._zygote is None:
            return
        for conn in (self._z_tasks, self._z_results, self._z_ctl):
            try:
                conn.close()
            except OSError:
                pass
        self._zygote.kill()
        self._zygote.wait()
        self._procs.pop(self._zygote.pid, None)
        self._zygote = None

    def _fork(self) -> WorkerHandle:
        """A new worker, forked by the zygote (restarted once if it died)."""
        for attempt in range(2):
            task_r, task_w = os.pipe()
            res_r, res_w = os.pipe()
            try:
                socket.send_fds(self._z_ctl, [b"F"], [task_r, res_w])
                msg = self._z_results.recv() if self._z_results.poll(30.0) else None
            except (OSError, EOFError):
                msg = None
            finally:
                os.close(task_r)
                os.close(res_w)
            if msg is not None and msg[0] == "forked":
                proc = ScorerProcess(msg[1])
                self._procs[proc.pid] = proc
                return WorkerHandle(proc, Connection(task_w, readable=False), Connection(res_r, writable=False))
            os.close(task_w)
            os.close(res_r)
            if attempt == 0:
                logger.warning("the reward zygote stopped answering (%s); starting a new one", msg)
                self._stop_zygote()
                self._start_zygote()
        raise RuntimeError("reward workers cannot be started: the zygote keeps failing")

    def _drop(self, worker: WorkerHandle) -> None:
        worker.kill()
        self._workers.remove(worker)
        self._dying.append(worker.proc)
        for proc in [p for p in self._dying if not p.alive()]:
            proc.wait(0.0)  # releases its pidfd
            self._dying.remove(proc)
            self._procs.pop(proc.pid, None)

    def _top_up(self) -> None:
        """Fork workers until ``num_workers`` + one per suspect are healthy (within the cap).

        One extra per suspect, not just a replacement: hangs come in clusters (one bad checkpoint
        writes the same monster answer many times), and finding them one worker at a time would
        cost ``suspect_after`` per round of ``num_workers`` hangs."""
        cap = self.num_workers + self.max_extra_workers
        suspects = sum(w.suspect for w in self._workers)
        while len(self._workers) - suspects < self.num_workers + suspects and len(self._workers) < cap:
            self._workers.append(self._fork())

    def _trim(self) -> None:
        """After a batch: stop idle extras beyond ``num_workers``, the newest first."""
        excess = len(self._workers) - self.num_workers
        for w in [w for w in reversed(self._workers) if not w.chunk][: max(0, excess)]:
            self._drop(w)

    # -- scoring --------------------------------------------------------------------------------

    def score(
        self,
        data_sources: Sequence[str],
        solution_strs: Sequence[str],
        ground_truths: Sequence[Any],
        extra_infos: Sequence[Any] | None = None,
    ) -> list[dict]:
        """Score a batch; one dict per sample with ``score``, ``timeout``, ``error``,
        ``error_msg`` (None, or why the sample scored 0) and the scorer's extra fields
        (``acc``, ``pred``, ``format``...).

        Keys are the same for every row: a field some rows lack is None there, except ``acc``,
        which is 0.0 on a timeout/error.  Counters for this batch are in :attr:`last_metrics`.
        """
        n = len(solution_strs)
        if extra_infos is None:
            extra_infos = [None] * n
        lengths = {
            "data_sources": len(data_sources),
            "solution_strs": n,
            "ground_truths": len(ground_truths),
            "extra_infos": len(extra_infos),
        }
        if len(set(lengths.values())) != 1:
            raise ValueError(f"RewardPool.score needs equal lengths, got {lengths}")
        data_sources = [str(s) for s in data_sources]
        if self._custom is None:  # unknown data_source is bad input: fail early, in the caller
            for source in dict.fromkeys(data_sources):
                registry.get_reward_fn(source)
        items = [(i, data_sources[i], solution_strs[i], ground_truths[i], extra_infos[i]) for i in range(n)]
        with self._lock:
            if self._closed:
                raise RuntimeError("RewardPool is closed")
            try:
                raw = self._run(items) if n else []
            except BaseException:
                # workers still holding items of this batch would answer the next one with stale
                # results: replace them before letting the error through
                for w in [w for w in self._workers if w.chunk]:
                    self._drop(w)
                    self.stats["reward/worker_restarts"] += 1
                self._top_up()
                raise
        return self._finish(raw, items)

    def _suspect_after(self) -> float:
        return min(self.timeout / 2, max(_SUSPECT_MIN_S, 5 * self._mean_s))

    def _run(self, items: list[tuple], ready_deadline: float | None = None) -> list[tuple]:
        """Schedule ``items`` over the workers; returns (result, error, timed_out) per item.

        With ``ready_deadline`` (a ``time.monotonic()`` value, or inf) also keep going until
        every worker is ready, raising ``TimeoutError`` past the deadline.
        """
        n = len(items)
        chunk_size = max(1, min(64, math.ceil(n / (4 * self.num_workers))))
        pending: deque = deque(items[i : i + chunk_size] for i in range(0, n, chunk_size))
        out: list = [None] * n
        remaining = n
        self._top_up()
        while remaining or (ready_deadline is not None and not all(w.ready for w in self._workers)):
            now = time.monotonic()
            if not remaining and now > ready_deadline:
                raise TimeoutError("reward workers are not ready yet")
            for w in list(self._workers):
                if w.ready and not w.chunk and not w.suspect and pending:
                    chunk = pending.popleft()
                    try:
                        w.tasks.send(("batch", chunk))
                    except OSError:  # it died while idle (OOM killer, someone's kill -9)
                        pending.appendleft(chunk)
                        self._drop(w)
                        self.stats["reward/worker_restarts"] += 1
                        self._top_up()
                        continue
                    w.chunk.extend(chunk)
                    w.started = time.monotonic()
            suspect_after = self._suspect_after()
            busy = [w for w in self._workers if w.chunk]
            wait_s = min((w.started + (self.timeout if w.suspect else suspect_after) - now for w in busy), default=1.0)
            wait_s = min(max(wait_s, 0.0), 1.0)
            for conn in wait([w.results for w in self._workers], timeout=wait_s):
                worker = next((w for w in self._workers if w.results is conn), None)
                if worker is not None:
                    remaining -= self._read(worker, out, pending)
            now = time.monotonic()
            for w in list(self._workers):
                if not w.chunk:
                    continue
                if now - w.started > self.timeout:
                    out[w.chunk.popleft()[0]] = (None, None, True)
                    remaining -= 1
                    if w.chunk:
                        pending.appendleft(list(w.chunk))
                    w.chunk.clear()
                    self._drop(w)
                    self.stats["reward/worker_restarts"] += 1
                    self._top_up()
                elif not w.suspect and now - w.started > suspect_after:
                    # maybe hung: what waits behind it goes elsewhere now, and a fresh worker
                    # keeps the pool at full strength (a hang costs its timeout, not more)
                    w.suspect = True
                    head = w.chunk.popleft()
                    if w.chunk:
                        pending.appendleft(list(w.chunk))
                    w.chunk.clear()
                    w.chunk.append(head)
                    self._top_up()
        if items:
            self._trim()
        return out

    def _read(self, worker: WorkerHandle, out: list, pending: deque) -> int:
        """Take ``worker``'s messages; returns how many samples got their result."""
        done = 0
        try:
            while worker.results.poll():
                msg = worker.results.recv()
                if msg[0] == "res":
                    _, idx, result, err = msg
                    head = worker.chunk.popleft()
                    assert head[0] == idx, (head[0], idx)
                    now = time.monotonic()
                    self._mean_s = 0.9 * self._mean_s + 0.1 * (now - worker.started)
                    worker.started = now
                    out[idx] = (result, err, False)
                    done += 1
                    if worker.suspect:  # the rest of what it was sent is queued elsewhere
                        self._drop(worker)
                        return done
                elif msg[0] == "ready":
                    worker.ready = True
                    self._init_failures = 0
                elif msg[0] == "imported":  # a scorer imported modules lazily: later forks get them
                    new = [name for name in msg[1] if name not in self._lazy_imports]
                    self._lazy_imports.update(dict.fromkeys(new))
                    if new:
                        self._send_preload(new)
        except (EOFError, OSError):
            if not worker.ready:
                self._init_failures += 1
                if self._init_failures > _SPAWN_RETRIES:
                    raise RuntimeError("reward workers keep dying at start-up; see the log above") from None
            if worker.chunk:  # the item it was on crashed the process
                idx = worker.chunk.popleft()[0]
                out[idx] = (None, "reward worker died (killed, or the scorer crashed the process)", False)
                done += 1
                if worker.chunk:
                    pending.appendleft(list(worker.chunk))
                worker.chunk.clear()
            self._drop(worker)
            self.stats["reward/worker_restarts"] += 1
            self._top_up()
        return done

    def _finish(self, raw: list[tuple], items: list[tuple]) -> list[dict]:
        rows: list[dict] = []
        failed: list[tuple[str, tuple]] = []
        timeouts = errors = 0
        for (result, err, timed_out), item in zip(raw, items):
            if result is not None:
                rows.append({**result, "timeout": False, "error": False, "error_msg": None})
                continue
            if timed_out:
                timeouts += 1
                reason = f"timed out after {self.timeout:g}s"
            else:
                errors += 1
                reason = f"raised {err}"
            failed.append((reason, item))
            rows.append({"score": 0.0, "timeout": timed_out, "error": not timed_out, "error_msg": reason})
        keys = list(dict.fromkeys(k for row in rows for k in row))
        for row in rows:
            for key in keys:
                if key not in row:
                    row[key] = 0.0 if key == "acc" and (row["timeout"] or row["error"]) else None
        self._log_failures(failed, len(rows))
        self.last_metrics = {"reward/timeouts": timeouts, "reward/errors": errors}
        self.stats["reward/samples"] += len(rows)
        self.stats["reward/timeouts"] += timeouts
        self.stats["reward/errors"] += errors
        return rows

    def _log_failures(self, failed: list[tuple[str, tuple]], batch_size: int) -> None:
        """At most 3 failures per batch in full (``max_logged_failures`` over the pool's life),
        then one summary line per batch with the counts and the most common reasons."""
        rest = []
        for n_batch, (reason, item) in enumerate(failed):
            if self._logged >= self.max_logged_failures or n_batch >= _LOG_PER_BATCH:
                rest.append(reason)
                continue
            self._logged += 1
            idx, data_source, solution, ground_truth, extra_info = item
            logger.warning(
                "reward sample %d (data_source=%r) %s; scored 0. response=%s ground_truth=%s extra_info=%s",
                idx,
                data_source,
                reason,
                _truncate(solution),
                _truncate(ground_truth),
                _truncate(extra_info),
            )
        if rest:
            common = Counter(_truncate(r, 120) for r in rest).most_common(3)
            logger.warning(
                "reward: %d more failure(s) of %d samples in this batch, not logged one by one; most common: %s",
                len(rest),
                batch_size,
                "; ".join(f"{c}x {r}" for r, c in common),
            )
