"""Local contrast normalisation of the prepared images (``darlkit prepare --contrast local``).

The vessels of a fundus photograph's green channel are only 5-10 % darker than their
surroundings, on a background whose brightness varies several-fold across the eye (illumination
fall-off, the bright optic disc) and ends at the dark rim of the field of view. ``local_contrast``
removes the slow variation and equalises the contrast, as the usual CLAHE-like preprocessing of
retinal pipelines does: with ``G`` a Gaussian blur of ``sigma`` (about 1.5 x the widest vessel) and
the averages taken inside the field of view only (normalised convolution, so the dark surround
does not leak in),

``m = G(f x) / G(f)``, ``s = sqrt(G(f (x - m)^2) / G(f))``, ``z = (x - m) / (s + eps)``,

and the output is ``0.5 + z / (2 * z_max)`` limited to [0, 1] (``z_max = 3``: values beyond three
local standard deviations, about 0.3 % of the pixels of a fundus image, are limited; the share is
returned so ``prepare.json`` records it), with 0.5 (the mean level) outside the field of view, so
the rim of the eye is no edge any more. Vessels stay darker than their background.
"""

from __future__ import annotations

import numpy as np

from darlkit.data.morphology import gaussian_blur

__all__ = ["local_contrast", "CONTRAST_MODES", "Z_MAX"]

CONTRAST_MODES: tuple[str, ...] = ("local", "none")
"""``contrast=`` options of ``darlkit.preparation.prepare_dataset``."""

Z_MAX = 3.0
"""Local standard deviations mapped to the ends of [0, 1]."""


def local_contrast(image: np.ndarray, fov: np.ndarray | None, sigma: float, *, eps: float = 1e-3) -> tuple[np.ndarray, float]:
    """Locally normalised image (rule: module docstring).

    Args:
        image: (H, W) float array in [0, 1].
        fov: bool (H, W) field of view (``None``: the whole image).
        sigma: Gaussian width (px) of the local mean and standard deviation, > 0.
        eps: Added to the local standard deviation (flat regions stay flat).

    Returns:
        ``(out, limited)``: float32 (H, W) in [0, 1], and the share of field-of-view pixels whose
        value was limited to [0, 1].

    Raises:
        ValueError: On a non-2-D image, a ``fov`` of another shape or empty, or ``sigma <= 0``.
    """
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"image must be a non-empty (H, W) array, got shape {x.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    f = np.ones(x.shape, bool) if fov is None else np.asarray(fov, dtype=bool)
    if f.shape != x.shape:
        raise ValueError(f"fov is {f.shape} but the image is {x.shape}")
    if not f.any():
        raise ValueError("fov is empty")
    w = f.astype(np.float32)
    norm = np.maximum(gaussian_blur(w, sigma), 1e-6)
    mean = gaussian_blur(w * x, sigma) / norm
    var = gaussian_blur(w * (x - mean) ** 2, sigma) / norm
    z = (x - mean) / (np.sqrt(np.maximum(var, 0.0)) + eps)
    out = 0.5 + z / (2.0 * Z_MAX)
    limited = float(((out < 0) | (out > 1))[f].mean())
    out = np.where(f, np.clip(out, 0.0, 1.0), 0.5)
    return out.astype(np.float32), limited
