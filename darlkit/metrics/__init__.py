"""Vessel segmentation metrics, per image, and their mean ± std accumulator.

- ``confusion_counts``, ``iou_score``, ``dice_score``, ``precision_score``,
  ``recall_score``, ``specificity_score``: per-image values (N,) from scores or masks,
  optionally inside a field-of-view mask (``roi=``).
- ``auc_roc_score``, ``average_precision_score``: exact threshold-free per-image values from
  continuous scores (ties handled), optionally inside an ROI.
- ``SegmentationMetrics``: accumulates per-image values over an evaluation and reports
  mean ± std over images (the paper's Table 1 format); DDP-mergeable.
- ``DiceThresholdSweep``: Dice at the threshold maximising the mean Dice (a peer protocol,
  reported only on request and under its own name).
"""

from darlkit.metrics.accumulator import ALL_METRICS, DEFAULT_METRICS, METRIC_DISPLAY_NAMES, RANKING_METRICS, SegmentationMetrics
from darlkit.metrics.ranking import auc_roc_score, average_precision_score
from darlkit.metrics.segmentation import *  # noqa: F403 - its __all__ is re-exported whole (below)
from darlkit.metrics.segmentation import __all__ as _segmentation_names
from darlkit.metrics.sweep import DEFAULT_SWEEP_THRESHOLDS, DiceThresholdSweep

__all__ = [
    *_segmentation_names,
    "auc_roc_score",
    "average_precision_score",
    "RANKING_METRICS",
    "SegmentationMetrics",
    "DEFAULT_METRICS",
    "ALL_METRICS",
    "METRIC_DISPLAY_NAMES",
    "DiceThresholdSweep",
    "DEFAULT_SWEEP_THRESHOLDS",
]
