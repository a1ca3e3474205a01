"""The residual block of DARL's generator, built from switchable SPADE layers."""

from __future__ import annotations

import torch
from torch import nn

from darlkit.layers.segmap import prepare_segmap
from darlkit._validation import check_int
from darlkit.layers.spade import SwitchableSPADE

__all__ = ["SPADEResBlock"]


class SPADEResBlock(nn.Module):
    """SPADE residual block of DARL's generator (SPEC "Generator residual block").

    With `s` the segmap (or `None`) and `fmiddle = min(in_channels, out_channels)`::

        shortcut = conv_s(norm_s(x, s))   if in_channels != out_channels   else x
        dx = conv_0(LeakyReLU(norm_0(x, s)))      # in_channels -> fmiddle
        dx = conv_1(LeakyReLU(norm_1(dx, s)))     # fmiddle -> out_channels
        out = shortcut + dx

    `conv_0`/`conv_1` are 3x3 convs (padding 1) with bias; `conv_s` is a 1x1 conv without
    bias and `norm_s` has no activation. The norms are `SwitchableSPADE` layers; `norm_0` and
    `norm_1` carry the LeakyReLU (`activation="leaky_relu"`) so a kernel backend can fuse it.
    With `spectral_norm=True` every conv is wrapped by `torch.nn.utils.spectral_norm`
    (keys `weight_orig`, `weight_u`, `weight_v`; one power iteration per training-mode
    forward, stored vectors reused in eval mode).

    Names and shapes match the authors' checkpoint (e.g. `segment_fn.up_0.*` for 256 -> 128,
    `segment_fn.G_middle_0.*` for 256 -> 256).

    Args:
        in_channels: Input channels (>= 1).
        out_channels: Output channels (>= 1).
        label_nc: Segmap channels (2 in DARL).
        spectral_norm: Wrap the convs with spectral normalization (paper: `True`).
        hidden_channels: Hidden width of each SPADE's mask MLP (paper: 128).
        param_free_norm: Normalization of the SPADE layers: `"instance"` (paper), `"batch"`
            or `"group"` (see `SwitchableSPADE`).
        negative_slope: LeakyReLU slope (paper code: 0.2).
        backend: Kernel backend passed to the SPADE layers (see `darlkit.kernels.BACKENDS`).

    Shapes:
        - x: `(N, in_channels, H, W)`.
        - segmap: `None` or any segmap accepted by `prepare_segmap` (any spatial size,
          batch `N` or 1).
        - output: `(N, out_channels, H, W)`.

    Example:
        >>> block = SPADEResBlock(256, 128, label_nc=2)
        >>> block(torch.randn(1, 256, 16, 16), torch.randint(0, 2, (1, 64, 64))).shape
        torch.Size([1, 128, 16, 16])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        label_nc: int,
        spectral_norm: bool = True,
        hidden_channels: int = 128,
        param_free_norm: str = "instance",
        negative_slope: float = 0.2,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.out_channels = check_int("out_channels", out_channels)
        self.label_nc = check_int("label_nc", label_nc)
        if not isinstance(spectral_norm, bool):
            raise TypeError(f"spectral_norm must be a bool, got {type(spectral_norm).__name__}")
        self.learned_shortcut = in_channels != out_channels
        self.spectral_norm = spectral_norm
        fmiddle = min(in_channels, out_channels)
        self.conv_0 = nn.Conv2d(in_channels, fmiddle, kernel_size=3, padding=1)
        self.conv_1 = nn.Conv2d(fmiddle, out_channels, kernel_size=3, padding=1)
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        if spectral_norm:
            self.conv_0 = nn.utils.spectral_norm(self.conv_0)
            self.conv_1 = nn.utils.spectral_norm(self.conv_1)
            if self.learned_shortcut:
                self.conv_s = nn.utils.spectral_norm(self.conv_s)
        common = dict(
            label_nc=label_nc,
            hidden_channels=hidden_channels,
            param_free_norm=param_free_norm,
            negative_slope=negative_slope,
            backend=backend,
        )
        self.norm_0 = SwitchableSPADE(in_channels, activation="leaky_relu", **common)
        self.norm_1 = SwitchableSPADE(fmiddle, activation="leaky_relu", **common)
        if self.learned_shortcut:
            self.norm_s = SwitchableSPADE(in_channels, activation=None, **common)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the block.

        Args:
            x: `(N, in_channels, H, W)` features.
            segmap: `None` for the affine (segmentation) path, or a mask/segmap (see
                `prepare_segmap`) for the SPADE (synthesis) path.

        Returns:
            `(N, out_channels, H, W)`.

        Raises:
            TypeError: If `x` is not a floating tensor.
            ValueError: On a wrong shape of `x` or a bad segmap.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (N, in_channels={self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        s = segmap
        if s is None and self.norm_0.segmap_context is not None:
            s = self.norm_0.segmap_context.get()
        if s is not None:
            # Validate and resize once; the three norms then share the prepared map.
            s = prepare_segmap(
                s,
                self.label_nc,
                size=x.shape[-2:],
                dtype=self.norm_0.mlp_shared[0].weight.dtype,
                batch_size=x.shape[0],
                device=x.device,
                check_values=segmap is not None,
            )
        x_s = self.conv_s(self.norm_s(x, s, check_segmap=False)) if self.learned_shortcut else x
        dx = self.conv_0(self.norm_0(x, s, check_segmap=False))
        dx = self.conv_1(self.norm_1(dx, s, check_segmap=False))
        return x_s + dx

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"label_nc={self.label_nc}, spectral_norm={self.spectral_norm}, "
            f"learned_shortcut={self.learned_shortcut}"
        )
