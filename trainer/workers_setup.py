"""Building the worker groups a trainer drives, for either backend (``trainer.backend``).

* ``inprocess``: the workers are plain objects in the driver process (:class:`InProcessWorkerGroup`);
  world size 1 only. Fast to start, easy to debug, what the CPU tests use.
* ``ray``: one Ray actor per device in a :class:`RayResourcePool` (``trainer.nnodes`` x
  ``trainer.n_gpus_per_node``), joined or started by :func:`init_ray` (``ray_init.*``).
* ``auto`` (default): ``inprocess`` when the world size is 1 and no Ray cluster was asked for
  (neither ``ray_init.address`` nor ``$RAY_ADDRESS`` set), ``ray`` otherwise.

The policy workers are :class:`ActorRolloutRefWorker` built from the run spec's
:class:`relift.spec.PolicyWorkerSpec`; when a reference policy is needed it lives in the same
worker (role ``actor_rollout_ref``): one process per device, as verl colocates them. The reward
worker is a separate group of one worker (its scoring processes do the parallel work), built from
the :class:`relift.spec.RewardSpec`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from relift.single_controller import InProcessWorkerGroup, RayClassWithInitArgs
from relift.spec import PolicyWorkerSpec, RayInitSpec, RewardSpec, WorldSpec
from workers.fsdp_worker import ActorRolloutRefWorker
from workers.reward_worker import RewardWorker

__all__ = ["BACKENDS", "WorkerGroups", "resolve_backend", "build_worker_groups", "worker_role", "run_device"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "ray", "inprocess")
# a CPU share small enough that the reward worker fits beside one policy worker per core
REWARD_WORKER_CPUS = 0.1


def resolve_backend(requested: str | None, world_size: int, ray_address: str | None = None) -> str:
    """``auto`` -> ``inprocess`` for one worker without a Ray cluster asked for, else ``ray``."""
    requested = (requested or "auto").lower()
    if requested not in BACKENDS:
        raise ValueError(f"trainer.backend={requested!r}; expected one of {', '.join(BACKENDS)}")
    if requested == "auto":
        wants_cluster = bool(ray_address) or bool(os.environ.get("RAY_ADDRESS"))
        return "inprocess" if world_size == 1 and not wants_cluster else "ray"
    if requested == "inprocess" and world_size != 1:
        raise ValueError(f"trainer.backend=inprocess runs one worker, but the world size is {world_size} "
                         "(trainer.nnodes x trainer.n_gpus_per_node); use trainer.backend=ray")
    return requested


@dataclass
class WorkerGroups:
    """The started groups: ``actor`` (actor + rollout, + ref when asked), ``reward``; ``shutdown()``."""

    actor: Any
    reward: Any
    backend: str
    has_ref: bool
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def ref(self) -> Any:
        """The group that answers ``compute_ref_log_prob`` (the actor's, colocated), or None."""
        return self.actor if self.has_ref else None

    def shutdown(self) -> None:
        """Stop the reward processes and the workers (and a Ray instance this run started)."""
        try:
            if self.reward is not None and hasattr(self.reward, "close_pool"):
                self.reward.close_pool()
        except Exception as exc:  # noqa: BLE001 - shutting down anyway (the worker may be dead already): one line
            logger.warning("closing the reward pool failed: %s: %s", type(exc).__name__,
                           (str(exc).strip().splitlines() or [""])[0])
        for fn in reversed(self._cleanups):
            try:
                fn()
            except Exception:  # noqa: BLE001
                logger.exception("worker shutdown step failed")
        self._cleanups.clear()


def worker_role(*, has_actor: bool, has_rollout: bool, has_ref: bool) -> str:
    """verl's role name for what one policy worker holds (``actor_ref``: offline DPO)."""
    if not has_actor:
        return "rollout"
    return "actor" + ("_rollout" if has_rollout else "") + ("_ref" if has_ref else "")


def run_device(world: WorldSpec) -> str:
    """``trainer.device`` with ``auto`` resolved on this machine (a plan made with
    ``trainer.check_devices=false`` keeps ``auto``)."""
    if world.device != "auto":
        return world.device
    import torch  # noqa: PLC0415

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_worker_groups(worker: PolicyWorkerSpec, ray_init: RayInitSpec, *, with_ref: bool,
                        reward: RewardSpec | None = None, with_rollout: bool = True) -> WorkerGroups:
    """Start and initialise the policy group (and, given its spec, the reward group).

    Raises ``ValueError`` for an impossible backend choice; worker failures surface as
    :class:`relift.single_controller.WorkerGroupError` naming the rank and method.
    """
    world = worker.world
    backend = resolve_backend(world.backend, world.size, ray_init.address)
    role = worker_role(has_actor=worker.actor is not None, has_rollout=with_rollout, has_ref=with_ref)
    groups = WorkerGroups(actor=None, reward=None, backend=backend, has_ref=with_ref)
    logger.info("starting %d policy worker(s) (role %s) and %s reward worker on the %s backend", world.size, role,
                "one" if reward is not None else "no", backend)
    reward_args = (reward, worker.model.tokenizer_path, worker.model.trust_remote_code)
    try:
        if backend == "inprocess":
            groups.actor = InProcessWorkerGroup(RayClassWithInitArgs(ActorRolloutRefWorker, worker, role))
            groups._cleanups.append(groups.actor.shutdown)
            if reward is not None:
                groups.reward = InProcessWorkerGroup(RayClassWithInitArgs(RewardWorker, *reward_args))
                groups._cleanups.append(groups.reward.shutdown)
        else:
            _start_ray_groups(worker, ray_init, groups, role, reward_args if reward is not None else None)
        _init_models(groups)
    except BaseException:
        groups.shutdown()
        raise
    return groups


def _init_models(groups: WorkerGroups) -> None:
    """Load the policy and start the reward scorers at the same time (issue 18.5: the scorer
    processes import their libraries while the model loads). Both are waited for; if both fail, the
    policy's error is the one raised."""
    if groups.reward is None:
        groups.actor.init_model()
        return
    with ThreadPoolExecutor(1, thread_name_prefix="reward-init") as pool:
        reward_started = pool.submit(groups.reward.init_model)
        try:
            groups.actor.init_model()
        finally:
            reward_error = reward_started.exception()  # waits: nothing is shut down under its feet
    if reward_error is not None:
        raise reward_error


def _start_ray_groups(worker: PolicyWorkerSpec, ray_init: RayInitSpec, groups: WorkerGroups, role: str,
                      reward_args: tuple[Any, ...] | None) -> None:
    import ray  # noqa: PLC0415

    from relift.single_controller import RayResourcePool, RayWorkerGroup, init_ray  # noqa: PLC0415
    from relift.single_controller.ray_init import check_topology  # noqa: PLC0415

    info = init_ray(address=ray_init.address, num_cpus=ray_init.num_cpus, include_dashboard=ray_init.include_dashboard)
    if info.get("mode") == "started":
        groups._cleanups.append(ray.shutdown)
    world = worker.world
    use_gpu = run_device(world) == "cuda"
    # trainer.nnodes x n_gpus_per_node against the alive nodes: a mismatch stops here (exit 2)
    check_topology(world.nnodes, world.n_gpus_per_node, use_gpu=use_gpu)
    pool = RayResourcePool([world.n_gpus_per_node] * world.nnodes, use_gpu=use_gpu, name_prefix="relift_actor")
    groups._cleanups.append(lambda: pool.shutdown())
    actor = RayWorkerGroup(pool, RayClassWithInitArgs(ray.remote(ActorRolloutRefWorker), worker, role))
    groups.actor = actor
    groups._cleanups.append(lambda: actor.shutdown(release_resources=True))
    if reward_args is not None:
        rpool = RayResourcePool([1], use_gpu=False, num_cpus_per_bundle=REWARD_WORKER_CPUS,
                                name_prefix="relift_reward")
        groups._cleanups.append(lambda: rpool.shutdown())
        reward = RayWorkerGroup(rpool, RayClassWithInitArgs(ray.remote(RewardWorker), *reward_args))
        groups.reward = reward
        groups._cleanups.append(lambda: reward.shutdown(release_resources=True))
