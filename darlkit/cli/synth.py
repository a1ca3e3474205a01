"""``darlkit synth``: write a synthetic dataset in the XCAD folder layout."""

from __future__ import annotations

import argparse

from darlkit.cli import add_command, argtypes

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``darlkit synth`` (see :func:`darlkit.cli.add_command`)."""
    from darlkit.synthesis.synthesizer import STYLES

    p = add_command(subparsers, "synth", run,
        help="write a synthetic XCAD-layout dataset (fractal masks, angiograms, backgrounds, test set)",
        description=(
            "Write train/trainA (vessel masks), train/trainB (synthetic angiograms), train/trainC "
            "(backgrounds), test/images and test/masks as 8-bit PNGs in the XCAD layout. The same "
            "seed gives byte-identical files."
        ),
    )
    p.add_argument("out", type=argtypes.output_dir, help="output folder (must be empty or missing unless --overwrite)")
    p.add_argument("--n-train", type=int, default=1621, help="images per training folder (default: 1621, as XCAD)")
    p.add_argument("--n-test", type=int, default=134, help="test images (default: 134, as XCAD)")
    p.add_argument("--size", type=int, default=512, help="image side, even and >= 32 (default: 512)")
    p.add_argument("--crop", type=int, default=None,
                   help="render at --size but save a CROP x CROP window of each image (vessels keep their width)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace the PNGs of an existing XCAD-layout folder")
    p.add_argument("--train-style", choices=STYLES, default="ssvs", help="trainA mask style (default: ssvs, the released fractals)")
    p.add_argument("--test-style", choices=STYLES, default="tree", help="test mask style (default: tree)")
    p.add_argument("--angiogram-style", choices=STYLES, default="tree", help="vessel style drawn into trainB (default: tree)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: 0; output does not depend on it)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Execute ``darlkit synth``; returns exit status 0 (:func:`darlkit.cli.main` reports errors)."""
    from darlkit.synthesis.writer import write_synthetic_xcad

    root = write_synthetic_xcad(
        args.out,
        n_train=args.n_train,
        n_test=args.n_test,
        size=args.size,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        test_style=args.test_style,
        train_style=args.train_style,
        angiogram_style=args.angiogram_style,
        workers=args.workers,
        crop=args.crop,
    )
    side = args.crop or args.size
    print(f"wrote {args.n_train} x 3 training and {args.n_test} x 2 test PNGs ({side}x{side}) to {root}")
    return 0
