"""Automatic field-of-view masks (``darlkit prepare --roi-masks auto``).

The field of view is the imaged area: the bright disc of a fundus photograph inside its black
surround, the exposed area of an X-ray inside dark collimator blades or an unexposed border.
``field_of_view`` finds it as the pixels brighter than a fraction (``fraction``, 10 %) of the
image's bright level (its 99th percentile), after a light Gaussian blur of ``sigma`` (0.5 px;
a wider blur moves the border outwards), followed by a binary opening (removes bright specks
outside) and closing (fills dark holes inside, e.g. thin vessels or a dark lesion) with a
``width`` x ``width`` square (7 px). Images with no dark surround give an all-true mask.
It is a threshold, not a segmentation: give real FOV masks (``--roi-masks P...``) when you have
them (DRIVE ships ``*_mask.gif``).
"""

from __future__ import annotations

import numpy as np

from darlkit.data.morphology import gaussian_blur, grey_closing, grey_opening

__all__ = ["field_of_view"]


def field_of_view(image: np.ndarray, *, fraction: float = 0.1, sigma: float = 0.5, width: int = 7) -> np.ndarray:
    """The field-of-view mask of one image (rule: module docstring).

    Args:
        image: (H, W) float array in [0, 1] (e.g. ``read_image(path, channel="luma")``).
        fraction: Threshold as a fraction of the 99th-percentile intensity, in (0, 1).
        sigma: Gaussian blur (px) before thresholding.
        width: Odd side (px) of the opening/closing square.

    Returns:
        bool (H, W): True inside the field of view.

    Raises:
        ValueError: On a bad option, a non-2-D image, or an image with no bright pixel at all.
    """
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"image must be a non-empty (H, W) array, got shape {x.shape}")
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    bright = float(np.percentile(x, 99))
    if bright <= 0:
        raise ValueError("image is black: no field of view to find")
    inside = (gaussian_blur(x, sigma) > fraction * bright).astype(np.float32)
    inside = grey_closing(grey_opening(inside, width), width)
    return inside > 0.5
