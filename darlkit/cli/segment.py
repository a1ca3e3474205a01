"""``darlkit segment``: one-step vessel masks for PNG images from a trained checkpoint.

The mask of ``IMAGE.png`` is written as ``OUT/IMAGE.png`` (0 = background, 255 = vessel;
with ``--soft`` the raw [-1, 1] output scaled to 0..255). An image whose side is twice the
training crop side (a 512x512 angiogram for the paper's 256 crops) is segmented as its four
polyphase sub-images, as the authors' code does; other sizes are segmented at their own
resolution (``--polyphase on|off`` forces either).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from darlkit.cli import CLIError, argtypes

__all__ = ["add_parser", "run", "segment_files"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``darlkit segment``.

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers``.

    Returns:
        The sub-command's parser.
    """
    p = subparsers.add_parser(
        "segment",
        help="segment PNG images in one step",
        description="Write a vessel mask PNG for each input PNG (one-step DARL segmentation).",
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="grayscale PNG images (or folders of them)")
    p.add_argument("--checkpoint", type=Path, required=True, help="last.pt / best.pt of a training run, or a model folder (DARL.save_pretrained)")
    p.add_argument("--out", type=Path, required=True, help="output folder for the masks")
    p.add_argument("--t", type=argtypes.non_negative_int, default=0, help="diffusion step for segmentation (default 0)")
    p.add_argument("--threshold", type=argtypes.threshold, default=0.0, help="vessel where output > threshold (default 0)")
    p.add_argument("--polyphase", choices=("auto", "on", "off"), default="auto",
                   help="segment as 4 polyphase sub-images (auto: when the side is twice the training crop)")
    p.add_argument("--soft", action="store_true", help="write the [-1, 1] output as grey levels, not a binary mask")
    p.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    p.add_argument("--device", default="cpu", help="device (default cpu)")
    p.set_defaults(run=run)
    return p


def _expand(images: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in images:
        if path.is_dir():
            found = sorted(q for q in path.iterdir() if q.suffix.lower() == ".png")
            if not found:
                raise CLIError(f"folder {path} contains no .png images")
            files.extend(found)
        elif not path.exists():
            raise CLIError(f"image not found: {path}")
        elif path.suffix.lower() != ".png":
            raise CLIError(f"{path}: expected a .png image, got a {path.suffix or 'suffix-less'} file")
        else:
            files.append(path)
    names = [f.name for f in files]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CLIError(f"two inputs share the output name {dup[0]}; segment them into different --out folders")
    return files


def segment_files(
    files: list[Path],
    checkpoint: Path,
    out: Path,
    *,
    t: int = 0,
    threshold: float = 0.0,
    polyphase: str = "auto",
    soft: bool = False,
    use_ema: bool | None = None,
    device: str = "cpu",
) -> list[Path]:
    """Segment PNG files with a trained checkpoint and write the masks.

    Args:
        files: Input PNG paths.
        checkpoint: Training checkpoint.
        out: Output folder.
        t: Diffusion step (0: the clean image).
        threshold: Vessel where the output is above this.
        polyphase: ``"auto"``, ``"on"`` or ``"off"``.
        soft: Write grey levels instead of a binary mask.
        use_ema: Use EMA weights (``None``: the run's default).
        device: Torch device name.

    Returns:
        The written mask paths.
    """
    import torch

    from darlkit.training import load_trained_model, read_png, segment_image, write_png

    model, config = load_trained_model(checkpoint, device=device, use_ema=use_ema)
    if t >= config.num_timesteps:
        raise CLIError(f"--t must be < {config.num_timesteps} (the diffusion steps of this model), got {t}")
    pp: str | bool = {"auto": "auto", "on": True, "off": False}[polyphase]
    down = 2 ** (len(config.unet_channel_mults) - 1)
    written = []
    for path in files:
        image = read_png(path)
        h, w = image.shape[-2:]
        use_pp = (h == 2 * config.image_size and w == 2 * config.image_size) if pp == "auto" else pp
        need = down * (2 if use_pp else 1)
        need = max(need, 4 * (2 if use_pp else 1))
        if h % need or w % need:
            raise CLIError(f"{path}: image size {w}x{h} must be divisible by {need} for this model")
        pred = segment_image(model, image.to(device), image_size=config.image_size, t=t, polyphase=use_pp)
        if soft:
            dst = write_png(pred[0], out / path.name)
        else:
            dst = write_png((pred[0] > threshold).to(torch.float32), out / path.name, lo=0.0, hi=1.0)
        written.append(dst)
    return written


def run(args: argparse.Namespace) -> int:
    """Execute ``darlkit segment``.

    Args:
        args: Parsed arguments.

    Returns:
        Exit status 0.
    """
    files = _expand(list(args.images))
    if not (args.checkpoint.is_file() or args.checkpoint.is_dir()):
        raise CLIError(f"--checkpoint: file not found (nor a model folder): {args.checkpoint}")
    written = segment_files(
        files, args.checkpoint, args.out, t=args.t, threshold=args.threshold, polyphase=args.polyphase,
        soft=args.soft, use_ema=True if args.ema else None, device=args.device,
    )
    print(f"darlkit segment: wrote {len(written)} mask(s) to {args.out}")
    return 0
