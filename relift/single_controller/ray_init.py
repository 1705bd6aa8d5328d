"""init_ray: join the cluster the user pointed at, or start a private local one, and say which.

Resolution order (Ray's own): an explicit ``address`` argument, then ``RAY_ADDRESS``, then a
cluster started on this machine with ``ray start`` (recorded in ``<ray temp dir>/ray_current_cluster``);
with none of these a local Ray instance is started for this driver. Token authentication is left
as Ray sets it (on by default for new clusters); the dashboard, when started, listens on 127.0.0.1
unless ``dashboard_host`` says otherwise.

A local instance started here binds to the loopback interface only (GCS, raylet, object manager,
worker and agent ports all on 127.0.0.1; ``loopback=False`` restores Ray's default of the machine's
address). Ray turns ``_node_ip_address="127.0.0.1"`` into the machine's address unless it runs in its
single-machine mode, the one it uses on macOS and Windows
(``ray._private.services.get_node_ip_address``: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` / the
``ENABLE_RAY_CLUSTER`` constant); that mode is switched on for the start of a local instance.
No other machine can then join it, which is the point: a multi-node cluster is started with
``ray start`` and joined (docs/multinode.md).

:func:`check_topology` compares ``trainer.nnodes`` x ``trainer.n_gpus_per_node`` with the alive
nodes of the cluster, so a run never silently packs two "nodes" onto one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import ray

from relift.single_controller.errors import TopologyError

logger = logging.getLogger(__name__)

__all__ = ["init_ray", "default_worker_env", "find_existing_cluster", "check_topology", "TopologyError"]


def default_worker_env() -> dict[str, str]:
    """Environment every worker process gets unless the caller overrides it."""
    return {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "NCCL_DEBUG": os.environ.get("NCCL_DEBUG", "WARN")}


def _reachable(address: str, timeout_s: float = 2.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def find_existing_cluster() -> tuple[str | None, str]:
    """(address, where it came from) of the cluster ``ray.init()`` would join, or (None, reason).

    A cluster file left behind by a dead ``ray start`` cluster is reported as stale, not returned.
    """
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env:
        return env, "RAY_ADDRESS"
    try:
        from ray._common.utils import get_ray_address_file  # where `ray start` records its cluster

        path = get_ray_address_file(None)
    except Exception as exc:  # noqa: BLE001 - private Ray helper moved: let ray.init decide
        logger.debug("could not look for a running cluster: %s", exc)
        return None, "no RAY_ADDRESS"
    if os.path.exists(path):
        with open(path) as f:
            addr = f.read().strip()
        if addr and _reachable(addr):
            return addr, f"`ray start` cluster recorded in {path}"
        if addr:
            return None, f"no RAY_ADDRESS; {path} names {addr}, which does not answer (stale)"
    return None, "no RAY_ADDRESS and no `ray start` cluster on this machine"


def init_ray(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
             object_store_memory: int | None = None, include_dashboard: bool = False,
             dashboard_host: str = "127.0.0.1", env_vars: dict[str, str] | None = None,
             namespace: str | None = None, log_to_driver: bool = True, loopback: bool = True,
             **ray_init_kwargs: Any) -> dict[str, Any]:
    """Connect this driver to Ray; returns ``{"mode": "joined"|"started"|"already", "address", "nodes", "resources"}``.

    ``address="local"`` always starts a fresh local instance. ``num_cpus``/``num_gpus``/
    ``object_store_memory`` size a local instance and are ignored (with a warning) when joining.
    ``env_vars`` are merged over :func:`default_worker_env` and set in every worker process.
    """
    if ray.is_initialized():
        ctx = ray.get_runtime_context()
        logger.info("Ray is already initialised (gcs %s); using it", ctx.gcs_address)
        return {"mode": "already", "address": ctx.gcs_address, "nodes": len([n for n in ray.nodes() if n["Alive"]]),
                "resources": ray.cluster_resources()}
    source = "argument"
    if address is None:
        address, source = find_existing_cluster()
    worker_env = {**default_worker_env(), **(env_vars or {})}
    runtime_env = dict(ray_init_kwargs.pop("runtime_env", None) or {})
    runtime_env["env_vars"] = {**worker_env, **(runtime_env.get("env_vars") or {})}
    kwargs: dict[str, Any] = {"runtime_env": runtime_env, "log_to_driver": log_to_driver, **ray_init_kwargs}
    if namespace is not None:
        kwargs["namespace"] = namespace
    joining = address not in (None, "local")
    if joining:
        ignored = {k: v for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus),
                                     ("object_store_memory", object_store_memory)) if v is not None}
        if ignored:
            logger.warning("joining an existing Ray cluster: ignoring %s (they size a new local instance only; "
                           "set them on `ray start` instead)", ignored)
        logger.info("joining Ray cluster at %s (from %s)", address, source)
        # let Ray resolve RAY_ADDRESS / the cluster file itself so its token-auth handling applies
        ray_address = address if source == "argument" else (None if source == "RAY_ADDRESS" else "auto")
        ray.init(address=ray_address, **kwargs)
        mode = "joined"
    else:
        logger.info("starting a local Ray instance (%s)", source if address is None else "address='local'")
        if loopback:
            kwargs.setdefault("_node_ip_address", "127.0.0.1")
        with _single_machine_mode(loopback):
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=object_store_memory,
                     include_dashboard=include_dashboard, dashboard_host=dashboard_host, **kwargs)
        mode = "started"
    nodes = [n for n in ray.nodes() if n["Alive"]]
    resources = ray.cluster_resources()
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled

        auth = "on" if is_token_auth_enabled() else "off"
    except Exception:  # noqa: BLE001
        auth = "unknown"
    logger.info("Ray %s: %d node(s), CPU %g, GPU %g, token auth %s", mode, len(nodes), resources.get("CPU", 0),
                resources.get("GPU", 0), auth)
    return {"mode": mode, "address": ray.get_runtime_context().gcs_address, "nodes": len(nodes),
            "resources": resources, "token_auth": auth}


@contextlib.contextmanager
def _single_machine_mode(on: bool) -> Iterator[None]:
    """Ray's single-machine mode while a local instance starts, so that it keeps 127.0.0.1."""
    constants = None
    if on:
        try:
            from ray._private import ray_constants as constants  # noqa: PLC0415
        except ImportError:  # private module moved: the instance binds as Ray decides
            logger.warning("could not switch Ray to loopback-only; the local instance binds as Ray decides")
    old = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if constants is not None:
            constants.ENABLE_RAY_CLUSTER = old


