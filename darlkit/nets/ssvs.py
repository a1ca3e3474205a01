"""The SSVS baseline generator (Ma et al., ICCV 2021) used for paper Table 12."""

from __future__ import annotations

import torch
from torch import nn

from darlkit._validation import check_ints
from darlkit.nets.blocks import resnet_encoder_layers
from darlkit.nets.config import ConfigMixin
from darlkit.nets.init import _apply_default_init
from darlkit.nets.unet import _check_float_image

__all__ = ["SSVSGenerator", "ResnetBlock"]


class ResnetBlock(nn.Module):
    """Residual block: `x + block(x)` with block = pad1, Conv3x3, IN, ReLU, pad1, Conv3x3, IN (reflection pads).

    Args:
        channels: Input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: Features (N, C, H, W), H and W >= 2.

        Returns:
            Features (N, C, H, W).
        """
        return x + self.conv_block(x)


class SSVSGenerator(ConfigMixin, nn.Module):
    """ResNet generator of SSVS (CycleGAN style), the Table 12 baseline.

    Reflection pad 3 + Conv7x7 to ``base_channels``, IN, ReLU; ``num_downsampling``
    stride-2 Conv3x3 (doubling channels) each with IN + ReLU; ``num_blocks``
    ``ResnetBlock``; as many ConvTranspose2d 3x3 stride 2 (padding 1, output padding
    1) halving channels, each with IN + ReLU; reflection pad 3 + Conv7x7 to
    ``out_channels``; tanh. InstanceNorms have no affine parameters; convs have biases.

    Args:
        in_channels: Input channels (1).
        out_channels: Output channels (1).
        base_channels: Stem width (64).
        num_blocks: Residual blocks at the bottleneck (10).
        num_downsampling: Stride-2 stages (2 -> bottleneck width 256).
        init: Weight initialisation scheme (``"normal"``) or ``None``.
        init_gain: Standard deviation of the normal initialisation (0.02).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 64,
        num_blocks: int = 10,
        num_downsampling: int = 2,
        init: str | None = "normal",
        init_gain: float = 0.02,
    ) -> None:
        super().__init__()
        check_ints(1, in_channels=in_channels, out_channels=out_channels, base_channels=base_channels)
        check_ints(0, num_blocks=num_blocks, num_downsampling=num_downsampling)
        self.in_channels = in_channels
        self.num_downsampling = num_downsampling
        layers, ch = resnet_encoder_layers(in_channels, base_channels, num_downsampling)
        layers += [ResnetBlock(ch) for _ in range(num_blocks)]
        for _ in range(num_downsampling):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(ch // 2),
                nn.ReLU(True),
            ]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        _apply_default_init(self, init, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate an image.

        Args:
            x: Images (N, in_channels, H, W), float in [-1, 1], H and W multiples of
                ``2 ** num_downsampling``.

        Returns:
            Images (N, out_channels, H, W) in [-1, 1].
        """
        _check_float_image(x, "x", self.in_channels, 2**self.num_downsampling)
        return self.model(x)
