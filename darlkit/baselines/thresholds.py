"""Global thresholds of a score map, computed inside a field of view: Otsu and vessel fraction.

Both return a float ``t``; the vessel mask is ``score > t``. Only the pixels inside ``roi`` (all
pixels without one) decide ``t``, so a dark surround outside a fundus photograph's disc does not
pull the threshold.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["otsu_threshold", "fraction_threshold"]


def _roi_values(scores: object, roi: object | None) -> torch.Tensor:
    """Sorted float64 values of ``scores`` inside ``roi`` (1-D)."""
    for name, value in (("scores", scores), ("roi", roi)):
        if value is not None and not isinstance(value, (torch.Tensor, np.ndarray)):
            raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}")
    s = torch.as_tensor(np.asarray(scores) if isinstance(scores, np.ndarray) else scores.detach().cpu())
    if s.dtype == torch.bool or s.is_complex():
        raise TypeError(f"scores must hold real numbers, got dtype {s.dtype}")
    s = s.to(torch.float64)
    if roi is not None:
        r = torch.as_tensor(np.asarray(roi) if isinstance(roi, np.ndarray) else roi.detach().cpu())
        if tuple(r.shape) != tuple(s.shape):
            raise ValueError(f"roi must have the shape of scores {tuple(s.shape)}, got {tuple(r.shape)}")
        s = s[r != 0]
    s = s.flatten()
    if s.numel() == 0:
        raise ValueError("no pixel to threshold: scores is empty or roi selects nothing")
    if not torch.isfinite(s).all():
        raise ValueError("scores holds NaN or infinite values inside the roi")
    return torch.sort(s).values


def otsu_threshold(scores: torch.Tensor | np.ndarray, roi: torch.Tensor | np.ndarray | None = None) -> float:
    """Otsu's threshold: the split of the values that maximises the between-class variance.

    Exact on the values themselves (no histogram binning): every split between two consecutive
    distinct values is tried; ties of the variance go to the lowest split.

    Args:
        scores: Score map of any shape (e.g. (H, W) vesselness in [0, 1]).
        roi: Optional mask of the same shape, non-zero inside the field of view.

    Returns:
        The largest value of the lower class: vessel = ``scores > t``. When all values inside
        the ROI are equal, that value (nothing is above it).

    Raises:
        TypeError: If ``scores``/``roi`` is not a tensor or array of real numbers.
        ValueError: If the shapes differ, no pixel is selected, or a selected value is NaN/inf.
    """
    v = _roi_values(scores, roi)
    n = v.numel()
    last = torch.ones(n, dtype=torch.bool)
    last[:-1] = v[1:] != v[:-1]  # index i ends a run of equal values
    ends = torch.nonzero(last).flatten()
    if ends.numel() == 1:
        return float(v[0])
    k = (ends[:-1] + 1).to(torch.float64)  # size of the lower class for each candidate split
    csum = torch.cumsum(v, 0)
    lower = csum[ends[:-1]]
    w0, w1 = k / n, 1.0 - k / n
    mu0, mu1 = lower / k, (csum[-1] - lower) / (n - k)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(v[ends[int(torch.argmax(between))]])


def fraction_threshold(
    scores: torch.Tensor | np.ndarray, fraction: float, roi: torch.Tensor | np.ndarray | None = None
) -> float:
    """The threshold above which ``fraction`` of the pixels inside the ROI lie (a percentile rule).

    With ``k = round(fraction * n)`` of the ``n`` pixels inside the ROI, ``t`` is the
    ``(k + 1)``-th largest value, so ``scores > t`` holds the ``k`` largest values (fewer when
    values tie at ``t``). ``fraction = 0.1`` is the 90th-percentile rule.

    Args:
        scores: Score map of any shape.
        fraction: Wanted vessel fraction inside the ROI, in (0, 1).
        roi: Optional mask of the same shape, non-zero inside the field of view.

    Returns:
        The threshold as a float.

    Raises:
        TypeError: If ``scores``/``roi`` is not a tensor or array of real numbers.
        ValueError: If ``fraction`` is not in (0, 1), the shapes differ or no pixel is selected.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (math.isfinite(fraction) and 0 < fraction < 1):
        raise ValueError(f"fraction must be a number in (0, 1), got {fraction!r}")
    v = _roi_values(scores, roi)
    k = min(int(round(fraction * v.numel())), v.numel() - 1)
    return float(v[v.numel() - 1 - k])
