"""Errors the controller raises, worded so a failed multi-node run says where and why at once.

A worker that raises, dies (SIGKILL, OOM killer, segfault) or whose node goes away becomes one
:class:`WorkerGroupError` on the driver naming the worker group, rank, node and method; a resource
request the cluster can never meet becomes a :class:`ResourceRequestError` that shows what was asked
and what the cluster has.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WorkerGroupError", "ResourceRequestError", "TopologyError", "classify_failure"]

_MAX_CAUSE_CHARS = 4000


class TopologyError(RuntimeError):
    """The cluster cannot hold the run as asked (fewer nodes, or fewer devices per node).

    Defined here, not beside ``check_topology``, so a driver can catch it without importing Ray.
    """


def classify_failure(exc: BaseException) -> str:
    """A short word for what happened to a worker: raised, died, oom, node_died, timeout, lost, error.

    Ray's exception classes are looked up by name so this works (and is testable) without Ray.
    """
    names = {c.__name__ for c in type(exc).__mro__}
    text = str(exc)
    if "OutOfMemoryError" in names:
        return "oom"
    if "NodeDiedError" in names or "LocalRayletDiedError" in names:
        return "node_died"
    if "GetTimeoutError" in names or isinstance(exc, TimeoutError):
        return "timeout"
    if "RayActorError" in names and getattr(exc, "actor_init_failed", False):
        return "raised"  # the worker's constructor raised; Ray reports it as an actor death
    if "RayActorError" in names or "WorkerCrashedError" in names:
        # the raylet's death message hints at the kernel OOM killer for any unexpected exit, so only
        # Ray's own OOM killer (OutOfMemoryError / "killed due to memory") counts as a sure OOM here
        if "due to memory pressure" in text or "OutOfMemory" in text:
            return "oom"
        return "died"
    if "ObjectLostError" in names:
        return "lost"
    if "RayTaskError" in names:
        return "raised"
    return "raised" if not any(n.startswith("Ray") for n in names) else "error"


_KIND_TEXT = {
    "raised": "raised an exception",
    "died": "worker process died (killed by a signal such as SIGKILL, the kernel OOM killer, or a crash)",
    "oom": "was killed for using too much memory (Ray's or the kernel's OOM killer)",
    "node_died": "lost its node (the raylet or machine went away)",
    "timeout": "did not answer in time",
    "lost": "lost its result object (the node holding it died)",
    "error": "failed inside Ray",
}


class WorkerGroupError(RuntimeError):
    """One worker of a group failed; says which group, rank, node and method, and how."""

    def __init__(self, group: str, rank: int | None, node: str | None, method: str,
                 cause: BaseException | str, kind: str | None = None, pid: int | None = None) -> None:
        self.group = group
        self.rank = rank
        self.node = node
        self.method = method
        self.pid = pid
        self.kind = kind or (classify_failure(cause) if isinstance(cause, BaseException) else "error")
        self.cause = cause
        where = f"worker group {group!r} rank {rank} on node {node or 'unknown'}"
        if pid is not None:
            where += f" (pid {pid})"
        detail = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(cause)
        if len(detail) > _MAX_CAUSE_CHARS:
            detail = detail[:_MAX_CAUSE_CHARS] + f"... [{len(detail) - _MAX_CAUSE_CHARS} more characters]"
        super().__init__(f"{where} {_KIND_TEXT.get(self.kind, 'failed')} in method {method!r}:\n{detail}")

    def __reduce__(self) -> tuple[Any, ...]:
        # keep it picklable (it may cross process boundaries in nested controllers)
        return (WorkerGroupError, (self.group, self.rank, self.node, self.method, str(self.cause),
                                   self.kind, self.pid))


class ResourceRequestError(RuntimeError):
    """The cluster cannot (or did not, within the allowed wait) give the requested resources."""
