"""Dice at the threshold that maximises the mean Dice over a test set (a peer protocol, not DARL's).

Some papers report Dice at the single decision threshold that gives the best mean Dice over
the test images. That threshold is chosen on the test labels themselves, so the number is
optimistic; darlkit reports it only when asked, always under its own name
(``dice_at_best_threshold``), and never instead of the default (vessel where the output > 0).

The search is over a fixed grid of thresholds (default: ``-1, -0.99, ..., 1``, 201 values, for
DARL's outputs in [-1, 1]); a pixel is vessel where ``score > threshold``. For every image and
every grid threshold the Dice is exact (counts from the sorted scores); the reported threshold is
the grid value with the highest mean Dice (the lowest such value on ties).
"""

from __future__ import annotations

import math

import torch

from darlkit.metrics.ranking import masked_pixels

__all__ = ["DiceThresholdSweep", "DEFAULT_SWEEP_THRESHOLDS"]

DEFAULT_SWEEP_THRESHOLDS: tuple[float, ...] = tuple(round(-1.0 + 0.01 * k, 2) for k in range(201))
"""The default threshold grid of ``DiceThresholdSweep``: -1 to 1 in steps of 0.01."""


def dice_per_threshold(scores: torch.Tensor, target: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Exact Dice of one image at every threshold (vessel where ``score > t``).

    Args:
        scores: float64 (K,) scores of the image's pixels.
        target: bool (K,) ground truth.
        thresholds: float64 (G,) thresholds.

    Returns:
        float64 (G,): ``2 tp / (2 tp + fp + fn)``, 1.0 where prediction and target are both empty.
    """
    pos, _ = torch.sort(scores[target])
    neg, _ = torch.sort(scores[~target])
    tp = pos.numel() - torch.searchsorted(pos, thresholds, right=True)
    fp = neg.numel() - torch.searchsorted(neg, thresholds, right=True)
    fn = pos.numel() - tp
    num, den = (2 * tp).to(torch.float64), (2 * tp + fp + fn).to(torch.float64)
    return torch.where(den == 0, torch.ones_like(num), num / den.clamp_min(1.0))


class DiceThresholdSweep:
    """Accumulates per-image Dice over a threshold grid; reports the best mean and its threshold.

    Usage::

        sweep = DiceThresholdSweep()
        for image, mask in loader:
            sweep.update(model.segment(image), mask)
        sweep.best()  # {"threshold": 0.12, "mean": ..., "std": ..., "n": ...}

    Args:
        thresholds: Increasing grid of thresholds (default ``DEFAULT_SWEEP_THRESHOLDS``).

    Raises:
        ValueError: If the grid is empty, not finite or not strictly increasing.
    """

    def __init__(self, thresholds: tuple[float, ...] | list[float] = DEFAULT_SWEEP_THRESHOLDS) -> None:
        grid = torch.as_tensor(list(thresholds), dtype=torch.float64)
        if grid.dim() != 1 or grid.numel() == 0 or not bool(torch.isfinite(grid).all()):
            raise ValueError("thresholds must be a non-empty sequence of finite numbers")
        if grid.numel() > 1 and not bool((grid[1:] > grid[:-1]).all()):
            raise ValueError("thresholds must be strictly increasing")
        self.thresholds = grid
        self._dice: list[torch.Tensor] = []

    def __len__(self) -> int:
        """Number of images accumulated."""
        return len(self._dice)

    def update(self, pred: torch.Tensor, target: torch.Tensor, roi: torch.Tensor | None = None) -> None:
        """Add a batch.

        Args:
            pred: Continuous scores (N, 1, H, W) or (N, H, W).
            target: Binary ground truth of the same shape (bool or 0/1 values).
            roi: Optional binary field-of-view mask of the same shape.
        """
        grid = self.thresholds
        if isinstance(pred, torch.Tensor) and pred.is_floating_point():
            grid = grid.to(pred.dtype).to(torch.float64)  # compare in pred's precision, as dice_score does
        for scores, g in masked_pixels(pred, target, roi):
            self._dice.append(dice_per_threshold(scores.cpu(), g.cpu(), grid))

    def mean_dice(self) -> torch.Tensor:
        """Mean Dice over images at every grid threshold: float64 (G,) (NaN with no images)."""
        if not self._dice:
            return torch.full_like(self.thresholds, float("nan"))
        return torch.stack(self._dice).mean(dim=0)

    def best(self) -> dict[str, float]:
        """The grid threshold with the highest mean Dice, and the per-image Dice there.

        Returns:
            ``{"threshold": float, "mean": float, "std": float (population, ddof 0), "n": int}``;
            NaN entries with no images.
        """
        n = len(self._dice)
        if not n:
            return {"threshold": float("nan"), "mean": float("nan"), "std": float("nan"), "n": 0}
        mean = self.mean_dice()
        k = int(torch.argmax(mean))  # first maximum: the lowest threshold on ties
        at = torch.stack(self._dice)[:, k]
        std = float(((at - at.mean()) ** 2).mean())
        return {"threshold": float(self.thresholds[k]), "mean": float(mean[k]), "std": math.sqrt(std), "n": n}
