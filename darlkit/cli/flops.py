"""``darlkit flops``: print the paper's Table 12 (training GMACs of SSVS and DARL)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``flops`` sub-command.

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers``.

    Returns:
        The sub-command's parser.
    """
    from darlkit.flops.table12 import build_arg_parser

    parser = subparsers.add_parser(
        "flops",
        help="print paper Table 12 (training GMACs) in the paper and exact conventions",
        description="Count the MACs of one DARL / SSVS training iteration (paper Table 12).",
    )
    build_arg_parser(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``darlkit flops``.

    Args:
        args: Parsed arguments (``size``, ``convention``, ``json``).

    Returns:
        Exit status 0.
    """
    from darlkit.cli import CLIError, argtypes
    from darlkit.flops.table12 import run_table12

    if args.json is not None:
        try:
            argtypes.output_file(args.json)
        except argparse.ArgumentTypeError as exc:
            raise CLIError(f"--json: {exc}") from None
    return run_table12(args)
