"""Polyphase (sub-pixel) decomposition of images.

DARL trains on 256x256 crops that take every second pixel of a 512x512 angiogram with a
random phase, and segments a 512x512 image as its four polyphase 256x256 sub-images. These
two functions are the exact inverse pair used for both.
"""

from __future__ import annotations

import torch
from einops import rearrange

from darlkit._validation import check_int

__all__ = ["POLYPHASE_OFFSETS", "polyphase_split", "polyphase_merge"]

POLYPHASE_OFFSETS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (1, 0), (1, 1))
"""The four (row, column) phase offsets of a factor-2 decomposition, in the order that
`polyphase_split` stacks them and `polyphase_merge` expects them."""


def _check_image(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}")


def polyphase_split(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Split images into their ``factor**2`` polyphase sub-images, stacked along the batch.

    Sub-image ``k`` (for offsets ``(i, j) = divmod(k, factor)``) is ``x[..., i::factor, j::factor]``.
    The result is batch-major: the ``factor**2`` phases of image ``n`` are rows
    ``n * factor**2 ... (n + 1) * factor**2 - 1``, so all phases run as one batch.

    Args:
        x: Images of shape (N, C, H, W), any dtype; H and W divisible by ``factor``.
        factor: Sub-sampling factor (2 in DARL).

    Returns:
        Tensor of shape (N * factor**2, C, H // factor, W // factor).

    Raises:
        TypeError: If ``factor`` is not an int.
        ValueError: If ``x`` is not 4-D, ``factor < 1`` or H, W are not divisible by ``factor``.
    """
    _check_image(x, "x")
    factor = check_int("factor", factor)
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"x spatial size {(h, w)} must be divisible by factor={factor}")
    return rearrange(x, "n c (h i) (w j) -> (n i j) c h w", i=factor, j=factor)


def polyphase_merge(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Interleave polyphase sub-images back into full-resolution images.

    Exact inverse of :func:`polyphase_split`: ``polyphase_merge(polyphase_split(x)) == x``.

    Args:
        x: Sub-images of shape (N * factor**2, C, h, w) in :func:`polyphase_split` order.
        factor: Sub-sampling factor (2 in DARL).

    Returns:
        Tensor of shape (N, C, h * factor, w * factor).

    Raises:
        TypeError: If ``factor`` is not an int.
        ValueError: If ``x`` is not 4-D, ``factor < 1`` or its batch is not a multiple of
            ``factor**2``.
    """
    _check_image(x, "x")
    factor = check_int("factor", factor)
    if x.shape[0] % (factor * factor):
        raise ValueError(f"x batch {x.shape[0]} must be a multiple of factor**2={factor * factor}")
    return rearrange(x, "(n i j) c h w -> n c (h i) (w j)", i=factor, j=factor)
