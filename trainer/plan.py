"""Config -> checked plan: every batch-size and path problem found before any worker starts.

``build_rl_plan(cfg)`` / ``build_offline_plan(cfg)`` read a composed Hydra config (or a plain dict
with the same keys), check it, and return a small dataclass of derived numbers (sequences per step
and per worker, optimiser steps per step, micro-batches, total steps) whose ``render()`` is the
table the entry points print. All problems are collected and raised together as one
:class:`PlanError`; each line names the config keys involved and shows the arithmetic, e.g.::

    data.train_batch_size (128) x actor_rollout_ref.rollout.n (8) = 1024 sequences per step must
    divide by world size 3 (trainer.nnodes 1 x trainer.n_gpus_per_node 3)

Device checks (``trainer.device=cuda`` without CUDA, the vLLM rollout on a CPU machine or without
the vllm package) run only with ``trainer.check_devices=true`` (the default), so a GPU recipe's
config can still be composed and its arithmetic checked on a CPU machine with
``trainer.check_devices=false trainer.dry_run=true``. Nothing here starts Ray, loads a model or
executes user code (a custom reward file is parsed, not imported).
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = ["PlanError", "RLPlan", "OfflinePlan", "build_rl_plan", "build_offline_plan", "count_parquet_rows",
           "compose_config", "CONFIG_DIR", "KNOWN_ADV_ESTIMATORS"]

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "config"

# used when relift.algorithms.advantages cannot be imported (its registry is the authority)
KNOWN_ADV_ESTIMATORS = ("grpo", "reinforce_plus_plus", "reinforce_plus_plus_baseline", "rloo")
_LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
_KL_KINDS = ("k1", "kl", "abs", "k2", "mse", "k3", "low_var_kl")
_SCHEDULES = ("constant", "cosine", "linear")
_LOGGERS = ("console", "jsonl", "wandb", "tensorboard")
_DEVICES = ("auto", "cuda", "cpu")
_RESUME_MODES = ("auto", "disable", "resume_path")
_TRUNCATION = ("error", "left", "right", "filter")
_MIXED_PRECISION = ("auto", "bf16", "fp16", "fp32")
_PARAM_DTYPES = ("float32", "bfloat16", "float16")
_ROLLOUTS = ("hf", "vllm")
_OFFLINE_KINDS = ("sft", "pairs")
_OFFLINE_LOSSES = {"sft": "sft", "redi": "pairs", "dpo": "pairs", "simpo": "pairs"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ABSENT = object()


class PlanError(ValueError):
    """The config cannot run; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: Sequence[str], what: str = "config") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"invalid {what} ({n} problem{'s' if n != 1 else ''}):\n{lines}")


# ----------------------------------------------------------------------------------------------------
# reading and checking single keys


class ConfigChecker:
    """Typed reads of config keys that record a problem (naming the key) instead of raising."""

    def __init__(self, cfg: Any) -> None:
        if not isinstance(cfg, DictConfig):
            cfg = OmegaConf.create(cfg if cfg is not None else {})
        self.cfg = cfg
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def fail(self, msg: str) -> None:
        self.problems.append(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)

    def raw(self, key: str, default: Any = None) -> Any:
        val = OmegaConf.select(self.cfg, key, default=_ABSENT)
        if val is _ABSENT:
            return default
        if isinstance(val, (DictConfig, ListConfig)):
            return OmegaConf.to_container(val, resolve=True)
        return val

    def has(self, key: str) -> bool:
        return OmegaConf.select(self.cfg, key, default=_ABSENT) is not _ABSENT

    def int(self, key: str, *, min_value: int | None = None, allow_none: bool = False,
            default: Any = None) -> int | None:
        val = self.raw(key, default)
        if val is None:
            if not allow_none:
                self.fail(f"{key} is not set (expected an integer{_min_txt(min_value)})")
            return None
        if isinstance(val, bool) or not isinstance(val, int):
            if isinstance(val, float) and val.is_integer():
                val = int(val)
            else:
                self.fail(f"{key} must be an integer, got {val!r}")
                return None
        if min_value is not None and val < min_value:
            self.fail(f"{key} ({val}) must be >= {min_value}")
            return None
        return val

    def float(self, key: str, *, min_value: float | None = None, max_value: float | None = None,
              allow_none: bool = False, strict_min: bool = False, default: Any = None) -> float | None:
        val = self.raw(key, default)
        if val is None:
            if not allow_none:
                self.fail(f"{key} is not set (expected a number)")
            return None
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
            self.fail(f"{key} must be a finite number, got {val!r}")
            return None
        val = float(val)
        if min_value is not None and (val <= min_value if strict_min else val < min_value):
            self.fail(f"{key} ({val:g}) must be {'>' if strict_min else '>='} {min_value:g}")
            return None
        if max_value is not None and val > max_value:
            self.fail(f"{key} ({val:g}) must be <= {max_value:g}")
            return None
        return val

    def bool(self, key: str, default: bool = False) -> bool:
        val = self.raw(key, default)
        if val is None:
            return default
        if not isinstance(val, bool):
            self.fail(f"{key} must be true or false, got {val!r}")
            return default
        return val

    def choice(self, key: str, choices: Iterable[str], *, allow_none: bool = False, default: Any = None,
               what: str = "value") -> str | None:
        choices = tuple(choices)
        val = self.raw(key, default)
        if val is None and allow_none:
            return None
        if val not in choices:
            self.fail(f"{key}: unknown {what} {val!r}; choose one of {', '.join(choices)}")
            return None
        return val

    def str_list(self, key: str) -> list[str]:
        """A string or a list of strings as a list (``[]`` for null)."""
        val = self.raw(key)
        if val is None:
            return []
        if isinstance(val, str):
            return [val]
        if isinstance(val, (list, tuple)) and all(isinstance(v, str) for v in val):
            return list(val)
        self.fail(f"{key} must be a path or a list of paths, got {val!r}")
        return []


def _min_txt(min_value: int | None) -> str:
    return f" >= {min_value}" if min_value is not None else ""


