"""A lean decode step for Llama-shaped causal LMs (Qwen2 / Qwen2.5, Llama) over a preallocated KV cache.

Why: on CPU with small models the HF forward is dispatch-bound, not compute-bound (issue 18: a
decode step of a hidden-128 model cost ~6 ms, as much for 1 row as for 32). Each HF decode step
rebuilds a 4-D mask, grows every layer's cache by ``torch.cat`` and goes through dozens of module
calls. This module runs the same arithmetic on the SAME parameter tensors (no copy, so optimiser
steps are seen at once) with a cache allocated once per chunk: per layer one write into the cache,
one attention over the filled prefix, and the projections as ``mm`` (+ bias) or ``addmm`` into the
residual on the weights, all looked up once per chunk. On CPU the attention is two
matmuls around a softmax with an additive padding bias (25-47% less time per call there than
``scaled_dot_product_attention`` with a boolean mask for one query row: bench/bench_decode.py,
256 rows); elsewhere it is ``scaled_dot_product_attention``.

The prefill is one pass (compute-bound) through the lean passes (``workers/lean_forward.py``) where
they apply, else through the HF module; its per-layer keys/values are copied into the static cache,
each prompt's rows repeated for its samples when the prefill ran each prompt once.
Only models whose layers are exactly the Llama block are taken (:func:`supports_static_decode`);
anything else (sliding windows, q/k norms, other architectures) keeps the HF loop.
``tests/test_static_decode.py`` checks logits and sampled tokens against the HF forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from relift.models.llama_ops import decoder_layers as _layers
from relift.models.llama_ops import is_llama_shaped
from relift.models.llama_ops import rms_norm as _rms
from relift.models.llama_ops import rotate as _rotate
from relift.models.llama_ops import signed_sin as _signed_sin

__all__ = ["StaticDecoder", "supports_static_decode"]


def supports_static_decode(module: nn.Module) -> bool:
    """Whether ``module`` is a Llama-shaped causal LM this decoder reproduces exactly."""
    return is_llama_shaped(module)


@dataclass(frozen=True)
class _Layer:
    """One block's parameter tensors, read once per chunk (the module's own tensors, so optimiser steps
    are seen): looking each up through ``nn.Module.__getattr__`` at every step cost ~10% of a tiny step.
    Projection weights are held transposed (a view) for ``addmm``/``mm``, as ``F.linear`` calls them."""

    q: tuple[torch.Tensor, torch.Tensor | None]
    k: tuple[torch.Tensor, torch.Tensor | None]
    v: tuple[torch.Tensor, torch.Tensor | None]
    o: tuple[torch.Tensor, torch.Tensor | None]
    ln1: torch.Tensor
    ln2: torch.Tensor
    gate: tuple[torch.Tensor, torch.Tensor | None]
    up: tuple[torch.Tensor, torch.Tensor | None]
    down: tuple[torch.Tensor, torch.Tensor | None]


def _transposed(lin: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    return lin.weight.t(), lin.bias


# rope types whose cos/sin depend on the position alone (not on the sequence length seen so far)
_STATIC_ROPE = frozenset({"default", "linear", "llama3", "yarn"})


def _linear(h: torch.Tensor, proj: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
    """``F.linear`` on 2-D ``h`` with the weight already transposed. On CPU the bias is added in place
    after ``mm``: at the tiny job's [32, 128] x [128, 128], ``addmm`` with a broadcast bias row took
    11.4 us against 10.1 us (a whole generation sampled the same tokens). Elsewhere ``addmm`` fuses it."""
    weight_t, bias = proj
    if bias is None:
        return torch.mm(h, weight_t)
    if h.device.type == "cpu":
        return torch.mm(h, weight_t).add_(bias)
    return torch.addmm(bias, h, weight_t)


def _add_linear(x: torch.Tensor, h: torch.Tensor, proj: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
    """``x + linear(h)`` for 2-D ``x`` and ``h``; one ``addmm`` when the projection has no bias."""
    weight_t, bias = proj
    if bias is None:
        return torch.addmm(x, h, weight_t)
    return x + torch.addmm(bias, h, weight_t)


class StaticDecoder:
    """Decode steps for a fixed batch of rows with a cache of ``capacity`` positions.

    ``start(cache, prompt_mask)`` copies an HF prefill cache in; ``step(tokens, positions)`` feeds one
    token per row and returns the next logits [B, V]; ``keep(rows)`` drops finished rows.

    Per layer and token the step runs ~30 tensor ops (on CPU each costs a few microseconds of
    dispatch at these sizes, as much as its arithmetic): RMSNorm fused, rotary embedding by a roll
    and a multiply-add with cos/sin read from a table built once per chunk, attention as one
    ``baddbmm`` (scores, scale and padding bias together), a softmax and one ``bmm``, and the
    output and down projections added to the residual by ``addmm``.
    """

    def __init__(self, module: nn.Module, capacity: int) -> None:
        cfg = module.config
        self.module = module
        self.capacity = int(capacity)
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        blocks = _layers(module)
        self.layers = [
            _Layer(
                _transposed(a.q_proj),
                _transposed(a.k_proj),
                _transposed(a.v_proj),
                _transposed(a.o_proj),
                lay.input_layernorm.weight,
                lay.post_attention_layernorm.weight,
                _transposed(lay.mlp.gate_proj),
                _transposed(lay.mlp.up_proj),
                _transposed(lay.mlp.down_proj),
            )
            for lay in blocks
            for a in (lay.self_attn,)
        ]
        self.eps = float(blocks[0].input_layernorm.variance_epsilon)
        self.embed = module.model.embed_tokens.weight
        self.final_norm = module.model.norm.weight
        self.final_eps = float(module.model.norm.variance_epsilon)
        self.lm_head = _transposed(module.lm_head)
        self.scaling = float(blocks[0].self_attn.scaling)
        self.gqa = self.kv_heads != self.heads
        rope = getattr(module.model.rotary_emb, "rope_type", "default")
        self._rope_from_table = rope in _STATIC_ROPE
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None  # cos, signed sin [positions, d]
        self.kv: torch.Tensor | None = None  # [layers, 2, B, kv_heads, capacity, head_dim]
        self.mask: torch.Tensor | None = None  # [B, 1, 1, capacity] bool, True = attend (SDPA path)
        self.bias: torch.Tensor | None = None  # [B, kv_heads, 1, capacity] additive, 0 = attend (CPU path)
        self.length = 0

    def start(self, prefill: Sequence[tuple[torch.Tensor, torch.Tensor]], prompt_mask: torch.Tensor,
              repeats: int = 1) -> None:
        """Take the prefill's per-layer (keys, values) ([P, kv_heads, W, head_dim] each) and the padding mask
        of the decode rows ([P * repeats, W]): prefill row ``i`` serves decode rows
        ``i * repeats .. i * repeats + repeats - 1`` (a prompt run once for its ``repeats`` samples)."""
        if len(prefill) != len(self.layers):
            raise ValueError(f"the prefill has {len(prefill)} layers of keys/values, the model {len(self.layers)}")
        ref = prefill[0][0]
        prefill_rows, _, width, _ = ref.shape
        rows = prefill_rows * repeats
        if width > self.capacity:
            raise ValueError(f"prefill of {width} positions exceeds the cache capacity {self.capacity}")
        if prompt_mask.shape != (rows, width):
            raise ValueError(f"prompt mask of shape {tuple(prompt_mask.shape)} does not match {prefill_rows} "
                             f"prefill rows x {repeats} repeats and {width} positions")
        # uninitialised: attention reads only the filled positions 0..length-1, each written before
        self.kv = torch.empty(
            len(self.layers), 2, rows, self.kv_heads, self.capacity, self.head_dim, dtype=ref.dtype, device=ref.device
        )
        for i, (k, v) in enumerate(prefill):
            if repeats > 1:
                k, v = k.repeat_interleave(repeats, dim=0), v.repeat_interleave(repeats, dim=0)
            self.kv[i, 0, :, :, :width] = k
            self.kv[i, 1, :, :, :width] = v
        mask = torch.zeros(rows, 1, 1, self.capacity, dtype=torch.bool, device=ref.device)
        mask[:, 0, 0, :width] = prompt_mask.bool()
        # one of the two, the one its attention path reads (CPU: the additive bias, one row per key head)
        self.mask, self.bias = mask, None
        if ref.device.type == "cpu":
            bias = torch.zeros(rows, 1, 1, self.capacity, dtype=ref.dtype, device=ref.device)
            bias.masked_fill_(~mask, torch.finfo(ref.dtype).min)
            self.bias = bias.expand(rows, self.kv_heads, 1, self.capacity).contiguous()
            self.mask = None
        self.length = width
        self._rope = None
        self._bind_views()

    def _bind_views(self) -> None:
        """Each layer's keys and values as [B * kv_heads, capacity, head_dim] views of ``self.kv`` (and the
        CPU bias as [B * kv_heads, 1, capacity]), made once per start/keep: indexing ``self.kv`` by
        layer, side and position at every step cost ~10 view dispatches per layer."""
        assert self.kv is not None
        flat = self.kv.shape[2] * self.kv_heads
        self._keys = [self.kv[i, 0].view(flat, self.capacity, self.head_dim) for i in range(len(self.layers))]
        self._values = [self.kv[i, 1].view(flat, self.capacity, self.head_dim) for i in range(len(self.layers))]
        self._flat_bias = None if self.bias is None else self.bias.view(flat, 1, self.capacity)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (indices into the current batch) in the cache and mask; only the
        filled positions are copied."""
        assert self.kv is not None
        kept = self.kv.new_empty(self.kv.shape[:2] + (len(rows),) + self.kv.shape[3:])
        torch.index_select(self.kv[..., : self.length, :], 2, rows, out=kept[..., : self.length, :])
        self.kv = kept
        if self.mask is not None:
            self.mask = self.mask.index_select(0, rows)
        if self.bias is not None:
            self.bias = self.bias.index_select(0, rows)
        self._bind_views()

    def _rope_for(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin ([B, 1, d]) at ``positions``: rows of a table computed once by the
        model's own rotary module (per step for rope types that depend on the length seen)."""
        rotary = self.module.model.rotary_emb
        if not self._rope_from_table:
            cos, sin = rotary(x, positions.unsqueeze(-1))  # [B, 1, d]
            return cos, _signed_sin(sin)
        if self._rope is None:  # positions grow by one per step: cover every step left in the cache
            size = self.capacity + (int(positions.max()) + 1 if positions.numel() else 0)
            cos, sin = rotary(x, torch.arange(size, device=positions.device).unsqueeze(0))
            self._rope = cos[0], _signed_sin(sin[0])
        cos, signed_sin = self._rope
        return cos[positions].unsqueeze(1), signed_sin[positions].unsqueeze(1)

    def _attend(self, q: torch.Tensor, i: int, t: int) -> torch.Tensor:
        """Attention of one query per row ([B, heads, d]) over cache positions ``0..t`` of layer
        ``i``; returns [B, heads * d]."""
        rows = q.shape[0]
        if self.bias is None:
            assert self.kv is not None and self.mask is not None
            keys, values = self.kv[i, 0, :, :, : t + 1], self.kv[i, 1, :, :, : t + 1]
            out = F.scaled_dot_product_attention(q.unsqueeze(2), keys, values, attn_mask=self.mask[..., : t + 1],
                                                 scale=self.scaling, enable_gqa=self.gqa)
            return out.reshape(rows, -1)
        # the query heads sharing a key/value head become its rows: [B * kv_heads, heads / kv_heads, d]
        grouped = q.reshape(rows * self.kv_heads, self.heads // self.kv_heads, self.head_dim)
        values = self._values[i][:, : t + 1]
        assert self._flat_bias is not None
        scores = torch.baddbmm(self._flat_bias[..., : t + 1], grouped, self._keys[i][:, : t + 1].transpose(1, 2),
                               alpha=self.scaling)
        if scores.dtype == torch.float32:
            probs = torch.softmax(scores, dim=-1)
        else:
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(values.dtype)
        return torch.bmm(probs, values).view(rows, -1)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One token per row ([B] ids at [B] positions) -> next-token logits [B, V]."""
        assert self.kv is not None
        t = self.length
        if t >= self.capacity:
            raise ValueError(f"decode past the cache capacity {self.capacity}")
        x = F.embedding(tokens, self.embed)  # [B, H]
        cos, sin = self._rope_for(x, positions)
        if self.bias is not None:
            self.bias[:, :, 0, t] = 0
        else:
            assert self.mask is not None
            self.mask[:, 0, 0, t] = True
        rows, eps = tokens.shape[0], self.eps
        for i, lay in enumerate(self.layers):
            h = _rms(x, lay.ln1, eps)
            q = _linear(h, lay.q).view(rows, self.heads, self.head_dim)
            k = _linear(h, lay.k).view(rows, self.kv_heads, self.head_dim)
            self._keys[i][:, t] = _rotate(k, cos, sin).view(-1, self.head_dim)
            self._values[i][:, t] = _linear(h, lay.v).view(-1, self.head_dim)
            x = _add_linear(x, self._attend(_rotate(q, cos, sin), i, t), lay.o)
            h = _rms(x, lay.ln2, eps)
            gated = F.silu(_linear(h, lay.gate)).mul_(_linear(h, lay.up))
            x = _add_linear(x, gated, lay.down)
        self.length = t + 1
        return _linear(_rms(x, self.final_norm, self.final_eps), self.lm_head)
