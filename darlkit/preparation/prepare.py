"""``prepare_dataset``: user folders (any format, size, modality) -> the XCAD layout ``darlkit train`` reads.

Written under ``out`` (8-bit grey PNGs, ``darlkit.data.XCADDataset`` reads them):

- ``train/trainB/<stem>.png``: the unlabeled images (``images``; a multi-frame file gives
  ``<stem>_f000.png``, ...), reduced to one channel with ``channel``, optionally inverted, resampled;
- ``train/trainC/<stem>.png``: backgrounds, given (``backgrounds``) or ``"auto"``: one
  vessel-free pseudo-background per training image (``darlkit.data.background``);
- ``train/trainA/<NNNNN>.png``: training vessel masks, given (``masks``, converted; two-valued
  masks become 0/255) or ``"synth"``: fractal masks matched to the targets' vessel width and
  fraction (``darlkit.preparation.masks``);
- ``test/images``, ``test/masks`` (0/255) and, with ROI masks, ``test/roi`` (0/255, 255 inside the
  field of view), the same for ``val/``: test/val images paired with their masks by key
  (``darlkit.data.pairing``); ROI masks given (paired the same way with the test and val images)
  or ``"auto"`` (``darlkit.data.roi.field_of_view`` of each image's luma);
- real-image steps, after everything is written (defaults; each recorded in ``prepare.json``):
  ``contrast="local"`` normalises every image inside its field of view
  (``darlkit.preparation.contrast``; the pseudo-backgrounds are made from the normalised images);
  ``mask_fov="auto"`` keeps synthetic vessels inside the training images' fields of view
  (``darlkit.preparation.masks``); ``train_tile=512`` cuts large training files into tiles inside
  the field of view (``darlkit.preparation.tiles``);
- ``prepare.json``: every option, every derived value (vessel width/fraction and where they come
  from, closing width, mask parameters), and every written file with its source.

Intensities: ``read_image`` (8-bit data exactly, high-depth data by their window or the 0.5/99.5
percentiles, see ``darlkit.data.intensity``), then ``round(255 v)``. Sizes: with ``size`` every image
is resampled (bilinear, area-averaging when shrinking; no overshoot, so nothing is clipped) so its
shorter side is ``size``; masks are resampled the same way and thresholded at 0.5. An image and its
mask must have the same size before resampling. Nothing is skipped: unreadable files, unmatched
labels and name collisions are errors; ``out`` is written through a temporary folder beside it and
replaced only at the end, so a failed run leaves no half-written layout (the work runs on one
torch thread: its operations are small, and more threads only contend); an existing non-empty
``out`` is replaced only with ``overwrite=True`` and only if it holds a ``prepare.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from darlkit.data.background import BACKGROUND_METHODS, pseudo_background
from darlkit.data.intensity import check_channel
from darlkit.data.io import list_image_files, read_image, read_image_frames, read_mask
from darlkit.data.pairing import pair_files
from darlkit.data.roi import field_of_view
from darlkit.preparation.tiles import MIN_TILE_COVERAGE, write_tiles
from darlkit.preparation.contrast import CONTRAST_MODES, Z_MAX
from darlkit.preparation.replay import PREPARE_RECORD, contrast_in_field_of_view, prepared_shape, resample
from darlkit.preparation.masks import (
    calibrate_tree_params,
    restrict_to_fov,
    square_fov,
    synthesize_masks,
    vessel_fraction,
    vessel_width,
)

__all__ = [
    "prepare_dataset", "DEFAULT_VESSEL_WIDTH_512", "DEFAULT_VESSEL_FRACTION", "PREPARE_RECORD", "MASK_FOV_MODES", "MAX_MASK_FOVS",
]

DEFAULT_VESSEL_WIDTH_512 = 22.0
"""Widest-vessel diameter (px on a 512 px side) assumed when there are no labels (XCAD-like)."""

DEFAULT_VESSEL_FRACTION = 0.055
"""Vessel fraction assumed for synthetic masks when there are no labels (the tree style's default)."""


MASK_FOV_MODES: tuple[str, ...] = ("auto", "none")
"""``mask_fov=`` options of ``prepare_dataset``."""

MAX_MASK_FOVS = 64
"""``mask_fov="auto"`` uses the fields of view of at most this many training images (evenly spaced)."""

PathList = Sequence[str | os.PathLike]


def _save(x: np.ndarray, path: Path) -> None:
    """Save a [0, 1] float image (or bool mask) as an 8-bit grey PNG."""
    arr = (np.asarray(x) * 255.0).round().astype(np.uint8) if x.dtype != bool else x.astype(np.uint8) * 255
    Image.fromarray(arr, mode="L").save(path, format="PNG")


class _Writer:
    """Writes files into the partial folder and records them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, list[dict[str, Any]]] = {}

    def write(self, folder: str, name: str, x: np.ndarray, source: Path | None, **info: Any) -> Path:
        path = self.root / folder / name
        if path.exists():
            raise ValueError(f"two inputs would both be written to {folder}/{name} (same file stem); rename one of them")
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(x, path)
        entry = {"file": f"{folder}/{name}", "source": None if source is None else str(source), "size": [x.shape[1], x.shape[0]], **info}
        self.files.setdefault(folder, []).append(entry)
        return path


def _check_out(out: Path, overwrite: bool, inputs: list[Path]) -> None:
    resolved = out.resolve()
    for f in inputs:
        if resolved in f.resolve().parents:
            raise ValueError(f"OUT {out} contains the input {f}; choose another output folder")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"OUT {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"OUT {out} is not empty; pass --overwrite to replace a previous prepare output")
        if not (out / PREPARE_RECORD).is_file():
            raise FileExistsError(f"OUT {out} is not empty and holds no {PREPARE_RECORD}; --overwrite replaces only "
                                  "folders written by darlkit prepare")


def _odd_at_least(v: float) -> int:
    k = max(3, int(math.ceil(v)))
    return k if k % 2 else k + 1


def prepare_dataset(
    out: str | os.PathLike,
    *,
    images: PathList,
    backgrounds: PathList | str = "auto",
    masks: PathList | str = "synth",
    test_images: PathList | None = None,
    test_masks: PathList | None = None,
    val_images: PathList | None = None,
    val_masks: PathList | None = None,
    roi_masks: PathList | str | None = None,
    channel: str = "luma",
    size: int | None = None,
    pair: str | None = None,
    invert: bool = False,
    mask_style: str = "tree",
    mask_fov: str = "auto",
    background_method: str = "closing",
    contrast: str = "local",
    contrast_sigma: float | None = None,
    train_tile: int | None = 512,
    n_masks: int | None = None,
    vessel_fraction_target: float | None = None,
    vessel_width_target: float | None = None,
    background_width: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the XCAD layout for ``darlkit train`` / ``evaluate`` from user files (rules: module docstring).

    Args:
        out: Output folder.
        images: Unlabeled training images: files, folders or glob patterns.
        backgrounds: Background images, or ``"auto"`` (pseudo-backgrounds from ``images``).
        masks: Training vessel masks, or ``"synth"`` (fractal masks matched to the targets).
        test_images: Labeled test images (with ``test_masks``).
        test_masks: Their vessel masks (binary: 0/255, 0/1, 1-bit, palette GIF).
        val_images: Labeled validation images (with ``val_masks``), written to ``val/``.
        val_masks: Their vessel masks.
        roi_masks: Field-of-view masks of the test/val images, ``"auto"``, or ``None`` (no ROI).
        channel: Colour reduction: ``"luma"``, ``"green"`` (fundus), ``"red"``, ``"blue"``.
        size: Resample every image so its shorter side is ``size`` (``None``: keep sizes).
        pair: Regular expression for the pairing key (``darlkit.data.pairing``).
        invert: Invert intensities (``1 - v``) of every image, for bright vessels on dark.
        mask_style: ``"tree"`` (matched to the targets) or ``"ssvs"`` (XCAD's rectangle fractals).
        mask_fov: ``"auto"``: synthetic mask ``i`` keeps only the vessels inside the field of view
            (``darlkit.data.roi.field_of_view``, cut to the masks' centred square) of training
            image ``i`` (of up to ``MAX_MASK_FOVS`` of them, cycled), and the fraction is matched
            inside it: real vessels lie inside the eye of a fundus photograph; images without a
            dark surround have an all-true field of view, so nothing changes for them.
            ``"none"``: masks cover the whole square.
        background_method: How ``backgrounds="auto"`` makes them: ``"closing"`` or ``"fill"``
            (``darlkit.data.background.pseudo_background``), or ``"self"``: the training images
            themselves, vessels included (C-DARL's synthesis path, which diffuses the real image;
            the generator must then replace its vessels by the mask's).
        contrast: ``"local"``: every written image (training, validation, test) is replaced by its
            local contrast normalisation inside its field of view
            (``darlkit.preparation.contrast.local_contrast``; 0.5 outside the field of view), before
            the pseudo-backgrounds are made from it; ``"none"``: intensities as read.
        contrast_sigma: Gaussian width (px, at the output size) of ``contrast="local"`` (default
            1.5 x the vessel width).
        train_tile: Cut every training image, background and synthetic mask whose shorter side is
            longer than this into ``train_tile`` x ``train_tile`` tiles overlapping by half, keeping
            the tiles at least half inside the field of view (``darlkit.preparation.tiles``): the
            loader then decodes small files, and crops fall inside the eye (``None``: whole files).
            512 suits every preset (the paper's 256 crops are polyphase halves of 512 squares).
        n_masks: Number of synthetic masks (default: one per training image).
        vessel_fraction_target: Vessel fraction for the synthetic masks (default: measured on the
            validation masks inside their ROI, else ``DEFAULT_VESSEL_FRACTION``; the test masks
            are never used, so the test set cannot shape training).
        vessel_width_target: Widest-vessel diameter (px, at the output size) for the synthetic
            masks and the closing (default: measured on the validation masks, else
            ``DEFAULT_VESSEL_WIDTH_512`` scaled to the images' shorter side).
        background_width: Closing width (odd, px) of ``backgrounds="auto"`` (default: the smallest
            odd number >= 1.5 x the vessel width, at least 3).
        seed: Seed of the synthetic masks and of the pseudo-backgrounds' noise.
        overwrite: Replace a previous ``prepare`` output in ``out``.
        log: Printer for progress lines.

    Returns:
        The record written to ``out/prepare.json``.

    Raises:
        ValueError: On bad options, unreadable or unmatched files, size mismatches.
        FileExistsError: If ``out`` is not empty and ``overwrite`` is False (or it is not a prepare output).
    """
    log = log or (lambda _msg: None)
    channel = check_channel(channel)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"--size must be a positive int, got {size!r}")
    if mask_style not in ("tree", "ssvs"):
        raise ValueError(f"--mask-style must be 'tree' or 'ssvs', got {mask_style!r}")
    if contrast not in CONTRAST_MODES:
        raise ValueError(f"--contrast must be one of {CONTRAST_MODES}, got {contrast!r}")
    if contrast_sigma is not None and not (isinstance(contrast_sigma, (int, float)) and 0 < contrast_sigma < float("inf")):
        raise ValueError(f"--contrast-sigma must be a finite number > 0, got {contrast_sigma!r}")
    if background_method not in BACKGROUND_METHODS + ("self",):
        raise ValueError(f"--background-method must be one of {BACKGROUND_METHODS + ('self',)}, got {background_method!r}")
    if train_tile is not None and (isinstance(train_tile, bool) or not isinstance(train_tile, int) or train_tile < 32):
        raise ValueError(f"--train-tile must be an int >= 32 (or none), got {train_tile!r}")
    if mask_fov not in MASK_FOV_MODES:
        raise ValueError(f"--mask-fov must be one of {MASK_FOV_MODES}, got {mask_fov!r}")
    for flag, a, b in (("--test", test_images, test_masks), ("--val", val_images, val_masks)):
        if (a is None) != (b is None):
            raise ValueError(f"{flag}-images and {flag}-masks go together (give both or neither)")
    if roi_masks is not None and test_images is None and val_images is None:
        raise ValueError("--roi-masks needs --test-images or --val-images (ROI masks belong to labeled images)")
    out = Path(out)
    train_files = list_image_files(images)
    splits = {name: (list_image_files(i), list_image_files(m)) for name, i, m in
              (("test", test_images, test_masks), ("val", val_images, val_masks)) if i is not None}
    bg_files = None if backgrounds == "auto" else list_image_files(backgrounds)
    mask_files = None if masks == "synth" else list_image_files(masks)
    roi_files = None if roi_masks in (None, "auto") else list_image_files(roi_masks)
    every = train_files + [f for i, m in splits.values() for f in i + m] + (bg_files or []) + (mask_files or []) + (roi_files or [])
    _check_out(out, overwrite, every)
    pairs = {name: pair_files(i, m, pattern=pair, what=f"--{name}-masks") for name, (i, m) in splits.items()}
    roi_of: dict[Path, Path] = {}
    if roi_files is not None:
        labeled = [img for p in pairs.values() for img, _ in p]
        roi_of = dict(pair_files(labeled, roi_files, pattern=pair, what="--roi-masks"))

    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
    except OSError as exc:
        raise ValueError(f"OUT {out}: cannot write beside it ({exc.strerror or exc})") from None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the image operations are small: one thread is fastest (and polite)
    try:
        record = _write_all(partial, log, train_files, pairs, roi_of, roi_masks == "auto", bg_files, mask_files,
                            channel=channel, size=size, invert=invert, mask_style=mask_style, mask_fov=mask_fov,
                            bg_method=background_method, contrast=contrast, contrast_sigma=contrast_sigma, train_tile=train_tile, n_masks=n_masks, fraction=vessel_fraction_target, width=vessel_width_target, bg_width=background_width, seed=seed)
        record["options"] = {
            "images": [str(p) for p in images], "backgrounds": backgrounds if isinstance(backgrounds, str) else [str(p) for p in backgrounds],
            "masks": masks if isinstance(masks, str) else [str(p) for p in masks],
            "test_images": None if test_images is None else [str(p) for p in test_images],
            "test_masks": None if test_masks is None else [str(p) for p in test_masks],
            "val_images": None if val_images is None else [str(p) for p in val_images],
            "val_masks": None if val_masks is None else [str(p) for p in val_masks],
            "roi_masks": roi_masks if roi_masks is None or isinstance(roi_masks, str) else [str(p) for p in roi_masks],
            "channel": channel, "size": size, "pair": pair, "invert": invert, "mask_style": mask_style, "mask_fov": mask_fov, "background_method": background_method, "contrast": contrast,
            "contrast_sigma": contrast_sigma, "train_tile": train_tile, "n_masks": n_masks,
            "vessel_fraction": vessel_fraction_target, "vessel_width": vessel_width_target,
            "background_width": background_width, "seed": seed,
        }
        (partial / PREPARE_RECORD).write_text(json.dumps(record, indent=2))
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    return record


