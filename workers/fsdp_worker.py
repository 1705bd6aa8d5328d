"""ActorRolloutRefWorker: the policy (FSDP2 + AdamW), its rollout engine and the reference policy.

One instance per device, built from a :class:`relift.spec.PolicyWorkerSpec` (the RL and offline
trainers and the generation entry point each derive one from their run spec). The role string picks
what it holds (verl's names): ``actor``, ``rollout``, ``ref``, ``actor_rollout``,
``actor_rollout_ref``, and ``actor_ref`` (offline DPO: a reference without a rollout engine). The
jobs live beside it: model building and sharding (:mod:`workers.fsdp_model`), checkpoint files
(:mod:`workers.fsdp_checkpoint`), the generation engine and weight sync
(:mod:`workers.rollout_engine`), the data-parallel actor rules (:mod:`workers.fsdp_actor`). This
file holds the worker's public methods.

Decisions worth knowing:

* Batch sizes: the spec's actor mini-batch is already in sequences per worker
  (``ppo_mini_batch_size x rollout.n / world size``, checked to divide by the plan).
* ReLIFT's fine-tuning step shares the RL AdamW by default (no second copy of the moments: ReLIFT's
  public code doubled optimiser memory with a second AdamW). It runs at ``relift.lr`` (null: the
  RL optimiser's current lr) through a temporary lr override and never steps the RL LR scheduler.
  ``relift.sft_optimizer: separate`` gives it a dedicated AdamW (checkpointed too). Offline training
  (SFT / pairs as the main objective) steps the scheduler once per update call.
* Log-probs are computed at the temperature the rollout sampled with (``rollout.temperature``,
  1.0 for greedy or offline data), from the spec; the driver does not carry it.
* Sampling seeds: ``set_rollout_seed(seed)`` reseeds this rank's engine with ``seed + rollout DP
  rank`` (the ranks of one vLLM tensor-parallel group sample alike; with TP 1 it is the rank) (HF:
  its torch generator; vLLM: one request seed per prompt). The RL trainer calls it before every
  generation with a seed derived from (``trainer.seed``, step), so what a step samples depends only
  on the weights and the step number (the engine's RNG is not in the checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from relift.protocol import DataProto
from relift.single_controller import Dispatch, Execute, Worker, register
from relift.spec import PolicyWorkerSpec
from relift.utils import fsdp as fsdp_utils
from relift.utils.optim import optimizer_from_spec, scheduler_from_spec
from workers.actor import ActorConfig
from workers.fsdp_actor import FSDPActor
from workers.fsdp_checkpoint import TrainState, export_hf_folder, load_train_state, save_train_state
from workers.fsdp_model import build_sharded, eos_token_ids
from workers.lean_forward import lean_forward_applies
from workers.packed_forward import PACKING_ATTENTION
from workers.rollout.layout import ROLLOUT_MESH, rollout_dp_layout, rollout_tp_size
from workers.rollout_engine import build_rollout_engine, sync_weights

__all__ = ["ActorRolloutRefWorker", "ROLES", "actor_config"]

logger = logging.getLogger(__name__)

ROLES = ("actor", "rollout", "ref", "actor_rollout", "actor_ref", "actor_rollout_ref")


def actor_config(spec: PolicyWorkerSpec, *, ref: bool = False) -> ActorConfig:
    """The actor core's settings from the spec (the reference copy swaps in its log-prob batching)."""
    a = spec.actor
    log_prob = spec.ref.log_prob_micro if ref else a.log_prob_micro
    values: dict[str, Any] = dict(
        ppo_micro_batch_size_per_gpu=a.train_micro.micro_batch_size_per_gpu,
        use_dynamic_bsz=a.train_micro.use_dynamic_bsz, ppo_max_token_len_per_gpu=a.train_micro.max_token_len_per_gpu,
        ppo_epochs=a.ppo_epochs, shuffle=a.shuffle, seed=spec.seed, loss_scale_factor=a.loss_scale_factor,
        grad_clip=a.grad_clip, logits_chunk_size=a.logits_chunk_size,
        log_prob_micro_batch_size_per_gpu=log_prob.micro_batch_size_per_gpu,
        log_prob_use_dynamic_bsz=log_prob.use_dynamic_bsz,
        log_prob_max_token_len_per_gpu=log_prob.max_token_len_per_gpu)
    if not ref:
        values["ppo_mini_batch_size"] = a.sequences_per_mini_batch_per_worker
    loss = a.policy_loss
    if loss is not None:
        values.update(clip_ratio_low=loss.clip_ratio_low, clip_ratio_high=loss.clip_ratio_high,
                      clip_ratio_c=loss.clip_ratio_c, loss_agg_mode=loss.loss_agg_mode,
                      loss_remove_clip=loss.loss_remove_clip, entropy_coeff=loss.entropy_coeff,
                      use_kl_loss=loss.use_kl_loss, kl_loss_coef=loss.kl_loss_coef, kl_loss_type=loss.kl_loss_type)
    if spec.loss is not None:  # offline: the whole per-worker batch is one optimiser step
        values.update(sft_mini_batch_size=a.sequences_per_mini_batch_per_worker,
                      pair_mini_batch_size=a.sequences_per_mini_batch_per_worker, redi_alpha=spec.loss.alpha,
                      simpo_gamma=spec.loss.gamma, simpo_cpo_alpha=spec.loss.cpo_alpha)
        if spec.loss.beta is not None:
            values.update(dpo_beta=spec.loss.beta, simpo_beta=spec.loss.beta)
    cfg = ActorConfig(**{k: v for k, v in values.items() if v is not None or k in ("clip_ratio_c", "grad_clip")})
    cfg.validate()
    return cfg


