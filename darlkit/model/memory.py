"""Memory needed by a segmentation call, estimated before it runs, and the memory available.

:func:`estimate_segment_memory` adds the image-sized buffers of ``segment_tiled`` to the
activations of one batch of tiles (measured once per model by a forward pass with hooks on a
small probe image and scaled by the tile area, times a calibrated factor) and the attention
matrices; :func:`check_segment_memory` compares it with :func:`available_memory`
(``/proc/meminfo`` ``MemAvailable`` on Linux) and refuses with :class:`SegmentMemoryError`.
"""

from __future__ import annotations

import math
import os
import weakref

import torch
from torch import nn

from darlkit.model.tiling import tile_starts

__all__ = [
    "estimate_segment_memory",
    "available_memory",
    "check_segment_memory",
    "SegmentMemoryError",
    "ACTIVATION_FACTOR",
    "ACTIVATION_BASE",
    "AUTO_TILE_BATCH_MAX",
    "AUTO_PASS_BYTES",
    "auto_tile_batch",
]

ACTIVATION_FACTOR: float = 2.0
"""Ratio of the measured activation memory of a forward pass to the peak of the live layer
outputs tracked by hooks (functional intermediates and allocator slack are not tracked).
Measured on CPU, float32, no autograd (``benchmarks/segment_memory.py``): 1.4-1.5 for the tiny
and 1.9 for the paper networks; 2.0 errs on the safe side."""

ACTIVATION_BASE: int = 32 * 2**20
"""Bytes added to every estimate for thread pools and kernel workspaces (measured: ~20 MiB)."""


AUTO_TILE_BATCH_MAX: int = 16
"""Most network inputs per forward pass that ``tile_batch="auto"`` chooses. Measured on the
2-core CPU with the ``small`` networks (64 x 64 polyphase sub-images of 128 px tiles, one
999 x 960 fundus image): 12.7 s at 1 input per pass, 7.0 s at 4, 4.9 s at 16, 8.3 s at 64
(larger passes leave the caches)."""

AUTO_PASS_BYTES: int = 512 * 2**20
"""Activation memory of one forward pass that ``tile_batch="auto"`` stays under (so that the
paper networks, ~0.3 GiB per 256 x 256 input, keep one input per pass)."""


def _pass_bytes(per_pixel: float, attn: list, sub_pixels: float, inputs: int) -> float:
    """Activations of one forward pass of ``inputs`` network inputs of ``sub_pixels`` pixels each:
    ``ACTIVATION_FACTOR`` x the live layer outputs, plus the largest attention layer's score and
    softmax matrices (2 x heads x tokens^2 x 4 bytes per input)."""
    attention = max((2 * heads * (ratio * sub_pixels) ** 2 * 4 * inputs for ratio, heads in attn), default=0.0)
    return ACTIVATION_FACTOR * per_pixel * sub_pixels * inputs + attention


def auto_tile_batch(model: nn.Module | None, tile: int, polyphase: bool) -> int:
    """Network inputs per forward pass for ``segment_tiled(..., tile_batch="auto")``.

    The largest power of two up to :data:`AUTO_TILE_BATCH_MAX` whose estimated activations
    (``ACTIVATION_FACTOR`` x the live layer outputs of that many inputs, as
    :func:`estimate_segment_memory` measures them, plus attention) stay under
    :data:`AUTO_PASS_BYTES`; at least 1. Batching small inputs amortises the per-layer overhead
    of a forward pass (2.0-2.6x faster for the ``small`` networks' 64 x 64 inputs on a 2-core CPU);
    large inputs gain nothing from it and keep one input per pass. Outputs do not depend on the
    choice beyond float32 rounding (every normalisation layer is per input).

    Args:
        model: A ``DARL`` model (its activation profile is measured once), or ``None`` (an ONNX
            segmenter without a torch reference: one tile's 4 sub-images, or 1 without polyphase).
        tile: Tile side in pixels.
        polyphase: Tiles are split into 4 polyphase sub-images.

    Returns:
        An int in ``[1, AUTO_TILE_BATCH_MAX]``.
    """
    if model is None:
        return 4 if polyphase else 1
    per_pixel, attn = _activation_profile(model)
    multiple = model.size_multiple * (2 if polyphase else 1)
    side = math.ceil(tile / multiple) * multiple
    sub_pixels = side * side / (4 if polyphase else 1)
    inputs = AUTO_TILE_BATCH_MAX
    while inputs > 1 and _pass_bytes(per_pixel, attn, sub_pixels, inputs) > AUTO_PASS_BYTES:
        inputs //= 2
    return inputs


