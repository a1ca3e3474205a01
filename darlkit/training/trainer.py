"""DARLTrainer: the alternating generator / discriminator optimisation of DARL.

The trainer composes collaborators: :class:`~darlkit.training.DARLStep` (one iteration),
:mod:`~darlkit.training.sampler`, :mod:`~darlkit.training.optim`, the run folder
(:class:`~darlkit.training.RunFiles`, :class:`~darlkit.training.Checkpointer`,
:class:`~darlkit.training.RunLog`), :mod:`~darlkit.training.validation` and
:class:`~darlkit.training.Callback` hooks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from darlkit.training.callbacks import Callback, ProgressBar
from darlkit.model.inference import segment_image
from darlkit.training.checkpoint import (
    CHECKPOINT_FORMAT,
    Checkpointer,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from darlkit.training.config import TrainConfig, resolve_amp
from darlkit.training.distributed import broadcast_flag, default_device, process_group, unwrap
from darlkit.training.figures import save_figure
from darlkit.training.logs import RunLog
from darlkit.training.guard import RunGuard, restore_best
from darlkit.training.monitor import CollapseMonitor
from darlkit.training.optim import OptimizerSpec, SchedulerSpec
from darlkit.training.networks import ModelConfig
from darlkit.training.resume import apply_optimizer_settings, check_model_changes, check_resume_changes
from darlkit.training.run_files import RunFiles
from darlkit.training.sampler import StepSampler, _mix_seed, dataset_of, step_batches  # noqa: F401 (_mix_seed: tests)
from darlkit.training.step import DARLStep, _config_or_none
from darlkit.training.validation import ValidationHistory, run_validation

__all__ = ["DARLTrainer"]


def _delegate(name: str, owner: str = "update") -> property:
    """A read-only trainer attribute that is ``trainer.<owner>.<name>``."""
    return property(lambda self: getattr(getattr(self, owner), name), doc=f"Alias of ``{owner}.{name}``.")


class DARLTrainer:
    """Trains DARL (diffusion module + generator) against two PatchGAN discriminators.

    One iteration is a :class:`DARLStep` (generator step, then discriminator step; the paper's
    Adam by default, or the injected optimisers and LR schedulers). The trainer runs it over the
    data in a loop with logging, validation, checkpoints, figures and :class:`Callback` hooks.

    Every random draw of a step (t_a, t_b, eps, the data order) comes from generators seeded
    with ``(config.seed, step)`` (:mod:`~darlkit.training.sampler`); the image pools, the
    optimisers, the LR schedulers and the global RNGs are checkpointed. A run interrupted at
    step k and resumed from ``last.pt`` therefore ends bit-identical to an uninterrupted run on
    CPU with deterministic kernels.

    Multi-process: under an initialised ``torch.distributed`` group (e.g. ``torchrun``), each
    rank trains on its block of every global batch and only rank 0 writes files; the result
    equals one process with the global batch (see :mod:`~darlkit.training.distributed`).

    Args:
        model: A ``darlkit.model.DARL`` (``.unet``, ``.generator``, ``.diffusion``,
            ``forward_paths``, ``segment``).
        disc_mask: Mask discriminator D_s: (N, 1, H, W) in [-1, 1] -> patch logits.
        disc_image: Angiogram discriminator D_a: (N, 1, H, W) in [-1, 1] -> patch logits.
        config: The run's :class:`TrainConfig`.
        out_dir: Run folder for checkpoints, logs and figures (``None``: write nothing).
        device: Training device (default: ``cuda:LOCAL_RANK`` under NCCL, else the CPU).
        progress: Show a tqdm progress bar (rank 0 only; a :class:`ProgressBar` callback).
        optimizer_g: Optimiser of the model's trainable parameters: an optimiser over exactly
            those parameters, a factory ``params -> Optimizer``, or ``None`` for the paper's
            ``Adam(lr=config.lr, betas=config.betas)``.
        optimizer_d: Optimiser of both discriminators' parameters (same forms; default
            ``Adam(lr=config.lr_d, betas=config.betas)``).
        scheduler_g: Factory ``optimizer -> LRScheduler`` for ``optimizer_g``, stepped once per
            training step (``None``: constant learning rate).
        scheduler_d: The same for ``optimizer_d``.
        callbacks: :class:`Callback` instances whose hooks ``fit`` calls, in order.

    Attributes:
        update: The :class:`DARLStep` holding the networks, optimisers, LR schedulers, gradient
            scalers, image pools and EMA (``opt_g``, ``opt_d``, ``g_params``, ``d_params``,
            ``pool_mask`` and ``ema`` of the trainer are read-only aliases of its attributes).
        files: The run's :class:`RunFiles` (``None`` without ``out_dir``).
        checkpoints: The :class:`Checkpointer` writing ``last.pt`` / ``best.pt``.
        log: The :class:`RunLog` writing ``train_log.jsonl`` and ``metrics.*``.
        validation: The :class:`ValidationHistory` (records, best Dice and step).
        stop_reason: Why the latest ``fit`` stopped early (``None``: it did not).
        monitor: The :class:`CollapseMonitor` of the validations (``None`` with
            ``config.collapse_patience=0``); each validation record gets ``collapse_warning``.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``amp="fp16"`` is requested on a non-CUDA device, or an optimiser
            instance does not step exactly its network's parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        disc_mask: nn.Module,
        disc_image: nn.Module,
        config: TrainConfig | None = None,
        *,
        out_dir: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        progress: bool = True,
        optimizer_g: OptimizerSpec = None,
        optimizer_d: OptimizerSpec = None,
        scheduler_g: SchedulerSpec = None,
        scheduler_d: SchedulerSpec = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        config = TrainConfig() if config is None else config
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        for name, mod in (("model", model), ("disc_mask", disc_mask), ("disc_image", disc_image)):
            if not isinstance(mod, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(mod).__name__}")
        if not hasattr(model, "forward_paths") or not hasattr(model, "segment"):
            raise TypeError("model must be a darlkit DARL model (forward_paths and segment methods)")
        callbacks = list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be darlkit.training.Callback instances, got {type(cb).__name__}")
        self.config = config
        self.distributed, self.rank, self.world_size = process_group()
        self.device = torch.device(default_device(self.distributed) if device is None else device)
        if config.amp == "fp16" and self.device.type != "cuda":
            raise ValueError("amp='fp16' needs a CUDA device (use amp='bf16' on the CPU)")
        self.amp = resolve_amp(config.amp, self.device)  # "auto" resolved for this device
        self.is_main = self.rank == 0
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks = ([ProgressBar()] if progress and self.is_main else []) + callbacks

        self.update = DARLStep(
            model, disc_mask, disc_image, config.replace(amp=self.amp), device=self.device, rank=self.rank,
            world_size=self.world_size, distributed=self.distributed, optimizer_g=optimizer_g,
            optimizer_d=optimizer_d, scheduler_g=scheduler_g, scheduler_d=scheduler_d,
        )
        self.model, self.disc_mask, self.disc_image = self.update.model, self.update.disc_mask, self.update.disc_image
        self.step = 0
        self.validation = ValidationHistory()
        self.files = RunFiles.in_folder(self.out_dir) if self.out_dir is not None else None
        self.checkpoints = Checkpointer(self.state_dict, self.files, enabled=self.is_main)
        self.log = RunLog(self.files, enabled=self.is_main)
        self.monitor = CollapseMonitor.from_config(config)
        self.stop_reason: str | None = None

    @classmethod
    def from_configs(cls, config: TrainConfig, model_config: ModelConfig | None = None, **kwargs: Any) -> DARLTrainer:
        """A trainer of newly built networks: ``build_networks(config, model_config)``.

        Args:
            config: The training configuration.
            model_config: The networks (default: the preset's, ``ModelConfig.preset(config.preset_name)``).
            **kwargs: The keyword arguments of :class:`DARLTrainer` (``out_dir``, ``device``, ...).

        Returns:
            The trainer.
        """
        from darlkit.training.networks import build_networks

        return cls(*build_networks(config, model_config), config, **kwargs)

    # ------------------------------------------------------------------ helpers
    best_dice = _delegate("best_dice", "validation")
    best_step = _delegate("best_step", "validation")
    history = _delegate("records", "validation")
    g_params = _delegate("g_params")
    d_params = _delegate("d_params")
    opt_g = _delegate("opt_g")
    opt_d = _delegate("opt_d")
    pool_mask = _delegate("pool_mask")
    ema = _delegate("ema")
    _step_draws = _delegate("draws")  # (step, shape) -> (t_a, t_b, noise) of this rank

    def request_stop(self, reason: str) -> None:
        """Ask ``fit`` to stop after the current step (then validate and save as at the end).

        Under DDP every rank must make the same request at the same step.

        Args:
            reason: Why (reported as ``stop_reason`` in the result of ``fit``).
        """
        self.stop_reason = str(reason)

    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    @property
    def eval_model(self) -> nn.Module:
        """The model used for validation and segmentation (the EMA copy if ``eval_ema``)."""
        if self.config.eval_ema and self.ema is not None:
            return self.ema.module
        return self.model

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Run one iteration at the current step and count it (see :meth:`DARLStep.__call__`).

        Returns:
            The loss terms as floats (``loss_g``, ``loss_diff``, ..., ``loss_da``).
        """
        losses = self.update(batch, self.step)
        self.step += 1
        return losses

    # ------------------------------------------------------------------ validation
    def validate(self, val_data: Dataset | DataLoader, *, max_images: int | None = None) -> dict[str, Any]:
        """Segment the test split and compute IoU / Dice / precision (mean and std over images).

        Args:
            val_data: Items ``{"image": (1, H, W) in [-1, 1], "mask": (1, H, W) in {0, 1}, ...}``
                (a Dataset, or a DataLoader whose batches are such dicts).
            max_images: Use at most this many images (default ``config.max_val_images``).

        Returns:
            ``{"step": int, "metrics": {name: {"mean", "std", "n"}}, "examples": [...]}`` where
            ``examples`` holds up to ``config.figure_rows`` (image, prediction, truth) triples.
        """
        cfg = self.config
        out = run_validation(
            self.eval_model,
            val_data,
            segment=lambda model, image: segment_image(model, image, image_size=cfg.image_size, amp=self.amp),
            to_device=self.update.to_device,
            threshold=cfg.val_threshold,
            max_images=cfg.max_val_images if max_images is None else max_images,
            figure_rows=cfg.figure_rows,
        )
        return {"step": self.step, **out}

    def _validate_and_log(self, val_data: Dataset | DataLoader, start: float) -> dict[str, Any]:
        result = self.validate(val_data)
        record, improved = self.validation.add(self.step, result["metrics"], time.perf_counter() - start)
        if self.monitor is not None:
            status = self.monitor.check(record, warn=self.is_main)  # adds record["collapse_warning"]
            if status.collapsed and self.config.collapse_restore:
                restored = restore_best(self)
                if restored is not None:
                    record["restored_from"] = restored
        self.log.validation(record)
        if improved:
            self.checkpoints.save("best")
        if self.is_main and self.files is not None:
            save_figure(result["examples"], self.update.last_synth, self.files.figure)
        self._emit("on_validation_end", record, improved)
        return record

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run (plain data and tensors only).

        Returns:
            The checkpoint dict written by :meth:`save`.
        """
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "config": self.config.to_dict(),
            **self.update.state_dict(),  # with "model_config" (DARL.config)
            "discriminator_config": _config_or_none(unwrap(self.update.disc_mask)),
            "rng": get_rng_state(),
            "best_dice": float(self.validation.best_dice),
            "best_step": int(self.validation.best_step),
            "monitor": self.monitor.state_dict() if self.monitor is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any], *, strict_config: bool = True) -> None:
        """Restore a run from a checkpoint dict.

        Changed settings are applied or refused as :mod:`~darlkit.training.resume` says.

        Args:
            state: A dict from :meth:`state_dict` / :func:`load_checkpoint`.
            strict_config: Refuse a checkpoint whose fixed settings differ from this trainer's
                configuration (``False``: load whatever matches, apply nothing).

        Raises:
            ValueError: If the checkpoint is not a darlkit training checkpoint, a fixed setting
                differs, or its optimisers, schedulers or EMA do not match the trainer's.
        """
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a darlkit training checkpoint (format {state.get('format')!r})")
        changes = check_resume_changes(state["config"], self.config) if strict_config else {}
        current = ModelConfig.of_networks(unwrap(self.model), unwrap(self.disc_mask))
        if strict_config and current is not None:
            check_model_changes(ModelConfig.from_checkpoint(state), current)
        self.update.load_state_dict(state)
        apply_optimizer_settings(changes, self.update.opt_g, self.update.opt_d,
                                 schedulers=(self.update.sched_g, self.update.sched_d))
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.validation.best_dice = float(state.get("best_dice", -float("inf")))
        self.validation.best_step = int(state.get("best_step", -1))
        if self.monitor is not None and state.get("monitor") is not None:
            self.monitor.load_state_dict(state["monitor"])

    def save(self, path: str | os.PathLike[str]) -> Path | None:
        """Write the checkpoint atomically (rank 0 only; other ranks return ``None``).

        Args:
            path: Destination ``.pt`` file.

        Returns:
            The written path, or ``None`` on ranks other than 0.
        """
        if not self.is_main:
            return None
        return save_checkpoint(self.state_dict(), path)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Resume from a checkpoint file (see :meth:`load_state_dict`).

        Args:
            path: A ``last.pt``/``best.pt`` written by :meth:`save`.
        """
        self.load_state_dict(load_checkpoint(path, map_location=self.device))

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        train_data: Dataset | DataLoader,
        steps: int | None = None,
        val_data: Dataset | DataLoader | None = None,
        *,
        resume: str | os.PathLike[str] | bool | None = None,
        time_limit: float | None = None,
        check_files: bool = True,
    ) -> dict[str, Any]:
        """Train until ``steps`` total iterations (counting those of a resumed run).

        XCAD-layout datasets are checked file by file before step 1 (``check_files``). After each step: the losses go to ``train_log.jsonl`` every ``config.log_every`` steps,
        the callbacks' ``on_step_end`` runs, then validation every ``config.val_every`` steps
        and ``last.pt`` every ``config.ckpt_every`` steps. At the end (or on an early stop)
        ``last.pt`` is written, then the run is validated once more unless it just was. Signals,
        NaN losses, resumed logs: see :class:`~darlkit.training.RunGuard`.

        Args:
            train_data: A Dataset of ``{"angiogram", "background", "mask"}`` items, each
                (1, S, S) in [-1, 1] with ``S = config.image_size``, or a DataLoader over such a
                dataset (its dataset and ``num_workers`` are used; batches of
                ``config.batch_size`` are drawn by :class:`StepSampler` so that the order is
                resumable). A dataset with ``set_epoch(e)`` is told the epoch.
            steps: Total number of iterations (default: ``config.epochs`` epochs).
            val_data: Test items ``{"image", "mask"}`` for validation every
                ``config.val_every`` steps and at the end (``None``: no validation).
            resume: A checkpoint path to continue from, or ``True`` for ``out_dir/last.pt``.
            time_limit: Stop early (then validate and save as at the end) once this many seconds
                of this call have passed; ``None``: no limit. Under DDP rank 0's clock decides.
            check_files: Run :func:`~darlkit.training.check_training_datasets` first.

        Returns:
            ``{"step", "best_dice", "best_step", "history", "last_loss", "last_checkpoint",
            "best_checkpoint", "figure", "seconds", "stopped_early", "stop_reason"}``.

        Raises:
            ValueError: If ``steps`` is negative or the data are unusable (``DatasetCheckError``
                lists every bad file; ``NonFiniteLossError``: a loss became NaN/Inf).
            TrainingInterrupted: On SIGINT/SIGTERM, after ``last.pt`` was written.
        """
        cfg = self.config
        dataset, num_workers = dataset_of(train_data, cfg.num_workers)
        if resume:
            if resume is True:
                if self.out_dir is None:
                    raise ValueError("resume=True needs the trainer's out_dir")
                resume = self.out_dir / "last.pt"
            self.load(resume)
        guard = RunGuard(self, resumed=bool(resume), datasets=(dataset, val_data) if check_files else None)
        order = StepSampler(len(dataset), cfg.batch_size, cfg.seed, 0, 0, self.rank, self.world_size)
        if steps is None:
            steps = cfg.epochs * order.steps_per_epoch
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative int, got {steps!r}")
        if time_limit is not None and not time_limit > 0:
            raise ValueError(f"time_limit must be a positive number of seconds or None, got {time_limit!r}")
        batches = step_batches(dataset, order.with_range(self.step, steps), num_workers=num_workers)
        if self.is_main and self.files is not None:  # config.json: the training settings + the networks'
            networks = ModelConfig.of_networks(unwrap(self.model), unwrap(self.disc_mask))
            self.files.prepare({**cfg.to_dict(), **({"model_config": networks.to_dict()} if networks else {})})
        start = time.perf_counter()
        self.stop_reason = None
        self._emit("on_fit_start", steps)
        last: dict[str, float] = {}
        try:
            with guard.signals():
                for batch in batches:
                    last, skipped = guard.step(batch)
                    self._after_step(last, start, steps, val_data, log=not skipped)
                    guard.poll()
                    if self.stop_reason is None and time_limit is not None and self._out_of_time(start, time_limit):
                        if self.step < steps:
                            self.request_stop("time_limit")
                    if self.stop_reason is not None:
                        break
                batches.close()
                guard.finish(lambda: self._validate_and_log(val_data, start), val_data is not None)
        except BaseException as exc:
            self._emit("on_exception", exc)
            raise
        finally:
            batches.close()
        files = self.files
        result = {
            "step": self.step,
            "best_dice": self.best_dice,
            "best_step": self.best_step,
            "history": self.history,
            "last_loss": last,
            "last_checkpoint": str(files.last) if files else None,
            "best_checkpoint": str(files.best) if files and files.best.exists() else None,
            "figure": str(files.figure) if files and files.figure.exists() else None,
            "seconds": time.perf_counter() - start,
            "stopped_early": self.step < steps,
            "stop_reason": self.stop_reason if self.step < steps else None,
        }
        self._emit("on_fit_end", result)
        return result

    def _after_step(self, last: dict[str, float], start: float, steps: int, val_data, log: bool = True) -> None:
        """Logs, callbacks, periodic validation and checkpoint after one step."""
        cfg = self.config
        if log and cfg.log_every and self.step % cfg.log_every == 0:
            self.log.train({"step": self.step, "time": time.perf_counter() - start, **last})
        self._emit("on_step_end", last)
        if self.stop_reason is not None:
            return
        if val_data is not None and cfg.val_every and self.step % cfg.val_every == 0 and self.step < steps:
            self._validate_and_log(val_data, start)
        if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step < steps:
            self.checkpoints.save("last")

    def _out_of_time(self, start: float, limit: float) -> bool:
        return broadcast_flag(time.perf_counter() - start > limit, self.device, self.distributed)
