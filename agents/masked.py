"""Masked statistics over ``(B, T)`` batches: mean, variance, whitening, explained variance;
and the shape check the math modules share (:func:`check_same_shape`).

A ``mask`` is a bool or 0/1 float tensor of the same shape as the values, 1 on valid
positions; values on masked-out positions are never read (they may be NaN). These run inside
the update, so they check shapes only: nothing here looks at the data (no host syncs). An
empty mask gives 0 rather than an error.
"""

from __future__ import annotations

import torch

__all__ = ["check_same_shape", "explained_variance", "masked_mean", "masked_var", "masked_whiten"]


def check_same_shape(**tensors: torch.Tensor) -> None:
    """Raise ValueError unless all ``tensors`` have the shape of the first one."""
    (first, reference), *others = tensors.items()
    for name, tensor in others:
        if tensor.shape != reference.shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}, expected {tuple(reference.shape)} "
                f"(the shape of {first})"
            )


def _keep(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``mask`` as a bool tensor, after checking its shape."""
    if mask.shape != shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {tuple(shape)}")
    return mask if mask.dtype == torch.bool else mask != 0


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` where ``mask`` is 1, over everything (a scalar) or along ``dim``.

    A slice with no valid entry has mean 0 (its count is clamped to 1).
    """
    keep = _keep(mask, x.shape)
    total = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
    if dim is None:
        return total.sum() / keep.sum().clamp(min=1)
    return total.sum(dim=dim) / keep.sum(dim=dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` where ``mask`` is 1 (a scalar); ``unbiased`` applies Bessel's
    correction ``n / (n - 1)`` (skipped when ``n < 2``)."""
    keep = _keep(mask, x.shape)
    centered = x - masked_mean(x, keep)
    var = masked_mean(centered * centered, keep)
    if unbiased:  # n / (n - 1) in float64, then the values' dtype (as a Python float would)
        n = keep.sum().double()
        var = var * (n / (n - 1).clamp(min=1)).to(var.dtype)
    return var


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """``(x - mean) / std`` over the valid entries (unbiased std), 0 on masked-out ones;
    ``shift_mean=False`` adds the mean back (only the scale is normalised)."""
    keep = _keep(mask, x.shape)
    mean = masked_mean(x, keep)
    out = (x - mean) * torch.rsqrt(masked_var(x, keep) + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(keep, out, torch.zeros((), dtype=out.dtype, device=out.device))


def explained_variance(
    predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``1 - Var[targets - predictions] / Var[targets]`` over the valid entries (a scalar).

    1 is a perfect value function, 0 one no better than a constant, negative one worse than a
    constant. NaN when the targets do not vary (or nothing is valid): undefined.
    """
    keep = _keep(mask, targets.shape)
    var_y = masked_var(targets, keep, unbiased=False)
    var_err = masked_var(targets - predictions, keep, unbiased=False)
    return torch.where(var_y > 0, 1 - var_err / var_y, torch.full_like(var_y, float("nan")))