def _known_adv_estimators() -> tuple[str, ...]:
    try:
        from relift.algorithms.advantages import list_adv_estimators  # noqa: PLC0415 - torch import
    except ImportError:
        return KNOWN_ADV_ESTIMATORS
    return tuple(list_adv_estimators())


def _loss_agg_modes() -> tuple[str, ...]:
    try:
        from relift.algorithms.losses import LOSS_AGG_MODES  # noqa: PLC0415
    except ImportError:
        return _LOSS_AGG_MODES
    return tuple(LOSS_AGG_MODES)


def _kl_kinds() -> tuple[str, ...]:
    try:
        from relift.algorithms.losses import KL_PENALTY_KINDS  # noqa: PLC0415
    except ImportError:
        return _KL_KINDS
    return tuple(KL_PENALTY_KINDS)


# ----------------------------------------------------------------------------------------------------
# paths


def _is_remote(path: str) -> bool:
    return bool(_URL.match(path))


def check_files(c: ConfigChecker, key: str, required: bool) -> list[str]:
    files = c.str_list(key)
    if not files:
        if required:
            c.fail(f"{key} is not set: pass {key}=/path/to/file.parquet (or a list [a.parquet,b.parquet])")
        return []
    missing = [f for f in files if not _is_remote(f) and not Path(f).expanduser().exists()]
    for f in missing:
        c.fail(f"{key}: file not found: {f}")
    return files


def check_model_path(c: ConfigChecker, key: str, required: bool = True) -> dict[str, Any] | None:
    """A local checkpoint dir (with config.json) or a hub id; returns the local config.json, if any."""
    path = c.raw(key)
    if path is None:
        if required:
            c.fail(f"{key} is not set: pass a local HF checkpoint dir or a hub id like Qwen/Qwen2.5-Math-1.5B")
        return None
    if not isinstance(path, str) or not path:
        c.fail(f"{key} must be a path or a hub id, got {path!r}")
        return None
    local = Path(path).expanduser()
    if local.exists():
        if not local.is_dir():
            c.fail(f"{key}: {path} is a file; expected a checkpoint directory (with config.json)")
            return None
        cfg_file = local / "config.json"
        if not cfg_file.is_file():
            c.fail(f"{key}: {path} has no config.json; expected a Hugging Face checkpoint directory")
            return None
        try:
            return json.loads(cfg_file.read_text())
        except (OSError, ValueError) as e:
            c.fail(f"{key}: cannot read {cfg_file}: {e}")
            return None
    if _HUB_ID.match(path) and ".." not in path:
        return None  # a hub id: downloaded (or found in the HF cache) when the workers load it
    c.fail(f"{key}: {path} does not exist and does not look like a hub id (org/name)")
    return None


def max_positions(model_config: dict[str, Any] | None, override: Any) -> int | None:
    if isinstance(override, dict) and isinstance(override.get("max_position_embeddings"), int):
        return override["max_position_embeddings"]
    if not model_config:
        return None
    for cfg in (model_config, model_config.get("text_config") or {}):
        val = cfg.get("max_position_embeddings")
        if isinstance(val, int) and val > 0:
            return val
    return None


