"""Training recipes on an XCAD-layout folder: a validation split, validation-selected training, test once.

Honest model selection keeps three roles apart:

- ``train/`` trains the networks (no labels are used);
- ``val/images`` + ``val/masks`` choose the checkpoint (``best.pt`` is the step with the best
  validation Dice);
- ``test/images`` + ``test/masks`` are evaluated once, at the end, with the chosen checkpoint.

:func:`write_validation_split` adds a synthetic ``val/`` split to a synthetic dataset from its own
seed stream (never the test images); :func:`validation_split` opens ``val/`` when a dataset has
one and otherwise falls back to ``test/`` (and says so); :func:`train_on_folder` runs a whole
training job with that selection and evaluates the selected checkpoint on ``test/`` once.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "VAL_FOLDERS",
    "validation_seed",
    "write_quickstart_data",
    "write_validation_split",
    "validation_split",
    "train_on_folder",
    "evaluate_on_split",
    "choose_threshold",
    "calibrate_checkpoint",
]

VAL_FOLDERS: tuple[str, str] = ("val/images", "val/masks")
"""Folders of the validation split, relative to the dataset root (same layout as ``test/``)."""

_VAL_STREAM = 0x7A1  # spawn key of the validation seed stream under the data seed
_SPLIT_NAMES = {"val": "validation", "test": "test", "none": "no"}


def validation_seed(data_seed: int) -> int:
    """Seed of the synthetic validation split of a dataset written with ``data_seed``.

    Derived through a ``numpy.random.SeedSequence`` keyed by ``(data_seed, 0x7A1)``, so it is a
    stream of its own: its images are not the training or test images of ``data_seed`` (nor of
    any other small data seed).

    Args:
        data_seed: The dataset's seed (non-negative int).

    Returns:
        A non-negative 63-bit int for ``write_synthetic_xcad(seed=...)``.

    Raises:
        ValueError: If ``data_seed`` is not a non-negative int.
    """
    if isinstance(data_seed, bool) or not isinstance(data_seed, (int, np.integer)) or data_seed < 0:
        raise ValueError(f"data_seed must be a non-negative int, got {data_seed!r}")
    state = np.random.SeedSequence([int(data_seed), _VAL_STREAM]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


def write_validation_split(
    root: str | os.PathLike[str],
    n: int,
    *,
    size: int,
    crop: int | None = None,
    data_seed: int = 0,
    style: str = "tree",
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write ``n`` synthetic validation angiograms and masks into ``root/val/{images,masks}``.

    The images are made exactly like ``write_synthetic_xcad``'s test images (same renderer,
    ``style`` masks, same ``size``/``crop``), but from the seed :func:`validation_seed` of
    ``data_seed``, so they are disjoint from the test split.

    Args:
        root: Dataset root (created if missing).
        n: Number of validation images (>= 1).
        size: Render side (even, >= 32), as passed to ``write_synthetic_xcad``.
        crop: Saved window side (``None``: whole images), as for ``write_synthetic_xcad``.
        data_seed: The dataset's seed (the split's own seed is derived from it).
        style: Mask style of the vessels (see ``FractalVesselSynthesizer``).
        overwrite: Replace an existing ``val/`` split; without it an existing one raises.
        progress: Show a progress bar.

    Returns:
        The ``root/val`` folder.

    Raises:
        ValueError: On a bad ``n`` (other arguments are checked by ``write_synthetic_xcad``).
        FileExistsError: If ``root/val`` exists and ``overwrite`` is False.
    """
    from darlkit.synthesis import write_synthetic_xcad

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int (validation images), got {n!r}")
    root = Path(root)
    val = root / "val"
    if val.exists():
        if not overwrite:
            raise FileExistsError(f"validation split {val} exists (pass overwrite=True to replace it)")
        shutil.rmtree(val)
    tmp = root / ".val-writing"
    if tmp.exists():
        shutil.rmtree(tmp)
    write_synthetic_xcad(tmp, n_train=0, n_test=int(n), size=size, crop=crop, seed=validation_seed(data_seed),
                         test_style=style, progress=progress)
    os.replace(tmp / "test", val)  # one rename: a half-written split never appears as val/
    shutil.rmtree(tmp)
    return val


