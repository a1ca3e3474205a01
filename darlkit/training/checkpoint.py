"""Crash-safe checkpoint files and RNG state capture.

A checkpoint is a dict of tensors and plain Python data (no pickled classes), written to a
temporary file in the destination folder, flushed and fsynced, then moved over the destination
with :func:`os.replace`, so the previous checkpoint survives a crash at any point of the write.
It is read back with ``torch.load(..., weights_only=True)``, which refuses arbitrary pickled
objects.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from darlkit.training.run_files import RunFiles

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpointer",
    "save_checkpoint",
    "load_checkpoint",
    "get_rng_state",
    "set_rng_state",
]

CHECKPOINT_FORMAT = "darlkit-train-v1"
"""Value of the ``"format"`` key of every checkpoint darlkit writes."""


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` to ``path`` atomically.

    The data goes to a temporary file in the same folder, which is flushed, fsynced and then
    renamed over ``path`` with :func:`os.replace` (atomic on POSIX and Windows). If anything
    fails before the rename, the temporary file is removed and the old ``path`` is untouched.

    Args:
        obj: The checkpoint: a dict of tensors, numbers, strings, bools, ``None``, lists,
            tuples and dicts (what ``torch.load(weights_only=True)`` accepts).
        path: Destination file; its folder is created if needed.

    Returns:
        The destination path.

    Raises:
        TypeError: If ``obj`` is not a dict.
    """
    if not isinstance(obj, dict):
        raise TypeError(f"checkpoint must be a dict, got {type(obj).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return path
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Read a darlkit checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path: A file written by :func:`save_checkpoint` (``last.pt`` / ``best.pt`` of a run).
        map_location: Passed to :func:`torch.load` (default: load onto the CPU).

    Returns:
        The checkpoint dict (keys ``"format"``, ``"step"``, ``"config"``, ``"model"``, ...).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a readable darlkit checkpoint (corrupt, truncated,
            contains non-allowlisted pickled objects, or lacks the darlkit format tag).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"checkpoint {path} is not a readable PyTorch file (not a torch.save zip archive)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0] if text.strip() else ""
        if "Unsupported global" in text:
            detail = detail.split(" was not an allowed global")[0]
            raise ValueError(
                f"checkpoint {path} was refused by the safe loader (weights_only=True): it contains a "
                f"pickled Python object ({detail})"
            ) from None
        raise ValueError(f"checkpoint {path} is not a readable PyTorch file: {detail or type(exc).__name__}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"checkpoint {path} is not a readable PyTorch file: {first}") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint {path} is not a darlkit training checkpoint (expected format "
            f"{CHECKPOINT_FORMAT!r})"
        )
    return obj


def get_rng_state() -> dict[str, Any]:
    """Capture the global RNG states of torch (CPU and CUDA), numpy and Python's ``random``.

    Every state is stored as tensors or numbers, so it survives ``weights_only`` loading.

    Returns:
        A dict with keys ``"torch"``, ``"cuda"`` (list, empty without CUDA), ``"numpy"`` and
        ``"python"``.
    """
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global RNG states captured by :func:`get_rng_state`.

    Args:
        state: The dict returned by :func:`get_rng_state` (possibly after a save/load).

    Raises:
        ValueError: If a required key is missing.
    """
    try:
        torch.set_rng_state(state["torch"].cpu())
        if state.get("cuda") and torch.cuda.is_available():
            cuda = state["cuda"]
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        npy = state["numpy"]
        np.random.set_state(
            (
                npy["name"],
                npy["keys"].numpy().astype(np.uint32),
                int(npy["pos"]),
                int(npy["has_gauss"]),
                float(npy["cached_gaussian"]),
            )
        )
        py = state["python"]
        random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    except KeyError as exc:
        raise ValueError(f"RNG state is missing key {exc}") from None


class Checkpointer:
    """Writes a run's checkpoints (``last.pt``, ``best.pt``) from a state callback.

    Args:
        state_fn: Returns the checkpoint dict to write (e.g. ``DARLTrainer.state_dict``).
        files: The run's files (``None``: write nothing).
        enabled: Whether this process writes (``False`` on ranks other than 0).
    """

    def __init__(self, state_fn: Callable[[], dict[str, Any]], files: RunFiles | None, *, enabled: bool = True) -> None:
        self.state_fn = state_fn
        self.files = files
        self.enabled = bool(enabled) and files is not None

    def path(self, kind: str) -> Path | None:
        """Path of the checkpoint ``kind`` (``"last"``/``"best"``), or ``None`` without a run folder.

        Raises:
            ValueError: If ``kind`` is not a known checkpoint kind.
        """
        return self.files.checkpoint(kind) if self.files is not None else None

    def save(self, kind: str = "last") -> Path | None:
        """Write the current state as checkpoint ``kind`` atomically (see :func:`save_checkpoint`).

        Args:
            kind: ``"last"`` or ``"best"``.

        Returns:
            The written path, or ``None`` when this process does not write.
        """
        if not self.enabled:
            return None
        return save_checkpoint(self.state_fn(), self.files.checkpoint(kind))
