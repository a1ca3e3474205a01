"""The generation module G: a SPADE generator with switchable SPADE residual blocks (Table 5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from darlkit._validation import check_ints
from darlkit.nets.blocks import resnet_encoder_layers
from darlkit.nets.config import ConfigMixin
from darlkit.nets.init import _apply_default_init
from darlkit.nets.unet import _check_float_image

__all__ = ["SPADEGenerator"]


class SPADEGenerator(ConfigMixin, nn.Module):
    """DARL's generator G(concat(x_t, eps_theta(x_t, t)), s): a mask without ``s``,
    an angiogram with ``s``.

    Layout (defaults = paper Table 5 / the release; attribute names equal the release's
    ``segment_fn.*`` keys)::

        model:     ReflectionPad(3) Conv7x7(in, 64) IN ReLU            (model.1)
                   Conv3x3 s2 (64, 128) IN ReLU                         (model.4)
                   Conv3x3 s2 (128, 256) IN ReLU                        (model.7)
        G_middle_0, G_middle_1: SPADEResBlock(256, 256)
        up (nearest x2), up_0: SPADEResBlock(256, 128)
        up (nearest x2), up_1: SPADEResBlock(128, 64)
        F.leaky_relu(0.2); conv_img: ReflectionPad(3) Conv7x7(64, out) (conv_img.1); tanh

    The stem InstanceNorms have no affine parameters. Every norm inside the residual blocks
    is a switchable SPADE: conditioned on the segmentation map when one is given,
    a learnable-affine InstanceNorm otherwise. Spectral norm is on the residual blocks'
    convs by default.

    The activation before the head is the functional ``F.leaky_relu`` as in the release (not
    an ``nn.LeakyReLU`` module): the paper's Table 12 counts (DARL (A) 90.658 and (B) 173.506
    GMACs) are reproduced only when this activation is not counted by the module-hook
    counter, whereas the stem's ReLUs are ``nn.ReLU`` modules and are counted.

    Args:
        in_channels: Input channels (2: x_t and the predicted noise).
        out_channels: Output channels (1).
        base_channels: Stem width (64); doubles per downsampling stage.
        num_downsampling: Stride-2 stages, mirrored by upsampling residual blocks (2).
        num_middle_blocks: Residual blocks at the bottleneck (2).
        label_nc: Channels of the segmentation map (2: background, vessel one-hot).
        spade_hidden: Hidden width of the S-SPADE modulation MLP (128).
        spectral_norm: Spectral norm on the residual blocks' convolutions (True).
        negative_slope: LeakyReLU slope in the residual blocks and before the head (0.2).
        backend: Kernel backend of the S-SPADE layers (``"auto"``/``"eager"``).
        init: Weight initialisation scheme (``"normal"``) or ``None``.
        init_gain: Standard deviation of the normal initialisation (0.02).
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        base_channels: int = 64,
        num_downsampling: int = 2,
        num_middle_blocks: int = 2,
        label_nc: int = 2,
        spade_hidden: int = 128,
        spectral_norm: bool = True,
        negative_slope: float = 0.2,
        backend: str = "auto",
        init: str | None = "normal",
        init_gain: float = 0.02,
    ) -> None:
        super().__init__()
        from darlkit.layers import SPADEResBlock

        check_ints(
            1,
            in_channels=in_channels,
            out_channels=out_channels,
            base_channels=base_channels,
            label_nc=label_nc,
            spade_hidden=spade_hidden,
        )
        check_ints(0, num_downsampling=num_downsampling, num_middle_blocks=num_middle_blocks)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.label_nc = label_nc
        self.num_downsampling = num_downsampling
        self.num_middle_blocks = num_middle_blocks

        stem, ch = resnet_encoder_layers(in_channels, base_channels, num_downsampling)
        self.model = nn.Sequential(*stem)

        def block(cin: int, cout: int) -> nn.Module:
            return SPADEResBlock(
                cin,
                cout,
                label_nc,
                spectral_norm=spectral_norm,
                hidden_channels=spade_hidden,
                negative_slope=negative_slope,
                backend=backend,
            )

        for i in range(num_middle_blocks):
            self.add_module(f"G_middle_{i}", block(ch, ch))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        for i in range(num_downsampling):
            self.add_module(f"up_{i}", block(ch, ch // 2))
            ch //= 2
        self.negative_slope = float(negative_slope)
        self.conv_img = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ch, out_channels, 7))
        _apply_default_init(self, init, init_gain)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (``2 ** num_downsampling``)."""
        return 2**self.num_downsampling

    def forward(self, x: torch.Tensor, segmap: torch.Tensor | None = None) -> torch.Tensor:
        """Run the generator.

        Args:
            x: Input (N, in_channels, H, W), float; in DARL ``concat(x_t, eps_theta(x_t, t))``.
                H and W multiples of ``size_multiple`` (4 by default).
            segmap: ``None`` (segmentation mode), or the condition (synthesis mode): a
                float one-hot map (N, label_nc, h, w) or an integer label map (N, h, w) /
                (N, 1, h, w) with labels in [0, label_nc); any size (resized with nearest
                interpolation inside each S-SPADE layer).

        Returns:
            (N, out_channels, H, W) in [-1, 1] (tanh): mask logits without ``segmap``, a
            synthetic angiogram with it.

        Raises:
            TypeError: If ``x`` is not a tensor.
            ValueError: On wrong rank, channels, dtype, size or NaN values in ``x``.
        """
        _check_float_image(x, "x", self.in_channels, self.size_multiple)
        h = self.model(x)
        for i in range(self.num_middle_blocks):
            h = getattr(self, f"G_middle_{i}")(h, segmap)
        for i in range(self.num_downsampling):
            h = getattr(self, f"up_{i}")(self.up(h), segmap)
        return torch.tanh(self.conv_img(F.leaky_relu(h, self.negative_slope)))
