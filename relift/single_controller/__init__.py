"""The single controller: one driver process, worker groups of processes, one DataProto currency.

verl's vocabulary: a :class:`Worker` subclass marks methods with :func:`register` (a
:class:`Dispatch` and an :class:`Execute` mode); a :class:`RayResourcePool` reserves devices per
node; :class:`RayWorkerGroup` starts one worker per device and exposes the registered methods;
:func:`create_colocated_worker_cls` puts several roles in one process per device, and
``group.spawn(prefix_set)`` splits them back into role views. :class:`InProcessWorkerGroup` runs
the same calls without Ray. :func:`init_ray` joins or starts the Ray cluster.

Ray-dependent names are imported on first use, so ``Worker``/``register`` and the in-process
backend work where Ray is not installed or not wanted.
"""

from __future__ import annotations

import importlib
from typing import Any

from relift.single_controller.colocate import create_colocated_worker_cls
from relift.single_controller.decorator import Dispatch, Execute, register
from relift.single_controller.errors import ResourceRequestError, WorkerGroupError
from relift.single_controller.inprocess import InProcessWorkerGroup
from relift.single_controller.worker import Worker
from relift.single_controller.worker_group import (
    ClassWithInitArgs,
    RayClassWithInitArgs,
    WorkerGroup,
    WorkerGroupFuture,
)

_LAZY = {
    "RayResourcePool": "relift.single_controller.resource_pool",
    "RayWorkerGroup": "relift.single_controller.ray_backend",
    "init_ray": "relift.single_controller.ray_init",
}

__all__ = ["Worker", "register", "Dispatch", "Execute", "RayClassWithInitArgs", "ClassWithInitArgs",
           "WorkerGroup", "WorkerGroupFuture", "InProcessWorkerGroup", "create_colocated_worker_cls",
           "WorkerGroupError", "ResourceRequestError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
