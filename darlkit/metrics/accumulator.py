"""Accumulator of per-image segmentation metrics, reported as mean ± std over images.

This is the format of DARL's Table 1 (e.g. ``IoU 0.471 ± 0.076``): each metric is computed
per test image, then averaged over images. The standard deviation is the population
standard deviation (``ddof=0``, numpy's default) unless ``aggregate(ddof=1)`` is asked for.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable

import torch

from darlkit.metrics.ranking import auc_roc_score, average_precision_score
from darlkit.metrics.segmentation import METRIC_FUNCTIONS, _scores, confusion_counts

__all__ = ["SegmentationMetrics", "DEFAULT_METRICS", "ALL_METRICS", "RANKING_METRICS", "METRIC_DISPLAY_NAMES"]

DEFAULT_METRICS: tuple[str, ...] = ("iou", "dice", "precision", "recall", "specificity")
"""Metrics tracked by default, in report order (the paper's Table 1 shows the first three)."""

RANKING_METRICS = {"auc_roc": auc_roc_score, "average_precision": average_precision_score}
"""Threshold-free metrics (from the continuous scores; ``threshold`` does not apply)."""

ALL_METRICS: tuple[str, ...] = DEFAULT_METRICS + tuple(RANKING_METRICS)
"""Every metric name ``SegmentationMetrics`` accepts: the thresholded ones, then AUC-ROC and AP."""

METRIC_DISPLAY_NAMES = {
    "iou": "IoU",
    "dice": "Dice",
    "precision": "Precision",
    "recall": "Recall",
    "specificity": "Specificity",
    "auc_roc": "AUC-ROC",
    "average_precision": "AP",
}
"""Metric name -> display name used by ``SegmentationMetrics.format_table``."""


class SegmentationMetrics:
    """Collects per-image metric values over an evaluation and summarises them.

    Usage::

        metrics = SegmentationMetrics()
        for image, mask in loader:
            metrics.update(model.segment(image), mask)
        metrics.all_gather()  # under DDP: every rank then holds all images
        print(metrics)        # "IoU 0.471 ± 0.076" style lines

    Args:
        threshold: Decision threshold on the scores (vessel where ``pred > threshold``;
            DARL: 0 on outputs in [-1, 1]).
        metrics: Names to track, a non-empty subset of ``ALL_METRICS`` (``"iou"``, ``"dice"``,
            ``"precision"``, ``"recall"``, ``"specificity"``, and the threshold-free
            ``"auc_roc"``, ``"average_precision"``, which need continuous scores: on bool
            predictions they see only two tied levels); the order is the report order.
            AUC-ROC is NaN on an image whose pixels are all one class, AP on one without vessels.

    Raises:
        ValueError: On an unknown or repeated metric name.
    """

    def __init__(self, threshold: float = 0.0, metrics: Iterable[str] = DEFAULT_METRICS) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or math.isnan(float(threshold)):
            raise TypeError(f"threshold must be a real number, got {threshold!r}")
        if isinstance(metrics, str):
            raise TypeError("metrics must be a sequence of metric names, not a single str")
        names = tuple(metrics)
        if not names:
            raise ValueError(f"metrics must name at least one of {list(ALL_METRICS)}")
        for name in names:
            if name not in ALL_METRICS:
                raise ValueError(f"unknown metric {name!r}; expected names from {list(ALL_METRICS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"metrics must not repeat a name, got {list(names)}")
        self.threshold = float(threshold)
        self.metrics = names
        self._values: dict[str, list[float]] = {name: [] for name in names}

    def __len__(self) -> int:
        """Number of images accumulated."""
        return len(self._values[self.metrics[0]])

    def __repr__(self) -> str:
        return f"SegmentationMetrics(threshold={self.threshold}, metrics={self.metrics}, n={len(self)})"

    def reset(self) -> None:
        """Drop every accumulated value."""
        self._values = {name: [] for name in self.metrics}

    def update(self, pred: torch.Tensor, target: torch.Tensor, roi: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Score a batch and append its per-image values.

        Args:
            pred: Scores (N, 1, H, W) or (N, H, W) (vessel where ``pred > threshold``) or bool.
            target: Binary ground truth of the same shape (bool or 0/1 values).
            roi: Optional binary field-of-view mask of the same shape (bool or 0/1): every
                metric is computed on the pixels inside it only.

        Returns:
            Dict metric name -> float64 tensor (N,) of this batch's values.
        """
        counts = confusion_counts(pred, target, self.threshold, roi=roi)
        batch = {
            name: RANKING_METRICS[name](pred, target, roi=roi) if name in RANKING_METRICS else _scores(name, *counts)
            for name in self.metrics
        }
        for name, values in batch.items():
            self._values[name].extend(values.cpu().tolist())
        return batch

    def per_image(self) -> dict[str, torch.Tensor]:
        """Every accumulated value.

        Returns:
            Dict metric name -> float64 CPU tensor of shape (n,), in update order (after
            ``merge``/``all_gather``: in merge/rank order).
        """
        return {name: torch.tensor(vals, dtype=torch.float64) for name, vals in self._values.items()}

    def aggregate(self, ddof: int = 0) -> dict[str, dict[str, float]]:
        """Mean and standard deviation over images.

        Args:
            ddof: Delta degrees of freedom of the std: 0 (default) is the population std
                ``sqrt(sum((v - mean)^2) / n)``, 1 the sample std.

        Returns:
            Dict metric name -> ``{"mean": float, "std": float, "n": int}``. With no images
            (or n <= ddof for the std) the undefined entries are NaN.
        """
        if isinstance(ddof, bool) or not isinstance(ddof, numbers.Integral) or ddof < 0:
            raise ValueError(f"ddof must be an int >= 0, got {ddof!r}")
        out: dict[str, dict[str, float]] = {}
        for name, vals in self._values.items():
            n = len(vals)
            v = torch.tensor(vals, dtype=torch.float64)
            mean = float(v.mean()) if n else float("nan")
            std = float(((v - v.mean()) ** 2).sum() / (n - ddof)) ** 0.5 if n > ddof else float("nan")
            out[name] = {"mean": mean, "std": std, "n": n}
        return out

    def format_table(self, digits: int = 3, ddof: int = 0) -> str:
        """One line per metric, e.g. ``"IoU 0.471 ± 0.076"``.

        Args:
            digits: Decimal places.
            ddof: Passed to ``aggregate``.

        Returns:
            The lines joined with newlines, followed by ``"(n = <images>)"``.
        """
        if isinstance(digits, bool) or not isinstance(digits, numbers.Integral) or digits < 0:
            raise ValueError(f"digits must be an int >= 0, got {digits!r}")
        agg = self.aggregate(ddof=ddof)
        lines = [
            f"{METRIC_DISPLAY_NAMES[name]} {res['mean']:.{digits}f} ± {res['std']:.{digits}f}"
            for name, res in agg.items()
        ]
        lines.append(f"(n = {len(self)})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_table()

    def merge(self, other: "SegmentationMetrics") -> "SegmentationMetrics":
        """Append another accumulator's values (e.g. from another worker) to this one.

        Args:
            other: An accumulator tracking the same metrics with the same threshold.

        Returns:
            ``self``.

        Raises:
            ValueError: If the metrics or thresholds differ.
        """
        if not isinstance(other, SegmentationMetrics):
            raise TypeError(f"other must be a SegmentationMetrics, got {type(other).__name__}")
        if other.metrics != self.metrics or other.threshold != self.threshold:
            raise ValueError(
                f"cannot merge: metrics/threshold differ ({other.metrics}, {other.threshold}) vs "
                f"({self.metrics}, {self.threshold})"
            )
        snapshot = {name: list(vals) for name, vals in other._values.items()}
        for name, vals in snapshot.items():
            self._values[name].extend(vals)
        return self

    def state_dict(self) -> dict[str, object]:
        """Plain-python snapshot: threshold, metric names and per-image values."""
        return {
            "threshold": self.threshold,
            "metrics": list(self.metrics),
            "values": {k: list(v) for k, v in self._values.items()},
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore a ``state_dict()`` snapshot (metrics and threshold must match).

        Args:
            state: A dict from ``state_dict()`` (plain python, so JSON round trips work).

        Raises:
            ValueError: If the snapshot's metrics or threshold differ from this accumulator's.
        """
        if tuple(state["metrics"]) != self.metrics or float(state["threshold"]) != self.threshold:
            raise ValueError("state metrics/threshold do not match this accumulator")
        values = state["values"]
        lengths = {len(values[name]) for name in self.metrics}
        if len(lengths) != 1:
            raise ValueError("state values must have one entry per image for every metric")
        self._values = {name: [float(v) for v in values[name]] for name in self.metrics}

    def all_gather(self, group: object = None) -> "SegmentationMetrics":
        """Gather every rank's per-image values so each rank holds all of them (DDP).

        Uses ``torch.distributed.all_gather_object`` (any backend; a collective every rank
        of ``group`` must call). Values are concatenated in rank order. Without an
        initialised process group this does nothing. Note that ``DistributedSampler`` pads
        the dataset to a multiple of the world size, so a few images may be counted twice
        unless the evaluation loop avoids the padding.

        Args:
            group: Optional process group (default: the world).

        Returns:
            ``self``.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        world = dist.get_world_size(group=group)
        gathered: list[object] = [None] * world
        dist.all_gather_object(gathered, self.state_dict(), group=group)
        merged = {name: [] for name in self.metrics}
        for state in gathered:
            if tuple(state["metrics"]) != self.metrics or float(state["threshold"]) != self.threshold:
                raise ValueError("all_gather: ranks track different metrics or thresholds")
            for name in self.metrics:
                merged[name].extend(state["values"][name])
        self._values = merged
        return self
