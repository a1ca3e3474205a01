"""Reusable building blocks of the diffusion U-Net (epsilon_theta).

The blocks mirror the layout of the authors' released DDPM U-Net so that its state-dict keys
map onto darlkit's one to one (see ``released_state_dicts.txt``):

* ``SinusoidalTimeEmbedding`` -- ``time_mlp.0`` (buffer ``inv_freq``),
* ``NormActConv`` -- GroupNorm, Swish, Dropout/Identity, Conv3x3 (``block.{0,3}``),
* ``TimeResidualBlock`` -- ``mlp.1``, ``block1``, ``block2``, ``res_conv``,
* ``SelfAttention2d`` -- ``norm``, ``qkv``, ``out``,
* ``ResidualAttentionBlock`` -- ``res_block`` and optional ``attn``,
* ``Downsample`` / ``Upsample`` -- ``conv`` (and ``up`` for the upsampler).

and the encoder shared by the CycleGAN-style generators (DARL's ``SPADEGenerator`` and the
SSVS baseline): ``resnet_encoder_layers``.

Activations that the release implemented as a custom ``Swish`` module are ``nn.SiLU``
modules here (the same function; neither is counted by the paper's MAC rules).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from darlkit._validation import check_int

__all__ = [
    "SinusoidalTimeEmbedding",
    "NormActConv",
    "TimeResidualBlock",
    "SelfAttention2d",
    "ResidualAttentionBlock",
    "Downsample",
    "Upsample",
    "resnet_encoder_layers",
]


def _check_groups(channels: int, groups: int, name: str) -> None:
    if channels % check_int("norm_groups", groups):
        raise ValueError(f"{name}={channels} must be divisible by norm_groups={groups}")


class SinusoidalTimeEmbedding(nn.Module):
    """Sinusoidal embedding of integer diffusion steps (sines first, then cosines).

    For ``dim = 2K`` the frequencies are ``f_k = exp(-ln(10000) * 2k / dim)``, ``k < K``,
    stored as the persistent buffer ``inv_freq`` (as in the release), and the embedding of
    step ``t`` is ``[sin(t f_0..f_{K-1}), cos(t f_0..f_{K-1})]``.

    Args:
        dim: Embedding width (even, >= 2).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if check_int("dim", dim, 2) % 2:
            raise ValueError(f"dim must be an even int >= 2, got {dim!r}")
        self.dim = dim
        k = torch.arange(0, dim, 2, dtype=torch.float32)
        self.register_buffer("inv_freq", torch.exp(k * (-math.log(10000.0) / dim)))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed steps.

        Args:
            t: Steps of shape (N,), any real or integer dtype (cast to float32).

        Returns:
            Embedding of shape (N, dim), values in [-1, 1].
        """
        phase = t.reshape(-1).to(self.inv_freq.dtype)[:, None] * self.inv_freq[None, :]
        return torch.cat([phase.sin(), phase.cos()], dim=-1)


class NormActConv(nn.Module):
    """GroupNorm -> Swish -> Dropout (Identity when 0) -> Conv3x3, as ``self.block``.

    Args:
        in_channels: Input channels (divisible by ``norm_groups``).
        out_channels: Output channels.
        norm_groups: GroupNorm groups (32 in the paper).
        dropout: Dropout probability before the convolution (0 in the paper).
    """

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        _check_groups(in_channels, norm_groups, "in_channels")
        self.block = nn.Sequential(
            nn.GroupNorm(norm_groups, in_channels),
            nn.SiLU(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: Features (N, in_channels, H, W).

        Returns:
            Features (N, out_channels, H, W).
        """
        return self.block(x)


class TimeResidualBlock(nn.Module):
    """DDPM residual block with an additive time embedding.

    ``h = block1(x) + mlp(temb)[..., None, None]``; ``h = block2(h)``;
    ``out = h + res_conv(x)``, where ``res_conv`` is a 1x1 conv when the channel count
    changes and the identity otherwise. ``mlp`` is Swish -> Linear(time_dim, out_channels).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        time_dim: Width of the time embedding fed to ``forward``.
        norm_groups: GroupNorm groups.
        dropout: Dropout probability in ``block2``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, time_dim: int, norm_groups: int = 32, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, out_channels))
        self.block1 = NormActConv(in_channels, out_channels, norm_groups)
        self.block2 = NormActConv(out_channels, out_channels, norm_groups, dropout)
        self.res_conv = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Args:
            x: Features (N, in_channels, H, W).
            temb: Time embedding (N, time_dim).

        Returns:
            Features (N, out_channels, H, W).
        """
        h = self.block1(x)
        h = h + self.mlp(temb)[:, :, None, None]
        h = self.block2(h)
        return h + self.res_conv(x)


