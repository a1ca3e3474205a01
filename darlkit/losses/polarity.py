"""Polarity prior of the synthesis path: contrast agent only darkens the background.

In an X-ray angiogram the iodine in a vessel attenuates the beam (Beer-Lambert), so a vessel
pixel is darker than the background behind it. DARL's synthesis path draws a fractal mask into
a background; nothing in the paper's objective fixes the sign of that contrast, and in small
runs the generator can settle on bright or relief-like vessels (bright rim, dark core) that the
cycle loss accepts, after which the segmentation of real (dark-vessel) angiograms stays empty.
``polarity_loss`` penalises synthetic vessel pixels that are not at least ``margin`` darker than
their reference: the darker of the background they were drawn on and the synthetic image's own
non-vessel surroundings (a local mean). The second reference closes a loophole of the first:
a generator that darkens the whole image can otherwise draw vessels brighter than their
surroundings while staying below the original background.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

__all__ = ["polarity_loss"]


def _local_background(image: torch.Tensor, vessel: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the non-vessel pixels of ``image`` in a ``window`` x ``window`` box around each pixel.

    Args:
        image: (N, 1, H, W) intensities.
        vessel: (N, 1, H, W) float, 1 on vessel pixels and 0 elsewhere.
        window: Odd box side (pixels).

    Returns:
        ``(mean, valid)``: the local non-vessel mean (N, 1, H, W) and a bool tensor that is
        False where the box holds no non-vessel pixel (there ``mean`` is 0).
    """
    keep = 1.0 - vessel
    pad = window // 2
    num = F.avg_pool2d(image * keep, window, stride=1, padding=pad, count_include_pad=False)
    den = F.avg_pool2d(keep, window, stride=1, padding=pad, count_include_pad=False)
    valid = den > 1e-6
    return torch.where(valid, num / den.clamp_min(1e-6), torch.zeros_like(num)), valid


def polarity_loss(
    synth: torch.Tensor,
    background: torch.Tensor,
    mask: torch.Tensor,
    margin: float = 0.05,
    window: int = 9,
) -> torch.Tensor:
    """Mean hinge ``relu(synth - reference + margin)`` over the vessel pixels of ``mask``.

    ``reference`` is, per pixel, the smaller of ``background`` and the mean of the synthetic
    image's non-vessel pixels in a ``window`` x ``window`` box (a local box mean,
    detached: the prior darkens vessels, it never brightens their surroundings); where the box
    holds only vessel pixels, ``background`` alone.

    Args:
        synth: Synthetic angiograms (N, 1, H, W) in [-1, 1].
        background: The backgrounds they were drawn on (N, 1, H, W) in [-1, 1] (clean, i.e.
            before the forward-diffusion noise).
        mask: Vessel masks (N, 1, H, W); vessel where > 0 (DARL's {-1, 1} masks).
        margin: Darkening required of a vessel pixel, in intensity units of [-1, 1] (>= 0).
        window: Odd side (pixels) of the box of the local non-vessel mean.

    Returns:
        A float32 scalar >= 0; 0 when every vessel pixel is at least ``margin`` darker than its
        reference, and also 0 when the masks have no vessel pixel.

    Raises:
        TypeError: If an input is not a floating-point tensor or ``margin`` is not a number.
        ValueError: If the shapes differ, ``margin`` is negative or not finite, or ``window`` is
            not an odd positive int.
    """
    for name, x in (("synth", synth), ("background", background), ("mask", mask)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = getattr(x, "dtype", type(x).__name__)
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {got}")
    if background.shape != synth.shape or mask.shape != synth.shape:
        raise ValueError(
            f"synth, background and mask must have one shape, got {tuple(synth.shape)}, "
            f"{tuple(background.shape)} and {tuple(mask.shape)}"
        )
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not 0.0 <= float(margin) < float("inf"):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd positive int, got {window!r}")
    synth, background = synth.float(), background.float()
    vessel = (mask > 0).to(torch.float32)
    local, valid = _local_background(synth.detach(), vessel, window)
    reference = torch.where(valid, torch.minimum(background, local), background)
    excess = torch.relu(synth - reference + float(margin))
    return (excess * vessel).sum() / vessel.sum().clamp_min(1.0)
