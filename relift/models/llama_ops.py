"""The arithmetic of a Llama-shaped block in plain tensor ops, shared by the lean decode step
(``workers/rollout/static_decode.py``) and the lean passes (``workers/lean_forward.py``); the model
types it covers are also the ones ``relift.models.lean_layers`` swaps layers in.

Each helper computes what transformers' Llama/Qwen2 modules compute, in fewer tensor ops (on CPU
at small sizes every op costs microseconds of dispatch): :func:`is_llama_shaped` says which models
these helpers reproduce.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["decoder_layers", "is_llama_shaped", "rms_norm", "rotate", "signed_sin"]

LLAMA_SHAPED = frozenset({"qwen2", "llama"})


def decoder_layers(module: nn.Module) -> Any:
    """The causal LM's list of decoder blocks (``module.model.layers``), or None."""
    return getattr(getattr(module, "model", None), "layers", None)


def is_llama_shaped(module: nn.Module) -> bool:
    """Whether ``module`` is a Qwen2/Llama causal LM whose every block is the plain Llama block: full
    attention (no sliding window), SiLU-gated MLP, no q/k norms."""
    config = getattr(module, "config", None)
    if config is None or getattr(config, "model_type", None) not in LLAMA_SHAPED:
        return False
    if getattr(config, "use_sliding_window", False):
        return False
    layer_types = getattr(config, "layer_types", None)
    if layer_types and any(t != "full_attention" for t in layer_types):
        return False
    if getattr(config, "hidden_act", None) not in ("silu", "swish"):
        return False
    layers = decoder_layers(module)
    if not layers or not hasattr(module, "lm_head") or not hasattr(module.model, "rotary_emb"):
        return False
    attn = layers[0].self_attn
    return all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj", "scaling")) and not hasattr(
        attn, "q_norm"
    )


class _RMSNorm(torch.autograd.Function):
    """float32 RMSNorm with a hand-written backward. Why: autograd through ``F.rms_norm`` on CPU replays
    its pieces (pow, mean, rsqrt, two multiplies: ~6 backward nodes per norm); this saves the normalised
    input and the inverse RMS and runs the backward in five ops (~20% less time per norm, forward and
    backward, at the tiny bench job's shape; docs/performance.md, round 12). ``relift.models.lean_layers``
    has its own for ``lean_activations``: it keeps ``x`` instead (less memory) and recomputes, which cost
    the lean passes ~1.2 ms more per tiny update than this one."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        inv_rms = torch.rsqrt((x * x).mean(-1, keepdim=True).add_(eps))
        normed = x * inv_rms
        ctx.save_for_backward(normed, inv_rms, weight)
        return normed * weight

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:  # type: ignore[override]
        normed, inv_rms, weight = ctx.saved_tensors
        grad_w = (grad * normed).reshape(-1, normed.shape[-1]).sum(0) if ctx.needs_input_grad[1] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            # d normed_i / d x_j = inv_rms * (delta_ij - normed_i * normed_j / d)
            g = grad * weight
            grad_x = g.sub_(normed * (g * normed).mean(-1, keepdim=True)).mul_(inv_rms)
        return grad_x, grad_w, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """HF's Llama/Qwen2 RMSNorm: normalise in float32, cast back, then scale."""
    if x.dtype == torch.float32:
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad) and weight.dtype == torch.float32:
            return _RMSNorm.apply(x, weight, eps)
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    return weight * F.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype)


def signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """``sin`` with its first half (last dim) negated: the factor :func:`rotate` multiplies the rolled ``x`` by."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def rotate(x: torch.Tensor, cos: torch.Tensor, signed: torch.Tensor) -> torch.Tensor:
    """HF's ``x * cos + rotate_half(x) * sin`` in three ops: ``rotate_half(x) * sin`` equals
    ``roll(x, d/2) * signed_sin(sin)`` (the negation moves from ``x`` to ``sin``: exact)."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), signed)
