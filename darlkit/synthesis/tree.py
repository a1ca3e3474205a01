"""Curved, tapering vessel trees ("tree" style) and a vectorised capsule rasteriser.

A tree grows from a root near the image border towards the inside. Each branch is a polyline of
short steps whose direction follows a smooth random walk (its angular velocity is an AR(1)
process, so the vessel curves rather than jitters; thinner vessels are more tortuous). The radius
tapers slowly along a branch; at the branch's end it splits in two with Murray's law
``r_parent**3 = r_1**3 + r_2**3`` (the flow fraction of the smaller child drawn from
``split_ratio``), the smaller child leaving at an angle drawn from ``branch_angle`` and the larger
one deflecting the other way by the angle that balances ``r_1**2 sin(a_1) = r_2**2 sin(a_2)``.
Branches whose children would be thinner than ``min_radius`` end in a long thin terminal twig.
The total vessel area is steered towards a per-image target fraction drawn from
``vessel_fraction`` by rescaling branch lengths (a few attempts).

Every segment is a tapered capsule; ``render_capsules`` rasterises all segments of all images
at once as anti-aliased distance fields on fixed-size patches (one batched torch computation and
a scatter-max into the canvases), without per-pixel Python loops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["TreeParams", "grow_vessel_tree", "render_capsules"]


@dataclass(frozen=True)
class TreeParams:
    """Shape parameters of the "tree" style, in pixels of a 512x512 canvas (scaled by ``size / 512``).

    Attributes:
        root_radius: Range of the root vessel radius (px at 512; diameter 15-22 px by default).
        min_radius: Smallest radius of a branch that still bifurcates; twigs end at about
            ``0.7 * min_radius`` (never below 0.5 px at any size).
        split_ratio: Range of the blood-flow fraction taken by the smaller child (Murray's law
            radius ``r * q ** (1 / 3)``).
        branch_angle: Range of the angle (degrees) between the parent direction and the smaller child.
        tortuosity: Standard deviation (radians per step) of the angular acceleration of the
            centre line at the root radius; thinner branches get ``(root / r) ** 0.5`` times more.
        curvature: Standard deviation (radians per step) of a constant turn rate drawn per branch,
            which bends whole branches into arcs.
        branch_length: Range of branch length between bifurcations (px at 512).
        twig_length: Range of terminal twig lengths (px at 512).
        taper: Range of the radius ratio end/start along one branch.
        vessel_fraction: Range of the per-image target fraction of vessel pixels.
        step: Length of one centre-line segment (px at 512).
        max_roots: At most this many root trees per image (a new root starts when a tree leaves the
            canvas before reaching its target area).
    """

    root_radius: tuple[float, float] = (7.5, 11.0)
    min_radius: float = 2.2
    split_ratio: tuple[float, float] = (0.08, 0.45)
    branch_angle: tuple[float, float] = (35.0, 80.0)
    tortuosity: float = 0.012
    curvature: float = 0.012
    branch_length: tuple[float, float] = (40.0, 100.0)
    twig_length: tuple[float, float] = (40.0, 130.0)
    taper: tuple[float, float] = (0.85, 0.97)
    vessel_fraction: tuple[float, float] = (0.045, 0.065)
    step: float = 6.0
    max_roots: int = 3

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""

        def rng_ok(name: str, lo_min: float, hi_max: float = math.inf) -> None:
            v = getattr(self, name)
            if not (isinstance(v, tuple) and len(v) == 2 and lo_min <= v[0] <= v[1] <= hi_max):
                raise ValueError(f"TreeParams.{name} must be a (low, high) tuple with {lo_min} <= low <= high <= {hi_max}, got {v!r}")

        rng_ok("root_radius", 0.5)
        rng_ok("split_ratio", 0.0, 0.5)
        rng_ok("branch_angle", 0.0, 120.0)
        rng_ok("branch_length", 1.0)
        rng_ok("twig_length", 1.0)
        rng_ok("taper", 0.1, 1.0)
        rng_ok("vessel_fraction", 0.0, 0.5)
        if not (self.min_radius > 0):
            raise ValueError(f"TreeParams.min_radius must be > 0, got {self.min_radius}")
        if not (self.tortuosity >= 0):
            raise ValueError(f"TreeParams.tortuosity must be >= 0, got {self.tortuosity}")
        if not (self.curvature >= 0):
            raise ValueError(f"TreeParams.curvature must be >= 0, got {self.curvature}")
        if not (self.step > 0):
            raise ValueError(f"TreeParams.step must be > 0, got {self.step}")
        if not (isinstance(self.max_roots, int) and self.max_roots >= 1):
            raise ValueError(f"TreeParams.max_roots must be an int >= 1, got {self.max_roots!r}")


_AR_RHO = 0.9
_AR_CACHE: dict[int, np.ndarray] = {}


def _ar_matrix(n: int) -> np.ndarray:
    """Lower-triangular matrix M with M[i, j] = rho**(i - j): omega = M @ noise is an AR(1) process."""
    m = _AR_CACHE.get(n)
    if m is None:
        i = np.arange(n)
        e = i[:, None] - i[None, :]
        m = np.where(e >= 0, _AR_RHO ** np.maximum(e, 0), 0.0)
        _AR_CACHE[n] = m
    return m


def _grow_once(rng: np.random.Generator, size: int, p: TreeParams, scale: float, length_scale: float, target_area: float) -> tuple[np.ndarray, float]:
    s = size / 512.0
    min_r = max(p.min_radius * s, 0.5)
    step = max(p.step * s, 1.0)
    margin = 0.05 * size
    segments: list[np.ndarray] = []
    area = 0.0
    roots = 0
    hard_cap = 1.6 * target_area
    while roots < p.max_roots and area < 0.85 * target_area:
        roots += 1
        # Root: start on a random side, inset a little, heading into the image.
        side = int(rng.integers(4))
        along = rng.uniform(0.15, 0.85) * size
        inset = rng.uniform(0.0, 0.2) * size
        x, y = [(inset, along), (size - 1 - inset, along), (along, inset), (along, size - 1 - inset)][side]
        to_centre = math.atan2(size / 2 - y, size / 2 - x)
        theta = to_centre + math.radians(rng.uniform(-40.0, 40.0))
        r0 = max(rng.uniform(*p.root_radius) * s, 0.5)
        stack = [(x, y, theta, r0, 0.0, False)]  # x, y, direction, radius, initial angular velocity, twig?
        while stack and area < hard_cap:
            x, y, theta, r, omega0, twig = stack.pop()
            if twig:
                length = rng.uniform(*p.twig_length) * s * length_scale
                r_end = max(0.7 * min_r, 0.5, 0.6 * r) if r > 0.5 else r
            else:
                length = rng.uniform(*p.branch_length) * s * length_scale
                r_end = r * rng.uniform(*p.taper)
            n = max(1, int(math.ceil(length / step)))
            sigma = p.tortuosity * (r0 / max(r, 1e-3)) ** 0.5
            noise = rng.normal(0.0, sigma, n)
            noise[0] += omega0
            omega = _ar_matrix(n) @ noise
            angles = theta + np.cumsum(omega + rng.normal(0.0, p.curvature))
            xs = x + step * np.concatenate(([0.0], np.cumsum(np.cos(angles))))
            ys = y + step * np.concatenate(([0.0], np.cumsum(np.sin(angles))))
            rs = np.linspace(r, r_end, n + 1)
            inside = (xs > -margin) & (xs < size - 1 + margin) & (ys > -margin) & (ys < size - 1 + margin)
            # Stop the branch where it first leaves the canvas (plus a margin).
            out_idx = np.flatnonzero(~inside[1:])
            n_keep = int(out_idx[0]) if out_idx.size else n
            if n_keep == 0:
                continue
            seg = np.stack([xs[:n_keep], ys[:n_keep], xs[1 : n_keep + 1], ys[1 : n_keep + 1], rs[:n_keep], rs[1 : n_keep + 1]], axis=1)
            segments.append(seg)
            vis = (xs[1 : n_keep + 1] >= 0) & (xs[1 : n_keep + 1] < size) & (ys[1 : n_keep + 1] >= 0) & (ys[1 : n_keep + 1] < size)
            area += float((2.0 * 0.5 * (seg[:, 4] + seg[:, 5]) * step * vis).sum())
            if twig or n_keep < n:
                continue
            # Bifurcate at the branch end with Murray's law.
            xe, ye, te, re = xs[n], ys[n], float(angles[-1]), r_end
            q = rng.uniform(*p.split_ratio)
            r_small, r_big = re * q ** (1.0 / 3.0), re * (1.0 - q) ** (1.0 / 3.0)
            a_small = math.radians(rng.uniform(*p.branch_angle))
            ratio = min(1.0, (r_small / r_big) ** 2 * math.sin(a_small))
            a_big = math.asin(ratio)
            sign = 1.0 if rng.random() < 0.5 else -1.0
            omega_e = float(omega[-1])
            for rr, aa in ((r_big, -sign * a_big), (r_small, sign * a_small)):
                stack.append((xe, ye, te + aa, rr, omega_e, rr * (0.1 ** (1.0 / 3.0)) < min_r))
            # Process the thinner child first so the stack keeps growing the trunk last (larger
            # children are popped later; order only changes where the area cap cuts the tree).
            stack[-2], stack[-1] = stack[-1], stack[-2]
    seg = np.concatenate(segments, 0) if segments else np.zeros((0, 6))
    return seg, area


def grow_vessel_tree(rng: np.random.Generator, size: int = 512, params: TreeParams | None = None, *, attempts: int = 3) -> np.ndarray:
    """Grow one vessel tree (one image) and return its centre-line segments.

    Args:
        rng: The generator every draw comes from.
        size: Canvas side in pixels.
        params: Shape parameters (default ``TreeParams()``).
        attempts: Regrow at most this many times, rescaling branch lengths, until the estimated
            vessel area is within 20% of the drawn target.

    Returns:
        A (S, 6) float64 array of tapered capsules ``(x0, y0, x1, y1, r0, r1)`` in pixel
        coordinates (x = column, y = row; pixel centres at integers), radii in pixels.
    """
    p = TreeParams() if params is None else params
    target = rng.uniform(*p.vessel_fraction) * size * size
    length_scale = 1.0
    best: tuple[float, np.ndarray] | None = None
    for _ in range(max(1, attempts)):
        seg, area = _grow_once(rng, size, p, size / 512.0, length_scale, target)
        err = abs(area - target) / max(target, 1e-9)
        if best is None or err < best[0]:
            best = (err, seg)
        if err <= 0.2:
            break
        length_scale *= float(np.clip(target / max(area, 1e-9), 0.5, 2.0))
    assert best is not None
    return best[1]


def render_capsules(segments: list[np.ndarray], size: int, *, max_elements: int = 1 << 16) -> torch.Tensor:
    """Rasterise tapered capsules into anti-aliased masks, all images at once.

    Each segment ``(x0, y0, x1, y1, r0, r1)`` covers the pixels within the linearly interpolated
    radius of its centre line; coverage is ``clamp(r(t) - d + 0.5, 0, 1)`` for distance ``d`` to
    the segment and ``t`` the projection parameter (a one-pixel anti-aliased edge). The distance
    field is evaluated on a fixed-size patch around each segment (batched over all segments in
    chunks of at most ``max_elements`` pixels) and combined into the canvases with a scatter-max.

    Args:
        segments: One (S_i, 6) array per image, as from ``grow_vessel_tree``.
        size: Canvas side.
        max_elements: Chunk size bound (patch pixels per batched evaluation).

    Returns:
        (N, 1, size, size) float32 masks in [0, 1].
    """
    n = len(segments)
    canvas = torch.zeros(n * size * size + 1, dtype=torch.float32)
    counts = [len(s) for s in segments]
    if sum(counts) == 0:
        return canvas[:-1].reshape(n, 1, size, size)
    seg = torch.from_numpy(np.concatenate([np.asarray(s, np.float64).reshape(-1, 6) for s in segments], 0)).float()
    img = torch.repeat_interleave(torch.arange(n), torch.tensor(counts))
    x0, y0, x1, y1, r0, r1 = seg.unbind(1)
    rmax = torch.maximum(r0, r1)
    bx = torch.floor(torch.minimum(x0, x1) - rmax - 1.0)
    by = torch.floor(torch.minimum(y0, y1) - rmax - 1.0)
    ex = torch.ceil(torch.maximum(x0, x1) + rmax + 1.0) - bx + 1
    ey = torch.ceil(torch.maximum(y0, y1) + rmax + 1.0) - by + 1
    extent = torch.maximum(ex, ey).long()
    # Sort by patch size so each chunk evaluates patches barely larger than its segments.
    order = torch.argsort(extent)
    dummy = n * size * size
    start = 0
    total = len(seg)
    while start < total:
        patch = int(extent[order[min(total - 1, start + 31)]].item())
        count = max(32, max_elements // (patch * patch))
        idx = order[start : start + count]
        patch = int(extent[idx[-1]].item())
        start += count
        off = torch.arange(patch, dtype=torch.float32)
        px = bx[idx, None, None] + off[None, None, :]  # (S, 1, P) columns
        py = by[idx, None, None] + off[None, :, None]  # (S, P, 1) rows
        ax, ay = x0[idx, None, None], y0[idx, None, None]
        dx, dy = (x1 - x0)[idx, None, None], (y1 - y0)[idx, None, None]
        len2 = (dx * dx + dy * dy).clamp_min(1e-12)
        t = (((px - ax) * dx + (py - ay) * dy) / len2).clamp_(0.0, 1.0)
        cx = px - (ax + t * dx)
        cy = py - (ay + t * dy)
        d = torch.sqrt(cx * cx + cy * cy)
        rad = r0[idx, None, None] + t * (r1 - r0)[idx, None, None]
        cov = (rad - d + 0.5).clamp_(0.0, 1.0)
        valid = (px >= 0) & (px < size) & (py >= 0) & (py < size) & (cov > 0)
        flat = img[idx, None, None] * (size * size) + py.long() * size + px.long()
        flat = torch.where(valid, flat, torch.full_like(flat, dummy))
        canvas.scatter_reduce_(0, flat.reshape(-1), cov.reshape(-1), reduce="amax")
    return canvas[:-1].reshape(n, 1, size, size)
