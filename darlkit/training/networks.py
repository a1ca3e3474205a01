"""Build the DARL networks (model + two discriminators) described by a :class:`TrainConfig`."""

from __future__ import annotations

import torch
from torch import nn

from darlkit.training.config import TrainConfig

__all__ = ["build_networks"]


def build_networks(config: TrainConfig, *, seed: int | None = None) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Create the DARL model and its two PatchGAN discriminators for ``config``.

    Networks are initialised under ``torch.manual_seed(seed)`` (default ``config.seed``) in a
    forked RNG scope, so the global RNG state is left as it was and equal seeds give equal
    weights.

    Args:
        config: The run configuration (network widths, image size, diffusion schedule, backend).
        seed: Initialisation seed (default: ``config.seed``).

    Returns:
        ``(model, disc_mask, disc_image)``: a ``darlkit.model.DARL`` (diffusion U-Net
        epsilon_theta + SPADE generator G + Gaussian diffusion), the mask discriminator D_s and
        the angiogram discriminator D_a, all on the CPU in float32.

    Raises:
        TypeError: If ``config`` is not a :class:`TrainConfig`.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    from darlkit.diffusion import GaussianDiffusion
    from darlkit.model import DARL
    from darlkit.nets import DiffusionUNet, PatchDiscriminator, SPADEGenerator

    seed = config.seed if seed is None else int(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = DiffusionUNet(
            in_channels=1,
            out_channels=1,
            base_channels=config.unet_base_channels,
            channel_mults=tuple(config.unet_channel_mults),
            num_res_blocks=config.unet_num_res_blocks,
            attn_resolutions=tuple(config.unet_attn_resolutions),
            image_size=config.image_size,
            norm_groups=config.unet_norm_groups,
        )
        generator = SPADEGenerator(
            base_channels=config.gen_base_channels,
            spade_hidden=config.spade_hidden,
            backend=config.backend,
        )
        diffusion = GaussianDiffusion(schedule=config.beta_schedule, timesteps=config.num_timesteps)
        model = DARL(unet=unet, generator=generator, diffusion=diffusion, t_a_max=config.t_a_max)
        disc_mask = PatchDiscriminator(in_channels=1, base_channels=config.disc_base_channels)
        disc_image = PatchDiscriminator(in_channels=1, base_channels=config.disc_base_channels)
    return model, disc_mask, disc_image
