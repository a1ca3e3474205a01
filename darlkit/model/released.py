"""Loading the authors' released DARL checkpoint into darlkit's modules.

The release stores three files (key names and shapes in ``released_state_dicts.txt``):

* ``<prefix>_G.pth``: the diffusion U-Net under ``denoise_fn.``, the SPADE generator under
  ``segment_fn.`` and the schedule buffers (``betas``, ``alphas_cumprod``, ...) at the top;
* ``<prefix>_Ds.pth`` and ``<prefix>_Da.pth``: one PatchGAN each (keys ``model.N.*``).

darlkit's default networks use the release's module names, so the mapping onto a
``DARL`` state dict is a prefix rename only:

* ``denoise_fn.<k>`` -> ``unet.<k>``,
* ``segment_fn.<k>`` -> ``generator.<k>``,
* ``<buffer>`` (top level) -> ``diffusion.<buffer>``,

and the discriminator files load unchanged into ``PatchDiscriminator``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn

from darlkit.model.darl import DARL

__all__ = ["ReleasedModels", "load_released_checkpoint", "map_released_keys", "RELEASED_PREFIX_MAP"]

RELEASED_PREFIX_MAP: tuple[tuple[str, str], ...] = (("denoise_fn.", "unet."), ("segment_fn.", "generator."))
"""Prefix renames from the release's generator file to a DARL state dict (top-level keys
without a dot are schedule buffers and go to ``diffusion.``).
"""


class ReleasedModels(NamedTuple):
    """What ``load_released_checkpoint`` returns.

    Attributes:
        model: The DARL model (eval mode) with the release's U-Net, generator and schedule.
        disc_mask: D_s from ``<prefix>_Ds.pth``, or ``None`` when the file is absent.
        disc_image: D_a from ``<prefix>_Da.pth``, or ``None`` when the file is absent.
    """

    model: DARL
    disc_mask: nn.Module | None
    disc_image: nn.Module | None


def map_released_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of a released ``_G.pth`` state dict to darlkit's DARL layout.

    Args:
        state: The release's generator state dict (``denoise_fn.*``, ``segment_fn.*`` and
            top-level schedule buffers).

    Returns:
        A new dict with ``unet.*``, ``generator.*`` and ``diffusion.*`` keys (same tensors).

    Raises:
        ValueError: On keys that match none of the three groups (all listed).
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        for src, dst in RELEASED_PREFIX_MAP:
            if key.startswith(src):
                out[dst + key[len(src) :]] = value
                break
        else:
            if "." in key:
                unknown.append(key)
            else:
                out["diffusion." + key] = value
    if unknown:
        raise ValueError(f"released checkpoint has {len(unknown)} unknown key(s): {sorted(unknown)}")
    return out


def _read(path: str, map_location) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"released checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt or non-tensor pickle; never repeat torch's weights_only=False hint
        from darlkit.model.safe_load import safe_load_error

        raise safe_load_error(path, exc) from None
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} must hold a dict of tensors (a state dict), got {type(obj).__name__}")
    return dict(obj)


def _load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, rename=lambda k: k) -> None:
    """``load_state_dict(strict=True)`` with one error listing every problem."""
    expected = module.state_dict()
    missing = sorted(rename(k) for k in expected if k not in state)
    unexpected = sorted(rename(k) for k in state if k not in expected)
    shapes = sorted(
        f"{rename(k)}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append(f"shape mismatches {shapes}")
    if problems:
        raise ValueError(f"{source} does not match darlkit's network: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def _released_name(key: str) -> str:
    for src, dst in RELEASED_PREFIX_MAP:
        if key.startswith(dst):
            return src + key[len(dst) :]
    if key.startswith("diffusion."):
        return key[len("diffusion.") :]
    return key


def load_released_checkpoint(
    prefix: str | os.PathLike, map_location: str | torch.device = "cpu", *, model: DARL | None = None
) -> ReleasedModels:
    """Load the authors' released DARL weights into darlkit's paper-configuration modules.

    Reads ``<prefix>_G.pth`` (required) and ``<prefix>_Ds.pth`` / ``<prefix>_Da.pth`` (when
    present) with ``torch.load(weights_only=True)``, renames the keys (see
    ``RELEASED_PREFIX_MAP``) and loads them strictly. Spectral-norm vectors
    (``weight_u``, ``weight_v``) are loaded too, so in eval mode the generator uses the
    release's stored normalisation exactly. The returned modules are in eval mode.

    Args:
        prefix: Path prefix, e.g. ``"checkpoints/XCAD"`` for ``checkpoints/XCAD_G.pth``.
        map_location: Device to load onto.
        model: A DARL model to load into (default: ``DARL()`` with the paper's networks,
            built without weight initialisation since every weight is overwritten).

    Returns:
        ``ReleasedModels`` ``(model, disc_mask, disc_image)``.

    Raises:
        FileNotFoundError: If ``<prefix>_G.pth`` does not exist (named in the message).
        ValueError: On unknown, missing or wrongly shaped keys (all listed, in the release's
            key names), or a file that is not a tensor state dict.
    """
    prefix = os.fspath(prefix)
    g_path = f"{prefix}_G.pth"
    state = _read(g_path, map_location)
    if model is None:
        from darlkit.nets import DiffusionUNet, SPADEGenerator

        model = DARL(unet=DiffusionUNet(init=None), generator=SPADEGenerator(init=None))
    if not isinstance(model, DARL):
        raise TypeError(f"model must be a DARL, got {type(model).__name__}")
    mapped = map_released_keys(state)
    _load_strict(model, mapped, g_path, _released_name)
    model.to(map_location).eval()

    discs: list[nn.Module | None] = []
    for suffix in ("Ds", "Da"):
        path = f"{prefix}_{suffix}.pth"
        if not os.path.isfile(path):
            discs.append(None)
            continue
        from darlkit.nets import PatchDiscriminator

        disc = PatchDiscriminator(init=None)
        _load_strict(disc, _read(path, map_location), path)
        discs.append(disc.to(map_location).eval())
    return ReleasedModels(model, discs[0], discs[1])
