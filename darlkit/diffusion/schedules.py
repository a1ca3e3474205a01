"""Variance (beta) schedules of the forward diffusion process.

All schedules are computed in float64 and returned as a float64 :class:`numpy.ndarray` of
shape (T,). :class:`darlkit.diffusion.GaussianDiffusion` derives its buffers from them in
float64 and stores them as float32, the way DARL's released code does.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from darlkit._validation import check_int

__all__ = ["BETA_SCHEDULES", "RAMP_SCHEDULES", "make_beta_schedule"]

BETA_SCHEDULES: tuple[str, ...] = (
    "linear",
    "quad",
    "cosine",
    "warmup10",
    "warmup50",
    "const",
    "jsd",
    "sigmoid",
    "scaled_linear",
)
"""Names accepted by ``make_beta_schedule`` and ``GaussianDiffusion(schedule=...)``, each documented there."""

RAMP_SCHEDULES: tuple[str, ...] = ("linear", "quad", "scaled_linear", "warmup10", "warmup50", "sigmoid")
"""Schedules that ramp from ``linear_start`` up to ``linear_end`` (which must not exceed it)."""

COSINE_MAX_BETA = 0.999
"""Upper clip of the cosine schedule's betas (Nichol & Dhariwal, 2021)."""


def _check_unit_interval(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not (0.0 < value <= 1.0):
        raise ValueError(f"{name} must lie in (0, 1], got {value}")
    return value


def _linspace64(start: float, end: float, steps: int) -> np.ndarray:
    # The DDPM/SR3 code family builds its schedules with torch.linspace in float64.
    return torch.linspace(start, end, steps, dtype=torch.float64).numpy()


def _warmup(linear_start: float, linear_end: float, timesteps: int, frac: float) -> np.ndarray:
    betas = np.full(timesteps, linear_end, dtype=np.float64)
    warmup_time = int(timesteps * frac)
    betas[:warmup_time] = _linspace64(linear_start, linear_end, warmup_time)
    return betas


def make_beta_schedule(
    name: str,
    timesteps: int,
    linear_start: float = 1e-4,
    linear_end: float = 2e-2,
    cosine_s: float = 8e-3,
) -> np.ndarray:
    """Build a beta schedule of the forward process q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I).

    The schedules (T = ``timesteps``, index t = 0..T-1):

    - ``"linear"``: ``linspace(linear_start, linear_end, T)`` (DARL: 1e-6 to 1e-2, T = 2000).
    - ``"quad"``: ``linspace(sqrt(linear_start), sqrt(linear_end), T) ** 2``.
    - ``"scaled_linear"``: the name the diffusers library uses for the same formula as
      ``"quad"``; the two names give identical arrays.
    - ``"cosine"``: Nichol & Dhariwal (2021) with offset ``cosine_s``:
      ``f(u) = cos((u / T + s) / (1 + s) * pi / 2) ** 2`` for u = 0..T,
      ``beta_t = min(1 - f(t + 1) / f(t), 0.999)``.
    - ``"warmup10"`` / ``"warmup50"``: the first ``int(0.1 T)`` / ``int(0.5 T)`` steps ramp
      linearly from ``linear_start`` to ``linear_end``; every later step is ``linear_end``.
    - ``"const"``: ``linear_end`` at every step.
    - ``"jsd"``: ``1 / T, 1 / (T - 1), ..., 1 / 2, 1``. Its last beta is exactly 1, so
      ``alphas_cumprod`` reaches exactly 0 at the final step.
    - ``"sigmoid"``: ``sigmoid(linspace(-6, 6, T)) * (linear_end - linear_start) + linear_start``.

    Args:
        name: One of ``BETA_SCHEDULES``.
        timesteps: Number of diffusion steps T >= 1.
        linear_start: First beta of the linear-type schedules, in (0, 1].
        linear_end: Last beta of the linear-type schedules (and the constant of ``"const"``
            and the warmup plateau), in (0, 1].
        cosine_s: Offset s >= 0 of the cosine schedule.

    Returns:
        float64 numpy array of shape (T,) with every value in (0, 1].

    Raises:
        ValueError: If ``name`` is unknown (the message lists the accepted names), or
            ``timesteps < 1``, or a parameter is outside its range, or ``linear_start >
            linear_end`` for a schedule of ``RAMP_SCHEDULES``.
        TypeError: If ``timesteps`` is not an int or a parameter is not a real number.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in BETA_SCHEDULES:
        raise ValueError(f"unknown beta schedule name {name!r}; expected one of {list(BETA_SCHEDULES)}")
    timesteps = check_int("timesteps", timesteps)
    linear_start = _check_unit_interval(linear_start, "linear_start")
    linear_end = _check_unit_interval(linear_end, "linear_end")
    if isinstance(cosine_s, bool) or not isinstance(cosine_s, numbers.Real):
        raise TypeError(f"cosine_s must be a real number, got {type(cosine_s).__name__}")
    cosine_s = float(cosine_s)
    if not (math.isfinite(cosine_s) and cosine_s >= 0.0):
        raise ValueError(f"cosine_s must be a finite number >= 0, got {cosine_s}")
    if name in RAMP_SCHEDULES and linear_start > linear_end:
        raise ValueError(
            f"linear_start must be <= linear_end for the {name!r} schedule (betas grow from start to "
            f"end), got linear_start={linear_start} > linear_end={linear_end}"
        )

    if name == "linear":
        betas = _linspace64(linear_start, linear_end, timesteps)
    elif name in ("quad", "scaled_linear"):
        betas = _linspace64(linear_start**0.5, linear_end**0.5, timesteps) ** 2
    elif name == "warmup10":
        betas = _warmup(linear_start, linear_end, timesteps, 0.1)
    elif name == "warmup50":
        betas = _warmup(linear_start, linear_end, timesteps, 0.5)
    elif name == "const":
        betas = np.full(timesteps, linear_end, dtype=np.float64)
    elif name == "jsd":
        betas = 1.0 / _linspace64(float(timesteps), 1.0, timesteps)
    elif name == "cosine":
        u = np.arange(timesteps + 1, dtype=np.float64) / timesteps + cosine_s
        f = np.cos(u / (1.0 + cosine_s) * (math.pi / 2.0)) ** 2
        f = f / f[0]
        betas = np.minimum(1.0 - f[1:] / f[:-1], COSINE_MAX_BETA)
    else:  # "sigmoid"
        x = _linspace64(-6.0, 6.0, timesteps)
        betas = 1.0 / (1.0 + np.exp(-x)) * (linear_end - linear_start) + linear_start
    return np.ascontiguousarray(betas, dtype=np.float64)


POSTERIOR_LOG_VARIANCE_FLOOR = 1e-20
"""Lower clip of the posterior variance before its log (the variance is 0 at t = 0)."""

def _schedule_arrays(betas: np.ndarray) -> dict[str, np.ndarray]:
    """Every schedule quantity of ``GaussianDiffusion`` in float64.

    Args:
        betas: float64 array of shape (T,) with values in (0, 1].

    Returns:
        A dict from each name of ``SCHEDULE_BUFFERS`` to a float64 array of shape (T,).
    """
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        # Only a schedule with a beta of exactly 1 (e.g. "jsd" at its last step) reaches
        # alphas_cumprod == 0, where the reciprocals are +inf by construction.
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        arrays = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
            "log_one_minus_alphas_cumprod": np.log(1.0 - alphas_cumprod),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1.0),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": np.log(np.maximum(posterior_variance, POSTERIOR_LOG_VARIANCE_FLOOR)),
            "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
        }
    return arrays


def _as_betas(betas: object) -> np.ndarray:
    """Validate explicit beta values and return them as a contiguous float64 array.

    Args:
        betas: A 1-D array, tensor or sequence of floats, each in (0, 1].

    Returns:
        float64 array of shape (T,).

    Raises:
        TypeError: If ``betas`` is not convertible to floats.
        ValueError: If it is not a non-empty 1-D array of finite values in (0, 1].
    """
    if isinstance(betas, torch.Tensor):
        arr = betas.detach().cpu().to(torch.float64).numpy()
    else:
        try:
            arr = np.asarray(betas, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"betas must be a 1-D array of floats, got {type(betas).__name__}") from exc
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError(f"betas must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("betas must be finite (found NaN or inf)")
    if np.any(arr <= 0.0) or np.any(arr > 1.0):
        raise ValueError(f"betas must lie in (0, 1], got min {arr.min()} and max {arr.max()}")
    return np.ascontiguousarray(arr, dtype=np.float64)
