"""Polarity prior of the synthesis path: contrast agent only darkens the background.

In an X-ray angiogram the iodine in a vessel attenuates the beam (Beer-Lambert), so a vessel
pixel is darker than the background behind it. DARL's synthesis path draws a fractal mask into
a background; nothing in the paper's objective fixes the sign of that contrast, and in small
runs the generator can settle on bright or relief-like vessels (bright rim, dark core) that the
cycle loss accepts, after which the segmentation of real (dark-vessel) angiograms stays empty.
``polarity_loss`` penalises synthetic vessel pixels that are not at least ``margin`` darker than
the background they were drawn on.
"""

from __future__ import annotations

import numbers

import torch

__all__ = ["polarity_loss"]


def polarity_loss(
    synth: torch.Tensor,
    background: torch.Tensor,
    mask: torch.Tensor,
    margin: float = 0.05,
) -> torch.Tensor:
    """Mean hinge ``relu(synth - background + margin)`` over the vessel pixels of ``mask``.

    Args:
        synth: Synthetic angiograms (N, 1, H, W) in [-1, 1].
        background: The backgrounds they were drawn on (N, 1, H, W) in [-1, 1] (clean, i.e.
            before the forward-diffusion noise).
        mask: Vessel masks (N, 1, H, W); vessel where > 0 (DARL's {-1, 1} masks).
        margin: Darkening required of a vessel pixel, in intensity units of [-1, 1] (>= 0).

    Returns:
        A float32 scalar >= 0; 0 when every vessel pixel is at least ``margin`` darker than its
        background, and also 0 when the masks have no vessel pixel.

    Raises:
        TypeError: If an input is not a floating-point tensor or ``margin`` is not a number.
        ValueError: If the shapes differ or ``margin`` is negative or not finite.
    """
    for name, x in (("synth", synth), ("background", background), ("mask", mask)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if background.shape != synth.shape or mask.shape != synth.shape:
        raise ValueError(
            f"synth, background and mask must have one shape, got {tuple(synth.shape)}, "
            f"{tuple(background.shape)} and {tuple(mask.shape)}"
        )
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not 0.0 <= float(margin) < float("inf"):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    vessel = (mask > 0).to(torch.float32)
    excess = torch.relu(synth.float() - background.float() + float(margin))
    return (excess * vessel).sum() / vessel.sum().clamp_min(1.0)
