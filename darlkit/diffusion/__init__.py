"""Diffusion schedules and the Gaussian (DDPM) forward/reverse process used by DARL.

- ``make_beta_schedule`` / ``BETA_SCHEDULES``: float64 beta schedules.
- ``check_timesteps`` / ``sample_timesteps``: the one validation and draw of step indices.
- ``GaussianDiffusion``: float32 schedule buffers (the released checkpoint's keys),
  ``q_sample``, posterior, reverse sampler and the epsilon-MSE loss.
"""

from darlkit.diffusion.gaussian import SCHEDULE_BUFFERS, GaussianDiffusion
from darlkit.diffusion.schedules import BETA_SCHEDULES, RAMP_SCHEDULES, make_beta_schedule
from darlkit.diffusion.timesteps import STEP_DTYPES, check_timesteps, sample_timesteps

__all__ = [
    "BETA_SCHEDULES",
    "RAMP_SCHEDULES",
    "make_beta_schedule",
    "GaussianDiffusion",
    "SCHEDULE_BUFFERS",
    "STEP_DTYPES",
    "check_timesteps",
    "sample_timesteps",
]
