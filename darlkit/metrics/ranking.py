"""Threshold-free per-image metrics from continuous scores: AUC-ROC and average precision.

Both are exact (no binning) and handle tied scores:

- ``auc_roc_score``: the probability that a random vessel pixel scores higher than a random
  background pixel, ties counted one half (the Mann-Whitney U statistic,
  ``(sum of the vessel pixels' average ranks - P (P + 1) / 2) / (P N)``).
- ``average_precision_score``: ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score values
  taken as thresholds from the highest down (vessel where ``score >= s_k``; tied pixels enter
  together), with ``R_0 = 0``; the step-wise area under the precision-recall curve (the
  definition of scikit-learn's ``average_precision_score``).

An image whose pixels (inside the ROI) are all of one class has no defined AUC (and no AP
without vessel pixels): its value is NaN. ``roi``, when given, restricts each image to the
pixels where it is true.
"""

from __future__ import annotations

import torch

from darlkit.metrics.segmentation import _binarize_target, _check_shape

__all__ = ["auc_roc_score", "average_precision_score", "masked_pixels"]


def masked_pixels(
    pred: torch.Tensor, target: torch.Tensor, roi: torch.Tensor | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image, the scores and bool targets of the pixels inside the ROI.

    Args:
        pred: Scores (N, 1, H, W) or (N, H, W), real, no NaN.
        target: Binary ground truth of the same shape (bool or 0/1 values).
        roi: Optional binary mask of the same shape (bool or 0/1); pixels where it is 0 are dropped.

    Returns:
        N pairs ``(scores float64 (K_i,), target bool (K_i,))``.

    Raises:
        ValueError: On shape mismatches, NaN scores or non-binary target / roi.
        TypeError: On a non-tensor or a complex/bool ``pred``.
    """
    if not isinstance(pred, torch.Tensor):
        raise TypeError(f"pred must be a torch.Tensor, got {type(pred).__name__}")
    _check_shape(pred, "pred")
    if pred.is_complex():
        raise TypeError(f"pred must be a real tensor, got dtype {pred.dtype}")
    scores = pred.to(torch.float64)
    if bool(torch.isnan(scores).any()):
        raise ValueError("pred contains NaN")
    g = _binarize_target(target)
    if g.shape != pred.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} must equal target shape {tuple(g.shape)}")
    n = pred.shape[0]
    scores, g = scores.reshape(n, -1), g.to(scores.device).reshape(n, -1)
    if roi is None:
        return [(scores[i], g[i]) for i in range(n)]
    r = _binarize_target(roi, "roi")
    if r.shape != pred.shape:
        raise ValueError(f"roi shape {tuple(r.shape)} must equal pred shape {tuple(pred.shape)}")
    r = r.to(scores.device).reshape(n, -1)
    return [(scores[i][r[i]], g[i][r[i]]) for i in range(n)]


def _auc(scores: torch.Tensor, target: torch.Tensor) -> float:
    n_pos = int(target.sum())
    n_neg = target.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    values, order = torch.sort(scores)
    _, inverse, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)
    avg_rank = ends - (counts.to(torch.float64) - 1) / 2  # 1-based average rank of each tie group
    ranks = avg_rank[inverse]
    pos_rank_sum = float(ranks[target[order]].sum())
    return (pos_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _ap(scores: torch.Tensor, target: torch.Tensor) -> float:
    n_pos = int(target.sum())
    if n_pos == 0:
        return float("nan")
    values, order = torch.sort(scores, descending=True)
    hits = target[order].to(torch.float64)
    _, counts = torch.unique_consecutive(values, return_counts=True)
    ends = torch.cumsum(counts, 0) - 1  # index of the last pixel of each tie group
    tp = torch.cumsum(hits, 0)[ends]
    predicted = (ends + 1).to(torch.float64)
    precision = tp / predicted
    recall = tp / n_pos
    steps = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return float((steps * precision).sum())


def auc_roc_score(pred: torch.Tensor, target: torch.Tensor, *, roi: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image area under the ROC curve, exact, ties counted one half.

    Args:
        pred: Continuous scores (N, 1, H, W) or (N, H, W) (higher = more vessel; DARL: [-1, 1]).
        target: Binary ground truth of the same shape (bool or 0/1 values).
        roi: Optional binary field-of-view mask of the same shape: only pixels inside count.

    Returns:
        float64 tensor (N,) in [0, 1]; NaN for an image whose (ROI) pixels are all one class.
    """
    return torch.tensor([_auc(s, t) for s, t in masked_pixels(pred, target, roi)], dtype=torch.float64)


def average_precision_score(pred: torch.Tensor, target: torch.Tensor, *, roi: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image average precision (step-wise area under the precision-recall curve), exact.

    Args:
        pred: Continuous scores (N, 1, H, W) or (N, H, W) (higher = more vessel).
        target: Binary ground truth of the same shape (bool or 0/1 values).
        roi: Optional binary field-of-view mask of the same shape: only pixels inside count.

    Returns:
        float64 tensor (N,) in [0, 1]; NaN for an image without vessel pixels (inside the ROI).
    """
    return torch.tensor([_ap(s, t) for s, t in masked_pixels(pred, target, roi)], dtype=torch.float64)