def _node_summary(node: dict[str, Any]) -> str:
    res = node.get("Resources") or {}
    return f"{node.get('NodeManagerAddress', '?')} (CPU {res.get('CPU', 0):g}, GPU {res.get('GPU', 0):g})"


def check_topology(nnodes: int, per_node: int, *, use_gpu: bool, cpus_per_worker: float = 1.0,
                   nodes: list[dict[str, Any]] | None = None) -> None:
    """Raise :class:`TopologyError` unless ``nnodes`` alive nodes each hold ``per_node`` workers.

    A worker needs one GPU (``use_gpu``) or ``cpus_per_worker`` CPUs. ``nodes`` defaults to
    ``ray.nodes()``; the error names what was asked and every alive node with its resources.
    """
    nodes = [n for n in (ray.nodes() if nodes is None else nodes) if n.get("Alive")]
    key, need = ("GPU", float(per_node)) if use_gpu else ("CPU", float(per_node) * cpus_per_worker)
    fitting = [n for n in nodes if float((n.get("Resources") or {}).get(key, 0)) >= need]
    if len(fitting) >= nnodes:
        return
    unit = "GPU(s)" if use_gpu else "CPU(s)"
    raise TopologyError(
        f"trainer.nnodes={nnodes} x trainer.n_gpus_per_node={per_node} asks for {nnodes} node(s) with "
        f"{need:g} {unit} each, but the Ray cluster has {len(nodes)} alive node(s), {len(fitting)} with that "
        f"many: {'; '.join(_node_summary(n) for n in nodes) or 'none'}. Set trainer.nnodes / "
        "trainer.n_gpus_per_node to what the cluster has, or add nodes (ray start --address=...)")
