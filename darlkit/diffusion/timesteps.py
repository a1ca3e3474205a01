"""Diffusion step indices: the one place where steps are validated and drawn.

Every API that takes a step (``GaussianDiffusion``'s methods, ``DARL.segment`` /
``synthesize`` / ``forward_paths``) checks it with :func:`check_timesteps`, and every draw of
``t_a`` / ``t_b`` (the model's own draws and the trainer's per-step draws) goes through
:func:`sample_timesteps`, so the accepted types, the broadcasting rule and the quoted range are
the same everywhere.
"""

from __future__ import annotations

import numbers

import torch

__all__ = ["STEP_DTYPES", "check_timesteps", "sample_timesteps"]

STEP_DTYPES: tuple[torch.dtype, ...] = (torch.int64, torch.int32)
"""Integer dtypes accepted for step tensors (returned steps are always int64)."""


def _check_bound(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def check_timesteps(
    t: object,
    batch: int,
    upper: int,
    *,
    name: str = "t",
    bound_name: str | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Validate step indices and return them as an int64 tensor of shape (batch,).

    Args:
        t: A python int (numpy integers too; not a bool), used for every image, or an int64 /
            int32 tensor of shape (batch,), or of shape () or (1,) (one step for every image).
        batch: Number of images N >= 1.
        upper: Exclusive upper bound: every step must lie in ``[0, upper)`` (T for ``t`` and
            ``t_b``, ``t_a_max`` for ``t_a``).
        name: Argument name quoted in errors.
        bound_name: Name of ``upper`` quoted in the range error (e.g. ``"t_a_max"``,
            ``"num_timesteps"``); ``None`` quotes the number only.
        device: Device of the result (default: ``t``'s device, or the CPU for an int).

    Returns:
        int64 tensor of shape (batch,) with values in [0, upper).

    Raises:
        TypeError: If ``t`` is neither an int nor an int64/int32 tensor.
        ValueError: If the shape does not match ``batch`` or a value lies outside the range
            (the message quotes ``[0, upper)`` and the offending min/max).
    """
    batch = _check_bound(batch, "batch")
    upper = _check_bound(upper, "upper")
    where = f"[0, {bound_name}={upper})" if bound_name else f"[0, {upper})"
    if isinstance(t, torch.Tensor):
        if t.dtype not in STEP_DTYPES:
            raise TypeError(f"{name} must be an int64 or int32 tensor (integer step indices), got dtype {t.dtype}")
        if t.dim() == 0 or tuple(t.shape) == (1,):
            t = t.reshape(1).expand(batch)
        elif tuple(t.shape) != (batch,):
            raise ValueError(
                f"{name} must have shape ({batch},) (one step per image) or hold a single step, got {tuple(t.shape)}"
            )
        lo, hi = int(t.min()), int(t.max())  # one pass each; steps are tiny
        if lo < 0 or hi >= upper:
            raise ValueError(f"{name} must lie in {where}, got min {lo} and max {hi}")
        return t.to(device=t.device if device is None else device, dtype=torch.int64).contiguous()
    if isinstance(t, bool) or not isinstance(t, numbers.Integral):
        raise TypeError(f"{name} must be a python int or an integer tensor of shape (N,), got {type(t).__name__}")
    if not 0 <= int(t) < upper:
        raise ValueError(f"{name} must lie in {where}, got {int(t)}")
    return torch.full((batch,), int(t), dtype=torch.int64, device=device)


def sample_timesteps(
    batch: int,
    upper: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw steps uniformly from ``{0, ..., upper - 1}`` (``torch.randint``).

    DARL draws ``t_a`` with ``upper = t_a_max`` (200) and ``t_b`` with ``upper = T`` (or the
    configuration's ``t_b_max``).

    Args:
        batch: Number of steps to draw (>= 1).
        upper: Exclusive upper bound (>= 1).
        generator: Optional generator (its device must match ``device``).
        device: Device of the result (default: the generator's, else the CPU).

    Returns:
        int64 tensor of shape (batch,) with values in [0, upper).

    Raises:
        ValueError: If ``batch`` or ``upper`` is not an int >= 1.
    """
    batch = _check_bound(batch, "batch")
    upper = _check_bound(upper, "upper")
    if device is None and generator is not None:
        device = generator.device
    return torch.randint(0, upper, (batch,), generator=generator, device=device, dtype=torch.int64)
