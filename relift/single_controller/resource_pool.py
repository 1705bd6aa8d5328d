"""RayResourcePool: the devices a worker group runs on, reserved as one placement group per node.

Each entry of ``process_on_nodes`` becomes a STRICT_PACK placement group (all its bundles on one
node); a bundle is one GPU plus ``num_cpus_per_bundle`` CPUs, or CPUs only for ``use_gpu=False``.
Placement groups are ordered by node IP (then node id) once placed, so rank r lands on the same
machine across restarts. A request the cluster can never meet fails at once; one that cannot be
met now fails after ``pg_timeout_s`` - both with what was asked and what the cluster has.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group, placement_group_table, remove_placement_group

from relift.single_controller.errors import ResourceRequestError

logger = logging.getLogger(__name__)

__all__ = ["RayResourcePool", "PlacedBundle", "ip_sort_key", "DEFAULT_PG_TIMEOUT_S"]

#: how long to wait for placement groups that fit the cluster but not its free resources (env RELIFT_PG_TIMEOUT_S)
DEFAULT_PG_TIMEOUT_S = 120.0


def ip_sort_key(ip: str) -> tuple[int, int, str]:
    """Numeric order of IPs (10.0.0.9 before 10.0.0.10); unparsable addresses sort last, by text."""
    try:
        addr = ipaddress.ip_address(ip)
        return (addr.version, int(addr), "")
    except ValueError:
        return (99, 0, ip)


@dataclass(frozen=True)
class PlacedBundle:
    """Where one rank goes: its placement group, bundle index and node."""

    rank: int
    placement_group: PlacementGroup
    bundle_index: int
    local_world_size: int
    node_ip: str
    node_id: str


def _fmt_resources(res: dict[str, float]) -> str:
    keep = {k: v for k, v in res.items() if k in ("CPU", "GPU", "memory", "object_store_memory")
            or not (k.startswith("node:") or k.startswith("accelerator_type") or "_group_" in k)}
    parts = []
    for k in sorted(keep):
        v = keep[k]
        if k in ("memory", "object_store_memory"):
            parts.append(f"{k} {v / 2**30:.1f} GiB")
        else:
            parts.append(f"{k} {v:g}")
    return ", ".join(parts) or "nothing"


class RayResourcePool:
    """``process_on_nodes[i]`` workers on the i-th node; verl's meaning and argument names."""

    def __init__(self, process_on_nodes: list[int] | None = None, use_gpu: bool = True, max_colocate_count: int = 1,
                 name_prefix: str | None = None, num_cpus_per_bundle: float = 1.0,
                 pg_timeout_s: float | None = None, check_feasible: bool = True) -> None:
        process_on_nodes = list(process_on_nodes if process_on_nodes is not None else [1])
        if not process_on_nodes or any(not isinstance(n, int) or n <= 0 for n in process_on_nodes):
            raise ValueError(f"process_on_nodes must be a non-empty list of positive ints, got {process_on_nodes}")
        if max_colocate_count < 1:
            raise ValueError(f"max_colocate_count must be >= 1, got {max_colocate_count}")
        if num_cpus_per_bundle <= 0:
            raise ValueError(f"num_cpus_per_bundle must be > 0, got {num_cpus_per_bundle}")
        self.process_on_nodes = process_on_nodes
        self.use_gpu = bool(use_gpu)
        self.max_colocate_count = int(max_colocate_count)
        self.num_cpus_per_bundle = float(num_cpus_per_bundle)
        self.name_prefix = name_prefix or f"relift_pool_{uuid.uuid4().hex[:6]}"
        env_timeout = os.environ.get("RELIFT_PG_TIMEOUT_S")
        self.pg_timeout_s = float(pg_timeout_s if pg_timeout_s is not None else env_timeout or DEFAULT_PG_TIMEOUT_S)
        self.check_feasible = check_feasible
        self._placed: list[PlacedBundle] | None = None
        self._pgs: list[PlacementGroup] = []

    # ------------------------------------------------------------------ sizes
    @property
    def world_size(self) -> int:
        return sum(self.process_on_nodes)

    @property
    def store(self) -> list[int]:  # verl's name
        return list(self.process_on_nodes)

    def bundle(self) -> dict[str, float]:
        b = {"CPU": self.num_cpus_per_bundle}
        if self.use_gpu:
            b["GPU"] = 1.0
        return b

    def actor_resources(self) -> dict[str, float]:
        """What one worker asks for: a share of its bundle, so ``max_colocate_count`` groups fit in it."""
        return {"num_cpus": self.num_cpus_per_bundle / self.max_colocate_count,
                "num_gpus": (1.0 / self.max_colocate_count) if self.use_gpu else 0.0}

    def describe_request(self) -> str:
        total = {k: v * self.world_size for k, v in self.bundle().items()}
        return (f"{len(self.process_on_nodes)} placement group(s) (one per node) with {self.process_on_nodes} "
                f"bundles of {{{_fmt_resources(self.bundle())}}}, total {{{_fmt_resources(total)}}}")

    # ------------------------------------------------------------------ placement
    def _alive_nodes(self) -> list[dict[str, Any]]:
        return [n for n in ray.nodes() if n.get("Alive")]

    def _describe_cluster(self, available: bool = False) -> str:
        nodes = self._alive_nodes()
        lines = [f"the cluster has {len(nodes)} alive node(s), total {{{_fmt_resources(ray.cluster_resources())}}}"]
        if available:
            lines.append(f"free now {{{_fmt_resources(ray.available_resources())}}}")
        for n in sorted(nodes, key=lambda n: ip_sort_key(n["NodeManagerAddress"])):
            lines.append(f"  node {n['NodeManagerAddress']} (id {n['NodeID'][:12]}): {_fmt_resources(n['Resources'])}")
        return "\n".join(lines)

    def _check_feasible(self) -> None:
        nodes = self._alive_nodes()
        bundle = self.bundle()
        problems = []
        cluster = ray.cluster_resources()
        for key, per in bundle.items():
            need = per * self.world_size
            if need > cluster.get(key, 0.0) + 1e-9:
                problems.append(f"{need:g} {key} in total but the cluster has {cluster.get(key, 0.0):g}")
        for count in sorted(set(self.process_on_nodes), reverse=True):
            need = {k: v * count for k, v in bundle.items()}
            if not any(all(n["Resources"].get(k, 0.0) + 1e-9 >= v for k, v in need.items()) for n in nodes):
                problems.append(f"{count} worker(s) on one node ({{{_fmt_resources(need)}}}) but no node is that large")
                break
        if problems:
            raise ResourceRequestError(
                f"resource pool {self.name_prefix!r} asked for {self.describe_request()}; this can never be placed: "
                + "; ".join(problems) + ".\n" + self._describe_cluster()
                + "\nUse fewer workers (trainer.nnodes x trainer.n_gpus_per_node), use_gpu=False on a CPU-only "
                  "cluster, or add nodes (see docs/multinode.md).")

    def get_placement_groups(self) -> list[PlacementGroup]:
        """The placement groups in rank order (created and waited for on first use)."""
        self.placed_bundles()
        return list(self._pgs)

    def placed_bundles(self) -> list[PlacedBundle]:
        """One entry per rank, in rank order; reserves the resources on first call."""
        if self._placed is not None:
            return self._placed
        if not ray.is_initialized():
            raise RuntimeError("Ray is not initialised; call relift.single_controller.init_ray() first")
        if self.check_feasible:
            self._check_feasible()
        bundle = self.bundle()
        pgs = [placement_group([dict(bundle) for _ in range(n)], strategy="STRICT_PACK",
                               name=f"{self.name_prefix}_{i}") for i, n in enumerate(self.process_on_nodes)]
        t0 = time.monotonic()
        ready, pending = ray.wait([pg.ready() for pg in pgs], num_returns=len(pgs), timeout=self.pg_timeout_s)
        if pending:
            message = (f"resource pool {self.name_prefix!r}: {len(pending)} of {len(pgs)} placement group(s) were not "
                       f"placed within {self.pg_timeout_s:g} s; asked for {self.describe_request()}.\n"
                       + self._describe_cluster(available=True)
                       + "\nOther jobs or worker groups may hold the resources (see `ray status`), or a node has "
                         "not joined yet; raise RELIFT_PG_TIMEOUT_S to wait longer.")
            for pg in pgs:
                remove_placement_group(pg)
            raise ResourceRequestError(message)
        ray.get(ready)  # surfaces a placement group that was removed meanwhile
        node_ip = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        placed = []
        for i, pg in enumerate(pgs):
            table = placement_group_table(pg)
            node_id = table["bundles_to_node_id"][0]
            placed.append((ip_sort_key(node_ip.get(node_id, "")), node_id, i, pg, node_ip.get(node_id, "unknown")))
        placed.sort(key=lambda t: t[:3])
        self._pgs = [t[3] for t in placed]
        out: list[PlacedBundle] = []
        for _, node_id, i, pg, ip in placed:
            n = self.process_on_nodes[i]
            for b in range(n):
                out.append(PlacedBundle(len(out), pg, b, n, ip, node_id))
        self._placed = out
        logger.info("resource pool %s placed %d worker slot(s) on %d node(s) in %.1f s", self.name_prefix,
                    len(out), len({p.node_id for p in out}), time.monotonic() - t0)
        return out

    def shutdown(self) -> None:
        """Release the placement groups (workers still in them are killed by Ray)."""
        for pg in self._pgs:
            try:
                remove_placement_group(pg)
            except Exception as exc:  # noqa: BLE001 - already removed, or Ray gone
                logger.debug("removing placement group failed: %s", exc)
        self._pgs = []
        self._placed = None
