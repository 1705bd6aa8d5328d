"""RayWorkerGroup: one Ray actor per slot of a resource pool, driven from a single controller.

Start-up: a zero-CPU task on rank 0's node picks a free port there, so rank 0's node publishes
MASTER_ADDR/MASTER_PORT before any worker starts; then all ranks start at once with that address
in their environment, and each reports node, pid and GPUs. A call is dispatched to the
ranks, and its results are gathered with ``ray.wait`` over all of them, so the first failure on
any rank surfaces at once as a :class:`WorkerGroupError` naming group, rank, node and method,
instead of the driver blocking on rank 0 while rank 3 is already dead.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from relift.protocol import DataProto
from relift.single_controller.decorator import get_registered_methods
from relift.single_controller.errors import WorkerGroupError
from relift.single_controller.resource_pool import PlacedBundle, RayResourcePool
from relift.single_controller.worker import DistInfo
from relift.single_controller.worker_group import RayClassWithInitArgs, WorkerGroup

logger = logging.getLogger(__name__)

__all__ = ["RayWorkerGroup"]

#: how long workers may take to start (construct) before the group gives up (env RELIFT_WORKER_INIT_TIMEOUT_S)
DEFAULT_INIT_TIMEOUT_S = 600.0


def _report(worker: Any) -> dict[str, Any]:
    """Runs inside an actor (via ``__ray_call__``): where it is and where its process group meets."""
    ctx = ray.get_runtime_context()
    addr, port = worker.get_master_addr_port()
    try:
        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    except Exception:  # noqa: BLE001
        gpu_ids = []
    return {"node_ip": ray.util.get_node_ip_address(), "node_id": ctx.get_node_id(), "pid": os.getpid(),
            "master_addr": addr, "master_port": port, "gpu_ids": gpu_ids}


class RayWorkerGroup(WorkerGroup):
    """Workers of one class on the slots of a :class:`RayResourcePool`; registered methods become
    methods of the group (see :func:`register`).

    ``name_prefix`` names the group in errors and its actors ``<name>:<rank>`` (it must be unique
    among live groups; default: class name + random suffix). ``env_vars`` go into every worker's
    environment. ``call_timeout_s`` (default none) bounds every call; ``init_timeout_s`` bounds
    start-up (default ``RELIFT_WORKER_INIT_TIMEOUT_S`` or 600 s).
    """

    _forwardable_results = True

    def __init__(self, resource_pool: RayResourcePool | None = None,
                 ray_cls_with_init: RayClassWithInitArgs | None = None, *, name_prefix: str | None = None,
                 env_vars: dict[str, str] | None = None, call_timeout_s: float | None = None,
                 init_timeout_s: float | None = None) -> None:
        if resource_pool is None or ray_cls_with_init is None:
            raise ValueError("RayWorkerGroup needs a resource_pool and a ray_cls_with_init")
        if not isinstance(ray_cls_with_init, RayClassWithInitArgs):
            raise TypeError(f"ray_cls_with_init must be a RayClassWithInitArgs, got {type(ray_cls_with_init).__name__}")
        name = name_prefix or f"{ray_cls_with_init.user_cls.__name__}_{uuid.uuid4().hex[:6]}"
        super().__init__(name, resource_pool.world_size)
        self.resource_pool = resource_pool
        self.call_timeout_s = call_timeout_s
        self._user_cls = ray_cls_with_init.user_cls
        self._workers: list[Any] = []
        self._info: list[dict[str, Any]] = []
        self._placed: list[PlacedBundle] = []
        timeout = init_timeout_s or float(os.environ.get("RELIFT_WORKER_INIT_TIMEOUT_S", DEFAULT_INIT_TIMEOUT_S))
        self._start(ray_cls_with_init, dict(env_vars or {}), timeout)
        self._bind_worker_methods(self._user_cls)

    # ------------------------------------------------------------------ start-up
    def _actor_options(self, spec: RayClassWithInitArgs, slot: PlacedBundle, env: dict[str, str]) -> dict[str, Any]:
        res = self.resource_pool.actor_resources()
        options: dict[str, Any] = {
            "num_cpus": res["num_cpus"], "num_gpus": res["num_gpus"],
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                placement_group=slot.placement_group, placement_group_bundle_index=slot.bundle_index,
                placement_group_capture_child_tasks=False),
            "name": f"{self.name}:{slot.rank}",
        }
        user_options = dict(spec.options)
        runtime_env = dict(user_options.pop("runtime_env", None) or {})
        env_vars = {"OMP_NUM_THREADS": str(max(1, int(res["num_cpus"]))), "TOKENIZERS_PARALLELISM": "false"}
        env_vars.update(runtime_env.get("env_vars") or {})
        env_vars.update(env)
        runtime_env["env_vars"] = env_vars
        options["runtime_env"] = runtime_env
        options.update(user_options)
        return options

    def _master_address(self, timeout: float) -> tuple[str, int]:
        """IP of rank 0's node and a port free there, found by a zero-CPU task pinned to that node.

        Probing from a throwaway task lets all ranks start at once (the address is in their
        environment before their constructors run) instead of waiting for rank 0 to construct.
        """
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        def free_port() -> int:  # nested, so it is shipped by value and imports nothing heavy
            import socket

            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("", 0))
                return int(s.getsockname()[1])

        slot = self._placed[0]
        task = ray.remote(num_cpus=0, max_retries=0)(free_port).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=slot.node_id, soft=False))
        try:
            port = ray.get(task.remote(), timeout=timeout)
        except Exception as exc:  # noqa: BLE001
            raise WorkerGroupError(self.name, 0, slot.node_ip, "<pick MASTER_PORT>", exc) from exc
        return slot.node_ip, int(port)

    def _start(self, spec: RayClassWithInitArgs, extra_env: dict[str, str], timeout: float) -> None:
        remote_cls = spec.cls if hasattr(spec.cls, "remote") and hasattr(spec.cls, "__ray_metadata__") \
            else ray.remote(spec.cls)
        self._placed = self.resource_pool.placed_bundles()
        t0 = time.monotonic()
        try:
            master_addr, master_port = self._start_workers(remote_cls, spec, extra_env, timeout, t0)
        except BaseException:
            self.shutdown()  # no half-started group keeps holding its slots
            raise
        logger.info("worker group %s: %d worker(s) of %s ready on %d node(s) in %.1f s (master %s:%s)", self.name,
                    self.world_size, self._user_cls.__name__, len({i["node_id"] for i in self._info}),
                    time.monotonic() - t0, master_addr, master_port)

    def _start_workers(self, remote_cls: Any, spec: RayClassWithInitArgs, extra_env: dict[str, str],
                       timeout: float, t0: float) -> tuple[str, int]:
        master_addr, master_port = self._master_address(timeout)
        for slot in self._placed:
            info = DistInfo(rank=slot.rank, world_size=self.world_size, local_rank=slot.bundle_index,
                            local_world_size=slot.local_world_size, master_addr=master_addr, master_port=master_port,
                            group_name=self.name, backend="ray")
            env = {**extra_env, **info.to_env()}
            actor = remote_cls.options(**self._actor_options(spec, slot, env)).remote(*spec.args, **spec.kwargs)
            self._workers.append(actor)
        ranks = list(range(self.world_size))
        refs = [w.__ray_call__.remote(_report) for w in self._workers]
        self._info = self._gather(refs, ranks, "__init__", timeout=max(1.0, timeout - (time.monotonic() - t0)))
        return master_addr, master_port

    # ------------------------------------------------------------------ introspection
    @property
    def workers(self) -> list[Any]:
        """The Ray actor handles, in rank order."""
        return list(self._workers)

    @property
    def worker_info(self) -> list[dict[str, Any]]:
        """Per rank: node_ip, node_id, pid, gpu_ids, master_addr, master_port."""
        return [dict(i) for i in self._info]

    @property
    def worker_names(self) -> list[str]:
        return [f"{self.name}:{r}" for r in range(self.world_size)]

    # ------------------------------------------------------------------ calls
    def _execute(self, method: str, ranks: list[int], args: list[tuple[Any, ...]],
                 kwargs: list[dict[str, Any]]) -> list[Any]:
        if not self._workers:
            raise RuntimeError(f"worker group {self.name!r} has been shut down")
        # a DataProto sent unchanged to several ranks goes into the object store once, not once per rank
        shared: dict[int, Any] = {}

        def share(value: Any) -> Any:
            if isinstance(value, DataProto) and len(ranks) > 1:
                key = id(value)
                if key not in shared:
                    shared[key] = ray.put(value)
                return shared[key]
            return value

        refs = []
        for r, a, kw in zip(ranks, args, kwargs):
            a = tuple(share(x) for x in a)
            kw = {k: share(v) for k, v in kw.items()}
            refs.append(getattr(self._workers[r], method).remote(*a, **kw))
        return refs

    def _gather(self, handles: list[Any], ranks: list[int], method: str, timeout: float | None = None) -> list[Any]:
        """Wait for all ranks; the first failure (in completion order) raises a WorkerGroupError."""
        timeout = self.call_timeout_s if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        rank_of = {ref: r for ref, r in zip(handles, ranks)}
        pending = list(handles)
        while pending:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, pending = ray.wait(pending, num_returns=1, timeout=remaining)
            if not ready:
                late = sorted(rank_of[p] for p in pending)
                raise self._error(late[0], method, TimeoutError(
                    f"rank(s) {late} did not finish {method!r} within {timeout:g} s"), kind="timeout")
            for ref in ready:
                try:
                    ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - every Ray failure becomes one clear error
                    raise self._error(rank_of[ref], method, exc) from exc
        return ray.get(list(handles))

    def _error(self, rank: int, method: str, exc: BaseException, kind: str | None = None) -> WorkerGroupError:
        info = self._info[rank] if rank < len(self._info) else {}
        node = info.get("node_ip") or (self._placed[rank].node_ip if rank < len(self._placed) else None)
        cause = getattr(exc, "cause", None) if type(exc).__name__.startswith("RayTaskError") else None
        if isinstance(cause, BaseException) and not type(cause).__name__.startswith("Ray"):
            # keep the remote traceback text but name the user's exception type
            err = WorkerGroupError(self.name, rank, node, method, exc, kind="raised", pid=info.get("pid"))
            err.remote_exception = cause  # type: ignore[attr-defined]
            return err
        return WorkerGroupError(self.name, rank, node, method, exc, kind=kind, pid=info.get("pid"))

    # ------------------------------------------------------------------ teardown
    def shutdown(self, release_resources: bool = False) -> None:
        """Kill this group's actors (and release the pool's placement groups when asked)."""
        for actor in self._workers:
            try:
                ray.kill(actor, no_restart=True)
            except Exception as exc:  # noqa: BLE001 - already dead
                logger.debug("killing a worker failed: %s", exc)
        self._workers.clear()
        if release_resources:
            self.resource_pool.shutdown()

    def __repr__(self) -> str:
        return (f"RayWorkerGroup({self.name!r}, world_size={self.world_size}, "
                f"methods={sorted(get_registered_methods(self._user_cls))})")
