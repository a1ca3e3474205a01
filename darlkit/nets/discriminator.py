"""The 70x70 PatchGAN discriminators D_s (masks) and D_a (angiograms)."""

from __future__ import annotations

import torch
from torch import nn

from darlkit._validation import check_ints
from darlkit.nets.config import ConfigMixin
from darlkit.nets.init import _apply_default_init

__all__ = ["PatchDiscriminator"]


class PatchDiscriminator(ConfigMixin, nn.Module):
    """70x70 PatchGAN: 4x4 convolutions, LeakyReLU(0.2), InstanceNorm on all but the first.

    Default layout (module indices of ``model`` match the release's keys ``model.0``,
    ``model.2``, ``model.5``, ``model.8``, ``model.11``)::

        Conv(in, 64, s2) LReLU | Conv(64, 128, s2) IN LReLU | Conv(128, 256, s2) IN LReLU
        | Conv(256, 512, s1) IN LReLU | Conv(512, 1, s1)

    All convolutions have kernel 4, padding 1 and a bias; the InstanceNorms have no affine
    parameters. A 256x256 input gives a 30x30 map of patch scores.

    Args:
        in_channels: Input channels (1 for masks and angiograms).
        base_channels: Width of the first conv (64); doubles per strided layer, capped at 8x.
        num_layers: Number of stride-2 layers (3 -> the 70x70 receptive field).
        negative_slope: LeakyReLU slope (0.2).
        init: Weight initialisation scheme (``"normal"``, see ``init_weights``) or ``None``.
        init_gain: Standard deviation of the normal initialisation (0.02).
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 64,
        num_layers: int = 3,
        negative_slope: float = 0.2,
        init: str | None = "normal",
        init_gain: float = 0.02,
    ) -> None:
        super().__init__()
        check_ints(1, in_channels=in_channels, base_channels=base_channels, num_layers=num_layers)
        self.in_channels = in_channels
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, 4, stride=2, padding=1),
            nn.LeakyReLU(negative_slope, True),
        ]
        mult = 1
        for n in range(1, num_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < num_layers else 1
            layers += [
                nn.Conv2d(base_channels * prev, base_channels * mult, 4, stride=stride, padding=1),
                nn.InstanceNorm2d(base_channels * mult),
                nn.LeakyReLU(negative_slope, True),
            ]
        layers.append(nn.Conv2d(base_channels * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        _apply_default_init(self, init, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score image patches.

        Args:
            x: Images or masks (N, in_channels, H, W), float in [-1, 1], H and W >= 32
                for the default depth.

        Returns:
            Unbounded patch scores (N, 1, H', W') (30x30 for a 256x256 input); LSGAN
            targets are 1 (real) and 0 (fake).

        Raises:
            TypeError: If ``x`` is not a tensor.
            ValueError: On wrong rank, channels or a non-float dtype.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        return self.model(x)
