"""The actor's forward passes for Llama-shaped models in plain tensor ops (``model.lean_forward``).

Why: on a laptop CPU with the small models people debug with (the tiny bench job: hidden 128 x 4
layers), the update's forward is dispatch-bound. transformers' forward adds module calls, keyword
plumbing, output recording, a mask builder and a six-op rotary embedding per layer around the same
matrix products. This runs the same arithmetic on the module's own parameters:

- the tokens of a pass packed as one [tokens, hidden] matrix through the projections (``F.linear``),
  norms and MLP, split by rows only for attention (``scaled_dot_product_attention`` with the boolean
  mask transformers builds, or ``is_causal`` where it would pass no mask). With prompt sharing the
  distinct prompts and their responses are one pass: the responses' attention reads the prompts'
  keys/values of the same layer, so transformers' two passes (prompts, then responses on a cache)
  become one, with about half the tensor ops;
- float32 RMSNorm with a hand-written backward (:func:`relift.models.llama_ops.rms_norm`);
- the rotary embedding as a roll and a multiply-add, with cos/sin from the model's own rotary module.

Log-probs and gradients match transformers' to float rounding (``tests/test_lean_forward.py``).

Taken only where that holds and nothing needs the module's own ``forward``:

- a Qwen2/Llama block (:func:`relift.models.llama_ops.is_llama_shaped`) with SDPA attention and no
  attention dropout;
- plain ``nn.Linear`` projections and transformers' own norm and MLP modules (not LoRA, not
  ``lean_activations``);
- no gradient checkpointing;
- parameters that are not FSDP2-sharded (one rank, no mixed precision: FSDP2 gathers parameters in
  hooks on the modules' ``forward``, which this does not call).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from relift.models.llama_ops import decoder_layers, is_llama_shaped, rms_norm, rotate, signed_sin

__all__ = ["LeanLlamaPasses", "is_checkpointing", "lean_forward_applies"]

KV = tuple[torch.Tensor, torch.Tensor]


def _is_transformers_module(m: nn.Module) -> bool:
    return type(m).__module__.startswith("transformers.")


def is_checkpointing(module: nn.Module) -> bool:
    """Whether transformers' activation (gradient) checkpointing is on for ``module``."""
    name = "is_activation_checkpointing"  # transformers >= 5 (is_gradient_checkpointing before)
    return bool(getattr(module, name if hasattr(type(module), name) else "is_gradient_checkpointing", False))


def lean_forward_applies(module: nn.Module) -> bool:
    """Whether :class:`LeanLlamaPasses` computes what ``module``'s own forward does (see the module doc)."""
    if not is_llama_shaped(module) or getattr(module.config, "_attn_implementation", None) != "sdpa":
        return False
    if float(getattr(module.config, "attention_dropout", 0.0) or 0.0) > 0:  # transformers drops weights in training
        return False
    if is_checkpointing(module):
        return False
    if any(type(p).__name__ == "DTensor" for p in module.parameters()):
        return False
    if any(type(m).__name__.startswith("FSDP") for m in module.modules()):
        return False
    for lay in decoder_layers(module):
        a = lay.self_attn
        if any(type(p) is not nn.Linear for p in (a.q_proj, a.k_proj, a.v_proj, a.o_proj, lay.mlp.gate_proj,
                                                   lay.mlp.up_proj, lay.mlp.down_proj)):
            return False
        if not all(_is_transformers_module(m) for m in (lay.input_layernorm, lay.post_attention_layernorm, lay.mlp)):
            return False
    return type(module.lm_head) is nn.Linear and _is_transformers_module(module.model.norm)


@dataclass(frozen=True)
class _Block:
    """One decoder block's modules, looked up once per call."""

    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    ln1: nn.Module
    ln2: nn.Module
    gate: nn.Linear
    up: nn.Linear
    down: nn.Linear


