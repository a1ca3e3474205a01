"""Eager PyTorch references of the fused normalization ops.

These are the ground truth that every fused backend (Triton, ``torch.compile``) is tested
against, and the path used when no faster backend applies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["spade_norm_reference", "instance_norm_act_reference"]


def _act(y: torch.Tensor, negative_slope: float | None) -> torch.Tensor:
    return y if negative_slope is None else F.leaky_relu(y, negative_slope)


def _instance_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``F.instance_norm``, extended to 1-pixel planes (zero variance: ``x_hat = 0``).

    ``F.instance_norm`` refuses H * W == 1 in training mode; the limit of the formula is well
    defined (the normalized value is exactly 0, its gradient with respect to ``x`` is 0), so the
    reference spells it out for that case.
    """
    if x.dim() == 4 and x.shape[2] * x.shape[3] == 1:
        var, mean = torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)
        y = (x - mean) * torch.rsqrt(var + eps)
        if weight is not None:
            y = y * weight.view(1, -1, 1, 1)
        if bias is not None:
            y = y + bias.view(1, -1, 1, 1)
        return y
    return F.instance_norm(x, weight=weight, bias=bias, eps=eps)


def spade_norm_reference(
    x: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    eps: float = 1e-5,
    negative_slope: float | None = None,
) -> torch.Tensor:
    """SPADE modulation ``act((x - mean) * rstd * (1 + gamma) + beta)`` in eager PyTorch.

    Statistics are per (n, c) plane over H x W (instance norm, biased variance). A 1 x 1 plane
    has zero variance and normalizes to 0, so the output there is ``act(beta)``.

    Args:
        x: Input of shape (N, C, H, W).
        gamma: Per-pixel scale offsets, (N, C, H, W) (broadcastable).
        beta: Per-pixel shifts, (N, C, H, W) (broadcastable).
        eps: Added to the variance before the square root.
        negative_slope: LeakyReLU slope applied to the result; ``None`` for identity.

    Returns:
        Tensor of the shape and dtype of ``x``.
    """
    normalized = _instance_norm(x, eps=eps)
    return _act(normalized * (1 + gamma) + beta, negative_slope)


def instance_norm_act_reference(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float = 1e-5,
    negative_slope: float | None = None,
) -> torch.Tensor:
    """Affine instance norm ``act((x - mean) * rstd * w_c + b_c)`` in eager PyTorch.

    Args:
        x: Input of shape (N, C, H, W).
        weight: Per-channel scale (C,) or ``None`` (no affine).
        bias: Per-channel shift (C,) or ``None``.
        eps: Added to the variance before the square root.
        negative_slope: LeakyReLU slope applied to the result; ``None`` for identity.

    Returns:
        Tensor of the shape and dtype of ``x``.
    """
    return _act(_instance_norm(x, weight, bias, eps), negative_slope)
