"""The in-process backend: the same worker group calls without Ray, for debugging and for GPU
machines where Ray is not wanted.

Workers are built in the calling process and methods run there, in rank order. ``world_size`` is
1 by default; larger values simulate ranks (useful to exercise dispatch and padding in a debugger)
but such workers cannot join torch.distributed. Failures become the same
:class:`WorkerGroupError` as with Ray (node ``local``).
"""

from __future__ import annotations

import logging
from typing import Any

from relift.single_controller.errors import WorkerGroupError
from relift.single_controller.worker import DistInfo, _constructing_with, get_free_port
from relift.single_controller.worker_group import RayClassWithInitArgs, WorkerGroup

logger = logging.getLogger(__name__)

__all__ = ["InProcessWorkerGroup"]


class InProcessWorkerGroup(WorkerGroup):
    """A worker group whose workers are plain objects in this process."""

    def __init__(self, ray_cls_with_init: RayClassWithInitArgs | type, *args: Any, world_size: int = 1,
                 name_prefix: str | None = None, **kwargs: Any) -> None:
        if not isinstance(ray_cls_with_init, RayClassWithInitArgs):
            ray_cls_with_init = RayClassWithInitArgs(ray_cls_with_init, *args, **kwargs)
        elif args or kwargs:
            raise TypeError("pass constructor arguments inside RayClassWithInitArgs, not both")
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        spec = ray_cls_with_init
        super().__init__(name_prefix or spec.user_cls.__name__, world_size)
        self._user_cls = spec.user_cls
        self._workers: list[Any] = []
        port = get_free_port("127.0.0.1")
        for rank in range(world_size):
            info = DistInfo(rank=rank, world_size=world_size, local_rank=rank, local_world_size=world_size,
                            master_addr="127.0.0.1", master_port=port, group_name=self.name, backend="inprocess")
            try:
                with _constructing_with(info):
                    self._workers.append(spec.instantiate())
            except Exception as exc:
                raise WorkerGroupError(self.name, rank, "local", "__init__", exc, kind="raised") from exc
        self._bind_worker_methods(self._user_cls)

    @property
    def workers(self) -> list[Any]:
        """The worker objects themselves (handy in a debugger)."""
        return list(self._workers)

    def _execute(self, method: str, ranks: list[int], args: list[tuple[Any, ...]],
                 kwargs: list[dict[str, Any]]) -> list[Any]:
        if not self._workers and self._world_size:
            raise RuntimeError(f"worker group {self.name!r} has been shut down")
        out = []
        for r, a, kw in zip(ranks, args, kwargs):
            try:
                out.append(getattr(self._workers[r], method)(*a, **kw))
            except Exception as exc:
                raise WorkerGroupError(self.name, r, "local", method, exc, kind="raised") from exc
        return out

    def _gather(self, handles: list[Any], ranks: list[int], method: str) -> list[Any]:
        return list(handles)

    def shutdown(self) -> None:
        """Drop the workers, leaving the torch process group one of them created (the driver lives on)."""
        for worker in self._workers:
            destroy = getattr(worker, "destroy_process_group", None)
            if destroy is not None:
                destroy()
        self._workers.clear()
