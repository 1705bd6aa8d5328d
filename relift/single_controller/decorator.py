"""``register``: how a worker method is spread over a group and how its results come back.

A dispatch mode turns one call on the driver into one call per rank (replicate, hand out list
items, or cut a DataProto into world-size chunks); a collect function turns the per-rank results
back into one value. An execute mode says which ranks run it. The decorator only records the
choice on the function; the worker group reads it when it builds its methods.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from relift.protocol import DataProto, DataProtoFuture

__all__ = ["Dispatch", "Execute", "register", "MethodSpec", "get_registered_methods", "dispatch_call",
           "collect_results", "DispatchPlan", "MeshInfo"]

_ATTR = "__relift_register__"


class Dispatch(Enum):
    """How the arguments of one driver call reach the ranks (verl's names and meanings)."""

    RANK_ZERO = "rank_zero"                # only rank 0 is called, with the arguments as given
    ONE_TO_ALL = "one_to_all"              # every rank gets the same arguments; results as a list
    ALL_TO_ALL = "all_to_all"              # each argument is a list of world_size items; rank i gets item i
    DP_COMPUTE_PROTO = "dp_compute_proto"  # DataProto args cut into world_size chunks; results concatenated
    DP_COMPUTE_METRIC = "dp_compute_metric"  # DataProto args cut into chunks; results as a list


class Execute(Enum):
    """Which ranks run the call."""

    ALL = "all"
    RANK_ZERO = "rank_zero"


@dataclass(frozen=True)
class MethodSpec:
    dispatch_mode: Dispatch
    execute_mode: Execute
    blocking: bool
    mesh: str | None = None


@dataclass(frozen=True)
class MeshInfo:
    """Where each rank sits in a named data-parallel mesh (e.g. the rollout's TP x DP layout).

    ``dp_ranks[r]``: the data chunk rank ``r`` receives; ``collect[r]``: whether its result is kept.
    Ranks sharing a DP rank (a tensor-parallel group) get the same chunk; exactly one of them is
    collected. Workers declare their place with ``Worker._register_dispatch_collect_info``.
    """

    name: str
    dp_ranks: tuple[int, ...]
    collect: tuple[bool, ...]

    @property
    def dp_size(self) -> int:
        return max(self.dp_ranks) + 1

    def __post_init__(self) -> None:
        if len(self.dp_ranks) != len(self.collect) or not self.dp_ranks:
            raise ValueError(f"mesh {self.name!r}: need one (dp_rank, is_collect) per rank")
        size = max(self.dp_ranks) + 1
        for d in range(size):
            members = [r for r, x in enumerate(self.dp_ranks) if x == d]
            kept = [r for r in members if self.collect[r]]
            if not members:
                raise ValueError(f"mesh {self.name!r}: no rank has dp_rank {d} (dp_ranks={list(self.dp_ranks)})")
            if len(kept) != 1:
                raise ValueError(f"mesh {self.name!r}: dp_rank {d} (ranks {members}) must have exactly one collecting "
                                 f"rank, has {kept}")
        if min(self.dp_ranks) < 0:
            raise ValueError(f"mesh {self.name!r}: negative dp_rank in {list(self.dp_ranks)}")

    def collect_ranks(self) -> list[int]:
        """The kept ranks, in DP order."""
        return sorted((r for r, c in enumerate(self.collect) if c), key=lambda r: self.dp_ranks[r])


def register(dispatch_mode: Dispatch = Dispatch.ALL_TO_ALL, execute_mode: Execute | None = None,
             blocking: bool = True, mesh: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Expose a worker method on its worker group.

    ``execute_mode`` defaults to RANK_ZERO for ``Dispatch.RANK_ZERO`` and ALL otherwise.
    ``blocking=False`` makes the group method return a future (``.get()`` gives the result).
    ``mesh`` (data-parallel modes only): split the data by the DP ranks the workers declared for that
    mesh instead of by world rank, so the ranks of one tensor-parallel group (vLLM with
    ``tensor_parallel_size > 1``) get identical inputs and one result per group is kept (verl's
    ``make_nd_compute_dataproto_dispatch_fn``). Workers that declared nothing for the mesh: plain DP.
    """
    if not isinstance(dispatch_mode, Dispatch):
        raise TypeError(f"dispatch_mode must be a Dispatch member, got {dispatch_mode!r}")
    if execute_mode is None:
        execute_mode = Execute.RANK_ZERO if dispatch_mode is Dispatch.RANK_ZERO else Execute.ALL
    if not isinstance(execute_mode, Execute):
        raise TypeError(f"execute_mode must be an Execute member, got {execute_mode!r}")
    if dispatch_mode is Dispatch.RANK_ZERO and execute_mode is not Execute.RANK_ZERO:
        raise ValueError("Dispatch.RANK_ZERO only calls rank 0; use execute_mode=Execute.RANK_ZERO (the default)")
    if execute_mode is Execute.RANK_ZERO and dispatch_mode in (Dispatch.DP_COMPUTE_PROTO, Dispatch.DP_COMPUTE_METRIC):
        raise ValueError(f"{dispatch_mode} splits data over all ranks; it cannot run on rank 0 only")
    if mesh is not None and dispatch_mode not in (Dispatch.DP_COMPUTE_PROTO, Dispatch.DP_COMPUTE_METRIC):
        raise ValueError(f"mesh={mesh!r} only applies to the data-parallel dispatch modes, not {dispatch_mode}")
    spec = MethodSpec(dispatch_mode, execute_mode, bool(blocking), mesh)

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(func):
            raise TypeError(f"register: {func.__qualname__} is async; worker methods must be plain functions")
        setattr(func, _ATTR, spec)
        return func

    return decorator


def get_registered_methods(cls: type) -> dict[str, MethodSpec]:
    """Name -> spec of every registered method of ``cls`` (inherited ones included)."""
    out: dict[str, MethodSpec] = {}
    for name in dir(cls):
        if name.startswith("__"):
            continue
        attr = inspect.getattr_static(cls, name, None)
        func = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
        spec = getattr(func, _ATTR, None)
        if isinstance(spec, MethodSpec):
            out[name] = spec
    return out


# ---------------------------------------------------------------------------- dispatch / collect
@dataclass
class DispatchPlan:
    """The per-rank calls for one driver call, and what the collect step needs to know."""

    ranks: list[int]
    args: list[tuple[Any, ...]]
    kwargs: list[dict[str, Any]]
    pad_size: int = 0
    padded_len: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def only_rank_zero(self) -> DispatchPlan:
        return DispatchPlan([0], self.args[:1], self.kwargs[:1])


def _materialise(value: Any) -> Any:
    return value.get() if isinstance(value, DataProtoFuture) else value


def _dp_chunks(value: Any, name: str, world_size: int, pad_size: int, direct: bool) -> list[Any]:
    if isinstance(value, DataProtoFuture):
        refs = getattr(value, "dp_chunks", None)
        if direct and refs is not None and len(refs) == world_size:
            return list(refs)  # results of a previous DP call go straight to the same ranks, no driver copy
        value = value.get()
    if not isinstance(value, DataProto):
        raise TypeError(f"data-parallel dispatch needs DataProto arguments, but {name} is {type(value).__name__}; "
                        "pass other values through meta_info or use Dispatch.ONE_TO_ALL")
    if pad_size:
        value, _ = value.pad_to_divisor(world_size)
    return value.chunk(world_size)


def _data_len(value: Any) -> int | None:
    if isinstance(value, DataProtoFuture):
        return None
    return len(value) if isinstance(value, DataProto) else None


def dispatch_call(mode: Dispatch, execute: Execute, world_size: int, args: tuple[Any, ...],
                  kwargs: dict[str, Any], method: str = "?", mesh: MeshInfo | None = None) -> DispatchPlan:
    """Cut one driver call into per-rank calls (by ``mesh`` DP rank when given)."""
    if mesh is not None and mode in (Dispatch.DP_COMPUTE_PROTO, Dispatch.DP_COMPUTE_METRIC):
        if len(mesh.dp_ranks) != world_size:
            raise ValueError(f"{method}: mesh {mesh.name!r} covers {len(mesh.dp_ranks)} ranks, "
                             f"the group has {world_size}")
        args = tuple(_materialise(a) for a in args)
        kwargs = {k: _materialise(v) for k, v in kwargs.items()}
        plan = dispatch_call(mode, execute, mesh.dp_size, args, kwargs, method)
        plan.args = [plan.args[d] for d in mesh.dp_ranks]
        plan.kwargs = [plan.kwargs[d] for d in mesh.dp_ranks]
        plan.ranks = list(range(world_size))
        plan.extra["mesh"] = mesh
        return plan
    if execute is Execute.RANK_ZERO or mode is Dispatch.RANK_ZERO:
        if mode is Dispatch.ALL_TO_ALL:
            return dispatch_call(mode, Execute.ALL, world_size, args, kwargs, method).only_rank_zero()
        return DispatchPlan([0], [tuple(_materialise(a) for a in args)],
                            [{k: _materialise(v) for k, v in kwargs.items()}])
    ranks = list(range(world_size))
    if mode is Dispatch.ONE_TO_ALL:
        args = tuple(_materialise(a) for a in args)
        kwargs = {k: _materialise(v) for k, v in kwargs.items()}
        return DispatchPlan(ranks, [args] * world_size, [kwargs] * world_size)
    if mode is Dispatch.ALL_TO_ALL:
        named = [(f"argument {i}", a) for i, a in enumerate(args)] + [(f"argument {k!r}", v) for k, v in kwargs.items()]
        for name, value in named:
            if not isinstance(value, (list, tuple)) or len(value) != world_size:
                got = (f"a {type(value).__name__} of length {len(value)}" if isinstance(value, (list, tuple))
                       else f"of type {type(value).__name__}")
                raise ValueError(f"{method}: Dispatch.ALL_TO_ALL needs every argument to be a list with one item per "
                                 f"rank ({world_size}), but {name} is {got}")
        return DispatchPlan(ranks, [tuple(a[r] for a in args) for r in ranks],
                            [{k: v[r] for k, v in kwargs.items()} for r in ranks])
    if mode in (Dispatch.DP_COMPUTE_PROTO, Dispatch.DP_COMPUTE_METRIC):
        values = list(args) + list(kwargs.values())
        if not values:
            raise ValueError(f"{method}: {mode} needs at least one DataProto argument")
        direct = all(isinstance(v, DataProtoFuture) and getattr(v, "dp_chunks", None) is not None
                     and len(v.dp_chunks) == world_size for v in values)
        if not direct:
            args = tuple(_materialise(a) for a in args)
            kwargs = {k: _materialise(v) for k, v in kwargs.items()}
            values = list(args) + list(kwargs.values())
        lengths = {_data_len(v) for v in values} - {None}
        if len(lengths) > 1:
            raise ValueError(f"{method}: all DataProto arguments must have the same number of rows, "
                             f"got {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        pad = (-n) % world_size if not direct else 0
        if pad and mode is Dispatch.DP_COMPUTE_METRIC:
            raise ValueError(f"{method}: Dispatch.DP_COMPUTE_METRIC needs the batch ({n} rows) to divide by the world "
                             f"size {world_size} (padding rows would bias the metrics); "
                             f"{n} % {world_size} = {n % world_size}")
        if pad and n == 0:
            raise ValueError(f"{method}: cannot dispatch an empty DataProto")
        chunks_args = [_dp_chunks(a, f"argument {i}", world_size, pad, direct) for i, a in enumerate(args)]
        chunks_kwargs = {k: _dp_chunks(v, f"argument {k!r}", world_size, pad, direct) for k, v in kwargs.items()}
        return DispatchPlan(ranks, [tuple(c[r] for c in chunks_args) for r in ranks],
                            [{k: c[r] for k, c in chunks_kwargs.items()} for r in ranks],
                            pad_size=pad, padded_len=n + pad)
    raise ValueError(f"unknown dispatch mode {mode!r}")


def collect_results(mode: Dispatch, execute: Execute, plan: DispatchPlan, outputs: list[Any],
                    method: str = "?") -> Any:
    """Turn the per-rank results into the value the driver call returns."""
    if execute is Execute.RANK_ZERO or mode is Dispatch.RANK_ZERO:
        return outputs[0]
    mesh = plan.extra.get("mesh")
    if mesh is not None:  # one result per DP rank (the collecting rank of each TP group), in DP order
        keep = mesh.collect_ranks()
        plan = DispatchPlan(keep, [plan.args[r] for r in keep], [plan.kwargs[r] for r in keep],
                            pad_size=plan.pad_size, padded_len=plan.padded_len)
        outputs = [outputs[r] for r in keep]
    if mode in (Dispatch.ONE_TO_ALL, Dispatch.ALL_TO_ALL, Dispatch.DP_COMPUTE_METRIC):
        return list(outputs)
    if mode is Dispatch.DP_COMPUTE_PROTO:
        bad = [(r, type(o).__name__) for r, o in zip(plan.ranks, outputs) if not isinstance(o, DataProto)]
        if bad:
            raise TypeError(f"{method}: Dispatch.DP_COMPUTE_PROTO methods must return a DataProto; "
                            f"rank {bad[0][0]} returned {bad[0][1]}")
        out = DataProto.concat(outputs)
        if plan.pad_size:
            total = len(out)
            if total % plan.padded_len != 0:
                raise ValueError(f"{method}: the batch was padded by {plan.pad_size} rows to {plan.padded_len}, "
                                 f"but the workers returned {total} rows, not a multiple of it, so the padding "
                                 "cannot be removed")
            # k output rows per input row (e.g. n samples per prompt), kept together: drop the tail
            out = out.unpad(plan.pad_size * (total // plan.padded_len))
        return out
    raise ValueError(f"unknown dispatch mode {mode!r}")
