"""What every worker group shares: the worker class with its constructor arguments, the group
methods built from ``@register`` specs, and the futures that non-blocking calls return.

The Ray and in-process backends only differ in how a per-rank call runs and how its results are
gathered (:meth:`WorkerGroup._execute`, :meth:`WorkerGroup._gather`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from relift.protocol import DataProtoFuture
from relift.single_controller.decorator import (
    Dispatch,
    Execute,
    MeshInfo,
    MethodSpec,
    collect_results,
    dispatch_call,
    get_registered_methods,
)
from relift.single_controller.worker import Worker

logger = logging.getLogger(__name__)

__all__ = ["RayClassWithInitArgs", "ClassWithInitArgs", "WorkerGroup", "WorkerGroupFuture", "unwrap_worker_class"]


def unwrap_worker_class(cls: Any) -> type:
    """The plain Python class behind ``ray.remote(cls)`` (or ``cls`` itself when it is plain)."""
    meta = getattr(cls, "__ray_metadata__", None)
    if meta is not None:
        modified = meta.modified_class
        cls = getattr(modified, "__ray_actor_class__", modified)
    if not isinstance(cls, type):
        raise TypeError(f"expected a Worker subclass or ray.remote(Worker subclass), got {cls!r}")
    return cls


class RayClassWithInitArgs:
    """A worker class and the arguments its constructor gets on every rank.

    ``cls`` is ``ray.remote(SomeWorker)`` (verl's convention) or the plain ``SomeWorker`` class;
    ``update_options`` adds Ray actor options (e.g. ``{"runtime_env": ...}``) for every rank.
    """

    def __init__(self, cls: Any, *args: Any, **kwargs: Any) -> None:
        self.cls = cls
        self.args = args
        self.kwargs = kwargs
        self.options: dict[str, Any] = {}
        user_cls = unwrap_worker_class(cls)
        if not issubclass(user_cls, Worker):
            raise TypeError(f"{user_cls.__qualname__} must subclass relift.single_controller.Worker "
                            "(it learns its rank and the process-group address from it)")
        self.user_cls = user_cls

    def update_options(self, options: dict[str, Any]) -> None:
        self.options.update(options)

    def instantiate(self) -> Any:
        """Build the plain class in this process (the in-process backend and colocation use this)."""
        return self.user_cls(*self.args, **self.kwargs)

    def __repr__(self) -> str:
        return f"RayClassWithInitArgs({self.user_cls.__qualname__}, args={self.args!r}, kwargs={self.kwargs!r})"


ClassWithInitArgs = RayClassWithInitArgs


class WorkerGroupFuture(DataProtoFuture):
    """The result of a non-blocking group call: ``get()`` waits, checks every rank and collects.

    ``dp_chunks`` holds the per-rank result refs of an unpadded DP_COMPUTE_PROTO call, so passing
    this future to another data-parallel call of a group with the same world size sends each chunk
    straight to its rank without a round trip through the driver.
    """

    def __init__(self, futures: list[Any], collect_fn: Callable[[list[Any]], Any],
                 getter: Callable[[list[Any]], list[Any]], dp_chunks: list[Any] | None = None) -> None:
        super().__init__(futures, collect_fn, getter)
        self.dp_chunks = dp_chunks
        self._done = False
        self._value: Any = None

    def get(self) -> Any:
        if not self._done:
            self._value = super().get()
            self._done = True
        return self._value


class WorkerGroup:
    """Base of the worker groups: exposes each registered worker method as a group method."""

    #: results of these backends are handles (Ray refs) that can be forwarded without fetching
    _forwardable_results = False

    def __init__(self, name: str, world_size: int) -> None:
        self.name = name
        self._world_size = world_size
        self._method_specs: dict[str, MethodSpec] = {}
        self._method_names: dict[str, str] = {}
        self._role: str | None = None
        self._user_cls: type = object

    @property
    def world_size(self) -> int:
        return self._world_size

    # ------------------------------------------------------------------ method binding
    def _bind_worker_methods(self, user_cls: type, role: str | None = None) -> None:
        """Add one group method per ``@register``-ed method of ``user_cls``.

        With ``role`` (a role view of a colocated group), only that role's methods are bound, under
        their own names (the colocated class calls them ``<role>_<name>``).
        """
        specs = get_registered_methods(user_cls)
        if role is None:
            names = {m: m for m in specs}
        else:
            names = dict(user_cls._relift_colocated_methods[role])  # exposed -> fused name
        for exposed, actual in names.items():
            spec = specs[actual]
            if hasattr(type(self), exposed) or exposed in self.__dict__:
                raise ValueError(f"worker method {exposed!r} of {user_cls.__qualname__} clashes with an attribute "
                                 f"of {type(self).__name__}; rename it")
            self._method_specs[exposed] = spec
            self._method_names[exposed] = actual
            setattr(self, exposed, self._make_group_method(exposed, actual, spec))

    def spawn(self, prefix_set: Any) -> dict[str, WorkerGroup]:
        """Role views of a colocated group: ``{role: group}`` over the same workers, where each view
        exposes that role's methods without the ``<role>_`` prefix (verl's ``spawn``)."""
        roles = getattr(self._user_cls, "_relift_colocated_methods", None)
        if roles is None:
            raise TypeError(f"spawn() needs a group built from create_colocated_worker_cls; "
                            f"{self._user_cls.__name__} is a single worker class")
        prefixes = list(prefix_set)
        unknown = [p for p in prefixes if p not in roles]
        if unknown:
            raise KeyError(f"no role(s) {unknown} in this colocated group; it has {list(roles)}")
        return {p: self._view(p) for p in prefixes}

    def _view(self, role: str) -> WorkerGroup:
        view = object.__new__(type(self))
        view.__dict__.update({k: v for k, v in self.__dict__.items() if k not in self._method_specs})
        view.name = f"{self.name}/{role}"
        view._role = role
        view._method_specs = {}
        view._method_names = {}
        view._bind_worker_methods(self._user_cls, role=role)
        return view

    def _make_group_method(self, exposed: str, actual: str, spec: MethodSpec) -> Callable[..., Any]:
        def group_method(*args: Any, **kwargs: Any) -> Any:
            return self._call(actual, spec, args, kwargs, label=exposed)

        group_method.__name__ = exposed
        group_method.__qualname__ = f"{type(self).__name__}.{exposed}"
        group_method.__doc__ = (f"Run worker method {actual!r} ({spec.dispatch_mode.name}, {spec.execute_mode.name}, "
                                f"{'blocking' if spec.blocking else 'non-blocking'}).")
        return group_method

    @property
    def registered_methods(self) -> dict[str, MethodSpec]:
        return dict(self._method_specs)

    # ------------------------------------------------------------------ calls
    def _call(self, method: str, spec: MethodSpec, args: tuple[Any, ...], kwargs: dict[str, Any],
              label: str | None = None) -> Any:
        label = label or method
        mesh = self._mesh_info(spec.mesh) if spec.mesh is not None else None
        plan = dispatch_call(spec.dispatch_mode, spec.execute_mode, self._world_size, args, kwargs, method=label,
                             mesh=mesh)
        handles = self._execute(method, plan.ranks, plan.args, plan.kwargs)
        collect = functools.partial(self._collect, spec, plan, label)
        getter = functools.partial(self._gather, ranks=plan.ranks, method=label)
        if spec.blocking:
            return collect(getter(handles))
        dp_chunks = (handles if self._forwardable_results and spec.dispatch_mode is Dispatch.DP_COMPUTE_PROTO
                     and spec.execute_mode is Execute.ALL and plan.pad_size == 0 and mesh is None else None)
        return WorkerGroupFuture(handles, collect, getter, dp_chunks=dp_chunks)

    def _mesh_info(self, name: str) -> MeshInfo | None:
        """Ask every rank where it sits in mesh ``name`` (None: nobody declared it, plain DP).

        Asked on every call (one small round trip) because workers declare their place when they
        build their engine, which may happen after the group was created.
        """
        infos = self.execute_all_sync("relift_dispatch_info", name)
        if all(i is None for i in infos):
            return None
        missing = [r for r, i in enumerate(infos) if i is None]
        if missing:
            raise RuntimeError(f"worker group {self.name!r}: ranks {missing} declared no place in mesh {name!r} "
                               "but others did; every rank must call _register_dispatch_collect_info")
        return MeshInfo(name, tuple(int(i[0]) for i in infos), tuple(bool(i[1]) for i in infos))

    @staticmethod
    def _collect(spec: MethodSpec, plan: Any, label: str, outputs: list[Any]) -> Any:
        return collect_results(spec.dispatch_mode, spec.execute_mode, plan, outputs, method=label)

    def _route(self, method: str, args: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
        """In a role view, a method name means that role's method."""
        if self._role is None:
            return method, args
        if method in self._method_names:
            return self._method_names[method], args
        return "relift_role_call", (self._role, method, *args)

    def execute_all_async(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Call any worker method on every rank with the same arguments; returns per-rank handles."""
        n = self._world_size
        method, args = self._route(method, args)
        return self._execute(method, list(range(n)), [args] * n, [kwargs] * n)

    def execute_all_sync(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Call any worker method on every rank with the same arguments; returns per-rank results."""
        return self._gather(self.execute_all_async(method, *args, **kwargs), ranks=list(range(self._world_size)),
                            method=method)

    def shutdown(self) -> None:
        """Stop the workers (backends override)."""

    execute_all = execute_all_async

    def execute_rank_zero_sync(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call any worker method on rank 0 only and return its result."""
        label = method
        method, args = self._route(method, args)
        return self._gather(self._execute(method, [0], [args], [kwargs]), ranks=[0], method=label)[0]

    # ------------------------------------------------------------------ backend hooks
    def _execute(self, method: str, ranks: list[int], args: list[tuple[Any, ...]],
                 kwargs: list[dict[str, Any]]) -> list[Any]:
        """Start ``method`` on ``ranks``; returns handles (abstract: RayWorkerGroup and InProcessWorkerGroup)."""
        raise NotImplementedError

    def _gather(self, handles: list[Any], ranks: list[int], method: str) -> list[Any]:
        """Wait for the handles and return results, raising the first failure (abstract, as above)."""
        raise NotImplementedError