class SelfAttention2d(nn.Module):
    """Single-head (by default) self-attention over all spatial positions, plus the input.

    ``n = GN(x)``; ``q, k, v`` are the three channel chunks (in that order) of a bias-free
    1x1 conv ``qkv(n)``; weights are ``softmax(q.k / sqrt(C))`` over the H*W key
    positions (``C`` = all channels, as the release scales); ``out`` (1x1 conv with bias)
    is applied to the attended values and added to ``x``.

    Args:
        channels: Channels C (divisible by ``norm_groups`` and ``num_heads``).
        norm_groups: GroupNorm groups.
        num_heads: Attention heads (1 in the paper).
    """

    def __init__(self, channels: int, norm_groups: int = 32, num_heads: int = 1) -> None:
        super().__init__()
        _check_groups(channels, norm_groups, "channels")
        if channels % check_int("num_heads", num_heads):
            raise ValueError(f"channels={channels} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=False)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: Features (N, C, H, W).

        Returns:
            Features (N, C, H, W).
        """
        c, h = x.shape[1], x.shape[2]
        # qkv channels are laid out (head, q|k|v, channel of the head), as in the release.
        q, k, v = rearrange(self.qkv(self.norm(x)), "n (heads qkv d) h w -> qkv n heads (h w) d",
                            heads=self.num_heads, qkv=3)
        # The release scales by sqrt(C) (all channels), whatever the number of heads.
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(c))  # (N, heads, HW, d)
        return self.out(rearrange(out, "n heads (h w) d -> n (heads d) h w", h=h)) + x


class ResidualAttentionBlock(nn.Module):
    """A ``TimeResidualBlock`` (``res_block``) optionally followed by attention (``attn``).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        time_dim: Time-embedding width.
        norm_groups: GroupNorm groups.
        dropout: Dropout probability of the residual block.
        with_attn: Append a ``SelfAttention2d`` on the output.
        num_heads: Attention heads.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        time_dim: int,
        norm_groups: int = 32,
        dropout: float = 0.0,
        with_attn: bool = False,
        num_heads: int = 1,
    ) -> None:
        super().__init__()
        self.res_block = TimeResidualBlock(in_channels, out_channels, time_dim, norm_groups, dropout)
        self.attn = SelfAttention2d(out_channels, norm_groups, num_heads) if with_attn else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Args:
            x: Features (N, in_channels, H, W).
            temb: Time embedding (N, time_dim).

        Returns:
            Features (N, out_channels, H, W).
        """
        x = self.res_block(x, temb)
        if self.attn is not None:
            x = self.attn(x)
        return x


class Downsample(nn.Module):
    """Conv3x3 with stride 2 and padding 1 (halves H and W).

    Args:
        channels: Input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: Features (N, C, H, W), H and W even.

        Returns:
            Features (N, C, H / 2, W / 2).
        """
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling (``nn.Upsample``) followed by a Conv3x3.

    Args:
        channels: Input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: Features (N, C, H, W).

        Returns:
            Features (N, C, 2H, 2W).
        """
        return self.conv(self.up(x))


def resnet_encoder_layers(in_channels: int, base_channels: int, num_downsampling: int) -> tuple[list[nn.Module], int]:
    """Encoder of a CycleGAN/pix2pix ResNet generator, as a list of layers.

    Reflection pad 3, Conv7x7 (``in_channels -> base_channels``), InstanceNorm (no affine),
    ReLU; then ``num_downsampling`` times Conv3x3 stride 2 (doubling the channels),
    InstanceNorm, ReLU. In an ``nn.Sequential`` the convs sit at indices 1, 4, 7, ... (the
    released generator's ``model.1``, ``model.4``, ``model.7``). Norms and activations are
    modules, so the paper's MAC rules count them.

    Args:
        in_channels: Input channels.
        base_channels: Channels after the 7x7 conv.
        num_downsampling: Number of stride-2 stages (each halves H and W).

    Returns:
        The layers and the number of output channels ``base_channels * 2**num_downsampling``.
    """
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(in_channels, base_channels, 7),
        nn.InstanceNorm2d(base_channels),
        nn.ReLU(True),
    ]
    ch = base_channels
    for _ in range(num_downsampling):
        layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ch * 2), nn.ReLU(True)]
        ch *= 2
    return layers, ch
