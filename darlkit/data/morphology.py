"""Grey-level morphology and smoothing on (H, W) float arrays (square structuring elements, torch ops).

Borders: a dilation ignores pixels outside the image (the max is over the part of the square
inside it), and so does an erosion; so closings and openings do not invent a dark or bright frame.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["dilate", "erode", "grey_closing", "grey_opening", "gaussian_blur"]


def _check_width(width: int) -> int:
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1 or width % 2 == 0:
        raise ValueError(f"width must be an odd int >= 1, got {width!r}")
    return int(width)


def _as_tensor(x: np.ndarray) -> torch.Tensor:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"expected an (H, W) array, got shape {a.shape}")
    return torch.from_numpy(np.array(a, dtype=np.float32))[None, None]  # a writable copy


def _max_filter(t: torch.Tensor, width: int) -> torch.Tensor:
    r = width // 2
    t = F.max_pool2d(F.pad(t, (r, r, 0, 0), value=-math.inf), (1, width), stride=1)
    return F.max_pool2d(F.pad(t, (0, 0, r, r), value=-math.inf), (width, 1), stride=1)


def dilate(x: np.ndarray, width: int) -> np.ndarray:
    """Grey dilation (moving maximum) over a ``width`` x ``width`` square.

    Args:
        x: (H, W) float array.
        width: Odd side of the square (1: identity).

    Returns:
        float32 (H, W).
    """
    width = _check_width(width)
    return _max_filter(_as_tensor(x), width)[0, 0].numpy()


def erode(x: np.ndarray, width: int) -> np.ndarray:
    """Grey erosion (moving minimum) over a ``width`` x ``width`` square (see ``dilate``)."""
    width = _check_width(width)
    return (-_max_filter(-_as_tensor(x), width))[0, 0].numpy()


def grey_closing(x: np.ndarray, width: int) -> np.ndarray:
    """Dilation then erosion: removes dark structures narrower than ``width`` (float32 (H, W))."""
    return erode(dilate(x, width), width)


def grey_opening(x: np.ndarray, width: int) -> np.ndarray:
    """Erosion then dilation: removes bright structures narrower than ``width`` (float32 (H, W))."""
    return dilate(erode(x, width), width)


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (radius ``ceil(3 sigma)``, replicated borders); ``sigma <= 0``: a copy.

    Args:
        x: (H, W) float array.
        sigma: Standard deviation in pixels.

    Returns:
        float32 (H, W).
    """
    t = _as_tensor(x)
    if sigma <= 0:
        return t[0, 0].numpy().copy()
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    t = F.conv2d(F.pad(t, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return t[0, 0].numpy()
