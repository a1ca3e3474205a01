"""Weight initialisation schemes of the DARL release.

The release initialises the diffusion U-Net orthogonally (gain 1) and the generator and
both discriminators with normal(0, 0.02) weights; every bias starts at zero. Normalisation
layers keep PyTorch's defaults (weight 1, bias 0), except BatchNorm, whose weight is drawn
from normal(1, 0.02) as in the release's helper.

darlkit's network constructors apply these schemes by default (argument ``init``:
``DiffusionUNet(init="orthogonal")``, ``SPADEGenerator/PatchDiscriminator/SSVSGenerator
(init="normal")``; pass ``init=None`` to keep PyTorch's default initialisation).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["INIT_SCHEMES", "init_weights"]

INIT_SCHEMES: tuple[str, ...] = ("normal", "orthogonal", "xavier", "kaiming")
"""Accepted values of the ``scheme`` argument of ``init_weights``."""

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _weight_param(m: nn.Module) -> torch.Tensor | None:
    # torch.nn.utils.spectral_norm keeps the trainable weight as ``weight_orig``.
    w = getattr(m, "weight_orig", None)
    if isinstance(w, nn.Parameter):
        return w
    w = m._parameters.get("weight")
    return w if isinstance(w, torch.Tensor) else None


@torch.no_grad()
def init_weights(module: nn.Module, scheme: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise every convolution, transposed convolution and linear layer of ``module``.

    Weights (``weight_orig`` for spectrally normalised layers) are drawn by ``scheme``;
    biases are set to zero. BatchNorm weights are drawn from normal(1, 0.02) with zero
    bias; GroupNorm/InstanceNorm affine parameters are left at (1, 0).

    Args:
        module: The module to initialise in place (recursively).
        scheme: ``"normal"`` (normal(0, gain)), ``"orthogonal"`` (orthogonal with gain
            ``gain``), ``"xavier"`` (Xavier-normal with gain ``gain``) or ``"kaiming"``
            (Kaiming-normal, fan-in, ``gain`` ignored).
        gain: Standard deviation for ``"normal"``, gain for ``"orthogonal"``/``"xavier"``.
            The paper uses ``init_weights(unet, "orthogonal", gain=1.0)`` and
            ``init_weights(net, "normal", gain=0.02)`` for G and D.

    Returns:
        ``module`` (for chaining).

    Raises:
        ValueError: If ``scheme`` is unknown or ``gain`` is not positive.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"scheme must be one of {INIT_SCHEMES}, got {scheme!r}")
    if not gain > 0:
        raise ValueError(f"gain must be > 0, got {gain!r}")
    for m in module.modules():
        if isinstance(m, _WEIGHTED):
            w = _weight_param(m)
            if w is not None:
                if scheme == "normal":
                    nn.init.normal_(w, 0.0, gain)
                elif scheme == "orthogonal":
                    nn.init.orthogonal_(w, gain=gain)
                elif scheme == "xavier":
                    nn.init.xavier_normal_(w, gain=gain)
                else:
                    nn.init.kaiming_normal_(w, a=0, mode="fan_in")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _BATCHNORM) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def _apply_default_init(module: nn.Module, init: str | None, gain: float) -> None:
    if init is None:
        return
    init_weights(module, init, gain)