def write_quickstart_data(
    root: str | os.PathLike[str],
    *,
    n_train: int,
    n_test: int,
    n_val: int,
    size: int,
    render_size: int,
    data_seed: int = 0,
    progress: bool = False,
    workers: int = 0,
) -> Path:
    """The quickstart's dataset: training, test and validation splits of XCAD-like angiograms.

    Images are rendered at ``render_size`` (512, as XCAD) and saved as ``size`` windows, so 64x64
    training crops of 128x128 windows show vessels as wide as the paper's 256x256 crops; the
    ``trainA`` masks use the curved ``"tree"`` style, unpaired with the angiograms' vessels; the
    test masks come from another seed stream and the validation split
    (:func:`write_validation_split`) from a seed of its own.

    Args:
        root: Dataset root (must be empty or missing).
        n_train: Images per training folder.
        n_test: Test images.
        n_val: Validation images.
        size: Saved image side.
        render_size: Render side (>= ``size``).
        data_seed: Seed of the dataset.
        progress: Show progress bars.
        workers: Worker processes of the writer (0: this process).

    Returns:
        The dataset root.
    """
    from darlkit.synthesis import write_synthetic_xcad

    write_synthetic_xcad(root, n_train=n_train, n_test=n_test, size=render_size, crop=size, seed=data_seed,
                         progress=progress, train_style="tree", workers=workers)
    write_validation_split(root, n_val, size=render_size, crop=size, data_seed=data_seed)
    return Path(root)


def _has_images(folder: Path) -> bool:
    from darlkit.data import IMAGE_SUFFIXES

    return folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def validation_split(root: str | os.PathLike[str]) -> tuple[Dataset | None, str, str]:
    """The split that chooses the checkpoint: ``val/`` when present, else ``test/``.

    Args:
        root: XCAD-layout dataset root.

    Returns:
        ``(dataset, split, message)``: the items ``{"image", "mask", "name"}`` of ``split``
        (``"val"``, ``"test"``, or ``"none"`` with ``dataset=None`` when neither has images) and
        a one-line message saying which split selects ``best.pt`` (a warning on the fallback).
    """
    from darlkit.data import XCADDataset

    root = Path(root)
    if _has_images(root / "val" / "images"):
        ds = XCADDataset(root, split="val")
        return ds, "val", f"selecting best.pt on the validation split ({len(ds)} images in {root / 'val'})"
    if _has_images(root / "test" / "images"):
        ds = XCADDataset(root, split="test")
        return ds, "test", (f"no validation split ({root / 'val' / 'images'} is missing or empty): selecting best.pt "
                            f"on the TEST split, so its test numbers are optimistic")
    return None, "none", f"no val/ or test/ images in {root}: no validation, best.pt is not written"


