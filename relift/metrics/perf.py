"""Throughput and model-FLOPs-utilisation (MFU) helpers for dense decoder-only transformers.

FLOPs follow the PaLM appendix convention: a training token costs ``6 N`` (forward 2N, backward 4N)
for the N weights of the matrix multiplies, plus ``12 L d_attn s`` for attention scores and values
at sequence length s (no discount for the causal mask). N counts the attention projections, the MLP
and the LM head; embedding lookups and norms are not matmuls and are left out. Forward-only passes
(log-prob computation, generation prefill) cost a third of that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "matmul_params",
    "flops_per_token",
    "sequence_flops",
    "batch_flops",
    "tokens_per_second",
    "mfu",
    "peak_flops",
]

# Dense peak TFLOP/s per device (no sparsity), from the vendors' datasheets.
_PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},
    "H100 SXM": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},
    "H100 PCIE": {"bf16": 756.0, "fp16": 756.0, "fp32": 51.0},
    "H100 NVL": {"bf16": 835.0, "fp16": 835.0, "fp32": 60.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},
    "H800": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5},
    "A800": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "fp16": 362.0, "fp32": 91.6},
    "A10G": {"bf16": 70.0, "fp16": 70.0, "fp32": 31.2},
    "4090": {"bf16": 165.2, "fp16": 165.2, "fp32": 82.6},
}


def _get(config: Any, name: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def _shape(config: Any) -> dict[str, int]:
    """hidden, layers, heads, kv heads, head_dim, intermediate, vocab from an HF config or a dict."""
    hidden = _get(config, "hidden_size")
    layers = _get(config, "num_hidden_layers")
    heads = _get(config, "num_attention_heads")
    inter = _get(config, "intermediate_size")
    vocab = _get(config, "vocab_size")
    missing = [k for k, v in (("hidden_size", hidden), ("num_hidden_layers", layers), ("num_attention_heads", heads),
                              ("intermediate_size", inter), ("vocab_size", vocab)) if v is None]
    if missing:
        raise ValueError(f"model config lacks {', '.join(missing)}; cannot count FLOPs")
    if _get(config, "num_experts") or _get(config, "num_local_experts"):
        raise ValueError("mixture-of-experts configs are not supported by these dense FLOP counts")
    kv_heads = _get(config, "num_key_value_heads") or heads
    head_dim = _get(config, "head_dim") or hidden // heads
    return {"hidden": int(hidden), "layers": int(layers), "heads": int(heads), "kv_heads": int(kv_heads),
            "head_dim": int(head_dim), "inter": int(inter), "vocab": int(vocab)}


def matmul_params(config: Any, gated_mlp: bool = True) -> int:
    """Weights that take part in a matmul per token: attention q/k/v/o, MLP, LM head.

    ``gated_mlp``: SwiGLU-style MLP with three matrices (Llama, Qwen2); False for two (GPT-2 style).
    """
    s = _shape(config)
    q = s["heads"] * s["head_dim"]
    kv = s["kv_heads"] * s["head_dim"]
    attn = s["hidden"] * (q + 2 * kv) + q * s["hidden"]
    mlp = (3 if gated_mlp else 2) * s["hidden"] * s["inter"]
    return s["layers"] * (attn + mlp) + s["vocab"] * s["hidden"]


def flops_per_token(config: Any, seq_len: int, training: bool = True, gated_mlp: bool = True) -> float:
    """FLOPs for one token at context length ``seq_len``: ``k (2N + 4 L d_attn s)``, k = 3 training, 1 forward."""
    if seq_len < 0:
        raise ValueError(f"seq_len must be >= 0, got {seq_len}")
    s = _shape(config)
    forward = 2.0 * matmul_params(config, gated_mlp) + 4.0 * s["layers"] * s["heads"] * s["head_dim"] * seq_len
    return forward * (3.0 if training else 1.0)


def sequence_flops(config: Any, seq_len: int, training: bool = True, gated_mlp: bool = True) -> float:
    """FLOPs for a whole sequence of ``seq_len`` tokens (every token at context ``seq_len``)."""
    return seq_len * flops_per_token(config, seq_len, training, gated_mlp)


def batch_flops(config: Any, seq_lens: Iterable[int], training: bool = True, gated_mlp: bool = True) -> float:
    """FLOPs for a batch of sequences given their real (unpadded) lengths."""
    return float(sum(sequence_flops(config, int(n), training, gated_mlp) for n in seq_lens))


def tokens_per_second(num_tokens: float, seconds: float) -> float:
    """Throughput; raises for a non-positive duration rather than returning inf."""
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    return float(num_tokens) / float(seconds)


def mfu(flops: float, seconds: float, peak_flops_per_device: float, num_devices: int = 1) -> float:
    """Achieved FLOP/s over the peak of ``num_devices`` devices (0..1)."""
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    if not peak_flops_per_device > 0 or num_devices < 1:
        raise ValueError(f"need peak_flops_per_device > 0 and num_devices >= 1, got {peak_flops_per_device}, "
                         f"{num_devices}")
    return float(flops) / float(seconds) / (float(peak_flops_per_device) * num_devices)


def peak_flops(device_name: str | None = None, dtype: str = "bf16") -> float | None:
    """Dense peak FLOP/s of a known GPU (name as ``torch.cuda.get_device_name``), or None if unknown.

    ``device_name=None`` asks torch for the current CUDA device (None without CUDA).
    """
    if device_name is None:
        try:
            import torch
            if not torch.cuda.is_available():
                return None
            device_name = torch.cuda.get_device_name()
        except Exception:  # noqa: BLE001 - no usable CUDA runtime
            return None
    dtype = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32"}.get(dtype, dtype)
    upper = device_name.upper()
    for key, table in _PEAK_TFLOPS.items():  # more specific names come first
        if key in upper:
            tflops = table.get(dtype)
            return None if tflops is None else tflops * 1e12
    return None
