"""The generation run's plan: what ``python -m trainer.main_generation`` will sample, checked.

``build_generation_plan(cfg)`` checks a ``trainer/config/generation.yaml`` config (files, model,
lengths, sampling, devices) and returns a :class:`GenerationPlan` holding the rollout workers'
:class:`relift.spec.PolicyWorkerSpec`, so generation starts the same workers the RL trainer does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relift.spec import PolicyWorkerSpec, RayInitSpec
from relift.spec.sections import (
    FSDPSpec,
    MicroBatching,
    ModelSpec,
    RefSpec,
    RolloutSpec,
    SamplingSpec,
    WorldSpec,
)
from trainer.plan.checker import ConfigChecker, PlanError, check_files, check_model_path, max_positions
from trainer.plan.common import check_cpu_threads, check_devices_available, check_ray_init
from trainer.plan.data_checks import check_generation_data
from trainer.plan.table import render_plan

__all__ = ["GenerationPlan", "build_generation_plan", "MAX_DERIVED_RESPONSE_LENGTH"]

logger = logging.getLogger(__name__)

MAX_DERIVED_RESPONSE_LENGTH = 32768
_BACKENDS = ("auto", "ray", "inprocess")
_TRUNCATION = ("error", "left", "right")


@dataclass
class GenerationPlan:
    """What one generation run will do (``render()`` is what the entry point prints)."""

    data_files: list[str]
    output_path: Path
    num_prompts: int | None
    batch_size: int
    n_samples: int
    max_prompt_length: int
    max_response_length: int
    response_length_derived: bool
    rollout_name: str
    greedy: bool
    temperature: float
    top_p: float
    top_k: int
    world_size: int
    nnodes: int
    n_gpus_per_node: int
    backend: str
    device: str
    devices_checked: bool
    prompt_key: str
    truncation: str
    apply_chat_template: bool
    keep_parts: bool
    dry_run: bool
    model: ModelSpec
    worker: PolicyWorkerSpec      # the rollout workers' spec (role ``rollout``)
    ray_init: RayInitSpec
    warnings: list[str] = field(default_factory=list)

    @property
    def parts_dir(self) -> Path:
        return self.output_path.with_name(self.output_path.name + ".parts")

    @property
    def num_chunks(self) -> int | None:
        return None if self.num_prompts is None else math.ceil(self.num_prompts / self.batch_size)

    def rows(self) -> list[tuple[str, Any, str]]:
        sampling = "greedy" if self.greedy else f"temperature {self.temperature:g}, top_p {self.top_p:g}" + (
            f", top_k {self.top_k}" if self.top_k > 0 else "")
        return [
            ("device", self.device, "" if self.devices_checked else "(not checked: trainer.check_devices=false)"),
            ("world size", self.world_size,
             f"= trainer.nnodes {self.nnodes} x trainer.n_gpus_per_node {self.n_gpus_per_node}, {self.backend}"),
            ("rollout", self.rollout_name, sampling),
            ("prompts", self.num_prompts,
             self.data_files[0] if len(self.data_files) == 1 else f"{len(self.data_files)} files in data.path"),
            ("samples per prompt", self.n_samples, "data.n_samples"),
            ("prompts per chunk", self.batch_size, "data.batch_size"),
            ("chunks", self.num_chunks, f"part files in {self.parts_dir}"),
            ("max prompt length", self.max_prompt_length, "data.max_prompt_length"),
            ("max response length", self.max_response_length,
             "derived from the model's max_position_embeddings" if self.response_length_derived
             else "data.max_response_length"),
            ("output", str(self.output_path), "data.output_path"),
        ]

    def render(self) -> str:
        return render_plan("relift generation plan", self.rows(), self.warnings)


def _parquet_columns(files: Sequence[str]) -> tuple[list[str] | None, int | None]:
    """Columns shared by the local parquet files and their total rows (None where unknown)."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    from relift.data.io import expand_data_files  # noqa: PLC0415

    try:
        paths = expand_data_files(files)
    except (FileNotFoundError, ValueError):
        return None, None
    columns: list[str] | None = None
    rows = 0
    for path in paths:
        if "://" in path:
            return None, None
        try:
            meta = pq.ParquetFile(path)
        except Exception:  # noqa: BLE001 - reported when the file is read
            return None, None
        names = list(meta.schema_arrow.names)
        columns = names if columns is None else [c for c in columns if c in names]
        rows += meta.metadata.num_rows
    return columns, rows


def _hub_config(model_id: str, trust_remote_code: bool) -> dict[str, Any] | None:
    """config.json of a hub model (HF cache, or one small download); None when unavailable."""
    try:
        from relift.models.loading import load_config  # noqa: PLC0415

        return load_config(model_id, trust_remote_code=trust_remote_code).to_dict()
    except Exception as err:  # noqa: BLE001 - offline, gated, typo: reported as "cannot derive"
        logger.warning("could not read the config of %s to derive data.max_response_length: %s", model_id, err)
        return None


