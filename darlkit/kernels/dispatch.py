"""Backend selection for the fused normalization ops."""

from __future__ import annotations

import torch

from darlkit.kernels.reference import instance_norm_act_reference, spade_norm_reference

__all__ = ["BACKENDS", "spade_norm", "instance_norm_act"]

#: Accepted values of every ``backend`` argument.
BACKENDS: tuple[str, ...] = ("auto", "eager")


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def spade_norm(
    x: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    *,
    eps: float = 1e-5,
    negative_slope: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """SPADE modulation ``act(instance_norm(x) * (1 + gamma) + beta)``.

    Args:
        x: Input of shape (N, C, H, W), float32/bfloat16/float16.
        gamma: Scale offsets of shape (N, C, H, W).
        beta: Shifts of shape (N, C, H, W).
        eps: Variance epsilon.
        negative_slope: LeakyReLU slope, or ``None`` for no activation.
        backend: One of :data:`BACKENDS`.

    Returns:
        Tensor shaped like ``x``.
    """
    _check_backend(backend)
    return spade_norm_reference(x, gamma, beta, eps, negative_slope)


def instance_norm_act(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    *,
    eps: float = 1e-5,
    negative_slope: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Affine instance norm with an optional fused LeakyReLU.

    Args:
        x: Input of shape (N, C, H, W).
        weight: Per-channel scale (C,) or ``None``.
        bias: Per-channel shift (C,) or ``None``.
        eps: Variance epsilon.
        negative_slope: LeakyReLU slope, or ``None`` for no activation.
        backend: One of :data:`BACKENDS`.

    Returns:
        Tensor shaped like ``x``.
    """
    _check_backend(backend)
    return instance_norm_act_reference(x, weight, bias, eps, negative_slope)
