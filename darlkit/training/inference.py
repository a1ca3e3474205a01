"""Using a trained run: load a checkpoint as a model, read/write PNGs, evaluate a test split."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from darlkit.model.inference import segment_image
from darlkit.training.checkpoint import load_checkpoint
from darlkit.training.config import TrainConfig
from darlkit.training.networks import build_networks

__all__ = [
    "load_trained_model",
    "read_png",
    "write_png",
    "add_gaussian_noise",
    "evaluate_model",
]


def load_trained_model(
    checkpoint: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    use_ema: bool | None = None,
) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the DARL model of a training checkpoint, in eval mode.

    Args:
        checkpoint: ``last.pt`` / ``best.pt`` written by ``DARLTrainer``.
        device: Device to put the model on.
        use_ema: Load the EMA weights (default: what the run's ``eval_ema`` says; an error if
            ``True`` and the checkpoint has no EMA).

    Returns:
        ``(model, config)``: the ``DARL`` model and the run's :class:`TrainConfig`.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not a darlkit checkpoint or lacks the requested EMA.
    """
    state = load_checkpoint(checkpoint, map_location="cpu")
    try:
        config = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"checkpoint {checkpoint} has an invalid config: {exc}") from None
    model = build_networks(config)[0]  # the discriminators are freed at once
    if use_ema is None:
        use_ema = bool(config.eval_ema and state.get("ema") is not None)
    if use_ema:
        ema = state.get("ema")
        if ema is None:
            raise ValueError(f"checkpoint {checkpoint} has no EMA weights (train with an EMA decay)")
        prefix = "module."
        weights = {k[len(prefix):]: v for k, v in ema.items() if k.startswith(prefix)}
        # Buffers (spectral-norm vectors, schedules) are not averaged: take the live ones.
        for k, v in state["model"].items():
            weights.setdefault(k, v)
    else:
        weights = state["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"checkpoint {checkpoint} does not match its configuration: {first}") from None
    del state, weights
    _return_free_heap()
    return model.to(device).eval(), config


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
) -> dict[str, dict[str, float]]:
    """Per-image IoU / Dice / precision (and recall, specificity), mean and std over images.

    Args:
        model: A ``DARL`` model in eval mode.
        dataset: Test items ``{"image": (1, H, W) in [-1, 1], "mask": (1, H, W) in {0, 1}}``.
        image_size: The model's training crop side (sets ``segment_image``'s default tile).
        t: Diffusion step for the one-step segmentation.
        threshold: Vessel where the [-1, 1] output is above this.
        noise_sigma: Gaussian noise sigma on the 0-255 scale added to each test image (0: none).
        seed: Seed of the noise (image ``i`` uses the generator seeded with ``(seed, i)``).
        device: Device for the forward passes.
        max_images: Evaluate at most this many images.
        polyphase: ``"auto"``, ``True`` or ``False`` (see ``segment_image``).

    Returns:
        ``{metric: {"mean", "std", "n"}}`` as ``SegmentationMetrics.aggregate``.
    """
    from darlkit.metrics import SegmentationMetrics

    acc = SegmentationMetrics(threshold=threshold)
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    for i in range(n):
        item = dataset[i]
        image = item["image"].unsqueeze(0).float()
        if noise_sigma:
            g = torch.Generator().manual_seed(int(seed) * 1_000_003 + i)
            image = add_gaussian_noise(image, noise_sigma, g)
        pred = segment_image(model, image.to(device), image_size=image_size, t=t, polyphase=polyphase)
        acc.update(pred.cpu(), item["mask"].unsqueeze(0).float())
    return acc.aggregate()