def check_custom_reward(c: ConfigChecker, prefix: str) -> str | None:
    """The custom reward file exists and defines the function; parsed with ast, never executed."""
    path = c.raw(f"{prefix}.path")
    if path is None:
        return None
    name = c.raw(f"{prefix}.name") or "compute_score"
    p = Path(str(path)).expanduser()
    if not p.is_file():
        c.fail(f"{prefix}.path: file not found: {path}")
        return None
    try:
        tree = ast.parse(p.read_text(), filename=str(p))
    except (SyntaxError, ValueError, OSError) as e:
        c.fail(f"{prefix}.path: cannot parse {path}: {e}")
        return None
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
    if name not in defined:
        funcs = sorted(n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        c.fail(f"{prefix}.name: {path} defines no function {name!r} (functions there: {', '.join(funcs) or 'none'})")
        return None
    return f"{path}:{name}"


def count_parquet_rows(files: Any) -> int | None:
    """Rows in local parquet files from their footers (cheap); None if any is remote or unreadable.

    The count is before any length filtering, so a plan built from it is an upper bound on steps
    when ``truncation=filter``.
    """
    if files is None:
        return None
    if isinstance(files, (DictConfig, ListConfig)):
        files = OmegaConf.to_container(files, resolve=True)
    if isinstance(files, str):
        files = [files]
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:  # pragma: no cover - a dependency
        return None
    total = 0
    for f in files:
        if not isinstance(f, str) or _is_remote(f):
            return None
        p = Path(f).expanduser()
        parts = sorted(p.glob("*.parquet")) if p.is_dir() else [p]
        try:
            for part in parts:
                total += pq.ParquetFile(part).metadata.num_rows
        except Exception:  # noqa: BLE001 - a missing/corrupt file is reported by the plan or the loader
            return None
    return total


# ----------------------------------------------------------------------------------------------------
# checks shared by both trainers


@dataclass
class _World:
    nnodes: int | None
    n_per_node: int | None

    @property
    def size(self) -> int | None:
        return self.nnodes * self.n_per_node if self.nnodes and self.n_per_node else None

    def text(self) -> str:
        return f"world size {self.size} (trainer.nnodes {self.nnodes} x trainer.n_gpus_per_node {self.n_per_node})"


def _check_world(c: ConfigChecker) -> _World:
    return _World(c.int("trainer.nnodes", min_value=1), c.int("trainer.n_gpus_per_node", min_value=1))


def check_devices_available(c: ConfigChecker, rollout_name: str | None = None) -> tuple[str, bool]:
    """Resolve trainer.device; returns (device, checked)."""
    requested = c.choice("trainer.device", _DEVICES, default="auto", what="device")
    checked = c.bool("trainer.check_devices", default=True)
    if requested is None:
        return "?", checked
    if not checked:
        return requested, False
    import torch  # noqa: PLC0415 - only when devices are checked

    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        c.fail("trainer.device=cuda but torch sees no CUDA device (torch.cuda.is_available() is False); "
               "use trainer.device=cpu or auto, or trainer.check_devices=false to only plan a GPU run")
        return "cuda", True
    device = requested if requested != "auto" else ("cuda" if has_cuda else "cpu")
    if rollout_name == "vllm":
        if device == "cpu":
            c.fail("actor_rollout_ref.rollout.name=vllm needs CUDA but this run is on cpu "
                   f"(trainer.device={requested}); use actor_rollout_ref.rollout.name=hf on CPU, or "
                   "trainer.check_devices=false to only plan a GPU run")
        else:
            import importlib.util  # noqa: PLC0415

            if importlib.util.find_spec("vllm") is None:
                c.fail("actor_rollout_ref.rollout.name=vllm but the vllm package is not installed: "
                       "pip install 'relift[vllm]', or use actor_rollout_ref.rollout.name=hf")
    return device, True


def _check_trainer(c: ConfigChecker, ckpt_keep_key: str) -> dict[str, Any]:
    loggers = c.str_list("trainer.logger")
    for name in loggers:
        if name not in _LOGGERS:
            c.fail(f"trainer.logger: unknown backend {name!r}; choose from {', '.join(_LOGGERS)}")
    epochs = c.int("trainer.total_epochs", min_value=1)
    total = c.int("trainer.total_training_steps", min_value=1, allow_none=True)
    save_freq = c.int("trainer.save_freq", allow_none=True)
    test_freq = c.int("trainer.test_freq", allow_none=True)
    c.int("trainer.seed", min_value=0)
    c.int(ckpt_keep_key, min_value=1, allow_none=True)
    mode = c.choice("trainer.resume_mode", _RESUME_MODES, default="auto", what="resume mode")
    if mode == "resume_path":
        path = c.raw("trainer.resume_from_path")
        if path is None:
            c.fail("trainer.resume_mode=resume_path needs trainer.resume_from_path (a global_step_N directory)")
        elif not Path(str(path)).expanduser().is_dir():
            c.fail(f"trainer.resume_from_path: directory not found: {path}")
    local_dir = c.raw("trainer.default_local_dir")
    if "jsonl" in loggers and not local_dir:
        c.fail("trainer.logger includes jsonl, which writes <trainer.default_local_dir>/metrics.jsonl, "
               "but trainer.default_local_dir is not set")
    for key in ("trainer.dry_run", "trainer.val_before_train"):
        c.bool(key)
    return {"loggers": loggers, "epochs": epochs, "total": total, "save_freq": save_freq,
            "test_freq": test_freq, "resume_mode": mode, "local_dir": local_dir}


def _check_optim(c: ConfigChecker, prefix: str) -> dict[str, Any]:
    lr = c.float(f"{prefix}.lr", min_value=0.0)
    warmup = c.int(f"{prefix}.lr_warmup_steps", allow_none=True)
    ratio = c.float(f"{prefix}.lr_warmup_steps_ratio", min_value=0.0, max_value=1.0, allow_none=True)
    sched_key = f"{prefix}.lr_scheduler_type" if c.has(f"{prefix}.lr_scheduler_type") else f"{prefix}.warmup_style"
    schedule = c.choice(sched_key, _SCHEDULES, default="constant", what="schedule")
    c.float(f"{prefix}.min_lr_ratio", min_value=0.0, max_value=1.0, allow_none=True)
    c.float(f"{prefix}.weight_decay", min_value=0.0, allow_none=True)
    betas = c.raw(f"{prefix}.betas")
    if betas is not None and not (isinstance(betas, (list, tuple)) and len(betas) == 2
                                  and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)):
        c.fail(f"{prefix}.betas must be two numbers in [0, 1), got {betas!r}")
    return {"lr": lr, "warmup_steps": warmup, "warmup_ratio": ratio or 0.0, "schedule": schedule}


def _warmup_steps(optim: dict[str, Any], total: int | None) -> int | None:
    if optim["warmup_steps"] is not None and optim["warmup_steps"] >= 0:
        return optim["warmup_steps"]
    if total is None:
        return None
    return int(optim["warmup_ratio"] * total)


def _check_model_block(c: ConfigChecker, prefix: str) -> dict[str, Any] | None:
    model_cfg = check_model_path(c, f"{prefix}.path")
    if c.raw(f"{prefix}.tokenizer_path") is not None:
        check_model_path(c, f"{prefix}.tokenizer_path")
    c.choice(f"{prefix}.dtype", _PARAM_DTYPES, default="float32", what="dtype")
    c.bool(f"{prefix}.trust_remote_code")
    c.bool(f"{prefix}.enable_gradient_checkpointing")
    override = c.raw(f"{prefix}.override_config", {})
    if override is not None and not isinstance(override, dict):
        c.fail(f"{prefix}.override_config must be a mapping, got {override!r}")
    return model_cfg


def _check_fsdp(c: ConfigChecker, prefix: str, world: _World) -> str | None:
    mp = c.choice(f"{prefix}.mixed_precision", _MIXED_PRECISION, default="auto", what="mixed precision")
    c.bool(f"{prefix}.param_offload")
    c.bool(f"{prefix}.optimizer_offload")
    fsdp_size = c.int(f"{prefix}.fsdp_size", allow_none=True, default=-1)
    if fsdp_size is not None and fsdp_size != -1 and world.size and fsdp_size != world.size:
        # the workers shard every model over all ranks (no hybrid sharding / replication groups yet)
        c.fail(f"{prefix}.fsdp_size ({fsdp_size}) must be -1 or the {world.text()}: "
               "sharding over a subset of the workers is not supported")
    return mp


def _resolve_mp(mp: str | None, device: str) -> str:
    if mp != "auto":
        return str(mp)
    if device == "cuda":
        return "bf16"
    if device == "cpu":
        return "fp32"
    return "auto (bf16 on cuda, fp32 on cpu)"


