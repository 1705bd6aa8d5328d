"""ActorRolloutRefWorker: the policy (FSDP2 + AdamW), its rollout engine and the reference policy.

One instance per device. The role string picks what it holds (verl's names): ``actor``,
``rollout``, ``ref``, ``actor_rollout``, ``actor_rollout_ref``. The worker reads the full config's
``actor_rollout_ref.*`` keys (``trainer/config/rl_trainer.yaml``); an offline-trainer config
(top-level ``model`` / ``optim`` / ``loss``) is translated to the same keys.

Decisions worth knowing:

* Sharding: FSDP2 per decoder layer + root over all ranks (gloo on CPU; NCCL with bf16 compute and
  fp32 gradient reduction on GPU). With more than one rank, rank 0 alone reads the checkpoint; the
  others build the model on the meta device and receive the weights by broadcast (host memory:
  one full copy per node instead of one per rank).
* Batch sizes: ``actor.ppo_mini_batch_size`` is in prompts; each worker's mini-batch is
  ``mini * rollout.n / world_size`` sequences (checked to divide). Micro-batch sizes are per worker.
* Weight sync: the rollout engine holds its own unsharded copy of the weights. Before generating,
  if the actor changed since the last sync, the weights stream from the FSDP shards into the engine
  in buckets of ``rollout.weight_sync_bucket_mb`` (:mod:`workers.weight_sync`): no rank holds a
  second full copy of the model.
  The HF engine could share the module, but a sharded module would all-gather per layer per
  decoding step and force every rank to decode in lockstep; the copy avoids both.
* ReLIFT's fine-tuning step shares the RL AdamW (no second copy of the moments: ReLIFT's public
  code doubled optimiser memory with a second AdamW). It runs at ``relift.lr`` (default: the actor
  lr) through a temporary lr override and never steps the RL LR scheduler. Set
  ``relift.sft_optimizer: separate`` for a dedicated AdamW (checkpointed too). Offline training
  (SFT / pairs as the main objective) steps the scheduler once per update call.
* Checkpoints: per-rank files of local shards (see :mod:`relift.utils.fsdp`) written into the folder
  the driver gives (normally ``<root>/.tmp-global_step_N/actor`` from
  :func:`relift.utils.checkpoint.begin_checkpoint`; the driver commits). Files:
  ``model_/optim_/extra_state_world_size_W_rank_R.pt``, ``meta.json``, ``huggingface/`` (config +
  tokenizer). ``local_path`` must be on a file system every rank sees.
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
from relift.utils import checkpoint as ckpt
from relift.utils import fsdp as fsdp_utils
from relift.utils.optim import build_lr_scheduler_from_config, build_optimizer
from workers.actor import DataParallelActor
from workers.rollout.layout import ROLLOUT_MESH, rollout_dp_layout, rollout_tp_size
from workers.weight_sync import DEFAULT_BUCKET_MB, sync_rollout_weights

__all__ = ["ActorRolloutRefWorker", "ROLES", "to_worker_config"]

logger = logging.getLogger(__name__)

ROLES = ("actor", "rollout", "ref", "actor_rollout", "actor_rollout_ref")

_DTYPE = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
          "fp32": torch.float32, "float32": torch.float32}


# ---------------------------------------------------------------------------- config helpers
def _to_omegaconf(config: Any) -> Any:
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        return config
    if isinstance(config, dict):
        return OmegaConf.create(config)
    raise TypeError(f"worker config must be a dict or an OmegaConf DictConfig, got {type(config).__name__}")


def _sel(config: Any, key: str, default: Any = None) -> Any:
    from omegaconf import OmegaConf

    value = OmegaConf.select(config, key, default=default)
    return default if value is None else value


def _container(node: Any) -> dict[str, Any]:
    from omegaconf import DictConfig, OmegaConf

    if node is None:
        return {}
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    return dict(node)


def to_worker_config(config: Any) -> Any:
    """The ``actor_rollout_ref`` view the worker reads; translates an offline-trainer config.

    Offline configs (``trainer/config/offline_trainer.yaml``: top-level ``model``, ``optim``,
    ``loss``, ``ref``, ``data.train_batch_size``/``micro_batch_size_per_gpu``) become
    ``actor_rollout_ref.{model,actor,ref}`` with ``rollout.n = 1`` and ``worker_mode: offline``.
    """
    from omegaconf import OmegaConf

    cfg = _to_omegaconf(config)
    if OmegaConf.select(cfg, "actor_rollout_ref") is not None:
        return cfg
    if OmegaConf.select(cfg, "model") is None:
        raise KeyError("worker config has neither actor_rollout_ref.* (RL) nor model.* (offline) keys")
    model = _container(cfg.model)
    fsdp_config = model.pop("fsdp_config", {}) or {}
    logits_chunk = model.pop("logits_chunk_size", 1024)
    optim = _container(_sel(cfg, "optim", {}))
    loss = _container(_sel(cfg, "loss", {}))
    ref = _container(_sel(cfg, "ref", {}))
    batch = int(_sel(cfg, "data.train_batch_size", 1))
    micro = _sel(cfg, "data.micro_batch_size_per_gpu", None)
    actor = {
        "ppo_mini_batch_size": batch, "ppo_micro_batch_size_per_gpu": micro, "logits_chunk_size": logits_chunk,
        "grad_clip": optim.pop("grad_clip", 1.0), "optim": optim, "fsdp_config": fsdp_config,
        "redi_alpha": loss.get("alpha", 0.8), "simpo_gamma": loss.get("gamma", 1.0),
        "offline_batch_size": batch,
    }
    if loss.get("beta") is not None:
        actor["dpo_beta"] = actor["simpo_beta"] = loss["beta"]
    out = {
        "worker_mode": "offline",
        "actor_rollout_ref": {
            "model": model, "actor": actor, "rollout": {"n": 1},
            "ref": {"model_path": ref.get("model_path"), "fsdp_config": ref.get("fsdp_config", {}),
                    "log_prob_micro_batch_size_per_gpu": ref.get("log_prob_micro_batch_size_per_gpu", micro)},
        },
        "trainer": {"seed": _sel(cfg, "trainer.seed", 1), "device": _sel(cfg, "trainer.device", "auto"),
                    "max_actor_ckpt_to_keep": _sel(cfg, "trainer.max_ckpt_to_keep", None)},
    }
    return OmegaConf.create(out)


# ---------------------------------------------------------------------------- actor under FSDP
class _FSDPActor(DataParallelActor):
    """The actor core with two data-parallel rules.

    * Every rank runs the same number of micro-batches: FSDP2 all-gathers each layer on every
      forward, so ranks must make the same number of forward calls. Fixed micro-batch sizes over
      equal chunks give that already; token-budget micro-batches (``use_dynamic_bsz``) do not, so
      the count is agreed on (all-reduce MAX) and ranks with fewer split their largest ones.
    * Loss normalisers are global: each mini-batch's token and sequence totals are summed over the
      ranks (divided by the world size, because FSDP averages the gradients), so ``token-mean``
      and the ``seq-mean-*`` modes give the gradient of the whole global mini-batch, whatever the
      world size and however unevenly the tokens fall on the ranks.
    """

    def _normalizers(self, mini: DataProto, mask: torch.Tensor) -> dict[str, Any]:
        norms = DataParallelActor._normalizers(mini, mask)
        explicit = mini.meta_info.get("global_num_tokens") is not None or \
            mini.meta_info.get("global_num_seqs") is not None
        if explicit or not dist.is_initialized() or dist.get_world_size() == 1:
            return norms
        world = dist.get_world_size()
        totals = torch.tensor([float(norms["num_tokens"]), float(norms["num_seqs"])], dtype=torch.float64)
        dist.all_reduce(totals)
        norms["num_tokens"] = float(totals[0]) / world
        norms["num_seqs"] = float(totals[1]) / world
        return norms

    def _micro_batches(self, data: DataProto, use_dynamic: bool, micro_batch_size: int | None,
                       max_token_len: int | None, lengths: torch.Tensor | None = None
                       ) -> tuple[list[DataProto], list[list[int]]]:
        parts, groups = super()._micro_batches(data, use_dynamic, micro_batch_size, max_token_len, lengths)
        if not dist.is_initialized() or dist.get_world_size() == 1:
            return parts, groups
        count = torch.tensor([len(groups)], dtype=torch.long)
        dist.all_reduce(count, op=dist.ReduceOp.MAX)
        target = int(count.item())
        if target == len(groups):
            return parts, groups
        if target > len(data):
            raise RuntimeError(f"ranks disagree on the micro-batch count ({target}) and this rank has only "
                               f"{len(data)} rows; give every rank the same number of rows")
        groups = [list(g) for g in groups]
        while len(groups) < target:
            i = max(range(len(groups)), key=lambda j: len(groups[j]))
            g = groups.pop(i)
            half = len(g) // 2
            groups[i:i] = [g[:half], g[half:]]
        return [data[g] for g in groups], groups


# ---------------------------------------------------------------------------- the worker
class ActorRolloutRefWorker(Worker):
    """Actor, rollout and/or reference policy on one device (see the module docstring)."""

    def __init__(self, config: Any, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
        self.config = to_worker_config(config)
        self.role = role
        self._is_actor = role in ("actor", "actor_rollout", "actor_rollout_ref")
        self._is_rollout = role in ("rollout", "actor_rollout", "actor_rollout_ref")
        self._is_ref = role in ("ref", "actor_rollout_ref")
        self._offline = _sel(self.config, "worker_mode", "rl") == "offline"
        self.actor_module: Any = None
        self.ref_module: Any = None
        self.actor: _FSDPActor | None = None
        self.ref_policy: _FSDPActor | None = None
        self.rollout: Any = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.lr_scheduler: Any = None
        self.sft_optimizer: torch.optim.Optimizer | None = None
        self.tokenizer: Any = None
        self._actor_version = 0      # bumped by every update of the actor's weights
        self._rollout_version = -1   # the actor version the rollout engine holds
        self._initialised = False
        self._actor_cfg = self._normalised_actor_config() if self._is_actor else None

    # ------------------------------------------------------------------ config
    def _c(self, key: str, default: Any = None) -> Any:
        return _sel(self.config, key, default)

    @property
    def device(self) -> torch.device:
        """``trainer.device``: ``auto`` (this worker's GPU when it has one), ``cuda`` or ``cpu``."""
        want = str(self._c("trainer.device", "auto")).lower()
        if want == "cpu":
            return torch.device("cpu")
        if want == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("trainer.device=cuda but this worker sees no CUDA device "
                               "(was the resource pool created with use_gpu=True?)")
        if want not in ("auto", "cuda"):
            raise ValueError(f"trainer.device={want!r}; expected auto, cuda or cpu")
        return super().device

    def _normalised_actor_config(self) -> dict[str, Any]:
        """Actor keys with ppo_mini_batch_size turned from prompts into sequences per worker."""
        actor = _container(self._c("actor_rollout_ref.actor", {}))
        n = int(self._c("actor_rollout_ref.rollout.n", 1))
        mini = int(actor.get("ppo_mini_batch_size", 1))
        seqs = mini * n
        if seqs % self.world_size != 0:
            raise ValueError(
                f"actor_rollout_ref.actor.ppo_mini_batch_size ({mini} prompts) x actor_rollout_ref.rollout.n ({n}) "
                f"= {seqs} sequences per optimiser step cannot be split evenly over {self.world_size} workers "
                f"({seqs} % {self.world_size} = {seqs % self.world_size}); change one of them")
        actor["ppo_mini_batch_size"] = seqs // self.world_size
        if self._offline:
            per = actor["ppo_mini_batch_size"]
            actor.setdefault("sft_mini_batch_size", per)
            actor.setdefault("pair_mini_batch_size", per)
        rollout = _container(self._c("actor_rollout_ref.rollout", {}))
        for key in ("log_prob_micro_batch_size_per_gpu", "log_prob_use_dynamic_bsz", "log_prob_max_token_len_per_gpu"):
            if rollout.get(key) is not None:
                actor.setdefault(key, rollout[key])
        actor.setdefault("seed", int(self._c("trainer.seed", 0)))
        if actor.get("loss_agg_mode") == "seq-mean-token-sum-norm":
            # a constant normaliser: FSDP's gradient average over ranks would shrink it by the world
            # size, so divide the constant instead (same gradient as one process on the whole batch)
            base = actor.get("loss_scale_factor") or self._c("actor_rollout_ref.rollout.response_length", None) \
                or self._c("data.max_response_length", None)
            if base is not None:
                actor["loss_scale_factor"] = float(base) / self.world_size
            elif self.world_size > 1:
                raise ValueError("loss_agg_mode=seq-mean-token-sum-norm with several workers needs "
                                 "actor.loss_scale_factor or rollout.response_length")
        return actor

    def _ref_actor_config(self) -> dict[str, Any]:
        cfg = dict(self._actor_cfg or _container(self._c("actor_rollout_ref.actor", {})))
        cfg.pop("ppo_mini_batch_size", None)
        ref = _container(self._c("actor_rollout_ref.ref", {}))
        for key in ("log_prob_micro_batch_size_per_gpu", "log_prob_use_dynamic_bsz", "log_prob_max_token_len_per_gpu"):
            if ref.get(key) is not None:
                cfg[key] = ref[key]
        return cfg

    def _mixed_precision(self, fsdp_config: Any) -> tuple[torch.dtype | None, torch.dtype | None]:
        mode = str(_sel(fsdp_config, "mixed_precision", "auto") if fsdp_config is not None else "auto").lower()
        on_gpu = self.device.type == "cuda"
        if mode == "auto":
            return (torch.bfloat16, torch.float32) if on_gpu else (None, None)
        if mode not in _DTYPE:
            raise ValueError(f"fsdp_config.mixed_precision={mode!r}; expected auto, bf16, fp16 or fp32")
        param = _DTYPE[mode]
        return (None, None) if param == torch.float32 else (param, torch.float32)

    # ------------------------------------------------------------------ model building
    def _hf_config(self, path: str) -> Any:
        from relift.models.loading import load_config

        hf_config = load_config(path, trust_remote_code=bool(self._c("actor_rollout_ref.model.trust_remote_code",
                                                                       False)))
        for key, value in _container(self._c("actor_rollout_ref.model.override_config", {})).items():
            setattr(hf_config, key, value)
        return hf_config

    def _load_module(self, path: str, dtype: torch.dtype, device: torch.device | str, meta: bool = False) -> Any:
        """The HF model in ``dtype`` on ``device`` (or on the meta device: shapes only)."""
        from transformers import AutoModelForCausalLM

        from relift.models.loading import load_causal_lm

        hf_config = self._hf_config(path)
        attn = self._c("actor_rollout_ref.model.attn_implementation", None)
        trust = bool(self._c("actor_rollout_ref.model.trust_remote_code", False))
        load_format = str(self._c("actor_rollout_ref.model.load_format", "auto"))
        if load_format not in ("auto", "dummy"):
            raise ValueError(f"actor_rollout_ref.model.load_format={load_format!r}; expected auto or dummy")
        if meta or load_format == "dummy":  # dummy: random weights from the config (benchmarks)
            kwargs = {"attn_implementation": attn} if attn else {}
            with torch.device("meta" if meta else device):
                module = AutoModelForCausalLM.from_config(hf_config, dtype=dtype, trust_remote_code=trust, **kwargs)
            return module
        return load_causal_lm(path, dtype=dtype, device=device, attn_implementation=attn, trust_remote_code=trust,
                              config=hf_config)

    def _build_sharded(self, path: str, fsdp_config: Any, train: bool) -> Any:
        """Load and shard one policy copy (actor or ref) with FSDP2; see the module docstring."""
        from torch.distributed.device_mesh import init_device_mesh

        dtype = _DTYPE.get(str(self._c("actor_rollout_ref.model.dtype", "float32")).lower())
        if dtype is None:
            raise ValueError(f"actor_rollout_ref.model.dtype={self._c('actor_rollout_ref.model.dtype')!r}; "
                             "expected float32, bfloat16 or float16")
        broadcast = self.world_size > 1 and bool(_sel(fsdp_config, "init_on_rank0", True))
        on_meta = broadcast and self.rank != 0
        module = self._load_module(path, dtype, "cpu", meta=on_meta)
        full_sd = None
        buffers = None
        if broadcast and self.rank == 0:
            full_sd = {k: v.detach().clone() for k, v in module.state_dict().items()}
        if broadcast:
            buffers = {name: (b.detach().clone() if self.rank == 0 else None) for name, b in module.named_buffers()}
        if train and bool(self._c("actor_rollout_ref.model.enable_gradient_checkpointing", False)):
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(module, "config"):
            module.config.use_cache = False
        param_dtype, reduce_dtype = self._mixed_precision(fsdp_config)
        fsdp_size = int(_sel(fsdp_config, "fsdp_size", -1))
        if fsdp_size not in (-1, self.world_size):
            raise ValueError(f"fsdp_config.fsdp_size={fsdp_size}: only -1 (shard over all {self.world_size} workers) "
                             "is supported")
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        fsdp_utils.apply_fsdp2(module, mesh=mesh, param_dtype=param_dtype, reduce_dtype=reduce_dtype,
                               cpu_offload=bool(_sel(fsdp_config, "param_offload", False)),
                               reshard_after_forward=bool(_sel(fsdp_config, "reshard_after_forward", True)))
        offload = bool(_sel(fsdp_config, "param_offload", False)) and self.device.type == "cuda"
        if broadcast:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            if on_meta:
                module.to_empty(device="cpu" if offload else self.device)
                if offload:  # sharded params stay on the CPU; buffers (rotary tables) compute on the GPU
                    for sub in module.modules():
                        for name, buf in list(sub._buffers.items()):
                            if buf is not None:
                                sub._buffers[name] = buf.to(self.device)
            set_model_state_dict(module, full_sd or {}, options=StateDictOptions(full_state_dict=True,
                                                                                  broadcast_from_rank0=True))
            self._broadcast_buffers(module, buffers or {})
            del full_sd
        elif not offload:
            module.to(self.device)
        module.train(train)
        if not train:
            for p in module.parameters():
                p.requires_grad_(False)
        return module

    def _broadcast_buffers(self, module: Any, rank0_buffers: dict[str, torch.Tensor | None]) -> None:
        """Non-persistent buffers (rotary tables) are not in the state dict: send rank 0's."""
        for name, buf in module.named_buffers():
            if self.rank == 0:
                tensor = rank0_buffers[name].to(device=buf.device, dtype=buf.dtype).contiguous()
            else:
                tensor = torch.empty(buf.shape, dtype=buf.dtype, device=buf.device)
            dist.broadcast(tensor, src=0)
            with torch.no_grad():
                buf.copy_(tensor)

    def _eos_token_ids(self) -> list[int]:
        """The tokenizer's eos plus the generation config's extra stop ids (e.g. Qwen's two)."""
        from transformers import GenerationConfig

        ids = [] if self.tokenizer.eos_token_id is None else [int(self.tokenizer.eos_token_id)]
        try:
            gen = GenerationConfig.from_pretrained(str(self._c("actor_rollout_ref.model.path")))
            extra = gen.eos_token_id
            for e in (extra if isinstance(extra, (list, tuple)) else [extra]):
                if e is not None and int(e) not in ids:
                    ids.append(int(e))
        except (OSError, ValueError):
            pass
        if not ids:
            raise ValueError("the tokenizer has no eos token and the model has no generation_config eos ids")
        return ids

    def _build_rollout(self) -> Any:
        """The generation engine named by ``actor_rollout_ref.rollout.name`` (hf | vllm)."""
        name = str(self._c("actor_rollout_ref.rollout.name", "hf"))
        path = str(self._c("actor_rollout_ref.model.path"))
        rollout_cfg = _container(self._c("actor_rollout_ref.rollout", {}))
        self.rollout_dp_rank, is_collect = rollout_dp_layout(self.rank, self.world_size,
                                                             rollout_tp_size(name, rollout_cfg))
        self._register_dispatch_collect_info(ROLLOUT_MESH, self.rollout_dp_rank, is_collect)  # TP ranks: same input
        rollout_cfg.setdefault("seed", int(self._c("trainer.seed", 0)) + 1000 * self.rollout_dp_rank)
        eos = self._eos_token_ids()
        if name == "hf":
            from workers.rollout.hf import HFRollout

            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
            module = self._load_module(path, dtype, self.device)
            module.eval()
            module.config.use_cache = True
            return HFRollout(module, rollout_cfg, eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id,
                             shares_module=False)
        if name == "vllm":
            from workers.rollout.vllm import VLLMRollout  # GPU only; imported lazily

            return VLLMRollout(path, rollout_cfg, eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id,
                               hf_overrides=_container(self._c("actor_rollout_ref.model.override_config", {})))
        raise ValueError(f"actor_rollout_ref.rollout.name={name!r}; expected hf or vllm")

    # ------------------------------------------------------------------ init
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self) -> None:
        """Join the process group, load + shard the models, build optimiser, schedule and engines."""
        from relift.models.loading import load_tokenizer
        from relift.utils.seed import set_seed

        if self._initialised:
            return
        self.init_process_group(backend="gloo" if self.device.type == "cpu" else "auto")
        if self.device.type == "cpu":
            # ranks share the cores, and OpenMP threads that spin-wait on a busy CPU make every op
            # crawl (docs/bench_workers.md: 33x on a loaded 2-core box); RELIFT_CPU_THREADS overrides
            torch.set_num_threads(self._cpu_threads())
        set_seed(int(self._c("trainer.seed", 1)))
        path = self._c("actor_rollout_ref.model.path")
        if not path:
            raise ValueError("actor_rollout_ref.model.path is not set (a local HF folder or a hub id)")
        tok_path = self._c("actor_rollout_ref.model.tokenizer_path", None) or path
        self.tokenizer = load_tokenizer(tok_path,
                                        trust_remote_code=bool(self._c("actor_rollout_ref.model.trust_remote_code",
                                                                       False)))
        if self._is_actor:
            fsdp_config = self._c("actor_rollout_ref.actor.fsdp_config", {})
            self.actor_module = self._build_sharded(str(path), fsdp_config, train=True)
            optim_cfg = self._c("actor_rollout_ref.actor.optim", {})
            self.optimizer = build_optimizer(self.actor_module.parameters(), optim_cfg)
            total = int(_sel(optim_cfg, "total_training_steps", -1))
            if total <= 0:
                total = int(self._c("trainer.total_training_steps", 0) or 0)
            self.lr_scheduler = build_lr_scheduler_from_config(self.optimizer, optim_cfg, total_steps=max(total, 0))
            if str(self._c("relift.sft_optimizer", "shared")) == "separate":
                self.sft_optimizer = build_optimizer(self.actor_module.parameters(), optim_cfg,
                                                     lr=float(self._c("relift.lr", _sel(optim_cfg, "lr", 1e-6))))
            self.actor = _FSDPActor(self.actor_module, self.optimizer, self._actor_cfg)
            self._optimizer_offload = (bool(_sel(fsdp_config, "optimizer_offload", False))
                                       and self.device.type == "cuda")
        if self._is_ref:
            ref_path = self._c("actor_rollout_ref.ref.model_path", None) or path
            self.ref_module = self._build_sharded(str(ref_path), self._c("actor_rollout_ref.ref.fsdp_config", {}),
                                                  train=False)
            self.ref_policy = _FSDPActor(self.ref_module, None, self._ref_actor_config())
        if self._is_rollout:
            self.rollout = self._build_rollout()
            self._rollout_version = -1 if self._is_actor else 0
        self._initialised = True
        logger.info("rank %d/%d: %s ready on %s", self.rank, self.world_size, self.role, self.device)

    # ------------------------------------------------------------------ helpers
    def _cpu_threads(self) -> int:
        """Torch threads for a CPU worker: ``RELIFT_CPU_THREADS``, else its share of the cores, one
        core left for the driver and the reward processes when it is alone on the node."""
        env = os.environ.get("RELIFT_CPU_THREADS")
        if env:
            return max(1, int(env))
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        share = cores // max(1, self.local_world_size)
        return max(1, share - 1 if self.local_world_size == 1 else share)

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

    def _sync_rollout_weights(self) -> float:
        """Stream the actor's weights into the engine in buckets (:mod:`workers.weight_sync`)."""
        if not self._is_actor or self._rollout_version == self._actor_version:
            return 0.0
        start = time.perf_counter()
        dtype = torch.bfloat16 if self.device.type == "cuda" else None
        sync_rollout_weights(self.actor_module, self.rollout, dtype=dtype,
                             device="cpu" if self.device.type == "cpu" else None,
                             bucket_mb=self._c("actor_rollout_ref.rollout.weight_sync_bucket_mb", DEFAULT_BUCKET_MB))
        self._rollout_version = self._actor_version
        return time.perf_counter() - start

    # ------------------------------------------------------------------ rollout
    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO, mesh=ROLLOUT_MESH)
    def generate_sequences(self, prompts: DataProto) -> DataProto:
        """Sample responses (weights synced from the actor first when it changed)."""
        self._require("generate_sequences", self._is_rollout, "rollout")
        sync_s = self._sync_rollout_weights()
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
        log_probs, entropys = self.actor.compute_log_prob(self._to_device(data), calculate_entropy=True)
        return DataProto.from_dict(tensors={"old_log_probs": log_probs.cpu(), "entropys": entropys.cpu()})

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def compute_ref_log_prob(self, data: DataProto) -> DataProto:
        """``ref_log_prob`` [B, R]; for pair data ``ref_chosen_log_prob`` / ``ref_rejected_log_prob``."""
        self._require("compute_ref_log_prob", self._is_ref, "ref")
        data = self._to_device(data)
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
            metrics = self.actor.update_policy(self._to_device(data))
        return self._finish_update(metrics, start, step_scheduler=True)

    @contextlib.contextmanager
    def _sft_micro_batching(self) -> Any:
        """Use the ``relift.*`` micro-batch settings for the fine-tuning step when they are given."""
        cfg = self.actor.config
        changes = {}
        for src, dst in (("relift.sft_micro_batch_size_per_gpu", "ppo_micro_batch_size_per_gpu"),
                         ("relift.use_dynamic_bsz", "use_dynamic_bsz"),
                         ("relift.max_token_len_per_gpu", "ppo_max_token_len_per_gpu"),
                         ("relift.loss_agg_mode", "sft_loss_agg_mode")):
            value = self._c(src, None)
            if value is not None and not self._offline:
                changes[dst] = value
        self.actor.config = dataclasses.replace(cfg, **changes)
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
        step_sched = bool(data.meta_info.get("step_lr_scheduler", self._offline))
        lr = None if self._offline else self._c("relift.lr", None)
        coeff = data.meta_info.get("entropy_coeff", None if self._offline else self._c("relift.entropy_coeff", None))
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
        """REDI / DPO / SimPO on pairs; ``meta_info['loss_type']`` (default ``loss.type`` or redi)."""
        self._require("update_actor_pairs", self._is_actor, "actor")
        start = time.perf_counter()
        data = self._to_device(data)
        loss_type = data.meta_info.get("loss_type") or self._c("loss.type", None) or "redi"
        step_sched = bool(data.meta_info.get("step_lr_scheduler", True))
        with self._optimizer_on_device():
            metrics = self.actor.update_pairs(data, str(loss_type),
                                              mini_batch_size=data.meta_info.get("mini_batch_size"))
        return self._finish_update(metrics, start, step_scheduler=step_sched)

    # ------------------------------------------------------------------ checkpoints
    def _save_contents(self, key: str) -> list[str]:
        default = ["model", "optimizer", "extra"]
        value = self._c(f"actor_rollout_ref.actor.checkpoint.{key}", default)
        return [str(v) for v in value]

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, local_path: str, hdfs_path: str | None = None, global_step: int = 0,
                        max_ckpt_to_keep: int | None = None) -> str:
        """Write this rank's shards (model, optimiser(s), scheduler + RNG) into ``local_path``.

        Atomicity and rotation belong to the driver (write into ``begin_checkpoint``'s staging
        dir, then ``commit_checkpoint(root, step, max_to_keep)``); ``hdfs_path`` and
        ``max_ckpt_to_keep`` are accepted for verl compatibility and ignored here.
        """
        self._require("save_checkpoint", self._is_actor, "actor")
        folder = Path(local_path)
        folder.mkdir(parents=True, exist_ok=True)
        contents = self._save_contents("save_contents")
        ws, rank = self.world_size, self.rank
        if "model" in contents:
            ckpt.atomic_save(fsdp_utils.local_model_state(self.actor_module), ckpt.rank_file(folder, "model", rank, ws))
        if "optimizer" in contents:
            optim_state = {"optimizer": fsdp_utils.local_optim_state(self.optimizer)}
            if self.sft_optimizer is not None:
                optim_state["sft_optimizer"] = fsdp_utils.local_optim_state(self.sft_optimizer)
            ckpt.atomic_save(optim_state, ckpt.rank_file(folder, "optim", rank, ws))
        if "extra" in contents:
            extra = {"lr_scheduler": self.lr_scheduler.state_dict(), "rng": ckpt.get_rng_state(),
                     "actor_version": self._actor_version, "global_step": int(global_step)}
            ckpt.atomic_save(extra, ckpt.rank_file(folder, "extra_state", rank, ws))
        if "hf_model" in contents:
            self.export_hf(str(folder / "huggingface"))
        if rank == 0:
            hf_dir = folder / "huggingface"
            hf_dir.mkdir(exist_ok=True)
            self.actor_module.config.save_pretrained(hf_dir)
            self.tokenizer.save_pretrained(hf_dir)
            ckpt.write_meta(folder, world_size=ws, global_step=int(global_step), role=self.role,
                            contents=contents, model_path=str(self._c("actor_rollout_ref.model.path")))
        if dist.is_initialized() and ws > 1:
            dist.barrier()
        return str(folder)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, local_path: str, hdfs_path: str | None = None,
                        del_local_after_load: bool = False) -> int:
        """Restore what :meth:`save_checkpoint` wrote; returns the checkpoint's global step.

        Raises :class:`relift.utils.checkpoint.CheckpointError` when the world size differs.
        """
        self._require("load_checkpoint", self._is_actor, "actor")
        folder = Path(local_path)
        meta = ckpt.check_world_size(folder, self.world_size)
        contents = self._save_contents("load_contents")
        saved = set(meta.get("contents", contents))
        ws, rank = self.world_size, self.rank
        if "model" in contents and "model" in saved:
            state = torch.load(ckpt.rank_file(folder, "model", rank, ws), map_location="cpu", weights_only=True)
            fsdp_utils.load_local_model_state(self.actor_module, state)
        if "optimizer" in contents and "optimizer" in saved:
            optim_state = torch.load(ckpt.rank_file(folder, "optim", rank, ws), map_location="cpu",
                                     weights_only=False)
            fsdp_utils.load_local_optim_state(self.optimizer, optim_state["optimizer"])
            if self.sft_optimizer is not None:
                if "sft_optimizer" not in optim_state:
                    logger.warning("checkpoint %s has no separate SFT optimiser state; starting it fresh", folder)
                else:
                    fsdp_utils.load_local_optim_state(self.sft_optimizer, optim_state["sft_optimizer"])
            if getattr(self, "_optimizer_offload", False):
                fsdp_utils.move_optimizer_state(self.optimizer, "cpu")
        if "extra" in contents and "extra" in saved:
            extra = torch.load(ckpt.rank_file(folder, "extra_state", rank, ws), map_location="cpu", weights_only=False)
            self.lr_scheduler.load_state_dict(extra["lr_scheduler"])
            ckpt.set_rng_state(extra["rng"])
        self._actor_version += 1  # the rollout engine must re-sync
        if dist.is_initialized() and ws > 1:
            dist.barrier()
        if del_local_after_load and rank == 0:
            shutil.rmtree(folder, ignore_errors=True)
        return int(meta.get("global_step", 0))

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def export_hf(self, local_path: str, dtype: str | None = None) -> str:
        """Write the actor as a HF folder (config, safetensors weights, tokenizer) transformers loads.

        Collective (every rank gathers its shards to rank 0); rank 0 writes. ``dtype`` defaults to
        ``actor_rollout_ref.model.dtype``.
        """
        from transformers import AutoModelForCausalLM

        self._require("export_hf", self._is_actor, "actor")
        state = fsdp_utils.gather_full_state_dict(self.actor_module, rank0_only=True)
        if self.rank == 0:
            out = Path(local_path)
            out.mkdir(parents=True, exist_ok=True)
            torch_dtype = _DTYPE[str(dtype or self._c("actor_rollout_ref.model.dtype", "float32")).lower()]
            hf_config = self.actor_module.config
            with torch.device("meta"):
                clean = AutoModelForCausalLM.from_config(hf_config, dtype=torch_dtype)
            clean.load_state_dict({k: v.to(torch_dtype) for k, v in state.items()}, strict=True, assign=True)
            clean.tie_weights()
            for name, buf in dict(self.actor_module.named_buffers()).items():  # rotary tables etc.
                owner, _, leaf = name.rpartition(".")
                mod = clean.get_submodule(owner) if owner else clean
                if buf.device.type != "meta":
                    mod._buffers[leaf] = buf.detach().cpu().clone()
            clean.config.use_cache = True
            gen_config = getattr(self.actor_module, "generation_config", None)
            if gen_config is not None:
                clean.generation_config = gen_config
            clean.save_pretrained(out)
            self.tokenizer.save_pretrained(out)
            logger.info("exported the actor (%s) to %s", torch_dtype, out)
        del state
        if dist.is_initialized() and self.world_size > 1:
            dist.barrier()
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

