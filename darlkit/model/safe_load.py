"""Error messages of the safe loader (``torch.load(weights_only=True)``) for darlkit's files.

Used for training checkpoints and the authors' released weights alike: a refused pickled object
is named (the global found in torch's message) and torch's advice to retry with
``weights_only=False``, which would run the file's code, is never repeated.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["safe_load_error", "read_torch_file"]


def _refusal_detail(text: str) -> str:
    """The pickled global named in a ``weights_only`` error (torch's wording varies by version)."""
    found = re.search(r"GLOBAL\s+([\w.]+)", text)
    return found.group(1) if found else "a Python object that is not a tensor or plain data"


def safe_load_error(path: str | os.PathLike[str], exc: BaseException) -> ValueError:
    """The user-facing error for a failed ``torch.load(path, weights_only=True)``.

    A refused pickled object is named (the global found in torch's message); torch's advice to
    retry with ``weights_only=False`` (which would run the file's code) is never repeated.

    Args:
        path: The file being read.
        exc: What ``torch.load`` raised.

    Returns:
        A ``ValueError`` naming the file.
    """
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and ("GLOBAL" in text or "global" in text):
        return ValueError(
            f"checkpoint {path} was refused by the safe loader: it contains a pickled Python object "
            f"({_refusal_detail(text)}); darlkit's checkpoints and the authors' released weights hold only "
            "tensors and plain data, so the file is not one of them or was altered, and loading it could run code"
        )
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln]
    return ValueError(f"checkpoint {path} is not a readable PyTorch file: {lines[0] if lines else type(exc).__name__}")


def _check_zip_crcs(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:  # e.g. truncated mid-record
        raise ValueError(f"checkpoint {path} is corrupted (truncated or damaged zip archive: {exc})") from None
    if bad is not None:
        raise ValueError(
            f"checkpoint {path} is corrupted: its record {bad!r} fails the zip CRC check (the file "
            "changed after it was written); use another checkpoint (e.g. best.pt or a backup)"
        )


def read_torch_file(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` of a ``torch.save`` zip file, verified first.

    The zip CRC of every record is checked before anything is unpickled (a damaged file is
    refused, never half-read), then the file is read with the safe loader; every failure is one
    ``ValueError`` naming the file (:func:`safe_load_error`).

    Args:
        path: A ``torch.save`` file (zip format, as torch has written since 1.6).
        map_location: Passed to :func:`torch.load`.

    Returns:
        The loaded object (tensors and plain Python data only).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is empty, not a ``torch.save`` zip archive, fails its CRCs, or
            contains pickled Python objects (the message says which).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if not zipfile.is_zipfile(path):
        what = "an empty file" if path.stat().st_size == 0 else "not a torch.save zip archive"
        raise ValueError(f"checkpoint {path} is not a readable PyTorch file ({what})")
    _check_zip_crcs(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for corrupt files
        raise safe_load_error(path, exc) from None