def _dataset_steps(c: ConfigChecker, dataset_len: int | None, batch: int | None, batch_key: str,
                   epochs: int | None, total: int | None, files_key: str) -> tuple[int | None, int | None]:
    """(steps per epoch, total training steps)."""
    steps_per_epoch = None
    if dataset_len is not None and batch:
        if dataset_len < 0:
            raise ValueError(f"dataset_len must be >= 0, got {dataset_len}")
        steps_per_epoch = dataset_len // batch
        if steps_per_epoch == 0:
            c.fail(f"{files_key} has {dataset_len} rows, fewer than {batch_key} ({batch}): "
                   f"{dataset_len} // {batch} = 0 full steps per epoch (a partial last batch is dropped)")
    if total is not None:
        return steps_per_epoch, total
    if steps_per_epoch and epochs:
        return steps_per_epoch, steps_per_epoch * epochs
    return steps_per_epoch, None


# ----------------------------------------------------------------------------------------------------
# the plans


def render_plan(title: str, rows: list[tuple[str, Any, str]], warnings: list[str]) -> str:
    shown = [(k, "-" if v is None else str(v), how) for k, v, how in rows]
    w_key = max(len(k) for k, _, _ in shown)
    w_val = max(len(v) for _, v, _ in shown)
    lines = [title]
    for k, v, how in shown:
        lines.append(f"  {k:<{w_key}}  {v:>{w_val}}" + (f"  {how}" if how else ""))
    for w in warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


@dataclass
class RLPlan:
    """Derived numbers of one online RL run (see the module docstring); ``render()`` prints them."""

    world_size: int
    nnodes: int
    n_gpus_per_node: int
    device: str
    devices_checked: bool
    prompts_per_step: int
    samples_per_prompt: int
    sequences_per_step: int
    sequences_per_worker: int
    prompts_per_mini_batch: int
    sequences_per_mini_batch: int
    sequences_per_mini_batch_per_worker: int
    mini_batches_per_step: int
    ppo_epochs: int
    optimizer_steps_per_step: int
    use_dynamic_bsz: bool
    micro_batch_size_per_worker: int | None
    micro_batches_per_mini_batch: int | None
    token_budget_per_worker: int | None
    max_prompt_length: int
    max_response_length: int
    max_sequence_length: int
    rollout_name: str
    tensor_parallel_size: int
    rollout_replicas: int
    adv_estimator: str
    uses_ref: bool
    mixed_precision: str
    dataset_rows: int | None
    steps_per_epoch: int | None
    total_epochs: int
    total_training_steps: int | None
    warmup_steps: int | None
    lr: float
    lr_scheduler_type: str
    validation: bool
    test_freq: int | None
    save_freq: int | None
    loggers: list[str]
    local_dir: str | None
    custom_reward: str | None = None
    relift_enabled: bool = False
    relift_sft_batch_size: int | None = None
    relift_sft_per_worker: int | None = None
    relift_sft_micro_batches: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def on_policy(self) -> bool:
        """One optimiser step per RL step: the old log-probs equal the current policy's."""
        return self.optimizer_steps_per_step == 1

    def rows(self) -> list[tuple[str, Any, str]]:
        rows: list[tuple[str, Any, str]] = [
            ("device", self.device, "" if self.devices_checked else "(not checked: trainer.check_devices=false)"),
            ("world size", self.world_size, f"= trainer.nnodes {self.nnodes} x trainer.n_gpus_per_node {self.n_gpus_per_node}"),
            ("prompts per step", self.prompts_per_step, "data.train_batch_size"),
            ("samples per prompt", self.samples_per_prompt, "actor_rollout_ref.rollout.n"),
            ("sequences per step", self.sequences_per_step, f"= {self.prompts_per_step} x {self.samples_per_prompt}"),
            ("sequences per worker", self.sequences_per_worker, f"= {self.sequences_per_step} / {self.world_size}"),
            ("prompts per mini-batch", self.prompts_per_mini_batch, "actor.ppo_mini_batch_size"),
            ("sequences per mini-batch", self.sequences_per_mini_batch,
             f"= {self.prompts_per_mini_batch} x {self.samples_per_prompt}"),
            ("  per worker", self.sequences_per_mini_batch_per_worker,
             f"= {self.sequences_per_mini_batch} / {self.world_size}"),
            ("optimiser steps per step", self.optimizer_steps_per_step,
             f"= {self.prompts_per_step} / {self.prompts_per_mini_batch} mini-batches x {self.ppo_epochs} ppo_epochs"
             + (" (on-policy)" if self.on_policy else "")),
        ]
        if self.use_dynamic_bsz:
            rows.append(("token budget per micro-batch", self.token_budget_per_worker,
                         f"actor.ppo_max_token_len_per_gpu (longest sequence {self.max_sequence_length})"))
        else:
            rows.append(("micro-batch per worker", self.micro_batch_size_per_worker, "actor.ppo_micro_batch_size_per_gpu"))
            rows.append(("micro-batches per mini-batch", self.micro_batches_per_mini_batch,
                         f"= {self.sequences_per_mini_batch_per_worker} / {self.micro_batch_size_per_worker} "
                         "(gradient accumulation)"))
        rows += [
            ("max sequence length", self.max_sequence_length,
             f"= prompt {self.max_prompt_length} + response {self.max_response_length}"),
            ("rollout", self.rollout_name,
             f"{self.rollout_replicas} engine(s) x tensor parallel {self.tensor_parallel_size}"),
            ("advantage estimator", self.adv_estimator, "algorithm.adv_estimator"),
            ("reference model", "yes" if self.uses_ref else "no", "KL loss or KL in reward"),
            ("mixed precision", self.mixed_precision, ""),
            ("learning rate", f"{self.lr:g}", f"{self.lr_scheduler_type}, warmup {self.warmup_steps if self.warmup_steps is not None else '?'} steps"),
            ("train rows", self.dataset_rows, "data.train_files"),
            ("steps per epoch", self.steps_per_epoch,
             f"= {self.dataset_rows} // {self.prompts_per_step}" if self.steps_per_epoch is not None else "unknown until the data is loaded"),
            ("total training steps", self.total_training_steps,
             f"trainer.total_epochs {self.total_epochs}" if self.total_training_steps is not None else "derived from the data at start"),
            ("validation", "on" if self.validation else "off",
             f"every {self.test_freq} steps" if self.validation and self.test_freq and self.test_freq > 0 else ""),
            ("checkpoints", f"every {self.save_freq}" if self.save_freq and self.save_freq > 0 else "off",
             str(self.local_dir or "")),
            ("loggers", ",".join(self.loggers) or "none", ""),
        ]
        if self.custom_reward:
            rows.append(("custom reward", self.custom_reward, ""))
        if self.relift_enabled:
            rows.append(("relift sft batch", self.relift_sft_batch_size, "relift.sft_batch_size"))
            rows.append(("  per worker", self.relift_sft_per_worker,
                         f"= {self.relift_sft_batch_size} / {self.world_size}"
                         + (f", {self.relift_sft_micro_batches} micro-batches" if self.relift_sft_micro_batches else "")))
        return rows

    def render(self) -> str:
        """A small aligned table of the plan (what the entry points print before starting)."""
        return render_plan("relift RL plan", self.rows(), self.warnings)


