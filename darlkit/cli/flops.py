"""``darlkit flops``: print the paper's Table 12 (training GMACs of SSVS and DARL).

``benchmarks/table12.py`` runs the same command.
"""

from __future__ import annotations

import argparse
import json

from darlkit.cli import add_command

__all__ = ["add_parser", "add_table12_arguments", "run"]


def add_table12_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the Table 12 options (``--size``, ``--convention``, ``--json``) to a parser.

    Args:
        parser: Parser to extend.

    Returns:
        The parser.
    """
    from darlkit.flops import CONVENTIONS

    parser.add_argument("--size", type=int, default=256, help="image side, multiple of 32 (default 256)")
    parser.add_argument(
        "--convention",
        choices=("both", *CONVENTIONS),
        default="both",
        help="MAC convention: paper, exact or both (default both)",
    )
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the tables as JSON to PATH")
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``darlkit flops`` (see :func:`darlkit.cli.add_command`)."""
    parser = add_command(subparsers, "flops", run,
        help="print paper Table 12 (training GMACs) in the paper and exact conventions",
        description="Count the MACs of one DARL / SSVS training iteration (paper Table 12).",
    )
    add_table12_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Execute ``darlkit flops``; returns exit status 0 (:func:`darlkit.cli.main` reports errors)."""
    from darlkit.cli import CLIError, argtypes
    from darlkit.flops import CONVENTIONS, compute_table12, format_table12
    from darlkit.flops.table12 import table12_json

    if args.json is not None:
        try:
            argtypes.output_file(args.json)
        except argparse.ArgumentTypeError as exc:
            raise CLIError(f"--json: {exc}") from None

    conventions = CONVENTIONS if args.convention == "both" else (args.convention,)
    tables = compute_table12(args.size, conventions)
    print(format_table12(tables))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table12_json(tables), fh, indent=2)
        print(f"wrote {args.json}")
    return 0
