"""Optimisers and LR schedulers of the trainer: injected factories or instances, paper defaults.

An optimiser argument of :class:`~darlkit.training.DARLTrainer` is either a built
``torch.optim.Optimizer`` over exactly the parameters it steps, or a factory
``params -> Optimizer`` (e.g. ``functools.partial(torch.optim.SGD, lr=0.05)``); ``None`` gives the
paper's Adam. A scheduler argument is a factory ``optimizer -> LRScheduler`` or ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
from torch import nn

__all__ = [
    "OptimizerSpec", "SchedulerSpec", "LR_DECAYS", "WarmupDecay", "paper_adam", "build_optimizer", "build_scheduler",
    "config_scheduler",
]

LR_DECAYS: tuple[str, ...] = ("none", "linear", "cosine")
"""Accepted values of ``TrainConfig.lr_decay``."""

OptimizerSpec = Union[torch.optim.Optimizer, Callable[[list[nn.Parameter]], torch.optim.Optimizer], None]
"""An optimiser instance, a factory ``params -> Optimizer``, or ``None`` (the default)."""

SchedulerSpec = Union[Callable[[torch.optim.Optimizer], "torch.optim.lr_scheduler.LRScheduler"], None]
"""A factory ``optimizer -> LRScheduler`` (stepped once per training step), or ``None``."""


def paper_adam(lr: float, betas: Sequence[float]) -> Callable[[list[nn.Parameter]], torch.optim.Optimizer]:
    """The paper's optimiser: Adam with the given learning rate and betas (SPEC: 5e-6, (0.5, 0.999)).

    The update is Adam's; its implementation is PyTorch's ``foreach`` one (all parameters of a
    group updated by multi-tensor ops instead of a Python loop of per-tensor ops). It gives
    bit-identical results to the per-tensor loop on this CPU (``tests/test_step_speed.py``), so
    runs measured before the change (the seed studies) are reproduced exactly. PyTorch's
    ``fused=True`` kernel was not taken: it rounds differently, and in a GAN step that rounding is
    amplified (parameters with pure-noise gradients take +-lr Adam steps of either sign), so the
    losses of 4 tiny-preset steps moved by up to 0.5 %, for an optimiser that is about 2 % of a
    paper-size step (profile, ``benchmarks/results/train_step_cpu_2026-12-02.md``). A
    checkpoint's optimiser state loads into either.

    Args:
        lr: Learning rate (> 0).
        betas: Adam's ``(beta1, beta2)``.

    Returns:
        A factory ``params -> torch.optim.Adam``.
    """

    def factory(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(list(params), lr=lr, betas=tuple(betas), foreach=True)

    return factory


def build_optimizer(
    spec: OptimizerSpec,
    params: list[nn.Parameter],
    *,
    default: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
    name: str,
) -> torch.optim.Optimizer:
    """Turn an optimiser argument into an optimiser over ``params``.

    Args:
        spec: An optimiser, a factory ``params -> Optimizer``, or ``None`` (use ``default``).
        params: The parameters the optimiser must step.
        default: Factory used when ``spec`` is ``None``.
        name: Argument name for error messages (e.g. ``"optimizer_g"``).

    Returns:
        The optimiser.

    Raises:
        TypeError: If ``spec`` (or what the factory returns) is not an optimiser.
        ValueError: If an optimiser instance does not step exactly ``params``.
    """
    if spec is None:
        spec = default
    if isinstance(spec, torch.optim.Optimizer):
        opt = spec
    elif callable(spec):
        opt = spec(list(params))
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"{name} factory must return a torch.optim.Optimizer, got {type(opt).__name__}")
    else:
        raise TypeError(f"{name} must be a torch.optim.Optimizer, a factory params -> Optimizer or None, "
                        f"got {type(spec).__name__}")
    got = {id(p) for group in opt.param_groups for p in group["params"]}
    want = {id(p) for p in params}
    if got != want:
        raise ValueError(
            f"{name} steps {len(got)} parameter tensors but the trainer needs exactly its {len(want)} "
            f"({'missing some' if want - got else 'has foreign ones'})"
        )
    return opt


def build_scheduler(spec: SchedulerSpec, optimizer: torch.optim.Optimizer, *, name: str) -> Any:
    """Turn a scheduler argument into an LR scheduler of ``optimizer`` (or ``None``).

    Args:
        spec: A factory ``optimizer -> LRScheduler``, or ``None``.
        optimizer: The optimiser to schedule.
        name: Argument name for error messages (e.g. ``"scheduler_g"``).

    Returns:
        The scheduler (an object with ``step``, ``state_dict`` and ``load_state_dict``), or ``None``.

    Raises:
        TypeError: If ``spec`` is not callable or returns something without ``step`` and
            ``state_dict``.
    """
    if spec is None:
        return None
    if not callable(spec):
        raise TypeError(f"{name} must be a factory optimizer -> LRScheduler or None, got {type(spec).__name__}")
    sched = spec(optimizer)
    if not all(hasattr(sched, a) for a in ("step", "state_dict", "load_state_dict")):
        raise TypeError(f"{name} factory must return an LR scheduler, got {type(sched).__name__}")
    return sched


class WarmupDecay:
    """LR multiplier of step ``k`` (a ``torch.optim.lr_scheduler.LambdaLR`` lambda): linear warmup, then decay.

    ``k`` counts optimiser steps done (the scheduler's ``last_epoch``). With ``W`` warmup steps the
    factor is ``(k + 1) / (W + 1)`` for ``k < W`` (so the first update already moves, at
    ``1 / (W + 1)`` of the rate); after the warmup it decays from 1 at ``k = W`` to ``floor`` at
    ``k = total`` (``"linear"``: a straight line; ``"cosine"``: ``floor + (1 - floor) * (1 +
    cos(pi * p)) / 2`` with ``p = (k - W) / (total - W)``) and stays at ``floor`` after ``total``.
    ``decay="none"`` or ``total <= W`` keeps 1 after the warmup. A plain object (not a closure),
    so ``LambdaLR.state_dict`` stores its settings with the checkpoint.

    Args:
        warmup: Warmup steps ``W`` (>= 0).
        decay: ``"none"``, ``"linear"`` or ``"cosine"``.
        total: Step at which the decay reaches ``floor`` (0: no decay).
        floor: Final multiplier in [0, 1].

    Raises:
        ValueError: On a bad argument, naming it.
    """

    def __init__(self, warmup: int, decay: str, total: int, floor: float) -> None:
        for name, v in (("warmup", warmup), ("total", total)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")
        if decay not in LR_DECAYS:
            raise ValueError(f"decay must be one of {LR_DECAYS}, got {decay!r}")
        if not 0.0 <= float(floor) <= 1.0:
            raise ValueError(f"floor must be in [0, 1], got {floor!r}")
        self.warmup, self.decay, self.total, self.floor = int(warmup), decay, int(total), float(floor)

    def __call__(self, k: int) -> float:
        """The multiplier (in ``[min(floor, 1/(W+1)), 1]``) of the learning rate after ``k`` steps."""
        if k < self.warmup:
            return (k + 1) / (self.warmup + 1)
        if self.decay == "none" or self.total <= self.warmup:
            return 1.0
        p = min(1.0, (k - self.warmup) / (self.total - self.warmup))
        shape = 1.0 - p if self.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * p))
        return self.floor + (1.0 - self.floor) * shape


def config_scheduler(config: Any) -> SchedulerSpec:
    """The scheduler factory a :class:`~darlkit.training.TrainConfig` asks for (``None``: constant LR).

    ``lr_warmup_steps``, ``lr_decay``, ``lr_decay_steps`` and ``lr_min_ratio`` become a
    ``LambdaLR`` with :class:`WarmupDecay` (the same curve for the generator and the
    discriminators). ``lr_decay_steps=0`` decays over nothing: ``train_on_folder`` (``darlkit
    train``, the quickstart) sets it to the run's step count first.

    Args:
        config: The run's configuration.

    Returns:
        A factory ``optimizer -> LambdaLR``, or ``None`` when there is no warmup and no decay.
    """
    if config.lr_warmup_steps == 0 and (config.lr_decay == "none" or config.lr_decay_steps == 0):
        return None
    curve = WarmupDecay(config.lr_warmup_steps, config.lr_decay, config.lr_decay_steps, config.lr_min_ratio)

    def factory(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, curve)

    return factory