def _check_log_prob(c: ConfigChecker, prefix: str, longest: int | None, P: int | None, R: int | None) -> None:
    if c.bool(f"{prefix}.log_prob_use_dynamic_bsz"):
        budget = c.int(f"{prefix}.log_prob_max_token_len_per_gpu", min_value=1)
        if budget is not None and longest is not None and budget < longest:
            c.fail(f"{prefix}.log_prob_max_token_len_per_gpu ({budget}) must be >= data.max_prompt_length ({P}) "
                   f"+ data.max_response_length ({R}) = {longest}, the longest sequence")
    else:
        c.int(f"{prefix}.log_prob_micro_batch_size_per_gpu", min_value=1)


def _check_sampling(c: ConfigChecker, prefix: str) -> None:
    do_sample = c.bool(f"{prefix}.do_sample", default=True)
    temp = c.float(f"{prefix}.temperature", min_value=0.0, default=1.0)
    if do_sample and temp is not None and temp == 0.0:
        c.fail(f"{prefix}.temperature is 0 with {prefix}.do_sample=true; use do_sample=false for greedy decoding")
    c.float(f"{prefix}.top_p", min_value=0.0, max_value=1.0, strict_min=True, default=1.0)
    c.int(f"{prefix}.top_k", min_value=-1, default=-1)