class ActorRolloutRefWorker(Worker):
    """Actor, rollout and/or reference policy on one device (see the module docstring)."""

    def __init__(self, spec: PolicyWorkerSpec, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
        if not isinstance(spec, PolicyWorkerSpec):
            raise TypeError(f"ActorRolloutRefWorker takes a relift.spec.PolicyWorkerSpec (build one with "
                            f"trainer.plan.build_policy_worker_spec), got {type(spec).__name__}")
        self.spec = spec
        self.role = role
        self._is_actor = role.startswith("actor")
        self._is_rollout = "rollout" in role
        self._is_ref = role.endswith("ref")
        if self._is_actor and spec.actor is None:
            raise ValueError(f"role {role!r} needs the actor section of the spec")
        if self._is_rollout and spec.rollout is None:
            raise ValueError(f"role {role!r} needs the rollout section of the spec")
        self._offline = spec.mode == "offline"
        self.actor_module: Any = None
        self.ref_module: Any = None
        self.actor: FSDPActor | None = None
        self.ref_policy: FSDPActor | None = None
        self.rollout: Any = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.lr_scheduler: Any = None
        self.sft_optimizer: torch.optim.Optimizer | None = None
        self.tokenizer: Any = None
        self._optimizer_offload = False
        self.rollout_dp_rank = 0     # set with the engine (vLLM tensor parallel groups share one)
        self._actor_version = 0      # bumped by every update of the actor's weights
        self._rollout_version = -1   # the actor version the rollout engine holds
        self._initialised = False

    @property
    def device(self) -> torch.device:
        """``trainer.device``: ``auto`` (this worker's GPU when it has one), ``cuda`` or ``cpu``."""
        want = self.spec.world.device
        if want == "cpu":
            return torch.device("cpu")
        if want == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("trainer.device=cuda but this worker sees no CUDA device "
                               "(was the resource pool created with use_gpu=True?)")
        return super().device

    @property
    def _scoring_temperature(self) -> float:
        """The temperature the scored responses were sampled at (greedy and offline data: 1.0)."""
        ro = self.spec.rollout
        if self._offline or ro is None or not ro.sampling.do_sample or ro.sampling.temperature <= 0:
            return 1.0
        return float(ro.sampling.temperature)

    # ------------------------------------------------------------------ init
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self) -> None:
        """Join the process group, load + shard the models, build optimiser, schedule and engines."""
        from relift.models.loading import load_tokenizer  # noqa: PLC0415
        from relift.utils.seed import set_seed  # noqa: PLC0415

        if self._initialised:
            return
        spec = self.spec
        if spec.world.size != self.world_size:
            raise ValueError(f"this worker's spec was planned for world size {spec.world.size} (trainer.nnodes "
                             f"{spec.world.nnodes} x trainer.n_gpus_per_node {spec.world.n_gpus_per_node}) but its "
                             f"group has {self.world_size} workers; plan with the group's size")
        self.init_process_group(backend="gloo" if self.device.type == "cpu" else "auto")
        if self.device.type == "cpu":
            # ranks share the cores; the count is explicit or a deterministic rule (workers/cpu_threads.py)
            torch.set_num_threads(self._cpu_threads())
        set_seed(spec.seed)
        self.tokenizer = load_tokenizer(spec.model.tokenizer_path, trust_remote_code=spec.model.trust_remote_code)
        shard = dict(rank=self.rank, world_size=self.world_size, device=self.device)
        if self._is_actor:
            a = spec.actor
            self.actor_module = build_sharded(spec.model, spec.model.path, a.fsdp, train=True, **shard)
            self.optimizer = optimizer_from_spec(self.actor_module.parameters(), a.optim)
            self.lr_scheduler = scheduler_from_spec(self.optimizer, a.optim)
            if spec.relift is not None and spec.relift.sft_optimizer == "separate":
                self.sft_optimizer = optimizer_from_spec(self.actor_module.parameters(), a.optim, lr=spec.relift.lr)
            self.actor = FSDPActor(self.actor_module, self.optimizer, actor_config(spec))
            self._set_padding_handling(self.actor, spec)
            self._optimizer_offload = a.fsdp.optimizer_offload and self.device.type == "cuda"
        if self._is_ref:
            self.ref_module = build_sharded(spec.model, spec.ref.model_path, spec.ref.fsdp, train=False, **shard)
            self.ref_policy = FSDPActor(self.ref_module, None, actor_config(spec, ref=True))
            self._set_padding_handling(self.ref_policy, spec)
        if self._is_rollout:
            self.rollout = self._build_rollout()
            self._rollout_version = -1 if self._is_actor else 0
        self._initialised = True
        logger.info("rank %d/%d: %s ready on %s", self.rank, self.world_size, self.role, self.device)

    @staticmethod
    def _set_padding_handling(actor: FSDPActor, spec: PolicyWorkerSpec) -> None:
        """``use_remove_padding``: packed rows where a flash-attention kernel takes them (no padding
        at all), else length-sorted, trimmed micro-batches with each prompt run once per group; and
        ``lean_forward`` where it applies (:func:`workers.lean_forward.lean_forward_applies`)."""
        model = spec.model
        actor.sort_micro_batches = model.use_remove_padding
        actor.pack_sequences = model.use_remove_padding and model.attn_implementation in PACKING_ATTENTION
        actor.share_prompts = model.share_prompt_prefix and not actor.pack_sequences
        actor.lean_forward = model.lean_forward and not actor.pack_sequences and lean_forward_applies(actor.module)
        if model.lean_forward:
            logger.info("lean_forward: %s", "on (a Llama-shaped model, parameters not sharded)" if actor.lean_forward
                        else "not taken (needs a Llama-shaped SDPA model whose parameters FSDP2 does not shard); "
                        "transformers' forward")

    def _eos_token_ids(self) -> list[int]:
        return eos_token_ids(self.tokenizer, self.spec.model.path)

    def _build_rollout(self) -> Any:
        """The engine; with vLLM tensor parallel the ranks of one TP group share a data-parallel rank
        (same prompts, same seed) and only the first keeps its result (``ROLLOUT_MESH`` dispatch)."""
        ro = self.spec.rollout
        self.rollout_dp_rank, is_collect = rollout_dp_layout(self.rank, self.world_size,
                                                             rollout_tp_size(ro.name, ro.tensor_model_parallel_size))
        self._register_dispatch_collect_info(ROLLOUT_MESH, self.rollout_dp_rank, is_collect)
        return build_rollout_engine(ro, self.spec.model, dp_rank=self.rollout_dp_rank, device=self.device,
                                    eos_token_ids=self._eos_token_ids(), pad_token_id=self.tokenizer.pad_token_id,
                                    share_from=self.actor_module if self._is_actor else None,
                                    world_size=self.world_size)

    # ------------------------------------------------------------------ helpers
    def _cpu_threads(self) -> int:
        """Torch threads for a CPU worker: the plan's explicit count, else the node/work rule; logged."""
        from relift.models.loading import load_config  # noqa: PLC0415
        from workers.cpu_threads import choose_cpu_threads, usable_cores  # noqa: PLC0415

        world = self.spec.world
        hidden = getattr(load_config(self.spec.model.path, trust_remote_code=self.spec.model.trust_remote_code),
                         "hidden_size", None) if world.cpu_threads is None else None
        choice = choose_cpu_threads(world.cpu_threads, world.cpu_threads_from, cores=usable_cores(),
                                    local_world_size=self.local_world_size, hidden_size=hidden)
        logger.info("rank %d: torch threads %s, OpenMP wait policy %s", self.rank, choice.reason,
                    os.environ.get("OMP_WAIT_POLICY") or "default (spin, then sleep)")
        return choice.threads

    def _require(self, what: str, ok: bool, role_needed: str) -> None:
        if not self._initialised:
            raise RuntimeError(f"{what}: call init_model() first")
        if not ok:
            raise RuntimeError(f"{what} needs the {role_needed} role, but this worker's role is {self.role!r}")

    def _to_device(self, data: DataProto) -> DataProto:
        return data.to(self.device) if data.batch is not None else data

    @staticmethod
    def _to_cpu(data: DataProto) -> DataProto:
        return data.to("cpu") if data.batch is not None else data

    def _mean_over_ranks(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Average metric values (scalars or per-step lists) over the ranks, element-wise."""
        if self.world_size == 1 or not dist.is_initialized():
            return metrics
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, metrics)
        out: dict[str, Any] = {}
        for key, value in metrics.items():
            values = [g.get(key, value) for g in gathered]
            if isinstance(value, (list, tuple)):
                n = min(len(v) for v in values)
                out[key] = [sum(float(v[i]) for v in values) / len(values) for i in range(n)]
            elif isinstance(value, (int, float)):
                out[key] = sum(float(v) for v in values) / len(values)
            else:
                out[key] = value
        return out

    @contextlib.contextmanager
    def _optimizer_on_device(self) -> Any:
        """Bring offloaded optimiser state to the GPU for the update, send it back after."""
        offload = getattr(self, "_optimizer_offload", False)
        opts = [o for o in (self.optimizer, self.sft_optimizer) if o is not None]
        if offload:
            for o in opts:
                fsdp_utils.move_optimizer_state(o, self.device)
        try:
            yield
        finally:
            if offload:
                for o in opts:
                    fsdp_utils.move_optimizer_state(o, "cpu")

    def _train_state(self) -> TrainState:
        return TrainState(module=self.actor_module, optimizer=self.optimizer, lr_scheduler=self.lr_scheduler,
                          sft_optimizer=self.sft_optimizer, tokenizer=self.tokenizer, rank=self.rank,
                          world_size=self.world_size)

    def _scored(self, data: DataProto) -> DataProto:
        """The batch on this device, with the temperature its responses were sampled at."""
        data = self._to_device(data)
        data.meta_info["temperature"] = self._scoring_temperature
        return data

    # ------------------------------------------------------------------ rollout
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_rollout_seed(self, seed: int) -> bool:
        """Reseed with ``seed + rollout DP rank`` (the ranks of a vLLM TP group share one); False if it cannot."""
        if self.rollout is None:
            return False
        return bool(self.rollout.reseed(int(seed) + int(self.rollout_dp_rank)))

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO, mesh=ROLLOUT_MESH)
    def generate_sequences(self, prompts: DataProto) -> DataProto:
        """Sample responses (weights synced from the actor first when it changed)."""
        self._require("generate_sequences", self._is_rollout, "rollout")
        sync_s = 0.0
        if self._is_actor and self._rollout_version != self._actor_version:
            sync_s = sync_weights(self.actor_module, self.rollout, self.device, self.spec.rollout.weight_sync_bucket_mb)
            self._rollout_version = self._actor_version
        start = time.perf_counter()
        out = self.rollout.generate_sequences(self._to_device(prompts))
        gen_s = time.perf_counter() - start
        out = self._to_cpu(out)
        out.meta_info["timing"] = {"gen": gen_s, "weight_sync": sync_s}
        return out

    # ------------------------------------------------------------------ log-probs
    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def compute_log_prob(self, data: DataProto) -> DataProto:
        """``old_log_probs`` and ``entropys`` [B, R] under the current actor."""
        self._require("compute_log_prob", self._is_actor, "actor")
        log_probs, entropys = self.actor.compute_log_prob(self._scored(data), calculate_entropy=True)
        return DataProto.from_dict(tensors={"old_log_probs": log_probs.cpu(), "entropys": entropys.cpu()})

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def compute_ref_log_prob(self, data: DataProto) -> DataProto:
        """``ref_log_prob`` [B, R]; for pair data ``ref_chosen_log_prob`` / ``ref_rejected_log_prob``."""
        self._require("compute_ref_log_prob", self._is_ref, "ref")
        data = self._scored(data)
        if data.batch is not None and "chosen_input_ids" in data.batch.keys():
            chosen, rejected = self.ref_policy.compute_pair_log_probs(data)
            tensors = {"ref_chosen_log_prob": chosen.cpu(), "ref_rejected_log_prob": rejected.cpu()}
        else:
            log_probs, _ = self.ref_policy.compute_log_prob(data, calculate_entropy=False)
            tensors = {"ref_log_prob": log_probs.cpu()}
        return DataProto.from_dict(tensors=tensors)

    # ------------------------------------------------------------------ updates
    def _finish_update(self, metrics: dict[str, Any], start: float, step_scheduler: bool) -> DataProto:
        if step_scheduler:
            self.lr_scheduler.step()
        self._actor_version += 1
        metrics = self._mean_over_ranks(metrics)
        metrics["timing_s/update_actor_worker"] = time.perf_counter() - start
        return DataProto(meta_info={"metrics": metrics})

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def update_actor(self, data: DataProto) -> DataProto:
        """One RL update (mini-batches x ppo_epochs), then one LR-scheduler step."""
        self._require("update_actor", self._is_actor, "actor")
        start = time.perf_counter()
        with self._optimizer_on_device():
            metrics = self.actor.update_policy(self._scored(data))
        return self._finish_update(metrics, start, step_scheduler=True)

    @contextlib.contextmanager
    def _sft_micro_batching(self) -> Any:
        """In RL mode the fine-tuning step uses the ``relift.*`` micro-batching and loss aggregation."""
        relift = self.spec.relift
        if self._offline or relift is None:
            yield
            return
        cfg = self.actor.config
        changes = {"ppo_micro_batch_size_per_gpu": relift.micro.micro_batch_size_per_gpu,
                   "use_dynamic_bsz": relift.micro.use_dynamic_bsz,
                   "ppo_max_token_len_per_gpu": relift.micro.max_token_len_per_gpu or None,
                   "sft_loss_agg_mode": relift.loss_agg_mode}
        self.actor.config = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
        try:
            yield
        finally:
            self.actor.config = cfg

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def update_actor_sft(self, data: DataProto) -> DataProto:
        """Fine-tune on demonstrations (ReLIFT's step, or the SFT baseline).

        In RL mode this never steps the LR scheduler (``meta_info['step_lr_scheduler']`` forces it)
        and runs at ``relift.lr`` with ``relift.entropy_coeff``; the whole batch is one optimiser step
        unless ``meta_info['mini_batch_size']`` (rows per worker) says otherwise. Offline, it is the
        main objective: scheduler stepped once per call.
        """
        self._require("update_actor_sft", self._is_actor, "actor")
        start = time.perf_counter()
        data = self._to_device(data)
        relift = None if self._offline else self.spec.relift
        step_sched = bool(data.meta_info.get("step_lr_scheduler", self._offline))
        lr = None if relift is None else relift.lr
        coeff = data.meta_info.get("entropy_coeff", None if relift is None else relift.entropy_coeff)
        mini = data.meta_info.get("mini_batch_size")
        if mini is None and not self._offline:
            mini = len(data)
        with self._optimizer_on_device(), self._sft_micro_batching():
            metrics = self.actor.update_sft(data, entropy_coeff=None if coeff is None else float(coeff),
                                            optimizer=self.sft_optimizer, lr=None if lr is None else float(lr),
                                            mini_batch_size=None if mini is None else int(mini))
        return self._finish_update(metrics, start, step_scheduler=step_sched)

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def update_actor_pairs(self, data: DataProto) -> DataProto:
        """REDI / DPO / SimPO on pairs; ``meta_info['loss_type']`` (default: the spec's ``loss.type``)."""
        self._require("update_actor_pairs", self._is_actor, "actor")
        start = time.perf_counter()
        data = self._to_device(data)
        default = self.spec.loss.type if self.spec.loss is not None and self.spec.loss.type != "sft" else "redi"
        loss_type = data.meta_info.get("loss_type") or default
        step_sched = bool(data.meta_info.get("step_lr_scheduler", True))
        with self._optimizer_on_device():
            metrics = self.actor.update_pairs(data, str(loss_type),
                                              mini_batch_size=data.meta_info.get("mini_batch_size"))
        return self._finish_update(metrics, start, step_scheduler=step_sched)

    # ------------------------------------------------------------------ checkpoints
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, local_path: str, hdfs_path: str | None = None, global_step: int = 0,
                        max_ckpt_to_keep: int | None = None) -> str:
        """Write this rank's shards (model, optimiser(s), scheduler + RNG) into ``local_path``.

        Atomicity and rotation belong to the driver (write into ``begin_checkpoint``'s staging
        dir, then ``commit_checkpoint(root, step, max_to_keep)``); ``hdfs_path`` and
        ``max_ckpt_to_keep`` are accepted for verl compatibility and ignored here.
        """
        self._require("save_checkpoint", self._is_actor, "actor")
        save_train_state(self._train_state(), Path(local_path), self.spec.actor.checkpoint.save_contents,
                         actor_version=self._actor_version, global_step=global_step, role=self.role,
                         model_path=self.spec.model.path, model_dtype=self.spec.model.dtype)
        return str(local_path)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, local_path: str, hdfs_path: str | None = None,
                        del_local_after_load: bool = False) -> int:
        """Restore what :meth:`save_checkpoint` wrote; returns the checkpoint's global step.

        Raises :class:`relift.utils.checkpoint.CheckpointError` when the world size differs.
        """
        self._require("load_checkpoint", self._is_actor, "actor")
        step = load_train_state(self._train_state(), Path(local_path), self.spec.actor.checkpoint.load_contents,
                                optimizer_offload=self._optimizer_offload)
        self._actor_version += 1  # the rollout engine must re-sync
        if del_local_after_load and self.rank == 0:
            shutil.rmtree(local_path, ignore_errors=True)
        return step

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def export_hf(self, local_path: str, dtype: str | None = None) -> str:
        """Write the actor as a HF folder transformers loads (``dtype`` defaults to ``model.dtype``).

        Collective (every rank gathers its shards to rank 0); rank 0 writes.
        """
        self._require("export_hf", self._is_actor, "actor")
        export_hf_folder(self._train_state(), Path(local_path), dtype or self.spec.model.dtype)
        return str(local_path)

    # ------------------------------------------------------------------ small queries
    @register(dispatch_mode=Dispatch.RANK_ZERO, execute_mode=Execute.RANK_ZERO)
    def get_lr(self) -> float:
        """The actor's current learning rate (the value the next update uses)."""
        self._require("get_lr", self._is_actor, "actor")
        return float(self.optimizer.param_groups[0]["lr"])

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def offload_status(self) -> dict[str, Any]:
        """Where the actor's parameters and optimiser state live (for tests and debugging)."""
        info: dict[str, Any] = {"role": self.role, "rank": self.rank, "device": str(self.device)}
        if self.actor_module is not None:
            info["param_device"] = str(fsdp_utils.model_device(self.actor_module))
        if self.optimizer is not None:
            devices = {str(v.device) for s in self.optimizer.state.values() for k, v in s.items()
                       if isinstance(v, torch.Tensor) and k != "step"}
            info["optimizer_devices"] = sorted(devices)
        return info

