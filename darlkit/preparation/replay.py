"""The preparation a dataset's images had, applied to new images (``darlkit segment --prepared``).

A model trained on a ``darlkit prepare`` folder has only seen images as that folder holds them:
one channel, maybe inverted and resampled, quantised to 8 bits and (``--contrast local``, the
default) locally contrast-normalised. ``prepare_like`` gives any other image the same steps, read
from the folder's ``prepare.json``, so that segmenting a raw photograph feeds the network what it
was trained on:

1. ``read_image_frames(path, channel=record["channel"])``; ``1 - x`` if ``record["invert"]``;
2. bilinear resampling so that the short side is ``record["size"]`` (if set);
3. 8-bit quantisation (``round(255 x) / 255``), as the prepared PNGs are stored;
4. with ``record["contrast"]["mode"] == "local"``: ``local_contrast`` with the recorded sigma
   inside the image's field of view (``field_of_view``) eroded by 2 px, exactly as prepare does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from darlkit.data.io import read_image_frames
from darlkit.data.morphology import erode
from darlkit.data.roi import field_of_view
from darlkit.preparation.contrast import local_contrast

__all__ = ["read_prepare_record", "contrast_in_field_of_view", "prepare_like", "prepared_shape", "resample", "PREPARE_RECORD"]

PREPARE_RECORD = "prepare.json"
"""File name of the record ``darlkit prepare`` writes into its output folder."""


def read_prepare_record(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``prepare.json`` of a ``darlkit prepare`` output folder.

    Args:
        folder: The prepared dataset folder (or the ``prepare.json`` file itself).

    Returns:
        The record (a dict with at least ``channel``, ``invert``, ``size`` and ``contrast``).

    Raises:
        ValueError: If the folder has no readable ``prepare.json`` or it lacks those keys.
    """
    path = Path(folder)
    if path.is_dir():
        path = path / PREPARE_RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} not found: give a folder written by darlkit prepare") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable prepare record: {exc}") from None
    missing = [k for k in ("channel", "invert", "size", "contrast") if not isinstance(record, dict) or k not in record]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)} (written by another darlkit version?)")
    return record


def contrast_in_field_of_view(image: np.ndarray, sigma: float, fov: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """``local_contrast`` inside the image's field of view eroded by 2 px (prepare's rule).

    Args:
        image: (H, W) float array in [0, 1].
        sigma: Gaussian width (px) of the local statistics, > 0.
        fov: bool (H, W) field of view; ``None``: ``field_of_view(image)``.

    Returns:
        ``(out, limited)`` as :func:`~darlkit.preparation.local_contrast` returns them.
    """
    f = field_of_view(image) if fov is None else np.asarray(fov, dtype=bool)
    return local_contrast(image, erode(f.astype(np.float32), 5) > 0.5, sigma)


def prepared_shape(h: int, w: int, size: int | None) -> tuple[int, int]:
    """The (H, W) prepare resamples an ``h x w`` image to (short side ``size``; ``None``: unchanged)."""
    if size is None:
        return h, w
    scale = size / min(h, w)
    return (size, max(1, round(w * scale))) if h <= w else (max(1, round(h * scale)), size)


def resample(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling of a float (H, W) array to ``shape`` (a copy as float32 when already that shape)."""
    if x.shape == shape:
        return x.astype(np.float32)
    im = Image.fromarray(x.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.BILINEAR)
    return np.array(im, dtype=np.float32)  # a writable copy


def prepare_like(path: str | os.PathLike, record: dict[str, Any], *, keep_size: bool = False) -> list[np.ndarray]:
    """Read an image file and give every frame the preparation of ``record`` (rule: module docstring).

    Args:
        path: Any image file ``darlkit.data.io`` reads.
        record: A prepare record (:func:`read_prepare_record`).
        keep_size: Resample each prepared frame back to the input's (H, W) (bilinear), for
            callers whose outputs must keep the input's size (``darlkit segment --prepared``).

    Returns:
        One float32 (H', W') array in [0, 1] per frame, at the prepared size (the input's size
        with ``keep_size``).

    Raises:
        ValueError: On an unreadable file or a record with an unknown contrast mode.
    """
    mode = record["contrast"].get("mode") if isinstance(record["contrast"], dict) else None
    if mode not in ("local", "none"):
        raise ValueError(f"prepare record: unknown contrast mode {mode!r} (expected 'local' or 'none')")
    out = []
    for x in read_image_frames(path, channel=record["channel"]):
        shape = x.shape
        x = 1.0 - x if record["invert"] else x
        x = np.clip(resample(x, prepared_shape(*x.shape, record["size"])), 0.0, 1.0)
        x = (np.round(x * 255.0) / 255.0).astype(np.float32)
        if mode == "local":
            x, _ = contrast_in_field_of_view(x, float(record["contrast"]["sigma"]))
        out.append(resample(x, shape) if keep_size else x)
    return out
