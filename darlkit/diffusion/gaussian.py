"""Gaussian diffusion (DDPM) forward process, posterior and ancestral sampler.

:class:`GaussianDiffusion` holds the schedule buffers of DARL's released code (same names,
so the authors' checkpoint keys load into it) and the operations DARL needs:
``q_sample`` for the A/B/cycle paths, the epsilon-MSE loss ``L_diff``, and, for
completeness, the DDPM posterior and the reverse sampling loop for any noise-prediction
callable ``model_fn(x_t, t) -> eps``.
"""

from __future__ import annotations

import numbers
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from darlkit.diffusion.schedules import _as_betas, make_beta_schedule, _schedule_arrays
from darlkit.diffusion.timesteps import check_timesteps, sample_timesteps

__all__ = ["GaussianDiffusion", "SCHEDULE_BUFFERS"]

SCHEDULE_BUFFERS: tuple[str, ...] = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
"""Names of the float32 schedule buffers of ``GaussianDiffusion``, in registration order.

They equal the top-level keys of the authors' released generator checkpoint (``<prefix>_G.pth``).
"""

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class GaussianDiffusion(nn.Module):
    """DDPM forward process q(x_t | x_0) and reverse sampler with DARL's default schedule.

    With ``alpha_bar_t = alphas_cumprod[t]`` (the paper's alpha_t),
    ``q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)``. The step index ``t``
    is 0-based: ``t = 0`` is the first (least noisy) step and ``t = T - 1`` the last.

    Buffers (all float32, shape (T,), computed in float64, registered so they follow
    ``.to(device)`` and appear in ``state_dict()`` under the names of ``SCHEDULE_BUFFERS``):
    ``betas``, ``alphas_cumprod``, ``alphas_cumprod_prev`` (1 at t = 0),
    ``sqrt_alphas_cumprod``, ``sqrt_one_minus_alphas_cumprod``,
    ``log_one_minus_alphas_cumprod``, ``sqrt_recip_alphas_cumprod``,
    ``sqrt_recipm1_alphas_cumprod``, ``posterior_variance``,
    ``posterior_log_variance_clipped`` (``log(max(posterior_variance, 1e-20))``),
    ``posterior_mean_coef1``, ``posterior_mean_coef2``.

    The buffers stay float32 when the module (or a parent) is cast with ``.to(dtype)``,
    ``.half()``, ``.bfloat16()`` or ``.double()``: a cast would round the schedule, so only
    device moves apply to them. Inputs in bf16/fp16/fp64 are computed in their own dtype:
    each method gathers the float32 coefficients for ``t`` and casts them to the input's
    dtype.

    Timestep arguments ``t`` are either a python int (used for every sample of the batch)
    or an integer tensor (int64 or int32) of shape (N,) with N the batch size of ``x`` (or a
    single step, shape () or (1,)); values must lie in [0, T) (see
    :func:`~darlkit.diffusion.check_timesteps`).

    Args:
        schedule: Beta schedule name, one of ``BETA_SCHEDULES`` (DARL: ``"linear"``).
        timesteps: Number of steps T (DARL: 2000).
        linear_start: First beta of the linear-type schedules (DARL: 1e-6).
        linear_end: Last beta of the linear-type schedules (DARL: 1e-2).
        cosine_s: Offset of the cosine schedule.
        betas: Optional explicit beta values, shape (T,), each in (0, 1] (array, tensor or
            sequence). When given, it overrides ``schedule``, ``timesteps``,
            ``linear_start``, ``linear_end`` and ``cosine_s``, and T = ``len(betas)``.

    Attributes:
        num_timesteps (int): T.
        schedule (str): The schedule name, or ``"custom"`` when ``betas`` was given.

    Raises:
        ValueError: On an unknown schedule, ``timesteps < 1``, ``linear_start > linear_end``,
            invalid ``betas``, or a beta of 1 before the last step.
    """

    def __init__(
        self,
        schedule: str = "linear",
        timesteps: int = 2000,
        linear_start: float = 1e-6,
        linear_end: float = 1e-2,
        cosine_s: float = 8e-3,
        *,
        betas: np.ndarray | torch.Tensor | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if betas is None:
            betas64 = make_beta_schedule(schedule, timesteps, linear_start, linear_end, cosine_s)
            self.schedule = schedule
        else:
            betas64 = _as_betas(betas)
            self.schedule = "custom"
        if np.any(betas64[:-1] >= 1.0):
            first = int(np.argmax(betas64[:-1] >= 1.0))
            raise ValueError(
                f"betas must be < 1 before the last step (a beta of 1 destroys the signal, so every "
                f"later step is pure noise and x_0 cannot be recovered), got beta[{first}] = {betas64[first]}"
            )
        self.num_timesteps = int(betas64.shape[0])
        for name, value in _schedule_arrays(betas64).items():
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32))

    def extra_repr(self) -> str:
        """Schedule name and T, shown in ``repr(module)``."""
        return f"schedule={self.schedule!r}, num_timesteps={self.num_timesteps}"

    # ------------------------------------------------------------------ module plumbing
    def _apply(self, fn, recurse=True):  # type: ignore[override]
        # Keep the schedule float32 under dtype casts; honour device moves.
        before = {name: self._buffers[name] for name in SCHEDULE_BUFFERS if self._buffers.get(name) is not None}
        out = super()._apply(fn, recurse)
        for name, old in before.items():
            new = self._buffers[name]
            if new is not None and new.dtype != old.dtype:
                self._buffers[name] = old.to(device=new.device)
        return out

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_x(x: object, name: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if x.dim() < 1 or x.shape[0] < 1:
            raise ValueError(f"{name} must have a non-empty batch dimension (N, ...), got shape {tuple(x.shape)}")
        return x

    def _check_t(self, t: object, batch: int, device: torch.device) -> torch.Tensor:
        """Validate ``t`` (:func:`~darlkit.diffusion.check_timesteps`), int64 (batch,) on ``device``."""
        return check_timesteps(t, batch, self.num_timesteps, device=device)

    @staticmethod
    def _check_like(value: object, ref: torch.Tensor, name: str, ref_name: str) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if tuple(value.shape) != tuple(ref.shape):
            raise ValueError(f"{name} shape {tuple(value.shape)} must equal {ref_name} shape {tuple(ref.shape)}")
        if value.dtype != ref.dtype:
            raise TypeError(f"{name} dtype {value.dtype} must equal {ref_name} dtype {ref.dtype}")
        return value

    def _coef(self, name: str, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Gather buffer ``name`` at int64 ``t`` (N,) as shape (N, 1, ..., 1) in x's dtype/device."""
        buf: torch.Tensor = getattr(self, name)
        out = buf.gather(0, t.to(buf.device))
        return out.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))

    # ------------------------------------------------------------------ forward process
    def sample_timesteps(
        self,
        batch: int,
        max_t: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw integer steps uniformly from {0, ..., max_t - 1}.

        DARL draws ``t_a`` with ``max_t = 200`` and ``t_b`` with ``max_t = T``.

        Args:
            batch: Number of steps to draw (>= 1).
            max_t: Exclusive upper bound, 1 <= max_t <= T; default T.
            generator: Optional generator (its device must match ``device``).
            device: Device of the result; default the buffers' device.

        Returns:
            int64 tensor of shape (batch,) with values in [0, max_t).

        Raises:
            ValueError: If ``batch < 1`` or ``max_t`` is outside [1, T].
        """
        if max_t is None:
            max_t = self.num_timesteps
        if isinstance(max_t, bool) or not isinstance(max_t, numbers.Integral) or not 1 <= max_t <= self.num_timesteps:
            raise ValueError(f"max_t must be an int in [1, {self.num_timesteps}], got {max_t!r}")
        if device is None:
            device = generator.device if generator is not None else self.betas.device
        return sample_timesteps(batch, int(max_t), generator=generator, device=device)

    def q_sample(
        self,
        x0: torch.Tensor,
        t: torch.Tensor | int,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I).

        Args:
            x0: Clean images, floating tensor of shape (N, ...) (DARL: (N, 1, H, W) in [-1, 1]).
            t: Steps, python int or int64/int32 tensor of shape (N,), values in [0, T).
            noise: Standard normal noise of x0's shape and dtype; drawn when None.
            generator: Generator for drawing ``noise`` (ignored when ``noise`` is given).

        Returns:
            x_t, same shape and dtype as ``x0``.
        """
        x0 = self._check_x(x0, "x0")
        t = self._check_t(t, x0.shape[0], x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        else:
            noise = self._check_like(noise, x0, "noise", "x0")
        mean_coef = self._coef("sqrt_alphas_cumprod", t, x0)
        std = self._coef("sqrt_one_minus_alphas_cumprod", t, x0)
        return mean_coef * x0 + std * noise

    def predict_start_from_noise(self, x_t: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor) -> torch.Tensor:
        """Invert ``q_sample``: x_0 = sqrt(1 / alpha_bar_t) x_t - sqrt(1 / alpha_bar_t - 1) eps.

        Args:
            x_t: Noisy images, floating tensor of shape (N, ...).
            t: Steps, python int or int64/int32 tensor of shape (N,), values in [0, T).
            noise: The noise eps (true or predicted), x_t's shape and dtype.

        Returns:
            Estimate of x_0, same shape and dtype as ``x_t``.
        """
        x_t = self._check_x(x_t, "x_t")
        t = self._check_t(t, x_t.shape[0], x_t.device)
        noise = self._check_like(noise, x_t, "noise", "x_t")
        c_x = self._coef("sqrt_recip_alphas_cumprod", t, x_t)
        c_eps = self._coef("sqrt_recipm1_alphas_cumprod", t, x_t)
        return c_x * x_t - c_eps * noise

    def q_posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean and variance of the posterior q(x_{t-1} | x_t, x_0).

        mean = ``posterior_mean_coef1[t] * x0 + posterior_mean_coef2[t] * x_t``;
        variance = ``beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)`` (0 at t = 0).

        Args:
            x0: Clean images (or an estimate), floating tensor of shape (N, ...).
            x_t: Noisy images, same shape and dtype as ``x0``.
            t: Steps, python int or int64/int32 tensor of shape (N,), values in [0, T).

        Returns:
            ``(mean, variance, log_variance)``: ``mean`` has x0's shape; ``variance`` and
            ``log_variance`` (the clipped log) have shape (N, 1, ..., 1), broadcastable to
            x0; all in x0's dtype.
        """
        x0 = self._check_x(x0, "x0")
        x_t = self._check_like(x_t, x0, "x_t", "x0")
        t = self._check_t(t, x0.shape[0], x0.device)
        mean = self._coef("posterior_mean_coef1", t, x0) * x0 + self._coef("posterior_mean_coef2", t, x0) * x_t
        return mean, self._coef("posterior_variance", t, x0), self._coef("posterior_log_variance_clipped", t, x0)

    # ------------------------------------------------------------------ reverse process
    def _model_eps(self, model_fn: ModelFn, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not callable(model_fn):
            raise TypeError(f"model_fn must be callable as model_fn(x_t, t) -> eps, got {type(model_fn).__name__}")
        eps = model_fn(x_t, t)
        if not isinstance(eps, torch.Tensor) or tuple(eps.shape) != tuple(x_t.shape):
            got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
            raise ValueError(f"model_fn output must be a tensor of x_t's shape {tuple(x_t.shape)}, got {got}")
        return eps.to(x_t.dtype)

    def p_mean_variance(
        self, model_fn: ModelFn, x_t: torch.Tensor, t: torch.Tensor | int, clip_denoised: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean and variance of p_theta(x_{t-1} | x_t) from a noise prediction.

        x_0 is estimated with ``predict_start_from_noise(x_t, t, model_fn(x_t, t))``,
        clamped to [-1, 1] when ``clip_denoised``, and plugged into ``q_posterior``.

        Args:
            model_fn: Callable ``model_fn(x_t, t) -> eps`` with ``t`` an int64 tensor (N,);
                returns a tensor of x_t's shape.
            x_t: Noisy images, floating tensor of shape (N, ...).
            t: Steps, python int or int64/int32 tensor of shape (N,), values in [0, T).
            clip_denoised: Clamp the x_0 estimate to the data range [-1, 1].

        Returns:
            ``(mean, variance, log_variance)`` as in ``q_posterior``.
        """
        x_t = self._check_x(x_t, "x_t")
        t = self._check_t(t, x_t.shape[0], x_t.device)
        x0 = self.predict_start_from_noise(x_t, t, self._model_eps(model_fn, x_t, t))
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        return self.q_posterior(x0, x_t, t)

    def p_sample(
        self,
        model_fn: ModelFn,
        x_t: torch.Tensor,
        t: torch.Tensor | int,
        clip_denoised: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One ancestral step x_{t-1} = mean + exp(0.5 log_variance) z, with z = 0 where t == 0.

        Args:
            model_fn: Callable ``model_fn(x_t, t) -> eps`` (see ``p_mean_variance``).
            x_t: Noisy images, floating tensor of shape (N, ...).
            t: Steps, python int or int64/int32 tensor of shape (N,), values in [0, T).
            clip_denoised: Clamp the x_0 estimate to [-1, 1].
            generator: Generator for z (its device must match x_t's).

        Returns:
            x_{t-1}, same shape and dtype as ``x_t``.
        """
        x_t = self._check_x(x_t, "x_t")
        t = self._check_t(t, x_t.shape[0], x_t.device)
        mean, _, log_var = self.p_mean_variance(model_fn, x_t, t, clip_denoised=clip_denoised)
        z = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype, device=x_t.device)
        nonzero = (t != 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.dim() - 1)))
        return mean + nonzero * torch.exp(0.5 * log_var) * z

    @torch.no_grad()
    def p_sample_loop(
        self,
        model_fn: ModelFn,
        shape: Sequence[int],
        *,
        noise: torch.Tensor | None = None,
        clip_denoised: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        progress: bool = False,
    ) -> torch.Tensor:
        """Run the full reverse chain from x_{T-1} ~ N(0, I) down to x_0 (gradients off).

        Args:
            model_fn: Callable ``model_fn(x_t, t) -> eps`` (see ``p_mean_variance``).
            shape: Output shape (N, ...), every size >= 1.
            noise: Optional start x_{T-1}, a floating tensor of ``shape`` (its dtype and
                device are then used); drawn from ``generator`` when None.
            clip_denoised: Clamp each x_0 estimate to [-1, 1].
            generator: Generator for the start noise and every step's noise; with a
                seeded generator the loop is deterministic.
            device: Device of the samples when ``noise`` is None; default the buffers'.
            dtype: Floating dtype of the samples when ``noise`` is None.
            progress: Show a tqdm progress bar over the T steps.

        Returns:
            Samples x_0 of the given shape.
        """
        shape = tuple(int(s) for s in shape)
        if len(shape) < 1 or any(s < 1 for s in shape):
            raise ValueError(f"shape must be a non-empty sequence of positive sizes, got {shape}")
        if noise is None:
            if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
                raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
            if device is None:
                device = generator.device if generator is not None else self.betas.device
            x = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        else:
            x = self._check_x(noise, "noise")
            if tuple(x.shape) != shape:
                raise ValueError(f"noise shape {tuple(x.shape)} must equal shape {shape}")
        steps = range(self.num_timesteps - 1, -1, -1)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, total=self.num_timesteps, desc="p_sample_loop")
        for i in steps:
            t = torch.full((shape[0],), i, dtype=torch.int64, device=x.device)
            x = self.p_sample(model_fn, x, t, clip_denoised=clip_denoised, generator=generator)
        return x

    # ------------------------------------------------------------------ training
    def training_loss(
        self,
        model_fn: ModelFn,
        x0: torch.Tensor,
        t: torch.Tensor | int | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Epsilon-prediction loss ``mean((eps - model_fn(q_sample(x0, t, eps), t)) ** 2)``.

        This is DARL's L_diff (taken on the B path, background images).

        Args:
            model_fn: Callable ``model_fn(x_t, t) -> eps`` (see ``p_mean_variance``).
            x0: Clean images, floating tensor of shape (N, ...).
            t: Steps (python int or int tensor (N,)); drawn uniformly from [0, T) when None.
            noise: eps, x0's shape and dtype; drawn when None.
            generator: Generator for the drawn ``t`` and ``noise`` (device must match x0's).

        Returns:
            Scalar tensor (x0's dtype), the mean over all elements.
        """
        x0 = self._check_x(x0, "x0")
        if t is None:
            t = self.sample_timesteps(x0.shape[0], generator=generator, device=x0.device)
        t = self._check_t(t, x0.shape[0], x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        else:
            noise = self._check_like(noise, x0, "noise", "x0")
        x_t = self.q_sample(x0, t, noise)
        eps = self._model_eps(model_fn, x_t, t)
        return (noise - eps).pow(2).mean()
