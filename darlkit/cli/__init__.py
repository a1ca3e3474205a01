"""The ``darlkit`` command line (also ``python -m darlkit``).

Each sub-command lives in its own module of this package and exposes two functions:
``add_parser(subparsers)`` (registers the command with :func:`add_command`, then its arguments)
and ``run(args) -> int``. Command modules never import each other; options shared by several
commands live in :mod:`darlkit.cli.options` and :mod:`darlkit.cli.argtypes`.
Errors caused by bad arguments or bad files are reported as one clear line on stderr
with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main", "build_parser", "add_command", "CLIError"]

COMMANDS: tuple[str, ...] = ("quickstart", "prepare", "train", "segment", "evaluate", "export", "flops", "synth")
"""Sub-command modules of :mod:`darlkit.cli`, in the order ``darlkit --help`` lists them."""


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """Argument parser whose usage errors are one line (``darlkit CMD: error: ...``), status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_command(subparsers: Any, name: str, run: Callable[[argparse.Namespace], int], *, help: str,
                description: str) -> argparse.ArgumentParser:
    """Register sub-command ``name`` whose ``run(args) -> int`` executes it.

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers``.
        name: The command name (``darlkit NAME``).
        run: Executes the command with the parsed arguments and returns the exit status.
        help: One line for ``darlkit --help``.
        description: The text of ``darlkit NAME --help``.

    Returns:
        The command's parser, for the caller to add its arguments to.
    """
    p = subparsers.add_parser(name, help=help, description=description)
    p.set_defaults(run=run)
    return p


def build_parser() -> argparse.ArgumentParser:
    """Build the ``darlkit`` argument parser with every sub-command registered.

    Returns:
        The top-level :class:`argparse.ArgumentParser`.
    """
    from darlkit import __version__

    parser = _Parser(
        prog="darlkit",
        description="DARL: self-supervised vessel segmentation with diffusion adversarial learning.",
    )
    parser.add_argument("--version", action="version", version=f"darlkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"darlkit.cli.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``darlkit`` command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit status (0 on success, 2 on a usage or input error).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except (CLIError, ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError,
            IsADirectoryError, PermissionError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"darlkit {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # TrainingInterrupted carries the signal's exit code (130 / 143)
        detail = " ".join(str(exc).split())
        print(f"darlkit {args.command}: interrupted" + (f": {detail}" if detail else ""), file=sys.stderr)
        return int(getattr(exc, "exit_code", 130))
