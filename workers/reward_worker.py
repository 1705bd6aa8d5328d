"""RewardWorker: scores generated responses off the driver, through a process pool with timeouts.

``compute_score(data)`` decodes each row's valid response tokens, looks up its scorer by
``data_source`` (or the custom reward function) and scores it against
``reward_model["ground_truth"]`` with ``extra_info``. It returns:

* ``token_level_scores`` [B, R]: the score on the row's last valid response token, 0 elsewhere;
* non-tensors per row: ``acc`` (float; the scorer's, else ``score > 0``), ``format`` and ``pred``
  where the scorer reports them (None otherwise), ``reward_timeout`` and ``reward_error`` (bools),
  ``reward_error_msg`` (why the sample scored 0, else None), and any other field the scorer
  returns (skipped when the batch already has a column of that name);
* ``meta_info["metrics"]``: ``reward/timeouts``, ``reward/errors`` (this worker's counts; with
  several reward workers the concatenated result keeps rank 0's, so sum the per-row flags with
  :func:`reward_metrics` for exact totals).

When the prompt ends with an opened ``<think>`` (Logic-RL's prompts), the scorer gets that prefill +
the response (:mod:`relift.rewards.prefill`). Decoding keeps the reasoning tags: special tokens are
dropped by id, except ``<think>``, ``</think>``, ``<answer>``, ``</answer>``, which some tokenizers
register as special tokens.

Settings: a :class:`relift.spec.RewardSpec` (``reward.num_workers``, ``reward.timeout``,
``reward.think_format``, ``reward.custom_reward_function``, ``data.reward_fn_key``) and the
policy's tokenizer path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from relift.protocol import DataProto
from relift.rewards.guard import failure_metrics
from relift.single_controller import Dispatch, Worker, register
from relift.spec import RewardSpec

__all__ = ["RewardWorker", "KEEP_TAGS", "decode_responses", "score_batch", "reward_metrics"]

logger = logging.getLogger(__name__)

KEEP_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_STANDARD_KEYS = ("score", "timeout", "error", "error_msg", "acc", "format", "pred")


def _special_ids_to_drop(tokenizer: Any, keep: Sequence[str] = KEEP_TAGS) -> set[int]:
    """Ids of every special token (named or added with special=True) except the ``keep`` tags."""
    drop = set(int(i) for i in getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for idx, token in added.items():
        if getattr(token, "special", False):
            drop.add(int(idx))
    vocab_size = len(tokenizer)
    for tag in keep:
        tid = tokenizer.convert_tokens_to_ids(tag)
        unk = getattr(tokenizer, "unk_token_id", None)
        if isinstance(tid, int) and tid != unk and 0 <= tid < vocab_size:
            drop.discard(tid)
    return drop


def decode_responses(tokenizer: Any, responses: torch.Tensor, response_mask: torch.Tensor,
                     keep: Sequence[str] = KEEP_TAGS) -> list[str]:
    """Text of each row's valid response tokens, special tokens removed but the reasoning tags kept."""
    drop = _special_ids_to_drop(tokenizer, keep)
    rows = []
    for ids, mask in zip(responses.tolist(), response_mask.tolist()):
        rows.append([t for t, m in zip(ids, mask) if m and t not in drop])
    return tokenizer.batch_decode(rows, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _ground_truth(reward_model: Any, row: int) -> Any:
    if isinstance(reward_model, dict):
        if "ground_truth" not in reward_model:
            raise KeyError(f"row {row}: reward_model has no 'ground_truth' (keys {sorted(reward_model)})")
        return reward_model["ground_truth"]
    raise TypeError(f"row {row}: reward_model must be a dict with 'ground_truth', got {type(reward_model).__name__}")


def score_batch(data: DataProto, tokenizer: Any, pool: Any, reward_fn_key: str = "data_source") -> DataProto:
    """Score ``data`` with ``pool`` (a :class:`relift.rewards.RewardPool`); see the module docstring."""
    if data.batch is None or "responses" not in data.batch.keys():
        raise KeyError("compute_score needs batch key 'responses' (the rollout output)")
    nt = data.non_tensor_batch
    for key in (reward_fn_key, "reward_model"):
        if key not in nt:
            raise KeyError(f"compute_score needs non-tensor column {key!r}; the batch has {sorted(nt)}")
    responses = data.batch["responses"]
    resp_len = responses.shape[1]
    if "response_mask" in data.batch.keys():
        mask = data.batch["response_mask"]
    elif "attention_mask" in data.batch.keys():
        mask = data.batch["attention_mask"][:, -resp_len:]
    else:
        raise KeyError("compute_score needs 'response_mask' or 'attention_mask' to know the valid tokens")
    texts = decode_responses(tokenizer, responses, mask)
    if "prompts" in data.batch.keys() and "attention_mask" in data.batch.keys():  # a prompt's opened <think> counts
        from relift.rewards.prefill import prompt_prefills  # noqa: PLC0415
        prompts = data.batch["prompts"]
        texts = [p + t for p, t in zip(prompt_prefills(tokenizer, prompts,
                                                       data.batch["attention_mask"][:, :prompts.shape[1]]), texts)]
    n = len(texts)
    sources = [str(s) for s in nt[reward_fn_key]]
    truths = [_ground_truth(nt["reward_model"][i], i) for i in range(n)]
    extras = list(nt["extra_info"]) if "extra_info" in nt else [None] * n
    rows = pool.score(sources, texts, truths, extras) if n else []

    scores = torch.tensor([float(r["score"]) for r in rows], dtype=torch.float32)
    token_level = torch.zeros(responses.shape, dtype=torch.float32)
    lengths = mask.long().sum(-1).cpu()
    last = (lengths - 1).clamp(min=0)
    if n:
        token_level[torch.arange(n), last] = scores
    out_nt: dict[str, Any] = {
        "acc": [float(r["acc"]) if r.get("acc") is not None else float(r["score"] > 0) for r in rows],
        "format": [r.get("format") for r in rows],
        "pred": [r.get("pred") for r in rows],
        "reward_timeout": [bool(r.get("timeout", False)) for r in rows],
        "reward_error": [bool(r.get("error", False)) for r in rows],
        "reward_error_msg": [r.get("error_msg") for r in rows],
    }
    extra_keys = list(dict.fromkeys(k for r in rows for k in r if k not in _STANDARD_KEYS))
    for key in extra_keys:
        if key in nt or key in out_nt:
            logger.warning("reward field %r not returned: the batch already has a column of that name", key)
            continue
        out_nt[key] = [r.get(key) for r in rows]
    out_arrays = {}
    for key, values in out_nt.items():
        arr = np.empty(n, dtype=object)
        for i, v in enumerate(values):
            arr[i] = v
        out_arrays[key] = arr
    out = DataProto.from_dict(tensors={"token_level_scores": token_level}, non_tensors=out_arrays)
    out.meta_info["metrics"] = {"reward/timeouts": int(sum(out_nt["reward_timeout"])),
                                "reward/errors": int(sum(out_nt["reward_error"]))}
    return out


def reward_metrics(data: DataProto) -> dict[str, float]:
    """``reward/timeouts``, ``reward/errors``, ``reward/error_fraction`` from the per-row flags of a
    scored batch (exact with several reward workers)."""
    return failure_metrics(data.non_tensor_batch)


class RewardWorker(Worker):
    """Holds a tokenizer and a :class:`relift.rewards.RewardPool`; scores DataProtos on request."""

    def __init__(self, spec: RewardSpec, tokenizer_path: str, trust_remote_code: bool = False) -> None:
        if not isinstance(spec, RewardSpec):
            raise TypeError(f"RewardWorker takes a relift.spec.RewardSpec, got {type(spec).__name__}")
        self.spec = spec
        self._tokenizer_path = tokenizer_path
        self._trust_remote_code = trust_remote_code
        self.tokenizer: Any = None
        self.pool: Any = None

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self) -> None:
        """Load the tokenizer and start the scoring processes (they import their scorers now)."""
        from relift.models.loading import load_tokenizer
        from relift.rewards import RewardPool

        if self.pool is not None:
            return
        self.tokenizer = load_tokenizer(self._tokenizer_path, trust_remote_code=self._trust_remote_code)
        fn = self.spec.custom_reward_function
        custom = (fn.path, fn.name) if fn is not None else None
        self.pool = RewardPool(num_workers=self.spec.num_workers, timeout=self.spec.timeout, custom_reward_fn=custom,
                               reward_kwargs=self._reward_kwargs(custom is not None))
        logger.info("reward worker %d: %d scoring processes, timeout %.1f s%s", self.rank, self.pool.num_workers,
                    self.pool.timeout, f", custom {custom}" if custom else "")

    def _reward_kwargs(self, custom: bool) -> dict[str, Any]:
        """Options for the built-in scorers only: a custom function keeps the documented
        ``fn(data_source, solution_str, ground_truth, extra_info=None)`` signature."""
        think = self.spec.think_format
        if custom:
            if think:
                logger.warning("reward.think_format is ignored with a custom_reward_function")
            return {}
        return {"require_think_format": think} if think else {}

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def compute_score(self, data: DataProto) -> DataProto:
        """Score a batch; see the module docstring for what comes back."""
        if self.pool is None:
            raise RuntimeError("RewardWorker.compute_score: call init_model() first")
        return score_batch(data, self.tokenizer, self.pool, self.spec.reward_fn_key)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def close_pool(self) -> None:
        """Stop the scoring processes (the group's own ``shutdown`` then ends the workers)."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None
