"""Vessel segmentation metrics, per image, and their mean ± std accumulator.

- ``confusion_counts``, ``iou_score``, ``dice_score``, ``precision_score``,
  ``recall_score``, ``specificity_score``: per-image values (N,) from scores or masks.
- ``SegmentationMetrics``: accumulates per-image values over an evaluation and reports
  mean ± std over images (the paper's Table 1 format); DDP-mergeable.
"""

from darlkit.metrics.accumulator import DEFAULT_METRICS, METRIC_DISPLAY_NAMES, SegmentationMetrics
from darlkit.metrics.segmentation import (
    METRIC_FUNCTIONS,
    confusion_counts,
    dice_score,
    iou_score,
    precision_score,
    recall_score,
    specificity_score,
)

__all__ = [
    "confusion_counts",
    "iou_score",
    "dice_score",
    "precision_score",
    "recall_score",
    "specificity_score",
    "METRIC_FUNCTIONS",
    "SegmentationMetrics",
    "DEFAULT_METRICS",
    "METRIC_DISPLAY_NAMES",
]