def build_rl_plan(cfg: Any, dataset_len: int | None = None) -> RLPlan:
    """Check an online-trainer config (``trainer/config/rl_trainer.yaml`` keys); return its plan.

    ``dataset_len`` (train rows) lets the plan derive steps per epoch and, when
    ``trainer.total_training_steps`` is null, the total steps. Raises :class:`PlanError` listing
    every problem found.
    """
    c = ConfigChecker(cfg)
    world = _check_world(c)
    W = world.size
    A = "actor_rollout_ref.actor"
    RO = "actor_rollout_ref.rollout"

    # --- lengths
    P = c.int("data.max_prompt_length", min_value=1)
    R = c.int("data.max_response_length", min_value=1)
    longest = P + R if P and R else None
    for key, want, src in ((f"{RO}.prompt_length", P, "data.max_prompt_length"),
                           (f"{RO}.response_length", R, "data.max_response_length")):
        got = c.int(key, min_value=1, allow_none=True)
        if got is not None and want is not None and got != want:
            c.fail(f"{key} ({got}) must equal {src} ({want}); leave it at its default ${{{src}}}")
    c.choice("data.truncation", _TRUNCATION, default="error", what="truncation mode")
    for key in ("data.filter_overlong_prompts", "data.shuffle", "data.return_raw_chat"):
        c.bool(key)
    c.int("data.val_batch_size", min_value=1, allow_none=True)

    # --- batch arithmetic
    B = c.int("data.train_batch_size", min_value=1)
    n = c.int(f"{RO}.n", min_value=1)
    mini = c.int(f"{A}.ppo_mini_batch_size", min_value=1)
    epochs = c.int(f"{A}.ppo_epochs", min_value=1)
    dyn = c.bool(f"{A}.use_dynamic_bsz")
    micro = c.int(f"{A}.ppo_micro_batch_size_per_gpu", min_value=1, allow_none=dyn)
    budget = c.int(f"{A}.ppo_max_token_len_per_gpu", min_value=1, allow_none=not dyn)

    seqs = B * n if B and n else None
    if seqs and W and seqs % W:
        c.fail(f"data.train_batch_size ({B}) x {RO}.n ({n}) = {seqs} sequences per step must divide by "
               f"{world.text()}: {seqs} / {W} = {seqs / W:.4g}")
    if B and mini:
        if mini > B:
            c.fail(f"{A}.ppo_mini_batch_size ({mini}) must be <= data.train_batch_size ({B}) "
                   "(both count prompts)")
        elif B % mini:
            c.fail(f"data.train_batch_size ({B}) must divide by {A}.ppo_mini_batch_size ({mini}): "
                   f"{B} / {mini} = {B / mini:.4g} mini-batches per step")
    mini_seqs = mini * n if mini and n else None
    mini_per_w = None
    if mini_seqs and W:
        if mini_seqs % W:
            c.fail(f"{A}.ppo_mini_batch_size ({mini}) x {RO}.n ({n}) = {mini_seqs} sequences per mini-batch "
                   f"must divide by {world.text()}: {mini_seqs} / {W} = {mini_seqs / W:.4g}")
        else:
            mini_per_w = mini_seqs // W
    micro_batches = None
    if not dyn and mini_per_w and micro:
        if mini_per_w % micro:
            c.fail(f"sequences per mini-batch per worker {mini_per_w} (= {A}.ppo_mini_batch_size {mini} x {RO}.n {n} "
                   f"/ world size {W}) must divide by {A}.ppo_micro_batch_size_per_gpu ({micro}): "
                   f"{mini_per_w} / {micro} = {mini_per_w / micro:.4g}")
        else:
            micro_batches = mini_per_w // micro
    if dyn and budget and longest and budget < longest:
        c.fail(f"{A}.ppo_max_token_len_per_gpu ({budget}) must be >= data.max_prompt_length ({P}) + "
               f"data.max_response_length ({R}) = {longest}, the longest sequence")
    _check_log_prob(c, RO, longest, P, R)

    # --- algorithm and losses
    known = _known_adv_estimators()
    est = c.raw("algorithm.adv_estimator")
    if est not in known:
        c.fail(f"algorithm.adv_estimator: unknown estimator {est!r}; known: {', '.join(known)}")
        est = None
    c.bool("algorithm.norm_adv_by_std_in_grpo", default=True)
    c.float("algorithm.gamma", min_value=0.0, max_value=1.0, default=1.0)
    kinds = _kl_kinds()
    use_kl_loss = c.bool(f"{A}.use_kl_loss")
    use_kl_in_reward = c.bool("algorithm.use_kl_in_reward")
    if use_kl_loss:
        c.choice(f"{A}.kl_loss_type", kinds, what="KL estimator")
        c.float(f"{A}.kl_loss_coef", min_value=0.0)
    if use_kl_in_reward:
        c.choice("algorithm.kl_penalty", kinds, what="KL estimator")
        c.choice("algorithm.kl_ctrl.type", ("fixed", "adaptive"), default="fixed", what="KL controller")
        c.float("algorithm.kl_ctrl.kl_coef", min_value=0.0)
        if c.raw("algorithm.kl_ctrl.type") == "adaptive":
            c.float("algorithm.kl_ctrl.target_kl", min_value=0.0, strict_min=True)
            c.int("algorithm.kl_ctrl.horizon", min_value=1)
        if use_kl_loss:
            c.warn("both actor.use_kl_loss and algorithm.use_kl_in_reward are on: the KL is counted twice")
    uses_ref = use_kl_loss or use_kl_in_reward
    if uses_ref:
        _check_log_prob(c, "actor_rollout_ref.ref", longest, P, R)
        if c.raw("actor_rollout_ref.ref.model_path") is not None:
            check_model_path(c, "actor_rollout_ref.ref.model_path")
    c.choice(f"{A}.loss_agg_mode", _loss_agg_modes(), what="loss aggregation mode")
    remove_clip = c.bool(f"{A}.loss_remove_clip")
    if not remove_clip:
        c.float(f"{A}.clip_ratio_low", min_value=0.0)
        c.float(f"{A}.clip_ratio_high", min_value=0.0)
        c.float(f"{A}.clip_ratio_c", min_value=1.0, strict_min=True)
    elif epochs and epochs > 1:
        c.warn(f"{A}.loss_remove_clip=true with ppo_epochs={epochs}: unclipped ratios over several epochs can blow up")
    c.float(f"{A}.entropy_coeff", default=0.0)
    c.float(f"{A}.grad_clip", min_value=0.0, strict_min=True, allow_none=True)
    c.int(f"{A}.logits_chunk_size", min_value=1, allow_none=True)
    c.choice(f"{A}.strategy", ("fsdp2",), default="fsdp2", what="strategy")
    optim = _check_optim(c, f"{A}.optim")
    mp = _check_fsdp(c, f"{A}.fsdp_config", world)
    if n == 1 and est in ("grpo", "rloo", "reinforce_plus_plus_baseline"):
        c.warn(f"{RO}.n=1 with algorithm.adv_estimator={est}: groups of one have no baseline")

    # --- rollout
    name = c.choice(f"{RO}.name", _ROLLOUTS, what="rollout engine")
    tp = c.int(f"{RO}.tensor_model_parallel_size", min_value=1, default=1)
    if name == "hf" and tp and tp != 1:
        c.fail(f"{RO}.tensor_model_parallel_size ({tp}) must be 1 with {RO}.name=hf "
               "(tensor parallel generation needs vllm)")
    if name == "vllm":
        if tp and W and W % tp:
            c.fail(f"{world.text()} must divide by {RO}.tensor_model_parallel_size ({tp}): {W} / {tp} = {W / tp:.4g}")
        mnbt = c.int(f"{RO}.max_num_batched_tokens", min_value=1, allow_none=True)
        if mnbt is not None and longest and mnbt < longest:
            c.fail(f"{RO}.max_num_batched_tokens ({mnbt}) must be >= data.max_prompt_length ({P}) + "
                   f"data.max_response_length ({R}) = {longest}")
        c.float(f"{RO}.gpu_memory_utilization", min_value=0.0, max_value=1.0, strict_min=True)
    _check_sampling(c, RO)
    if c.has(f"{RO}.val_kwargs"):
        _check_sampling(c, f"{RO}.val_kwargs")
        c.int(f"{RO}.val_kwargs.n", min_value=1, default=1)

    # --- reward
    c.int("reward.num_workers", min_value=1, allow_none=True)
    c.float("reward.timeout", min_value=0.0, strict_min=True, allow_none=True)
    custom = check_custom_reward(c, "reward.custom_reward_function")

    # --- relift hook
    relift = c.bool("relift.enable")
    sft_bs = sft_per_w = sft_micro_batches = None
    if relift:
        if not c.raw("data.target_key"):
            c.fail("relift.enable=true needs demonstrations: data.target_key must name the target column")
        T = c.int("data.max_target_length", min_value=1)
        sft_bs = c.int("relift.sft_batch_size", min_value=1)
        if sft_bs and W:
            if sft_bs % W:
                c.fail(f"relift.sft_batch_size ({sft_bs}) must divide by {world.text()}: {sft_bs} / {W} = {sft_bs / W:.4g}")
            else:
                sft_per_w = sft_bs // W
        buf = c.int("relift.buffer_size", min_value=1, allow_none=True)
        if buf is not None and sft_bs and buf < sft_bs:
            c.fail(f"relift.buffer_size ({buf}) must be >= relift.sft_batch_size ({sft_bs}) or the buffer never fills")
        c.float("relift.max_acc", min_value=0.0, max_value=1.0)
        c.float("relift.entropy_coeff", default=0.0)
        c.float("relift.lr", min_value=0.0, allow_none=True)
        c.choice("relift.loss_agg_mode", _loss_agg_modes(), default="token-mean", what="loss aggregation mode")
        c.choice("relift.sft_optimizer", ("shared", "separate"), default="shared", what="optimiser mode")
        if c.bool("relift.use_dynamic_bsz"):
            rb = c.int("relift.max_token_len_per_gpu", min_value=1)
            if rb and P and T and rb < P + T:
                c.fail(f"relift.max_token_len_per_gpu ({rb}) must be >= data.max_prompt_length ({P}) + "
                       f"data.max_target_length ({T}) = {P + T}, the longest demonstration sequence")
        else:
            sm = c.int("relift.sft_micro_batch_size_per_gpu", min_value=1)
            if sm and sft_per_w:
                if sft_per_w % sm:
                    c.fail(f"demonstrations per worker {sft_per_w} (= relift.sft_batch_size {sft_bs} / world size {W}) "
                           f"must divide by relift.sft_micro_batch_size_per_gpu ({sm}): {sft_per_w} / {sm} = {sft_per_w / sm:.4g}")
                else:
                    sft_micro_batches = sft_per_w // sm

    # --- files, model, trainer, devices
    check_files(c, "data.train_files", required=True)
    val_files = check_files(c, "data.val_files", required=False)
    model_cfg = _check_model_block(c, "actor_rollout_ref.model")
    mpe = max_positions(model_cfg, c.raw("actor_rollout_ref.model.override_config"))
    if mpe is not None and longest and longest > mpe:
        c.fail(f"data.max_prompt_length ({P}) + data.max_response_length ({R}) = {longest} exceeds the model's "
               f"max_position_embeddings ({mpe}) in {c.raw('actor_rollout_ref.model.path')}/config.json; "
               "shorten them or set actor_rollout_ref.model.override_config.max_position_embeddings")
    t = _check_trainer(c, "trainer.max_actor_ckpt_to_keep")
    val_only = c.bool("trainer.val_only")
    if val_only and not val_files:
        c.fail("trainer.val_only=true needs data.val_files")
    if not val_files and t["test_freq"] and t["test_freq"] > 0:
        c.warn(f"trainer.test_freq={t['test_freq']} but data.val_files is not set: no validation")
    device, checked = check_devices_available(c, name)
    steps_per_epoch, total = _dataset_steps(c, dataset_len, B, "data.train_batch_size", t["epochs"], t["total"],
                                            "data.train_files")

    if c.problems:
        raise PlanError(c.problems)
    return RLPlan(
        world_size=W, nnodes=world.nnodes, n_gpus_per_node=world.n_per_node, device=device,
        devices_checked=checked, prompts_per_step=B, samples_per_prompt=n, sequences_per_step=seqs,
        sequences_per_worker=seqs // W, prompts_per_mini_batch=mini, sequences_per_mini_batch=mini_seqs,
        sequences_per_mini_batch_per_worker=mini_per_w, mini_batches_per_step=B // mini, ppo_epochs=epochs,
        optimizer_steps_per_step=B // mini * epochs, use_dynamic_bsz=dyn,
        micro_batch_size_per_worker=None if dyn else micro, micro_batches_per_mini_batch=micro_batches,
        token_budget_per_worker=budget if dyn else None, max_prompt_length=P, max_response_length=R,
        max_sequence_length=longest, rollout_name=name, tensor_parallel_size=tp, rollout_replicas=W // tp,
        adv_estimator=est, uses_ref=uses_ref, mixed_precision=_resolve_mp(mp, device),
        dataset_rows=dataset_len, steps_per_epoch=steps_per_epoch, total_epochs=t["epochs"],
        total_training_steps=total, warmup_steps=_warmup_steps(optim, total), lr=optim["lr"],
        lr_scheduler_type=optim["schedule"], validation=bool(val_files), test_freq=t["test_freq"],
        save_freq=t["save_freq"], loggers=t["loggers"], local_dir=t["local_dir"], custom_reward=custom,
        relift_enabled=relift, relift_sft_batch_size=sft_bs, relift_sft_per_worker=sft_per_w,
        relift_sft_micro_batches=sft_micro_batches, warnings=list(c.warnings),
    )