@torch.no_grad()
def evaluate_on_split(
    checkpoint: str | os.PathLike[str],
    root: str | os.PathLike[str],
    split: str = "test",
    *,
    device: str | torch.device = "cpu",
    use_ema: bool | None = None,
    t: int = 0,
    threshold: float | None = None,
    metrics: Sequence[str] | None = None,
    noise_sigmas: Sequence[float] | None = None,
    seed: int = 0,
    max_images: int | None = None,
    use_roi: bool = True,
    best_threshold: bool = False,
    channel: str = "luma",
    tta: str | None = None,
) -> dict[str, Any]:
    """Per-image metrics of a checkpoint on one split, mean and std over images (inside the
    split's ``roi/`` masks when it has them); ``darlkit evaluate`` and the recipes use it.

    Args:
        checkpoint: ``best.pt`` / ``last.pt`` of a run, or a model folder.
        root: XCAD-layout dataset root.
        split: ``"test"`` or ``"val"``.
        device: Device of the forward passes.
        use_ema: Use the EMA weights (``None``: the run's ``eval_ema`` setting).
        t: Diffusion step for the one-step segmentation.
        threshold: Vessel where the [-1, 1] output is above this (``None``: the checkpoint's
            default, :func:`~darlkit.training.inference_defaults`: its calibrated threshold, else
            the run's ``val_threshold``, else 0).
        metrics: Metric names (default ``darlkit.metrics.DEFAULT_METRICS``).
        noise_sigmas: Also evaluate with Gaussian noise of these sigmas (0-255 scale).
        seed: Seed of the noise.
        max_images: Evaluate at most this many images.
        use_roi: Compute the metrics inside the split's ``roi/`` masks when present.
        best_threshold: Add ``"dice_at_best_threshold"`` to the clean metrics.
        channel: Colour reduction of colour images (``darlkit.data.read_image``).
        tta: Test-time augmentation (``"none"`` or ``"flip"``; see ``darlkit.model.segment_image``;
            ``None``: the checkpoint's default, as for ``threshold``).

    Returns:
        ``{"checkpoint", "data", "split", "roi", "n_images", "threshold", "tta", "defaults",
        "clean": {metric: {"mean", "std", "n"}}, "noise": {sigma: {metric: ...}}}``; ``"roi"``
        is true when ROI masks were used; ``"defaults"`` says where the checkpoint's default
        threshold and augmentation came from (``inference_defaults``'s ``source``).

    Raises:
        ValueError: If ``split`` is unknown or has no images, or ``t`` is not below the model's T.
    """
    from darlkit.data import XCADDataset
    from darlkit.training.inference import evaluate_model, inference_defaults, load_trained_model

    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    root = Path(root)
    if not _has_images(root / split / "images"):
        raise ValueError(f"{root / split / 'images'} holds no images to evaluate")
    model, config = load_trained_model(checkpoint, device=device, use_ema=use_ema)
    if t >= model.num_timesteps:
        raise ValueError(f"--t must be < {model.num_timesteps}, got {t}")
    dataset = XCADDataset(root, split=split, channel=channel)
    defaults = inference_defaults(checkpoint)
    threshold = defaults["threshold"] if threshold is None else float(threshold)
    tta = defaults["tta"] if tta is None else tta
    kw = dict(image_size=config.image_size, t=t, threshold=threshold,
              seed=seed, device=device, max_images=max_images, use_roi=use_roi, metrics=metrics, tta=tta)
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "data": str(root),
        "split": split,
        "roi": use_roi and "roi" in dataset.files,
        "n_images": len(dataset) if max_images is None else min(len(dataset), max_images),
        "threshold": threshold,
        "tta": tta,
        "defaults": defaults["source"],
        "clean": evaluate_model(model, dataset, best_threshold=best_threshold, **kw),
        "noise": {},
    }
    for sigma in noise_sigmas or []:
        result["noise"][f"{sigma:g}"] = evaluate_model(model, dataset, noise_sigma=sigma, **kw)
    return result


def choose_threshold(
    checkpoint: str | os.PathLike[str],
    root: str | os.PathLike[str],
    split: str = "val",
    *,
    device: str | torch.device = "cpu",
    tta: str | None = None,
    default_threshold: float | None = None,
) -> dict[str, float]:
    """The segmentation threshold with the best mean Dice on ``split`` (the validation images).

    Honest use: choose it on ``val/`` and apply it, unchanged, to the test images.

    Args:
        checkpoint: The selected checkpoint.
        root: XCAD-layout dataset root.
        split: ``"val"`` (or ``"test"``, only to compare protocols).
        device: Device of the forward passes.
        tta: Test-time augmentation of the forward passes (``None``: the checkpoint's default).
        default_threshold: The threshold ``"default_dice"`` is measured at (``None``: the
            checkpoint's default, :func:`~darlkit.training.inference_defaults`).

    Returns:
        ``{"threshold", "dice"}``: the threshold on the [-1, 1] output (grid of step 0.01,
        ``darlkit.metrics.DEFAULT_SWEEP_THRESHOLDS``; the lowest one on ties) and the mean Dice
        it gives on ``split``; ``"default_dice"`` is the Dice at ``default_threshold``; and
        ``"n_images"``, the number of images of ``split``.
    """
    result = evaluate_on_split(checkpoint, root, split, device=device, threshold=default_threshold,
                               best_threshold=True, metrics=("dice",), tta=tta)
    best = result["clean"]["dice_at_best_threshold"]
    return {"threshold": float(best["threshold"]), "dice": float(best["mean"]),
            "default_dice": float(result["clean"]["dice"]["mean"]), "n_images": int(result["n_images"])}


