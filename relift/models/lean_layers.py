"""RMSNorm and SwiGLU layers that keep fewer tensors for the backward (``model.lean_activations``).

Why: in a training forward, transformers' Llama / Qwen2 layers keep ~22 hidden-widths of tensors per
token and layer for the backward; the RMSNorm keeps its normalised input as well as its input, and
the MLP keeps ``silu(gate)`` as well as ``gate`` and ``up``. These two autograd functions keep only
the input (and one float per row) and ``gate`` and ``up``, and recompute the rest in the backward:
~4 widths fewer, 19% less saved activation memory on the tiny bench model (docs/performance.md).
This is what Liger's fused RMSNorm and SwiGLU save on GPU (verl's ``use_liger``), in plain
PyTorch ops, so it runs on any device.

The forward runs the same ops in the same order as transformers' layers, so outputs are bit-identical;
gradients agree to float rounding (``tests/test_lean_layers.py``). The swapped modules own the same
parameters under the same names, so state dicts, checkpoints, FSDP2 sharding and weight sync are
unchanged. Applied only to Llama-shaped models (Llama, Qwen2), whose layers are exactly these.

Off by default: the backward runs as Python-level ops, which made the CPU bench jobs' update 1-8%
slower (medians of three runs per job); peak RSS did not fall on the tiny job and fell 0.3-8% on the
small one. It is for runs
whose memory is mostly activations (long responses, wide models).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from relift.models.llama_ops import LLAMA_SHAPED, decoder_layers

__all__ = ["LeanRMSNorm", "LeanSwiGLU", "apply_lean_layers", "supports_lean_layers"]


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(``weight * (x * rsqrt(mean(x^2) + eps))``, the rsqrt) in transformers' ops and order (float32 mean)."""
    xf = x.to(torch.float32)
    rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * (xf * rstd).to(x.dtype), rstd


class _RMSNormFunction(torch.autograd.Function):
    """:func:`_rms_norm`, keeping only ``x`` and the per-row rsqrt for the backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        out, rstd = _rms_norm(x, weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, weight, rstd = ctx.saved_tensors
        xhat = x.to(torch.float32) * rstd
        grad_x = grad_w = None
        if ctx.needs_input_grad[1]:
            rows = (grad.to(torch.float32) * xhat.to(x.dtype).to(torch.float32)).reshape(-1, x.shape[-1])
            grad_w = rows.sum(0).to(weight.dtype)
        if ctx.needs_input_grad[0]:
            gw = (grad * weight).to(torch.float32)
            grad_x = (rstd * (gw - xhat * (gw * xhat).mean(-1, keepdim=True))).to(x.dtype)
        return grad_x, grad_w, None


class _SiluMulFunction(torch.autograd.Function):
    """``silu(gate) * up``, keeping only ``gate`` and ``up``."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gate, up = ctx.saved_tensors
        sig = torch.sigmoid(gate.to(torch.float32))
        g = grad.to(torch.float32)
        gate_f = gate.to(torch.float32)
        grad_gate = grad_up = None
        if ctx.needs_input_grad[0]:  # d silu(z) / dz = sig(z) * (1 + z * (1 - sig(z)))
            grad_gate = (g * up.to(torch.float32) * sig * (1 + gate_f * (1 - sig))).to(gate.dtype)
        if ctx.needs_input_grad[1]:
            grad_up = (g * (gate_f * sig)).to(up.dtype)
        return grad_gate, grad_up


class LeanRMSNorm(nn.Module):
    """Drop-in for a Llama / Qwen2 RMSNorm: the same ``weight`` parameter and ``variance_epsilon``."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.weight = norm.weight
        self.variance_epsilon = float(norm.variance_epsilon)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():  # generation: nothing to keep, so no Function call per token
            return _rms_norm(hidden_states, self.weight, self.variance_epsilon)[0]
        return _RMSNormFunction.apply(hidden_states, self.weight, self.variance_epsilon)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.variance_epsilon}"


class LeanSwiGLU(nn.Module):
    """Drop-in for a Llama / Qwen2 MLP: the same ``gate_proj``, ``up_proj``, ``down_proj`` submodules."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = mlp.gate_proj, mlp.up_proj, mlp.down_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_proj(x), self.up_proj(x)
        if not torch.is_grad_enabled():
            return self.down_proj(F.silu(gate) * up)
        return self.down_proj(_SiluMulFunction.apply(gate, up))


def supports_lean_layers(module: nn.Module) -> bool:
    """Whether ``module`` is a Llama-shaped causal LM (SiLU MLP, RMSNorm) whose layers these replace exactly."""
    config = getattr(module, "config", None)
    if config is None or getattr(config, "model_type", None) not in LLAMA_SHAPED:
        return False
    if getattr(config, "hidden_act", None) not in ("silu", "swish"):
        return False
    layers = decoder_layers(module)
    if not layers:
        return False
    first = layers[0]
    norm, mlp = getattr(first, "input_layernorm", None), getattr(first, "mlp", None)
    return (hasattr(norm, "variance_epsilon") and hasattr(norm, "weight")
            and all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")))


def apply_lean_layers(module: nn.Module) -> int:
    """Swap the RMSNorms and MLPs of a Llama-shaped ``module`` in place (before any sharding);
    returns how many modules were swapped, 0 for a model this does not support."""
    if not supports_lean_layers(module):
        return 0
    swapped = 0
    for layer in module.model.layers:
        for name in ("input_layernorm", "post_attention_layernorm"):
            if not isinstance(getattr(layer, name), LeanRMSNorm):
                setattr(layer, name, LeanRMSNorm(getattr(layer, name)))
                swapped += 1
        if not isinstance(layer.mlp, LeanSwiGLU):
            layer.mlp = LeanSwiGLU(layer.mlp)
            swapped += 1
    if hasattr(module.model, "norm") and not isinstance(module.model.norm, LeanRMSNorm):
        module.model.norm = LeanRMSNorm(module.model.norm)
        swapped += 1
    return swapped
