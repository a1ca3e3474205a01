"""``darlkit evaluate``: Table 1 / Table 2 style metrics of a checkpoint on a test split.

Table 1: IoU, Dice and precision per test image, reported as mean ± std over images.
Table 2 (``--noise-sigma 10 25 50``): the same after adding Gaussian noise of that sigma on
the 0-255 intensity scale to every test image (seeded with ``--seed``; clipped to the
valid intensity range).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from darlkit.cli import CLIError, argtypes

__all__ = ["add_parser", "run", "evaluate_checkpoint", "format_tables"]

_SHOWN = ("iou", "dice", "precision")
_NAMES = {"iou": "IoU", "dice": "Dice", "precision": "Precision"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``darlkit evaluate``.

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers``.

    Returns:
        The sub-command's parser.
    """
    p = subparsers.add_parser(
        "evaluate",
        help="IoU / Dice / precision of a checkpoint on a test split",
        description="Evaluate a checkpoint on DATA/test (images + masks): Table 1 and, with --noise-sigma, Table 2.",
    )
    p.add_argument("--data", type=Path, required=True, help="XCAD-layout folder with test/images and test/masks")
    p.add_argument("--checkpoint", type=Path, required=True, help="last.pt / best.pt of a training run, or a model folder (DARL.save_pretrained)")
    p.add_argument("--noise-sigma", type=argtypes.non_negative_float, nargs="+", default=None, metavar="SIGMA",
                   help="also evaluate with Gaussian noise of these sigmas (0-255 scale), e.g. 10 25 50")
    p.add_argument("--seed", type=argtypes.non_negative_int, default=0, help="seed of the noise (default 0)")
    p.add_argument("--t", type=argtypes.non_negative_int, default=0, help="diffusion step for segmentation (default 0)")
    p.add_argument("--threshold", type=argtypes.threshold, default=0.0, help="vessel where output > threshold (default 0)")
    p.add_argument("--max-images", type=int, default=None, help="evaluate at most this many images")
    p.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    p.add_argument("--device", default="cpu", help="device (default cpu)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(run=run)
    return p


def evaluate_checkpoint(
    data: Path,
    checkpoint: Path,
    *,
    noise_sigmas: list[float] | None = None,
    seed: int = 0,
    t: int = 0,
    threshold: float = 0.0,
    max_images: int | None = None,
    use_ema: bool | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Evaluate a checkpoint on ``data/test``.

    Args:
        data: XCAD-layout folder.
        checkpoint: Training checkpoint.
        noise_sigmas: Noise levels (0-255 scale) for Table 2 rows.
        seed: Noise seed.
        t: Diffusion step for segmentation.
        threshold: Decision threshold on the [-1, 1] output.
        max_images: Evaluate at most this many images.
        use_ema: Use EMA weights (``None``: the run's default).
        device: Torch device name.

    Returns:
        ``{"checkpoint", "data", "n_images", "clean": {metric: {mean, std, n}},
        "noise": {sigma: {metric: {mean, std, n}}}}``.
    """
    from darlkit.data import XCADDataset
    from darlkit.training import evaluate_model, load_trained_model

    if not data.is_dir():
        raise CLIError(f"--data: dataset folder not found: {data}")
    for sub in ("test/images", "test/masks"):
        if not (data / sub).is_dir():
            raise CLIError(f"--data {data}: missing folder {sub}")
    if not (checkpoint.is_file() or checkpoint.is_dir()):
        raise CLIError(f"--checkpoint: file not found (nor a model folder): {checkpoint}")
    if max_images is not None and max_images < 1:
        raise CLIError(f"--max-images must be a positive integer, got {max_images}")
    model, config = load_trained_model(checkpoint, device=device, use_ema=use_ema)
    if t >= config.num_timesteps:
        raise CLIError(f"--t must be < {config.num_timesteps}, got {t}")
    dataset = XCADDataset(data, split="test")
    if len(dataset) == 0:
        raise CLIError(f"--data {data}: test/images holds no images")
    kw = dict(image_size=config.image_size, t=t, threshold=threshold, seed=seed, device=device, max_images=max_images)
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "n_images": len(dataset) if max_images is None else min(len(dataset), max_images),
        "clean": evaluate_model(model, dataset, **kw),
        "noise": {},
    }
    for sigma in noise_sigmas or []:
        result["noise"][f"{sigma:g}"] = evaluate_model(model, dataset, noise_sigma=sigma, **kw)
    return result


def format_tables(result: dict[str, Any]) -> str:
    """Markdown tables in the style of the paper's Table 1 and Table 2.

    Args:
        result: The dict from :func:`evaluate_checkpoint`.

    Returns:
        The tables as text.
    """

    def cells(metrics: dict[str, dict[str, float]]) -> str:
        return " | ".join(f"{metrics[m]['mean']:.3f} ± {metrics[m]['std']:.3f}" for m in _SHOWN)

    head = " | ".join(_NAMES[m] for m in _SHOWN)
    lines = [
        f"Table 1 (n = {result['n_images']} test images, mean ± std over images)",
        "",
        f"| Method | {head} |",
        "| --- | --- | --- | --- |",
        f"| DARL ({Path(result['checkpoint']).name}) | {cells(result['clean'])} |",
    ]
    if result["noise"]:
        lines += [
            "",
            "Table 2 (Gaussian noise, sigma on the 0-255 scale)",
            "",
            f"| sigma | {head} |",
            "| --- | --- | --- | --- |",
            f"| 0 | {cells(result['clean'])} |",
        ]
        for sigma, metrics in result["noise"].items():
            lines.append(f"| {sigma} | {cells(metrics)} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Execute ``darlkit evaluate``.

    Args:
        args: Parsed arguments.

    Returns:
        Exit status 0.
    """
    result = evaluate_checkpoint(
        args.data, args.checkpoint, noise_sigmas=args.noise_sigma, seed=args.seed, t=args.t,
        threshold=args.threshold, max_images=args.max_images, use_ema=True if args.ema else None,
        device=args.device,
    )
    print(json.dumps(result, indent=2) if args.json else format_tables(result))
    return 0
