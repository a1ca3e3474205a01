"""Per-image binary segmentation metrics: IoU, Dice, precision, recall, specificity (optionally in an ROI).

Inputs:

- ``pred``: scores of shape (N, 1, H, W) or (N, H, W). DARL's segmentation output is in
  [-1, 1] and a pixel is vessel where ``pred > threshold`` (default 0). A bool ``pred`` is
  used as the binary prediction directly (``threshold`` is ignored). NaN scores raise.
- ``target``: binary ground truth of the same shape: bool, or any numeric dtype holding
  only the values 0 and 1. Any other value (e.g. 255 or -1) raises ``ValueError``:
  convert 0/255 masks with ``mask > 0`` first.

- ``roi`` (keyword, optional): a binary field-of-view mask of the same shape (bool or 0/1);
  pixels where it is 0 are left out of every count (a fundus image's dark surround, the
  collimated border of an X-ray).

Each function returns a float64 tensor of shape (N,), one value per image.

Zero-denominator convention (an image where the quantity is undefined): the score is
1.0 when the prediction equals the target on that image and 0.0 otherwise. Concretely:

- IoU, Dice: pred and target both empty -> 1.0.
- Precision (no predicted vessel): 1.0 if the target is empty, else 0.0.
- Recall (empty target): 1.0 if the prediction is empty, else 0.0.
- Specificity (target all vessel): 1.0 if the prediction is all vessel, else 0.0.
"""

from __future__ import annotations

import numbers

import torch

__all__ = [
    "confusion_counts",
    "iou_score",
    "dice_score",
    "precision_score",
    "recall_score",
    "specificity_score",
    "METRIC_FUNCTIONS",
]


def _check_shape(x: torch.Tensor, name: str) -> None:
    ok = x.dim() == 3 or (x.dim() == 4 and x.shape[1] == 1)
    if not ok:
        raise ValueError(f"{name} must have shape (N, 1, H, W) or (N, H, W), got {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one image, got shape {tuple(x.shape)}")


def _binarize_pred(pred: object, threshold: float) -> torch.Tensor:
    if not isinstance(pred, torch.Tensor):
        raise TypeError(f"pred must be a torch.Tensor, got {type(pred).__name__}")
    _check_shape(pred, "pred")
    if pred.dtype == torch.bool:
        return pred
    if pred.is_complex():
        raise TypeError(f"pred must be a real or bool tensor, got dtype {pred.dtype}")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a real number, got {type(threshold).__name__}")
    if pred.is_floating_point() and bool(torch.isnan(pred).any()):
        raise ValueError("pred contains NaN")
    return pred > threshold


def _binarize_target(target: object, name: str = "target") -> torch.Tensor:
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(target).__name__}")
    _check_shape(target, name)
    if target.dtype == torch.bool:
        return target
    if target.is_complex():
        raise TypeError(f"{name} must be a real or bool tensor, got dtype {target.dtype}")
    is_one = target == 1
    if not bool(((target == 0) | is_one).all()):
        bad = target[(target != 0) & ~is_one].flatten()[0].item()
        raise ValueError(f"{name} must be binary (bool, or only the values 0 and 1), found value {bad}")
    return is_one


