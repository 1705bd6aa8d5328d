"""Generation entry point: ``python -m trainer.main_generation [hydra overrides]``.

Samples ``data.n_samples`` responses for every prompt of ``data.path`` through the rollout worker
(:class:`workers.fsdp_worker.ActorRolloutRefWorker`, role ``rollout``, HF or vLLM engine) on a
worker group (Ray, or in-process for one worker), and writes ``data.output_path``: the input's
columns plus ``responses`` (list of n strings) and ``response_lengths`` (their token counts).

Order of work: the config is checked first (missing files, model, columns, impossible lengths: one
line per problem naming the key, exit status 2) and the plan printed; then the prompts are rendered
with the chat template and measured (over-long prompts: ``data.truncation``); then chunks of
``data.batch_size`` prompts are generated, each written atomically to
``<output_path>.parts/part-NNNNN.parquet`` as soon as it completes, under a tqdm bar. A manifest in
that folder records the settings and a hash of the prompt tokens; a rerun with the same ones skips
the finished chunks, a rerun with different ones stops with an error (never mixes results). The
final parquet is assembled from the parts at the end.

Sampling is seeded per worker (``trainer.seed``), not per chunk, so a resumed run is a valid sample
but not bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from trainer.entry import EXIT_BAD_CONFIG
from trainer.plan import (ConfigChecker, PlanError, check_devices_available, check_files, check_model_path, max_positions,
                          render_plan)

__all__ = ["GenerationPlan", "PartStore", "build_generation_plan", "build_prompt_batch", "run_generation",
           "run_main", "tokenize_prompts", "worker_config"]

logger = logging.getLogger(__name__)

MAX_DERIVED_RESPONSE_LENGTH = 32768
MANIFEST_VERSION = 1
_BACKENDS = ("auto", "ray", "inprocess")
_TRUNCATION = ("error", "left", "right")


# ----------------------------------------------------------------------------------------------------
# the plan


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
    c.choice("data.truncation", _TRUNCATION, default="error", what="truncation mode")
    c.bool("data.apply_chat_template", default=True)
    c.bool("data.keep_parts", default=True)

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

    temperature = c.float("rollout.temperature", min_value=0.0, default=1.0)
    top_p = c.float("rollout.top_p", min_value=0.0, max_value=1.0, strict_min=True, default=1.0)
    top_k = c.int("rollout.top_k", min_value=-1, default=-1)
    do_sample = c.bool("rollout.do_sample", default=True)
    greedy = (not do_sample) or temperature == 0.0
    if greedy and n and n > 1:
        c.warn(f"greedy decoding (rollout.do_sample=false or temperature 0) with data.n_samples={n}: "
               "the n responses of a prompt will be identical")
    name = c.choice("rollout.name", ("hf", "vllm"), what="rollout engine")
    tp = c.int("rollout.tensor_model_parallel_size", min_value=1, default=1)
    if tp is not None and tp != 1:
        c.fail(f"rollout.tensor_model_parallel_size ({tp}): main_generation runs one engine per worker; use 1 "
               "(one worker per GPU; a model too big for one GPU is not supported here yet)")
    c.int("rollout.micro_batch_size", min_value=1, allow_none=True)
    if name == "vllm":
        c.float("rollout.gpu_memory_utilization", min_value=0.0, max_value=1.0, strict_min=True, default=0.85)

    backend = c.choice("trainer.backend", _BACKENDS, default="auto", what="backend")
    if backend == "auto" and world:
        backend = "inprocess" if world == 1 else "ray"
    if backend == "inprocess" and world and world > 1:
        c.fail(f"trainer.backend=inprocess runs one worker, but the world size is {world} (trainer.nnodes "
               f"{nnodes} x trainer.n_gpus_per_node {per_node}); use trainer.backend=ray")
    if bs and world and bs % world:
        c.warn(f"data.batch_size ({bs}) is not a multiple of the world size {world}: each chunk is padded with "
               f"{(-bs) % world} repeated prompt(s) whose responses are thrown away")
    c.int("trainer.seed", min_value=0, default=1)
    c.bool("trainer.dry_run")
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

    if c.problems:
        raise PlanError(c.problems)
    assert output_path is not None and n and bs and P and R and name and world and backend
    return GenerationPlan(
        data_files=files, output_path=output_path, num_prompts=num_prompts, batch_size=bs, n_samples=n,
        max_prompt_length=P, max_response_length=R, response_length_derived=derived, rollout_name=name,
        greedy=greedy, temperature=float(temperature), top_p=float(top_p), top_k=int(top_k), world_size=world,
        nnodes=nnodes, n_gpus_per_node=per_node, backend=backend, device=device, devices_checked=checked,
        warnings=list(c.warnings))


# ----------------------------------------------------------------------------------------------------
# prompts


def tokenize_prompts(table: Any, prompt_key: str, tokenizer: Any, max_prompt_length: int,
                     truncation: str = "error", apply_chat_template: bool = True) -> list[list[int]]:
    """Token ids of every row's prompt (chat template applied), over-long ones cut or refused.

    ``truncation='error'`` raises naming the first over-long row (file and row), its length and how
    many rows are over; ``left`` keeps the end of the prompt (where the question and the generation
    prompt are), ``right`` the start.
    """
    from relift.data.common import render_prompt  # noqa: PLC0415
    from relift.data.io import as_messages  # noqa: PLC0415

    if truncation not in _TRUNCATION:
        raise ValueError(f"data.truncation must be one of {list(_TRUNCATION)}, got {truncation!r}")
    table.require_columns([prompt_key], f"main_generation (data.prompt_key={prompt_key!r})")
    texts = []
    for row in range(len(table)):
        cell = table.cell(row, prompt_key)
        messages = [{"role": "user", "content": cell}] if isinstance(cell, str) else \
            as_messages(cell, prompt_key, table.origin(row))
        texts.append(render_prompt(tokenizer, messages, apply_chat_template))
    ids: list[list[int]] = []
    for start in range(0, len(texts), 1024):
        enc = tokenizer(texts[start:start + 1024], add_special_tokens=False, return_attention_mask=False,
                        verbose=False)["input_ids"]
        ids.extend(list(x) for x in enc)
    empty = [i for i, x in enumerate(ids) if not x]
    if empty:
        raise ValueError(f"{table.origin(empty[0])}: the prompt is empty after rendering ({len(empty)} such rows)")
    over = [i for i, x in enumerate(ids) if len(x) > max_prompt_length]
    if over:
        if truncation == "error":
            first = over[0]
            raise ValueError(f"{table.origin(first)}: the prompt is {len(ids[first])} tokens, over "
                             f"data.max_prompt_length={max_prompt_length} ({len(over)} of {len(ids)} prompts are "
                             "over); raise data.max_prompt_length or set data.truncation=left|right")
        for i in over:
            ids[i] = ids[i][-max_prompt_length:] if truncation == "left" else ids[i][:max_prompt_length]
        logger.warning("cut %d of %d prompts to data.max_prompt_length=%d (data.truncation=%s)", len(over), len(ids),
                       max_prompt_length, truncation)
    return ids


def build_prompt_batch(prompt_ids: Sequence[Sequence[int]], pad_token_id: int) -> Any:
    """Left-padded ``input_ids`` / ``attention_mask`` / ``position_ids`` (to the longest prompt)."""
    import torch  # noqa: PLC0415

    from relift.protocol import DataProto  # noqa: PLC0415

    if not prompt_ids:
        raise ValueError("build_prompt_batch needs at least one prompt")
    width = max(len(p) for p in prompt_ids)
    input_ids = torch.full((len(prompt_ids), width), int(pad_token_id), dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for i, ids in enumerate(prompt_ids):
        if ids:
            input_ids[i, width - len(ids):] = torch.as_tensor(list(ids), dtype=torch.long)
            mask[i, width - len(ids):] = 1
    position_ids = (torch.cumsum(mask, dim=-1) - 1).clamp(min=0)
    return DataProto.from_dict(tensors={"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids},
                               meta_info={"validate": False})


def _model_id(path: str) -> str:
    """A local checkpoint as an absolute path (so ./m and /abs/m match on resume); a hub id as is."""
    local = Path(path).expanduser()
    return str(local.absolute()) if local.exists() else path


def _fingerprint(prompt_ids: Sequence[Sequence[int]]) -> str:
    h = hashlib.sha256()
    for ids in prompt_ids:
        h.update(len(ids).to_bytes(4, "little"))
        h.update(b"".join(int(t).to_bytes(4, "little", signed=True) for t in ids))
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------
# part files


class ResumeMismatchError(ValueError):
    """The parts folder belongs to a run with other settings."""


class PartStore:
    """``<output>.parts/``: one parquet per finished chunk, written atomically, plus a manifest.

    A part holds ``row`` (global row numbers), ``responses`` and ``response_lengths``; it counts as
    finished only when it is readable and holds exactly its chunk's rows with ``n`` responses each.
    """

    def __init__(self, folder: str | os.PathLike, manifest: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.manifest = manifest

    def part_path(self, chunk: int) -> Path:
        return self.folder / f"part-{chunk:05d}.parquet"

    def prepare(self) -> None:
        """Create the folder; check (or write) the manifest; remove temp files of a killed write."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for tmp in self.folder.glob(".*.tmp-*"):
            tmp.unlink(missing_ok=True)
        path = self.folder / "manifest.json"
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except ValueError:
                old = None
            if old != self.manifest:
                old = old if isinstance(old, dict) else {}
                diffs = [f"{k}: {old.get(k)!r} -> {self.manifest.get(k)!r}"
                         for k in sorted(set(old) | set(self.manifest)) if old.get(k) != self.manifest.get(k)]
                raise ResumeMismatchError(
                    f"data.output_path: {self.folder} holds chunks of a run with different settings "
                    f"({'; '.join(diffs[:8])}); delete that folder to start over, or choose another "
                    "data.output_path")
            return
        _atomic_write_text(path, json.dumps(self.manifest, indent=1, sort_keys=True))

    def load(self, chunk: int, rows: range, n: int) -> Any | None:
        """The chunk's part as a DataFrame, or None when it is missing or not a complete part."""
        import pandas as pd  # noqa: PLC0415

        path = self.part_path(chunk)
        if not path.exists():
            return None
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # noqa: BLE001
            logger.warning("part %s is unreadable (%s); generating it again", path, err)
            return None
        ok = (set(frame.columns) >= {"row", "responses", "response_lengths"}
              and frame["row"].tolist() == list(rows)
              and all(len(r) == n for r in frame["responses"]))
        if not ok:
            logger.warning("part %s does not hold rows %d..%d with %d responses each; generating it again", path,
                           rows.start, rows.stop - 1, n)
            return None
        return frame

    def write(self, chunk: int, rows: range, responses: Sequence[Sequence[str]],
              lengths: Sequence[Sequence[int]]) -> Path:
        import pandas as pd  # noqa: PLC0415

        if not (len(rows) == len(responses) == len(lengths)):
            raise ValueError(f"chunk {chunk}: {len(rows)} rows, {len(responses)} responses, {len(lengths)} lengths")
        frame = pd.DataFrame({"row": list(rows), "responses": [list(r) for r in responses],
                              "response_lengths": [[int(x) for x in ls] for ls in lengths]})
        path = self.part_path(chunk)
        _atomic_write_parquet(frame, path)
        return path


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_write_parquet(frame: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------
# workers


def worker_config(cfg: Any, plan: GenerationPlan) -> dict[str, Any]:
    """The ``actor_rollout_ref`` view :class:`ActorRolloutRefWorker` reads, from the generation keys."""
    c = ConfigChecker(cfg)
    rollout = {k: v for k, v in (c.raw("rollout", {}) or {}).items() if v is not None}
    rollout.update({"n": plan.n_samples, "prompt_length": plan.max_prompt_length,
                    "response_length": plan.max_response_length, "calculate_log_probs": False})
    if plan.greedy:
        rollout["do_sample"] = False
    model = {k: c.raw(f"model.{k}") for k in ("path", "tokenizer_path", "trust_remote_code", "attn_implementation")}
    model["override_config"] = c.raw("model.override_config", {}) or {}
    return {"actor_rollout_ref": {"model": model, "rollout": rollout},
            "trainer": {"seed": int(c.raw("trainer.seed", 1)), "device": plan.device}}


def _build_worker_group(cfg: Any, plan: GenerationPlan) -> tuple[Any, Callable[[], None]]:
    """A started rollout worker group and the function that tears it down."""
    from relift.single_controller import InProcessWorkerGroup, RayClassWithInitArgs  # noqa: PLC0415
    from workers.fsdp_worker import ActorRolloutRefWorker  # noqa: PLC0415

    wcfg = worker_config(cfg, plan)
    if plan.backend == "inprocess":
        group = InProcessWorkerGroup(RayClassWithInitArgs(ActorRolloutRefWorker, wcfg, "rollout"))
        cleanup: Callable[[], None] = group.shutdown
    else:
        import ray  # noqa: PLC0415

        from relift.single_controller import RayResourcePool, RayWorkerGroup, init_ray  # noqa: PLC0415

        c = ConfigChecker(cfg)
        info = init_ray(address=c.raw("ray_init.address"), num_cpus=c.raw("ray_init.num_cpus"),
                        include_dashboard=bool(c.raw("ray_init.include_dashboard", False)))
        pool = RayResourcePool([plan.n_gpus_per_node] * plan.nnodes, use_gpu=plan.device == "cuda")
        try:
            group = RayWorkerGroup(pool, RayClassWithInitArgs(ray.remote(ActorRolloutRefWorker), wcfg, "rollout"))
        except BaseException:
            pool.shutdown()
            if info.get("mode") == "started":
                ray.shutdown()
            raise

        def cleanup() -> None:
            group.shutdown(release_resources=True)
            if info.get("mode") == "started":
                ray.shutdown()
    try:
        group.init_model()
    except BaseException:
        cleanup()
        raise
    return group, cleanup


def _generate_chunk(group: Any, prompt_ids: Sequence[Sequence[int]], tokenizer: Any, n: int
                    ) -> tuple[list[list[str]], list[list[int]]]:
    """n decoded responses (and their token counts, EOS included) per prompt of one chunk."""
    out = group.generate_sequences(build_prompt_batch(prompt_ids, tokenizer.pad_token_id))
    responses, mask = out.batch["responses"], out.batch["response_mask"]
    if responses.shape[0] != len(prompt_ids) * n:
        raise RuntimeError(f"the rollout returned {responses.shape[0]} rows for {len(prompt_ids)} prompts x n={n}")
    token_lists = [r[m.bool()].tolist() for r, m in zip(responses, mask)]
    texts = tokenizer.batch_decode(token_lists, skip_special_tokens=True)
    lengths = mask.sum(dim=-1).tolist()
    return ([texts[j * n:(j + 1) * n] for j in range(len(prompt_ids))],
            [[int(x) for x in lengths[j * n:(j + 1) * n]] for j in range(len(prompt_ids))])


# ----------------------------------------------------------------------------------------------------
# the run


def run_generation(cfg: Any, group: Any = None) -> dict[str, Any]:
    """Check, print the plan, generate the missing chunks, assemble the output; returns a summary.

    ``group``: an already started rollout worker group to use instead of building one (tests,
    notebooks); it is left running. Raises :class:`PlanError` for a bad config.
    """
    import pandas as pd  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    from relift.data.io import read_parquet_files  # noqa: PLC0415
    from relift.models.loading import load_tokenizer  # noqa: PLC0415

    plan = build_generation_plan(cfg)
    print(plan.render(), flush=True)
    c = ConfigChecker(cfg)
    summary: dict[str, Any] = {"output_path": str(plan.output_path), "parts_dir": str(plan.parts_dir)}
    if c.raw("trainer.dry_run", False):
        print("[relift] trainer.dry_run=true: config checked, stopping before any worker starts", flush=True)
        return {**summary, "dry_run": True}

    tokenizer = load_tokenizer(c.raw("model.tokenizer_path") or c.raw("model.path"),
                               trust_remote_code=bool(c.raw("model.trust_remote_code", False)))
    prompt_key = str(c.raw("data.prompt_key"))
    try:
        table = read_parquet_files(plan.data_files)
        prompt_ids = tokenize_prompts(table, prompt_key, tokenizer, plan.max_prompt_length,
                                      str(c.raw("data.truncation", "error")),
                                      bool(c.raw("data.apply_chat_template", True)))
    except (KeyError, ValueError) as err:  # bad rows: one clear line, like a bad config
        raise PlanError([str(err).strip("'\"")], what="input data") from err
    num = len(prompt_ids)
    bs, n = plan.batch_size, plan.n_samples
    chunks = [range(s, min(num, s + bs)) for s in range(0, num, bs)]
    manifest = {
        "version": MANIFEST_VERSION, "data_files": [str(Path(f).expanduser().absolute()) for f in plan.data_files],
        "num_prompts": num, "prompts_sha256": _fingerprint(prompt_ids), "prompt_key": prompt_key,
        "batch_size": bs, "n_samples": n, "model_path": _model_id(str(c.raw("model.path"))),
        "max_response_length": plan.max_response_length, "greedy": plan.greedy,
        "temperature": None if plan.greedy else plan.temperature, "top_p": None if plan.greedy else plan.top_p,
        "top_k": None if plan.greedy else plan.top_k,
    }
    store = PartStore(plan.parts_dir, manifest)
    store.prepare()
    finished = {i for i, rows in enumerate(chunks) if store.load(i, rows, n) is not None}
    pending = [i for i in range(len(chunks)) if i not in finished]
    if finished:
        print(f"[relift] resuming: {len(finished)} of {len(chunks)} chunks already in {plan.parts_dir}", flush=True)
    cleanup: Callable[[], None] | None = None
    if pending:
        if group is None:
            group, cleanup = _build_worker_group(cfg, plan)
        try:
            done = sum(len(chunks[i]) for i in finished)
            bar = tqdm(total=num, initial=done, desc=f"generating ({n} samples per prompt)", unit="prompt",
                       dynamic_ncols=True)  # counted in prompts so the ETA holds when chunks differ in size
            for i in pending:
                rows = chunks[i]
                responses, lengths = _generate_chunk(group, [prompt_ids[r] for r in rows], tokenizer, n)
                store.write(i, rows, responses, lengths)
                bar.update(len(rows))
            bar.close()
        finally:
            if cleanup is not None:
                cleanup()

    parts = []
    for i, rows in enumerate(chunks):
        part = store.load(i, rows, n)
        if part is None:
            raise RuntimeError(f"chunk {i} ({store.part_path(i)}) is missing after generation")
        parts.append(part)
    gathered = pd.concat(parts, ignore_index=True)
    final = table.frame.reset_index(drop=True).copy()
    for col in ("responses", "response_lengths"):
        if col in final.columns:
            final = final.drop(columns=[col])
    final["responses"] = pd.Series([[str(t) for t in r] for r in gathered["responses"]], dtype=object)
    final["response_lengths"] = pd.Series([[int(x) for x in r] for r in gathered["response_lengths"]], dtype=object)
    plan.output_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_parquet(final, plan.output_path)
    if not c.raw("data.keep_parts", True):
        shutil.rmtree(plan.parts_dir, ignore_errors=True)
    lengths = [x for r in final["response_lengths"] for x in r]
    truncated = sum(1 for x in lengths if x >= plan.max_response_length)
    print(f"[relift] wrote {num} prompts x {n} responses to {plan.output_path} (mean length "
          f"{sum(lengths) / max(len(lengths), 1):.1f} tokens, {truncated} at the length limit)", flush=True)
    print(f"[relift] files: responses {plan.output_path} | chunks "
          f"{plan.parts_dir if c.raw('data.keep_parts', True) else '(deleted: data.keep_parts=false)'} | "
          f"score them with: python -m trainer.main_eval data.path={plan.output_path}", flush=True)
    return {**summary, "num_prompts": num, "num_chunks": len(chunks), "chunks_reused": len(finished),
            "chunks_generated": len(pending), "dry_run": False}


def run_main(cfg: DictConfig) -> int:
    """Run with a composed config; returns the exit status (2 for a config that cannot run)."""
    try:
        run_generation(cfg)
    except PlanError as e:
        print(f"[relift] {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_CONFIG
    except ResumeMismatchError as e:
        print(f"[relift] {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_CONFIG
    return 0


@hydra.main(config_path="config", config_name="generation", version_base=None)
def main(cfg: DictConfig) -> None:
    rc = run_main(cfg)
    if rc:
        sys.exit(rc)


if __name__ == "__main__":
    main()
