"""Turn a plain image-to-image generator into one that runs with or without a mask.

`spadeify(model, label_nc)` replaces the chosen normalization layers of any network
(a CycleGAN/pix2pix ResNet generator, a U-Net, ...) by `SwitchableSPADE` layers and wraps
the result in a `SpadeifiedModel`, whose `forward(*args, segmap=None, **kwargs)` hands the
segmap to every inserted layer for the duration of the call. The user's model code is not
touched: the inserted layers are called as `norm(x)` exactly like the norms they replace.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from darlkit.layers.segmap import prepare_segmap
from darlkit._validation import check_int
from darlkit.layers.context import SegmapContext
from darlkit.kernels.dispatch import check_backend
from darlkit.layers.spade import SwitchableSPADE

__all__ = ["spadeify", "SpadeifiedModel", "NORM_TYPES"]

NORM_TYPES: dict[str, type[nn.Module]] = {
    "instance": nn.InstanceNorm2d,
    "batch": nn.BatchNorm2d,
    "group": nn.GroupNorm,
}
"""Accepted entries of `spadeify(norm_types=...)`, with the module class each one replaces."""


class SpadeifiedModel(nn.Module):
    """Wrapper that feeds a segmap to every `SwitchableSPADE` inside `model`.

    `forward(*args, segmap=None, **kwargs)` validates the segmap once (`prepare_segmap`,
    one-hot encoding label maps at their own size) and sets it in the wrapper's
    `segmap_context` (a `SegmapContext` that every `SwitchableSPADE` of `model` is bound to)
    for the duration of `model(*args, **kwargs)`, withdrawing it afterwards, also when the
    call raises. The segmap is held per thread, so concurrent
    calls from several threads (each with its own segmap) do not interfere, and calls nest.
    A layer that is given a segmap explicitly (`layer(x, s)`) uses that one.

    Usually built by `spadeify`; it can also wrap a model that already contains
    `SwitchableSPADE` layers (written by hand).

    Args:
        model: A module containing at least one `SwitchableSPADE` (not bound to another
            `SpadeifiedModel`); kept as `self.model` (not copied).
        label_nc: Segmap channels; every `SwitchableSPADE` in `model` must have this
            `label_nc`.

    Raises:
        TypeError: If `model` is not an `nn.Module`.
        ValueError: If `model` has no `SwitchableSPADE`, a layer's `label_nc` differs, or
            a layer is already bound to another `SpadeifiedModel`.

    Attributes:
        segmap_context: The `SegmapContext` of this wrapper's calls.

    Note:
        Do not give `model` a keyword argument named `segmap`: the wrapper consumes it.
        The state dict of the wrapper is `model`'s with the prefix `model.`.
    """

    def __init__(self, model: nn.Module, label_nc: int) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.label_nc = check_int("label_nc", label_nc)
        layers = [(n, m) for n, m in model.named_modules() if isinstance(m, SwitchableSPADE)]
        if not layers:
            raise ValueError("model must contain at least one SwitchableSPADE layer")
        for name, layer in layers:
            if layer.label_nc != label_nc:
                raise ValueError(
                    f"layer {name or '<root>'!r} has label_nc={layer.label_nc}, expected {label_nc}"
                )
            if layer.segmap_context is not None:
                raise ValueError(
                    f"layer {name or '<root>'!r} is already bound to another SpadeifiedModel; "
                    "wrap a copy of the model, or keep using the first wrapper"
                )
        self.model = model
        self.segmap_context = SegmapContext()
        for _, layer in layers:
            layer.bind_segmap_context(self.segmap_context)

    @property
    def spade_layers(self) -> dict[str, SwitchableSPADE]:
        """The `SwitchableSPADE` layers of `model`, by qualified name (as in `named_modules`)."""
        return {n: m for n, m in self.model.named_modules() if isinstance(m, SwitchableSPADE)}

    def forward(self, *args: Any, segmap: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """Run `model(*args, **kwargs)` with `segmap` given to every `SwitchableSPADE`.

        Args:
            *args: Positional arguments of the wrapped model.
            segmap: `None` (every S-SPADE uses its affine path, i.e. the original
                normalization), or a segmap as accepted by `prepare_segmap`: float
                `(N or 1, label_nc, H, W)` or integer/bool label map `(N or 1, H, W)` /
                `(N or 1, 1, H, W)` with values in `[0, label_nc)`, any spatial size (each
                layer resizes it to its own feature size with nearest interpolation).
            **kwargs: Keyword arguments of the wrapped model.

        Returns:
            Whatever the wrapped model returns.

        Raises:
            ValueError: On a bad segmap (see `prepare_segmap`), or a segmap batch that
                matches neither 1 nor a layer input's batch (raised by that layer).
        """
        if segmap is not None:
            segmap = prepare_segmap(segmap, self.label_nc)
        with self.segmap_context.use(segmap):
            return self.model(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"label_nc={self.label_nc}, spade_layers={len(self.spade_layers)}"


def _norm_kind(module: nn.Module) -> str | None:
    for kind, cls in NORM_TYPES.items():
        if isinstance(module, cls):
            return kind
    return None


def _factory_kwargs(module: nn.Module, fallback: nn.Module) -> dict[str, Any]:
    for source in (module, fallback):
        for t in (*source.parameters(), *source.buffers()):
            if t.is_floating_point():
                return {"device": t.device, "dtype": t.dtype}
    return {}


def _convert_norm(
    norm: nn.Module,
    kind: str,
    name: str,
    root: nn.Module,
    label_nc: int,
    hidden_channels: int,
    kernel_size: int,
    backend: str,
) -> SwitchableSPADE:
    if kind == "instance":
        if norm.track_running_stats:
            raise ValueError(
                f"cannot spadeify {name!r}: InstanceNorm2d with track_running_stats=True is not "
                "supported (S-SPADE's instance norm always uses the statistics of its input); "
                "exclude it with filter_fn or norm_types"
            )
        channels = norm.num_features
        extra: dict[str, Any] = {}
    elif kind == "group":
        channels = norm.num_channels
        extra = {"num_groups": norm.num_groups}
    else:
        channels = norm.num_features
        extra = {}
    new = SwitchableSPADE(
        channels,
        label_nc,
        hidden_channels=hidden_channels,
        kernel_size=kernel_size,
        param_free_norm=kind,
        eps=norm.eps,
        backend=backend,
        **extra,
    )
    if kind == "batch":
        track = norm.track_running_stats
        new.param_norm = nn.BatchNorm2d(
            channels, eps=norm.eps, momentum=norm.momentum, affine=True, track_running_stats=track
        )
        new.param_free_norm = nn.BatchNorm2d(
            channels, eps=norm.eps, momentum=norm.momentum, affine=False, track_running_stats=track
        )
        if track:
            with torch.no_grad():
                for target in (new.param_norm, new.param_free_norm):
                    target.running_mean.copy_(norm.running_mean)
                    target.running_var.copy_(norm.running_var)
                    target.num_batches_tracked.copy_(norm.num_batches_tracked)
    new = new.to(**_factory_kwargs(norm, root))
    if norm.affine:
        with torch.no_grad():
            new.param_norm.weight.copy_(norm.weight)
            new.param_norm.bias.copy_(norm.bias)
        new.param_norm.weight.requires_grad_(norm.weight.requires_grad)
        new.param_norm.bias.requires_grad_(norm.bias.requires_grad)
    new.train(norm.training)
    return new


def spadeify(
    model: nn.Module,
    label_nc: int,
    *,
    norm_types: Iterable[str] | str = ("instance", "batch", "group"),
    hidden_channels: int = 128,
    kernel_size: int = 3,
    backend: str = "auto",
    filter_fn: Callable[[str, nn.Module], bool] | None = None,
    inplace: bool = False,
) -> SpadeifiedModel:
    """Replace a model's normalization layers by `SwitchableSPADE` layers.

    Every `nn.InstanceNorm2d`, `nn.BatchNorm2d` and `nn.GroupNorm` (as selected by
    `norm_types` and `filter_fn`) becomes a `SwitchableSPADE` with `param_free_norm`
    `"instance"`, `"batch"` or `"group"` respectively. Layers inside existing
    `SwitchableSPADE` modules are left alone. A norm module used at several places is
    converted once and stays shared.

    What is preserved, so that the converted model without a segmap computes the original
    function:

    - Every parameter and buffer of every module that is not replaced is unchanged
      (bit-identical values under the same state-dict keys).
    - A replaced norm's affine `weight`/`bias` become `param_norm.weight`/`.bias` (keys
      `<name>.weight` -> `<name>.param_norm.weight`). A norm without affine gets an affine
      initialised to 1 and 0 (the same function). `requires_grad` of the affine is kept.
    - `eps`; GroupNorm's `num_groups`; BatchNorm's `momentum`, `track_running_stats`,
      `running_mean`, `running_var`, `num_batches_tracked` (copied to `param_norm`, used
      without a segmap, and to `param_free_norm`, the masked path's own statistics, which
      then evolve separately); train/eval mode; device and dtype.
    - The new mask MLP (`mlp_shared`, `mlp_gamma`, `mlp_beta`) has PyTorch's default conv
      initialisation; it only acts when a segmap is given.

    Not supported: `nn.InstanceNorm2d(track_running_stats=True)` (ValueError; exclude it
    with `filter_fn`). Replaced layers must receive 4-D `(N, C, H, W)` inputs at run time
    (a GroupNorm applied to other shapes raises there; exclude it with `filter_fn`).

    Args:
        model: The network to convert.
        label_nc: Segmap channels (e.g. 2 for a background/vessel mask).
        norm_types: Which norms to replace: a subset of `("instance", "batch", "group")`
            (or one of those strings).
        hidden_channels: Hidden width of each inserted mask MLP (paper: 128).
        kernel_size: Odd kernel size of the mask convs (paper: 3).
        backend: Kernel backend of the inserted layers (see `darlkit.kernels.BACKENDS`).
        filter_fn: Optional `filter_fn(qualified_name, module) -> bool`; only norms for
            which it returns `True` are replaced (names as in `model.named_modules()`).
        inplace: `False` (default) converts a deep copy and leaves `model` untouched;
            `True` converts `model` itself (the returned wrapper's `.model` is `model`).

    Returns:
        A `SpadeifiedModel` whose `.model` is the converted network; call it as
        `wrapper(*args, segmap=None, **kwargs)`.

    Raises:
        TypeError: If `model` is not an `nn.Module` or `filter_fn` is not callable.
        ValueError: On a bad `label_nc`, `norm_types`, `hidden_channels` or `kernel_size`,
            an unsupported norm (see above), or when no norm layer was selected.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.InstanceNorm2d(8), nn.ReLU())
        >>> wrapped = spadeify(net, label_nc=2)
        >>> x = torch.randn(1, 3, 16, 16)
        >>> wrapped(x).shape == wrapped(x, segmap=torch.randint(0, 2, (1, 16, 16))).shape
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, SpadeifiedModel):
        raise TypeError("model is already a SpadeifiedModel; spadeify its .model (a copy) instead")
    check_int("label_nc", label_nc)
    check_int("hidden_channels", hidden_channels)
    check_int("kernel_size", kernel_size)
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    kinds = (norm_types,) if isinstance(norm_types, str) else tuple(norm_types)
    bad = [k for k in kinds if k not in NORM_TYPES]
    if bad or not kinds:
        raise ValueError(
            f"norm_types must be a non-empty subset of {tuple(NORM_TYPES)}, got {norm_types!r}"
        )
    if filter_fn is not None and not callable(filter_fn):
        raise TypeError(f"filter_fn must be callable, got {type(filter_fn).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be a bool, got {type(inplace).__name__}")
    check_backend(backend)

    target = model if inplace else copy.deepcopy(model)
    converted: dict[int, SwitchableSPADE] = {}

    def selected(name: str, module: nn.Module) -> str | None:
        kind = _norm_kind(module)
        if kind is None or kind not in kinds:
            return None
        if filter_fn is not None and not filter_fn(name, module):
            return None
        return kind

    def convert(name: str, module: nn.Module, kind: str) -> SwitchableSPADE:
        if id(module) not in converted:
            converted[id(module)] = _convert_norm(
                module, kind, name or "<root>", target, label_nc, hidden_channels, kernel_size, backend
            )
        return converted[id(module)]

    plan: list[tuple[nn.Module, str, str, nn.Module, str]] = []
    seen: set[int] = set()

    def walk(parent: nn.Module, prefix: str) -> None:
        if id(parent) in seen:  # a shared submodule: its children are already planned
            return
        seen.add(id(parent))
        # ``_modules`` rather than ``named_children()``: the latter hides a second name of a
        # module shared within one parent.
        for child_name, child in list(parent._modules.items()):
            if child is None:
                continue
            full = f"{prefix}.{child_name}" if prefix else child_name
            if isinstance(child, SwitchableSPADE):
                continue
            kind = selected(full, child)
            if kind is not None:
                plan.append((parent, child_name, full, child, kind))
            else:
                walk(child, full)

    root_kind = selected("", target)
    if root_kind is not None:
        target = convert("", target, root_kind)
    else:
        walk(target, "")
        # Build every replacement first (this is where unsupported norms raise), then swap,
        # so a failure leaves an in-place model untouched.
        replacements = [(parent, child_name, convert(full, child, kind)) for parent, child_name, full, child, kind in plan]
        for parent, child_name, new in replacements:
            setattr(parent, child_name, new)
    if not converted:
        raise ValueError(
            f"spadeify found no norm layer to replace (norm_types={kinds}"
            f"{', with filter_fn' if filter_fn is not None else ''})"
        )
    return SpadeifiedModel(target, label_nc)
