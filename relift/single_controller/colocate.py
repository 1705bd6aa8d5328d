"""Several roles (actor, rollout, reference, ...) in one process per device.

``create_colocated_worker_cls({"actor": RayClassWithInitArgs(...), "ref": ...})`` returns one
worker class whose constructor builds every role in the same process, and whose methods are the
roles' registered methods named ``<role>_<method>``. A group of it is one set of processes;
``group.spawn(prefix_set)`` gives per-role views with the plain method names (verl's meaning).
"""

from __future__ import annotations

from typing import Any

from relift.single_controller.decorator import _ATTR, get_registered_methods
from relift.single_controller.worker import Worker
from relift.single_controller.worker_group import RayClassWithInitArgs

__all__ = ["create_colocated_worker_cls"]


def _forward(role: str, method: str, spec: Any) -> Any:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._relift_roles[role], method)(*args, **kwargs)

    call.__name__ = f"{role}_{method}"
    setattr(call, _ATTR, spec)
    return call


def create_colocated_worker_cls(class_dict: dict[str, RayClassWithInitArgs]) -> RayClassWithInitArgs:
    """One worker class holding all roles of ``class_dict`` (role name -> class with init args)."""
    specs = dict(class_dict)
    if not specs:
        raise ValueError("create_colocated_worker_cls needs at least one role")
    for role, spec in specs.items():
        if not isinstance(role, str) or not role.isidentifier():
            raise ValueError(f"role names must be identifiers, got {role!r}")
        if not isinstance(spec, RayClassWithInitArgs):
            raise TypeError(f"role {role!r}: expected a RayClassWithInitArgs, got {type(spec).__name__}")

    options: dict[str, Any] = {}
    for role, spec in specs.items():
        for key, value in spec.options.items():
            if key in options and options[key] != value:
                raise ValueError(f"roles disagree on the Ray option {key!r}: {options[key]!r} vs {value!r} ({role!r})")
            options[key] = value

    class ColocatedWorker(Worker):
        """All roles in one process; each role is a plain instance of its own worker class."""

        _relift_colocated_keys = tuple(specs)

        def __init__(self) -> None:
            # the roles read rank/world size from the same environment as this process
            self._relift_roles = {role: spec.instantiate() for role, spec in specs.items()}

        def relift_dispatch_info(self, mesh_name: str) -> tuple[int, bool] | None:
            """The first role's declaration for ``mesh_name`` (roles of one process share a rank)."""
            for role in self._relift_roles.values():
                info = role.relift_dispatch_info(mesh_name) if isinstance(role, Worker) else None
                if info is not None:
                    return info
            return None

        def relift_role_call(self, role: str, method: str, *args: Any, **kwargs: Any) -> Any:
            """Call any (also unregistered) method of one role; used by role views' execute_all."""
            return getattr(self._relift_roles[role], method)(*args, **kwargs)

    methods: dict[str, dict[str, str]] = {}
    for role, spec in specs.items():
        methods[role] = {}
        for name, mspec in get_registered_methods(spec.user_cls).items():
            fused = f"{role}_{name}"
            if hasattr(ColocatedWorker, fused):
                raise ValueError(f"colocated method name {fused!r} is used twice; rename a role or a method")
            setattr(ColocatedWorker, fused, _forward(role, name, mspec))
            methods[role][name] = fused
    ColocatedWorker._relift_colocated_methods = methods
    ColocatedWorker.__name__ = ColocatedWorker.__qualname__ = "Colocated_" + "_".join(specs)
    out = RayClassWithInitArgs(ColocatedWorker)
    out.update_options(options)
    return out