@dataclass
class OfflinePlan:
    """Derived numbers of one offline (SFT / REDI / DPO / SimPO) run; ``render()`` prints them."""

    world_size: int
    nnodes: int
    n_gpus_per_node: int
    device: str
    devices_checked: bool
    kind: str
    loss_type: str
    examples_per_step: int
    examples_per_worker: int
    micro_batch_size_per_worker: int
    micro_batches_per_step: int
    sequences_per_forward: int
    max_length: int
    uses_ref: bool
    mixed_precision: str
    dataset_rows: int | None
    steps_per_epoch: int | None
    total_epochs: int
    total_training_steps: int | None
    warmup_steps: int | None
    lr: float
    lr_scheduler_type: str
    validation: bool
    test_freq: int | None
    save_freq: int | None
    loggers: list[str]
    local_dir: str | None
    loss_params: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, Any, str]]:
        unit = "pairs" if self.kind == "pairs" else "examples"
        params = ", ".join(f"{k}={v:g}" for k, v in self.loss_params.items())
        return [
            ("device", self.device, "" if self.devices_checked else "(not checked: trainer.check_devices=false)"),
            ("world size", self.world_size, f"= trainer.nnodes {self.nnodes} x trainer.n_gpus_per_node {self.n_gpus_per_node}"),
            ("loss", self.loss_type, params),
            (f"{unit} per step", self.examples_per_step, "data.train_batch_size (one optimiser step)"),
            (f"{unit} per worker", self.examples_per_worker, f"= {self.examples_per_step} / {self.world_size}"),
            ("micro-batch per worker", self.micro_batch_size_per_worker, "data.micro_batch_size_per_gpu"),
            ("micro-batches per step", self.micro_batches_per_step,
             f"= {self.examples_per_worker} / {self.micro_batch_size_per_worker} (gradient accumulation)"),
            ("sequences per forward", self.sequences_per_forward,
             "chosen + rejected stacked" if self.kind == "pairs" else ""),
            ("max sequence length", self.max_length, "data.max_length"),
            ("reference model", "yes" if self.uses_ref else "no", ""),
            ("mixed precision", self.mixed_precision, ""),
            ("learning rate", f"{self.lr:g}", f"{self.lr_scheduler_type}, warmup {self.warmup_steps if self.warmup_steps is not None else '?'} steps"),
            ("train rows", self.dataset_rows, "data.train_files"),
            ("steps per epoch", self.steps_per_epoch,
             f"= {self.dataset_rows} // {self.examples_per_step}" if self.steps_per_epoch is not None else "unknown until the data is loaded"),
            ("total training steps", self.total_training_steps,
             f"trainer.total_epochs {self.total_epochs}" if self.total_training_steps is not None else "derived from the data at start"),
            ("validation", "on" if self.validation else "off",
             f"every {self.test_freq} steps" if self.validation and self.test_freq and self.test_freq > 0 else ""),
            ("checkpoints", f"every {self.save_freq}" if self.save_freq and self.save_freq > 0 else "off",
             str(self.local_dir or "")),
            ("loggers", ",".join(self.loggers) or "none", ""),
        ]

    def render(self) -> str:
        return render_plan("relift offline plan", self.rows(), self.warnings)


