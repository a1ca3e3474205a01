"""Losses of DARL's adversarial and cycle objectives, and the discriminators' image pool.

- ``lsgan_loss`` / ``LSGANLoss``: least-squares GAN loss.
- ``lsgan_generator_loss`` / ``lsgan_discriminator_loss``: DARL's generator and
  discriminator adversarial terms.
- ``cycle_loss``: L1 cycle-consistency loss.
- ``ImagePool``: 50-image history of generated images (checkpointable).
- ``polarity_loss``: optional prior that synthetic vessels darken their background (not in the paper).

The diffusion loss L_diff is ``GaussianDiffusion.training_loss``.
"""

from darlkit.losses.adversarial import (
    LSGANLoss,
    cycle_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    lsgan_loss,
)
from darlkit.losses.image_pool import ImagePool
from darlkit.losses.polarity import polarity_loss

__all__ = [
    "lsgan_loss",
    "LSGANLoss",
    "lsgan_generator_loss",
    "lsgan_discriminator_loss",
    "cycle_loss",
    "ImagePool",
    "polarity_loss",
]
