"""Per-token log-probs of labels and entropy from logits, computed in chunks of tokens.

A [tokens, vocab] float32 softmax of a whole micro-batch is the largest tensor of an RL step
(8k tokens x 152k vocab x 4 bytes = 5 GB). Here the float32 work happens on ``chunk_size`` rows at a
time, in the forward AND in the backward: a custom autograd Function saves only the original logits
(bf16 or fp32, which the model's graph holds anyway), the labels and two floats per token, and
recomputes each chunk's softmax when gradients are needed. Extra memory is O(chunk_size x vocab).

Labels < 0 (e.g. -100) are treated as ignored positions: their log-prob is 0 and they get no
gradient through the log-prob. Logits must be finite.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch

__all__ = ["logprobs_from_logits", "entropy_from_logits", "logprobs_and_entropy"]

logger = logging.getLogger(__name__)


def _row_chunks(x: torch.Tensor, chunk_size: int) -> Iterator[tuple[torch.Tensor, int, int]]:
    """Yield ``(view [rows, V], start, end)`` over the flattened leading dims without copying ``x``.

    A contiguous tensor is viewed as [N, V]. A 3-D slice such as ``logits[:, P-1:P+R-1]`` cannot be
    viewed flat, so it is walked row by row of its first dim; anything else is copied once.
    """
    vocab = x.shape[-1]
    try:
        flat = x.view(-1, vocab)
    except RuntimeError:
        flat = None
    if flat is not None:
        for s in range(0, flat.shape[0], chunk_size):
            e = min(s + chunk_size, flat.shape[0])
            yield flat[s:e], s, e
        return
    if x.dim() == 3:
        t_len = x.shape[1]
        for b in range(x.shape[0]):
            for s in range(0, t_len, chunk_size):
                e = min(s + chunk_size, t_len)
                yield x[b, s:e], b * t_len + s, b * t_len + e
        return
    logger.debug("logits of shape %s with strides %s are copied to be chunked", tuple(x.shape), x.stride())
    yield from _row_chunks(x.contiguous(), chunk_size)


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    """float32 for bf16/fp16/fp32 logits; float64 stays float64 (exact checks in tests)."""
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _scaled(chunk: torch.Tensor, cdt: torch.dtype, temperature: float, writable: bool) -> torch.Tensor:
    """``chunk / temperature`` in the compute dtype; a fresh buffer when ``writable`` (never the logits)."""
    if chunk.dtype == cdt:
        if temperature != 1.0:
            return chunk / temperature
        return chunk.clone() if writable else chunk
    z = chunk.to(cdt)
    return z.div_(temperature) if temperature != 1.0 else z


class _ChunkedLogProbEntropy(torch.autograd.Function):
    """Outputs ``(logp [N], entropy [N])`` in float32 (float64 for float64 logits); either output
    may be an empty placeholder when not requested."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor | None, temperature: float,  # type: ignore[override]
                chunk_size: int, with_logp: bool, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor]:
        n_rows = logits.numel() // logits.shape[-1]
        device, cdt = logits.device, _compute_dtype(logits)
        lse = torch.empty(n_rows, dtype=cdt, device=device)
        logp = torch.empty(n_rows if with_logp else 0, dtype=cdt, device=device)
        ent = torch.empty(n_rows if with_entropy else 0, dtype=cdt, device=device)
        flat_labels = labels.reshape(-1) if with_logp else None
        for chunk, s, e in _row_chunks(logits, chunk_size):
            z = _scaled(chunk, cdt, temperature, writable=with_entropy)
            c_lse = torch.logsumexp(z, dim=-1)
            lse[s:e] = c_lse
            if with_logp:
                lab = flat_labels[s:e]
                picked = z.gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                logp[s:e] = torch.where(lab >= 0, picked - c_lse, torch.zeros_like(picked))
            if with_entropy:
                # -sum p log p on the per-element log-probs: lse - sum(p z) cancels badly when peaked
                z.sub_(c_lse.unsqueeze(-1))
                p = z.exp()
                ent[s:e] = -p.mul_(z).sum(dim=-1)
                del p
            del z
        ctx.save_for_backward(logits, flat_labels if with_logp else None, lse, ent if with_entropy else None)
        ctx.temperature = temperature
        ctx.chunk_size = chunk_size
        ctx.set_materialize_grads(False)
        return logp, ent

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_logp: torch.Tensor | None, grad_ent: torch.Tensor | None):  # type: ignore[override]
        logits, labels, lse, ent = ctx.saved_tensors
        if not ctx.needs_input_grad[0] or (grad_logp is None and grad_ent is None):
            return None, None, None, None, None, None
        temperature = ctx.temperature
        if grad_logp is not None and labels is None:
            grad_logp = None
        if grad_ent is not None and ent is None:
            grad_ent = None
        cdt = _compute_dtype(logits)
        vocab = logits.shape[-1]
        one_chunk = 0 < logits.numel() // max(vocab, 1) <= ctx.chunk_size and logits.is_contiguous()
        grad_logits = None if one_chunk else torch.empty_like(logits, memory_format=torch.contiguous_format)
        grad_flat = None if grad_logits is None else grad_logits.view(-1, vocab)
        for chunk, s, e in _row_chunks(logits, ctx.chunk_size):
            if chunk.dtype == cdt and temperature == 1.0:
                logp_all = chunk - lse[s:e].unsqueeze(-1)  # a fresh buffer: log p
            else:
                logp_all = _scaled(chunk, cdt, temperature, writable=True).sub_(lse[s:e].unsqueeze(-1))
            p = logp_all.exp() if grad_ent is not None else logp_all.exp_()  # the entropy term reads log p
            g_l = None
            if grad_logp is not None:  # ignored labels (< 0) have a constant log-prob of 0
                lab = labels[s:e]
                g_l = torch.where(lab >= 0, grad_logp[s:e], torch.zeros_like(grad_logp[s:e])).unsqueeze(-1)
            # d logp / dz = onehot - p ;  d H / dz = p * (E_p[z] - z)
            if grad_ent is not None:
                # E_p[z] - z = -(log p + H), built in log p's buffer
                coef = logp_all.add_(ent[s:e].unsqueeze(-1)).mul_(-grad_ent[s:e].unsqueeze(-1))
                if g_l is not None:
                    coef.sub_(g_l)
                p.mul_(coef)
                del coef
            else:
                p.mul_(-g_l)
            del logp_all
            if g_l is not None:
                p.scatter_add_(-1, lab.clamp(min=0).unsqueeze(-1), g_l)
            if temperature != 1.0:
                p.div_(temperature)
            if grad_flat is None:  # the whole tensor in one chunk: its gradient is this buffer (no copy)
                return p.to(logits.dtype).view(logits.shape), None, None, None, None, None
            grad_flat[s:e] = p.to(grad_flat.dtype)
            del p
        return grad_logits, None, None, None, None, None


