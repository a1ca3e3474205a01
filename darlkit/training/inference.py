"""Using a trained run: load a checkpoint as a model, read/write PNGs, evaluate a test split."""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from darlkit.model.inference import segment_image
from darlkit.training.checkpoint import load_checkpoint
from darlkit.training.config import TrainConfig
from darlkit.training.networks import ModelConfig

__all__ = [
    "load_trained_model",
    "read_png",
    "write_png",
    "add_gaussian_noise",
    "evaluate_model",
    "INFERENCE_KEY",
    "inference_defaults",
]

INFERENCE_KEY = "inference"
"""Checkpoint key of the calibrated inference settings (``calibrate_checkpoint``)."""


def load_trained_model(
    checkpoint: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    use_ema: bool | None = None,
) -> tuple[nn.Module, TrainConfig]:
    """Load a trained DARL model, in eval mode, with the run configuration it implies.

    Accepts everything :func:`darlkit.model.load_model` does (a model folder written by
    ``DARL.save_pretrained``, a training checkpoint, a release prefix) and also training
    checkpoints written before darlkit stored the model's configuration in them (their
    networks are rebuilt from the run configuration).

    Args:
        checkpoint: ``last.pt`` / ``best.pt`` written by ``DARLTrainer``, or a model folder, or
            a release prefix.
        device: Device to put the model on.
        use_ema: For training checkpoints: load the EMA weights (default: what the run's
            ``eval_ema`` says; an error if ``True`` and the checkpoint has no EMA).

    Returns:
        ``(model, config)``: the ``DARL`` model and the run's :class:`TrainConfig` (for a model
        folder or release: the paper's training settings with ``image_size`` the U-Net's
        nominal size, i.e. the crop side it was trained at).

    Raises:
        FileNotFoundError: If nothing exists at ``checkpoint``.
        ValueError: If it is not a darlkit checkpoint or model folder, or lacks the requested EMA.
    """
    from darlkit.model import load_model, model_from_checkpoint

    path = Path(checkpoint)
    if not path.is_file():
        model = load_model(path, map_location=device)
        side = getattr(model.unet, "image_size", None)
        return model, TrainConfig() if side is None else TrainConfig(image_size=int(side))
    state = load_checkpoint(path, map_location="cpu")
    try:
        config = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"checkpoint {checkpoint} has an invalid config: {exc}") from None
    if use_ema is None:
        use_ema = bool(config.eval_ema and state.get("ema") is not None)
    # checkpoints written before the model had a config: its networks from the flat run config
    net_config = state.get("model_config") or ModelConfig.from_checkpoint(state).darl_config(config.image_size)
    model = model_from_checkpoint(state, use_ema=use_ema, model_config=net_config, source=f"checkpoint {checkpoint}")
    del state
    _return_free_heap()
    return model.to(device).eval(), config


def inference_defaults(checkpoint: str | os.PathLike[str]) -> dict[str, Any]:
    """The decision threshold and test-time augmentation a checkpoint is segmented with by default.

    A training checkpoint calibrated after its run (``TrainConfig.calibrate_threshold``,
    :func:`~darlkit.training.calibrate_checkpoint`) stores them under :data:`INFERENCE_KEY`;
    otherwise they come from the run's configuration (``val_threshold``, ``eval_tta``). An
    exported ``.onnx`` file carries the defaults of the checkpoint it was exported from when
    ``darlkit export`` wrote them into its metadata (``threshold``, ``tta``,
    ``inference_source``); a model folder, release, or ``.onnx`` file without them gets the
    paper's rule (threshold 0, no augmentation).

    Args:
        checkpoint: ``best.pt`` / ``last.pt`` of a run, a model folder / release prefix, or an
            exported ``.onnx`` file.

    Returns:
        ``{"threshold": float in [-1, 1], "tta": "none" | "flip", "source": str}`` where
        ``source`` is ``"calibrated on <split>"``, ``"run config"``, ``"paper rule"``, or for an
        ONNX file the checkpoint's source followed by ``" (export metadata)"``.

    Raises:
        ValueError: If ``checkpoint`` is a file that is not a readable darlkit checkpoint, or an
            ONNX file whose ``threshold`` / ``tta`` metadata are invalid.
    """
    path = Path(checkpoint)
    if path.is_file() and path.suffix.lower() == ".onnx":
        return _export_defaults(path)
    if not path.is_file():
        return {"threshold": 0.0, "tta": "none", "source": "paper rule"}
    state = load_checkpoint(path, map_location="cpu")
    record, config_dict = state.get(INFERENCE_KEY), state.get("config")
    del state  # the weights and optimiser moments: give their heap back before the model is loaded
    _return_free_heap()
    if isinstance(record, dict) and "threshold" in record:
        return {"threshold": float(record["threshold"]), "tta": str(record.get("tta", "none")),
                "source": f"calibrated on {record.get('split', 'val')}"}
    try:
        config = TrainConfig.from_dict(config_dict)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"checkpoint {checkpoint} has an invalid config: {exc}") from None
    return {"threshold": float(config.val_threshold), "tta": config.eval_tta, "source": "run config"}


