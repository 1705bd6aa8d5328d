"""Building the worker groups a trainer drives, for either backend (``trainer.backend``).

* ``inprocess``: the workers are plain objects in the driver process (:class:`InProcessWorkerGroup`);
  world size 1 only. Fast to start, easy to debug, what the CPU tests use.
* ``ray``: one Ray actor per device in a :class:`RayResourcePool` (``trainer.nnodes`` x
  ``trainer.n_gpus_per_node``), joined or started by :func:`init_ray` (``ray_init.*``).
* ``auto`` (default): ``inprocess`` when the world size is 1 and no Ray cluster was asked for
  (neither ``ray_init.address`` nor ``$RAY_ADDRESS`` set), ``ray`` otherwise.

The policy worker is :class:`TrainerActorWorker`, the :class:`ActorRolloutRefWorker` plus one
method the trainers need for exact resume: ``set_rollout_seed(seed)`` reseeds the rollout engine
(HF: its torch generator; vLLM: one request seed per prompt). The RL trainer calls it before every
generation with a seed derived from (``trainer.seed``, global step), so what a step samples depends only on the weights and the step
number, never on how many runs it took to get there (the engine's RNG is not in the worker's
checkpoint). When a reference policy is needed it lives in the same worker (role
``actor_rollout_ref``): one process per device, as verl colocates them. The reward worker is a
separate group of one worker (its scoring processes do the parallel work).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relift.single_controller import Dispatch, InProcessWorkerGroup, RayClassWithInitArgs, register
from workers.fsdp_worker import ActorRolloutRefWorker
from workers.reward_worker import RewardWorker

__all__ = ["BACKENDS", "TrainerActorWorker", "WorkerGroups", "resolve_backend", "build_worker_groups"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "ray", "inprocess")
# a CPU share small enough that the reward worker fits beside one policy worker per core
REWARD_WORKER_CPUS = 0.1


class TrainerActorWorker(ActorRolloutRefWorker):
    """:class:`ActorRolloutRefWorker` with a reseedable rollout sampler (see the module docstring)."""

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_rollout_seed(self, seed: int) -> bool:
        """Reseed with ``seed + rollout DP rank`` (the ranks of a vLLM TP group share one); False if it cannot."""
        if self.rollout is None:
            return False
        return bool(self.rollout.reseed(int(seed) + int(getattr(self, "rollout_dp_rank", self.rank))))


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
        except Exception:  # noqa: BLE001 - shutting down anyway
            logger.exception("closing the reward pool failed")
        for fn in reversed(self._cleanups):
            try:
                fn()
            except Exception:  # noqa: BLE001
                logger.exception("worker shutdown step failed")
        self._cleanups.clear()


def _sel(cfg: Any, key: str, default: Any = None) -> Any:
    from omegaconf import OmegaConf  # noqa: PLC0415

    value = OmegaConf.select(cfg, key, default=default)
    return default if value is None else value


def build_worker_groups(cfg: Any, *, nnodes: int, n_gpus_per_node: int, device: str, with_ref: bool,
                        with_reward: bool = True, with_rollout: bool = True) -> WorkerGroups:
    """Start and initialise the policy group (and the reward group); see the module docstring.

    ``cfg`` is the full trainer config (the workers read their own keys from it). Raises
    ``ValueError`` for an impossible backend choice; worker failures surface as
    :class:`relift.single_controller.WorkerGroupError` naming the rank and method.
    """
    world = int(nnodes) * int(n_gpus_per_node)
    backend = resolve_backend(_sel(cfg, "trainer.backend", "auto"), world, _sel(cfg, "ray_init.address"))
    if with_rollout:
        role = "actor_rollout_ref" if with_ref else "actor_rollout"
    else:
        role = "actor_rollout_ref" if with_ref else "actor"
    groups = WorkerGroups(actor=None, reward=None, backend=backend, has_ref=with_ref)
    logger.info("starting %d policy worker(s) (role %s) and %s reward worker on the %s backend", world, role,
                "one" if with_reward else "no", backend)
    try:
        if backend == "inprocess":
            groups.actor = InProcessWorkerGroup(RayClassWithInitArgs(TrainerActorWorker, cfg, role))
            groups._cleanups.append(groups.actor.shutdown)
            if with_reward:
                groups.reward = InProcessWorkerGroup(RayClassWithInitArgs(RewardWorker, cfg))
                groups._cleanups.append(groups.reward.shutdown)
        else:
            _start_ray_groups(cfg, groups, role, nnodes, n_gpus_per_node, device, with_reward)
        groups.actor.init_model()
        if groups.reward is not None:
            groups.reward.init_model()
    except BaseException:
        groups.shutdown()
        raise
    return groups


def _start_ray_groups(cfg: Any, groups: WorkerGroups, role: str, nnodes: int, n_gpus_per_node: int, device: str,
                      with_reward: bool) -> None:
    import ray  # noqa: PLC0415

    from relift.single_controller import RayResourcePool, RayWorkerGroup, init_ray  # noqa: PLC0415

    info = init_ray(address=_sel(cfg, "ray_init.address"), num_cpus=_sel(cfg, "ray_init.num_cpus"),
                    include_dashboard=bool(_sel(cfg, "ray_init.include_dashboard", False)))
    if info.get("mode") == "started":
        groups._cleanups.append(ray.shutdown)
    pool = RayResourcePool([int(n_gpus_per_node)] * int(nnodes), use_gpu=device == "cuda", name_prefix="relift_actor")
    groups._cleanups.append(lambda: pool.shutdown())
    actor = RayWorkerGroup(pool, RayClassWithInitArgs(ray.remote(TrainerActorWorker), cfg, role))
    groups.actor = actor
    groups._cleanups.append(lambda: actor.shutdown(release_resources=True))
    if with_reward:
        rpool = RayResourcePool([1], use_gpu=False, num_cpus_per_bundle=REWARD_WORKER_CPUS,
                                name_prefix="relift_reward")
        groups._cleanups.append(lambda: rpool.shutdown())
        reward = RayWorkerGroup(rpool, RayClassWithInitArgs(ray.remote(RewardWorker), cfg))
        groups.reward = reward
        groups._cleanups.append(lambda: reward.shutdown(release_resources=True))
