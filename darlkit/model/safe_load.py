"""Error messages of the safe loader (``torch.load(weights_only=True)``) for darlkit's files.

Used for training checkpoints and the authors' released weights alike: a refused pickled object
is named (the global found in torch's message) and torch's advice to retry with
``weights_only=False``, which would run the file's code, is never repeated.
"""

from __future__ import annotations

import os
import pickle
import re

__all__ = ["safe_load_error"]


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
