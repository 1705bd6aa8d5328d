"""Masked reductions over [B, T] tensors.

Every loss and advantage in relift reduces over response tokens only; padding must never leak into
a mean or a variance. These helpers are the single place where that is done.
"""

from __future__ import annotations

import torch

__all__ = ["masked_sum", "masked_mean", "masked_var", "masked_whiten"]

# Denominators are clamped at this value: an all-zero mask gives 0 (the masked sum is 0) instead
# of NaN, and any non-empty mask divides by its exact count.
_TINY = 1e-8


def _check_shapes(values: torch.Tensor, mask: torch.Tensor) -> None:
    if values.shape != mask.shape:
        raise ValueError(f"values and mask must have the same shape, got {tuple(values.shape)} "
                         f"and {tuple(mask.shape)}")


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``values`` where ``mask`` is set (mask may be bool or 0/1 float)."""
    _check_shapes(values, mask)
    prod = values * mask.to(values.dtype)
    return prod.sum() if dim is None else prod.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over the set entries of ``mask``; 0 where the mask is empty."""
    mask_f = mask.to(values.dtype)
    count = mask_f.sum() if dim is None else mask_f.sum(dim=dim)
    return masked_sum(values, mask_f, dim) / count.clamp(min=_TINY)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over all set entries of ``mask`` (Bessel-corrected by default).

    Raises ValueError when the mask holds fewer than two entries with ``unbiased=True``: the
    corrected variance is undefined there and silently returning inf/NaN would poison a run.
    """
    mask_f = mask.to(values.dtype)
    mean = masked_mean(values, mask_f)
    var = masked_mean((values - mean) ** 2, mask_f)
    if unbiased:
        n = float(mask_f.sum())
        if n < 2:
            raise ValueError(f"masked_var with Bessel's correction needs at least 2 masked entries, "
                             f"got {n:g} (mask shape {tuple(mask.shape)})")
        var = var * (n / (n - 1.0))
    return var


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  eps: float = 1e-8) -> torch.Tensor:
    """``(values - mean) / sqrt(var + eps)`` with mean/var over the masked entries (Bessel var).

    With ``shift_mean=False`` the mean is added back (only the scale is normalised). Entries outside
    the mask are transformed too; callers multiply by the mask afterwards.
    """
    mask_f = mask.to(values.dtype)
    mean = masked_mean(values, mask_f)
    var = masked_var(values, mask_f, unbiased=True)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened
