"""``write_synthetic_xcad``: a complete synthetic dataset in the XCAD folder layout."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from darlkit.data.io import from_unit_range
from darlkit.synthesis._seeding import as_seed_sequence, child_sequence
from darlkit.synthesis.angiogram import render_angiogram, render_background
from darlkit.synthesis.synthesizer import STYLES, FractalVesselSynthesizer

__all__ = ["write_synthetic_xcad", "SyntheticXCADSpec", "crop_window", "SYNTH_FOLDERS", "CROP_MIN_VESSEL_FRACTION"]

SYNTH_FOLDERS: tuple[str, ...] = ("train/trainA", "train/trainB", "train/trainC", "test/images", "test/masks")
"""Folders written by ``write_synthetic_xcad``, relative to the output root."""

# Independent seed streams (SeedSequence spawn keys under the user's seed).
_TRAIN_A_MASKS, _TRAIN_B_MASKS, _TRAIN_B_BG, _TRAIN_B_RENDER, _TRAIN_C_BG, _TEST_MASKS, _TEST_BG, _TEST_RENDER = range(8)
_CROP = 8  # crop windows: child (_CROP, folder, index)
_CHUNK = 8

CROP_MIN_VESSEL_FRACTION = 0.03
"""With ``crop``, a window of an image that has vessels must hold at least this vessel fraction."""
_CROP_TRIES = 32


def crop_window(
    size: int,
    crop: int,
    seed: np.random.SeedSequence,
    vessel: np.ndarray | None = None,
    min_fraction: float = CROP_MIN_VESSEL_FRACTION,
) -> tuple[int, int]:
    """Top-left corner of a ``crop`` x ``crop`` window of a ``size`` x ``size`` image.

    Without ``vessel`` the corner is uniform. With it, up to 32 uniform windows are drawn and the
    first whose vessel fraction is at least ``min_fraction`` is kept (else the one with the most
    vessel pixels), so no crop of an angiogram or a mask comes out empty.

    Args:
        size: Image side.
        crop: Window side, ``1 <= crop <= size``.
        seed: The window's own seed sequence.
        vessel: Optional (size, size) bool array, True on vessel pixels.
        min_fraction: Wanted vessel fraction of the window, in [0, 1].

    Returns:
        ``(row, col)`` of the window's top-left pixel.
    """
    rng = np.random.default_rng(seed)
    best, best_fraction = (0, 0), -1.0
    for _ in range(1 if vessel is None else _CROP_TRIES):
        r, c = (int(v) for v in rng.integers(0, size - crop + 1, size=2))
        if vessel is None:
            return r, c
        fraction = float(vessel[r : r + crop, c : c + crop].mean())
        if fraction >= min_fraction:
            return r, c
        if fraction > best_fraction:
            best, best_fraction = (r, c), fraction
    return best


class _Cropper:
    """Cuts the same window out of the images of one (folder, index) (identity without ``crop``)."""

    def __init__(self, base: np.random.SeedSequence, size: int, crop: int | None) -> None:
        self.base, self.size, self.crop = base, size, crop

    def window(self, folder: int, index: int, vessel: torch.Tensor | np.ndarray | None = None) -> tuple[slice, slice]:
        if self.crop is None:
            return slice(None), slice(None)
        v = None if vessel is None else np.asarray(vessel)
        r, c = crop_window(self.size, self.crop, child_sequence(self.base, _CROP, folder, index), v)
        return slice(r, r + self.crop), slice(c, c + self.crop)


def _to_u8(x: torch.Tensor) -> np.ndarray:
    """(1, H, W) float in [-1, 1] -> (H, W) uint8 (renders may overshoot by rounding: clamped)."""
    return from_unit_range(x[0], clip=True).numpy()


def _save(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(arr, mode="L").save(path, format="PNG", optimize=False, compress_level=6)


def _name(i: int, n: int) -> str:
    return f"{i:0{max(5, len(str(max(n - 1, 0))))}d}.png"


def _write_train_chunk(
    out: Path, base: np.random.SeedSequence, size: int, start: int, stop: int, n: int, train_style: str,
    angiogram_style: str, crop: int | None,
) -> int:
    idx = range(start, stop)
    cut = _Cropper(base, size, crop)
    masks_a = FractalVesselSynthesizer(size, train_style, seed=child_sequence(base, _TRAIN_A_MASKS), output="uint8").masks(idx)
    masks_b = FractalVesselSynthesizer(size, angiogram_style, seed=child_sequence(base, _TRAIN_B_MASKS)).masks(idx)
    for k, i in enumerate(idx):
        name = _name(i, n)
        mask_a = masks_a[k, 0].numpy()
        _save(mask_a[cut.window(0, i, mask_a == 255)], out / "train" / "trainA" / name)
        bg_b = render_background(size, seed=child_sequence(base, _TRAIN_B_BG, i), noise=False)
        ang = render_angiogram(bg_b, masks_b[k : k + 1], seed=child_sequence(base, _TRAIN_B_RENDER, i))
        _save(_to_u8(ang[0])[cut.window(1, i, masks_b[k, 0].numpy() >= 0.5)], out / "train" / "trainB" / name)
        bg_c = render_background(size, seed=child_sequence(base, _TRAIN_C_BG, i), noise=True)
        _save(_to_u8(bg_c[0])[cut.window(2, i)], out / "train" / "trainC" / name)
    return 3 * len(idx)


def _write_test_chunk(
    out: Path, base: np.random.SeedSequence, size: int, start: int, stop: int, n: int, test_style: str,
    crop: int | None,
) -> int:
    idx = range(start, stop)
    cut = _Cropper(base, size, crop)
    masks = FractalVesselSynthesizer(size, test_style, seed=child_sequence(base, _TEST_MASKS)).masks(idx)
    for k, i in enumerate(idx):
        name = _name(i, n)
        binary = (masks[k, 0] >= 0.5).numpy()
        window = cut.window(3, i, binary)
        _save(binary[window].astype(np.uint8) * 255, out / "test" / "masks" / name)
        bg = render_background(size, seed=child_sequence(base, _TEST_BG, i), noise=False)
        img = render_angiogram(bg, masks[k : k + 1], seed=child_sequence(base, _TEST_RENDER, i))
        _save(_to_u8(img[0])[window], out / "test" / "images" / name)
    return 2 * len(idx)


def _run_job(job: tuple) -> int:
    torch.set_num_threads(1)
    kind, *args = job
    return _write_train_chunk(*args) if kind == "train" else _write_test_chunk(*args)


def _check_count(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class SyntheticXCADSpec:
    """What :func:`write_synthetic_xcad` writes (validated on construction).

    Attributes:
        n_train: Images per training folder (XCAD: 1621).
        n_test: Test images (XCAD: 134).
        size: Image side in pixels, even and >= 32 (XCAD: 512).
        seed: Non-negative int; every image depends only on ``(seed, folder, index)``.
        train_style: Mask style of ``trainA`` (see ``FractalVesselSynthesizer``).
        angiogram_style: Mask style of the vessels drawn into ``trainB``.
        test_style: Mask style of the test set.
        crop: Side of the saved window (even, 32 <= crop <= size), or None (or ``size``) to save
            whole images.

    Raises:
        ValueError: On a bad count, size, crop, style or seed.
    """

    n_train: int = 1621
    n_test: int = 134
    size: int = 512
    seed: int = 0
    train_style: str = "ssvs"
    angiogram_style: str = "tree"
    test_style: str = "tree"
    crop: int | None = None

    def __post_init__(self) -> None:
        for name, lo in (("n_train", 0), ("n_test", 0), ("seed", 0)):
            _check_count(name, getattr(self, name), lo)
        if self.n_train + self.n_test == 0:
            raise ValueError("n_train and n_test are both 0: nothing to write")
        size, crop = self.size, self.crop
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32 or size % 2:
            raise ValueError(f"size must be an even int >= 32, got {size!r}")
        if crop is not None and (
            isinstance(crop, bool) or not isinstance(crop, (int, np.integer)) or crop < 32 or crop % 2 or crop > size
        ):
            raise ValueError(f"crop must be None or an even int with 32 <= crop <= size={size}, got {crop!r}")
        for name in ("test_style", "train_style", "angiogram_style"):
            if getattr(self, name) not in STYLES:
                raise ValueError(f"{name} must be one of {STYLES}, got {getattr(self, name)!r}")

    @property
    def window(self) -> int | None:
        """The saved window side, or ``None`` for whole images (``crop`` None or equal to ``size``)."""
        return None if self.crop is None or self.crop == self.size else int(self.crop)


def write_synthetic_xcad(
    out: str | os.PathLike,
    spec: SyntheticXCADSpec | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 0,
    **fields: object,
) -> Path:
    """Write a synthetic dataset in the exact XCAD layout (8-bit grayscale PNGs).

    - ``train/trainA``: ``n_train`` vessel masks of ``train_style`` (default the released SSVS
      fractals; uint8 0/255 with anti-aliased grey edges, as in XCAD).
    - ``train/trainB``: ``n_train`` synthetic angiograms (``render_angiogram`` on a clean
      ``render_background``) whose vessels are ``angiogram_style`` masks from their own seed stream,
      so they are neither the ``trainA`` masks nor the test masks.
    - ``train/trainC``: ``n_train`` backgrounds, independent of the ``trainB`` backgrounds.
    - ``test/images`` + ``test/masks``: ``n_test`` angiograms and their binary (0/255) masks of
      ``test_style`` from yet another seed stream (by default the realistic "tree" style), so
      evaluating on them measures self-supervised segmentation, not memorisation of ``trainA``.

    Files are named ``00000.png``, ``00001.png``, ... Every image depends only on ``(seed, folder,
    index)`` through independent ``numpy.random.SeedSequence`` streams, so the same seed writes
    byte-identical files (with the same numpy/torch/Pillow/zlib versions), with or without
    ``workers``.

    With ``crop``, every image is rendered at ``size`` and a ``crop`` x ``crop`` window of it is
    saved (a test image and its mask share the window). The vessels then keep their width at
    ``size`` (in pixels) in a small file: ``size=512, crop=128`` gives 128x128 images whose 64x64
    polyphase halves show vessels as wide as XCAD's 256x256 training crops, which is what small,
    fast experiments need (whole images rendered at 128 have vessels one or two pixels wide at
    64x64). Windows of masks and angiograms hold at least ``CROP_MIN_VESSEL_FRACTION`` vessel
    pixels where possible (see ``crop_window``); background windows are uniform.

    Args:
        out: Output root folder (created if missing).
        spec: What to write (default: ``SyntheticXCADSpec()``, the XCAD counts and size).
        overwrite: Allow a non-empty ``out``: the PNGs already in the five XCAD folders are deleted
            first (nothing else is touched). Without it a non-empty ``out`` raises ``FileExistsError``.
        progress: Show a tqdm progress bar.
        workers: Worker processes (0 = in this process). Output does not depend on it. Each
            process (this one too when ``workers=0``, for the duration of the call) uses one torch
            intra-op thread: the work is many small tensor ops, which threads only slow down.
        **fields: :class:`SyntheticXCADSpec` fields that replace those of ``spec``
            (e.g. ``n_train=8, size=64``).

    Returns:
        The output root as a ``Path``.

    Raises:
        TypeError: On a keyword that is not a :class:`SyntheticXCADSpec` field.
        ValueError: On a bad count, size, crop, style, seed or ``workers``.
        FileExistsError: If ``out`` is a non-empty folder and ``overwrite`` is False, or a file.
    """
    names = {f.name for f in dataclasses.fields(SyntheticXCADSpec)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise TypeError(f"write_synthetic_xcad got unknown option(s) {unknown}; SyntheticXCADSpec fields: {sorted(names)}")
    spec = dataclasses.replace(spec if spec is not None else SyntheticXCADSpec(), **fields)
    _check_count("workers", workers, 0)
    n_train, n_test, crop = spec.n_train, spec.n_test, spec.window
    train_style, angiogram_style, test_style = spec.train_style, spec.angiogram_style, spec.test_style
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"output {root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"output folder {root} is not empty (pass overwrite=True / --overwrite to replace its XCAD PNGs)")
        for folder in SYNTH_FOLDERS:
            d = root / folder
            if d.is_dir():
                for f in d.iterdir():
                    if f.is_file() and f.suffix.lower() == ".png":
                        f.unlink()
    for folder in SYNTH_FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    base = as_seed_sequence(int(spec.seed))
    size = int(spec.size)
    jobs: list[tuple] = []
    for a in range(0, n_train, _CHUNK):
        jobs.append(("train", root, base, size, a, min(a + _CHUNK, n_train), n_train, train_style, angiogram_style, crop))
    for a in range(0, n_test, _CHUNK):
        jobs.append(("test", root, base, size, a, min(a + _CHUNK, n_test), n_test, test_style, crop))
    from tqdm.auto import tqdm

    bar = tqdm(total=3 * n_train + 2 * n_test, desc=f"darlkit synth {root}", unit="img", disable=not progress)
    try:
        if workers > 0:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers) as pool:
                for done in pool.imap_unordered(_run_job, jobs):
                    bar.update(done)
        else:
            # Many small tensor ops: one intra-op thread is faster than several (and far faster on
            # a busy machine); the caller's setting is restored afterwards.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                for job in jobs:
                    kind, *args = job
                    bar.update(_write_train_chunk(*args) if kind == "train" else _write_test_chunk(*args))
            finally:
                torch.set_num_threads(threads)
    finally:
        bar.close()
    return root
