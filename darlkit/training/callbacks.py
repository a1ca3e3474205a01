"""Hooks into :meth:`DARLTrainer.fit <darlkit.training.DARLTrainer.fit>`.

Subclass :class:`Callback`, override the hooks you need and pass instances as
``DARLTrainer(..., callbacks=[...])``. Hooks run on every process, in the order given; a hook
may call ``trainer.request_stop(reason)`` to end ``fit`` after the current step (it then
validates and saves as at the end, like a time limit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from darlkit.training.trainer import DARLTrainer

__all__ = ["Callback", "ProgressBar"]


class Callback:
    """Base class of trainer callbacks; every hook is a no-op by default."""

    def on_fit_start(self, trainer: DARLTrainer, steps: int) -> None:
        """Called once ``fit`` has loaded any resume checkpoint and prepared the run folder.

        Args:
            trainer: The trainer (``trainer.step`` is the first step to run).
            steps: The total number of steps ``fit`` trains to.
        """

    def on_step_end(self, trainer: DARLTrainer, losses: dict[str, float]) -> None:
        """Called after each training step (``trainer.step`` already counts it).

        Args:
            trainer: The trainer.
            losses: The step's loss terms (see :meth:`DARLTrainer.train_step`).
        """

    def on_validation_end(self, trainer: DARLTrainer, record: dict[str, Any], improved: bool) -> None:
        """Called after each validation has been logged (and ``best.pt`` saved if improved).

        Args:
            trainer: The trainer.
            record: The validation record (``{"step", "time", "<metric>_mean", ...}``).
            improved: Whether it is a new best Dice.
        """

    def on_fit_end(self, trainer: DARLTrainer, result: dict[str, Any]) -> None:
        """Called when ``fit`` returns normally, with the dict it returns."""

    def on_exception(self, trainer: DARLTrainer, error: BaseException) -> None:
        """Called when ``fit`` is left by an exception (including ``KeyboardInterrupt``), before it propagates."""


class ProgressBar(Callback):
    """A tqdm bar over the steps of ``fit`` showing the latest loss terms.

    ``DARLTrainer(progress=True)`` adds one on rank 0.
    """

    def __init__(self) -> None:
        self._bar = None

    def on_fit_start(self, trainer: DARLTrainer, steps: int) -> None:  # noqa: D102
        from tqdm.auto import tqdm

        self._bar = tqdm(total=steps, initial=min(trainer.step, steps), desc="train", dynamic_ncols=True)

    def on_step_end(self, trainer: DARLTrainer, losses: dict[str, float]) -> None:  # noqa: D102
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(
                diff=f"{losses['loss_diff']:.3f}", adv=f"{losses['loss_adv']:.3f}",
                cyc=f"{losses['loss_cyc']:.3f}", d=f"{losses['loss_d']:.3f}", refresh=False,
            )

    def on_fit_end(self, trainer: DARLTrainer, result: dict[str, Any]) -> None:  # noqa: D102
        self._close()

    def on_exception(self, trainer: DARLTrainer, error: BaseException) -> None:  # noqa: D102
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
