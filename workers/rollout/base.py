"""The rollout interface every generation engine implements, and the pieces they share.

An engine takes a DataProto of left-padded prompts (``input_ids``, ``attention_mask``,
``position_ids`` [B, P]) and returns B x n rows (n samples per prompt, interleaved: a,a,b,b) with
verl's keys: ``prompts`` [B*n, P], ``responses`` [B*n, R] right-padded with the pad id,
``input_ids`` / ``attention_mask`` / ``position_ids`` [B*n, P+R], ``response_mask`` [B*n, R]
(1 up to and including the first EOS) and, when asked, ``rollout_log_probs`` [B*n, R].
Non-tensor columns of the input are repeated the same way; ``meta_info`` is passed through.

Sampling settings come from the rollout config (verl's keys: ``n``, ``temperature``, ``top_p``,
``top_k``, ``do_sample``, ``response_length``, ``calculate_log_probs``, ``val_kwargs``), overridden
by ``val_kwargs`` when ``meta_info['validate']`` is true, then by explicit ``meta_info`` keys
(``n``, ``temperature``, ``top_p``, ``top_k``, ``do_sample``, ``response_length``). Greedy decoding
is ``do_sample=False`` or ``temperature == 0``.

``rollout_log_probs`` are log-probs of the sampled token under the distribution it was drawn from:
``log_softmax(filter(logits / T))`` where filter is top-k then top-p (the ``processed_logprobs`` of
vLLM). With top-k and top-p off they equal the actor's ``compute_log_prob`` at the same temperature.
Greedy decoding reports them at temperature 1 without filtering.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from relift.protocol import DataProto

__all__ = ["GEN_KEYS", "BaseRollout", "RolloutConfig", "SamplingSettings", "build_rollout_output",
           "resolve_token_ids", "response_mask_from_eos"]

logger = logging.getLogger(__name__)

# the prompt columns a rollout reads (left-padded prompt ids, their mask and positions)
GEN_KEYS = ("input_ids", "attention_mask", "position_ids")


@dataclasses.dataclass
class SamplingSettings:
    """The sampling of one ``generate_sequences`` call."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1          # <= 0: off
    do_sample: bool = True
    response_length: int = 512
    calculate_log_probs: bool = False

    @property
    def greedy(self) -> bool:
        return (not self.do_sample) or self.temperature == 0

    def validate(self) -> SamplingSettings:
        if self.n < 1:
            raise ValueError(f"rollout n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"rollout temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"rollout top_p must be in (0, 1], got {self.top_p}")
        if self.response_length < 1:
            raise ValueError(f"rollout response_length must be >= 1, got {self.response_length}")
        return self


