"""The DARL networks of a :class:`TrainConfig`: one table maps its network fields to the networks' configs.

:data:`NETWORK_FIELDS` is the only place where a ``TrainConfig`` field is tied to a network
argument; :func:`model_config` (run config -> ``DARL.config``), :func:`train_fields`
(``DARL.config`` -> run config fields, for model folders) and :func:`build_networks` all read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from darlkit.training.config import TrainConfig

__all__ = ["build_networks", "model_config", "train_fields", "NETWORK_FIELDS"]

NETWORK_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("unet", "base_channels", "unet_base_channels"),
    ("unet", "channel_mults", "unet_channel_mults"),
    ("unet", "num_res_blocks", "unet_num_res_blocks"),
    ("unet", "attn_resolutions", "unet_attn_resolutions"),
    ("unet", "image_size", "image_size"),
    ("unet", "norm_groups", "unet_norm_groups"),
    ("generator", "base_channels", "gen_base_channels"),
    ("generator", "spade_hidden", "spade_hidden"),
    ("generator", "backend", "backend"),
    ("diffusion", "schedule", "beta_schedule"),
    ("diffusion", "timesteps", "num_timesteps"),
    ("", "t_a_max", "t_a_max"),
    ("disc", "base_channels", "disc_base_channels"),
)
"""``(network, argument, TrainConfig field)``: network ``""`` is ``DARL`` itself, ``"disc"``
both PatchGAN discriminators."""

_CLASSES = {"unet": "DiffusionUNet", "generator": "SPADEGenerator", "diffusion": "GaussianDiffusion"}


def _as_json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def model_config(config: TrainConfig) -> dict[str, Any]:
    """The ``DARL.config`` of the networks a run configuration describes.

    Args:
        config: The run configuration.

    Returns:
        ``{"unet": {...}, "generator": {...}, "diffusion": {...}, "t_a_max": int}`` (plain
        data; arguments not in :data:`NETWORK_FIELDS` take the networks' defaults).
    """
    out: dict[str, Any] = {net: {"_class_name": cls} for net, cls in _CLASSES.items()}
    for net, arg, field in NETWORK_FIELDS:
        if net == "":
            out[arg] = getattr(config, field)
        elif net in out:
            out[net][arg] = _as_json(getattr(config, field))
    return out


def train_fields(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`TrainConfig` network fields that a ``DARL.config`` determines.

    Args:
        model_cfg: A ``DARL.config`` (e.g. from a model folder's ``config.json``).

    Returns:
        ``{field: value}`` for every :data:`NETWORK_FIELDS` entry the config holds (networks of
        other classes than darlkit's defaults contribute nothing).
    """
    fields: dict[str, Any] = {}
    for net, arg, field in NETWORK_FIELDS:
        section = model_cfg if net == "" else model_cfg.get(net)
        if not isinstance(section, Mapping) or (net and section.get("_class_name") != _CLASSES.get(net)):
            continue
        if arg in section and section[arg] != "custom":
            fields[field] = tuple(section[arg]) if isinstance(section[arg], list) else section[arg]
    return fields


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
    from darlkit.model import DARL
    from darlkit.nets import PatchDiscriminator

    disc = {arg: getattr(config, field) for net, arg, field in NETWORK_FIELDS if net == "disc"}
    seed = config.seed if seed is None else int(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DARL.from_config(model_config(config))
        disc_mask = PatchDiscriminator(in_channels=1, **disc)
        disc_image = PatchDiscriminator(in_channels=1, **disc)
    return model, disc_mask, disc_image
