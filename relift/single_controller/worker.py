"""The Worker base class: where a process learns its rank and joins torch.distributed.

A worker group starts one process per device and tells each its place through environment
variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``, the names torchrun uses, so libraries that read them just work). Rank 0 is
started first and, when no master address was given, publishes its node IP and a free port; the
group passes them to the other ranks. ``Worker.__new__`` reads all this before the subclass's
``__init__`` runs, so a subclass may use ``self.rank`` in its constructor and need not call
``super().__init__()``.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["Worker", "DistInfo", "get_free_port", "get_node_ip", "DEFAULT_DIST_TIMEOUT_S"]

#: Collectives fail after this many seconds instead of hanging (env ``RELIFT_DIST_TIMEOUT_S``).
DEFAULT_DIST_TIMEOUT_S = 600.0

ENV_GROUP_NAME = "RELIFT_WORKER_GROUP"
ENV_BACKEND = "RELIFT_CONTROLLER_BACKEND"  # "ray" or "inprocess"


def get_free_port(host: str = "") -> int:
    """A TCP port that is free right now on this machine (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def get_node_ip() -> str:
    """This node's IP as Ray sees it when Ray is connected; otherwise the host's outward IP."""
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - no Ray, or not connected: fall back to the socket trick
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


@dataclass
class DistInfo:
    """Where one worker stands in its group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    master_addr: str | None = None
    master_port: int | None = None
    group_name: str = "worker_group"
    backend: str = "inprocess"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DistInfo:
        env = dict(os.environ if env is None else env)

        def _int(key: str, default: int) -> int:
            try:
                return int(env.get(key, default))
            except ValueError as exc:
                raise ValueError(f"environment variable {key}={env.get(key)!r} is not an integer") from exc

        port = env.get("MASTER_PORT")
        return cls(rank=_int("RANK", 0), world_size=_int("WORLD_SIZE", 1), local_rank=_int("LOCAL_RANK", 0),
                   local_world_size=_int("LOCAL_WORLD_SIZE", 1), master_addr=env.get("MASTER_ADDR"),
                   master_port=int(port) if port else None, group_name=env.get(ENV_GROUP_NAME, "worker_group"),
                   backend=env.get(ENV_BACKEND, "inprocess"))

    def to_env(self) -> dict[str, str]:
        env = {"RANK": str(self.rank), "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": str(self.local_rank),
               "LOCAL_WORLD_SIZE": str(self.local_world_size), ENV_GROUP_NAME: self.group_name,
               ENV_BACKEND: self.backend}
        if self.master_addr is not None:
            env["MASTER_ADDR"] = self.master_addr
        if self.master_port is not None:
            env["MASTER_PORT"] = str(self.master_port)
        return env


# The in-process backend builds workers in the driver and must not rewrite the driver's environment:
# it hands the DistInfo over through this slot instead (read once by Worker.__new__).
_PENDING_INFO: list[DistInfo] = []


@contextlib.contextmanager
def _constructing_with(info: DistInfo) -> Iterator[None]:
    _PENDING_INFO.append(info)
    try:
        yield
    finally:
        _PENDING_INFO.pop()


class Worker:
    """Base class of everything a worker group runs: one instance per rank, one process per device.

    Subclasses decorate the methods the driver may call with :func:`register`. Call
    :meth:`init_process_group` (usually in an ``init_model`` method) before any collective.
    """

    _relift_dist: DistInfo

    def __new__(cls, *args: Any, **kwargs: Any) -> Worker:
        inst = super().__new__(cls)
        info = _PENDING_INFO[-1] if _PENDING_INFO else DistInfo.from_env()
        if info.rank == 0 and (info.master_addr is None or info.master_port is None):
            # rank 0 publishes where the process group meets; the group passes it to the others
            info.master_addr = info.master_addr or (get_node_ip() if info.world_size > 1 else "127.0.0.1")
            info.master_port = info.master_port or get_free_port()
            if not _PENDING_INFO:
                os.environ["MASTER_ADDR"] = info.master_addr
                os.environ["MASTER_PORT"] = str(info.master_port)
        inst._relift_dist = info
        return inst

    # ------------------------------------------------------------------ where am I
    @property
    def rank(self) -> int:
        return self._relift_dist.rank

    @property
    def world_size(self) -> int:
        return self._relift_dist.world_size

    @property
    def local_rank(self) -> int:
        """Index of this worker among the workers of its node."""
        return self._relift_dist.local_rank

    @property
    def local_world_size(self) -> int:
        return self._relift_dist.local_world_size

    @property
    def group_name(self) -> str:
        return self._relift_dist.group_name

    # ------------------------------------------------------------------ dispatch meshes
    def _register_dispatch_collect_info(self, mesh_name: str, dp_rank: int, is_collect: bool) -> None:
        """Declare this rank's place in a named mesh (see ``register(mesh=...)``); verl's name.

        E.g. a vLLM rollout with tensor parallel size ``tp``: ``dp_rank = rank // tp`` and
        ``is_collect = rank % tp == 0``.
        """
        if not hasattr(self, "_relift_meshes"):
            self._relift_meshes: dict[str, tuple[int, bool]] = {}
        self._relift_meshes[str(mesh_name)] = (int(dp_rank), bool(is_collect))

    def relift_dispatch_info(self, mesh_name: str) -> tuple[int, bool] | None:
        """This rank's (dp_rank, is_collect) in ``mesh_name``; None when it declared nothing."""
        return getattr(self, "_relift_meshes", {}).get(str(mesh_name))

    def get_master_addr_port(self) -> tuple[str | None, int | None]:
        return self._relift_dist.master_addr, self._relift_dist.master_port

    @property
    def device(self) -> torch.device:
        """The device this worker computes on: its GPU when it has one, else the CPU.

        Ray narrows ``CUDA_VISIBLE_DEVICES`` to the worker's own GPU, so that GPU is index 0; when
        several GPUs are visible (no Ray), ``local_rank`` picks one.
        """
        if not torch.cuda.is_available():
            return torch.device("cpu")
        count = torch.cuda.device_count()
        return torch.device("cuda", self.local_rank if count > 1 and self.local_rank < count else 0)

    # ------------------------------------------------------------------ torch.distributed
    def init_process_group(self, backend: str = "auto", timeout_s: float | None = None) -> str:
        """Join this group's torch.distributed process group (idempotent); returns the backend.

        ``auto`` is gloo on CPU and ``cpu:gloo,cuda:nccl`` on GPU (so CPU tensors still work).
        Every collective then fails after ``timeout_s`` (default ``RELIFT_DIST_TIMEOUT_S`` or 600 s)
        instead of hanging when a peer died.
        """
        import torch.distributed as dist

        info = self._relift_dist
        if timeout_s is None:
            timeout_s = float(os.environ.get("RELIFT_DIST_TIMEOUT_S", DEFAULT_DIST_TIMEOUT_S))
        if backend == "auto":
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        if dist.is_initialized():
            if dist.get_world_size() != info.world_size or dist.get_rank() != info.rank:
                raise RuntimeError(f"torch.distributed is already initialised as rank {dist.get_rank()} of "
                                   f"{dist.get_world_size()}, but this worker is rank {info.rank} of {info.world_size}")
            return str(dist.get_backend())
        if info.backend == "inprocess" and info.world_size > 1:
            raise RuntimeError(f"the in-process backend simulates {info.world_size} ranks in one process; "
                               "torch.distributed needs one process per rank: use RayWorkerGroup, or world_size=1")
        if info.master_addr is None or info.master_port is None:
            raise RuntimeError(f"rank {info.rank} has no MASTER_ADDR/MASTER_PORT; was it started by a worker group?")
        if torch.cuda.is_available() and "nccl" in backend:
            torch.cuda.set_device(self.device)
        logger.info("rank %d/%d joining %s process group at %s:%s (timeout %.0f s)", info.rank, info.world_size,
                    backend, info.master_addr, info.master_port, timeout_s)
        dist.init_process_group(backend=backend, init_method=f"tcp://{info.master_addr}:{info.master_port}",
                                rank=info.rank, world_size=info.world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
        self._relift_owns_process_group = True
        return backend

    def destroy_process_group(self) -> bool:
        """Leave the process group this worker created (no-op otherwise); returns True when it did.

        A Ray actor's group dies with its process; an in-process worker shares the driver's process,
        so its group calls this on shutdown, and the next trainer in the same process (a notebook, a
        test session) starts clean.
        """
        import torch.distributed as dist

        if not getattr(self, "_relift_owns_process_group", False):
            return False
        self._relift_owns_process_group = False
        if not dist.is_initialized():
            return False
        dist.destroy_process_group()
        return True
