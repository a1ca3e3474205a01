"""The diffusion module epsilon_theta: a DDPM U-Net (paper Table 4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from darlkit._validation import check_int, check_ints
from darlkit.nets.blocks import Downsample, ResidualAttentionBlock, SinusoidalTimeEmbedding, Upsample, NormActConv
from darlkit.nets.config import ConfigMixin
from darlkit.nets.init import _apply_default_init

__all__ = ["DiffusionUNet"]


def _check_float_image(x: object, name: str, channels: int, multiple: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % multiple or w % multiple or h == 0 or w == 0:
        raise ValueError(f"{name} height and width must be positive multiples of {multiple}, got {(h, w)}")
    # A data-dependent check (a host sync): skipped while tracing, exporting or compiling, where
    # it cannot be evaluated; DARL's public API checks its inputs once at the boundary.
    if not _capturing() and torch.isnan(x).any():
        raise ValueError(f"{name} contains NaN")
    return x


def _capturing() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()


class DiffusionUNet(ConfigMixin, nn.Module):
    """DDPM U-Net epsilon_theta(x_t, t) predicting the noise of a noisy image.

    Layout (defaults = paper Table 4 / the release): Conv3x3 stem to ``base_channels``;
    per level ``num_res_blocks`` residual blocks (self-attention after each where the
    level's resolution, counted from ``image_size``, is in ``attn_resolutions``) and a
    stride-2 conv except at the last level; middle = residual block + attention, residual
    block; up path in reverse with ``num_res_blocks + 1`` blocks per level on skip
    concatenations and nearest x2 + Conv3x3 between levels; GroupNorm-Swish-Conv3x3 head.
    Time: sinusoidal embedding of width ``base_channels`` -> Linear(4 * base) -> Swish ->
    Linear(base), added inside every residual block.

    Attribute names (``time_mlp``, ``downs``, ``mid``, ``ups``, ``final_conv``) equal the
    release's, so its ``denoise_fn.*`` keys load without renaming.

    Args:
        in_channels: Image channels (1).
        out_channels: Predicted-noise channels (1).
        base_channels: Width of the first level (64).
        channel_mults: Per-level width multipliers ((1, 1, 2, 2, 4, 4)).
        num_res_blocks: Residual blocks per level on the way down (2).
        attn_resolutions: Resolutions (relative to ``image_size``) that get attention ((16,)).
        image_size: Nominal input size used only to place attention (256). Inputs of other
            sizes are accepted; attention stays at the same levels.
        norm_groups: GroupNorm groups (32).
        dropout: Dropout probability in the second conv of each residual block (0).
        num_heads: Attention heads (1).
        init: Weight initialisation scheme (``"orthogonal"``, see ``init_weights``) or
            ``None`` for PyTorch defaults.
        init_gain: Gain of the initialisation (1.0).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 64,
        channel_mults: Sequence[int] = (1, 1, 2, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        image_size: int = 256,
        norm_groups: int = 32,
        dropout: float = 0.0,
        num_heads: int = 1,
        init: str | None = "orthogonal",
        init_gain: float = 1.0,
    ) -> None:
        super().__init__()
        check_ints(
            1,
            in_channels=in_channels,
            out_channels=out_channels,
            base_channels=base_channels,
            num_res_blocks=num_res_blocks,
            image_size=image_size,
        )
        channel_mults = tuple(channel_mults)
        if not channel_mults:
            raise ValueError("channel_mults must be a non-empty sequence of positive ints, got ()")
        channel_mults = tuple(check_int(f"channel_mults[{i}]", m) for i, m in enumerate(channel_mults))
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channel_mults = channel_mults
        self.attn_resolutions = tuple(attn_resolutions)
        self.image_size = image_size
        self.num_levels = len(channel_mults)

        time_dim = base_channels
        self.time_mlp = nn.Sequential(
            SinusoidalTimeEmbedding(base_channels),
            nn.Linear(base_channels, base_channels * 4),
            nn.SiLU(),
            nn.Linear(base_channels * 4, time_dim),
        )

        res = image_size
        pre = base_channels
        skips = [pre]
        downs: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 3, padding=1)]
        for level, mult in enumerate(channel_mults):
            width = base_channels * mult
            use_attn = res in self.attn_resolutions
            for _ in range(num_res_blocks):
                downs.append(ResidualAttentionBlock(pre, width, time_dim, norm_groups, dropout, use_attn, num_heads))
                skips.append(width)
                pre = width
            if level != self.num_levels - 1:
                downs.append(Downsample(pre))
                skips.append(pre)
                res //= 2
        self.downs = nn.ModuleList(downs)

        self.mid = nn.ModuleList(
            [
                ResidualAttentionBlock(pre, pre, time_dim, norm_groups, dropout, True, num_heads),
                ResidualAttentionBlock(pre, pre, time_dim, norm_groups, dropout, False, num_heads),
            ]
        )

        ups: list[nn.Module] = []
        for level in reversed(range(self.num_levels)):
            width = base_channels * channel_mults[level]
            use_attn = res in self.attn_resolutions
            for _ in range(num_res_blocks + 1):
                ups.append(
                    ResidualAttentionBlock(pre + skips.pop(), width, time_dim, norm_groups, dropout, use_attn, num_heads)
                )
                pre = width
            if level != 0:
                ups.append(Upsample(pre))
                res *= 2
        self.ups = nn.ModuleList(ups)
        self.final_conv = NormActConv(pre, out_channels, norm_groups)
        _apply_default_init(self, init, init_gain)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (``2 ** (levels - 1)``)."""
        return 2 ** (self.num_levels - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | int | float) -> torch.Tensor:
        """Predict the noise in ``x``.

        Args:
            x: Noisy images (N, in_channels, H, W), float, H and W multiples of
                ``size_multiple`` (32 by default); intensities nominally in [-1, 1].
            t: Diffusion steps: a tensor of shape (N,) or (), or a Python number (the same
                step for the whole batch). Integer steps in [0, T) are the normal use.

        Returns:
            Predicted noise (N, out_channels, H, W), float, unbounded.

        Raises:
            TypeError: If ``x`` is not a tensor.
            ValueError: On wrong rank, channels, dtype, size or NaN values, or a ``t``
                whose size does not match the batch.
        """
        _check_float_image(x, "x", self.in_channels, self.size_multiple)
        n = x.shape[0]
        if not isinstance(t, torch.Tensor):
            if isinstance(t, bool) or not isinstance(t, (int, float)):
                raise TypeError(f"t must be a tensor or a number, got {type(t).__name__}")
            t = torch.full((n,), t, device=x.device)
        t = t.to(x.device).reshape(-1)
        if t.numel() == 1 and n != 1:
            t = t.expand(n)
        if t.numel() != n:
            raise ValueError(f"t must have one step per image ({n}), got shape {tuple(t.shape)}")
        temb = self.time_mlp(t).to(x.dtype)

        feats = []
        for layer in self.downs:
            x = layer(x, temb) if isinstance(layer, ResidualAttentionBlock) else layer(x)
            feats.append(x)
        for layer in self.mid:
            x = layer(x, temb)
        for layer in self.ups:
            if isinstance(layer, ResidualAttentionBlock):
                x = layer(torch.cat([x, feats.pop()], dim=1), temb)
            else:
                x = layer(x)
        return self.final_conv(x)
