"""The one image reader of darlkit: every format, to float32 [0, 1]; masks; file lists.

- ``read_image_frames`` / ``read_image``: PNG, TIFF (8/16/32-bit, float; multi-page = frames),
  JPEG, GIF (animated = frames), BMP and PNM through Pillow, DICOM through pydicom (optional
  extra ``darlkit[dicom]``; see ``darlkit.data.dicom``). Colour is reduced to one channel with
  ``channel=`` and high-depth data is scaled by a documented window (``darlkit.data.intensity``).
- ``read_mask``: binary masks (0/255, 0/1, 1-bit, palette GIF) to bool.
- ``list_image_files``: files, folders and glob patterns to a sorted list of image files.
- ``to_unit_range`` / ``from_unit_range``: uint8 [0, 255] <-> float32 [-1, 1].
- ``read_grayscale_png`` / ``list_png_files``: the strict 8-bit PNG reader of the XCAD layout.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from darlkit.data.dicom import is_dicom, read_dicom_frames
from darlkit.data.intensity import DEFAULT_PERCENTILES, check_channel, check_scaling, scale_to_unit, select_channel
from darlkit.data.png import list_png_files, read_grayscale_png

__all__ = [
    "IMAGE_SUFFIXES",
    "read_image_frames",
    "read_image",
    "read_mask",
    "list_image_files",
    "read_grayscale_png",
    "list_png_files",
    "to_unit_range",
    "from_unit_range",
]

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".gif", ".bmp", ".pbm", ".pgm", ".ppm", ".pnm", ".dcm",
)
"""File suffixes (lower-case, with the dot) that ``list_image_files`` takes and ``read_image`` reads."""

_PILLOW_FORMATS = ("PNG", "TIFF", "JPEG", "MPO", "GIF", "BMP", "DIB", "PPM")
_GREY_8 = ("L",)
_GREY_ALPHA = ("LA", "La")
_COLOUR = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "P", "PA")
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_MASK_HINT = "expected a binary mask: background 0 and one vessel value (255, 1 or True)"


def _checked_file(path: str | os.PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"image file not found: {p}")
    if not p.is_file():
        raise ValueError(f"{p} is not a file (expected an image file)")
    return p


def _frame_values(im: Image.Image, channel: str, path: Path) -> tuple[np.ndarray, bool]:
    """One decoded Pillow frame -> (H, W) values and whether they are high-depth (else 0..255)."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=bool).astype(np.float64) * 255.0, False
    if mode in _GREY_8:
        return np.asarray(im, dtype=np.uint8).astype(np.float64), False
    if mode in _GREY_ALPHA:
        return np.asarray(im)[..., 0].astype(np.float64), False
    if mode in _COLOUR:
        return select_channel(np.asarray(im.convert("RGB")), channel), False
    if mode in _HIGH_DEPTH:
        return np.asarray(im).astype(np.float64), True
    raise ValueError(f"{path} has unsupported image mode {mode!r} (expected grey, colour, 16/32-bit or float)")


