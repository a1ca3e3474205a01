"""``darlkit prepare OUT``: your own folders (any format, size, modality) -> the layout ``train``/``evaluate`` read.

See ``darlkit.preparation.prepare`` for what is written and every rule; ``OUT/prepare.json`` records the
choices. Example (DRIVE-style names)::

    darlkit prepare OUT --images A/*.tif --test-images B/*.tif --test-masks C/*.gif \\
        --roi-masks D/*.gif --channel green --backgrounds auto --masks synth
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from darlkit.cli import add_command, argtypes

__all__ = ["add_parser", "run"]


def _one_or_files(values: list[str] | None, word: str) -> list[str] | str | None:
    """``[word]`` -> ``word``; a list of paths stays a list; ``word`` among paths is an error."""
    if values is None:
        return None
    if values == [word]:
        return word
    if word in values:
        raise ValueError(f"'{word}' must be given alone, not among file names: {' '.join(values)}")
    return values


def _odd_width(text: str) -> int:
    value = argtypes.positive_int(text)
    if value < 3 or value % 2 == 0:
        raise argparse.ArgumentTypeError(f"expected an odd integer >= 3, got {value}")
    return value


def _fraction(text: str) -> float:
    value = argtypes.positive_float(text)
    if value > 0.5:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 0.5], got {text}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``darlkit prepare`` (see :func:`darlkit.cli.add_command`)."""
    p = add_command(subparsers, "prepare", run,
        help="convert your own images (any format/size) into the layout train/evaluate read",
        description="Write OUT/train (trainB images, trainC backgrounds, trainA masks), OUT/test and OUT/val "
                    "(images, masks, roi) as 8-bit PNGs, plus OUT/prepare.json recording every choice. "
                    "P... are files, folders or glob patterns.",
    )
    p.add_argument("out", type=Path, metavar="OUT", help="output folder (must be empty, or a previous prepare output with --overwrite)")
    p.add_argument("--images", nargs="+", required=True, metavar="P", help="unlabeled training images (angiograms, fundus photographs)")
    p.add_argument("--backgrounds", nargs="+", default=["auto"], metavar="P|auto",
                   help="vessel-free background images, or 'auto' (default): grey-level closing of each training image")
    p.add_argument("--masks", nargs="+", default=["synth"], metavar="P|synth",
                   help="training vessel masks, or 'synth' (default): fractal masks matched to the targets' vessels")
    p.add_argument("--test-images", nargs="+", metavar="P", help="labeled test images")
    p.add_argument("--test-masks", nargs="+", metavar="P", help="their vessel masks (paired by name key)")
    p.add_argument("--val-images", nargs="+", metavar="P", help="labeled validation images (written to OUT/val)")
    p.add_argument("--val-masks", nargs="+", metavar="P", help="their vessel masks")
    p.add_argument("--roi-masks", nargs="+", metavar="P|auto",
                   help="field-of-view masks of the test/val images, or 'auto' (bright disc / exposed area)")
    p.add_argument("--channel", choices=("luma", "green", "red", "blue"), default="luma",
                   help="colour reduction (default luma; green for fundus photographs)")
    p.add_argument("--size", type=argtypes.positive_int, default=None, metavar="N",
                   help="resample every image so its shorter side is N (default: keep)")
    p.add_argument("--pair", default=None, metavar="REGEX",
                   help="pairing key: a regex searched in file names (group 'key', else group 1, else the match)")
    p.add_argument("--invert", action="store_true", help="invert intensities (for bright vessels on a dark background)")
    p.add_argument("--mask-style", choices=("tree", "ssvs"), default="tree",
                   help="synthetic mask style: tree (matched width/fraction, default) or ssvs (XCAD's rectangles)")
    p.add_argument("--mask-fov", choices=("auto", "none"), default="auto",
                   help="auto (default): synthetic vessels only inside the training images' field of view "
                        "(the eye of a fundus photograph); none: in the whole square")
    p.add_argument("--background-method", choices=("closing", "fill", "self"), default="closing",
                   help="how --backgrounds auto makes them: closing (default; grey closing), fill (only the "
                        "pixels the closing finds as vessels are replaced), self (the training images themselves, "
                        "C-DARL's synthesis path)")
    p.add_argument("--contrast", choices=("local", "none"), default="local",
                   help="local (default): local contrast normalisation of every image inside its field of view "
                        "(0.5 outside); none: intensities as read")
    p.add_argument("--contrast-sigma", type=argtypes.positive_float, default=None, metavar="PX",
                   help="Gaussian width of --contrast local (default 1.5 x the vessel width)")
    p.add_argument("--train-tile", type=argtypes.non_negative_int, default=512, metavar="PX",
                   help="cut training files with a shorter side above PX into PX tiles (overlap 1/2) at least half "
                        "inside the field of view (default 512; 0: keep whole files)")
    p.add_argument("--n-masks", type=argtypes.positive_int, default=None, help="number of synthetic masks (default: one per training image)")
    p.add_argument("--vessel-fraction", type=_fraction, default=None, metavar="F",
                   help="vessel fraction of the synthetic masks (default: measured on the validation masks, never the test masks; else 0.055)")
    p.add_argument("--vessel-width", type=argtypes.positive_float, default=None, metavar="PX",
                   help="widest vessel diameter in output pixels (default: measured on the validation masks, never the test masks; else 22 px per 512)")
    p.add_argument("--background-width", type=_odd_width, default=None, metavar="PX",
                   help="closing width for --backgrounds auto (odd; default: >= 1.5 x the vessel width)")
    p.add_argument("--seed", type=argtypes.non_negative_int, default=0, help="seed of the synthetic masks and background noise")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it is a previous prepare output")
    return p


def run(args: argparse.Namespace) -> int:
    """Execute ``darlkit prepare``; returns exit status 0 (:func:`darlkit.cli.main` reports errors)."""
    from darlkit.preparation import prepare_dataset

    record = prepare_dataset(
        args.out,
        images=args.images,
        backgrounds=_one_or_files(args.backgrounds, "auto"),
        masks=_one_or_files(args.masks, "synth"),
        test_images=args.test_images, test_masks=args.test_masks,
        val_images=args.val_images, val_masks=args.val_masks,
        roi_masks=_one_or_files(args.roi_masks, "auto"),
        channel=args.channel, size=args.size, pair=args.pair, invert=args.invert,
        mask_style=args.mask_style, mask_fov=args.mask_fov, background_method=args.background_method, contrast=args.contrast,
        contrast_sigma=args.contrast_sigma,
        train_tile=args.train_tile or None, n_masks=args.n_masks,
        vessel_fraction_target=args.vessel_fraction, vessel_width_target=args.vessel_width,
        background_width=args.background_width, seed=args.seed, overwrite=args.overwrite, log=print,
    )
    print(json.dumps({"out": str(args.out), "counts": record["counts"], "vessels": record["vessels"]}))
    return 0
