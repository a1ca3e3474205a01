"""``XCADDataset``: the XCAD folder layout (real, ``darlkit synth``- or ``darlkit prepare``-made) as a Dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from darlkit.data.intensity import check_channel
from darlkit.data.io import list_image_files, read_image, read_mask
from darlkit.polyphase import POLYPHASE_OFFSETS

__all__ = ["XCADDataset", "SPLITS", "TRAIN_FOLDERS", "PAIRED_FOLDERS", "SMALL_IMAGE_MODES"]

SPLITS: tuple[str, ...] = ("train", "test", "val")
"""Dataset splits of ``XCADDataset`` (``"val"`` is laid out and read like ``"test"``)."""

TRAIN_FOLDERS: dict[str, str] = {"angiogram": "trainB", "background": "trainC", "mask": "trainA"}
"""``train/`` sub-folder of each training item key (angiograms, backgrounds, fractal masks)."""

PAIRED_FOLDERS: dict[str, str] = {"image": "images", "mask": "masks", "roi": "roi"}
"""Sub-folders of a ``test/`` or ``val/`` split (``roi`` optional: field-of-view masks)."""

SMALL_IMAGE_MODES: tuple[str, ...] = ("reflect", "error")
"""What ``XCADDataset(small=...)`` does with a training image smaller than a crop."""

# Spawn-key namespaces of the per-epoch permutations, per-item augmentations and crop positions.
_PERM_KEY = 0
_ITEM_KEY = 1
_CROP_KEY = 2


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _list_folder(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    if not any(not e.name.startswith(".") for e in folder.iterdir()):
        raise ValueError(f"no image files in {folder}")
    return list_image_files(folder)


def _by_stem(files: list[Path], folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        if f.stem in out:
            raise ValueError(f"{folder} holds two files with the stem {f.stem!r}: {out[f.stem].name} and {f.name}")
        out[f.stem] = f
    return out


def _pair_split(root: Path, split: str) -> dict[str, list[Path]]:
    """Images, masks (and ROI masks when ``roi/`` exists) of a test/val split, paired by file stem."""
    base = root / split
    images = _list_folder(base / PAIRED_FOLDERS["image"])
    stems = _by_stem(images, base / PAIRED_FOLDERS["image"])
    files = {"image": images}
    for key in ("mask", "roi"):
        folder = base / PAIRED_FOLDERS[key]
        if key == "roi" and not folder.is_dir():
            continue
        others = _by_stem(_list_folder(folder), folder)
        for img in images:
            if img.stem not in others:
                raise FileNotFoundError(f"{split} image {img} has no {key} file in {folder} (expected {img.stem}.png or another image suffix)")
        for stem, other in others.items():
            if stem not in stems:
                raise ValueError(f"{split} {key} file {other} has no image in {base / PAIRED_FOLDERS['image']}")
        files[key] = [others[img.stem] for img in images]
    return files


def _train_mask(path: Path) -> np.ndarray:
    """A fractal training mask as bool: the pixels at the top value 255 (DARL's rule; the
    anti-aliased grey rim is background); a two-valued mask (0/1, 0/255, 1-bit) reads as ``read_mask``."""
    values = np.rint(read_image(path).astype(np.float64) * 255.0)
    if len(np.unique(values)) <= 2 and values.max() < 255.0:
        return read_mask(path)
    vessel = values == 255.0
    if not vessel.any():
        raise ValueError(f"training mask {path} has no pixel at 255 (the vessel value); expected a 0..255 vessel mask")
    return vessel


class XCADDataset(Dataset):
    """The XCAD layout: unpaired training crops, or paired test/val images (any format and size).

    Layout under ``root``: ``train/trainB`` angiograms, ``train/trainC`` backgrounds,
    ``train/trainA`` fractal masks (unpaired), ``test/images`` + ``test/masks`` (paired by file
    stem, e.g. ``a.png`` with ``a.png``), optionally ``test/roi`` (field-of-view masks, paired
    the same way), and the same for ``val/``. Files are read with ``darlkit.data.read_image``
    (any ``IMAGE_SUFFIXES`` format; colour reduced with ``channel``) and masks with
    ``read_mask``; they may have any size.

    Train item ``i`` (length = number of angiograms) is a dict:

    - ``"angiogram"``: angiogram ``i`` (sorted by file name), (1, size, size) float32 in [-1, 1];
    - ``"background"``: background ``perm_C[i % n_C]``, same shape and range;
    - ``"mask"``: mask ``perm_A[i % n_A]``, (1, size, size) float32 in {-1, 1}: 1 where the pixel
      is 255 (as DARL's loader counts vessel pixels; the anti-aliased grey rim is background); a
      mask with only two values (0/1, 0/255, 1-bit) is read with ``read_mask`` (non-zero = vessel).

    Each of the three images is reduced independently to one polyphase phase of its 2x
    sub-sampling (``image[r::2, c::2]`` for an offset ``(r, c)`` of ``POLYPHASE_OFFSETS``; skipped
    with ``polyphase=False``; on a 1-pixel side the offset is 0), then a ``size`` x ``size`` window is cut at a random position
    (uniform over all positions), then flipped horizontally, vertically and transposed, each with
    probability 0.5, in that order. A phase image (or image) exactly ``size`` square is used
    whole, so a ``2 * size`` square image gives the paper's crops exactly. With ``small="reflect"``
    (default) a phase smaller than ``size`` on a side is first padded to ``size`` by reflection
    about its edges (``numpy.pad(mode="reflect")``, repeated for large pads; a 1-pixel side is
    repeated); with ``small="error"`` it raises a ``ValueError`` naming the file.
    With ``augment=False`` the phase is (0, 0), the window is the centre one and nothing is
    flipped (the unpaired permutations still apply).

    ``perm_C``/``perm_A`` are permutations drawn per epoch from ``(seed, epoch)``; ``set_epoch``
    reshuffles them (call it every epoch, as with ``DistributedSampler``). All draws come from
    ``numpy.random.SeedSequence(seed)`` children keyed by ``(epoch, i)``, so an item is the same
    in any worker process, in any order, on any machine: no ``worker_init_fn`` is needed.
    (``DataLoader`` workers hold a copy of the dataset: call ``set_epoch`` before iterating, with
    ``persistent_workers=False``, the default, so each epoch's workers see the new epoch.)

    Test/val item ``i`` (sorted by file name) is a dict: ``"image"`` (1, H, W) float32 in [-1, 1]
    at full size, ``"mask"`` (1, H, W) float32 in {0, 1} (``read_mask``: background 0, vessel the
    non-zero value), ``"name"`` (the image's file name) and, only when the split has a ``roi/``
    folder, ``"roi"`` (1, H, W) float32 in {0, 1} (1 inside the field of view). ``size``,
    ``augment``, ``seed``, ``small`` and the epoch do not affect test/val items.

    Bad data is never skipped: missing or empty folders, non-image entries, test images without
    a mask (or ROI) of the same stem and masks without an image raise at construction;
    undecodable or truncated files, masks that are not binary, and masks of another size than
    their image raise ``ValueError`` naming the file when the item is loaded.

    Args:
        root: Dataset root (the folder holding ``train/``, ``test/`` and/or ``val/``).
        split: ``"train"``, ``"test"`` or ``"val"``.
        size: Side of the training crops; 256 in DARL.
        augment: Random polyphase phase, crop position and flips (train only).
        seed: Non-negative int seeding permutations and augmentations.
        channel: Colour reduction of every image read (``"luma"``, ``"green"``, ``"red"``, ``"blue"``).
        small: ``"reflect"`` or ``"error"``: a training image smaller than a crop (see above).
        polyphase: Take the crops from one polyphase phase (2x sub-sampling) of each image.

    Raises:
        FileNotFoundError: If ``root`` or a needed folder does not exist.
        ValueError: On a bad argument, an empty folder, a non-image entry, or unmatched files.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        size: int = 256,
        augment: bool = True,
        seed: int = 0,
        *,
        channel: str = "luma",
        small: str = "reflect",
        polyphase: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.size = _check_int(size, "size", 1)
        self.seed = _check_int(seed, "seed", 0)
        for name, value in (("augment", augment), ("polyphase", polyphase)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
        if small not in SMALL_IMAGE_MODES:
            raise ValueError(f"small must be one of {SMALL_IMAGE_MODES}, got {small!r}")
        self.channel = check_channel(channel)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"XCAD root folder not found: {self.root}")
        self.split, self.augment, self.small, self.polyphase = split, augment, small, polyphase
        self.epoch = 0
        if split == "train":
            self.files = {key: _list_folder(self.root / "train" / folder) for key, folder in TRAIN_FOLDERS.items()}
        else:
            self.files = _pair_split(self.root, split)
        self._perms: dict[str, np.ndarray] = {}
        self._perm_epoch = -1

    # ------------------------------------------------------------------ sizes and epochs
    def __len__(self) -> int:
        return len(self.files["angiogram"] if self.split == "train" else self.files["image"])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutations and augmentations items use (like ``DistributedSampler``).

        Args:
            epoch: Non-negative int.
        """
        self.epoch = _check_int(epoch, "epoch", 0)

    def _permutations(self) -> dict[str, np.ndarray]:
        if self._perm_epoch != self.epoch:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(_PERM_KEY, self.epoch))))
            self._perms = {
                "background": rng.permutation(len(self.files["background"])),
                "mask": rng.permutation(len(self.files["mask"])),
            }
            self._perm_epoch = self.epoch
        return self._perms

    # ------------------------------------------------------------------ items
    def sample_plan(self, index: int) -> dict[str, dict[str, Any]]:
        """What train item ``index`` is made of at the current epoch, without loading anything.

        Args:
            index: Item index in ``[0, len(self))``.

        Returns:
            ``{key: {"path": Path, "phase": (row, col), "crop": (u_row, u_col), "hflip": bool,
            "vflip": bool, "transpose": bool}}`` for keys ``"angiogram"``, ``"background"``,
            ``"mask"``. ``crop`` holds two uniform draws in [0, 1): the window starts at row
            ``floor(u_row * (H' - size + 1))`` and column ``floor(u_col * (W' - size + 1))`` of the
            (padded) phase image of size H' x W' (``None`` with ``augment=False``: the centre window).
        """
        if self.split != "train":
            raise ValueError("sample_plan is defined for split='train' only")
        index = self._check_index(index)
        perms = self._permutations()
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(_ITEM_KEY, self.epoch, index))))
        crop_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(_CROP_KEY, self.epoch, index))))
        plan: dict[str, dict[str, Any]] = {}
        for key in ("angiogram", "background", "mask"):
            files = self.files[key]
            j = index if key == "angiogram" else int(perms[key][index % len(files)])
            draws = rng.integers(0, 2, size=5)  # always drawn, so augment=False does not shift streams
            crop = tuple(float(u) for u in crop_rng.random(2))
            if self.augment:
                phase = POLYPHASE_OFFSETS[int(draws[0] * 2 + draws[1])] if self.polyphase else (0, 0)
                flips = bool(draws[2]), bool(draws[3]), bool(draws[4])
            else:
                phase, flips, crop = POLYPHASE_OFFSETS[0], (False, False, False), None
            plan[key] = {"path": files[j], "phase": phase, "crop": crop, "hflip": flips[0], "vflip": flips[1], "transpose": flips[2]}
        return plan

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for XCADDataset of length {n}")
        return int(index) % n

    def _window(self, full: np.ndarray, path: Path, step: dict[str, Any]) -> np.ndarray:
        """Phase, pad, crop and flip one full image (H, W) -> (size, size) as the plan says."""
        if self.polyphase:  # a 1-pixel side has one phase only: its offset is 0
            x = full[step["phase"][0] * (full.shape[0] > 1) :: 2, step["phase"][1] * (full.shape[1] > 1) :: 2]
        else:
            x = full
        s = self.size
        if x.shape[0] < s or x.shape[1] < s:
            if self.small == "error":
                what = "its polyphase phase" if self.polyphase else "it"
                raise ValueError(f"{path} is {full.shape[1]}x{full.shape[0]}, so {what} ({x.shape[1]}x{x.shape[0]}) is smaller "
                                 f"than the {s}x{s} training crop (small='error'; use small='reflect' to pad it)")
            pads = [(0, max(0, s - n)) for n in x.shape]
            x = np.pad(x, pads, mode="reflect") if min(x.shape) > 1 else np.pad(x, pads, mode="edge")
        h, w = x.shape
        if step["crop"] is None:
            r, c = (h - s) // 2, (w - s) // 2
        else:
            r, c = int(step["crop"][0] * (h - s + 1)), int(step["crop"][1] * (w - s + 1))
        x = x[r : r + s, c : c + s]
        if step["hflip"]:
            x = x[:, ::-1]
        if step["vflip"]:
            x = x[::-1, :]
        if step["transpose"]:
            x = x.T
        return np.ascontiguousarray(x)

    def _unit(self, path: Path) -> np.ndarray:
        return read_image(path, channel=self.channel)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.split != "train":
            return self._paired_item(self._check_index(index))
        plan = self.sample_plan(index)
        ang = self._window(self._unit(plan["angiogram"]["path"]), plan["angiogram"]["path"], plan["angiogram"])
        bg = self._window(self._unit(plan["background"]["path"]), plan["background"]["path"], plan["background"])
        mask = self._window(_train_mask(plan["mask"]["path"]), plan["mask"]["path"], plan["mask"])
        return {
            "angiogram": torch.from_numpy(ang)[None] * 2 - 1,
            "background": torch.from_numpy(bg)[None] * 2 - 1,
            "mask": torch.from_numpy(np.where(mask, 1.0, -1.0).astype(np.float32))[None],
        }

    def _paired_item(self, i: int) -> dict[str, Any]:
        img_path = self.files["image"][i]
        img = self._unit(img_path)
        item: dict[str, Any] = {"image": torch.from_numpy(img)[None] * 2 - 1}
        for key in ("mask", "roi"):
            if key not in self.files:
                continue
            path = self.files[key][i]
            m = read_mask(path)
            if m.shape != img.shape:
                raise ValueError(f"{key} {path} is {m.shape[1]}x{m.shape[0]} but image {img_path} is {img.shape[1]}x{img.shape[0]}")
            item[key] = torch.from_numpy(m.astype(np.float32))[None]
        item["name"] = img_path.name
        return item

    def __repr__(self) -> str:
        return (f"XCADDataset(root={str(self.root)!r}, split={self.split!r}, size={self.size}, augment={self.augment}, "
                f"seed={self.seed}, channel={self.channel!r}, small={self.small!r}, polyphase={self.polyphase}, len={len(self)})")