def calibrate_checkpoint(
    checkpoint: str | os.PathLike[str],
    root: str | os.PathLike[str],
    split: str = "val",
    *,
    device: str | torch.device = "cpu",
    tta: str | None = None,
) -> dict[str, Any]:
    """Choose a checkpoint's decision threshold on the validation split and store it in the checkpoint.

    The threshold with the best mean Dice on ``root/<split>`` (:func:`choose_threshold`, with
    the run's ``eval_tta`` unless ``tta`` is given) is written with the augmentation into the
    checkpoint under :data:`~darlkit.training.inference.INFERENCE_KEY`; ``darlkit evaluate`` and
    ``darlkit segment`` then use both by default (:func:`~darlkit.training.inference_defaults`).
    The file is rewritten atomically (:func:`~darlkit.training.save_checkpoint`), so a crash
    keeps the uncalibrated checkpoint. The paper's rule is threshold 0; this is the recipe of
    the ``small`` preset (``TrainConfig.calibrate_threshold``), which uses the two labelled
    validation images and never the test labels.

    Args:
        checkpoint: A training checkpoint (``best.pt``).
        root: XCAD-layout dataset root with ``<split>/images`` and ``<split>/masks``.
        split: The labelled split to calibrate on (``"val"``).
        device: Device of the forward passes.
        tta: ``"none"`` or ``"flip"`` (``None``: the run's ``eval_tta``).

    Returns:
        The stored record ``{"threshold", "tta", "split", "n_images", "dice", "default_dice"}``
        (``dice``: mean Dice on ``split`` at the chosen threshold; ``default_dice``: at the run's
        ``val_threshold`` with the same augmentation).

    Raises:
        ValueError: If ``checkpoint`` is not a training checkpoint file or ``split`` has no images.
    """
    from darlkit.training.checkpoint import load_checkpoint, save_checkpoint
    from darlkit.training.config import TrainConfig
    from darlkit.training.inference import INFERENCE_KEY

    path = Path(checkpoint)
    if not path.is_file():
        raise ValueError(f"calibrate_checkpoint needs a training checkpoint file, got {checkpoint}")
    state = load_checkpoint(path, map_location="cpu")
    config = TrainConfig.from_dict(state["config"])
    tta = config.eval_tta if tta is None else tta
    chosen = choose_threshold(path, root, split, device=device, tta=tta, default_threshold=config.val_threshold)
    record = {"threshold": chosen["threshold"], "tta": tta, "split": split, "n_images": chosen["n_images"],
              "dice": chosen["dice"], "default_dice": chosen["default_dice"]}
    save_checkpoint({**state, INFERENCE_KEY: record}, path)
    return record