def _export_defaults(path: Path) -> dict[str, Any]:
    """:func:`inference_defaults` of an exported ONNX file (its metadata, else the paper's rule)."""
    from darlkit.model import read_export_metadata
    from darlkit.model.inference import TTA_MODES

    try:
        meta = read_export_metadata(path, format="onnx")
    except ImportError:  # neither onnx nor onnxruntime: the file cannot be run here either
        meta = {}
    if "threshold" not in meta:
        return {"threshold": 0.0, "tta": "none", "source": "paper rule"}
    try:
        threshold = float(meta["threshold"])
    except ValueError:
        threshold = float("nan")
    tta = meta.get("tta", "none")
    if not -1.0 <= threshold <= 1.0 or tta not in TTA_MODES:
        raise ValueError(f"{path}: invalid inference metadata threshold={meta['threshold']!r}, tta={tta!r} "
                         f"(expected a threshold in [-1, 1] and tta one of {TTA_MODES})")
    return {"threshold": threshold, "tta": tta,
            "source": f"{meta.get('inference_source', 'checkpoint')} (export metadata)"}


def _return_free_heap() -> None:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``; no-op elsewhere).

    A checkpoint's optimiser moments and discriminators are decoded into many small heap
    blocks that glibc keeps after they are freed; for the paper's networks that is ~110 MB of
    resident memory a segmentation run would otherwise carry.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def read_png(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read a grayscale PNG as a batch of one image in [-1, 1].

    Decoding and its checks are those of ``darlkit.data.read_grayscale_png`` (8-bit grayscale;
    colour is converted with a warning; 16-bit, float and non-PNG files are refused), so the
    CLI reads images exactly as the dataset does.

    Args:
        path: A ``.png`` file.

    Returns:
        Tensor of shape (1, 1, H, W), float32, in [-1, 1] (``v / 127.5 - 1``).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is not a readable 8-bit (or colour) PNG image.
    """
    from darlkit.data import read_grayscale_png, to_unit_range

    pixels = read_grayscale_png(path)
    return to_unit_range(pixels).reshape(1, 1, *pixels.shape)


def write_png(image: torch.Tensor, path: str | os.PathLike[str], *, lo: float = -1.0, hi: float = 1.0) -> Path:
    """Write a single-channel image as an 8-bit PNG.

    Args:
        image: Tensor of shape (H, W), (1, H, W) or (1, 1, H, W) with values in [lo, hi].
        path: Destination ``.png``.
        lo: Value written as 0.
        hi: Value written as 255.

    Returns:
        The written path.
    """
    from PIL import Image

    x = image.detach().float().cpu().reshape(image.shape[-2], image.shape[-1])
    arr = ((x.clamp(lo, hi) - lo) / (hi - lo) * 255.0).round().to(torch.uint8).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode="L").save(path, format="PNG")
    return path


def add_gaussian_noise(image: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``sigma`` on the 0-255 intensity scale.

    The image in [-1, 1] is the 8-bit image ``v`` scaled as ``v / 127.5 - 1``; noise
    ``n ~ N(0, sigma^2)`` is added to ``v`` before scaling, i.e. ``x + n / 127.5``, and the
    result is clipped to [-1, 1] (the valid intensity range, as for a saved noisy 8-bit image).
    This is the paper's Table 2 protocol (sigma in {10, 25, 50}).

    Args:
        image: Images (N, 1, H, W) in [-1, 1].
        sigma: Noise standard deviation on the 0-255 scale (>= 0).
        generator: CPU generator for the noise (seeded by the caller).

    Returns:
        Noisy images, same shape, in [-1, 1].

    Raises:
        ValueError: If ``sigma`` is negative or not finite.
    """
    sigma = float(sigma)
    if not (sigma >= 0.0) or sigma == float("inf"):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    noise = torch.randn(image.shape, generator=generator, dtype=torch.float32).to(image.device)
    return (image + noise * (sigma / 127.5)).clamp(-1.0, 1.0)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Any,
    *,
    image_size: int,
    t: int = 0,
    threshold: float = 0.0,
    noise_sigma: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    max_images: int | None = None,
    polyphase: str | bool = "auto",
    metrics: Sequence[str] | None = None,
    use_roi: bool = True,
    best_threshold: bool = False,
    tta: str = "none",
) -> dict[str, dict[str, float]]:
    """Per-image segmentation metrics of a model on a labelled dataset, mean and std over images.

    Args:
        model: A ``DARL`` model in eval mode.
        dataset: Items ``{"image": (1, H, W) in [-1, 1], "mask": (1, H, W) in {0, 1}}`` and
            optionally ``"roi"`` (1, H, W) in {0, 1} (as ``XCADDataset(split="test")``).
        image_size: The model's training crop side (sets ``segment_image``'s default tile).
        t: Diffusion step for the one-step segmentation.
        threshold: Vessel where the [-1, 1] output is above this.
        noise_sigma: Gaussian noise sigma on the 0-255 scale added to each test image (0: none).
        seed: Seed of the noise (image ``i`` uses the generator seeded with
            ``seed * 1_000_003 + i``).
        device: Device for the forward passes.
        max_images: Evaluate at most this many images.
        polyphase: ``"auto"``, ``True`` or ``False`` (see ``segment_image``).
        metrics: Metric names (default ``darlkit.metrics.DEFAULT_METRICS``; ``ALL_METRICS`` adds
            AUC-ROC and average precision).
        use_roi: Compute the metrics inside the items' ``"roi"`` masks when present.
        best_threshold: Add ``"dice_at_best_threshold"`` (``{mean, std, n, threshold}``): the
            Dice at the one threshold that maximises the mean Dice (a peer protocol, never the
            default).
        tta: Test-time augmentation of ``segment_image`` (``"none"`` or ``"flip"``).

    Returns:
        ``{metric: {"mean", "std", "n"}}`` as ``SegmentationMetrics.aggregate``.
    """
    from darlkit.metrics import DEFAULT_METRICS, DiceThresholdSweep, SegmentationMetrics

    acc = SegmentationMetrics(threshold=threshold, metrics=DEFAULT_METRICS if metrics is None else metrics)
    sweep = DiceThresholdSweep() if best_threshold else None
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    with torch.no_grad():
        for i in range(n):
            item = dataset[i]
            image = item["image"].unsqueeze(0).float()
            if noise_sigma:
                g = torch.Generator().manual_seed(int(seed) * 1_000_003 + i)
                image = add_gaussian_noise(image, noise_sigma, g)
            pred = segment_image(model, image.to(device), image_size=image_size, t=t, polyphase=polyphase, tta=tta).cpu()
            mask = item["mask"].unsqueeze(0).float()
            roi = item["roi"].unsqueeze(0) > 0 if use_roi and "roi" in item else None
            acc.update(pred, mask, roi)
            if sweep is not None:
                sweep.update(pred, mask, roi)
    result = acc.aggregate()
    if sweep is not None:
        result["dice_at_best_threshold"] = sweep.best()
    return result