def build_generation_plan(cfg: Any) -> GenerationPlan:
    """Check a ``trainer/config/generation.yaml`` config; raise :class:`PlanError` listing every problem."""
    c = ConfigChecker(cfg)
    nnodes = c.int("trainer.nnodes", min_value=1)
    per_node = c.int("trainer.n_gpus_per_node", min_value=1)
    world = nnodes * per_node if nnodes and per_node else None

    files = check_files(c, "data.path", required=True)
    out = c.raw("data.output_path")
    output_path: Path | None = None
    if out is None:
        c.fail("data.output_path is not set: pass data.output_path=/path/to/generations.parquet")
    elif not isinstance(out, str) or not out:
        c.fail(f"data.output_path must be a file path, got {out!r}")
    else:
        output_path = Path(out).expanduser().absolute()
        if output_path.is_dir():
            c.fail(f"data.output_path: {out} is a directory; give a file path such as {out}/generations.parquet")
        if any(Path(f).expanduser().absolute() == output_path for f in files):
            c.fail(f"data.output_path ({out}) is also an input in data.path; write the generations elsewhere")
    prompt_key = c.raw("data.prompt_key")
    if not isinstance(prompt_key, str) or not prompt_key:
        c.fail(f"data.prompt_key must name the prompt column, got {prompt_key!r}")
        prompt_key = None
    n = c.int("data.n_samples", min_value=1)
    bs = c.int("data.batch_size", min_value=1)
    P = c.int("data.max_prompt_length", min_value=1)
    R = c.int("data.max_response_length", min_value=1, allow_none=True)
    truncation = c.choice("data.truncation", _TRUNCATION, what="truncation mode")
    apply_template = c.bool("data.apply_chat_template")
    keep_parts = c.bool("data.keep_parts")

    before = len(c.problems)
    model_cfg = check_model_path(c, "model.path")
    model_ok = len(c.problems) == before
    if c.raw("model.tokenizer_path") is not None:
        check_model_path(c, "model.tokenizer_path")
    c.bool("model.trust_remote_code")
    override = c.raw("model.override_config", {})
    if override is not None and not isinstance(override, dict):
        c.fail(f"model.override_config must be a mapping, got {override!r}")
        override = {}
    mpe = max_positions(model_cfg, override)
    derived = False
    if R is None and P is not None and model_ok and mpe is None and model_cfg is None:
        model_cfg = _hub_config(str(c.raw("model.path")), bool(c.raw("model.trust_remote_code", False)))
        mpe = max_positions(model_cfg, override)
    if R is None and P is not None:
        if mpe is None:
            if model_ok:
                c.fail("data.max_response_length is not set and the model's config gives no "
                       "max_position_embeddings to derive it from; set data.max_response_length")
        else:
            R = min(MAX_DERIVED_RESPONSE_LENGTH, mpe - P)
            derived = True
            if R < 1:
                c.fail(f"data.max_prompt_length ({P}) leaves no room for a response in the model's "
                       f"max_position_embeddings ({mpe}); lower it")
                R = None
    elif R is not None and P is not None and mpe is not None and P + R > mpe:
        c.fail(f"data.max_prompt_length ({P}) + data.max_response_length ({R}) = {P + R} exceeds the model's "
               f"max_position_embeddings ({mpe}) in {c.raw('model.path')}/config.json; shorten them, or set "
               "model.override_config.max_position_embeddings")

    temperature = c.float("rollout.temperature", min_value=0.0)
    top_p = c.float("rollout.top_p", min_value=0.0, max_value=1.0, strict_min=True)
    top_k = c.int("rollout.top_k", min_value=-1)
    do_sample = c.bool("rollout.do_sample")
    greedy = (not do_sample) or temperature == 0.0
    if greedy and n and n > 1:
        c.warn(f"greedy decoding (rollout.do_sample=false or temperature 0) with data.n_samples={n}: "
               "the n responses of a prompt will be identical")
    name = c.choice("rollout.name", ("hf", "vllm"), what="rollout engine")
    tp = c.int("rollout.tensor_model_parallel_size", min_value=1)
    if tp is not None and tp != 1:
        c.fail(f"rollout.tensor_model_parallel_size ({tp}): main_generation runs one engine per worker; use 1 "
               "(one worker per GPU; a model too big for one GPU is not supported here yet)")
    micro = c.int("rollout.micro_batch_size", min_value=1, allow_none=True)
    gpu_util = c.float("rollout.gpu_memory_utilization", min_value=0.0, max_value=1.0, strict_min=True)

    backend = c.choice("trainer.backend", _BACKENDS, what="backend")
    if backend == "auto" and world:
        backend = "inprocess" if world == 1 else "ray"
    if backend == "inprocess" and world and world > 1:
        c.fail(f"trainer.backend=inprocess runs one worker, but the world size is {world} (trainer.nnodes "
               f"{nnodes} x trainer.n_gpus_per_node {per_node}); use trainer.backend=ray")
    if bs and world and bs % world:
        c.warn(f"data.batch_size ({bs}) is not a multiple of the world size {world}: each chunk is padded with "
               f"{(-bs) % world} repeated prompt(s) whose responses are thrown away")
    seed = c.int("trainer.seed", min_value=0)
    dry_run = c.bool("trainer.dry_run")
    before = len(c.problems)
    device, checked = check_devices_available(c, name)
    # the shared device check names the RL trainer's key; this config calls it rollout.name
    c.problems[before:] = [p.replace("actor_rollout_ref.rollout.name", "rollout.name") for p in c.problems[before:]]

    num_prompts = None
    if files and not any(p.startswith("data.path") for p in c.problems):
        columns, num_prompts = _parquet_columns(files)
        if columns is not None and prompt_key is not None and prompt_key not in columns:
            c.fail(f"data.prompt_key: column {prompt_key!r} not found in data.path {files}; columns there: {columns}")
        if columns is not None and "responses" in columns:
            c.warn("data.path already has a 'responses' column; the output replaces it")
        if num_prompts == 0:
            c.fail(f"data.path {files} has no rows")
        elif prompt_key is not None and (columns is None or prompt_key in columns):  # every row, at plan time
            tok = str(c.raw("model.tokenizer_path") or c.raw("model.path")) if model_ok else None
            check_generation_data(c, files, prompt_key, tok, c.bool("model.trust_remote_code"), P, truncation,
                                  apply_template)

    ray_init = check_ray_init(c)
    if c.problems:
        raise PlanError(c.problems)
    assert output_path is not None and n and bs and P and R and name and world and backend
    path = str(c.raw("model.path"))
    model = ModelSpec(path=path, tokenizer_path=str(c.raw("model.tokenizer_path") or path),
                      trust_remote_code=c.bool("model.trust_remote_code"), enable_gradient_checkpointing=False,
                      dtype="float32", attn_implementation=c.raw("model.attn_implementation"),
                      override_config=dict(override or {}), load_format="auto", use_remove_padding=False,
                      share_prompt_prefix=False, lean_activations=False)
    sampling = SamplingSpec(n=n, temperature=float(temperature), top_p=float(top_p), top_k=int(top_k),
                            do_sample=not greedy)
    engine = {k: c.raw(f"rollout.{k}") for k in ("dtype", "max_num_seqs", "enable_prefix_caching")}
    rollout = RolloutSpec(name=name, sampling=sampling, val_sampling=sampling, prompt_length=P, response_length=R,
                          calculate_log_probs=False, tensor_model_parallel_size=tp, gpu_memory_utilization=gpu_util,
                          enforce_eager=c.bool("rollout.enforce_eager"),
                          free_cache_engine=c.bool("rollout.free_cache_engine"),
                          max_num_batched_tokens=c.raw("rollout.max_num_batched_tokens"), micro_batch_size=micro,
                          engine_kwargs={k: v for k, v in engine.items() if v is not None}, seed=seed,
                          weight_sync_bucket_mb=None)
    world_spec = WorldSpec(nnodes=nnodes, n_gpus_per_node=per_node, device=device, devices_checked=checked,
                           backend=backend, **check_cpu_threads(c))
    no_ref = RefSpec(enabled=False, model_path=path, log_prob_micro=MicroBatching(False, None, 0),
                     fsdp=FSDPSpec(param_offload=False, optimizer_offload=False, mixed_precision="auto",
                                   reshard_after_forward=True, init_on_rank0=True), precompute=False)
    worker = PolicyWorkerSpec(mode="generate", world=world_spec, seed=seed, model=model, actor=None, rollout=rollout,
                              ref=no_ref, relift=None, loss=None, max_actor_ckpt_to_keep=None)
    return GenerationPlan(
        data_files=files, output_path=output_path, num_prompts=num_prompts, batch_size=bs, n_samples=n,
        max_prompt_length=P, max_response_length=R, response_length_derived=derived, rollout_name=name,
        greedy=greedy, temperature=float(temperature), top_p=float(top_p), top_k=int(top_k), world_size=world,
        nnodes=nnodes, n_gpus_per_node=per_node, backend=backend, device=device, devices_checked=checked,
        prompt_key=prompt_key, truncation=truncation, apply_chat_template=apply_template, keep_parts=keep_parts,
        dry_run=dry_run, model=model, worker=worker, ray_init=ray_init, warnings=list(c.warnings))


