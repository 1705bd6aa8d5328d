"""Whole-run specs (RL, offline), the policy worker's spec, and their JSON form."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relift.spec.sections import (
    ActorSpec,
    AlgorithmSpec,
    DataSpec,
    LossSpec,
    ModelSpec,
    OfflineDataSpec,
    RayInitSpec,
    RefSpec,
    ReliftSpec,
    RewardSpec,
    RolloutSpec,
    TrainerSpec,
    WorldSpec,
)

SPEC_FILE = "run_spec.json"


@dataclass(frozen=True)
class RLBatchPlan:
    """The RL step's batch arithmetic (what the entry point prints; checked to divide)."""

    sequences_per_step: int
    sequences_per_worker: int
    sequences_per_mini_batch: int
    mini_batches_per_step: int
    optimizer_steps_per_step: int
    micro_batches_per_mini_batch: int | None   # None with use_dynamic_bsz (token budget instead)
    rollout_replicas: int
    dataset_rows: int | None
    steps_per_epoch: int | None
    relift_sft_micro_batches: int | None

    @property
    def on_policy_update(self) -> bool:
        """One optimiser step per RL step: before it, the policy is the one that sampled."""
        return self.optimizer_steps_per_step == 1


@dataclass(frozen=True)
class OfflineBatchPlan:
    examples_per_worker: int
    micro_batches_per_step: int
    sequences_per_forward: int
    dataset_rows: int | None
    steps_per_epoch: int | None


@dataclass(frozen=True)
class PolicyWorkerSpec:
    """What one :class:`workers.fsdp_worker.ActorRolloutRefWorker` needs, and nothing else."""

    mode: str                     # rl | offline | generate
    world: WorldSpec
    seed: int
    model: ModelSpec
    actor: ActorSpec | None       # None: a rollout-only worker (generation)
    rollout: RolloutSpec | None   # None: no generation (offline training)
    ref: RefSpec
    relift: ReliftSpec | None
    loss: LossSpec | None         # offline pair / SFT losses
    max_actor_ckpt_to_keep: int | None


@dataclass(frozen=True)
class RLRunSpec:
    """Everything ``python -m trainer.main_rl`` runs with: sections + derived numbers."""

    world: WorldSpec
    ray_init: RayInitSpec
    data: DataSpec
    model: ModelSpec
    actor: ActorSpec
    rollout: RolloutSpec
    ref: RefSpec
    reward: RewardSpec
    algorithm: AlgorithmSpec
    relift: ReliftSpec
    trainer: TrainerSpec
    batch: RLBatchPlan
    warnings: tuple[str, ...]

    @property
    def on_policy(self) -> bool:
        """The old-log-prob pass can be skipped: one optimiser step and no KL in the reward
        (which needs the old log-probs on the driver before the update)."""
        return self.batch.on_policy_update and not self.algorithm.use_kl_in_reward

    def with_total_steps(self, total: int) -> RLRunSpec:
        """The spec once the trainer has counted the loaded data (remote files are not counted by the plan)."""
        return _with_total_steps(self, total)

    def worker(self) -> PolicyWorkerSpec:
        return PolicyWorkerSpec(mode="rl", world=self.world, seed=self.trainer.seed, model=self.model,
                                actor=self.actor, rollout=self.rollout, ref=self.ref, relift=self.relift, loss=None,
                                max_actor_ckpt_to_keep=self.trainer.max_ckpt_to_keep)


@dataclass(frozen=True)
class OfflineRunSpec:
    """Everything ``python -m trainer.main_offline`` runs with."""

    world: WorldSpec
    ray_init: RayInitSpec
    data: OfflineDataSpec
    model: ModelSpec
    actor: ActorSpec
    ref: RefSpec
    loss: LossSpec
    trainer: TrainerSpec
    batch: OfflineBatchPlan
    warnings: tuple[str, ...]

    def with_total_steps(self, total: int) -> OfflineRunSpec:
        return _with_total_steps(self, total)

    def worker(self) -> PolicyWorkerSpec:
        return PolicyWorkerSpec(mode="offline", world=self.world, seed=self.trainer.seed, model=self.model,
                                actor=self.actor, rollout=None, ref=self.ref, relift=None, loss=self.loss,
                                max_actor_ckpt_to_keep=self.trainer.max_ckpt_to_keep)


def _with_total_steps(spec: Any, total: int) -> Any:
    if spec.trainer.total_training_steps == total and spec.actor.optim.total_training_steps == total:
        return spec
    actor = dataclasses.replace(spec.actor, optim=spec.actor.optim.with_total_steps(total))
    return dataclasses.replace(spec, actor=actor,
                               trainer=dataclasses.replace(spec.trainer, total_training_steps=total))


def spec_to_dict(spec: Any) -> dict[str, Any]:
    """A spec as plain JSON-able containers (tuples become lists), with its type named."""
    out = dataclasses.asdict(spec)
    out["__spec__"] = type(spec).__name__
    return json.loads(json.dumps(out, default=str))


def save_spec_json(spec: Any, folder: str | os.PathLike) -> Path:
    """Write ``<folder>/run_spec.json`` atomically (the run's settings, for people and tools)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SPEC_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(spec_to_dict(spec), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def load_spec_json(path: str | os.PathLike) -> dict[str, Any]:
    """The saved spec as a dict (comparisons, inspection); a missing file raises FileNotFoundError."""
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_FILE
    return json.loads(path.read_text())
