"""Intensity scaling of decoded pixels to [0, 1]: colour channels, windows and percentiles.

One place decides how every reader maps stored values to [0, 1]:

- 8-bit (and 1-bit) data: ``v / 255`` (``v`` for 1-bit), exactly; nothing is clipped.
- Colour: one channel of RGB (``"red"``, ``"green"``, ``"blue"``) or the ITU-R 601-2 luma
  ``0.299 R + 0.587 G + 0.114 B`` (``"luma"``, the default; computed in floating point, not rounded
  to 8 bits as Pillow's ``convert("L")`` does).
- More than 8 bits (16/32-bit integer or float images): with ``scaling="auto"`` a window
  ``[lo, hi]`` is the 0.5th and 99.5th percentiles of all pixels of all frames together, and
  ``(v - lo) / (hi - lo)`` is **saturated** at 0 and 1: about 0.5 % of the pixels at each end
  (those outside the window) become exactly 0 or 1. With ``scaling="range"`` the window is the
  minimum and maximum of the data, so nothing saturates. A constant image (``hi == lo`` after
  falling back from the percentiles to the min/max) reads as all zeros.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CHANNELS", "SCALINGS", "DEFAULT_PERCENTILES", "select_channel", "scale_to_unit"]

CHANNELS: tuple[str, ...] = ("luma", "green", "red", "blue")
"""Accepted ``channel=`` values of the readers (colour -> one grey value per pixel)."""

SCALINGS: tuple[str, ...] = ("auto", "range")
"""Accepted ``scaling=`` values for images with more than 8 bits (see the module docstring)."""

DEFAULT_PERCENTILES: tuple[float, float] = (0.5, 99.5)
"""Percentiles (in %) of the window of high-depth images without a window of their own."""

_LUMA = np.array([0.299, 0.587, 0.114])
_CHANNEL_INDEX = {"red": 0, "green": 1, "blue": 2}


def check_channel(channel: object) -> str:
    """Validate a ``channel=`` argument and return it."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
    return str(channel)


def check_scaling(scaling: object) -> str:
    """Validate a ``scaling=`` argument and return it."""
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    return str(scaling)


def select_channel(rgb: np.ndarray, channel: str = "luma") -> np.ndarray:
    """One grey value per pixel of a colour image.

    Args:
        rgb: (..., 3) array of R, G, B values (any real dtype).
        channel: ``"luma"`` (ITU-R 601-2: ``0.299 R + 0.587 G + 0.114 B``), ``"red"``,
            ``"green"`` or ``"blue"``.

    Returns:
        float64 array of shape ``rgb.shape[:-1]`` in the input's value range.

    Raises:
        ValueError: On an unknown ``channel`` or a last axis that is not 3.
    """
    channel = check_channel(channel)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must have a last axis of 3 (R, G, B), got shape {rgb.shape}")
    if channel == "luma":
        return rgb.astype(np.float64) @ _LUMA
    return rgb[..., _CHANNEL_INDEX[channel]].astype(np.float64)


def scale_to_unit(
    values: np.ndarray,
    *,
    scaling: str = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    name: str = "image",
) -> np.ndarray:
    """Map high-depth values to [0, 1] by a window (see the module docstring for the rule).

    Args:
        values: Array of any shape (all frames of one file together), real dtype, finite.
        scaling: ``"auto"`` (percentile window, the ends saturate at 0 and 1) or ``"range"``
            (min..max, nothing saturates).
        percentiles: ``(low, high)`` percentiles in % for ``"auto"``, ``0 <= low < high <= 100``.
        name: What to call the data in error messages (e.g. the file).

    Returns:
        float32 array of the same shape in [0, 1].

    Raises:
        ValueError: On NaN/Inf values, an empty array or bad options.
    """
    scaling = check_scaling(scaling)
    lo_p, hi_p = (float(p) for p in percentiles)
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}")
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError(f"{name} holds no pixels")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} holds NaN or infinite pixel values")
    lo, hi = float(v.min()), float(v.max())
    if scaling == "auto":
        p_lo, p_hi = np.percentile(v, [lo_p, hi_p])
        if p_hi > p_lo:
            lo, hi = float(p_lo), float(p_hi)
    if hi <= lo:
        return np.zeros(v.shape, dtype=np.float32)
    return np.clip((v - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def window_to_unit(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """The DICOM VOI window (PS3.3 C.11.2.1.2) mapped to [0, 1] instead of the output range.

    ``LINEAR``: 0 at or below ``c - 0.5 - (w - 1) / 2``, 1 above ``c - 0.5 + (w - 1) / 2``,
    ``(v - (c - 0.5)) / (w - 1) + 0.5`` between; ``LINEAR_EXACT``: ``(v - c) / w + 0.5`` saturated
    at 0 and 1; ``SIGMOID``: ``1 / (1 + exp(-4 (v - c) / w))``. Values outside the window
    saturate at 0 or 1 (that is what a window means).

    Args:
        values: Array of modality values.
        center: Window centre.
        width: Window width (> 1 for LINEAR, > 0 otherwise).
        function: ``"LINEAR"``, ``"LINEAR_EXACT"`` or ``"SIGMOID"``.

    Returns:
        float32 array in [0, 1].
    """
    v = np.asarray(values, dtype=np.float64)
    c, w = float(center), float(width)
    if function == "LINEAR":
        if w < 1:
            raise ValueError(f"window width must be >= 1 for LINEAR, got {w}")
        if w == 1:
            return (v > c - 0.5).astype(np.float32)
        out = (v - (c - 0.5)) / (w - 1) + 0.5
    elif function == "LINEAR_EXACT":
        if w <= 0:
            raise ValueError(f"window width must be > 0, got {w}")
        out = (v - c) / w + 0.5
    elif function == "SIGMOID":
        if w <= 0:
            raise ValueError(f"window width must be > 0, got {w}")
        out = 1.0 / (1.0 + np.exp(-4.0 * (v - c) / w))
    else:
        raise ValueError(f"unknown VOI LUT function {function!r}; expected LINEAR, LINEAR_EXACT or SIGMOID")
    return np.clip(out, 0.0, 1.0).astype(np.float32)
