"""The released SSVS rectangle-fractal vessel masks ("ssvs" style), written from SPEC's description.

A mask is a binary tree of axis-aligned rectangles (a horizontal root, children perpendicular to
their parent, orientation alternating per level), painted on a zero canvas, then bent by a random
piecewise-affine warp and, with probability 0.5, rotated with mirrored borders. The two warps are
composed into one sampling grid and applied with a single bilinear ``grid_sample`` for the whole
batch, which also gives the anti-aliased grey edges of the released PNGs.

All numbers are those of the 512x512 release; at another canvas size every length is scaled by
``size / 512`` (thicknesses at least 1 pixel).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ssvs_rectangles", "paint_rectangles", "painted_box", "ssvs_warp_grid", "apply_warp_grid", "warp_ssvs_masks"]


def _randint(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in ``[low, high)`` (``low`` when the range is empty, as happens at tiny scales)."""
    if high <= low:
        return int(low)
    return int(rng.integers(low, high))


def ssvs_rectangles(rng: np.random.Generator, size: int = 512) -> list[tuple[int, int, int, int]]:
    """Draw the rectangles of one SSVS fractal mask.

    Root (horizontal): top row ``randint(10, 250)``, thickness ``randint(15, 20)``, left column
    ``randint(2, 80)``, length ``randint(350, 450)``; ``randint(3, 5)`` levels (7 or 15 rectangles).
    Every rectangle spawns two perpendicular children while levels remain, each with length
    ``randint(L // 4, 3 L // 4 + 1)`` and thickness ``randint(t // 4, 3 t // 4 + 1)``. A horizontal
    parent (rows ``[r, r + t)``, columns ``[c, c + L)``) grows child 1 upwards from its top edge at
    column ``c + L // 3`` and child 2 downwards from its top edge at column ``c + offset``
    (``offset = randint(1, 5 L // 6)``); a vertical parent (rows ``[r, r + L)``, columns ``[c, c + t)``)
    grows child 1 to the left from row ``r + offset`` and child 2 to the right from row ``r + offset'``
    (an independent draw). ``randint(a, b)`` draws from ``[a, b)``; at ``size != 512`` the root's
    numbers are scaled by ``size / 512``.

    Args:
        rng: The generator every draw comes from.
        size: Canvas side in pixels.

    Returns:
        Rectangles ``(row0, row1, col0, col1)`` (half-open, before the border handling of
        ``paint_rectangles``; coordinates can be negative or beyond the canvas), parents first.
    """
    s = size / 512.0
    r = _randint(rng, round(10 * s), round(250 * s))
    t = _randint(rng, max(1, round(15 * s)), max(2, round(20 * s)))
    c = _randint(rng, round(2 * s), round(80 * s))
    length = _randint(rng, max(2, round(350 * s)), max(3, round(450 * s)))
    levels = _randint(rng, 3, 5)
    rects: list[tuple[int, int, int, int]] = []
    # Iterative depth-first growth: (row, col, length, thickness, horizontal, levels left).
    stack = [(r, c, length, t, True, levels)]
    while stack:
        r, c, length, t, horizontal, left = stack.pop()
        if horizontal:
            rects.append((r, r + t, c, c + length))
        else:
            rects.append((r, r + length, c, c + t))
        if left <= 1:
            continue
        l1 = _randint(rng, length // 4, 3 * length // 4 + 1)
        t1 = _randint(rng, t // 4, 3 * t // 4 + 1)
        l2 = _randint(rng, length // 4, 3 * length // 4 + 1)
        t2 = _randint(rng, t // 4, 3 * t // 4 + 1)
        if horizontal:
            off = _randint(rng, 1, 5 * length // 6)
            children = [(r - l1, c + length // 3, l1, t1), (r, c + off, l2, t2)]
        else:
            off1 = _randint(rng, 1, 5 * length // 6)
            off2 = _randint(rng, 1, 5 * length // 6)
            children = [(r + off1, c - l1, l1, t1), (r + off2, c + t, l2, t2)]
        # Push in reverse so child 1 is processed first (parents first, then depth-first).
        for ch in reversed(children):
            stack.append((*ch, not horizontal, left - 1))
    return rects


def paint_rectangles(rects: list[tuple[int, int, int, int]], size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Paint rectangles on a zero canvas the way the release does.

    A rectangle whose start is negative is shifted (not cropped) to start at 0; an end beyond
    ``size - 1`` is cut there, so the last row and column are never painted.

    Args:
        rects: ``(row0, row1, col0, col1)`` half-open rectangles, as from ``ssvs_rectangles``.
        size: Canvas side.
        out: Optional (size, size) float32 canvas to paint into (it is zeroed first).

    Returns:
        A (size, size) float32 array with 1 inside the rectangles and 0 elsewhere.
    """
    canvas = np.zeros((size, size), np.float32) if out is None else out
    if out is not None:
        canvas.fill(0)
    for r0, r1, c0, c1 in _painted(rects, size):
        canvas[r0:r1, c0:c1] = 1.0
    return canvas


def _warp_params(rngs, size, grid_points, jitter, rotate_p, max_angle):
    n = len(rngs)
    ctrl = np.empty((n, 2, grid_points, grid_points), np.float32)
    angles = np.zeros(n, np.float64)
    for k, rng in enumerate(rngs):
        sd = rng.uniform(jitter[0], jitter[1]) * size
        ctrl[k] = rng.normal(0.0, sd, size=(2, grid_points, grid_points))
        if rng.random() < rotate_p:
            angles[k] = rng.uniform(-max_angle, max_angle)
    return ctrl, angles


def _coarse_map(ctrl: np.ndarray, angles: np.ndarray, size: int, stride: int) -> torch.Tensor:
    """Source pixel coordinates (x, y) of the output lattice points ``(stride * i, stride * j)``.

    Returns (N, 2, m, m) float32 with ``m = ceil((size - 1) / stride) + 1`` (the last lattice
    row/column may lie just past the canvas; it only serves the interpolation of the last pixels).
    """
    last = size - 1
    m = -(-last // stride) + 1
    ax = torch.arange(m, dtype=torch.float32) * stride
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    centre = last / 2.0
    theta = torch.from_numpy(np.deg2rad(angles)).float()
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    dx, dy = xx - centre, yy - centre
    qx = cos * dx - sin * dy + centre
    qy = sin * dx + cos * dy + centre
    rotated = (theta != 0)[:, None, None]
    if bool(rotated.any()):
        # Mirror only the rotated images (per image, so a mask never depends on its batch).
        qx = torch.where(rotated, _reflect(qx, size), qx)
        qy = torch.where(rotated, _reflect(qy, size), qy)
    # The control displacement field (bilinear over the canvas) is sampled at the rotated points.
    q = torch.stack((qx, qy), dim=-1) * (2.0 / last) - 1.0
    disp = F.grid_sample(torch.from_numpy(ctrl), q, mode="bilinear", padding_mode="border", align_corners=True)
    # ctrl channel 0 = row (y) displacement, channel 1 = column (x) displacement, in pixels.
    return torch.stack((qx + disp[:, 1], qy + disp[:, 0]), dim=1).contiguous()


def _upsample(coarse: torch.Tensor, stride: int) -> torch.Tensor:
    """Bilinear interpolation of a (N, 2, a, b) lattice of spacing ``stride`` to every pixel."""
    if stride == 1:
        return coarse
    a, b = coarse.shape[-2:]
    return F.interpolate(coarse, size=((a - 1) * stride + 1, (b - 1) * stride + 1), mode="bilinear", align_corners=True)


def ssvs_warp_grid(
    rngs: list[np.random.Generator],
    size: int,
    *,
    grid_points: int = 4,
    jitter: tuple[float, float] = (0.09, 0.13),
    rotate_p: float = 0.5,
    max_angle: float = 30.0,
    stride: int = 4,
) -> torch.Tensor:
    """Sampling grids of the SSVS piecewise-affine warp followed by the optional rotation.

    Per image: a ``grid_points x grid_points`` lattice of control points spanning the canvas, each
    displaced by a normal jitter whose standard deviation is ``U(jitter) * size``; the dense
    displacement is the bilinear interpolation of the control displacements (so the warp is
    piecewise affine along rows and columns). Then, with probability ``rotate_p``, a rotation by
    ``U(-max_angle, max_angle)`` degrees about the centre whose out-of-canvas samples are mirrored
    back (symmetric reflection), as a rotation with mirrored borders does. Warp and rotation are
    composed into one grid: output pixel ``p`` samples the painted mask at ``q + d(q)`` with
    ``q = reflect(R p)``.

    Args:
        rngs: One generator per image (drawn from after the rectangles).
        size: Canvas side.
        grid_points: Control points per side (4 in the release).
        jitter: Range of the per-image jitter standard deviation, as a fraction of ``size``.
        rotate_p: Probability of the rotation.
        max_angle: Rotation angles are drawn from ``U(-max_angle, max_angle)`` degrees.
        stride: The composed map is computed exactly every ``stride`` pixels and bilinearly
            interpolated in between (1 = exact at every pixel; 4 is 16x cheaper and differs by a
            fraction of a pixel only near the kinks of the piecewise-affine map).

    Returns:
        A (N, size, size, 2) float32 grid (possibly a non-contiguous view) in ``grid_sample``'s
        normalised (x, y) coordinates for ``align_corners=True``.
    """
    ctrl, angles = _warp_params(rngs, size, grid_points, jitter, rotate_p, max_angle)
    fine = _upsample(_coarse_map(ctrl, angles, size, stride), stride)[..., :size, :size]
    return (fine * (2.0 / (size - 1)) - 1.0).permute(0, 2, 3, 1)


def warp_ssvs_masks(
    rects: list[list[tuple[int, int, int, int]]],
    rngs: list[np.random.Generator],
    size: int,
    *,
    grid_points: int = 4,
    jitter: tuple[float, float] = (0.09, 0.13),
    rotate_p: float = 0.5,
    max_angle: float = 30.0,
    stride: int = 4,
) -> torch.Tensor:
    """Paint and warp SSVS masks: ``apply_warp_grid(paint_rectangles(...), ssvs_warp_grid(...))``, fast.

    The same random draws and the same result as that two-step path, computed only where it can
    be non-zero: each image's rectangles are painted on a crop of their bounding box (plus a
    one-pixel zero margin, which is what the full canvas holds there), and the dense grid and the
    resampling are evaluated only on the output box that can receive vessel pixels. A lattice
    cell's source points are convex combinations of its corners' (bilinear interpolation), so a
    cell whose corners' source box stays a pixel away from the painted box samples zeros only.

    Args:
        rects: Per image its rectangles, as from ``ssvs_rectangles``.
        rngs: One generator per image (drawn from after the rectangles, as for ``ssvs_warp_grid``).
        size: Canvas side.
        grid_points: See ``ssvs_warp_grid``.
        jitter: See ``ssvs_warp_grid``.
        rotate_p: See ``ssvs_warp_grid``.
        max_angle: See ``ssvs_warp_grid``.
        stride: See ``ssvs_warp_grid``.

    Returns:
        (N, 1, size, size) float32 in [0, 1] with anti-aliased edges.
    """
    n = len(rngs)
    if len(rects) != n:
        raise ValueError(f"rects and rngs must have the same length, got {len(rects)} and {n}")
    ctrl, angles = _warp_params(rngs, size, grid_points, jitter, rotate_p, max_angle)
    coarse = _coarse_map(ctrl, angles, size, stride)  # (N, 2, m, m) source (x, y) in pixels
    out = torch.zeros(n, 1, size, size)
    # Source box of each lattice cell (min / max over its four corners).
    c00, c01, c10, c11 = coarse[..., :-1, :-1], coarse[..., :-1, 1:], coarse[..., 1:, :-1], coarse[..., 1:, 1:]
    lo = torch.minimum(torch.minimum(c00, c01), torch.minimum(c10, c11))
    hi = torch.maximum(torch.maximum(c00, c01), torch.maximum(c10, c11))
    for k in range(n):
        box = painted_box(rects[k], size)
        if box is None:
            continue
        r0, r1, c0, c1 = box
        hit = (hi[k, 0] > c0 - 1) & (lo[k, 0] < c1 + 1) & (hi[k, 1] > r0 - 1) & (lo[k, 1] < r1 + 1)
        rows = torch.nonzero(hit.any(1)).flatten()
        cols = torch.nonzero(hit.any(0)).flatten()
        if rows.numel() == 0:
            continue
        # The painted crop with a one-pixel zero margin: source rows r0 - 1 .. r1 + 1.
        crop = np.zeros((r1 - r0 + 3, c1 - c0 + 3), np.float32)
        for a0, a1, b0, b1 in _painted(rects[k], size):
            crop[a0 - r0 + 1 : a1 - r0 + 1, b0 - c0 + 1 : b1 - c0 + 1] = 1.0
        i0, i1, j0, j1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        # Normalise to the crop on the lattice (affine maps commute with bilinear interpolation);
        # grid_sample reads the permuted (1, h, w, 2) view of the interpolated grid directly.
        sub = coarse[k : k + 1, :, i0 : i1 + 1, j0 : j1 + 1]
        offset = torch.tensor([c0 - 1.0, r0 - 1.0]).view(1, 2, 1, 1)
        scale = torch.tensor([2.0 / (crop.shape[1] - 1), 2.0 / (crop.shape[0] - 1)]).view(1, 2, 1, 1)
        sub = (sub - offset) * scale - 1.0
        fine = _upsample(sub, stride)
        y0, x0 = i0 * stride, j0 * stride
        h, w = min(fine.shape[-2], size - y0), min(fine.shape[-1], size - x0)
        grid = fine[..., :h, :w].permute(0, 2, 3, 1)
        src = torch.from_numpy(crop)[None, None]
        out[k : k + 1, :, y0 : y0 + h, x0 : x0 + w] = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.clamp_(0.0, 1.0)


def _painted(rects: list[tuple[int, int, int, int]], size: int) -> list[tuple[int, int, int, int]]:
    """The half-open boxes ``paint_rectangles`` actually paints (shifted, cut, non-empty)."""
    lim = size - 1
    boxes = []
    for r0, r1, c0, c1 in rects:
        if r0 < 0:
            r1, r0 = r1 - r0, 0
        if c0 < 0:
            c1, c0 = c1 - c0, 0
        r1, c1 = min(r1, lim), min(c1, lim)
        if r1 > r0 and c1 > c0:
            boxes.append((r0, r1, c0, c1))
    return boxes


def painted_box(rects: list[tuple[int, int, int, int]], size: int) -> tuple[int, int, int, int] | None:
    """The inclusive box ``(row0, row1, col0, col1)`` that ``paint_rectangles`` paints, or ``None``.

    Args:
        rects: Rectangles as from ``ssvs_rectangles``.
        size: Canvas side.

    Returns:
        The bounding box of all painted pixels, or ``None`` if nothing is painted.
    """
    boxes = _painted(rects, size)
    if not boxes:
        return None
    return (min(b[0] for b in boxes), max(b[1] for b in boxes) - 1, min(b[2] for b in boxes), max(b[3] for b in boxes) - 1)


def _reflect(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror pixel coordinates into ``[-0.5, size - 0.5]`` (symmetric reflection about the border)."""
    period = 2.0 * size
    y = torch.remainder(x + 0.5, period)
    y = torch.where(y >= size, period - y, y)
    return (y - 0.5).clamp_(0.0, size - 1.0)


def apply_warp_grid(masks: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Resample masks with a grid from ``ssvs_warp_grid`` (bilinear, zeros outside).

    Args:
        masks: (N, 1, H, W) float32 masks in [0, 1].
        grid: (N, H, W, 2) grid for ``align_corners=True``.

    Returns:
        (N, 1, H, W) float32 in [0, 1] with anti-aliased edges.
    """
    out = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.clamp_(0.0, 1.0)