def _read(path: Path, channel: str, invert: bool, size: int | None) -> list[np.ndarray]:
    frames = read_image_frames(path, channel=channel)
    out = []
    for x in frames:
        x = 1.0 - x if invert else x
        out.append(np.clip(resample(x, prepared_shape(*x.shape, size)), 0.0, 1.0))  # bilinear: clip is a no-op guard
    return out


def _label(path: Path, image: Path, raw_shape: tuple[int, int], shape: tuple[int, int], what: str) -> np.ndarray:
    """A binary label of ``image`` resampled to ``shape`` (bilinear, then >= 0.5)."""
    m = read_mask(path)
    if m.shape != raw_shape:
        raise ValueError(f"{what} {path} is {m.shape[1]}x{m.shape[0]} but image {image} is {raw_shape[1]}x{raw_shape[0]}")
    return m if m.shape == shape else resample(m.astype(np.float32), shape) >= 0.5


def _write_frames(w: "_Writer", folder: str, f: Path, frames: list[np.ndarray]) -> None:
    for k, x in enumerate(frames):
        name = f"{f.stem}.png" if len(frames) == 1 else f"{f.stem}_f{k:03d}.png"
        w.write(folder, name, x, f, frame=k if len(frames) > 1 else None)


def _mask_fovs(fovs: list[np.ndarray], side: int) -> list[np.ndarray] | None:
    """Fields of view of the first ``MAX_MASK_FOVS`` training images as centred squares of ``side``;
    ``None`` when every one covers its whole square (nothing to restrict)."""
    squares = [square_fov(f, side) for f in fovs]
    return None if all(f.all() for f in squares) else squares


