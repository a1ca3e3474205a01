"""Segmentation-map (mask) helpers shared by the SPADE layers.

A *segmap* is the spatial condition of a SPADE layer. darlkit accepts two forms:

- a float map of shape `(N, label_nc, H, W)` (for example a one-hot map or soft
  probabilities), used as is;
- an integer (or bool) label map of shape `(N, H, W)` or `(N, 1, H, W)` with values in
  `[0, label_nc)`, which is one-hot encoded into `label_nc` channels.

Either form may have any spatial size: it is resized to the feature map with nearest
interpolation, after one-hot encoding (so an integer label map and its one-hot encoding give
bit-identical results).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from darlkit._validation import check_int

__all__ = ["prepare_segmap", "is_label_map"]


def is_label_map(segmap: torch.Tensor) -> bool:
    """Whether `segmap` is an integer/bool label map (rather than a float map).

    Args:
        segmap: Any tensor.

    Returns:
        `True` for bool and integer dtypes, `False` for floating dtypes.
    """
    return not (segmap.is_floating_point() or segmap.is_complex())


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def _check_size(size: Sequence[int] | torch.Size | None) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be a pair (H, W) of positive ints, got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be a pair (H, W) of positive ints, got {size!r}")
    return h, w


def prepare_segmap(
    segmap: torch.Tensor,
    label_nc: int,
    size: Sequence[int] | torch.Size | None = None,
    dtype: torch.dtype | None = None,
    *,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    check_values: bool = True,
) -> torch.Tensor:
    """Validate a segmap and turn it into a float map of `label_nc` channels at `size`.

    Integer/bool label maps are one-hot encoded (channel `k` is 1 where the label is `k`);
    float maps are used as they are. The result is then resized to `size` with nearest
    interpolation (skipped when it already has that size).

    Args:
        segmap: Float map `(N, label_nc, H, W)`, or integer/bool label map `(N, H, W)` or
            `(N, 1, H, W)` with values in `[0, label_nc)`. Any `H, W >= 1`.
        label_nc: Number of label channels (>= 1).
        size: Target spatial size `(H_out, W_out)`; `None` keeps the input size.
        dtype: Floating dtype of the result; `None` keeps a float map's dtype and gives
            float32 for label maps.
        batch_size: If given, the segmap's batch must be `batch_size` or 1 (a batch of 1
            is broadcast by the SPADE layers; it is not expanded here).
        device: Device of the result; `None` keeps the segmap's device.
        check_values: Check that label values lie in `[0, label_nc)` and that a float map
            is finite. These checks read a value back from the device (a synchronisation on
            GPU); pass `False` when the segmap was already validated. The checks are also
            skipped while tracing under `torch.compile` (the label one-hot encoding then
            gives all-zero rows for out-of-range labels).

    Returns:
        Float tensor `(N, label_nc, H_out, W_out)` (`N` as given, 1 included).

    Raises:
        TypeError: If `segmap` is not a tensor, is complex, or `dtype` is not floating.
        ValueError: On a wrong number of dimensions or channels, a batch that does not match
            `batch_size`, a label outside `[0, label_nc)`, a non-finite float value, an
            empty map, or a bad `label_nc`/`size`.
    """
    if not isinstance(segmap, torch.Tensor):
        raise TypeError(f"segmap must be a torch.Tensor, got {type(segmap).__name__}")
    check_int("label_nc", label_nc)
    if segmap.is_complex():
        raise TypeError(f"segmap must be a real (float, integer or bool) tensor, got {segmap.dtype}")
    if dtype is not None and not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    target = _check_size(size)
    checking = check_values and not _is_compiling()

    if is_label_map(segmap):
        if segmap.dim() == 4:
            if segmap.shape[1] != 1:
                raise ValueError(
                    "an integer label map must have shape (N, H, W) or (N, 1, H, W), got "
                    f"{tuple(segmap.shape)}; pass a float map for (N, label_nc, H, W)"
                )
            labels = segmap[:, 0]
        elif segmap.dim() == 3:
            labels = segmap
        else:
            raise ValueError(
                "an integer label map must have shape (N, H, W) or (N, 1, H, W), got "
                f"{tuple(segmap.shape)}"
            )
        if labels.numel() == 0:
            raise ValueError(f"segmap must not be empty, got shape {tuple(segmap.shape)}")
        if device is not None:
            labels = labels.to(device)
        if checking and labels.dtype != torch.bool:
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= label_nc:
                raise ValueError(
                    f"segmap labels must lie in [0, {label_nc}) (label_nc={label_nc}), "
                    f"got values in [{lo}, {hi}]"
                )
        elif checking and label_nc < 2 and bool(labels.any()):
            raise ValueError(f"segmap labels must lie in [0, {label_nc}) (label_nc={label_nc}), got True")
        classes = torch.arange(label_nc, device=labels.device).view(1, label_nc, 1, 1)
        out = (labels.long().unsqueeze(1) == classes).to(dtype or torch.float32)
    else:
        if segmap.dim() != 4:
            hint = (
                "; a float (N, H, W) mask must be converted to an integer label map first "
                "(e.g. (mask > 0).long())"
                if segmap.dim() == 3
                else ""
            )
            raise ValueError(
                f"a float segmap must have shape (N, label_nc={label_nc}, H, W), got "
                f"{tuple(segmap.shape)}{hint}"
            )
        if segmap.shape[1] != label_nc:
            hint = (
                "; for a label map use an integer dtype (e.g. segmap.long())"
                if segmap.shape[1] == 1
                else ""
            )
            raise ValueError(
                f"segmap must have label_nc={label_nc} channels, got {segmap.shape[1]} "
                f"(shape {tuple(segmap.shape)}){hint}"
            )
        if segmap.numel() == 0:
            raise ValueError(f"segmap must not be empty, got shape {tuple(segmap.shape)}")
        out = segmap
        if device is not None:
            out = out.to(device)
        if dtype is not None:
            out = out.to(dtype)
        if checking and not bool(torch.isfinite(out).all()):
            raise ValueError("segmap must be finite, got NaN or inf values")

    if batch_size is not None and out.shape[0] not in (1, batch_size):
        raise ValueError(
            f"segmap batch size must be 1 or match x's batch size {batch_size}, got {out.shape[0]}"
        )
    if target is not None and tuple(out.shape[-2:]) != target:
        out = F.interpolate(out, size=target, mode="nearest")
    return out
