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
that (about a minute for two 999 x 960 fundus images with the ``small`` preset on a busy 2-core CPU).
The ``small`` preset then calibrates ``best.pt`` within that margin: the threshold with the best
validation Dice under flip test-time augmentation becomes the checkpoint's default for
``darlkit evaluate`` / ``segment`` (``darlkit.training.calibrate_checkpoint``). With ``--budget-min``
the test split is not evaluated at the end (that would run past the budget): run ``darlkit evaluate``. Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised with ``nccl`` on CUDA
and ``gloo`` on the CPU; only rank 0 prints and writes files.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from darlkit.cli import CLIError, add_command, argtypes
from darlkit.cli.options import add_training_arguments, build_configs, config_overrides

if TYPE_CHECKING:  # pragma: no cover
    from darlkit.training import ModelConfig, TrainConfig

__all__ = [
    "add_parser",
    "run",
    "resumed_config",
    "prepare_run_folder",
    "train_from_args",
    "synthesise_once",
    "SYNTH_COMPLETE_MARKER",
]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``darlkit train`` (see :func:`darlkit.cli.add_command`)."""
    p = add_command(subparsers, "train", run,
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
    return p


def resumed_config(args: argparse.Namespace, checkpoint: Path) -> tuple[TrainConfig, ModelConfig]:
    """The configurations of a resumed run: the checkpoint's, with the options given explicitly.

    Args:
        args: Parsed arguments (``--preset`` must be absent or the checkpoint's).
        checkpoint: The checkpoint to continue.

    Returns:
        ``(TrainConfig, ModelConfig)``, validated (see :func:`darlkit.training.resume_config`
        and :func:`darlkit.training.resume_model_config`).

    Raises:
        CLIError: If ``--preset`` differs from the checkpoint's preset.
        ValueError: If an option changes a setting that is fixed on resume (names and values).
    """
    from darlkit.training import ModelConfig, check_run, load_checkpoint, resume_config, resume_model_config

    state = load_checkpoint(checkpoint)
    stored = state["config"]
    if args.preset is not None and args.preset != stored.get("preset_name"):
        raise CLIError(f"--preset {args.preset}: the checkpoint {checkpoint} was trained with preset "
                       f"{stored.get('preset_name')!r} (omit --preset when resuming)")
    config = resume_config(stored, config_overrides(args))
    stored_model = ModelConfig.from_checkpoint(state)
    model = resume_model_config(stored_model, stored_model.parse_overrides(args.net or []))
    check_run(config, model)
    return config, model


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
                    log=print, time_limit: float | None = None, evaluate_test: bool = True) -> dict[str, Any]:
    """Run a training job described by parsed arguments (used by ``train`` and ``quickstart``).

    Args:
        args: Parsed arguments (``--out``, ``--steps``, ``--resume`` and the training options).
        default_preset: Preset when ``--preset`` is absent.
        data_root: XCAD-layout folder to train on (overrides ``args.data``).
        log: Printer for progress lines (rank 0 only).
        time_limit: Stop training after this many seconds (``DARLTrainer.fit``).
        evaluate_test: Evaluate the chosen checkpoint on ``test/`` at the end (when ``val/`` chose it).

    Returns:
        The dict of :func:`darlkit.training.train_on_folder` (``DARLTrainer.fit``'s plus
        ``"config"``, ``"trainer"``, ``"selection_split"``, ``"calibration"`` and ``"test"``).
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
    config, model = build_configs(args, default_preset) if resume is None else resumed_config(
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
        return train_on_folder(config, root, args.out, model_config=model, steps=args.steps, device=device,
                               progress=not args.no_progress, resume=resume, time_limit=time_limit, log=log,
                               check_files=False, evaluate_test=evaluate_test)  # checked above, before the datasets were built
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()


def run(args: argparse.Namespace) -> int:
    """Execute ``darlkit train``; returns exit status 0 (:func:`darlkit.cli.main` reports errors)."""
    prepare_run_folder(args)  # before writing anything into --out
    if args.resume is None:
        build_configs(args)  # bad settings fail before any data is synthesised
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
    result = train_from_args(args, data_root=data_root, time_limit=time_limit, evaluate_test=budget is None)
    if result["trainer"].is_main:
        summary = {k: result[k] for k in ("step", "best_dice", "best_step", "selection_split", "last_checkpoint",
                                          "best_checkpoint", "figure", "calibration")}
        if result["test"] is not None:
            summary["test_dice"] = result["test"]["clean"]["dice"]["mean"]
        summary["seconds"] = round(result["seconds"], 1)
        print(json.dumps(summary))
    return 0
