"""Vessel-free pseudo-backgrounds made from the angiograms themselves (``darlkit prepare --backgrounds auto``).

DARL's B path wants background frames (the anatomy before contrast injection). Fundus
photographs, DSA and most exports have none, so ``pseudo_background`` removes the vessels from
an image with a grey-level **closing** (a moving maximum, then a moving minimum, over a square
wider than the widest vessel): every dark structure narrower than the square is filled with the
surrounding background level, while structures wider than it (the anatomy, the heart shadow,
the optic disc, illumination gradients) are kept. Steps, on the [0, 1] image:

1. a Gaussian blur of ``pre_sigma`` (1 px) so that the closing does not follow the noise peaks;
2. ``grey_closing`` with a ``width`` x ``width`` square (odd; give 2x the widest vessel or more);
3. a Gaussian blur of ``width / 4`` that rounds off the square plateaus of the closing;
4. with ``noise="match"``, Gaussian noise of the image's own noise level (``1.4826 * MAD`` of
   ``image - blurred image``, the robust std of the high-frequency residual, corrected for the
   pre-blur) is added, seeded, and the result is limited to [0, 1] (the noise can step outside).

With ``method="fill"`` the closing only *finds* the vessels, and the image keeps its own texture
elsewhere (a smooth closing is easy for the angiogram discriminator to tell from a textured real
image, and the closing's upper envelope is brighter than the image's mean level):

1. ``depth = closing - image`` (steps 1-3 above); vessel pixels are those deeper than
   ``median + 2 * 1.4826 * MAD`` of ``depth``, widened by one pixel (a 3x3 dilation);
2. they are replaced by the mean of the other pixels around them (a normalised Gaussian
   average of width ``width / 2``) plus Gaussian noise of the standard deviation of
   ``image - that mean`` over the other pixels (seeded), limited to [0, 1]; every other pixel
   keeps its value.

This assumes vessels darker than their background (angiograms, the green channel of fundus
images); invert bright-vessel images first (``darlkit prepare --invert``).
"""

from __future__ import annotations

import numpy as np

from darlkit.data.morphology import dilate, gaussian_blur, grey_closing

__all__ = ["pseudo_background", "noise_level", "NOISE_MODES", "BACKGROUND_METHODS"]

NOISE_MODES: tuple[str, ...] = ("match", "none")
"""``noise=`` options of ``pseudo_background``."""

BACKGROUND_METHODS: tuple[str, ...] = ("closing", "fill")
"""``method=`` options of ``pseudo_background``."""


def noise_level(image: np.ndarray, pre_sigma: float = 1.0) -> float:
    """Robust std of an image's pixel noise: ``1.4826 * MAD(image - blur(image))`` / (1 - 1/(2 sqrt(pi) sigma)).

    The residual of a Gaussian blur of ``pre_sigma`` keeps a fraction of white noise's variance;
    the divisor (the residual's std for unit white noise, ``sqrt(1 - 1 / (2 sqrt(pi) sigma))`` in 1-D
    per axis, squared for 2-D) turns it back into the noise std.

    Args:
        image: (H, W) float array.
        pre_sigma: Blur used to separate noise from structure.

    Returns:
        The estimated noise standard deviation (same units as ``image``).
    """
    residual = np.asarray(image, dtype=np.float64) - gaussian_blur(image, pre_sigma)
    mad = float(np.median(np.abs(residual - np.median(residual))))
    kept = 1.0 - 1.0 / (2.0 * np.sqrt(np.pi) * pre_sigma)  # per axis, for a continuous Gaussian
    return 1.4826 * mad / max(kept, 1e-3)


def pseudo_background(
    image: np.ndarray,
    width: int,
    *,
    noise: str = "match",
    pre_sigma: float = 1.0,
    seed: int = 0,
    method: str = "closing",
) -> np.ndarray:
    """A vessel-free version of a dark-vessel image (rule: module docstring).

    Args:
        image: (H, W) float array in [0, 1], vessels darker than the background.
        width: Odd side (px) of the closing's square: wider than the widest vessel.
        noise: ``"match"`` (add noise of the image's level) or ``"none"`` (smooth output).
        pre_sigma: Gaussian blur (px) before the closing.
        seed: Seed of the added noise.
        method: ``"closing"`` (the smoothed closing, steps 1-4) or ``"fill"`` (only the vessel
            pixels found by the closing are replaced; module docstring).

    Returns:
        float32 (H, W) in [0, 1].

    Raises:
        ValueError: On a bad ``width``/``noise`` or an image outside [0, 1] or not 2-D.
    """
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"image must be (H, W), got shape {x.shape}")
    if x.size == 0 or not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError("image must be finite and in [0, 1]")
    if noise not in NOISE_MODES:
        raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
    if method not in BACKGROUND_METHODS:
        raise ValueError(f"method must be one of {BACKGROUND_METHODS}, got {method!r}")
    closed = grey_closing(gaussian_blur(x, pre_sigma), width)
    out = gaussian_blur(closed, width / 4.0)
    if method == "fill":
        return _fill(x, out - x, width, noise, seed)
    if noise == "match":
        sigma = noise_level(x, pre_sigma)
        out = out + np.random.default_rng(seed).normal(0.0, sigma, out.shape).astype(np.float32)
        out = np.clip(out, 0.0, 1.0)
    return out.astype(np.float32)


def _fill(x: np.ndarray, depth: np.ndarray, width: int, noise: str, seed: int) -> np.ndarray:
    """``method="fill"`` of ``pseudo_background`` (module docstring)."""
    med = float(np.median(depth))
    mad = float(np.median(np.abs(depth - med)))
    vessel = dilate((depth > med + 2.0 * 1.4826 * mad).astype(np.float32), 3) > 0.5
    if not vessel.any():
        return x.copy()
    keep = (~vessel).astype(np.float32)
    sigma = width / 2.0
    mean = gaussian_blur(x * keep, sigma) / np.maximum(gaussian_blur(keep, sigma), 1e-6)
    fill = mean
    if noise == "match" and keep.any():
        std = float(np.std((x - mean)[keep > 0.5]))
        fill = mean + np.random.default_rng(seed).normal(0.0, std, x.shape).astype(np.float32)
    return np.where(vessel, np.clip(fill, 0.0, 1.0), x).astype(np.float32)
