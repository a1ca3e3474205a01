"""The safety rules of :meth:`DARLTrainer.fit <darlkit.training.DARLTrainer.fit>`.

:class:`RunGuard` prepares the run folder (on resume the logs are cut back to the checkpoint's
step, :func:`~darlkit.training.truncate_logs`; temporary files of killed saves are removed),
runs each step, writes ``last.pt`` before the final validation (which may fail) and applies two
stop policies:

- SIGINT / SIGTERM (:mod:`~darlkit.training.signals`): the first signal lets the current step
  finish; ``fit`` then saves ``last.pt`` and raises
  :class:`~darlkit.training.signals.TrainingInterrupted`.
- NaN/Inf losses (:mod:`~darlkit.training.nonfinite`): a step whose loss is not finite applies
  nothing to the weights; up to ``TrainConfig.skip_nonfinite`` such steps in a row are skipped
  (logged with ``"skipped": true``), the next one raises
  :class:`~darlkit.training.nonfinite.NonFiniteLossError` ("loss became non-finite at step
  k"). An existing ``last.pt`` is kept as the last good checkpoint; without one, the state
  before the failing step is saved when its weights are finite.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from darlkit.training.checkpoint import load_checkpoint, remove_stale_temp_files
from darlkit.training.distributed import broadcast_flag
from darlkit.training.nonfinite import NonFiniteLoss, NonFiniteLossError
from darlkit.training.preflight import check_training_datasets
from darlkit.training.run_folder import truncate_logs
from darlkit.training.signals import TrainingInterrupted, signal_name, stop_on_signals
from darlkit.training.step import LOSS_TERMS

if TYPE_CHECKING:  # pragma: no cover
    from darlkit.training.trainer import DARLTrainer

__all__ = ["RunGuard", "restore_best"]


class RunGuard:
    """Signal and non-finite-loss handling around a trainer's steps.

    Args:
        trainer: The trainer whose ``fit`` loop this guards (after any checkpoint was loaded).
        resumed: ``fit`` continues a checkpoint: cut the logs back to ``trainer.step``.
        datasets: ``(train_set, val_data)`` to check file by file first
            (:func:`~darlkit.training.check_training_datasets`); ``None``: no check.

    Raises:
        DatasetCheckError: Listing every bad file of ``datasets``.

    Attributes:
        signum: The signal received (``None``: none).
        skipped_in_a_row: Consecutive steps skipped for a non-finite loss.
    """

    def __init__(
        self, trainer: DARLTrainer, *, resumed: bool = False, datasets: tuple[Any, Any] | None = None
    ) -> None:
        if datasets is not None:
            check_training_datasets(*datasets)
        self.trainer = trainer
        self.signum: int | None = None
        self.skipped_in_a_row = 0
        if trainer.is_main and trainer.files is not None:
            if resumed:
                truncate_logs(trainer.files.root, trainer.step)
            for path in (trainer.files.last, trainer.files.best):
                remove_stale_temp_files(path)

    def finish(self, validate: Callable[[], Any], has_validation: bool) -> None:
        """End of ``fit``: write ``last.pt``, stop on a signal, else validate once more.

        ``last.pt`` is written first, so a final validation that fails loses nothing; it is
        written again if the validation found a new best (the checkpoint records it).

        Args:
            validate: Runs and logs a validation.
            has_validation: Whether ``fit`` got validation data.

        Raises:
            TrainingInterrupted: If a signal came (after ``last.pt`` was written).
        """
        t = self.trainer
        t.checkpoints.save("last")
        interrupted = self.interrupted()
        if interrupted is not None:
            raise interrupted
        if has_validation and t.validation.last_step != t.step:
            best_before = t.validation.best_step
            validate()
            if t.validation.best_step != best_before:
                t.checkpoints.save("last")

    # ------------------------------------------------------------------ signals
    def signals(self) -> contextlib.AbstractContextManager:
        """Context in which the first SIGINT/SIGTERM is recorded instead of raising."""
        return stop_on_signals(self._on_signal)

    def _on_signal(self, signum: int) -> None:
        self.signum = signum
        if self.trainer.is_main:
            print(f"darlkit: {signal_name(signum)} received: finishing step {self.trainer.step + 1} and saving "
                  "last.pt (send it again to stop without saving)", file=sys.stderr, flush=True)

    def poll(self) -> None:
        """After a step: request the trainer's stop if a signal came (under DDP: if rank 0 got one)."""
        t = self.trainer
        if t.distributed and broadcast_flag(self.signum is not None, t.device, True):
            self.signum = self.signum or int(signal.SIGTERM)
        if self.signum is not None:
            t.request_stop(signal_name(self.signum))

    def interrupted(self) -> TrainingInterrupted | None:
        """The exception to raise once ``last.pt`` is saved (``None`` without a signal)."""
        if self.signum is None:
            return None
        files = self.trainer.files
        where = f"; saved {files.last} (continue with --resume)" if files is not None else ""
        return TrainingInterrupted(self.signum, f"{signal_name(self.signum)} at step {self.trainer.step}{where}")

    # ------------------------------------------------------------------ non-finite losses
    def step(self, batch: dict[str, Any]) -> tuple[dict[str, float], bool]:
        """Run one training step; a non-finite loss is skipped or stops the run.

        Args:
            batch: The step's batch.

        Returns:
            ``(losses, skipped)``.

        Raises:
            NonFiniteLossError: When more than ``skip_nonfinite`` steps in a row were non-finite.
        """
        try:
            losses = self.trainer.train_step(batch)
        except NonFiniteLoss as bad:
            self.skipped_in_a_row += 1
            return self._skip_or_stop(bad), True
        self.skipped_in_a_row = 0
        return losses, False

    def _skip_or_stop(self, bad: NonFiniteLoss) -> dict[str, float]:
        t = self.trainer
        if self.skipped_in_a_row > t.config.skip_nonfinite:
            raise NonFiniteLossError(
                f"loss became non-finite at step {t.step + 1} ({bad}){self._keep_checkpoint(bad)}; "
                + "lower the learning rate (--lr)"
                + ("" if t.config.skip_nonfinite else " or skip such steps (--skip-nonfinite N / TrainConfig.skip_nonfinite)")
            ) from None
        t.step += 1  # the step is consumed (its batch and draws) but nothing was applied
        t.log.train({"step": t.step, "skipped": True, "phase": bad.phase, **bad.losses})
        return {name: bad.losses.get(name, float("nan")) for name in LOSS_TERMS}

    def _keep_checkpoint(self, bad: NonFiniteLoss) -> str:
        t = self.trainer
        if t.files is None:
            return ""
        if t.files.last.exists():
            return f"; kept the last good checkpoint {t.files.last}"
        weights = (p for m in (t.model, t.disc_mask, t.disc_image) for p in m.parameters())
        if bad.phase == "generator" and bad.detail is None and all(bool(torch.isfinite(p).all()) for p in weights):
            return f"; saved the state before it (step {t.step}) to {t.checkpoints.save('last')}"
        return ""


def restore_best(trainer: DARLTrainer) -> int | None:
    """Load ``best.pt``'s networks, optimisers, schedulers, EMA and pools into ``trainer``.

    What ``TrainConfig.collapse_restore`` does after a detected collapse. The step count, the
    validation bests, the data order and the random draws are kept, so the run goes on from the
    best weights with draws it has not seen there; the collapse streak starts again.

    Args:
        trainer: The trainer.

    Returns:
        The step of ``best.pt``, or ``None`` when there is no usable ``best.pt`` (no run folder,
        none written yet, or its validation Dice below ``collapse_min_dice``).
    """
    best = trainer.checkpoints.path("best")
    if best is None or trainer.validation.best_dice < trainer.config.collapse_min_dice:
        return None
    if trainer.distributed:
        torch.distributed.barrier()  # rank 0 may still be writing best.pt
    if not best.exists():
        return None
    state = load_checkpoint(best, map_location=trainer.device)
    trainer.update.load_state_dict(state)
    if trainer.monitor is not None:
        trainer.monitor.reset()
    return int(state["step"])
