"""Strict 8-bit grayscale PNG reading (the original XCAD reader; ``read_image`` reads every format)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["read_grayscale_png", "list_png_files"]

_COLOUR_MODES = ("RGB", "RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "La", "RGBa", "RGBX")
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def read_grayscale_png(path: str | os.PathLike) -> np.ndarray:
    """Read an 8-bit grayscale PNG as a (H, W) uint8 array, fully decoded.

    Accepted: mode ``"L"`` (8-bit grey) as is; mode ``"1"`` (1-bit) as 0/255. Colour PNGs
    (RGB, RGBA, LA, palette, ...) are converted to grey with Pillow's ITU-R 601-2 luma transform
    (alpha dropped) and a ``UserWarning`` naming the file. 16-bit and 32-bit images are rejected
    (their intensity scale is ambiguous: 12-bit data is often stored in 16 bits); convert them to
    8-bit first.

    Args:
        path: The PNG file.

    Returns:
        (H, W) uint8 array in [0, 255].

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a PNG, cannot be decoded, is truncated, or is 16/32-bit;
            the message names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"PNG file not found: {p}")
    try:
        with Image.open(p) as im:
            fmt, mode = im.format, im.mode
            if fmt != "PNG":
                raise ValueError(f"{p} is not a PNG file (Pillow reads it as {fmt})")
            if mode in _HIGH_DEPTH_MODES:
                raise ValueError(f"{p} is a {mode} (16/32-bit or float) image; darlkit reads 8-bit grayscale PNGs only (convert it to 8-bit)")
            im.load()  # decode everything now: a truncated file fails here, not later
            if mode == "L":
                arr = np.asarray(im, dtype=np.uint8).copy()
            elif mode == "1":
                arr = np.asarray(im.convert("L"), dtype=np.uint8).copy()
            elif mode in _COLOUR_MODES:
                warnings.warn(f"{p} is a {mode} image; converting it to 8-bit grayscale (ITU-R 601-2 luma)", UserWarning, stacklevel=2)
                arr = np.asarray(im.convert("L"), dtype=np.uint8).copy()
            else:
                raise ValueError(f"{p} has unsupported image mode {mode!r}; expected 8-bit grayscale ('L')")
    except ValueError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"cannot decode PNG {p}: {exc}") from exc
    return arr


def list_png_files(folder: str | os.PathLike) -> list[Path]:
    """The PNG files of a folder, sorted by name, with strict checks.

    Hidden entries (names starting with ``.``) are ignored; any other entry that is not a
    ``*.png`` file (case-insensitive) is an error, so nothing is skipped silently.

    Args:
        folder: The directory.

    Returns:
        Sorted list of paths.

    Raises:
        FileNotFoundError: If the folder does not exist.
        ValueError: If it holds a non-PNG entry or no PNG at all (the message names it).
    """
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"folder not found: {d}")
    files = []
    for entry in sorted(d.iterdir()):
        if entry.name.startswith("."):
            continue
        if not (entry.is_file() and entry.suffix.lower() == ".png"):
            raise ValueError(f"unexpected entry {entry} (expected only .png files in {d})")
        files.append(entry)
    if not files:
        raise ValueError(f"no PNG files in {d}")
    return files