def _validate(logits: torch.Tensor, labels: torch.Tensor | None, temperature: float, chunk_size: int) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() < 1 or not logits.is_floating_point():
        raise ValueError(f"logits must be a floating tensor [..., V], got {getattr(logits, 'shape', type(logits))}")
    if labels is not None:
        if labels.shape != logits.shape[:-1]:
            raise ValueError(f"labels must have shape logits.shape[:-1] = {tuple(logits.shape[:-1])}, "
                             f"got {tuple(labels.shape)}")
        if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
        if labels.numel() and int(labels.max()) >= logits.shape[-1]:
            raise ValueError(f"label {int(labels.max())} out of range for vocab size {logits.shape[-1]}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not (isinstance(chunk_size, int) and chunk_size > 0):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")


def logprobs_and_entropy(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0,
                         chunk_size: int = 1024, with_entropy: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log softmax(logits / T)[label]`` and (optionally) the entropy of ``softmax(logits / T)``.

    ``logits`` [..., V] (any float dtype), ``labels`` [...]; returns float32 tensors of ``labels``'
    shape (float64 for float64 logits; entropy ``None`` when ``with_entropy=False``). Differentiable w.r.t. ``logits``.
    """
    _validate(logits, labels, temperature, chunk_size)
    labels = labels.long()
    logp, ent = _ChunkedLogProbEntropy.apply(logits, labels, float(temperature), chunk_size, True, with_entropy)
    shape = logits.shape[:-1]
    return logp.view(shape), (ent.view(shape) if with_entropy else None)


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0,
                         chunk_size: int = 1024) -> torch.Tensor:
    """Log-probs of ``labels`` under ``softmax(logits / temperature)``, float32, shape ``labels.shape``."""
    return logprobs_and_entropy(logits, labels, temperature, chunk_size, with_entropy=False)[0]


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0, chunk_size: int = 1024) -> torch.Tensor:
    """Entropy ``logsumexp(z) - sum softmax(z) z`` of ``z = logits / temperature``, float32, shape [...]."""
    _validate(logits, None, temperature, chunk_size)
    _, ent = _ChunkedLogProbEntropy.apply(logits, None, float(temperature), chunk_size, False, True)
    return ent.view(logits.shape[:-1])
