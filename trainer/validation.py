"""One validation pass: generate with ``rollout.val_kwargs``, score, and report mean@n / pass@k.

The rollout engines hold ``val_kwargs`` from the run spec; a generation call marked
``meta_info["validate"]`` samples with them.

Every validation prompt gets ``val_kwargs.n`` samples (greedy by default). Each sample becomes a
record ``{data_source, prompt_id, correct, pred, score}``; :func:`relift.metrics.summarize_samples`
turns them into a per-data-source table, reported as verl names it:

* ``val-core/<data_source>/acc/mean@<n>``, ``.../acc/pass@<k>``, ``.../acc/maj@<n>``
* ``val-core/<data_source>/reward/mean@<n>`` (the mean score, which for a graded scorer such as
  knights-and-knaves differs from the accuracy)
* ``val/reward/timeouts``, ``val/reward/errors``, ``val/response_length/mean``

plus a markdown table for the log. With ``capability=True`` (``trainer.val_capability``) also
``val-cap/<data_source>/pass@<n>`` (pass@k at the largest k) and ``val-cap/<data_source>/solve_rate/<bin>``
(fraction of questions per solve-rate bin, :func:`relift.metrics.capability.capability_metrics`), so a
run shows whether it gains capability or only accuracy.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from relift.metrics import summarize_samples, to_markdown, to_metric_dict
from relift.metrics.capability import capability_metrics
from relift.protocol import DataProto
from workers.rollout.base import GEN_KEYS

__all__ = ["validation_records", "run_validation"]

logger = logging.getLogger(__name__)

def validation_records(batch: DataProto, prompt_ids: Iterable[Any]) -> list[dict[str, Any]]:
    """One record per scored sample (``prompt_ids``: the prompt each row belongs to)."""
    nt = batch.non_tensor_batch
    scores = batch.batch["token_level_scores"].sum(-1).tolist()
    records = []
    for i, pid in enumerate(prompt_ids):
        records.append({"data_source": str(nt["data_source"][i]), "prompt_id": pid,
                        "correct": float(nt["acc"][i]), "pred": nt["pred"][i] if "pred" in nt else None,
                        "score": float(scores[i])})
    return records


def _expand_with(batch: DataProto, gen_out: DataProto, n: int) -> DataProto:
    """The prompt rows repeated n times (interleaved, like the rollout) merged with the rollout output."""
    rep = batch.repeat(n, interleave=True)
    rep.meta_info = {}
    present = [k for k in GEN_KEYS if rep.batch is not None and k in rep.batch.keys()]
    if present:
        rep.pop(batch_keys=present)
    return rep.union(gen_out)


def summarize_validation(records: list[dict[str, Any]]) -> tuple[dict[str, float], str]:
    """val-core metrics and a markdown table from the records of a whole validation pass."""
    summary = summarize_samples(records)
    metrics = to_metric_dict(summary, var="acc")
    by_source: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        by_source[rec["data_source"]].append(rec["score"])
    for source, row in summary.items():
        metrics[f"val-core/{source}/reward/mean@{row['n']}"] = float(np.mean(by_source[source]))
    return metrics, to_markdown(summary)


def run_validation(actor_wg: Any, reward_wg: Any, batches: Iterable[DataProto], global_step: int = 0,
                   seed: int | None = None, capability: bool = False) -> tuple[dict[str, float], str]:
    """Generate, score and summarise every batch of ``batches``; returns (metrics, markdown table).

    ``seed``: reseed the rollout sampler first (when the group offers ``set_rollout_seed``), so a
    sampled validation is reproducible too. ``capability``: also the ``val-cap/...`` metrics (module
    docstring); the RL trainer passes ``trainer.val_capability``.
    """
    records: list[dict[str, Any]] = []
    timeouts = errors = 0.0
    lengths: list[float] = []
    if seed is not None and hasattr(actor_wg, "set_rollout_seed"):
        actor_wg.set_rollout_seed(int(seed))
    for b, batch in enumerate(batches):
        n_prompts = len(batch)
        gen_in = batch.select(batch_keys=list(GEN_KEYS), non_tensor_batch_keys=[])
        gen_in.meta_info = {"validate": True, "global_step": int(global_step)}
        out = actor_wg.generate_sequences(gen_in)
        out.meta_info.pop("timing", None)
        n = len(out) // max(n_prompts, 1)
        if n * n_prompts != len(out):
            raise RuntimeError(f"validation: the rollout returned {len(out)} rows for {n_prompts} prompts")
        full = _expand_with(batch, out, n)
        scored = reward_wg.compute_score(full)
        scored.meta_info.pop("metrics", None)
        full = full.union(scored)
        prompt_ids = [(b, j // n) for j in range(len(full))]
        records.extend(validation_records(full, prompt_ids))
        nt = full.non_tensor_batch
        timeouts += float(sum(bool(v) for v in nt.get("reward_timeout", [])))
        errors += float(sum(bool(v) for v in nt.get("reward_error", [])))
        lengths.extend(full.batch["response_mask"].sum(-1).float().tolist())
    if not records:
        raise ValueError("validation: no validation prompts (data.val_files gave no rows)")
    metrics, table = summarize_validation(records)
    if capability:
        metrics.update(capability_metrics(records))
    metrics["val/reward/timeouts"] = timeouts
    metrics["val/reward/errors"] = errors
    metrics["val/response_length/mean"] = float(np.mean(lengths))
    logger.info("validation at step %d (%d samples):\n%s", global_step, len(records), table)
    return metrics, table
