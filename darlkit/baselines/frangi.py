"""Frangi's multi-scale Hessian vesselness (Frangi et al., MICCAI 1998), 2-D, in torch.

The Hessian at scale ``sigma`` (pixels) is computed with separable sampled Gaussian derivative
kernels (radius ``ceil(4 sigma)``, replicated borders) and scale-normalised by ``sigma**2``, so
responses of different scales compare: a bar of width ``w`` answers most strongly at
``sigma = w / 2``. With the eigenvalues ``|l1| <= |l2|`` the response of one scale is::

    V = exp(-(l1 / l2)**2 / (2 beta**2)) * (1 - exp(-(l1**2 + l2**2) / (2 c**2)))

kept only where ``l2`` has the sign of a vessel of the chosen polarity (``l2 > 0`` for dark
vessels on a bright background, ``l2 < 0`` for bright ones) and zero elsewhere; the result is
the maximum over the scales. ``c`` defaults to half the largest Hessian norm of the image at that
scale (scikit-image's rule; never below 1e-6 of the image's range), which makes every scale's response reach about ``1 - exp(-2)``; give
a fixed ``c`` to compare absolute responses across scales.

With ``roi`` (a field-of-view mask) the pixels outside it are replaced by a smooth continuation
of the pixels inside (normalised Gaussian convolution) before filtering, so the edge of the
field of view is not a vessel-like step, and the response outside it is 0.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["hessian_eigenvalues", "frangi_vesselness"]


def _as_batch(image: object, name: str, allow_bool: bool = False) -> tuple[torch.Tensor, bool, tuple[int, ...]]:
    """(N, 1, H, W) float64 tensor of an (H, W) or (N, 1, H, W) array; whether it was numpy; its shape."""
    is_numpy = isinstance(image, np.ndarray)
    if not is_numpy and not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(image).__name__}")
    t = torch.from_numpy(np.asarray(image)) if is_numpy else image.detach().cpu()
    shape = tuple(t.shape)
    if t.ndim == 2:
        t = t[None, None]
    elif not (t.ndim == 4 and t.shape[1] == 1):
        raise ValueError(f"{name} must have shape (H, W) or (N, 1, H, W), got {shape}")
    if t.dtype == torch.bool and allow_bool:
        t = t.to(torch.uint8)
    if not (t.is_floating_point() or t.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64)):
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    t = t.to(torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return t, is_numpy, shape


def _check_sigmas(sigmas: Sequence[float]) -> tuple[float, ...]:
    if isinstance(sigmas, (int, float)):
        sigmas = (sigmas,)
    out = tuple(float(s) for s in sigmas)
    if not out or not all(math.isfinite(s) and s > 0 for s in out):
        raise ValueError(f"sigmas must be a non-empty sequence of positive scales in pixels, got {sigmas!r}")
    return out


def _kernels(sigma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sampled Gaussian, first- and second-derivative kernels (float64, length 2r + 1).

    Normalised so that, on samples, ``g`` sums to 1, ``d1`` maps ``x`` to 1 and ``d2`` maps 1 to 0
    and ``x**2`` to 2 (exact derivatives of constants, ramps and parabolas).
    """
    r = max(1, math.ceil(4.0 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    d1 = x * g
    d1 = d1 / (x * d1).sum()
    d2 = (x**2 / sigma**4 - 1.0 / sigma**2) * g
    d2 = d2 - g * d2.sum()
    d2 = d2 * (2.0 / (x**2 * d2).sum())
    return g, d1, d2


def _separable(t: torch.Tensor, ky: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
    """Correlate (N, 1, H, W) with ``ky`` along rows then ``kx`` along columns (replicated borders)."""
    r = (kx.numel() - 1) // 2
    t = F.pad(t, (r, r, r, r), mode="replicate")
    t = F.conv2d(t, ky.view(1, 1, -1, 1))
    return F.conv2d(t, kx.view(1, 1, 1, -1))


def _eigen(t: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    g, d1, d2 = _kernels(sigma)
    s2 = sigma**2
    hxx = s2 * _separable(t, g, d2)
    hyy = s2 * _separable(t, d2, g)
    hxy = s2 * _separable(t, d1, d1)
    root = torch.sqrt((hxx - hyy) ** 2 + 4.0 * hxy**2)
    a, b = 0.5 * (hxx + hyy + root), 0.5 * (hxx + hyy - root)
    swap = a.abs() > b.abs()
    return torch.where(swap, b, a), torch.where(swap, a, b)


def hessian_eigenvalues(image: torch.Tensor | np.ndarray, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues of the scale-normalised Hessian ``sigma**2 * H`` of an image, ordered by magnitude.

    Args:
        image: (H, W) or (N, 1, H, W) real values (any range).
        sigma: Gaussian scale in pixels (> 0).

    Returns:
        ``(l1, l2)``: float64 tensors of shape (N, 1, H, W) with ``|l1| <= |l2|`` per pixel. Across
        a dark line ``l2 > 0``, across a bright line ``l2 < 0``; both are 0 on a constant or a
        linear ramp (away from the borders).

    Raises:
        TypeError: If ``image`` is not a tensor/array of real numbers.
        ValueError: If its shape is not (H, W) or (N, 1, H, W), it holds NaN/inf, or
            ``sigma`` is not positive.
    """
    t, _, _ = _as_batch(image, "image")
    (s,) = _check_sigmas((sigma,))
    return _eigen(t, s)


def _fill_outside(t: torch.Tensor, roi: torch.Tensor, sigma: float) -> torch.Tensor:
    """Pixels outside ``roi`` replaced by a normalised Gaussian average of the pixels inside."""
    g, _, _ = _kernels(sigma)
    num = _separable(t * roi, g, g)
    den = _separable(roi, g, g)
    mean_in = (t * roi).sum(dim=(1, 2, 3), keepdim=True) / roi.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
    filled = torch.where(den > 1e-6, num / den.clamp_min(1e-12), mean_in)
    return torch.where(roi > 0, t, filled)


def frangi_vesselness(
    image: torch.Tensor | np.ndarray,
    sigmas: Sequence[float] = (1.0, 2.0, 3.0),
    *,
    dark_vessels: bool = True,
    beta: float = 0.5,
    c: float | None = None,
    roi: torch.Tensor | np.ndarray | None = None,
    return_scale: bool = False,
) -> torch.Tensor | np.ndarray | tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]:
    """Multi-scale Frangi vesselness of a grey image (see the module docstring for the formula).

    Args:
        image: (H, W) or (N, 1, H, W) grey values, any range (e.g. [0, 1] or [-1, 1]).
        sigmas: Gaussian scales in pixels; a vessel of diameter ``d`` answers most at about
            ``d / 2``.
        dark_vessels: True (default): vessels darker than their surround (fundus green channel,
            X-ray angiograms); False: bright vessels.
        beta: Sensitivity to blob-like structures (0.5 in Frangi's paper), > 0.
        c: Sensitivity to the Hessian norm (> 0); ``None``: half the largest norm per image and
            scale.
        roi: Optional field-of-view mask of the image's shape, non-zero inside. Outside it the
            image is filled from the inside before filtering and the response is 0; each
            image needs at least one pixel inside.
        return_scale: Also return, per pixel, the index into ``sigmas`` of the strongest scale.

    Returns:
        The vesselness, float32 in [0, 1), of the input's shape and kind (tensor or ndarray);
        with ``return_scale``, ``(vesselness, scale_index)`` (int64, same shape).

    Raises:
        TypeError: If ``image`` or ``roi`` is not a tensor/array of real numbers.
        ValueError: On a bad shape, NaN/inf, non-positive ``sigmas``, ``beta`` or ``c``, or an
            ROI with an empty image.
    """
    t, is_numpy, shape = _as_batch(image, "image")
    scales = _check_sigmas(sigmas)
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    if c is not None and not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
        raise ValueError(f"c must be a finite number > 0 or None, got {c!r}")
    mask = None
    if roi is not None:
        mask, _, roi_shape = _as_batch(roi, "roi", allow_bool=True)
        if roi_shape != shape:
            raise ValueError(f"roi must have the image's shape {shape}, got {roi_shape}")
        mask = (mask != 0).to(torch.float64)
        if (mask.sum(dim=(1, 2, 3)) == 0).any():
            raise ValueError("roi has an image with no pixel inside the field of view")
        t = _fill_outside(t, mask, 2.0 * max(scales))
    # Default c never below 1e-6 of the image's range: rounding noise on a flat image or a ramp
    # must not be scaled up into a response.
    floor = (1e-6 * (t.amax(dim=(1, 2, 3), keepdim=True) - t.amin(dim=(1, 2, 3), keepdim=True))).clamp_min(1e-12)
    best = torch.zeros_like(t)
    index = torch.zeros(t.shape, dtype=torch.int64)
    for i, s in enumerate(scales):
        l1, l2 = _eigen(t, s)
        norm2 = l1**2 + l2**2
        cc = c if c is not None else torch.maximum(0.5 * norm2.amax(dim=(1, 2, 3), keepdim=True).sqrt(), floor)
        rb2 = (l1 / torch.where(l2 == 0, torch.ones_like(l2), l2)) ** 2
        v = torch.exp(-rb2 / (2.0 * beta**2)) * (1.0 - torch.exp(-norm2 / (2.0 * cc**2)))
        v = torch.where((l2 > 0) if dark_vessels else (l2 < 0), v, torch.zeros_like(v))
        better = v > best
        best = torch.where(better, v, best)
        index = torch.where(better, torch.full_like(index, i), index)
    if mask is not None:
        best = best * mask
    out_v, out_i = best.to(torch.float32).reshape(shape), index.reshape(shape)
    if is_numpy:
        out_v, out_i = out_v.numpy(), out_i.numpy()
    return (out_v, out_i) if return_scale else out_v
