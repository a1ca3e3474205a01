"""Exponential moving average of the model weights (``torch.optim.swa_utils``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["make_ema", "update_ema"]


def make_ema(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """An EMA copy of ``model`` with the given decay (``None``: no EMA).

    Args:
        model: The model whose parameters are averaged.
        decay: EMA decay in (0, 1), or ``None``.

    Returns:
        The ``AveragedModel`` (parameters averaged, buffers not), or ``None``.
    """
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(decay)), use_buffers=False)


@torch.no_grad()
def update_ema(ema: AveragedModel, model: nn.Module) -> None:
    """Average ``model``'s parameters into ``ema`` and copy its buffers (spectral-norm vectors).

    Args:
        ema: The EMA from :func:`make_ema`.
        model: The live model.
    """
    ema.update_parameters(model)
    for b_ema, b in zip(ema.module.buffers(), model.buffers()):
        b_ema.copy_(b)

