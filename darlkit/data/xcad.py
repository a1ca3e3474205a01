"""``XCADDataset``: the XCAD folder layout (real or ``darlkit synth``-made) as a PyTorch Dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from darlkit.data.io import list_png_files, read_grayscale_png, to_unit_range
from darlkit.polyphase import POLYPHASE_OFFSETS, polyphase_split

__all__ = ["XCADDataset", "SPLITS", "TRAIN_FOLDERS"]

SPLITS: tuple[str, ...] = ("train", "test")
"""Dataset splits of ``XCADDataset``."""

TRAIN_FOLDERS: dict[str, str] = {"angiogram": "trainB", "background": "trainC", "mask": "trainA"}
"""``train/`` sub-folder of each training item key (angiograms, backgrounds, fractal masks)."""

# Spawn-key namespaces of the per-epoch permutations and per-item augmentations.
_PERM_KEY = 0
_ITEM_KEY = 1


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class XCADDataset(Dataset):
    """The XCAD layout: unpaired training triplets or paired test images.

    Layout under ``root``: ``train/trainB`` real angiograms, ``train/trainC`` backgrounds,
    ``train/trainA`` fractal masks (unpaired), ``test/images`` + ``test/masks`` (same file names).
    All files are 8-bit grayscale PNGs (see ``read_grayscale_png`` for colour and 16-bit files).

    Train item ``i`` (length = number of angiograms) is a dict:

    - ``"angiogram"``: angiogram ``i`` (sorted by file name), (1, size, size) float32 in [-1, 1];
    - ``"background"``: background ``perm_C[i % n_C]``, same shape and range;
    - ``"mask"``: mask ``perm_A[i % n_A]``, (1, size, size) float32 in {-1, 1}: 1 where the PNG pixel
      equals 255 (as DARL's loader counts vessel pixels; the anti-aliased grey rim is background).

    ``perm_C``/``perm_A`` are permutations drawn per epoch from ``(seed, epoch)``; ``set_epoch``
    reshuffles them (call it every epoch, as with ``DistributedSampler``). Each of the three images
    is reduced independently to one polyphase phase of its 2x sub-sampling (``polyphase_split``, phase
    ``(row, col)`` offset one of ``POLYPHASE_OFFSETS``; a full image must be exactly ``2 * size``
    square), then flipped horizontally, vertically and transposed, each with probability 0.5, in
    that order. With ``augment=False`` the phase is (0, 0) and nothing is flipped (the unpaired
    permutations still apply). All draws come from ``numpy.random.SeedSequence(seed)`` children
    keyed by ``(epoch, i)``, so an item is the same in any worker process, in any order, on any
    machine: no ``worker_init_fn`` is needed. (``DataLoader`` workers hold a copy of the dataset:
    call ``set_epoch`` before iterating, with ``persistent_workers=False``, the default, so each
    epoch's workers see the new epoch.)

    Test item ``i`` (sorted by file name) is a dict: ``"image"`` (1, H, W) float32 in [-1, 1] at full
    size, ``"mask"`` (1, H, W) float32 in {0, 1} (1 where the PNG pixel is > 127) and ``"name"``
    (the file name). ``size``, ``augment``, ``seed`` and the epoch do not affect test items.

    Bad data is never skipped: missing or empty folders, non-PNG entries, test images without a
    same-named mask (or masks without an image) raise at construction; undecodable, truncated,
    16-bit or wrongly sized PNGs raise ``ValueError`` naming the file when the item is loaded.

    Args:
        root: Dataset root (the folder holding ``train/`` and/or ``test/``).
        split: ``"train"`` or ``"test"``.
        size: Side of the training crops (full images must be ``2 * size`` square); 256 in DARL.
        augment: Random polyphase phase and flips (train only).
        seed: Non-negative int seeding permutations and augmentations.

    Raises:
        FileNotFoundError: If ``root`` or a needed folder does not exist.
        ValueError: On a bad argument, an empty folder, a non-PNG entry, or unmatched test files.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", size: int = 256, augment: bool = True, seed: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.size = _check_int(size, "size", 1)
        self.seed = _check_int(seed, "seed", 0)
        if not isinstance(augment, bool):
            raise TypeError(f"augment must be a bool, got {type(augment).__name__}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"XCAD root folder not found: {self.root}")
        self.split = split
        self.augment = augment
        self.epoch = 0
        if split == "train":
            self.files = {key: list_png_files(self.root / "train" / folder) for key, folder in TRAIN_FOLDERS.items()}
        else:
            images = list_png_files(self.root / "test" / "images")
            masks = list_png_files(self.root / "test" / "masks")
            mask_names = {m.name for m in masks}
            for img in images:
                if img.name not in mask_names:
                    raise FileNotFoundError(f"test image {img} has no mask {self.root / 'test' / 'masks' / img.name}")
            image_names = {i.name for i in images}
            for m in masks:
                if m.name not in image_names:
                    raise ValueError(f"test mask {m} has no image {self.root / 'test' / 'images' / m.name}")
            self.files = {"image": images, "mask": [self.root / "test" / "masks" / i.name for i in images]}
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
            ``{key: {"path": Path, "phase": (row, col), "hflip": bool, "vflip": bool,
            "transpose": bool}}`` for keys ``"angiogram"``, ``"background"``, ``"mask"``.
        """
        if self.split != "train":
            raise ValueError("sample_plan is defined for split='train' only")
        index = self._check_index(index)
        perms = self._permutations()
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(_ITEM_KEY, self.epoch, index))))
        plan: dict[str, dict[str, Any]] = {}
        for key in ("angiogram", "background", "mask"):
            files = self.files[key]
            j = index if key == "angiogram" else int(perms[key][index % len(files)])
            draws = rng.integers(0, 2, size=5)  # always drawn, so augment=False does not shift streams
            if self.augment:
                phase = POLYPHASE_OFFSETS[int(draws[0] * 2 + draws[1])]
                flips = bool(draws[2]), bool(draws[3]), bool(draws[4])
            else:
                phase, flips = POLYPHASE_OFFSETS[0], (False, False, False)
            plan[key] = {"path": files[j], "phase": phase, "hflip": flips[0], "vflip": flips[1], "transpose": flips[2]}
        return plan

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for XCADDataset of length {n}")
        return int(index) % n

    def _crop(self, path: Path, step: dict[str, Any]) -> torch.Tensor:
        arr = read_grayscale_png(path)
        full = 2 * self.size
        if arr.shape != (full, full):
            raise ValueError(f"{path} is {arr.shape[1]}x{arr.shape[0]} but size={self.size} needs {full}x{full} images (2 * size)")
        phases = polyphase_split(torch.from_numpy(arr)[None, None], 2)
        x = phases[POLYPHASE_OFFSETS.index(step["phase"])]  # (1, size, size) uint8
        if step["hflip"]:
            x = x.flip(-1)
        if step["vflip"]:
            x = x.flip(-2)
        if step["transpose"]:
            x = x.transpose(-1, -2)
        return x.contiguous()

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.split == "test":
            i = self._check_index(index)
            img_path, mask_path = self.files["image"][i], self.files["mask"][i]
            img = read_grayscale_png(img_path)
            mask = read_grayscale_png(mask_path)
            if img.shape != mask.shape:
                raise ValueError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but image {img_path} is {img.shape[1]}x{img.shape[0]}")
            return {
                "image": to_unit_range(img)[None],
                "mask": torch.from_numpy((mask > 127).astype(np.float32))[None],
                "name": img_path.name,
            }
        plan = self.sample_plan(index)
        ang = self._crop(plan["angiogram"]["path"], plan["angiogram"])
        bg = self._crop(plan["background"]["path"], plan["background"])
        mask = self._crop(plan["mask"]["path"], plan["mask"])
        return {
            "angiogram": to_unit_range(ang),
            "background": to_unit_range(bg),
            "mask": torch.where(mask == 255, 1.0, -1.0).to(torch.float32),
        }

    def __repr__(self) -> str:
        return f"XCADDataset(root={str(self.root)!r}, split={self.split!r}, size={self.size}, augment={self.augment}, seed={self.seed}, len={len(self)})"
