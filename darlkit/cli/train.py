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
    "config_overrides",
    "resumed_config",
    "prepare_run_folder",
    "train_from_args",
    "synthesise_once",
    "SYNTH_COMPLETE_MARKER",
]


_VALUE = object()  # stands for the flag's parsed value in CONFIG_FLAGS


def _config_flags() -> tuple[tuple[str, dict[str, Any], dict[str, Any]], ...]:
    """``(flag, TrainConfig fields it sets, argparse options)``: the one table from CLI flags to the config.

    ``_VALUE`` in the fields stands for the parsed value; every flag defaults to ``None`` (the
    preset's value). The values are validated by ``TrainConfig`` itself when it is built.
    """
    from darlkit.kernels import BACKENDS
    from darlkit.training import AMP_MODES
    from darlkit.training.optim import LR_DECAYS

    flag_on = {"action": "store_const", "const": True, "default": None}
    return (
        ("--batch-size", {"batch_size": _VALUE},
         {"type": argtypes.positive_int, "help": "images per step and process"}),
        ("--lr", {"lr": _VALUE, "lr_d": _VALUE},
         {"type": argtypes.positive_float, "help": "learning rate of all optimisers"}),
        ("--image-size", {"image_size": _VALUE}, {"type": argtypes.positive_int, "help": "training crop side"}),
        ("--val-every", {"val_every": _VALUE},
         {"type": argtypes.non_negative_int, "help": "validate every N steps (0: at the end)"}),
        ("--seed", {"seed": _VALUE}, {"type": argtypes.non_negative_int, "help": "seed of init, data order and draws"}),
        ("--amp", {"amp": _VALUE}, {"choices": AMP_MODES, "help": "mixed precision (bf16 autocast; fp16 on CUDA)"}),
        ("--backend", {"backend": _VALUE}, {"choices": BACKENDS, "help": "kernel backend of the norm layers"}),
        ("--channels-last", {"channels_last": _VALUE}, {**flag_on, "help": "channels-last memory format"}),
        ("--compile", {"compile": _VALUE}, {**flag_on, "help": "torch.compile the networks"}),
        ("--ema", {"ema_decay": _VALUE, "eval_ema": True},
         {"type": float, "metavar": "DECAY", "help": "keep an EMA of the weights and evaluate with it"}),
        ("--lr-warmup", {"lr_warmup_steps": _VALUE},
         {"type": argtypes.non_negative_int, "metavar": "N", "help": "linear LR warmup over N steps (0: none)"}),
        ("--lr-decay", {"lr_decay": _VALUE},
         {"choices": LR_DECAYS, "help": "LR decay after the warmup, to 0.1 x lr at the last step"}),
        ("--grad-clip", {"grad_clip": _VALUE},
         {"type": argtypes.positive_float, "help": "clip gradient norms to this value"}),
        ("--workers", {"num_workers": _VALUE}, {"type": argtypes.non_negative_int, "help": "DataLoader workers"}),
        ("--save-every", {"ckpt_every": _VALUE},
         {"type": argtypes.non_negative_int, "metavar": "N",
          "help": "write OUT/last.pt every N steps (0: only at the end; default: the preset's ckpt_every)"}),
        ("--skip-nonfinite", {"skip_nonfinite": _VALUE},
         {"type": argtypes.non_negative_int, "metavar": "N",
          "help": "skip up to N consecutive steps whose loss is NaN/Inf (default 0: stop at the first, "
                  "keeping the last good checkpoint)"}),
    )


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """Register the options shared by ``train`` and ``quickstart``: the preset, the run-config flags
    of :func:`_config_flags` and the process options (steps, device, threads, progress)."""
    from darlkit.training import PRESETS

    p.add_argument("--preset", choices=PRESETS, default=None, help="configuration preset (default: paper; quickstart: tiny)")
    p.add_argument("--steps", type=argtypes.non_negative_int, default=None, help="total training iterations")
    for flag, _, options in _config_flags():
        p.add_argument(flag, **{"default": None, **options})
    p.add_argument("--device", type=argtypes.device, default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
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
    p.add_argument("--out", type=argtypes.output_dir, default=Path("runs/darl"), help="run folder (checkpoints, logs, figure)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CKPT",
                   help="continue from CKPT (default: OUT/last.pt); settings not given are the checkpoint's")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in OUT: delete its last.pt, best.pt, metrics.*, train_log.jsonl, figure.png "
                        "and config.json (no other file) before training")
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


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``TrainConfig`` fields set explicitly by the options of :func:`add_training_arguments`.

    Args:
        args: Parsed arguments.

    Returns:
        ``{field: value}`` for every option given on the command line.
    """
    overrides: dict[str, Any] = {}
    for flag, fields, _ in _config_flags():
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            overrides.update({k: value if v is _VALUE else v for k, v in fields.items()})
    return overrides


def build_config(args: argparse.Namespace, default_preset: str = "paper"):
    """The :class:`~darlkit.training.TrainConfig` of parsed CLI arguments.

    Args:
        args: Parsed arguments with the options of :func:`add_training_arguments`.
        default_preset: Preset used when ``--preset`` is not given.

    Returns:
        The validated configuration.
    """
    from darlkit.training import TrainConfig

    return TrainConfig.preset(args.preset or default_preset, **config_overrides(args))


def resumed_config(args: argparse.Namespace, checkpoint: Path):
    """The configuration of a resumed run: the checkpoint's, with the options given explicitly.

    Args:
        args: Parsed arguments (``--preset`` must be absent or the checkpoint's).
        checkpoint: The checkpoint to continue.

    Returns:
        The validated configuration (see :func:`darlkit.training.resume_config`).

    Raises:
        CLIError: If ``--preset`` differs from the checkpoint's preset.
        ValueError: If an option changes a setting that is fixed on resume (names and values).
    """
    from darlkit.training import load_checkpoint, resume_config

    stored = load_checkpoint(checkpoint)["config"]
    if args.preset is not None and args.preset != stored.get("preset_name"):
        raise CLIError(f"--preset {args.preset}: the checkpoint {checkpoint} was trained with preset "
                       f"{stored.get('preset_name')!r} (omit --preset when resuming)")
    return resume_config(stored, config_overrides(args))


def prepare_run_folder(args: argparse.Namespace) -> None:
    """Refuse a previous run's folder unless ``--resume``; with ``--overwrite`` clear its run files.

    Args:
        args: Parsed arguments (``--out``, ``--resume``, optional ``--overwrite``).

    Raises:
        FileExistsError: If ``--out`` holds a run and neither option is given.
    """
    from darlkit.training.run_folder import check_run_folder, clear_run_files

    overwrite = bool(getattr(args, "overwrite", False))
    check_run_folder(args.out, resume=args.resume is not None, overwrite=overwrite)
    if overwrite and int(os.environ.get("RANK", "0")) == 0:
        clear_run_files(args.out)


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
    if root.exists() and not root.is_dir():
        raise CLIError(f"--data {root} is a file, not a dataset folder")
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
        The dict of :func:`darlkit.training.train_on_folder` (``DARLTrainer.fit``'s plus
        ``"config"``, ``"trainer"``, ``"selection_split"`` and ``"test"``).
    """
    import torch

    from darlkit.training import train_on_folder

    from darlkit.training import check_dataset_files

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    prepare_run_folder(args)
    resume = args.resume
    if resume not in (None, True):
        resume = Path(resume)
        if resume.is_dir():
            raise CLIError(f"--resume {resume} is a folder, not a checkpoint file")
        if not resume.is_file():
            raise CLIError(f"--resume: checkpoint not found: {resume}")
    elif resume is True and not (args.out / "last.pt").is_file():
        raise CLIError(f"--resume: no checkpoint to continue in {args.out} (expected {args.out / 'last.pt'})")
    config = build_config(args, default_preset) if resume is None else resumed_config(
        args, args.out / "last.pt" if resume is True else resume)
    device = _resolve_device(args.device)
    if config.amp == "fp16" and device.type != "cuda":
        raise CLIError("--amp fp16 needs a CUDA device; use --amp bf16 on the CPU")
    root = Path(data_root if data_root is not None else args.data)
    _check_xcad_dir(root)
    # Every training and test file is decoded and checked before step 1 (one error lists all).
    check_dataset_files(root)  # the dataset pads small images (small="reflect"): no size rule
    distributed = _init_distributed(device)
    try:
        # best.pt is chosen on DATA/val when it has images, else on DATA/test (said in one line);
        # with val/, the chosen checkpoint is evaluated once on test/ at the end.
        return train_on_folder(config, root, args.out, steps=args.steps, device=device,
                               progress=not args.no_progress, resume=resume, time_limit=time_limit, log=log,
                               check_files=False)  # checked above, before the datasets were built
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
    prepare_run_folder(args)  # before writing anything into --out
    data_root = None
    if args.synthetic:
        from darlkit.synthesis import write_synthetic_xcad
        from darlkit.training import TrainConfig, write_validation_split

        size = args.synthetic_size or 2 * (args.image_size or TrainConfig.preset(args.preset or "paper").image_size)
        render = args.synthetic_render_size or max(size, 512)
        if render < size:
            raise CLIError(f"--synthetic-render-size must be >= the image side {size}, got {render}")
        data_root = args.out / "data"
        def write() -> None:
            write_synthetic_xcad(data_root, n_train=args.synthetic_train, n_test=args.synthetic_test, size=render,
                                 crop=size, seed=args.seed or 0, progress=not args.no_progress, overwrite=True)
            # a validation split of its own seed stream chooses best.pt; test/ is evaluated once
            write_validation_split(data_root, args.synthetic_test, size=render, crop=size, data_seed=args.seed or 0,
                                   overwrite=True)

        synthesise_once(data_root, write)
    budget = getattr(args, "budget_min", None)
    # the loop stops early by max(30 s, 10 % of M), at most half of M, so the final validation and save fit
    time_limit = None if budget is None else budget * 60.0 - min(budget * 30.0, max(30.0, budget * 6.0))
    result = train_from_args(args, data_root=data_root, time_limit=time_limit)
    if result["trainer"].is_main:
        summary = {k: result[k] for k in ("step", "best_dice", "best_step", "selection_split", "last_checkpoint",
                                          "best_checkpoint", "figure")}
        if result["test"] is not None:
            summary["test_dice"] = result["test"]["clean"]["dice"]["mean"]
        summary["seconds"] = round(result["seconds"], 1)
        print(json.dumps(summary))
    return 0
