"""``darlkit export``: write a trained model's one-step segmenter as ONNX, TorchScript or a torch.export program."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from darlkit.cli import CLIError, add_command, argtypes

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``darlkit export`` (see :func:`darlkit.cli.add_command`)."""
    from darlkit.model.export import EXPORT_FORMATS

    p = add_command(subparsers, "export", run,
        help="export the one-step segmenter (ONNX, TorchScript, torch.export)",
        description="Export G(concat(x, eps_theta(x, 0))) of a trained model, then reload the file and check "
        "it against the eager model (max |difference| within the format's tolerance).",
    )
    p.add_argument("checkpoint", type=Path, help="training checkpoint (last.pt / best.pt)")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="output format (default: onnx)")
    p.add_argument("--out", type=Path, required=True, help="output file")
    p.add_argument("--size", type=argtypes.positive_int, nargs=2, metavar=("H", "W"), default=None,
                   help="example input size for tracing and the check (multiples of the model's size multiple)")
    p.add_argument("--ema", action="store_true", help="export the EMA weights")
    p.add_argument("--no-verify", action="store_true", help="skip the reload-and-compare check")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return p


def run(args: argparse.Namespace) -> int:
    """Execute ``darlkit export``; returns exit status 0 (:func:`darlkit.cli.main` reports errors)."""
    from darlkit.model.export import export_segmenter
    from darlkit.training import load_trained_model

    if not args.checkpoint.is_file():
        raise CLIError(f"checkpoint: file not found: {args.checkpoint}")
    out: Path = args.out
    if out.is_dir():
        raise CLIError(f"--out: {out} is a folder, expected a file name")
    if out.exists() and not args.overwrite:
        raise CLIError(f"--out: {out} exists (pass --overwrite to replace it)")
    if not out.parent.is_dir():
        raise CLIError(f"--out: folder {out.parent} does not exist")
    from darlkit.training import inference_defaults

    try:
        defaults = inference_defaults(args.checkpoint)
    except ValueError as exc:
        raise CLIError(f"checkpoint: {exc}") from None
    model, config = load_trained_model(args.checkpoint, use_ema=True if args.ema else None)
    # The training crop (from which `darlkit segment --runtime onnx` sets its default tile) and the
    # checkpoint's decision threshold and test-time augmentation, so the file segments as it does.
    meta = {"image_size": str(config.image_size), "threshold": repr(float(defaults["threshold"])),
            "tta": defaults["tta"], "inference_source": defaults["source"]}
    try:
        report = export_segmenter(model, out, format=args.format, size=tuple(args.size) if args.size else None,
                                  verify=not args.no_verify, metadata=meta)
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    except PermissionError as exc:
        raise CLIError(f"--out: cannot write {out}: {exc.strerror}") from None
    diff = report["max_abs_diff"]
    check = ("not verified" if diff is None else f"max |exported - eager| = {diff:.2e} (allowed {report['allowed']:.2e}; "
             f"eager float32 vs float64: {report['eager_fp32_error']:.2e})")
    print(f"darlkit export: wrote {out} ({args.format}); {check}; threshold {defaults['threshold']:g}, "
          f"tta {defaults['tta']} ({defaults['source']}) in its metadata")
    return 0
