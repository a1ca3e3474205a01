"""Validation during training: segment a test split, aggregate the metrics, track the best step."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["ValidationHistory", "run_validation"]


def _iter_items(data: Dataset | DataLoader) -> Iterator[dict[str, Any]]:
    if isinstance(data, DataLoader):
        yield from data
        return
    for i in range(len(data)):
        yield data[i]


@torch.no_grad()
def run_validation(
    model: nn.Module,
    val_data: Dataset | DataLoader,
    *,
    segment: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    to_device: Callable[[torch.Tensor], torch.Tensor],
    threshold: float,
    max_images: int | None,
    figure_rows: int,
) -> dict[str, Any]:
    """Segment the items of ``val_data`` and compute IoU / Dice / precision (mean, std over images).

    Items with an ``"roi"`` are scored inside it (``XCADDataset`` test/val splits with ``roi/``).

    The model is put in eval mode for the pass and restored to its previous mode afterwards.

    Args:
        model: The model to evaluate (e.g. ``DARL`` or its EMA copy).
        val_data: Items ``{"image": (1, H, W) in [-1, 1], "mask": (1, H, W) in {0, 1}, ...}``
            (a Dataset, or a DataLoader whose batches are such dicts with a batch dim); an item
            with ``"roi"`` (1, H, W) in {0, 1} is scored inside that field of view only.
        segment: ``segment(model, image)``: (N, 1, H, W) in [-1, 1] -> vessel maps of the same
            shape in [-1, 1].
        to_device: Moves an image batch to the evaluation device.
        threshold: Binarisation threshold of the predictions (in [-1, 1]).
        max_images: Use at most this many images (``None``: all).
        figure_rows: Keep up to this many (image, prediction, truth) triples for the figure.

    Returns:
        ``{"metrics": {name: {"mean", "std", "n"}}, "examples": [(image, pred, truth), ...]}``
        with CPU tensors of shape (1, H, W). Besides the segmentation metrics,
        ``metrics["vessel_fraction"]`` is the share of pixels predicted as vessel (per image,
        in [0, 1]; what :class:`~darlkit.training.CollapseMonitor` watches).
    """
    from darlkit.metrics import SegmentationMetrics

    was_training = model.training
    model.eval()
    acc = SegmentationMetrics(threshold=threshold)
    examples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    fractions: list[float] = []
    seen = 0
    for item in _iter_items(val_data):
        if max_images is not None and seen >= max_images:
            break
        image = to_device(item["image"].unsqueeze(0) if item["image"].dim() == 3 else item["image"])
        target = item["mask"]
        target = target.unsqueeze(0) if target.dim() == 3 else target
        pred = segment(model, image).cpu()
        roi = item.get("roi")
        if roi is not None:  # a field of view (``roi/`` folder): metrics inside it only
            roi = (roi.unsqueeze(0) if roi.dim() == 3 else roi) > 0
        acc.update(pred, target.float(), roi=roi)
        fractions += (pred > threshold).float().flatten(1).mean(1).tolist()
        for k in range(image.shape[0]):
            if len(examples) < figure_rows:
                examples.append((image[k].float().cpu(), pred[k], target[k].float()))
        seen += image.shape[0]
    model.train(was_training)
    metrics = acc.aggregate()
    if fractions:
        f = torch.tensor(fractions, dtype=torch.float64)
        metrics["vessel_fraction"] = {"mean": float(f.mean()), "std": float(f.std(unbiased=False)), "n": len(fractions)}
    return {"metrics": metrics, "examples": examples}


class ValidationHistory:
    """The validation records of a run and its best step (highest mean Dice; NaN never wins).

    Attributes:
        records: One dict per validation, in order (``{"step", "time", "<metric>_mean",
            "<metric>_std", ..., "n"}``).
        best_dice: Best mean Dice so far (``-inf`` before the first finite one).
        best_step: Step of ``best_dice`` (``-1`` before it).
    """

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.best_dice = -math.inf
        self.best_step = -1

    @property
    def last_step(self) -> int | None:
        """Step of the latest record (``None`` before the first)."""
        return self.records[-1]["step"] if self.records else None

    def add(self, step: int, metrics: dict[str, dict[str, float]], elapsed: float) -> tuple[dict[str, Any], bool]:
        """Record one validation.

        Args:
            step: Training step of the validation.
            metrics: ``{name: {"mean", "std", "n"}}`` from :func:`run_validation`.
            elapsed: Seconds since the start of ``fit`` (rounded to ms in the record).

        Returns:
            ``(record, improved)``: the flat record and whether its Dice is a new best.
        """
        record: dict[str, Any] = {"step": step, "time": round(elapsed, 3)}
        for name, stats in metrics.items():
            record[f"{name}_mean"] = float(stats["mean"])
            record[f"{name}_std"] = float(stats["std"])
        record["n"] = int(next(iter(metrics.values()))["n"]) if metrics else 0
        self.records.append(record)
        dice = record.get("dice_mean", float("nan"))
        improved = dice == dice and dice > self.best_dice
        if improved:
            self.best_dice = dice
            self.best_step = step
        return record, improved