def _with_decay_horizon(config: Any, steps: int | None, n_items: int) -> Any:
    """``config`` with ``lr_decay_steps=0`` replaced by the run's step count when it decays the LR."""
    if config.lr_decay == "none" or config.lr_decay_steps:
        return config
    if steps is None:
        from darlkit.training.distributed import process_group

        steps = config.epochs * max(1, n_items // (config.batch_size * process_group()[2]))
    return config.replace(lr_decay_steps=max(1, int(steps)))


def train_on_folder(
    config: Any,
    root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    model_config: Any = None,
    steps: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    resume: str | os.PathLike[str] | bool | None = None,
    time_limit: float | None = None,
    evaluate_test: bool = True,
    check_files: bool = True,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Train on ``root/train``, choose ``best.pt`` on the validation split, evaluate it on ``test/`` once.

    Args:
        config: The run's :class:`~darlkit.training.TrainConfig` (an LR decay with
            ``lr_decay_steps=0`` is stretched over this run's ``steps``).
        root: XCAD-layout dataset root (``train/trainA,B,C``; ``val/`` and/or ``test/``).
        out_dir: Run folder (checkpoints, metrics, figure).
        model_config: The networks, a :class:`~darlkit.training.ModelConfig` (``None``: the preset's).
        steps: Total training iterations (``None``: ``config.epochs`` epochs).
        device: Training device (``None``: the trainer's default).
        progress: Show a progress bar.
        resume: Checkpoint to continue from, or ``True`` for ``out_dir/last.pt``.
        time_limit: Stop training after this many seconds (see ``DARLTrainer.fit``).
        evaluate_test: When the checkpoint was chosen on ``val/`` and ``test/`` has images, evaluate
            the chosen checkpoint (``best.pt``, else ``last.pt``) on ``test/`` (rank 0 only).
        check_files: Run the pre-flight check of every file before step 1 (``False`` when the
            caller has already checked them).
        log: Printer of the progress lines (rank 0 only).

    Returns:
        The dict of ``DARLTrainer.fit`` plus ``"config"``, ``"trainer"``, ``"selection_split"``
        (``"val"``, ``"test"`` or ``"none"``), ``"calibration"`` (the record of
        :func:`calibrate_checkpoint` when ``config.calibrate_threshold`` and a ``val/`` split
        chose ``best.pt``, else ``None``) and ``"test"`` (the :func:`evaluate_on_split` dict
        with the checkpoint's defaults, or ``None`` when not evaluated).
    """
    from darlkit.data import XCADDataset
    from darlkit.training.networks import build_networks
    from darlkit.training.trainer import DARLTrainer

    root = Path(root)
    train_set = XCADDataset(root, split="train", size=config.image_size, augment=True, seed=config.seed)
    val_set, split, message = validation_split(root)
    config = _with_decay_horizon(config, steps, len(train_set))
    model, d_s, d_a = build_networks(config, model_config)
    trainer = DARLTrainer(model, d_s, d_a, config, out_dir=out_dir, device=device, progress=progress)
    if trainer.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        n_sel = 0 if val_set is None else len(val_set)
        log(f"darlkit train: preset {config.preset_name}, {len(train_set)} training items, "
            f"{n_sel} {_SPLIT_NAMES[split]} images for selection, {n_params / 1e6:.2f} M parameters, "
            f"device {trainer.device}" + (f", amp {trainer.amp}" + (" (auto)" if config.amp == "auto" else "")
                                          if trainer.amp != "none" or config.amp == "auto" else "")
            + f", world size {trainer.world_size}")
        log(message)
    result = trainer.fit(train_set, steps=steps, val_data=val_set, resume=resume, time_limit=time_limit,
                         check_files=check_files)
    result.update(config=config, trainer=trainer, selection_split=split, test=None, calibration=None)
    chosen = result["best_checkpoint"] or result["last_checkpoint"]
    if config.calibrate_threshold and trainer.is_main and split == "val" and result["best_checkpoint"]:
        result["calibration"] = record = calibrate_checkpoint(result["best_checkpoint"], root, "val",
                                                              device=trainer.device)
        log(f"best.pt calibrated on the validation split: threshold {record['threshold']:g}, tta {record['tta']} "
            f"(validation Dice {record['dice']:.3f}; {record['default_dice']:.3f} at {config.val_threshold:g})")
    if evaluate_test and trainer.is_main and split == "val" and chosen and _has_images(root / "test" / "images"):
        result["test"] = evaluate_on_split(chosen, root, "test", device=trainer.device)
    return result
