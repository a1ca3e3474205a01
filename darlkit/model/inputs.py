"""Validation of DARL's image and mask inputs (dtype, shape, NaN/Inf, value ranges).

The rules, shared by ``DARL.segment``, ``DARL.synthesize`` and ``DARL.forward_paths``:

- Images are (N, 1, H, W) floating tensors with intensities in [-1, 1]. float16, bfloat16 and
  float64 inputs are cast to the model's dtype (float32 by default). Integer images are refused
  (their intensity scale is unknown). NaN and +/-Inf values are refused, the message naming
  which kind and how many. Values outside [-1, 1] by more than :data:`IMAGE_RANGE_TOLERANCE`
  raise a ``UserWarning`` (a 0..255 image, say); they are not clipped.
- Masks have the image's shape and hold vessel = 1 and background = -1 or 0 (float, bool or
  integer dtype). A {0, 1} mask is mapped to {-1, 1}; any other value is an error.
"""

from __future__ import annotations

import math
import warnings

import torch

__all__ = ["IMAGE_RANGE_TOLERANCE", "check_image", "check_mask"]

IMAGE_RANGE_TOLERANCE = 0.5
"""An image with values below ``-1 - tol`` or above ``1 + tol`` triggers a ``UserWarning``."""


def _non_finite_summary(x: torch.Tensor) -> str:
    """``"NaN (3 values) and +Inf (1 value)"``: the kinds and counts of non-finite entries."""
    parts = []
    for label, hits in (("NaN", torch.isnan(x)), ("+Inf", torch.isposinf(x)), ("-Inf", torch.isneginf(x))):
        count = int(hits.sum())
        if count:
            parts.append(f"{label} ({count} value{'s' if count > 1 else ''})")
    return " and ".join(parts)


def check_image(
    x: object, name: str, *, size_multiple: int = 1, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Check an image batch and return it cast to ``dtype``.

    Args:
        x: Images (N, 1, H, W), floating, intensities in [-1, 1].
        name: Argument name used in messages.
        size_multiple: H and W must be positive multiples of this.
        dtype: Floating dtype of the result (the model's).

    Returns:
        ``x`` as ``dtype`` (the same tensor when it already has it).

    Raises:
        TypeError: If ``x`` is not a tensor.
        ValueError: On a wrong shape, an integer dtype, a size that is not a multiple of
            ``size_multiple``, an empty batch, or NaN/Inf values (named as such).

    Warns:
        UserWarning: If a value lies outside [-1, 1] by more than ``IMAGE_RANGE_TOLERANCE``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must have shape (N, 1, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor with intensities in [-1, 1], got dtype {x.dtype} "
            "(scale an 8-bit image with x.float() / 127.5 - 1)"
        )
    h, w = x.shape[-2:]
    if h == 0 or w == 0 or h % size_multiple or w % size_multiple:
        raise ValueError(f"{name} height and width must be positive multiples of {size_multiple}, got {(h, w)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must have a non-empty batch, got shape {tuple(x.shape)}")
    x = x.to(dtype)
    lo, hi = (float(v) for v in torch.aminmax(x))  # NaN propagates into the extremes
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} contains {_non_finite_summary(x)}")
    tol = IMAGE_RANGE_TOLERANCE
    if lo < -1.0 - tol or hi > 1.0 + tol:
        warnings.warn(
            f"{name} has values in [{lo:.4g}, {hi:.4g}], outside DARL's intensity range [-1, 1] by more "
            f"than {tol}; scale 0..255 images with x / 127.5 - 1 and 0..1 images with 2 * x - 1",
            UserWarning,
            stacklevel=4,
        )
    return x


def check_mask(mask: object, ref: torch.Tensor) -> torch.Tensor:
    """Check a vessel mask against its image batch and return it in {-1, 1}.

    Args:
        mask: (N, 1, H, W) of ``ref``'s shape, values in {-1, 1} or {0, 1} (vessel = 1); any
            real dtype (float, bool, integer).
        ref: The image batch it belongs to (already checked by :func:`check_image`).

    Returns:
        The mask in {-1, 1} with ``ref``'s dtype.

    Raises:
        TypeError: If ``mask`` is not a tensor.
        ValueError: On a shape mismatch, NaN/Inf, or values outside both sets.
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(ref.shape):
        raise ValueError(f"mask must have shape {tuple(ref.shape)} (N, 1, H, W), got {tuple(mask.shape)}")
    if mask.is_complex():
        raise ValueError(f"mask must be a real tensor with values in {{-1, 1}} or {{0, 1}}, got dtype {mask.dtype}")
    if mask.is_floating_point() and not bool(torch.isfinite(mask).all()):
        raise ValueError(f"mask contains {_non_finite_summary(mask)}")
    m = mask.to(ref.dtype)
    one = m == 1
    if bool((one | (m == -1)).all()):
        return m
    if bool((one | (m == 0)).all()):
        return m * 2 - 1
    bad = m[~(one | (m == -1) | (m == 0))]
    sample = sorted({float(v) for v in bad.flatten()[:1000].tolist()})[:5]
    raise ValueError(
        "mask values must be in {-1, 1} or {0, 1} (vessel = 1), got "
        + (f"other values such as {', '.join(f'{v:g}' for v in sample)}" if sample else "a mix of -1, 0 and 1")
    )