@dataclass(frozen=True)
class _Segment:
    """``rows`` x ``width`` tokens of a packed pass, starting at token ``offset``. They attend among
    themselves under ``mask`` (4-D bool; None: causal, no padding) and, when ``prefix_rows`` is set, after
    the keys/values of those rows of the first segment (the prompts whose responses these are)."""

    offset: int
    rows: int
    width: int
    mask: torch.Tensor | None
    prefix_rows: torch.Tensor | None = None

    @property
    def tokens(self) -> slice:
        return slice(self.offset, self.offset + self.rows * self.width)


class LeanLlamaPasses:
    """The actor's forward passes: the shared-prompt pass of :func:`workers.prompt_sharing.shared_prompt_logits`
    (:meth:`shared`: the distinct prompts and the responses in one pass), the prompts alone with their
    keys/values (:meth:`prompt`, the rollout's prefill) and the plain pass over whole rows (:meth:`full`).

    Every pass runs its tokens packed as one [tokens, hidden] matrix through the projections, norms and
    MLP, and splits them only for attention, per segment of rows of one width. For the shared pass that
    is one pass where transformers' forward takes two (the prompts, then the responses on their cache):
    about half the tensor ops, ~10% less time per tiny-job update (docs/performance.md, round 12).
    """

    def __init__(self, module: nn.Module) -> None:
        cfg = module.config
        self.module = module
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.groups = self.heads // self.kv_heads
        layers = decoder_layers(module)
        self.blocks = [
            _Block(a.q_proj, a.k_proj, a.v_proj, a.o_proj, lay.input_layernorm, lay.post_attention_layernorm,
                   lay.mlp.gate_proj, lay.mlp.up_proj, lay.mlp.down_proj)
            for lay in layers
            for a in (lay.self_attn,)
        ]
        self.scaling = float(layers[0].self_attn.scaling)
        self.eps = float(layers[0].input_layernorm.variance_epsilon)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head on hidden states [..., H] -> logits [..., V]."""
        norm, head = self.module.model.norm, self.module.lm_head
        return F.linear(rms_norm(hidden, norm.weight, float(norm.variance_epsilon)), head.weight, head.bias)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """SDPA as transformers calls it: key/value heads repeated when a mask is given, native GQA
        with ``is_causal`` when none is."""
        if mask is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=q.shape[2] > 1, scale=self.scaling,
                                                  enable_gqa=self.groups > 1)
        if self.groups > 1:
            k, v = k.repeat_interleave(self.groups, dim=1), v.repeat_interleave(self.groups, dim=1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling)

    def _layers(self, ids: torch.Tensor, positions: torch.Tensor, segments: list[_Segment], keep_kv: bool = False
                ) -> tuple[torch.Tensor, list[KV]]:
        """Packed token ids and positions ([T]) -> hidden states [T, H] after the last block, and (with
        ``keep_kv``) each block's rotated keys and values of the first segment ([rows, kv_heads, width, d])."""
        x = self.module.model.embed_tokens(ids)  # the module: its padding_idx gets no gradient
        cos, sin = self.module.model.rotary_emb(x[None], positions[None])  # [1, T, d], the model's own rope
        cos, sin = cos[0].unsqueeze(1), signed_sin(sin[0]).unsqueeze(1)
        kept: list[KV] = []
        d = self.head_dim
        for blk in self.blocks:
            h = rms_norm(x, blk.ln1.weight, self.eps)
            q = F.linear(h, blk.q.weight, blk.q.bias).view(-1, self.heads, d)
            k = F.linear(h, blk.k.weight, blk.k.bias).view(-1, self.kv_heads, d)
            v = F.linear(h, blk.v.weight, blk.v.bias).view(-1, self.kv_heads, d)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            outs, first = [], None
            for seg in segments:
                qs, ks, vs = (t[seg.tokens].view(seg.rows, seg.width, -1, d).transpose(1, 2) for t in (q, k, v))
                if first is None:
                    first = (ks, vs)
                if seg.prefix_rows is not None:
                    ks = torch.cat([first[0].index_select(0, seg.prefix_rows), ks], dim=2)
                    vs = torch.cat([first[1].index_select(0, seg.prefix_rows), vs], dim=2)
                outs.append(self._attend(qs, ks, vs, seg.mask).transpose(1, 2).reshape(seg.rows * seg.width, -1))
            if keep_kv:
                kept.append(first)
            x = x + F.linear(outs[0] if len(outs) == 1 else torch.cat(outs), blk.o.weight, blk.o.bias)
            h = rms_norm(x, blk.ln2.weight, self.eps)
            gated = F.silu(F.linear(h, blk.gate.weight, blk.gate.bias)) * F.linear(h, blk.up.weight, blk.up.bias)
            x = x + F.linear(gated, blk.down.weight, blk.down.bias)
        return x, kept

    @staticmethod
    def _causal_mask(attention_mask: torch.Tensor) -> torch.Tensor | None:
        """transformers' SDPA mask for a pass from position 0: causal and not padding; None (``is_causal``)
        when no position is padding."""
        keys = attention_mask.bool()
        if bool(keys.all()):
            return None
        width = keys.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=keys.device).tril()
        return causal[None, None] & keys[:, None, None, :]

    @staticmethod
    def _after_prompt_mask(attention_mask: torch.Tensor, width: int) -> torch.Tensor:
        """Mask of ``width`` response tokens over prompt + response keys (``attention_mask`` [r, P + width]):
        every prompt key that is not padding, and the response keys up to the query's own position."""
        total = attention_mask.shape[1]
        prompt_len = total - width
        q_index = torch.arange(width, device=attention_mask.device)[:, None] + prompt_len
        causal = torch.arange(total, device=attention_mask.device)[None, :] <= q_index
        return causal[None, None] & attention_mask.bool()[:, None, None, :]

    def _one_segment(self, ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor,
                     keep_kv: bool) -> tuple[torch.Tensor, list[KV]]:
        rows, width = ids.shape
        seg = _Segment(0, rows, width, self._causal_mask(attention_mask))
        x, kv = self._layers(ids.reshape(-1), positions.reshape(-1), [seg], keep_kv)
        return x.view(rows, width, -1), kv

    def prompt(self, ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
               ) -> tuple[torch.Tensor, list[KV]]:
        """Left-padded prompts [c, P] -> (logits of the last position [c, 1, V], per-block keys/values)."""
        x, kv = self._one_segment(ids, attention_mask, positions, keep_kv=True)
        return self.logits(x[:, -1:]), kv

    def full(self, ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor, keep: int
             ) -> torch.Tensor:
        """One pass over whole rows [b, T] (padding on either side) -> logits of the last ``keep``
        positions [b, keep, V] (``logits_to_keep``)."""
        x, _ = self._one_segment(ids, attention_mask, positions, keep_kv=False)
        return self.logits(x[:, -keep:])

    def shared(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, prompt_positions: torch.Tensor,
               groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
               ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Distinct left-padded prompts [c, P] and groups of their responses, in one pass.

        Each group is ``(prompt_rows, ids [r, w], attention_mask [r, P + w], positions [r, w])``: response
        row ``i`` continues prompt ``prompt_rows[i]``. Returns the hidden states of the prompts' last
        position [c, H] and each group's [r, w, H] (the caller applies :meth:`logits` to what it needs)."""
        count, width = prompt_ids.shape
        segments = [_Segment(0, count, width, self._causal_mask(prompt_mask))]
        ids, positions = [prompt_ids.reshape(-1)], [prompt_positions.reshape(-1)]
        offset = count * width
        for prompt_rows, r_ids, r_mask, r_pos in groups:
            rows, w = r_ids.shape
            segments.append(_Segment(offset, rows, w, self._after_prompt_mask(r_mask, w), prompt_rows))
            ids.append(r_ids.reshape(-1))
            positions.append(r_pos.reshape(-1))
            offset += rows * w
        x, _ = self._layers(torch.cat(ids), torch.cat(positions), segments)
        last = x[: count * width].view(count, width, -1)[:, -1]
        return last, [x[seg.tokens].view(seg.rows, seg.width, -1) for seg in segments[1:]]
