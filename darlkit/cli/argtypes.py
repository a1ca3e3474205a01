"""argparse ``type=`` converters shared by the sub-commands (one-line errors on bad values).

A converter raises :class:`argparse.ArgumentTypeError`, which the ``darlkit`` parser prints as
one line (``darlkit CMD: error: argument --opt: ...``) with exit status 2. The path converters
check before anything runs that an output can be written (an existing folder is probed by
creating and deleting a temporary file) and that a folder is not given where a file is
expected, or the reverse; they never create anything.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

__all__ = [
    "positive_int",
    "non_negative_int",
    "positive_float",
    "non_negative_float",
    "threshold",
    "device",
    "output_dir",
    "output_file",
    "positive_int_or_auto",
]


TTA_CHOICES: tuple[str, ...] = ("none", "flip")
"""``--tta`` choices of ``darlkit segment`` / ``evaluate``: ``darlkit.model.TTA_MODES`` (repeated
here so that parsing does not import torch; a test keeps them equal)."""


def _number(text: str, kind: type, expected: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _number(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_int_or_auto(text: str) -> int | str:
    """An integer >= 1, or ``"auto"``."""
    if text == "auto":
        return text
    value = _number(text, int, "a positive integer or 'auto'")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _number(text, int, "a non-negative integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text, float, "a positive number")
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(text, float, "a number >= 0")
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def threshold(text: str) -> float:
    """A decision threshold on DARL's output range [-1, 1]."""
    value = _number(text, float, "a number in [-1, 1]")
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [-1, 1], got {text}")
    return value


# ---------------------------------------------------------------------- devices and paths
def device(text: str) -> str:
    """A torch device name that exists on this machine (``cpu``, ``cuda``, ``cuda:1``, ``mps``).

    Returns:
        The normalised name (``str(torch.device(text))``).
    """
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a device name: {text!r} (expected cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine (use --device cpu)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise argparse.ArgumentTypeError(f"{text}: no such CUDA device (this machine has {count})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine (use --device cpu)")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text}: unsupported device type {dev.type!r} (expected cpu, cuda or mps)")
    return str(dev)


def _probe_writable(folder: Path) -> str | None:
    """Why files cannot be created in the existing folder ``folder`` (``None``: they can)."""
    import tempfile

    try:
        with tempfile.TemporaryFile(prefix=".darlkit-write-test-", dir=folder):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _check_creatable_folder(path: Path, original: str, target: Path | None = None) -> None:
    """``path`` is a writable folder, or can be created inside a writable folder.

    ``target`` is what the user named (``path`` itself, or a file inside ``path``).
    """
    target = path if target is None else target
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file, not a folder" if probe == target else f"cannot be created: {probe} is a file, not a folder"
        raise argparse.ArgumentTypeError(f"{original} {what}")
    reason = _probe_writable(probe)
    if reason is not None:
        where = "" if probe == target else f" (in {probe})"
        raise argparse.ArgumentTypeError(f"{original} is not writable{where}: {reason}")


def output_dir(text: str) -> Path:
    """A folder that exists and is writable, or that can be created (nothing is created here)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a folder path, got ''")
    path = Path(text).expanduser()
    _check_creatable_folder(path, text)
    return path


def output_file(text: str) -> Path:
    """A file path that can be written: not a folder, its folder writable or creatable."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file path, got ''")
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text} is not writable: permission denied")
    _check_creatable_folder(path.parent, text, target=path)
    return path
