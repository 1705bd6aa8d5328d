"""Rollout with a transformers causal LM: batched sampling with a KV cache, on CPU or GPU.

The decoding loop is our own (not ``model.generate``) so that each step's log-prob of the sampled
token is taken from exactly the distribution the token was drawn from, without keeping a
[steps, batch, vocab] tensor of scores: one prefill over the left-padded prompts, then one token per
step for the whole batch through ``past_key_values``, stopping when every row has produced an EOS
or ``response_length`` tokens. Rows that finished leave the decode batch (and the cache) once they
are an eighth of it; until then they are fed padding and their outputs discarded. Prompts are split
into ``micro_batch_size`` chunks when set.

Weights (``update_weights``): the engine either SHARES the actor's module (``shares_module=True``,
the colocated default: the rollout sees every optimiser step with no copy at all, and
``update_weights`` is a no-op) or owns a separate copy (e.g. an unsharded inference replica beside
an FSDP-sharded actor, or a bf16 copy of an fp32 actor), in which case ``update_weights`` takes the
actor's FULL state dict and loads it in one ``load_state_dict`` call. Generating through an
FSDP2-sharded module works but all-gathers every layer at every decoding step; prefer a replica
updated once per step for anything but tiny models.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from relift.protocol import DataProto
from workers.lean_forward import LeanLlamaPasses, lean_forward_applies
from workers.rollout.base import BaseRollout, RolloutConfig, SamplingSettings, build_rollout_output, resolve_token_ids
from workers.rollout.static_decode import StaticDecoder, supports_static_decode

__all__ = ["HFRollout", "draw_from", "filter_logits", "sample_next_token"]

logger = logging.getLogger(__name__)

# finished rows leave the decode batch once they are at least 1/PRUNE_FRACTION of it
PRUNE_FRACTION = 8


def _accepts_kwarg(module: nn.Module, name: str) -> bool:
    """Whether ``module.forward`` takes ``name`` (directly or through ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def filter_logits(logits: torch.Tensor, top_k: int = -1, top_p: float = 1.0) -> torch.Tensor:
    """Top-k then top-p (nucleus) filtering of [B, V] logits: removed entries become -inf.

    Top-p keeps the smallest set of highest-probability tokens whose mass reaches ``top_p`` (always
    at least one token).
    """
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # probability mass of strictly better tokens
        drop_sorted = mass_before >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next_token(logits: torch.Tensor, settings: SamplingSettings,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row from [B, V] logits; returns (token ids [B], their log-probs [B]).

    Greedy: argmax, log-prob at temperature 1. Sampling: ``softmax(filter(logits / T))``, and the
    log-prob is taken from that same distribution.
    """
    logits = logits.float()
    if settings.greedy:
        tokens = logits.argmax(dim=-1)
        logp = torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        return tokens, logp
    z = logits if settings.temperature == 1.0 else logits / settings.temperature
    z = filter_logits(z, settings.top_k, settings.top_p)
    logprobs = torch.log_softmax(z, dim=-1)
    tokens = draw_from(logprobs.exp(), generator)
    return tokens, logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def draw_from(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row of [B, V] probabilities, by inverting the cumulative sum with one uniform draw.

    Why not ``torch.multinomial``: on CPU it draws V exponentials per row (it samples without
    replacement), 17-21x slower at 256 x 263 and 3-5x at 32 x 151936 (docs/performance.md). The sum runs
    in float64 so a 150k-token vocabulary adds no visible rounding; a token of probability 0 is never
    drawn (its cumulative value equals its predecessor's, and the draw stays below the total).
    """
    cdf = probs.double().cumsum(dim=-1)
    total = cdf[:, -1:]
    if not bool(total.min() > 0):  # NaN or zero rows (as torch.multinomial refuses them); one check per step
        bad = int((~(total > 0)).nonzero()[0, 0])
        raise ValueError(f"cannot sample: row {bad} of the next-token probabilities sums to {float(total[bad])} "
                         "(NaN or inf logits?)")
    u = torch.rand(total.shape, generator=generator, dtype=cdf.dtype, device=cdf.device) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # rand * total may round up to total
    return torch.searchsorted(cdf, u, right=True).squeeze(-1)


def _lengths(tokens: torch.Tensor, eos: torch.Tensor) -> torch.Tensor:
    """Response length per row of the decoded ``tokens`` [rows, steps]: up to and including its first
    EOS, else every step (counted once at the end rather than per step: fewer ops in the loop)."""
    if tokens.shape[1] == 0:
        return torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
    is_eos = torch.isin(tokens, eos)
    first = is_eos.int().argmax(dim=-1)
    return torch.where(is_eos.any(dim=-1), first + 1, torch.full_like(first, tokens.shape[1]))


class HFRollout(BaseRollout):
    """Batched, KV-cached sampling with a transformers causal LM.

    Args:
        module: the causal LM (the actor's own module when ``shares_module``).
        config: rollout config (dict / DictConfig / :class:`RolloutConfig`).
        eos_token_id: one id or a list (the tokenizer's eos plus the generation config's extra
            ones); ``meta_info['eos_token_id']`` overrides it per call.
        pad_token_id: the id that pads responses; ``meta_info['pad_token_id']`` overrides it.
        shares_module: True when ``module`` IS the actor's module (then ``update_weights`` is a
            no-op); False when this engine owns a copy that ``update_weights`` overwrites.
    """

    def __init__(self, module: nn.Module, config: Any = None, *, eos_token_id: int | Sequence[int] | None = None,
                 pad_token_id: int | None = None, shares_module: bool = True) -> None:
        self.module = module
        self.config = RolloutConfig.from_any(config)
        gen_cfg = getattr(module, "generation_config", None)
        if eos_token_id is None and gen_cfg is not None:
            eos_token_id = gen_cfg.eos_token_id
        if pad_token_id is None and gen_cfg is not None:
            pad_token_id = gen_cfg.pad_token_id
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.shares_module = shares_module
        # Llama-shaped models decode through a preallocated cache with plain tensor ops (fewer
        # dispatches per token on CPU; docs/performance.md); set False to force the HF forward at every step
        self.static_decode = supports_static_decode(module)
        # with it, the prefill too where the lean passes reproduce the module (not FSDP2-sharded, SDPA);
        # build_rollout_engine turns this off with model.lean_forward=false
        self.lean_prefill = self.static_decode and lean_forward_applies(module)
        self._prefill_kwargs = {"logits_to_keep": 1} if _accepts_kwarg(module, "logits_to_keep") else {}
        device = next(module.parameters()).device
        self.generator = torch.Generator(device=device if device.type != "meta" else "cpu")
        self.generator.manual_seed(int(self.config.seed))

    @property
    def _lean_generation(self) -> bool:
        """Prefill in the lean passes and decode by :class:`StaticDecoder`: the module's forward is never called."""
        return self.static_decode and self.lean_prefill

    def reseed(self, seed: int) -> bool:
        """Reset the sampling generator (every token draw of later calls depends on it)."""
        self.generator.manual_seed(int(seed))
        return True

    # ------------------------------------------------------------------------------ weights

    @torch.no_grad()
    def update_weights(self, state_dict: Mapping[str, torch.Tensor] | None) -> None:
        """Load the actor's full state dict in one call; a no-op when the module is shared.

        Tied weights (``lm_head.weight`` with tied embeddings) may be absent; any other missing or
        unexpected key raises. Sharded (DTensor) values are refused: gather them first (e.g.
        ``get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))``).
        """
        if self.shares_module or state_dict is None:
            return
        for name, value in state_dict.items():
            if type(value).__name__ == "DTensor":
                raise TypeError(f"update_weights needs a full (unsharded) state dict; {name!r} is a DTensor")
        self.update_weights_bucketed([list(state_dict.items())])

    @torch.no_grad()
    def update_weights_bucketed(self, buckets: Iterable[Sequence[tuple[str, torch.Tensor]]]) -> None:
        """Load streamed buckets one at a time (``load_state_dict(strict=False)`` per bucket); at the
        end every key of the module must have arrived (tied ``lm_head.weight`` may be absent)."""
        if self.shares_module:
            for _ in buckets:  # keep the collective gathers behind the buckets in step across ranks
                pass
            return
        expected = set(self.module.state_dict().keys())
        seen: set[str] = set()
        unexpected: list[str] = []
        for bucket in buckets:
            if any(type(value).__name__ == "DTensor" for _, value in bucket):
                raise TypeError("update_weights needs full (unsharded) tensors; got a DTensor")
            result = self.module.load_state_dict(dict(bucket), strict=False)
            unexpected.extend(result.unexpected_keys)
            seen.update(name for name, _ in bucket)
            del bucket  # free this bucket before the generator gathers the next one
        tie = getattr(getattr(self.module, "config", None), "tie_word_embeddings", False)
        tied = {"lm_head.weight"} if tie else set()
        missing = sorted(expected - seen - tied)
        if missing or unexpected:
            raise KeyError(f"state dict does not match the rollout model: missing {missing[:8]}, "
                           f"unexpected {unexpected[:8]}")

    # ------------------------------------------------------------------------------ generation

    @torch.inference_mode()  # no autograd bookkeeping per op: 6-9% off a tiny CPU decode (docs/performance.md)
    def _generate_chunk(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                        repeats: int, settings: SamplingSettings, eos_ids: list[int], pad_id: int
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode ``repeats`` samples of each prompt of one chunk; returns tokens, log-probs, lengths
        (rows: each prompt's samples side by side).

        The prefill runs each prompt once, without the left-padding columns every prompt shares, and
        its cache is repeated for the samples. Finished rows leave the decode batch (their cache rows
        too) once they are at least 1/:data:`PRUNE_FRACTION` of it, so a copy of the cache is paid
        only when it saves work; until then they are fed padding and their outputs are discarded."""
        filled = attention_mask.any(dim=0).nonzero()
        left = min(int(filled[0]), attention_mask.shape[1] - 1) if filled.numel() else 0
        input_ids, attention_mask, position_ids = input_ids[:, left:], attention_mask[:, left:], position_ids[:, left:]
        rows = input_ids.shape[0] * repeats
        device = input_ids.device
        eos = torch.as_tensor(eos_ids, device=device)
        tokens = torch.full((rows, settings.response_length), pad_id, dtype=torch.long, device=device)
        logps = torch.zeros(rows, settings.response_length, dtype=torch.float32, device=device)
        active = torch.arange(rows, device=device)          # chunk rows still in the decode batch
        finished = torch.zeros(rows, dtype=torch.bool, device=device)   # per decode-batch row
        mask = attention_mask.repeat_interleave(repeats, dim=0)
        pos = position_ids[:, -1].repeat_interleave(repeats)
        fast = cache = None
        if self._lean_generation:  # the prompts in plain tensor ops (workers/lean_forward.py)
            last, prefill = LeanLlamaPasses(self.module).prompt(input_ids, attention_mask, position_ids)
            logits = last[:, -1, :].repeat_interleave(repeats, dim=0)
        else:
            out = self.module(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              use_cache=True, **self._prefill_kwargs)
            cache = out.past_key_values
            logits = out.logits[:, -1, :].repeat_interleave(repeats, dim=0)
            prefill = [(layer.keys, layer.values) for layer in cache.layers] if hasattr(cache, "layers") else None
        if self.static_decode and settings.response_length > 1 and prefill is not None:
            fast = StaticDecoder(self.module, input_ids.shape[1] + settings.response_length)
            fast.start(prefill, mask, repeats)
            cache = out = prefill = None  # the prefill's cache is not needed any more: free it
        elif repeats > 1 and settings.response_length > 1:
            if hasattr(cache, "batch_repeat_interleave"):
                cache.batch_repeat_interleave(repeats)
            else:  # a cache that cannot repeat its rows: prefill every sample's row instead
                out = self.module(input_ids=input_ids.repeat_interleave(repeats, dim=0), attention_mask=mask,
                                  position_ids=position_ids.repeat_interleave(repeats, dim=0), use_cache=True,
                                  **self._prefill_kwargs)
                cache = out.past_key_values
        can_prune = fast is not None or hasattr(cache, "batch_select_indices")
        gen = self.generator if self.generator.device == device else None
        steps = 0
        for step in range(settings.response_length):
            next_tok, next_lp = sample_next_token(logits, settings, gen)
            tokens[active, step] = next_tok.masked_fill_(finished, pad_id)
            logps[active, step] = next_lp.masked_fill_(finished, 0.0)
            finished |= torch.isin(next_tok, eos)
            steps = step + 1
            n_done = int(finished.sum())
            if n_done == finished.numel() or steps == settings.response_length:
                break
            if can_prune and n_done and n_done * PRUNE_FRACTION >= finished.numel():
                keep = (~finished).nonzero().squeeze(-1)
                if fast is not None:
                    fast.keep(keep)
                else:
                    cache.batch_select_indices(keep)
                mask, pos, next_tok, active = mask[keep], pos[keep], next_tok[keep], active[keep]
                finished = finished[keep]
            pos = pos + 1
            if fast is not None:
                logits = fast.step(next_tok, pos)
                continue
            mask = torch.cat([mask, torch.ones(mask.shape[0], 1, dtype=mask.dtype, device=device)], dim=-1)
            out = self.module(input_ids=next_tok.unsqueeze(-1), attention_mask=mask, position_ids=pos.unsqueeze(-1),
                              past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits = out.logits[:, -1, :]
        return tokens, logps, _lengths(tokens[:, :steps], eos)

    def generate_sequences(self, prompts: DataProto) -> DataProto:
        """Sample ``n`` responses per prompt (greedy when validating with default ``val_kwargs``)."""
        self.check_prompts(prompts)
        settings = self.config.settings(prompts.meta_info)
        eos_ids, pad_id = resolve_token_ids(prompts.meta_info, self.eos_token_id, self.pad_token_id)
        device = next(self.module.parameters()).device
        input_ids = prompts.batch["input_ids"].to(device)
        attention_mask = prompts.batch["attention_mask"].to(device)
        position_ids = prompts.batch["position_ids"].to(device)
        chunk = max(self.config.micro_batch_size or len(prompts), 1)  # prompts per chunk
        # only the module's own forward depends on its train/eval mode (setting it walks every submodule
        # twice: ~0.2 ms per call, tiny model), and the lean generation never calls it
        set_eval = not self._lean_generation
        was_training = self.module.training
        if set_eval:
            self.module.eval()
        try:
            parts = [self._generate_chunk(input_ids[s:s + chunk], attention_mask[s:s + chunk],
                                          position_ids[s:s + chunk], settings.n, settings, eos_ids, pad_id)
                     for s in range(0, input_ids.shape[0], chunk)]
        finally:
            if set_eval:
                self.module.train(was_training)
        # torch.cat outside inference mode makes normal tensors: the update's backward may save them
        tokens = torch.cat([p[0] for p in parts]).cpu()
        logps = torch.cat([p[1] for p in parts]).cpu()
        lengths = torch.cat([p[2] for p in parts]).cpu()
        out = build_rollout_output(prompts, tokens, settings, eos_ids, pad_id,
                                   log_probs=logps if settings.calculate_log_probs else None, lengths=lengths)
        out.meta_info.setdefault("temperature", 0.0 if settings.greedy else settings.temperature)
        return out
