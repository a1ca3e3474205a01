"""Crash-safe checkpoint files and RNG state capture.

A checkpoint is a dict of tensors and plain Python data (no pickled classes), written to a
temporary file in the destination folder, flushed and fsynced, then moved over the destination
with :func:`os.replace`, so the previous checkpoint survives a crash at any point of the write.
It is read back with ``torch.load(..., weights_only=True)``, which refuses arbitrary pickled
objects.

Integrity: every checkpoint written by :func:`save_checkpoint` carries a SHA-256 digest of its
content (each tensor's dtype, shape and bytes and each plain value, in key order) under the key
``"checksum"``; :func:`load_checkpoint` verifies the zip CRC of every record of the file (which
also covers checkpoints written before the digest existed) and then the digest, and refuses a
file that fails either with a message naming it. Temporary files that a killed save left behind
(``.last.pt.*.tmp``) are removed by the next save of the same file.
"""

from __future__ import annotations

import glob
import hashlib
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from darlkit.model.safe_load import read_torch_file

if TYPE_CHECKING:  # pragma: no cover
    from darlkit.training.run_files import RunFiles

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKSUM_ALGORITHM",
    "checkpoint_digest",
    "remove_stale_temp_files",
    "Checkpointer",
    "save_checkpoint",
    "load_checkpoint",
    "get_rng_state",
    "set_rng_state",
]

CHECKPOINT_FORMAT = "darlkit-train-v1"
"""Value of the ``"format"`` key of every checkpoint darlkit writes."""

CHECKSUM_ALGORITHM = "sha256-content-v1"
"""Value of ``checkpoint["checksum"]["algorithm"]``: the digest of :func:`checkpoint_digest`."""

_CHECKSUM_KEY = "checksum"


def _feed(h: Any, value: Any, where: str) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{where}|tensor|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(value, dict):
        h.update(f"{where}|dict|{len(value)}\n".encode())
        for key, item in value.items():
            _feed(h, item, f"{where}/{key!r}")
    elif isinstance(value, (list, tuple)):  # a tuple may come back as a list: same digest
        h.update(f"{where}|seq|{len(value)}\n".encode())
        for i, item in enumerate(value):
            _feed(h, item, f"{where}[{i}]")
    else:
        h.update(f"{where}|{value!r}\n".encode())


def checkpoint_digest(obj: dict[str, Any]) -> str:
    """SHA-256 hex digest of a checkpoint's content, without its ``"checksum"`` entry.

    Every tensor contributes its key path, dtype, shape and raw bytes (on the CPU, contiguous);
    every other leaf its key path and ``repr``; dicts are walked in key order and lists and
    tuples in index order (a tuple and a list with equal items hash alike, since a tuple may be
    read back as a list).

    Args:
        obj: A checkpoint dict (what :func:`save_checkpoint` writes).

    Returns:
        64 lowercase hex characters.
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in obj.items() if k != _CHECKSUM_KEY}, "")
    return h.hexdigest()


def remove_stale_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that interrupted saves of ``path`` left behind.

    A save killed before its rename (``SIGKILL``, power loss) leaves ``.NAME.XXXX.tmp`` beside
    ``path``; the previous ``path`` itself is intact. Only files of exactly that pattern are
    removed (never ``path`` or any other file).

    Args:
        path: The checkpoint path (e.g. ``run/last.pt``).

    Returns:
        The removed files.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            stale.unlink()
            removed.append(stale)
        except FileNotFoundError:  # another process removed it first
            pass
    return removed


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` to ``path`` atomically.

    The data goes to a temporary file in the same folder, which is flushed, fsynced and then
    renamed over ``path`` with :func:`os.replace` (atomic on POSIX and Windows). If anything
    fails before the rename, the temporary file is removed and the old ``path`` is untouched;
    temporary files of earlier saves that were killed are removed first
    (:func:`remove_stale_temp_files`). The file gets a ``"checksum"`` entry
    (``{"algorithm": CHECKSUM_ALGORITHM, "sha256": checkpoint_digest(obj)}``); ``obj`` itself
    is not modified.

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
    remove_stale_temp_files(path)
    obj = {**obj, _CHECKSUM_KEY: {"algorithm": CHECKSUM_ALGORITHM, "sha256": checkpoint_digest(obj)}}
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
    """Read and verify a darlkit checkpoint with ``torch.load(weights_only=True)``.

    The zip CRC of every record is checked first (so a damaged file is never unpickled), then
    the file is loaded with the safe loader, and finally the stored ``"checksum"`` digest is
    compared with :func:`checkpoint_digest` of what was read. Checkpoints written before the
    digest existed (no ``"checksum"`` key) are verified by their CRCs only.

    Args:
        path: A file written by :func:`save_checkpoint` (``last.pt`` / ``best.pt`` of a run).
        map_location: Passed to :func:`torch.load` (default: load onto the CPU).

    Returns:
        The checkpoint dict (keys ``"format"``, ``"step"``, ``"config"``, ``"model"``, ...),
        without the ``"checksum"`` entry.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a readable darlkit checkpoint (corrupt, truncated, failing
            its CRCs or digest, containing pickled Python objects, or lacking the darlkit format
            tag); the message names the file.
    """
    obj = read_torch_file(path, map_location=map_location)
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint {path} is not a darlkit training checkpoint (expected format "
            f"{CHECKPOINT_FORMAT!r})"
        )
    stored = obj.pop(_CHECKSUM_KEY, None)
    if stored is not None:
        if not isinstance(stored, dict) or stored.get("algorithm") != CHECKSUM_ALGORITHM:
            raise ValueError(f"checkpoint {path} has an unknown checksum entry {stored!r} (expected {CHECKSUM_ALGORITHM!r})")
        if checkpoint_digest(obj) != stored.get("sha256"):
            raise ValueError(
                f"checkpoint {path} is corrupted: its content does not match its SHA-256 checksum "
                "(the file changed after it was written); use another checkpoint (e.g. best.pt or a backup)"
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
