"""``darlkit train``: train DARL without labels on an XCAD-layout folder or synthetic data.

Examples::

    darlkit train --synthetic --preset tiny --steps 600 --out runs/tiny
    darlkit train --data /data/XCAD --preset paper --out runs/paper
    darlkit train --data /data/XCAD --out runs/paper --resume          # continue runs/paper/last.pt
    darlkit train --data prepared/ --preset small --budget-min 30 --out runs/small
    torchrun --nproc_per_node 2 -m darlkit train --data /data/XCAD --out runs/ddp

Validation (and so ``best.pt``) uses ``DATA/val`` when it holds images, else ``DATA/test``.
``--budget-min M`` stops the loop max(30 s, 10 % of M) (at most half of M) before M minutes have
passed, so the final validation and save fit in the budget when one validation takes less than
that (about a minute for two 999 x 960 fundus images with the ``small`` preset on a busy 2-core CPU). Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised with ``nccl`` on CUDA
and ``gloo`` on the CPU; only rank 0 prints and writes files.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Callable

from darlkit.cli import CLIError, argtypes

__all__ = [
    "add_parser",
    "run",
    "add_training_arguments",
    "build_config",
    "train_from_args",
    "synthesise_once",
    "SYNTH_COMPLETE_MARKER",
]


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """Register the options shared by ``train`` and ``quickstart`` (preset and overrides)."""
    from darlkit.kernels import BACKENDS
    from darlkit.training import AMP_MODES, PRESETS

    p.add_argument("--preset", choices=PRESETS, default=None, help="configuration preset (default: paper; quickstart: tiny)")
    p.add_argument("--steps", type=argtypes.non_negative_int, default=None, help="total training iterations")
    p.add_argument("--batch-size", type=argtypes.positive_int, default=None, help="images per step and process")
    p.add_argument("--lr", type=argtypes.positive_float, default=None, help="learning rate of all optimisers")
    p.add_argument("--image-size", type=argtypes.positive_int, default=None, help="training crop side")
    p.add_argument("--val-every", type=argtypes.non_negative_int, default=None, help="validate every N steps (0: at the end)")
    p.add_argument("--seed", type=argtypes.non_negative_int, default=None, help="seed of init, data order and draws")
    p.add_argument("--amp", choices=AMP_MODES, default=None, help="mixed precision (bf16 autocast; fp16 on CUDA)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="kernel backend of the norm layers")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--ema", type=float, default=None, metavar="DECAY", help="keep an EMA of the weights and evaluate with it")
    p.add_argument("--grad-clip", type=argtypes.positive_float, default=None, help="clip gradient norms to this value")
    p.add_argument("--workers", type=argtypes.non_negative_int, default=None, help="DataLoader workers")
    p.add_argument("--threads", type=argtypes.positive_int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``darlkit train``.

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers``.

    Returns:
        The sub-command's parser.
    """
    p = subparsers.add_parser(
        "train",
        help="train DARL (no labels needed)",
        description="Train DARL on an XCAD-layout folder (train/trainA,B,C; test/images,masks) or synthetic data.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="XCAD-layout dataset folder")
    src.add_argument("--synthetic", action="store_true", help="synthesise a dataset into OUT/data first")
    p.add_argument("--out", type=Path, default=Path("runs/darl"), help="run folder (checkpoints, logs, figure)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CKPT",
                   help="continue from CKPT (default: OUT/last.pt)")
    p.add_argument("--synthetic-train", type=argtypes.positive_int, default=64, help="synthetic training images")
    p.add_argument("--synthetic-test", type=argtypes.positive_int, default=16, help="synthetic test images")
    p.add_argument("--synthetic-size", type=argtypes.positive_int, default=None,
                   help="synthetic image side (default: twice the crop side)")
    p.add_argument("--synthetic-render-size", type=argtypes.positive_int, default=None,
                   help="render synthetic images at this side and keep a --synthetic-size window, so vessels "
                        "keep XCAD's width in pixels (default: 512, or the image side if larger)")
    p.add_argument("--budget-min", type=argtypes.positive_float, default=None, metavar="M",
                   help="finish within M minutes: the loop stops max(30 s, 10%% of M) early, then validates and "
                        "saves (best.pt stays the best validated checkpoint)")
    add_training_arguments(p)
    p.set_defaults(run=run)
    return p


def build_config(args: argparse.Namespace, default_preset: str = "paper"):
    """The :class:`~darlkit.training.TrainConfig` of parsed CLI arguments.

    Args:
        args: Parsed arguments with the options of :func:`add_training_arguments`.
        default_preset: Preset used when ``--preset`` is not given.

    Returns:
        The validated configuration.
    """
    from darlkit.training import TrainConfig

    overrides: dict[str, Any] = {}
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if args.lr is not None:
        overrides["lr"] = overrides["lr_d"] = args.lr
    if args.image_size is not None:
        overrides["image_size"] = args.image_size
    if args.val_every is not None:
        overrides["val_every"] = args.val_every
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.amp is not None:
        overrides["amp"] = args.amp
    if args.backend is not None:
        overrides["backend"] = args.backend
    if args.channels_last:
        overrides["channels_last"] = True
    if args.compile:
        overrides["compile"] = True
    if args.ema is not None:
        overrides["ema_decay"] = args.ema
        overrides["eval_ema"] = True
    if args.grad_clip is not None:
        overrides["grad_clip"] = args.grad_clip
    if args.workers is not None:
        overrides["num_workers"] = args.workers
    return TrainConfig.preset(args.preset or default_preset, **overrides)


def _resolve_device(name: str | None):
    import torch

    if name is None:
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CLIError(f"--device: not a device name: {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {name}: CUDA is not available on this machine")
    return device


def _init_distributed(device) -> bool:
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return True


SYNTH_COMPLETE_MARKER = ".darlkit-synth-complete"
"""File written into a ``--synthetic`` data folder once all of its images are written."""


def synthesise_once(data_root: Path, write: Callable[[], Any], *, timeout: float = 3600.0, poll: float = 1.0) -> None:
    """Write a synthetic dataset once per run folder, safely under ``torchrun``.

    Rank 0 (``RANK`` unset or 0) calls ``write`` unless ``data_root`` holds the completion
    marker, then writes the marker; a folder without the marker (a write that was interrupted)
    is written again. Other ranks wait for the marker, so no process reads a half-written set.

    Args:
        data_root: The dataset folder.
        write: Writes the whole dataset into ``data_root`` (replacing partial files).
        timeout: Seconds a rank > 0 waits for the marker.
        poll: Seconds between checks.

    Raises:
        CLIError: If a rank > 0 waited ``timeout`` seconds without seeing the marker.
    """
    import time

    marker = data_root / SYNTH_COMPLETE_MARKER
    if int(os.environ.get("RANK", "0")) == 0:
        if not marker.is_file():
            write()
            marker.write_text("complete\n")
        return
    deadline = time.monotonic() + timeout
    while not marker.is_file():
        if time.monotonic() > deadline:
            raise CLIError(f"--synthetic: rank 0 did not finish writing {data_root} within {timeout:g} s")
        time.sleep(poll)


def _check_xcad_dir(root: Path) -> None:
    if not root.is_dir():
        raise CLIError(f"--data: dataset folder not found: {root}")
    missing = [d for d in ("train/trainA", "train/trainB", "train/trainC") if not (root / d).is_dir()]
    if missing:
        raise CLIError(f"--data {root}: not an XCAD layout, missing folder(s) {', '.join(missing)}")


def train_from_args(args: argparse.Namespace, *, default_preset: str = "paper", data_root: Path | None = None,
                    log=print, time_limit: float | None = None) -> dict[str, Any]:
    """Run a training job described by parsed arguments (used by ``train`` and ``quickstart``).

    Args:
        args: Parsed arguments (``--out``, ``--steps``, ``--resume`` and the training options).
        default_preset: Preset when ``--preset`` is absent.
        data_root: XCAD-layout folder to train on (overrides ``args.data``).
        log: Printer for progress lines (rank 0 only).
        time_limit: Stop training after this many seconds (``DARLTrainer.fit``).

    Returns:
        The dict returned by ``DARLTrainer.fit`` plus ``"config"``.
    """
    import torch

    from darlkit.data import XCADDataset
    from darlkit.training import DARLTrainer, build_networks

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = build_config(args, default_preset)
    device = _resolve_device(args.device)
    if config.amp == "fp16" and device.type != "cuda":
        raise CLIError("--amp fp16 needs a CUDA device; use --amp bf16 on the CPU")
    root = Path(data_root if data_root is not None else args.data)
    _check_xcad_dir(root)
    distributed = _init_distributed(device)
    try:
        train_set = XCADDataset(root, split="train", size=config.image_size, augment=True, seed=config.seed)
        # validate on val/ (labelled validation images) when present, else on test/
        val_split = next((s for s in ("val", "test") if (root / s / "images").is_dir() and any((root / s / "images").iterdir())), None)
        test_set = XCADDataset(root, split=val_split) if val_split is not None else None
        resume = args.resume
        if resume not in (None, True):
            resume = Path(resume)
            if not resume.is_file():
                raise CLIError(f"--resume: checkpoint not found: {resume}")
        elif resume is True and not (args.out / "last.pt").is_file():
            raise CLIError(f"--resume: no checkpoint to continue in {args.out} (expected {args.out / 'last.pt'})")
        model, d_s, d_a = build_networks(config)
        trainer = DARLTrainer(model, d_s, d_a, config, out_dir=args.out, device=device,
                              progress=not args.no_progress)
        if trainer.is_main:
            n_params = sum(p.numel() for p in model.parameters())
            log(f"darlkit train: preset {config.preset_name}, {len(train_set)} training items, "
                f"{0 if test_set is None else len(test_set)} {val_split or 'validation'} images, {n_params / 1e6:.2f} M parameters, "
                f"device {device}, world size {trainer.world_size}")
        result = trainer.fit(train_set, steps=args.steps, val_data=test_set, resume=resume, time_limit=time_limit)
        result["config"] = config
        result["trainer"] = trainer
        return result
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()


def run(args: argparse.Namespace) -> int:
    """Execute ``darlkit train``.

    Args:
        args: Parsed arguments.

    Returns:
        Exit status 0.
    """
    data_root = None
    if args.synthetic:
        from darlkit.synthesis import write_synthetic_xcad
        from darlkit.training import TrainConfig

        size = args.synthetic_size or 2 * (args.image_size or TrainConfig.preset(args.preset or "paper").image_size)
        render = args.synthetic_render_size or max(size, 512)
        if render < size:
            raise CLIError(f"--synthetic-render-size must be >= the image side {size}, got {render}")
        data_root = args.out / "data"
        synthesise_once(
            data_root,
            lambda: write_synthetic_xcad(data_root, n_train=args.synthetic_train, n_test=args.synthetic_test,
                                         size=render, crop=size, seed=args.seed or 0,
                                         progress=not args.no_progress, overwrite=True),
        )
    budget = getattr(args, "budget_min", None)
    # the loop stops early by max(30 s, 10 % of M), at most half of M, so the final validation and save fit
    time_limit = None if budget is None else budget * 60.0 - min(budget * 30.0, max(30.0, budget * 6.0))
    result = train_from_args(args, data_root=data_root, time_limit=time_limit)
    if result["trainer"].is_main:
        summary = {k: result[k] for k in ("step", "best_dice", "best_step", "last_checkpoint", "best_checkpoint", "figure")}
        summary["seconds"] = round(result["seconds"], 1)
        print(json.dumps(summary))
    return 0
