"""Diffusion schedules and the Gaussian (DDPM) forward/reverse process used by DARL.

- ``make_beta_schedule`` / ``BETA_SCHEDULES``: float64 beta schedules.
- ``GaussianDiffusion``: float32 schedule buffers (the released checkpoint's keys),
  ``q_sample``, posterior, reverse sampler and the epsilon-MSE loss.
"""

from darlkit.diffusion.gaussian import SCHEDULE_BUFFERS, GaussianDiffusion
from darlkit.diffusion.schedules import BETA_SCHEDULES, make_beta_schedule

__all__ = ["BETA_SCHEDULES", "make_beta_schedule", "GaussianDiffusion", "SCHEDULE_BUFFERS"]
