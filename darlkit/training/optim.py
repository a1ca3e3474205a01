"""Optimisers and LR schedulers of the trainer: injected factories or instances, paper defaults.

An optimiser argument of :class:`~darlkit.training.DARLTrainer` is either a built
``torch.optim.Optimizer`` over exactly the parameters it steps, or a factory
``params -> Optimizer`` (e.g. ``functools.partial(torch.optim.SGD, lr=0.05)``); ``None`` gives the
paper's Adam. A scheduler argument is a factory ``optimizer -> LRScheduler`` or ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
from torch import nn

__all__ = ["OptimizerSpec", "SchedulerSpec", "paper_adam", "build_optimizer", "build_scheduler"]

OptimizerSpec = Union[torch.optim.Optimizer, Callable[[list[nn.Parameter]], torch.optim.Optimizer], None]
"""An optimiser instance, a factory ``params -> Optimizer``, or ``None`` (the default)."""

SchedulerSpec = Union[Callable[[torch.optim.Optimizer], "torch.optim.lr_scheduler.LRScheduler"], None]
"""A factory ``optimizer -> LRScheduler`` (stepped once per training step), or ``None``."""


_FUSED_DEVICES = ("cpu", "cuda", "xpu", "mps")
"""Device types with a fused (one-kernel) Adam in PyTorch."""


def paper_adam(lr: float, betas: Sequence[float]) -> Callable[[list[nn.Parameter]], torch.optim.Optimizer]:
    """The paper's optimiser: Adam with the given learning rate and betas (SPEC: 5e-6, (0.5, 0.999)).

    The update is Adam's; its implementation is PyTorch's fused one (``fused=True``: all
    parameters updated by one multi-tensor kernel instead of a Python loop of per-tensor ops)
    when every parameter is a floating tensor on a device that has it (CPU, CUDA, XPU, MPS), else
    the ``foreach`` (multi-tensor) one. Both compute the same update as the per-tensor loop up to
    float rounding (``tests/test_step_speed.py`` bounds the difference of the losses over several
    steps). A checkpoint's optimiser state loads into either.

    Args:
        lr: Learning rate (> 0).
        betas: Adam's ``(beta1, beta2)``.

    Returns:
        A factory ``params -> torch.optim.Adam``.
    """

    def factory(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        params = list(params)
        fused = bool(params) and all(p.is_floating_point() and p.device.type in _FUSED_DEVICES for p in params)
        if fused:
            return torch.optim.Adam(params, lr=lr, betas=tuple(betas), fused=True)
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), foreach=True)

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
