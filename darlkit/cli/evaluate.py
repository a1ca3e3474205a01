"""``darlkit evaluate``: Table 1 / Table 2 style metrics of a checkpoint on a test split.

Table 1: IoU, Dice and precision per test image, reported as mean ± std over images (recall,
specificity, AUC-ROC and average precision on the lines below it, and in ``--json``).
Table 2 (``--noise-sigma 10 25 50``): the same after adding Gaussian noise of that sigma on
the 0-255 intensity scale to every test image (seeded with ``--seed``; clipped to the
valid intensity range).

Field of view: when the split has a ``roi/`` folder (``darlkit prepare --roi-masks``), every
metric is computed inside the ROI masks only (``--no-roi`` ignores them). The decision rule is
vessel where the output > ``--threshold``: by default the checkpoint's (the paper's 0, or the
threshold a ``small`` run chose on its validation split after training, together with its flip
test-time augmentation; ``darlkit.training.inference_defaults``); ``--best-threshold`` also reports,
under the separate key ``dice_at_best_threshold``, the Dice at the threshold maximising the mean
Dice over the test images (chosen on the test labels, so optimistic; see
``darlkit.metrics.DiceThresholdSweep``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from darlkit.cli import CLIError, add_command, argtypes

__all__ = ["add_parser", "run", "evaluate_checkpoint", "format_tables"]

_SHOWN = ("iou", "dice", "precision")
_NAMES = {"iou": "IoU", "dice": "Dice", "precision": "Precision"}
_MORE = {"recall": "Recall", "specificity": "Specificity", "auc_roc": "AUC-ROC", "average_precision": "AP"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``darlkit evaluate`` (see :func:`darlkit.cli.add_command`)."""
    p = add_command(subparsers, "evaluate", run,
        help="IoU / Dice / precision of a checkpoint on a test split",
        description="Evaluate a checkpoint on DATA/test (images + masks): Table 1 and, with --noise-sigma, Table 2.",
    )
    p.add_argument("--data", type=Path, required=True, help="XCAD-layout folder with test/images and test/masks")
    p.add_argument("--split", choices=("test", "val"), default="test", help="split to evaluate (default test)")
    p.add_argument("--no-roi", action="store_true", help="ignore the split's roi/ field-of-view masks")
    p.add_argument("--best-threshold", action="store_true",
                   help="also report Dice at the threshold maximising the mean Dice (optimistic; never the default)")
    p.add_argument("--channel", choices=("luma", "green", "red", "blue"), default="luma",
                   help="colour reduction of colour test images (default luma)")
    p.add_argument("--checkpoint", type=Path, required=True, help="last.pt / best.pt of a training run, or a model folder (DARL.save_pretrained)")
    p.add_argument("--noise-sigma", type=argtypes.non_negative_float, nargs="+", default=None, metavar="SIGMA",
                   help="also evaluate with Gaussian noise of these sigmas (0-255 scale), e.g. 10 25 50")
    p.add_argument("--seed", type=argtypes.non_negative_int, default=0, help="seed of the noise (default 0)")
    p.add_argument("--t", type=argtypes.non_negative_int, default=0, help="diffusion step for segmentation (default 0)")
    p.add_argument("--threshold", type=argtypes.threshold, default=None,
                   help="vessel where output > threshold (default: the checkpoint's, 0 unless calibrated)")
    p.add_argument("--max-images", type=int, default=None, help="evaluate at most this many images")
    p.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    p.add_argument("--device", type=argtypes.device, default="cpu", help="device (default cpu)")
    p.add_argument("--tta", choices=argtypes.TTA_CHOICES, default=None,
                   help="test-time augmentation: none or flip (mean of the 4 flips' logits, 4x the work); "
                        "default: the checkpoint's (none unless its run config says flip)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p


def evaluate_checkpoint(
    data: Path,
    checkpoint: Path,
    *,
    noise_sigmas: list[float] | None = None,
    seed: int = 0,
    t: int = 0,
    threshold: float | None = None,
    max_images: int | None = None,
    use_ema: bool | None = None,
    device: str = "cpu",
    split: str = "test",
    use_roi: bool = True,
    best_threshold: bool = False,
    channel: str = "luma",
    tta: str | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on ``data/<split>`` (inside ``data/<split>/roi`` when present).

    Args:
        data: XCAD-layout folder.
        checkpoint: Training checkpoint.
        noise_sigmas: Noise levels (0-255 scale) for Table 2 rows.
        seed: Noise seed.
        t: Diffusion step for segmentation.
        threshold: Decision threshold on the [-1, 1] output (``None``: the checkpoint's default).
        max_images: Evaluate at most this many images.
        use_ema: Use EMA weights (``None``: the run's default).
        device: Torch device name.
        split: ``"test"`` or ``"val"``.
        use_roi: Use the split's ``roi/`` masks when the folder exists.
        best_threshold: Also report Dice at the best mean-Dice threshold (clean images only).
        channel: Colour reduction of colour images (``darlkit.data.read_image``).
        tta: Test-time augmentation (``"none"`` or ``"flip"``; ``None``: the checkpoint's default).

    Returns:
        ``{"checkpoint", "data", "split", "roi", "n_images", "clean": {metric: {mean, std, n}},
        "noise": {sigma: {metric: {mean, std, n}}}}``; metrics are those of
        ``darlkit.metrics.ALL_METRICS`` (plus ``dice_at_best_threshold`` with ``threshold``
        when asked); ``"roi"`` is true when the metrics were computed inside ROI masks.
    """
    from darlkit.metrics import ALL_METRICS
    from darlkit.training import evaluate_on_split

    if not data.is_dir():
        raise CLIError(f"--data: dataset folder not found: {data}")
    for sub in (f"{split}/images", f"{split}/masks"):
        if not (data / sub).is_dir():
            raise CLIError(f"--data {data}: missing folder {sub}")
    if not (checkpoint.is_file() or checkpoint.is_dir()):
        raise CLIError(f"--checkpoint: file not found (nor a model folder): {checkpoint}")
    if max_images is not None and max_images < 1:
        raise CLIError(f"--max-images must be a positive integer, got {max_images}")
    return evaluate_on_split(checkpoint, data, split, device=device, use_ema=use_ema, t=t, threshold=threshold,
                             metrics=ALL_METRICS, noise_sigmas=noise_sigmas, seed=seed, max_images=max_images,
                             use_roi=use_roi, best_threshold=best_threshold, channel=channel, tta=tta)


def format_tables(result: dict[str, Any]) -> str:
    """Markdown tables in the style of the paper's Table 1 and Table 2.

    Args:
        result: The dict from :func:`evaluate_checkpoint`.

    Returns:
        The tables as text.
    """

    def cells(metrics: dict[str, dict[str, float]]) -> str:
        return " | ".join(f"{metrics[m]['mean']:.3f} ± {metrics[m]['std']:.3f}" for m in _SHOWN)

    def more(metrics: dict[str, dict[str, float]]) -> str:
        return ", ".join(f"{name} {metrics[m]['mean']:.3f} ± {metrics[m]['std']:.3f}" for m, name in _MORE.items() if m in metrics)

    head = " | ".join(_NAMES[m] for m in _SHOWN)
    where = ", inside the field of view (roi/)" if result.get("roi") else ""
    lines = [
        f"Table 1 (n = {result['n_images']} {result.get('split', 'test')} images, mean ± std over images{where}; "
        f"threshold {result.get('threshold', 0.0):g}, tta {result.get('tta', 'none')})",
        "",
        f"| Method | {head} |",
        "| --- | --- | --- | --- |",
        f"| DARL ({Path(result['checkpoint']).name}) | {cells(result['clean'])} |",
        "",
        f"Also: {more(result['clean'])}",
    ]
    best = result["clean"].get("dice_at_best_threshold")
    if best:
        lines.append(f"Dice at the best mean-Dice threshold (chosen on these labels; not the paper's rule): "
                     f"{best['mean']:.3f} ± {best['std']:.3f} at threshold {best['threshold']:g}")
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
    """Execute ``darlkit evaluate``; returns exit status 0 (:func:`darlkit.cli.main` reports errors)."""
    result = evaluate_checkpoint(
        args.data, args.checkpoint, noise_sigmas=args.noise_sigma, seed=args.seed, t=args.t,
        threshold=args.threshold, max_images=args.max_images, use_ema=True if args.ema else None,
        device=args.device, split=args.split, use_roi=not args.no_roi, best_threshold=args.best_threshold,
        channel=args.channel, tta=args.tta,
    )
    print(json.dumps(result, indent=2) if args.json else format_tables(result))
    return 0