def build_offline_plan(cfg: Any, dataset_len: int | None = None) -> OfflinePlan:
    """Check an offline-trainer config (``trainer/config/offline_trainer.yaml`` keys); return its plan."""
    c = ConfigChecker(cfg)
    world = _check_world(c)
    W = world.size
    kind = c.choice("data.kind", _OFFLINE_KINDS, what="data kind")
    loss = c.choice("loss.type", tuple(_OFFLINE_LOSSES), what="loss")
    if kind and loss and _OFFLINE_LOSSES[loss] != kind:
        c.fail(f"loss.type={loss} needs data.kind={_OFFLINE_LOSSES[loss]}, got data.kind={kind}")
    B = c.int("data.train_batch_size", min_value=1)
    micro = c.int("data.micro_batch_size_per_gpu", min_value=1)
    L = c.int("data.max_length", min_value=2)
    c.choice("data.truncation", _TRUNCATION, default="error", what="truncation mode")
    c.int("data.val_batch_size", min_value=1, allow_none=True)
    per_w = micro_batches = None
    if B and W:
        if B % W:
            c.fail(f"data.train_batch_size ({B}) must divide by {world.text()}: {B} / {W} = {B / W:.4g}")
        else:
            per_w = B // W
    if per_w and micro:
        if per_w % micro:
            c.fail(f"examples per worker {per_w} (= data.train_batch_size {B} / world size {W}) must divide by "
                   f"data.micro_batch_size_per_gpu ({micro}): {per_w} / {micro} = {per_w / micro:.4g}")
        else:
            micro_batches = per_w // micro
    params: dict[str, float] = {}
    if loss == "redi":
        alpha = c.float("loss.alpha", min_value=0.0)
        if alpha is not None:
            params["alpha"] = alpha
            if alpha > 1:
                c.warn(f"loss.alpha={alpha:g} > 1 weighs the rejected term above the chosen one; the REDI paper uses 0.8")
    if loss in ("dpo", "simpo"):
        beta = c.float("loss.beta", min_value=0.0, strict_min=True, allow_none=True)
        params["beta"] = beta if beta is not None else (0.1 if loss == "dpo" else 2.0)
    if loss == "simpo":
        gamma = c.float("loss.gamma")
        if gamma is not None:
            params["gamma"] = gamma
    uses_ref = loss == "dpo"
    if uses_ref and c.raw("ref.model_path") is not None:
        check_model_path(c, "ref.model_path")
    optim = _check_optim(c, "optim")
    c.float("optim.grad_clip", min_value=0.0, strict_min=True, allow_none=True)
    mp = _check_fsdp(c, "model.fsdp_config", world)

    check_files(c, "data.train_files", required=True)
    val_files = check_files(c, "data.val_files", required=False)
    model_cfg = _check_model_block(c, "model")
    mpe = max_positions(model_cfg, c.raw("model.override_config"))
    if mpe is not None and L and L > mpe:
        c.fail(f"data.max_length ({L}) exceeds the model's max_position_embeddings ({mpe}) in "
               f"{c.raw('model.path')}/config.json; shorten it or set model.override_config.max_position_embeddings")
    t = _check_trainer(c, "trainer.max_ckpt_to_keep")
    if not val_files and t["test_freq"] and t["test_freq"] > 0:
        c.warn(f"trainer.test_freq={t['test_freq']} but data.val_files is not set: no validation")
    device, checked = check_devices_available(c)
    steps_per_epoch, total = _dataset_steps(c, dataset_len, B, "data.train_batch_size", t["epochs"], t["total"],
                                            "data.train_files")

    if c.problems:
        raise PlanError(c.problems)
    return OfflinePlan(
        world_size=W, nnodes=world.nnodes, n_gpus_per_node=world.n_per_node, device=device, devices_checked=checked,
        kind=kind, loss_type=loss, examples_per_step=B, examples_per_worker=per_w, micro_batch_size_per_worker=micro,
        micro_batches_per_step=micro_batches, sequences_per_forward=micro * (2 if kind == "pairs" else 1),
        max_length=L, uses_ref=uses_ref, mixed_precision=_resolve_mp(mp, device), dataset_rows=dataset_len,
        steps_per_epoch=steps_per_epoch, total_epochs=t["epochs"], total_training_steps=total,
        warmup_steps=_warmup_steps(optim, total), lr=optim["lr"], lr_scheduler_type=optim["schedule"],
        validation=bool(val_files), test_freq=t["test_freq"], save_freq=t["save_freq"], loggers=t["loggers"],
        local_dir=t["local_dir"], loss_params=params, warnings=list(c.warnings),
    )


def compose_config(config_name: str = "rl_trainer", overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``trainer/config/<config_name>.yaml`` with Hydra overrides, as the entry points do.

    For tests and tools that want the config without ``@hydra.main`` (no working-dir changes, no
    logging setup). Interpolations are left unresolved, exactly like the entry points see them.
    """
    from hydra import compose, initialize_config_dir  # noqa: PLC0415

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))
