"""The actor's prompt and response passes for Llama-shaped models in plain tensor ops (``model.lean_forward``).

Why: on a laptop CPU with the small models people debug with (the tiny bench job: hidden 128 x 4
layers), the update's forward is dispatch-bound. transformers' forward adds module calls, keyword
plumbing, output recording, a mask builder and a six-op rotary embedding per layer around the same
matrix products. This runs the same arithmetic on the module's own parameters:

- the projections through ``F.linear`` and attention through ``scaled_dot_product_attention``,
  with the boolean mask transformers builds (or ``is_causal`` where it would pass no mask);
- RMSNorm as ``F.rms_norm``;
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


class LeanLlamaPasses:
    """The actor's forward passes: the two of :func:`workers.prompt_sharing.shared_prompt_logits` (the
    distinct prompts, :meth:`prompt`, then the responses on their per-layer keys/values,
    :meth:`responses`) and the plain one over whole rows (:meth:`full`)."""

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

    def can_split(self) -> bool:
        """Response passes may run in several groups (each takes its own keys/values)."""
        return True

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
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

    def _layers(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
                past: list[KV] | None) -> tuple[torch.Tensor, list[KV]]:
        """Hidden states [b, t, H] after the last block, and each block's rotated keys and values of
        these ``t`` positions ([b, kv_heads, t, d]); ``past`` is prepended to each block's keys/values."""
        x = self.module.model.embed_tokens(ids)  # the module: its padding_idx gets no gradient
        cos, sin = self.module.model.rotary_emb(x, positions)  # [b, t, d], the model's own rope
        cos, sin = cos.unsqueeze(1), signed_sin(sin).unsqueeze(1)
        b, t, _ = x.shape
        new: list[KV] = []
        for i, blk in enumerate(self.blocks):
            h = rms_norm(x, blk.ln1.weight, self.eps)
            q = F.linear(h, blk.q.weight, blk.q.bias).view(b, t, self.heads, self.head_dim).transpose(1, 2)
            k = F.linear(h, blk.k.weight, blk.k.bias).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            v = F.linear(h, blk.v.weight, blk.v.bias).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            new.append((k, v))
            if past is not None:
                k, v = torch.cat([past[i][0], k], dim=2), torch.cat([past[i][1], v], dim=2)
            o = self._attend(q, k, v, mask).transpose(1, 2).reshape(b, t, -1)
            x = x + F.linear(o, blk.o.weight, blk.o.bias)
            h = rms_norm(x, blk.ln2.weight, self.eps)
            gated = F.silu(F.linear(h, blk.gate.weight, blk.gate.bias)) * F.linear(h, blk.up.weight, blk.up.bias)
            x = x + F.linear(gated, blk.down.weight, blk.down.bias)
        return x, new

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

    def prompt(self, ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
               ) -> tuple[torch.Tensor, list[KV]]:
        """Left-padded prompts [c, P] -> (logits of the last position [c, 1, V], per-block keys/values)."""
        x, kv = self._layers(ids, positions, self._causal_mask(attention_mask), None)
        return self._logits(x[:, -1:]), kv

    def full(self, ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor, keep: int
             ) -> torch.Tensor:
        """One pass over whole rows [b, T] (padding on either side) -> logits of the last ``keep``
        positions [b, keep, V] (``logits_to_keep``)."""
        x, _ = self._layers(ids, positions, self._causal_mask(attention_mask), None)
        return self._logits(x[:, -keep:])

    def responses(self, past: list[KV], ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
                  ) -> torch.Tensor:
        """Response tokens [r, w] on the prompts' keys/values ``past`` ([r, kv_heads, P, d] per block);
        ``attention_mask`` covers prompt and response ([r, P + w]). Returns logits [r, w, V]."""
        width, total = ids.shape[1], attention_mask.shape[1]
        prompt_len = total - width
        q_index = torch.arange(width, device=ids.device)[:, None] + prompt_len
        causal = torch.arange(total, device=ids.device)[None, :] <= q_index
        mask = causal[None, None] & attention_mask.bool()[:, None, None, :]
        x, _ = self._layers(ids, positions, mask, past)
        return self._logits(x)
