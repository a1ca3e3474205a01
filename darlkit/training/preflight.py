"""Pre-flight check of an XCAD-layout dataset: every file decoded and paired before step 1.

A truncated PNG, a text file named ``.png`` or a test mask of the wrong size would otherwise be
found only when it is first read, at step k or at the final validation, and a resumed run would
stop there again. :func:`check_dataset_files` reads every file of the layout

- ``train/trainA`` (fractal masks), ``train/trainB`` (angiograms), ``train/trainC`` (backgrounds),
- ``test/images`` + ``test/masks`` and ``val/images`` + ``val/masks`` (paired by file name),
- optional ``test/roi`` / ``val/roi`` (field-of-view masks paired by file name),

decodes each one completely with the readers :class:`~darlkit.data.XCADDataset` uses
(:func:`~darlkit.data.read_image`, :func:`~darlkit.data.read_mask`,
:func:`~darlkit.data.read_training_mask`), checks sizes (training images at least
``min_train_side`` when given; each mask and ROI the size of its image) and pairing by file stem
as the dataset pairs them (every image has its mask and every mask its image), and raises ONE
:class:`DatasetCheckError` listing every problem found.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from darlkit.data.io import IMAGE_SUFFIXES, read_image as _read_image, read_mask as _read_mask
from darlkit.data.xcad import read_training_mask

__all__ = [
    "DatasetCheckError",
    "PreflightReport",
    "check_dataset_files",
    "check_training_datasets",
    "TRAIN_SUBFOLDERS",
    "PAIRED_SPLITS",
]

TRAIN_SUBFOLDERS: tuple[str, ...] = ("trainA", "trainB", "trainC")
"""Folders of ``train/`` that are checked (masks, angiograms, backgrounds)."""

PAIRED_SPLITS: tuple[str, ...] = ("test", "val")
"""Splits with ``images/`` + ``masks/`` (+ optional ``roi/``) checked when present."""

Reader = Callable[[Path], Any]

_DEFAULT_READ_IMAGE: Reader = _read_image
_DEFAULT_READ_MASK: Reader = _read_mask
_DEFAULT_READ_TRAIN_MASK: Reader = read_training_mask


class DatasetCheckError(ValueError):
    """One error for every bad file of a dataset; ``problems`` holds one line per file."""

    def __init__(self, root: Path, problems: Sequence[str], checked: int) -> None:
        self.root = Path(root)
        self.problems = list(problems)
        self.checked = int(checked)
        shown = self.problems[:_MAX_LISTED]
        more = len(self.problems) - len(shown)
        tail = f"; ... and {more} more" if more else ""
        super().__init__(
            f"pre-flight check of {self.root} found {len(self.problems)} problem(s) in {checked} file(s) "
            f"(nothing was trained): " + "; ".join(shown) + tail
        )


_MAX_LISTED = 50


@dataclass
class PreflightReport:
    """What :func:`check_dataset_files` checked.

    Attributes:
        root: The dataset folder.
        files: Number of files decoded.
        folders: The checked folders, relative to ``root``.
        sizes: (H, W) of every decoded file, keyed by its path.
    """

    root: Path
    files: int = 0
    folders: list[str] = field(default_factory=list)
    sizes: dict[Path, tuple[int, int]] = field(default_factory=dict)


def _listing(folder: Path, problems: list[str]) -> list[Path]:
    """Image files of ``folder`` (sorted); other visible entries and an empty folder are problems."""
    files = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            files.append(entry)
        else:
            problems.append(f"{entry}: unexpected entry (only image files, {' '.join(IMAGE_SUFFIXES)}, belong in {folder})")
    if not files:
        problems.append(f"{folder}: no image files")
    return files


def _decode(reader: Reader, path: Path) -> tuple[Path, tuple[int, int] | None, str | None]:
    try:
        arr = reader(path)
    except (ValueError, OSError) as exc:
        text = " ".join(str(exc).split())
        return path, None, text if str(path) in text else f"{path}: {text}"
    shape = tuple(int(s) for s in getattr(arr, "shape", ())[:2])
    if len(shape) != 2:
        return path, None, f"{path}: the reader returned no (H, W) array"
    return path, shape, None


def _pair(kind: str, images: list[Path], others: list[Path], folder: Path, problems: list[str]) -> list[tuple[Path, Path]]:
    """Match ``images`` and ``others`` (masks or ROIs) by file stem; unmatched files are problems."""
    by_stem = {p.stem: p for p in others}
    image_stems = {p.stem for p in images}
    pairs = []
    for img in images:
        if img.stem in by_stem:
            pairs.append((img, by_stem[img.stem]))
        else:
            problems.append(f"{img}: no {kind} {folder / img.stem}.* (same file stem)")
    for other in others:
        if other.stem not in image_stems:
            problems.append(f"{other}: {kind} without an image of the same name")
    return pairs


def check_dataset_files(
    root: str | os.PathLike[str],
    *,
    min_train_side: int | None = None,
    splits: Sequence[str] = ("train", "test", "val"),
    read_image: Reader | None = None,
    read_mask: Reader | None = None,
    read_train_mask: Reader | None = None,
    workers: int | None = None,
) -> PreflightReport:
    """Decode and cross-check every file of an XCAD-layout dataset; one error lists all problems.

    Args:
        root: Dataset folder (``train/``, ``test/``, optional ``val/``).
        min_train_side: Smallest accepted height and width of the training images (a dataset
            with ``small="error"`` refuses smaller ones); ``None``: any size (the dataset pads).
        splits: Which of ``"train"``, ``"test"``, ``"val"`` to check. ``"train"`` must exist
            when listed; ``test/`` and ``val/`` are checked when present (a present split needs
            both ``images/`` and ``masks/``).
        read_image: Reader of images (path -> (H, W[, C]) array, raising ``ValueError`` on a bad
            file); default :func:`darlkit.data.read_image`.
        read_mask: Reader of test/val masks and ROIs; default :func:`darlkit.data.read_mask`.
        read_train_mask: Reader of ``train/trainA``; default :func:`darlkit.data.read_training_mask`.
        workers: Decoding threads (default: up to 8, by the CPU count).

    Returns:
        A :class:`PreflightReport` (files decoded, folders, sizes).

    Raises:
        FileNotFoundError: If ``root`` does not exist.
        ValueError: If ``splits`` names an unknown split.
        DatasetCheckError: (a ``ValueError``) listing every problem: missing or empty folders,
            entries that are not image files, files that do not decode (truncated, not an
            image, a mask with more than two values, ...), training images that are too small, unpaired images/masks/ROIs, masks or ROIs whose
            size differs from their image's.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    unknown = [s for s in splits if s not in ("train", *PAIRED_SPLITS)]
    if unknown:
        raise ValueError(f"splits must be a subset of ('train', 'test', 'val'), got {list(splits)}")
    read_image = _DEFAULT_READ_IMAGE if read_image is None else read_image
    read_mask = _DEFAULT_READ_MASK if read_mask is None else read_mask
    read_train_mask = _DEFAULT_READ_TRAIN_MASK if read_train_mask is None else read_train_mask
    report = PreflightReport(root)
    problems: list[str] = []
    jobs: list[tuple[Reader, Path]] = []
    train_files: list[Path] = []
    pairs: list[tuple[str, Path, Path]] = []  # (kind, image, mask or roi)

    def folder(rel: str, required: bool) -> list[Path] | None:
        path = root / rel
        if not path.is_dir():
            if required:
                problems.append(f"{path}: missing folder" if not path.exists() else f"{path}: not a folder")
            return None
        report.folders.append(rel)
        return _listing(path, problems)

    if "train" in splits:
        for sub in TRAIN_SUBFOLDERS:
            files = folder(f"train/{sub}", required=True) or []
            reader = read_train_mask if sub == "trainA" else read_image
            jobs += [(reader, f) for f in files]
            train_files += files
    for split in PAIRED_SPLITS:
        if split not in splits or not (root / split).exists():
            continue
        images = folder(f"{split}/images", required=True)
        masks = folder(f"{split}/masks", required=True)
        jobs += [(read_image, f) for f in images or []] + [(read_mask, f) for f in masks or []]
        if images is not None and masks is not None:  # a missing folder is reported once, above
            pairs += [("mask", i, m) for i, m in _pair("mask", images, masks, root / split / "masks", problems)]
        if images is not None and (root / split / "roi").exists():
            rois = folder(f"{split}/roi", required=True) or []
            jobs += [(read_mask, f) for f in rois]
            pairs += [("ROI", i, r) for i, r in _pair("ROI", images, rois, root / split / "roi", problems)]

    n_workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
        results = list(pool.map(lambda job: _decode(*job), jobs))
    for path, shape, error in results:
        if error is not None:
            problems.append(error)
        else:
            report.sizes[path] = shape  # type: ignore[assignment]
    report.files = len(jobs)
    if min_train_side is not None:
        for f in train_files:
            shape = report.sizes.get(f)
            if shape is not None and min(shape) < min_train_side:
                problems.append(
                    f"{f}: {shape[1]}x{shape[0]} is smaller than the {min_train_side}x{min_train_side} the "
                    "training crops need (the dataset has small='error')"
                )
    for kind, image, other in pairs:
        a, b = report.sizes.get(image), report.sizes.get(other)
        if a is not None and b is not None and a != b:
            problems.append(f"{other}: {kind} is {b[1]}x{b[0]} but image {image} is {a[1]}x{a[0]}")
    if problems:
        raise DatasetCheckError(root, problems, report.files)
    return report


def check_training_datasets(train_set: Any, val_data: Any = None) -> None:
    """:func:`check_dataset_files` for the XCAD-layout datasets a training run reads.

    The folders of an :class:`~darlkit.data.XCADDataset` training set (with its crop size) and
    of an ``XCADDataset`` validation set (or a DataLoader over one) are checked; other datasets
    are left alone (they have no files to check).

    Args:
        train_set: The training dataset.
        val_data: The validation dataset or DataLoader, or ``None``.

    Raises:
        DatasetCheckError: Listing every problem found.
    """
    from torch.utils.data import DataLoader

    from darlkit.data import XCADDataset

    val_set = val_data.dataset if isinstance(val_data, DataLoader) else val_data
    splits: dict[Path, set[str]] = {}
    side = None
    if isinstance(train_set, XCADDataset) and train_set.split == "train":
        splits[train_set.root] = {"train"}
        if train_set.small == "error":
            side = train_set.size * (2 if train_set.polyphase else 1)
    if isinstance(val_set, XCADDataset):
        splits.setdefault(val_set.root, set()).add(val_set.split)
    for root, names in splits.items():
        check_dataset_files(root, min_train_side=side if "train" in names else None, splits=tuple(sorted(names)))