class SegmentMemoryError(MemoryError):
    """A segmentation call whose estimated memory exceeds the memory available."""


def available_memory(device: torch.device | str | None = None) -> int | None:
    """Bytes of memory a new allocation can use without swapping, or ``None`` if unknown.

    CPU (the default): ``MemAvailable`` of ``/proc/meminfo`` on Linux; elsewhere (or without
    that line) the free physical pages from ``os.sysconf`` (``SC_AVPHYS_PAGES * SC_PAGE_SIZE``),
    which ignores reclaimable caches and so errs low; ``None`` when neither exists (then no
    check is made). A CUDA device: the free bytes of ``torch.cuda.mem_get_info``. Other
    devices: ``None``.

    Args:
        device: The device the activations live on (default: the CPU).

    Returns:
        Available bytes, or ``None``.
    """
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


_PROFILES: weakref.WeakKeyDictionary[nn.Module, tuple[float, list[tuple[float, int]]]] = weakref.WeakKeyDictionary()


@torch.no_grad()
def _activation_profile(model: nn.Module) -> tuple[float, list[tuple[float, int]]]:
    """Peak bytes of live layer outputs per input pixel and the attention layers' token ratios.

    Runs ``model.segment`` once (per model, cached) on a small zero probe image (side >= 64)
    in eval mode (no spectral-norm power iteration, so no state changes), with forward hooks
    that add the size of every leaf module's output to a running total and subtract it when
    the tensor is freed (``weakref.finalize``). Returns ``(peak bytes per pixel, [(tokens per
    input pixel, heads) per attention layer])``; both scale with the input area.
    """
    if model in _PROFILES:
        return _PROFILES[model]
    m = int(model.size_multiple)
    side = m * max(1, math.ceil(64 / m))
    live, peak = [0], [0]
    attn: list[tuple[float, int]] = []
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32

    def release(nbytes: int) -> None:
        live[0] -= nbytes

    def leaf(_mod, _inp, out):
        if isinstance(out, torch.Tensor):
            nbytes = out.numel() * 4  # float32, whatever the probe's dtype
            live[0] += nbytes
            peak[0] = max(peak[0], live[0])
            weakref.finalize(out, release, nbytes)

    def attention(mod, inp, _out):
        attn.append((inp[0].shape[-1] * inp[0].shape[-2] / side**2, int(mod.num_heads)))

    modes = {mod: mod.training for mod in model.modules()}
    hooks = []
    for mod in model.modules():
        if next(mod.children(), None) is None:
            hooks.append(mod.register_forward_hook(leaf))
        if hasattr(mod, "num_heads") and hasattr(mod, "qkv"):
            hooks.append(mod.register_forward_hook(attention))
    try:
        model.eval()
        model.segment(torch.zeros(1, 1, side, side, device=device, dtype=dtype))
    finally:
        for hook in hooks:
            hook.remove()
        for mod, mode in modes.items():
            mod.training = mode
    _PROFILES[model] = (peak[0] / side**2, attn)
    return _PROFILES[model]


