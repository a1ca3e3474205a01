"""Switchable SPADE (S-SPADE): a normalization that is SPADE with a mask and affine without.

DARL's generator uses one network for both directions: with a vessel mask it synthesises an
angiogram (SPADE modulation by the mask), without a mask it segments (plain affine
normalization). This module implements that switch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from darlkit import kernels
from darlkit._validation import check_int
from darlkit.layers.context import SegmapContext
from darlkit.layers.segmap import prepare_segmap

__all__ = ["SwitchableSPADE", "PARAM_FREE_NORMS", "ACTIVATIONS", "default_num_groups"]

PARAM_FREE_NORMS: tuple[str, ...] = ("instance", "batch", "group")
"""Accepted values of `param_free_norm`."""
ACTIVATIONS: tuple[str, ...] = ("leaky_relu",)
"""Accepted values of `activation` (besides `None`)."""


def default_num_groups(num_features: int, max_groups: int = 32) -> int:
    """The group count used for `param_free_norm="group"` when `num_groups` is not given.

    The largest divisor of `num_features` that is at most `max_groups` (32, as in the
    DDPM U-Net's GroupNorm(32)); e.g. 256 -> 32, 48 -> 24, 7 -> 7, 34 -> 17.

    Args:
        num_features: Channel count (>= 1).
        max_groups: Upper bound on the group count (>= 1).

    Returns:
        An int `g` with `1 <= g <= max_groups` and `num_features % g == 0`.
    """
    if num_features < 1 or max_groups < 1:
        raise ValueError(
            f"num_features and max_groups must be >= 1, got {num_features} and {max_groups}"
        )
    return max(g for g in range(1, min(num_features, max_groups) + 1) if num_features % g == 0)


def _batch_norm_functional(bn: nn.BatchNorm2d, x: torch.Tensor, weight, bias) -> torch.Tensor:
    """`nn.BatchNorm2d.forward` written with `F.batch_norm` on `bn`'s buffers (no module call)."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    update = not bn.training or bn.track_running_stats
    return F.batch_norm(
        x,
        bn.running_mean if update else None,
        bn.running_var if update else None,
        weight,
        bias,
        use_batch_stats,
        factor,
        bn.eps,
    )


class SwitchableSPADE(nn.Module):
    """Switchable SPADE normalization (DARL's S-SPADE).

    With a segmap `s`:
    `out = act(norm(x) * (1 + gamma(s)) + beta(s))`, where `norm` is parameter free (no affine),
    `s` is one-hot encoded if it is a label map and resized to `x`'s size with nearest
    interpolation, and `gamma`, `beta` come from
    `mlp_shared = Sequential(Conv(label_nc -> hidden_channels, k, padding k // 2), ReLU)`
    followed by the convs `mlp_gamma`, `mlp_beta` (`hidden_channels -> num_features`).

    Without a segmap: `out = act(param_norm(x))`, the same normalization with its own
    learnable per-channel affine (`param_norm.weight`, `param_norm.bias`).

    `act` is the identity (`activation=None`) or LeakyReLU with slope `negative_slope`
    (`activation="leaky_relu"`), fused into the normalization kernel where a backend allows.

    Normalizations (`param_free_norm`):

    - `"instance"` (the paper's): statistics per sample and channel over H x W.
      `param_norm` is `nn.InstanceNorm2d(num_features, affine=True)` (keys
      `param_norm.weight`/`.bias`, no running statistics). Both paths are computed by
      `darlkit.kernels.spade_norm` / `darlkit.kernels.instance_norm_act` with `backend`.
    - `"batch"`: batch statistics in training, running statistics in eval, in eager torch ops.
      `param_norm` is `nn.BatchNorm2d(num_features, affine=True)`; the masked path keeps its
      own running statistics in `param_free_norm = nn.BatchNorm2d(num_features, affine=False)`
      (the two paths see differently distributed inputs). Both are evaluated with
      `F.batch_norm` on those modules' buffers, honouring their `momentum`, `eps`,
      `track_running_stats` and train/eval mode.
    - `"group"`: `num_groups` groups per sample, in eager torch ops. `param_norm` is
      `nn.GroupNorm(num_groups, num_features, affine=True)`.

    The norm submodules hold parameters and buffers only: `forward` never calls them as
    modules (so a FLOPs counter sees this layer as one unit).

    Submodule and parameter names match the authors' released checkpoint:
    `param_norm.{weight,bias}`, `mlp_shared.0.{weight,bias}`, `mlp_gamma.{weight,bias}`,
    `mlp_beta.{weight,bias}`.

    Args:
        num_features: Channels `C` of the normalized input (>= 1).
        label_nc: Channels of the (one-hot) segmap (>= 1); 2 in DARL (background, vessel).
        hidden_channels: Width of the shared conv (paper: 128).
        kernel_size: Odd kernel size of the three mask convs (paper: 3); padding is
            `kernel_size // 2`, so sizes are kept.
        param_free_norm: `"instance"` (paper), `"batch"` or `"group"`.
        eps: Variance epsilon (> 0) of both paths.
        activation: `None` or `"leaky_relu"`, applied to the output of both paths.
        negative_slope: LeakyReLU slope used when `activation="leaky_relu"` (paper: 0.2).
        backend: Kernel backend for the instance-norm computations, passed to
            `darlkit.kernels` unchanged (one of `darlkit.kernels.BACKENDS`, e.g. `"auto"`
            or `"eager"`). Ignored by `"batch"`/`"group"`, which always run eager ops.
        num_groups: Group count for `param_free_norm="group"`; must divide `num_features`.
            `None` uses `default_num_groups(num_features)` (largest divisor <= 32). Must be
            `None` for the other norms.

    Attributes:
        norm_type: The `param_free_norm` string.
        num_groups: Group count (`"group"` only, else `None`).

    Shapes:
        - x: `(N, C, H, W)`, floating point, any memory format.
        - segmap: see `prepare_segmap`: float `(N or 1, label_nc, H', W')` or integer/bool
          `(N or 1, H', W')` / `(N or 1, 1, H', W')` with values in `[0, label_nc)`. A
          batch of 1 is broadcast over `x`'s batch.
        - output: like `x` (channels_last is kept).

    Example:
        >>> layer = SwitchableSPADE(64, label_nc=2)
        >>> x = torch.randn(2, 64, 32, 32)
        >>> mask = torch.randint(0, 2, (2, 128, 128))
        >>> layer(x, mask).shape, layer(x).shape
        (torch.Size([2, 64, 32, 32]), torch.Size([2, 64, 32, 32]))
    """

    def __init__(
        self,
        num_features: int,
        label_nc: int,
        hidden_channels: int = 128,
        kernel_size: int = 3,
        param_free_norm: str = "instance",
        eps: float = 1e-5,
        activation: str | None = None,
        negative_slope: float = 0.2,
        backend: str = "auto",
        *,
        num_groups: int | None = None,
    ) -> None:
        super().__init__()
        self.num_features = check_int("num_features", num_features)
        self.label_nc = check_int("label_nc", label_nc)
        self.hidden_channels = check_int("hidden_channels", hidden_channels)
        self.kernel_size = check_int("kernel_size", kernel_size)
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (to keep the size), got {kernel_size}")
        if param_free_norm not in PARAM_FREE_NORMS:
            raise ValueError(
                f"param_free_norm must be one of {PARAM_FREE_NORMS}, got {param_free_norm!r}"
            )
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (eps > 0 and math.isfinite(eps)):
            raise ValueError(f"eps must be a positive finite float, got {eps!r}")
        if activation is not None and activation not in ACTIVATIONS:
            raise ValueError(f"activation must be None or one of {ACTIVATIONS}, got {activation!r}")
        if (
            isinstance(negative_slope, bool)
            or not isinstance(negative_slope, (int, float))
            or not math.isfinite(negative_slope)
        ):
            raise ValueError(f"negative_slope must be a finite float, got {negative_slope!r}")
        kernels.check_backend(backend)
        if param_free_norm == "group":
            if num_groups is None:
                num_groups = default_num_groups(num_features)
            check_int("num_groups", num_groups)
            if num_features % num_groups != 0:
                raise ValueError(
                    f"num_groups ({num_groups}) must divide num_features ({num_features})"
                )
        elif num_groups is not None:
            raise ValueError(
                f"num_groups is only accepted with param_free_norm='group', got "
                f"num_groups={num_groups} with param_free_norm={param_free_norm!r}"
            )

        self.norm_type = param_free_norm
        self.num_groups = num_groups
        self.eps = float(eps)
        self.activation = activation
        self.negative_slope = float(negative_slope)
        self.backend = backend
        self.segmap_context: SegmapContext | None = None

        # Registration order matches the released checkpoint's key order.
        if param_free_norm == "instance":
            self.param_norm: nn.Module = nn.InstanceNorm2d(num_features, eps=self.eps, affine=True)
        elif param_free_norm == "batch":
            self.param_norm = nn.BatchNorm2d(num_features, eps=self.eps, affine=True)
        else:
            self.param_norm = nn.GroupNorm(num_groups, num_features, eps=self.eps, affine=True)
        pad = kernel_size // 2
        self.mlp_shared = nn.Sequential(
            nn.Conv2d(label_nc, hidden_channels, kernel_size, padding=pad), nn.ReLU()
        )
        self.mlp_gamma = nn.Conv2d(hidden_channels, num_features, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden_channels, num_features, kernel_size, padding=pad)
        if param_free_norm == "batch":
            self.param_free_norm = nn.BatchNorm2d(num_features, eps=self.eps, affine=False)

    @property
    def _slope(self) -> float | None:
        return self.negative_slope if self.activation == "leaky_relu" else None

    def _check_x(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"x must have num_features={self.num_features} channels, got {x.shape[1]} "
                f"(shape {tuple(x.shape)})"
            )
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"x must not be empty, got shape {tuple(x.shape)}")

    def forward(
        self,
        x: torch.Tensor,
        segmap: torch.Tensor | None = None,
        *,
        check_segmap: bool = True,
    ) -> torch.Tensor:
        """Normalize `x`, modulated by `segmap` when one is given.

        Args:
            x: Features `(N, num_features, H, W)`, floating point.
            segmap: `None` (affine path), or a segmap as accepted by `prepare_segmap`
                (float `(N or 1, label_nc, H', W')` or integer/bool label map
                `(N or 1, H', W')` / `(N or 1, 1, H', W')`, values in `[0, label_nc)`).
                When `None` and the layer sits inside a `SpadeifiedModel`, the segmap given
                to that wrapper's call is used.
            check_segmap: Run `prepare_segmap`'s value checks (label range, finiteness).
                `False` skips them for a segmap that was already validated (as
                `SPADEResBlock` does); shapes are always checked.

        Returns:
            Tensor of `x`'s shape (channels_last if `x` is), dtype of `x` (float32 under
            autocast for the instance path).

        Raises:
            TypeError: If `x` is not a floating tensor.
            ValueError: On a wrong shape/channel count of `x`, or a bad segmap (see
                `prepare_segmap`).
        """
        self._check_x(x)
        if segmap is None and self.segmap_context is not None:
            segmap = self.segmap_context.get()
            check_segmap = False  # validated by the wrapper
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        if segmap is None:
            out = self._affine(x)
        else:
            out = self._modulated(x, segmap, check_segmap, channels_last)
        if channels_last and not out.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def bind_segmap_context(self, context: SegmapContext | None) -> None:
        """Read the segmap from ``context`` when called without one (``None``: unbind).

        Args:
            context: A :class:`~darlkit.layers.SegmapContext`, or ``None``.

        Raises:
            TypeError: If ``context`` is neither.
            ValueError: If the layer is already bound to another context (unbind it first).
        """
        if context is not None and not isinstance(context, SegmapContext):
            raise TypeError(f"context must be a SegmapContext or None, got {type(context).__name__}")
        if context is not None and self.segmap_context not in (None, context):
            raise ValueError("this SwitchableSPADE is already bound to another SegmapContext")
        self.segmap_context = context

    paper_mac_exclusive_children: tuple[str, ...] = ("param_norm", "param_free_norm")
    """Children whose own paper-convention counts :meth:`paper_macs` replaces (``darlkit.flops``)."""

    def paper_macs(self, args: tuple, kwargs: dict, out: Any) -> int:
        """Paper-convention MACs of one call (the norm only), the rule ``darlkit.flops`` uses.

        The layer evaluates its normalisation with functional (fused) kernels instead of ``nn``
        norm modules, so a module-hook counter would miss what the released eager layer counted:
        with a segmap, the parameter-free ``InstanceNorm2d`` (no affine) counts ``numel(x)``;
        without one, the affine ``param_norm`` counts ``2 * numel(x)``. The ``mlp_*`` children
        count themselves; the fused LeakyReLU counts nothing (the release used the functional
        ``F.leaky_relu``).

        Args:
            args: Positional call arguments ``(x, [segmap])``; ``x`` is (N, C, H, W).
            kwargs: Keyword call arguments (``segmap`` may be given here).
            out: The output (unused).

        Returns:
            ``numel(x)`` with a segmap (given or from the bound context), else ``2 * numel(x)``.
        """
        x = args[0]
        segmap = args[1] if len(args) > 1 else kwargs.get("segmap")
        if segmap is None and self.segmap_context is not None:
            segmap = self.segmap_context.get()
        n = x.numel() if isinstance(x, torch.Tensor) else 0
        return n if segmap is not None else 2 * n

    def _affine(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.param_norm
        if self.norm_type == "instance":
            return kernels.instance_norm_act(
                x,
                norm.weight,
                norm.bias,
                eps=self.eps,
                negative_slope=self._slope,
                backend=self.backend,
            )
        if self.norm_type == "batch":
            out = _batch_norm_functional(norm, x, norm.weight, norm.bias)
        else:
            out = F.group_norm(x, self.num_groups, norm.weight, norm.bias, self.eps)
        return self._act(out)

    def _act(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.activation is None else F.leaky_relu(y, self.negative_slope)

    def _modulated(
        self, x: torch.Tensor, segmap: torch.Tensor, check: bool, channels_last: bool
    ) -> torch.Tensor:
        weight = self.mlp_shared[0].weight
        s = prepare_segmap(
            segmap,
            self.label_nc,
            size=x.shape[-2:],
            dtype=weight.dtype,
            batch_size=x.shape[0],
            device=x.device,
            check_values=check,
        )
        if channels_last:
            s = s.contiguous(memory_format=torch.channels_last)
        actv = self.mlp_shared(s)
        gamma = self.mlp_gamma(actv)
        beta = self.mlp_beta(actv)
        if gamma.shape[0] != x.shape[0]:  # a batch-1 segmap: broadcast the modulation
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            gamma = gamma.expand(x.shape[0], -1, -1, -1).contiguous(memory_format=fmt)
            beta = beta.expand(x.shape[0], -1, -1, -1).contiguous(memory_format=fmt)
        if self.norm_type == "instance":
            return kernels.spade_norm(
                x, gamma, beta, eps=self.eps, negative_slope=self._slope, backend=self.backend
            )
        if self.norm_type == "batch":
            normalized = _batch_norm_functional(self.param_free_norm, x, None, None)
        else:
            normalized = F.group_norm(x, self.num_groups, None, None, self.eps)
        return self._act(normalized * (1 + gamma) + beta)

    def extra_repr(self) -> str:
        parts = [
            f"num_features={self.num_features}",
            f"label_nc={self.label_nc}",
            f"hidden_channels={self.hidden_channels}",
            f"kernel_size={self.kernel_size}",
            f"param_free_norm={self.norm_type!r}",
        ]
        if self.norm_type == "group":
            parts.append(f"num_groups={self.num_groups}")
        parts += [
            f"eps={self.eps:g}",
            f"activation={self.activation!r}",
        ]
        if self.activation is not None:
            parts.append(f"negative_slope={self.negative_slope:g}")
        parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)
