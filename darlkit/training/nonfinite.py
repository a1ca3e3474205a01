"""Detecting a NaN or Inf loss before it reaches the weights.

:class:`~darlkit.training.DARLStep` checks each player's loss with :func:`check_finite_losses`
before its optimiser step, so a non-finite loss never updates the weights. The trainer then
skips the step (``TrainConfig.skip_nonfinite`` consecutive times at most) or stops with a
:class:`NonFiniteLossError` ("loss became non-finite at step k"), keeping the last good
checkpoint.
"""

from __future__ import annotations

import math

import torch

__all__ = ["NonFiniteLoss", "NonFiniteLossError", "check_finite_losses", "non_finite_forward"]


class NonFiniteLoss(Exception):
    """A loss of the current step is NaN or Inf (raised before the optimiser step of ``phase``).

    Attributes:
        phase: ``"generator"`` (nothing of the step was applied) or ``"discriminator"`` (the
            generator step was applied, the discriminator step was not).
        losses: The loss terms of the phase, as floats (empty when the forward pass itself
            produced NaN/Inf activations, see ``detail``).
        detail: The error of the forward pass that met non-finite activations, if any.
    """

    def __init__(self, phase: str, losses: dict[str, float], detail: str | None = None) -> None:
        self.phase = phase
        self.losses = dict(losses)
        self.detail = detail
        if detail is not None:
            text = f"non-finite activations in the {phase} forward pass ({detail})"
        else:
            text = f"non-finite {phase} loss ({', '.join(f'{k}={v}' for k, v in self.losses.items())})"
        super().__init__(text)


def non_finite_forward(phase: str, error: ValueError) -> NonFiniteLoss | None:
    """A :class:`NonFiniteLoss` for a network's NaN/Inf input check failing inside a forward pass.

    Call only when the step's inputs were finite: the NaN/Inf then comes from the weights.

    Args:
        phase: ``"generator"`` or ``"discriminator"``.
        error: The error raised by the forward pass.

    Returns:
        The exception to raise instead, or ``None`` if ``error`` is about something else.
    """
    text = str(error)
    if "NaN" in text or "Inf" in text:
        return NonFiniteLoss(phase, {}, detail=" ".join(text.split()))
    return None


class NonFiniteLossError(ValueError):
    """Training stopped because a loss became NaN or Inf (message names the step)."""


def check_finite_losses(phase: str, *, sync: bool = False, **losses: torch.Tensor) -> None:
    """Raise :class:`NonFiniteLoss` if any of ``losses`` (scalar tensors) is NaN or Inf.

    Args:
        phase: ``"generator"`` or ``"discriminator"``.
        sync: Under ``torch.distributed``: raise on every rank when any rank's loss is not
            finite (one all-reduce), so no rank enters a backward the others skip.
        **losses: Scalar loss tensors by name.

    Raises:
        NonFiniteLoss: If one is not finite (on any rank with ``sync``).
    """
    values = {k: float(v.detach()) for k, v in losses.items()}
    bad = not all(math.isfinite(v) for v in values.values())
    if sync:
        import torch.distributed as dist

        flag = torch.tensor([float(bad)], device=next(iter(losses.values())).device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        bad = bool(flag.item() > 0)
    if bad:
        raise NonFiniteLoss(phase, values)