@dataclasses.dataclass
class RolloutConfig:
    """Rollout keys (verl's names) shared by the engines; engine-specific keys stay in ``extra``."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    do_sample: bool = True
    prompt_length: int | None = None
    response_length: int = 512
    calculate_log_probs: bool = False
    micro_batch_size: int | None = None   # prompts per generate call (HF engine); None: all at once
    seed: int = 0
    val_kwargs: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"n": 1, "temperature": 0.0, "top_p": 1.0, "top_k": -1, "do_sample": False})
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_any(cls, config: Any) -> RolloutConfig:
        if isinstance(config, RolloutConfig):
            return config
        raw: dict[str, Any] = {}
        if config is not None:
            try:
                from omegaconf import DictConfig, OmegaConf
                if isinstance(config, DictConfig):
                    config = OmegaConf.to_container(config, resolve=True)
            except ImportError:  # pragma: no cover
                pass
            if not isinstance(config, Mapping):
                raise TypeError(f"rollout config must be a dict or DictConfig, got {type(config).__name__}")
            raw = dict(config)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in raw.items() if k in names and v is not None}
        cfg = cls(**known)
        if "val_kwargs" in known:
            cfg.val_kwargs = {**cls().val_kwargs, **dict(known["val_kwargs"])}
        cfg.extra = {k: v for k, v in raw.items() if k not in names}
        return cfg

    def settings(self, meta_info: Mapping[str, Any] | None = None) -> SamplingSettings:
        """Sampling for one call: config, then ``val_kwargs`` when validating, then meta_info keys."""
        meta = dict(meta_info or {})
        values: dict[str, Any] = {"n": self.n, "temperature": self.temperature, "top_p": self.top_p,
                                  "top_k": self.top_k, "do_sample": self.do_sample,
                                  "response_length": self.response_length,
                                  "calculate_log_probs": self.calculate_log_probs}
        if meta.get("validate"):
            values.update({k: v for k, v in self.val_kwargs.items() if k in values and v is not None})
        values.update({k: meta[k] for k in values if meta.get(k) is not None})
        values["n"] = int(values["n"])
        values["top_k"] = int(values["top_k"])
        values["temperature"] = float(values["temperature"])
        values["top_p"] = float(values["top_p"])
        values["response_length"] = int(values["response_length"])
        return SamplingSettings(**values).validate()


def resolve_token_ids(meta_info: Mapping[str, Any], eos_token_id: int | Sequence[int] | None,
                      pad_token_id: int | None) -> tuple[list[int], int]:
    """EOS ids (a list) and the pad id: meta_info first, then the engine's own values."""
    eos = meta_info.get("eos_token_id", eos_token_id)
    pad = meta_info.get("pad_token_id", pad_token_id)
    if eos is None:
        raise ValueError("no eos_token_id: pass it to the rollout engine or in meta_info['eos_token_id']")
    eos_list = [int(e) for e in (eos if isinstance(eos, (list, tuple, np.ndarray, torch.Tensor)) else [eos])]
    if pad is None:
        pad = eos_list[0]
        logger.warning("no pad_token_id given; padding responses with eos id %d", pad)
    return eos_list, int(pad)


def response_mask_from_eos(responses: torch.Tensor, eos_token_ids: Sequence[int],
                           lengths: torch.Tensor | None = None) -> torch.Tensor:
    """1 on each row up to and including its first EOS (or its length), 0 after; int64 [B, R]."""
    is_eos = torch.isin(responses, torch.as_tensor(list(eos_token_ids), device=responses.device))
    # positions strictly after the first EOS: a cumulative count of EOS seen before this position
    after_eos = (is_eos.long().cumsum(dim=-1) - is_eos.long()) > 0
    mask = ~after_eos
    if lengths is not None:
        cols = torch.arange(responses.shape[1], device=responses.device)
        mask &= cols.unsqueeze(0) < lengths.to(responses.device).unsqueeze(1)
    return mask.long()


