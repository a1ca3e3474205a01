"""Thin ``nn.Module`` wrappers of the fused normalization ops."""

from __future__ import annotations

import torch
from torch import nn

from darlkit._validation import check_int
from darlkit.kernels.dispatch import _check_backend, _check_scalars, instance_norm_act, spade_norm

__all__ = ["FusedSPADENorm", "FusedInstanceNormAct"]


class FusedSPADENorm(nn.Module):
    """Parameter-free SPADE modulation ``act(instance_norm(x) * (1 + gamma) + beta)``.

    Args:
        eps: Variance epsilon, finite and >= 0.
        negative_slope: LeakyReLU slope fused after the modulation, or ``None`` (identity).
        backend: One of ``darlkit.kernels.BACKENDS``.

    Shape:
        - x, gamma, beta: (N, C, H, W) (gamma/beta may broadcast to x).
        - output: (N, C, H, W), memory format of ``x`` on the fused backends.
    """

    def __init__(
        self, eps: float = 1e-5, negative_slope: float | None = None, backend: str = "auto"
    ) -> None:
        super().__init__()
        _check_scalars(eps, negative_slope)
        self.eps = float(eps)
        self.negative_slope = negative_slope
        self.backend = _check_backend(backend)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """Modulate ``x`` (N, C, H, W) with ``gamma``/``beta`` maps of the same shape."""
        return spade_norm(
            x, gamma, beta, eps=self.eps, negative_slope=self.negative_slope, backend=self.backend
        )

    def extra_repr(self) -> str:
        return f"eps={self.eps}, negative_slope={self.negative_slope}, backend={self.backend!r}"


class FusedInstanceNormAct(nn.Module):
    """Instance norm with per-channel affine parameters and an optional fused LeakyReLU.

    Args:
        num_features: Number of channels C (> 0).
        eps: Variance epsilon, finite and >= 0.
        affine: Learn ``weight`` (init 1) and ``bias`` (init 0) of shape (C,).
        negative_slope: LeakyReLU slope, or ``None`` (identity).
        backend: One of ``darlkit.kernels.BACKENDS``.

    Shape:
        - x: (N, C, H, W).
        - output: same shape and dtype as ``x``.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        affine: bool = True,
        negative_slope: float | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        check_int("num_features", num_features)
        _check_scalars(eps, negative_slope)
        self.num_features = num_features
        self.eps = float(eps)
        self.negative_slope = negative_slope
        self.backend = _check_backend(backend)
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` (N, C, H, W) per (n, c) plane, apply the affine map and activation."""
        return instance_norm_act(
            x, self.weight, self.bias, eps=self.eps, negative_slope=self.negative_slope,
            backend=self.backend,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}, "
            f"negative_slope={self.negative_slope}, backend={self.backend!r}"
        )
