"""Generation entry point: ``python -m trainer.main_generation [hydra overrides]``.

Samples ``data.n_samples`` responses for every prompt of ``data.path`` through the rollout worker
(:class:`workers.fsdp_worker.ActorRolloutRefWorker`, role ``rollout``, HF or vLLM engine) on a
worker group started by the RL trainer's own setup (:func:`trainer.workers_setup.build_worker_groups`,
Ray, or in-process for one worker), and writes ``data.output_path``: the input's
columns plus ``responses`` (list of n strings) and ``response_lengths`` (their token counts).

Order of work: the config is checked first by :mod:`trainer.plan.generation` (missing files, model,
columns, impossible lengths: one line per problem naming the key, exit status 2) and the plan
printed; then the prompts are rendered with the chat template and measured (over-long prompts:
``data.truncation``); then chunks of ``data.batch_size`` prompts are generated, each written atomically to
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
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from trainer.entry import exit_status, hydra_entry
from trainer.plan import PlanError
from trainer.plan.generation import GenerationPlan, build_generation_plan

__all__ = ["GenerationPlan", "PartStore", "build_generation_plan", "build_prompt_batch", "run_generation",
           "run_main", "tokenize_prompts"]

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1
_TRUNCATION = ("error", "left", "right")


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


def _start_workers(plan: GenerationPlan) -> tuple[Any, Callable[[], None]]:
    """The rollout worker group (the RL trainer's worker setup, role ``rollout``) and its teardown."""
    from trainer.workers_setup import build_worker_groups  # noqa: PLC0415

    groups = build_worker_groups(plan.worker, plan.ray_init, with_ref=False, reward=None, with_rollout=True)
    return groups.actor, groups.shutdown


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
    summary: dict[str, Any] = {"output_path": str(plan.output_path), "parts_dir": str(plan.parts_dir)}
    if plan.dry_run:
        print("[relift] trainer.dry_run=true: config checked, stopping before any worker starts", flush=True)
        return {**summary, "dry_run": True}

    tokenizer = load_tokenizer(plan.model.tokenizer_path, trust_remote_code=plan.model.trust_remote_code)
    prompt_key = plan.prompt_key
    try:
        table = read_parquet_files(plan.data_files)
        prompt_ids = tokenize_prompts(table, prompt_key, tokenizer, plan.max_prompt_length, plan.truncation,
                                      plan.apply_chat_template)
    except (KeyError, ValueError) as err:  # bad rows: one clear line, like a bad config
        raise PlanError([str(err).strip("'\"")], what="input data") from err
    num = len(prompt_ids)
    bs, n = plan.batch_size, plan.n_samples
    chunks = [range(s, min(num, s + bs)) for s in range(0, num, bs)]
    manifest = {
        "version": MANIFEST_VERSION, "data_files": [str(Path(f).expanduser().absolute()) for f in plan.data_files],
        "num_prompts": num, "prompts_sha256": _fingerprint(prompt_ids), "prompt_key": prompt_key,
        "batch_size": bs, "n_samples": n, "model_path": _model_id(plan.model.path),
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
            group, cleanup = _start_workers(plan)
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
    if not plan.keep_parts:
        shutil.rmtree(plan.parts_dir, ignore_errors=True)
    lengths = [x for r in final["response_lengths"] for x in r]
    truncated = sum(1 for x in lengths if x >= plan.max_response_length)
    print(f"[relift] wrote {num} prompts x {n} responses to {plan.output_path} (mean length "
          f"{sum(lengths) / max(len(lengths), 1):.1f} tokens, {truncated} at the length limit)", flush=True)
    print(f"[relift] files: responses {plan.output_path} | chunks "
          f"{plan.parts_dir if plan.keep_parts else '(deleted: data.keep_parts=false)'} | "
          f"score them with: python -m trainer.main_eval data.path={plan.output_path}", flush=True)
    return {**summary, "num_prompts": num, "num_chunks": len(chunks), "chunks_reused": len(finished),
            "chunks_generated": len(pending), "dry_run": False}


def run_main(cfg: DictConfig) -> int:
    """Run with a composed config; returns the exit status (2 for a config that cannot run)."""
    return exit_status(run_generation, cfg, (PlanError, ResumeMismatchError))


main = hydra_entry("generation", run_main)


if __name__ == "__main__":
    main()