def build_rollout_output(prompts: DataProto, responses: Sequence[Sequence[int]] | torch.Tensor,
                         settings: SamplingSettings, eos_token_ids: Sequence[int], pad_token_id: int,
                         log_probs: Sequence[Sequence[float]] | torch.Tensor | None = None,
                         lengths: torch.Tensor | None = None) -> DataProto:
    """Assemble the rollout DataProto from generated token ids (rows already n-interleaved).

    ``responses``: a [B*n, r] tensor or a list of token-id lists (any lengths); everything after the
    first EOS and past ``settings.response_length`` is cut and replaced by ``pad_token_id``.
    """
    n = settings.n
    rows = len(prompts) * n
    resp_len = settings.response_length
    idx = torch.arange(len(prompts)).repeat_interleave(n)
    prompt_ids = prompts.batch["input_ids"][idx]
    device = prompt_ids.device
    if isinstance(responses, torch.Tensor):
        resp = responses[:, :resp_len].to(device=device, dtype=torch.long)
        if resp.shape[1] < resp_len:
            resp = torch.nn.functional.pad(resp, (0, resp_len - resp.shape[1]), value=pad_token_id)
        if lengths is None:
            lengths = torch.full((rows,), resp.shape[1], dtype=torch.long)
    else:
        if len(responses) != rows:
            raise ValueError(f"expected {rows} responses ({len(prompts)} prompts x n={n}), got {len(responses)}")
        resp = torch.full((rows, resp_len), pad_token_id, dtype=torch.long, device=device)
        lens = []
        for i, ids in enumerate(responses):
            ids = list(ids)[:resp_len]
            lens.append(len(ids))
            if ids:
                resp[i, :len(ids)] = torch.as_tensor(ids, dtype=torch.long, device=device)
        lengths = torch.as_tensor(lens, dtype=torch.long)
    if resp.shape[0] != rows:
        raise ValueError(f"expected {rows} responses ({len(prompts)} prompts x n={n}), got {resp.shape[0]}")
    response_mask = response_mask_from_eos(resp, eos_token_ids, lengths)
    resp = torch.where(response_mask.bool(), resp, torch.full_like(resp, pad_token_id))

    prompt_mask = prompts.batch["attention_mask"][idx].to(device)
    prompt_pos = prompts.batch["position_ids"][idx].to(device)
    delta = torch.arange(1, resp_len + 1, device=device).unsqueeze(0)
    response_pos = prompt_pos[..., -1:] + delta
    tensors: dict[str, torch.Tensor] = {
        "prompts": prompt_ids,
        "responses": resp,
        "input_ids": torch.cat([prompt_ids, resp], dim=-1),
        "attention_mask": torch.cat([prompt_mask, response_mask.to(prompt_mask.dtype)], dim=-1),
        "position_ids": torch.cat([prompt_pos, response_pos], dim=-1),
        "response_mask": response_mask,
    }
    if log_probs is not None:
        if isinstance(log_probs, torch.Tensor):
            lp = log_probs[:, :resp_len].to(device=device, dtype=torch.float32)
            if lp.shape[1] < resp_len:
                lp = torch.nn.functional.pad(lp, (0, resp_len - lp.shape[1]))
        else:
            lp = torch.zeros(rows, resp_len, dtype=torch.float32, device=device)
            for i, vals in enumerate(log_probs):
                vals = list(vals)[:resp_len]
                if vals:
                    lp[i, :len(vals)] = torch.as_tensor(vals, dtype=torch.float32, device=device)
        tensors["rollout_log_probs"] = lp * response_mask.to(lp.dtype)
    non_tensors = {k: v[idx.numpy()] for k, v in prompts.non_tensor_batch.items()}
    return DataProto.from_dict(tensors, non_tensors, meta_info=dict(prompts.meta_info))


class BaseRollout(abc.ABC):
    """A generation engine: ``generate_sequences`` plus a bulk weight update and memory control."""

    @abc.abstractmethod
    def generate_sequences(self, prompts: DataProto) -> DataProto:
        """Sample responses for left-padded prompts; see the module docstring for the output."""

    @abc.abstractmethod
    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a FULL (unsharded) state dict of the actor in one call (HF parameter names)."""

    def update_weights_bucketed(self, buckets: Iterable[Sequence[tuple[str, torch.Tensor]]]) -> None:
        """Load the actor's weights streamed as buckets of (HF name, full tensor) pairs.

        Engines that can load part of the model at a time override this so no rank ever holds the
        whole state dict (:mod:`workers.weight_sync`); this fallback collects the buckets into one
        dict and calls :meth:`update_weights`.
        """
        state: dict[str, torch.Tensor] = {}
        for bucket in buckets:
            state.update(bucket)
        self.update_weights(state)

    def reseed(self, seed: int) -> bool:
        """Make the next calls' sampling a function of ``seed`` alone; False when the engine cannot.

        The RL trainer reseeds before every step from (``trainer.seed``, step), so a resumed run
        samples what the uninterrupted one did (the engine's own RNG is not in any checkpoint).
        """
        return False

    def sleep(self) -> None:
        """Free accelerator memory between rollouts (no-op unless the engine supports it)."""

    def wake_up(self, tags: Sequence[str] | None = None) -> None:
        """Re-acquire what :meth:`sleep` released (``tags``: e.g. ``["weights"]``, ``["kv_cache"]``)."""

    @staticmethod
    def check_prompts(prompts: DataProto) -> None:
        have = set(prompts.batch.keys()) if prompts.batch is not None else set()
        missing = [k for k in ("input_ids", "attention_mask", "position_ids") if k not in have]
        if missing:
            raise KeyError(f"generate_sequences needs prompt key(s) {missing}; the DataProto has {sorted(have)}")