def _pillow_frames(path: Path, channel: str, scaling: str, percentiles: tuple[float, float]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.format not in _PILLOW_FORMATS:
                raise ValueError(f"{path} is a {im.format} file; expected PNG, TIFF, JPEG, GIF, BMP, PNM or DICOM")
            frames, depths = [], set()
            for k in range(getattr(im, "n_frames", 1)):
                im.seek(k)
                im.load()  # decode now: a truncated file fails here, naming the file
                values, high = _frame_values(im, channel, path)
                if frames and values.shape != frames[0].shape:
                    raise ValueError(f"{path}: frame {k} is {values.shape[1]}x{values.shape[0]}, frame 0 is "
                                     f"{frames[0].shape[1]}x{frames[0].shape[0]} (frames must share one size)")
                frames.append(values)
                depths.add(high)
    except ValueError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode image {path}: {exc} (expected PNG, TIFF, JPEG, GIF, BMP, PNM or DICOM)") from exc
    if len(depths) > 1:
        raise ValueError(f"{path} mixes 8-bit and high-depth frames")
    stack = np.stack(frames)
    if depths == {True}:
        return scale_to_unit(stack, scaling=scaling, percentiles=percentiles, name=str(path))
    return (stack / 255.0).astype(np.float32)


def read_image_frames(
    path: str | os.PathLike,
    *,
    channel: str = "luma",
    scaling: str = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> np.ndarray:
    """Read every frame of an image file as float32 (F, H, W) in [0, 1].

    Formats: PNG, TIFF (multi-page: one frame per page), JPEG, GIF (animated: one frame per
    frame), BMP, PNM (PBM/PGM/PPM) through Pillow, chosen by content (not by suffix); DICOM
    (``.dcm``/``.dicom`` suffix or the ``DICM`` marker) through pydicom, single- or multi-frame
    (see ``darlkit.data.dicom`` for windows, VOI LUTs and MONOCHROME1).

    Scaling: 8-bit and 1-bit data map exactly as ``v / 255`` (a 1-bit pixel is 0 or 1) and
    ``scaling`` does not apply; data with more than 8 bits (16/32-bit integer, float) without a
    window of its own use ``scaling``: ``"auto"`` maps the window between the ``percentiles``
    (of all frames together) to [0, 1] and **saturates** the pixels outside it at exactly 0 or 1;
    ``"range"`` maps min..max, so nothing saturates (see ``darlkit.data.intensity``).
    Colour: ``channel`` picks ``"red"``, ``"green"`` or ``"blue"``, or the ITU-R 601-2 luma
    (``"luma"``); alpha is dropped, palette images are expanded to RGB first; a grey image is
    the same for every ``channel``.

    Args:
        path: The image file.
        channel: ``"luma"`` (default), ``"green"`` (fundus photographs), ``"red"`` or ``"blue"``.
        scaling: ``"auto"`` or ``"range"`` (high-depth data only; DICOM: ``"auto"`` is its window).
        percentiles: ``(low, high)`` window percentiles in % for ``scaling="auto"``.

    Returns:
        float32 array (F, H, W) in [0, 1]; F = 1 for a single image.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file cannot be decoded, is truncated, has an unsupported format or
            mode, holds NaN/Inf, or on a bad option; the message names the file.
        MissingDependencyError: For DICOM without pydicom (``pip install 'darlkit[dicom]'``).
    """
    channel, scaling = check_channel(channel), check_scaling(scaling)
    p = _checked_file(path)
    if is_dicom(p):
        return read_dicom_frames(p, channel=channel, scaling=scaling)
    return _pillow_frames(p, channel, scaling, percentiles)


def read_image(
    path: str | os.PathLike,
    *,
    channel: str = "luma",
    scaling: str = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> np.ndarray:
    """Read a single image as float32 (H, W) in [0, 1] (rules of ``read_image_frames``).

    Args:
        path: The image file.
        channel: ``"luma"`` (default), ``"green"``, ``"red"`` or ``"blue"``.
        scaling: ``"auto"`` or ``"range"`` (high-depth data only).
        percentiles: Window percentiles for ``scaling="auto"``.

    Returns:
        float32 array (H, W) in [0, 1].

    Raises:
        ValueError: As ``read_image_frames``, and if the file holds more than one frame (use
            ``read_image_frames`` for multi-page TIFF, animated GIF and DICOM cine).
    """
    frames = read_image_frames(path, channel=channel, scaling=scaling, percentiles=percentiles)
    if frames.shape[0] != 1:
        raise ValueError(f"{path} holds {frames.shape[0]} frames; read_image reads single images "
                         "(use read_image_frames for multi-page TIFF, animated GIF or DICOM cine)")
    return frames[0]


def _mask_values(path: Path) -> np.ndarray:
    """Integer/bool stored values of a single-frame mask (palette -> grey, RGB must be grey)."""
    if is_dicom(path):
        raise ValueError(f"{path}: DICOM masks are not supported; save the mask as PNG, TIFF, GIF or BMP")
    try:
        with Image.open(path) as im:
            if im.format not in _PILLOW_FORMATS:
                raise ValueError(f"{path} is a {im.format} file; expected a PNG, TIFF, GIF, BMP or PNM mask")
            if getattr(im, "n_frames", 1) != 1:
                raise ValueError(f"mask {path} holds {im.n_frames} frames; expected a single image")
            im.load()
            mode = im.mode
            if mode == "1" or mode in _GREY_8 or mode in _HIGH_DEPTH:
                values = np.asarray(im)
            elif mode in _GREY_ALPHA:
                values = np.asarray(im)[..., 0]
            elif mode in _COLOUR:
                rgb = np.asarray(im.convert("RGB"))
                if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
                    raise ValueError(f"mask {path} is a colour image whose channels differ; {_MASK_HINT}")
                values = rgb[..., 0]
            else:
                raise ValueError(f"mask {path} has unsupported image mode {mode!r}; {_MASK_HINT}")
    except ValueError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode mask {path}: {exc}") from exc
    return values


def read_mask(path: str | os.PathLike, *, allow_empty: bool = False) -> np.ndarray:
    """Read a binary mask as bool (H, W): True = vessel (or inside the field of view).

    Accepted: exactly two stored values, background 0 and one non-zero vessel value (0/255,
    0/1, 1-bit, palette GIFs such as DRIVE's ``*_manual1.gif`` after palette -> grey, 16-bit
    0/65535, ...); an image with the non-zero value only is all True. Refused with a
    ``ValueError`` naming the file: more than two distinct values (anti-aliased or JPEG masks:
    binarise them first), two values none of which is 0, colour masks whose channels differ,
    multi-frame files, and an all-zero mask (no pixel equals a vessel value: usually a wrongly
    saved mask) unless ``allow_empty=True``. A mask stored inverted (vessel 0 on 255) cannot be
    told apart and reads inverted.

    Args:
        path: The mask file (PNG, TIFF, GIF, BMP, PNM; JPEG only if it is exactly binary).
        allow_empty: Accept an all-zero mask (returns all False).

    Returns:
        bool array (H, W).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: As described above; the message names the file.
    """
    if not isinstance(allow_empty, bool):
        raise TypeError(f"allow_empty must be a bool, got {type(allow_empty).__name__}")
    p = _checked_file(path)
    values = _mask_values(p)
    if values.dtype == bool:
        distinct = np.unique(values.view(np.uint8))
    else:
        distinct = np.unique(values)
    if len(distinct) > 2:
        shown = ", ".join(f"{v:g}" for v in distinct[:6].astype(np.float64))
        raise ValueError(f"mask {p} has {len(distinct)} distinct values ({shown}{', ...' if len(distinct) > 6 else ''}); {_MASK_HINT}")
    if len(distinct) == 2 and distinct[0] != 0:
        raise ValueError(f"mask {p} has values {distinct[0]:g} and {distinct[1]:g}, none of them 0; {_MASK_HINT}")
    mask = values != 0
    if not mask.any() and not allow_empty:
        raise ValueError(f"mask {p} is all zero (no vessel pixel); {_MASK_HINT} (pass allow_empty=True to accept empty masks)")
    return np.ascontiguousarray(mask)


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def list_image_files(folder_or_paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted list of image files.

    Each entry may be a file (its suffix must be one of ``IMAGE_SUFFIXES``, case-insensitive),
    a folder (every non-hidden entry must be a file with such a suffix: mixed ``.jpg``/``.png``
    are all taken; anything else, e.g. ``README.md`` or a sub-folder, is an error, so nothing is
    skipped silently) or a glob pattern (``A/*.tif``, ``**`` recursive; every match is checked as
    a file entry). Duplicates are listed once.

    Args:
        folder_or_paths: One path / pattern, or an iterable of them.

    Returns:
        Sorted list of paths (no duplicates), at least one.

    Raises:
        FileNotFoundError: If a file or folder does not exist or a pattern matches nothing.
        ValueError: If an entry is not an image file (all such entries are listed) or the
            result is empty.
    """
    if isinstance(folder_or_paths, (str, os.PathLike)):
        entries = [folder_or_paths]
    else:
        try:
            entries = list(folder_or_paths)
        except TypeError:
            raise TypeError(f"folder_or_paths must be a path, a glob pattern or an iterable of them, got {type(folder_or_paths).__name__}") from None
    if not entries:
        raise ValueError("folder_or_paths is empty (expected image files, folders or glob patterns)")
    found: set[Path] = set()
    bad: list[str] = []
    for entry in entries:
        if not isinstance(entry, (str, os.PathLike)):
            raise TypeError(f"folder_or_paths entries must be paths or glob patterns, got {type(entry).__name__}")
        text = os.path.expanduser(os.fspath(entry))
        if _is_glob(text) and not Path(text).exists():
            matches = [Path(m) for m in glob.glob(text, recursive=True)]
            if not matches:
                raise FileNotFoundError(f"no file matches the pattern {text}")
            candidates = [m for m in matches if not m.name.startswith(".")]
        elif Path(text).is_dir():
            candidates = [c for c in Path(text).iterdir() if not c.name.startswith(".")]
            if not candidates:
                raise ValueError(f"folder {text} holds no image files")
        elif Path(text).exists():
            candidates = [Path(text)]
        else:
            raise FileNotFoundError(f"image file or folder not found: {text}")
        for c in candidates:
            if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES:
                found.add(c)
            else:
                bad.append(str(c))
    if bad:
        raise ValueError(f"not image files (expected files ending in {', '.join(IMAGE_SUFFIXES)}): {', '.join(sorted(bad))}")
    return sorted(found)


def to_unit_range(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Map uint8 intensities [0, 255] to float32 [-1, 1]: ``x / 127.5 - 1``.

    Args:
        x: uint8 array or tensor, any shape.

    Returns:
        float32 tensor of the same shape in [-1, 1] (0 -> -1, 255 -> 1).

    Raises:
        TypeError: If ``x`` is not uint8.
    """
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"x must be a numpy array or torch.Tensor, got {type(x).__name__}")
    if t.dtype != torch.uint8:
        raise TypeError(f"x must be uint8 in [0, 255], got {t.dtype}")
    return t.to(torch.float32) / 127.5 - 1.0


def from_unit_range(x: torch.Tensor, *, clip: bool = False) -> torch.Tensor:
    """Map float intensities in [-1, 1] to uint8 [0, 255]: ``round((x + 1) * 127.5)``.

    Exact inverse of ``to_unit_range`` on its outputs.

    Args:
        x: Float tensor, any shape, values in [-1, 1].
        clip: Clamp values outside [-1, 1] instead of raising.

    Returns:
        uint8 tensor of the same shape.

    Raises:
        TypeError: If ``x`` is not a floating-point tensor.
        ValueError: If ``x`` has NaN, or values outside [-1, 1] (by more than 1e-6) and ``clip`` is False.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if torch.isnan(x).any():
        raise ValueError("x contains NaN")
    if not clip and x.numel() and (x.min() < -1 - 1e-6 or x.max() > 1 + 1e-6):
        raise ValueError(f"x must be in [-1, 1], got range [{x.min().item():.4g}, {x.max().item():.4g}] (pass clip=True to clamp)")
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