def estimate_segment_memory(
    model: nn.Module,
    height: int,
    width: int,
    *,
    batch: int = 1,
    tile: int,
    overlap: int = 0,
    polyphase: bool = True,
    tile_batch: int = 1,
) -> int:
    """Estimate the extra memory (bytes) of segmenting a batch of images with :func:`segment_tiled`.

    ``buffers + ACTIVATION_BASE + ACTIVATION_FACTOR * live_outputs + attention``, where
    ``buffers`` are the input copy, the output, the blending weights and the noise (4
    image-sized float32 arrays), ``live_outputs`` is the peak size of the layer outputs alive
    at once in one forward pass (of ``tile_batch`` network inputs, or of the whole batch for
    a one-tile image; tracked by hooks on a small probe image, once per model, and scaled by
    the input area) and ``attention`` the score and softmax matrices (2 x heads x tokens^2 x 4
    bytes per network input) of the largest attention layer. Model weights, the Python
    process and the first forward pass's one-off workspace (run by the probe) are not
    included (they are already resident when the estimate is compared with the free memory). Calibrated on CPU in float32 (see
    ``benchmarks/segment_memory.py``); autocast lowers the real use.

    Args:
        model: A ``DARL`` model.
        height: Image height H (>= 1).
        width: Image width W (>= 1).
        batch: Images N.
        tile: Tile side (pixels).
        overlap: Minimum overlap of neighbouring tiles (pixels, < ``tile``).
        polyphase: Tiles are split into 4 polyphase sub-images.
        tile_batch: Network inputs (tiles, or polyphase sub-images) per forward pass.

    Returns:
        Estimated peak of the extra memory, in bytes.
    """
    for name, value in (("height", height), ("width", width), ("batch", batch), ("tile", tile), ("tile_batch", tile_batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    per_pixel, attn = _activation_profile(model)
    multiple = model.size_multiple * (2 if polyphase else 1)
    th = math.ceil(min(tile, height) / multiple) * multiple
    tw = math.ceil(min(tile, width) / multiple) * multiple
    subs_per_tile = 4 if polyphase else 1
    if height <= tile and width <= tile:
        inputs = batch * subs_per_tile  # one tile: the whole batch in one pass
    else:
        align = 2 if polyphase else 1

        per_image = len(tile_starts(height, tile, overlap, align)) * len(tile_starts(width, tile, overlap, align))
        inputs = min(tile_batch, batch * per_image * subs_per_tile)
    buffers = 4 * 4 * batch * height * width
    return int(buffers + ACTIVATION_BASE + _pass_bytes(per_pixel, attn, th * tw / subs_per_tile, inputs))


def check_segment_memory(
    model: nn.Module,
    image: torch.Tensor,
    *,
    tile: int,
    overlap: int,
    polyphase: bool,
    tile_batch: int,
    limit: int | str | None,
) -> None:
    """Raise :class:`SegmentMemoryError` when a ``segment_tiled`` call would need more than ``limit``.

    Args:
        model: A ``DARL`` model.
        image: The images to segment (N, 1, H, W).
        tile: Tile side.
        overlap: Minimum tile overlap.
        polyphase: Polyphase segmentation of the tiles.
        tile_batch: Tiles per forward pass.
        limit: Bytes; ``"auto"``: :func:`available_memory` of the image's device (no check
            when unknown); ``None``: no check.

    Raises:
        ValueError: If ``limit`` is not a positive int, ``"auto"`` or ``None``.
        SegmentMemoryError: If :func:`estimate_segment_memory` exceeds ``limit``.
    """
    if limit is None:
        return
    auto = limit == "auto"
    if not auto and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"memory_limit must be a positive int (bytes), 'auto' or None, got {limit!r}")
    n, _, h, w = image.shape
    need = estimate_segment_memory(
        model, h, w, batch=n, tile=tile, overlap=overlap, polyphase=polyphase, tile_batch=tile_batch
    )
    if auto:  # read after the estimate: its probe pass has allocated the one-off workspaces
        limit = available_memory(image.device)
        if limit is None:
            return
    if need > limit:
        raise SegmentMemoryError(
            f"segmenting {n} image(s) of {w}x{h} with tile={tile}, tile_batch={tile_batch} needs about "
            f"{need / 2**20:.0f} MiB but only {limit / 2**20:.0f} MiB are available; use a smaller tile or "
            f"tile_batch (or fewer images per call)"
        )