def _write_all(root, log, train_files, pairs, roi_of, roi_auto, bg_files, mask_files, *, channel, size, invert,
               mask_style, mask_fov, bg_method, contrast, contrast_sigma, train_tile, n_masks, fraction, width, bg_width, seed) -> dict[str, Any]:
    w = _Writer(root)
    shorts: list[int] = []  # images are written as they are read: memory holds one file at a time
    for f in train_files:
        frames = _read(f, channel, invert, size)
        _write_frames(w, "train/trainB", f, frames)
        shorts.extend(min(x.shape) for x in frames)
    log(f"darlkit prepare: {len(shorts)} training images from {len(train_files)} files")
    widths, fractions = [], []
    for split, split_pairs in pairs.items():
        for img_path, mask_path in split_pairs:
            frames = read_image_frames(img_path, channel=channel)
            if frames.shape[0] != 1:
                raise ValueError(f"{split} image {img_path} holds {frames.shape[0]} frames; labeled images must be single images")
            raw = frames[0]
            shape = prepared_shape(*raw.shape, size)
            x = np.clip(resample(1.0 - raw if invert else raw, shape), 0.0, 1.0)
            m = _label(mask_path, img_path, raw.shape, shape, "mask")
            w.write(f"{split}/images", f"{img_path.stem}.png", x, img_path)
            w.write(f"{split}/masks", f"{img_path.stem}.png", m, mask_path)
            roi = None
            if img_path in roi_of:
                roi = _label(roi_of[img_path], img_path, raw.shape, shape, "ROI mask")
                w.write(f"{split}/roi", f"{img_path.stem}.png", roi, roi_of[img_path])
            elif roi_auto:
                roi = field_of_view(resample(read_image(img_path, channel="luma"), shape))
                w.write(f"{split}/roi", f"{img_path.stem}.png", roi, None, rule="auto")
            if split == "val":  # never the test labels: they must not shape training
                widths.append(vessel_width(m))
                fractions.append(vessel_fraction(m, roi))
    short = int(np.median(shorts))
    source = "val masks" if widths else "default"
    v_width = float(width) if width is not None else (float(np.mean(widths)) if widths else DEFAULT_VESSEL_WIDTH_512 * short / 512)
    v_frac = float(fraction) if fraction is not None else (float(np.mean(fractions)) if fractions else DEFAULT_VESSEL_FRACTION)
    record: dict[str, Any] = {
        "layout": "xcad", "channel": channel, "invert": invert, "size": size,
        "vessels": {"width": v_width, "fraction": v_frac,
                    "width_from": "option" if width is not None else source, "fraction_from": "option" if fraction is not None else source,
                    "rule": "width = 2 x 99th percentile of the chessboard depth of vessel pixels; fraction inside the ROI"},
    }
    tiled = train_tile is not None and short > train_tile
    fovs = {}  # field of view of each written image, before any normalisation (training images: as needed)
    for folder in ("train/trainB", "val/images", "test/images"):
        for j, entry in enumerate(w.files.get(folder, [])):
            keep = folder != "train/trainB" or j < MAX_MASK_FOVS or tiled
            if keep or contrast == "local":
                fov = field_of_view(read_image(root / entry["file"]))
                if keep:
                    fovs[entry["file"]] = fov
            if contrast == "local":
                sigma = float(contrast_sigma) if contrast_sigma is not None else 1.5 * v_width
                x, limited = contrast_in_field_of_view(read_image(root / entry["file"]), sigma, fov)
                _save(x, root / entry["file"])
                entry["contrast_limited"] = round(limited, 5)
    record["contrast"] = {"mode": contrast}
    if contrast == "local":
        record["contrast"].update(sigma=sigma, z_max=Z_MAX, fov="field_of_view of the image, eroded by 2 px",
                                  rule="darlkit.preparation.contrast.local_contrast")
    if bg_files is None:
        k = int(bg_width) if bg_width is not None else _odd_at_least(1.5 * v_width)
        if k < 3 or k % 2 == 0:
            raise ValueError(f"--background-width must be an odd int >= 3, got {bg_width!r}")
        for i, entry in enumerate(w.files["train/trainB"]):  # from the written 8-bit image, as training sees it
            x = read_image(root / entry["file"])
            bg = x if bg_method == "self" else pseudo_background(x, k, seed=seed + i, method=bg_method)
            w.write("train/trainC", Path(entry["file"]).name, bg, Path(entry["source"]), rule=f"auto ({bg_method})")
        record["backgrounds"] = {"mode": "auto", "method": bg_method, "width": k, "noise": "match",
                                 "rule": "the training images themselves (C-DARL's B path)" if bg_method == "self"
                                 else "darlkit.data.background.pseudo_background"}
    else:
        for f in bg_files:
            _write_frames(w, "train/trainC", f, _read(f, channel, invert, size))
        record["backgrounds"] = {"mode": "files"}
    log(f"darlkit prepare: {len(w.files['train/trainC'])} backgrounds ({record['backgrounds']['mode']})")
    if mask_files is None:
        side = max(32, short + short % 2)
        n = int(n_masks) if n_masks is not None else len(shorts)
        if n < 1:
            raise ValueError(f"--n-masks must be >= 1, got {n_masks!r}")
        square = _mask_fovs([fovs[e["file"]] for e in w.files["train/trainB"][:MAX_MASK_FOVS]], side) if mask_fov == "auto" else None
        params, achieved = (calibrate_tree_params(side, v_width, v_frac, seed=seed, fovs=square) if mask_style == "tree" else (None, {}))
        for start in range(0, n, 16):  # in chunks: memory stays bounded for thousands of masks
            chunk = synthesize_masks(min(16, n - start), side, style=mask_style, params=params, seed=seed, first=start)
            if square:
                chunk = restrict_to_fov(chunk, [square[i % len(square)] for i in range(start, start + chunk.shape[0])])
            for i, m in enumerate(chunk.numpy(), start):
                w.write("train/trainA", f"{i:05d}.png", m.astype(np.float32) / 255.0, None, rule="synth")
        record["masks"] = {"mode": "synth", "style": mask_style, "n": n, "side": side, "achieved": achieved,
                           "fov": "none" if square is None else f"auto: {len(square)} training images' fields of view, cycled",
                           "tree_params": None if params is None else dataclasses.asdict(params)}
    else:
        for f in mask_files:
            x = read_image(f)
            if len(np.unique(np.rint(x * 255))) <= 2:
                x = read_mask(f).astype(np.float32)
            w.write("train/trainA", f"{f.stem}.png", np.clip(resample(x, prepared_shape(*x.shape, size)), 0.0, 1.0), f)
        record["masks"] = {"mode": "files"}
    if tiled:
        b_fov = {Path(e["file"]).name: fovs[e["file"]] for e in w.files["train/trainB"]}
        fov_of = {"train/trainB": lambda i, e: b_fov[Path(e["file"]).name], "train/trainC": lambda i, e: b_fov.get(Path(e["file"]).name),
                  "train/trainA": lambda i, e: None if mask_files is not None or square is None else square[i % len(square)]}
        for folder, rule in fov_of.items():
            w.files[folder] = write_tiles(root, w.files[folder], train_tile, rule, _save)
        record["tiles"] = {"side": train_tile, "stride": train_tile // 2, "min_coverage": MIN_TILE_COVERAGE,
                           "counts": {k: len(w.files[k]) for k in ("train/trainA", "train/trainB", "train/trainC")}}
        log(f"darlkit prepare: training files cut into {train_tile} px tiles: {record['tiles']['counts']}")
    record["files"] = w.files
    record["counts"] = {folder: len(entries) for folder, entries in w.files.items()}
    return record