def _prepare(pred: object, target: object, threshold: float, roi: object = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    p = _binarize_pred(pred, threshold)
    g = _binarize_target(target)
    if p.shape != g.shape:
        raise ValueError(f"pred shape {tuple(p.shape)} must equal target shape {tuple(g.shape)}")
    if p.device != g.device:
        g = g.to(p.device)
    r = None
    if roi is not None:
        r = _binarize_target(roi, "roi")
        if r.shape != p.shape:
            raise ValueError(f"roi shape {tuple(r.shape)} must equal pred shape {tuple(p.shape)}")
        r = r.to(p.device).reshape(p.shape[0], -1)
    return p.reshape(p.shape[0], -1), g.reshape(g.shape[0], -1), r


def confusion_counts(
    pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.0, *, roi: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image true/false positives/negatives (inside the ROI when one is given).

    Args:
        pred: Scores (N, 1, H, W) or (N, H, W) (vessel where ``pred > threshold``) or bool.
        target: Binary ground truth of the same shape (bool or 0/1 values).
        threshold: Decision threshold on ``pred`` (DARL: 0 on outputs in [-1, 1]).
        roi: Optional binary field-of-view mask of the same shape (bool or 0/1): pixels where
            it is 0 are not counted at all.

    Returns:
        ``(tp, fp, fn, tn)``, each an int64 tensor of shape (N,) on pred's device.

    Raises:
        ValueError: On a shape mismatch, NaN in ``pred`` or a non-binary ``target``.
        TypeError: If an argument is not a tensor of a supported dtype.
    """
    p, g, r = _prepare(pred, target, threshold, roi)
    inside = torch.ones_like(p) if r is None else r
    tp = (p & g & inside).sum(dim=1)
    fp = (p & ~g & inside).sum(dim=1)
    fn = (~p & g & inside).sum(dim=1)
    tn = (~p & ~g & inside).sum(dim=1)
    return tp, fp, fn, tn


def _ratio(num: torch.Tensor, den: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """num / den in float64, with 1.0 where den == 0 and exact, 0.0 where den == 0 and not exact."""
    num = num.to(torch.float64)
    den = den.to(torch.float64)
    value = num / den.clamp_min(1.0)
    return torch.where(den == 0, exact.to(torch.float64), value)


def _scores(name: str, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, tn: torch.Tensor) -> torch.Tensor:
    exact = (fp == 0) & (fn == 0)
    if name == "iou":
        return _ratio(tp, tp + fp + fn, exact)
    if name == "dice":
        return _ratio(2 * tp, 2 * tp + fp + fn, exact)
    if name == "precision":
        return _ratio(tp, tp + fp, exact)
    if name == "recall":
        return _ratio(tp, tp + fn, exact)
    if name == "specificity":
        return _ratio(tn, tn + fp, exact)
    raise ValueError(f"unknown metric {name!r}; expected one of {list(METRIC_FUNCTIONS)}")


def iou_score(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.0, *, roi: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image intersection over union (Jaccard index) ``tp / (tp + fp + fn)``.

    Args:
        pred: Scores (N, 1, H, W) or (N, H, W) (vessel where ``pred > threshold``) or bool.
        target: Binary ground truth of the same shape (bool or 0/1 values).
        threshold: Decision threshold on ``pred``.
        roi: Optional binary field-of-view mask of the same shape: only pixels inside count.

    Returns:
        float64 tensor of shape (N,) in [0, 1]; 1.0 where pred and target are both empty.
    """
    return _scores("iou", *confusion_counts(pred, target, threshold, roi=roi))


def dice_score(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.0, *, roi: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image Dice coefficient (F1) ``2 tp / (2 tp + fp + fn)``.

    Args:
        pred: Scores (N, 1, H, W) or (N, H, W) (vessel where ``pred > threshold``) or bool.
        target: Binary ground truth of the same shape (bool or 0/1 values).
        threshold: Decision threshold on ``pred``.
        roi: Optional binary field-of-view mask of the same shape: only pixels inside count.

    Returns:
        float64 tensor of shape (N,) in [0, 1]; 1.0 where pred and target are both empty.
    """
    return _scores("dice", *confusion_counts(pred, target, threshold, roi=roi))


def precision_score(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.0, *, roi: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image precision ``tp / (tp + fp)``.

    Args:
        pred: Scores (N, 1, H, W) or (N, H, W) (vessel where ``pred > threshold``) or bool.
        target: Binary ground truth of the same shape (bool or 0/1 values).
        threshold: Decision threshold on ``pred``.
        roi: Optional binary field-of-view mask of the same shape: only pixels inside count.

    Returns:
        float64 tensor of shape (N,) in [0, 1]; where nothing is predicted: 1.0 if the
        target is empty, else 0.0.
    """
    return _scores("precision", *confusion_counts(pred, target, threshold, roi=roi))


def recall_score(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.0, *, roi: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image recall (sensitivity) ``tp / (tp + fn)``.

    Args:
        pred: Scores (N, 1, H, W) or (N, H, W) (vessel where ``pred > threshold``) or bool.
        target: Binary ground truth of the same shape (bool or 0/1 values).
        threshold: Decision threshold on ``pred``.
        roi: Optional binary field-of-view mask of the same shape: only pixels inside count.

    Returns:
        float64 tensor of shape (N,) in [0, 1]; where the target is empty: 1.0 if nothing
        is predicted, else 0.0.
    """
    return _scores("recall", *confusion_counts(pred, target, threshold, roi=roi))


def specificity_score(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.0, *, roi: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image specificity ``tn / (tn + fp)``.

    Args:
        pred: Scores (N, 1, H, W) or (N, H, W) (vessel where ``pred > threshold``) or bool.
        target: Binary ground truth of the same shape (bool or 0/1 values).
        threshold: Decision threshold on ``pred``.
        roi: Optional binary field-of-view mask of the same shape: only pixels inside count.

    Returns:
        float64 tensor of shape (N,) in [0, 1]; where the target is all vessel: 1.0 if the
        prediction is all vessel too, else 0.0.
    """
    return _scores("specificity", *confusion_counts(pred, target, threshold, roi=roi))


METRIC_FUNCTIONS = {
    "iou": iou_score,
    "dice": dice_score,
    "precision": precision_score,
    "recall": recall_score,
    "specificity": specificity_score,
}
"""Metric name -> per-image function; the names accepted by ``SegmentationMetrics(metrics=...)``."""
