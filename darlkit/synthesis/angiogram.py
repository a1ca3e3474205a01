"""XCAD-like synthetic X-ray backgrounds and contrast-filled angiograms.

Backgrounds (``render_background``) are built from what the real XCAD frames show: a smooth
low-frequency anatomy field (several octaves of upsampled Gaussian noise), a dark heart shadow
with a soft border, a few faint rib/spine bands, often a catheter (a thin dark tube), vignetting
and dark collimator strips at the edges, then quantum noise (Poisson-like: standard deviation
proportional to the square root of the intensity, slightly correlated). Grey levels are set to
the real frames' range (mean ~100/255, standard deviation ~35/255).

Angiograms (``render_angiogram``) darken a background along a vessel mask with Beer-Lambert
attenuation ``I = B * exp(-mu * chord)``, where the chord is the path length through a round
vessel: ``2 * sqrt(d * (2R - d))`` for depth ``d`` inside the vessel (an iterated-erosion distance)
and local radius ``R`` (the largest depth across the vessel). The centre of a vessel is therefore
darker than its rim and thin vessels are fainter than thick ones, as in real angiograms.

All randomness comes from explicit numpy generators (per-image ``SeedSequence`` children), so a
seed gives the same images every time.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from darlkit.synthesis._seeding import as_seed_sequence, child_rng
from darlkit.synthesis.tree import render_capsules

__all__ = ["render_background", "render_angiogram", "add_quantum_noise", "vessel_chord"]



def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32 or size % 2:
        raise ValueError(f"size must be an even int >= 32, got {size!r}")
    return int(size)


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return int(n)


def _rngs(seed: int | np.random.SeedSequence | None, n: int) -> list[np.random.Generator]:
    base = as_seed_sequence(seed)
    return [child_rng(base, i) for i in range(n)]


def _gauss_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W) with reflected borders."""
    if sigma <= 0:
        return x
    k = _gauss_kernel(sigma)
    r = (len(k) - 1) // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def _octave(rng: np.random.Generator, cells: int, size: int) -> torch.Tensor:
    """Smooth unit-variance noise with about ``cells`` blobs per side (bicubic upsampling)."""
    g = torch.from_numpy(rng.standard_normal((1, 1, cells + 1, cells + 1)).astype(np.float32))
    return F.interpolate(g, size=(size, size), mode="bicubic", align_corners=True)


def _texture(rng: np.random.Generator, size: int, sigma: float) -> torch.Tensor:
    """Isotropic mottled texture: blurred white noise renormalised to unit variance.

    Computed at a ``f``-times lower resolution (``f`` up to 4, keeping ``sigma / f >= 1.5``) and
    upsampled bilinearly, which is indistinguishable at these blur widths and much cheaper.
    """
    f = 1
    while f < 4 and sigma / (2 * f) >= 1.5 and size % (2 * f) == 0:
        f *= 2
    z = torch.from_numpy(rng.standard_normal((1, 1, size // f, size // f)).astype(np.float32))
    z = _blur(z, sigma / f)
    if f > 1:
        z = F.interpolate(z, size=(size, size), mode="bilinear", align_corners=False)
    return z / z.std().clamp_min(1e-6)


def _anatomy(rng: np.random.Generator, size: int) -> torch.Tensor:
    """One noiseless background in [0, 1] intensity units, shape (1, 1, size, size)."""
    s = size / 512.0
    ax = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    # Smooth anatomy: low-frequency octaves; mottled soft-tissue texture at two scales.
    field = torch.zeros(1, 1, size, size)
    for cells, amp in ((2, 0.06), (3, 0.04), (6, 0.02)):
        field += amp * rng.uniform(0.5, 1.5) * _octave(rng, cells, size)
    field += rng.uniform(0.008, 0.022) * _texture(rng, size, 14.0 * s)
    field += rng.uniform(0.008, 0.02) * _texture(rng, size, 6.0 * s)
    field += rng.uniform(0.006, 0.014) * _texture(rng, size, 2.5 * s)
    # Heart shadow: a large soft-edged dark ellipse, mostly in the lower part.
    cx, cy = rng.uniform(0.2, 0.7), rng.uniform(0.7, 1.1)
    ra, rb = rng.uniform(0.35, 0.6), rng.uniform(0.3, 0.5)
    ang = rng.uniform(-0.6, 0.6)
    u = ((xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)) / ra
    v = (-(xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)) / rb
    inside = torch.sigmoid((1.0 - torch.sqrt(u * u + v * v)) / rng.uniform(0.01, 0.04))
    field -= rng.uniform(0.12, 0.25) * inside
    # Rib / spine bands: a few faint smooth stripes.
    for _ in range(int(rng.integers(1, 4))):
        a = rng.uniform(0, math.pi)
        off = rng.uniform(-0.4, 0.4)
        dist = (xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a) - off
        width = rng.uniform(0.01, 0.05)
        field += rng.uniform(-0.05, 0.05) * torch.exp(-0.5 * (dist / width) ** 2)
    img = 0.47 + rng.uniform(-0.04, 0.06) + field * rng.uniform(0.9, 1.3)
    # Catheter: a thin dark tube entering from the top or a side.
    if rng.random() < 0.7:
        img = img * (1.0 - rng.uniform(0.2, 0.45) * _catheter(rng, size))
    # Vignetting and dark collimator strips.
    rr = (xx - 0.5) ** 2 + (yy - 0.5) ** 2
    img = img * (1.0 - rng.uniform(0.1, 0.35) * rr / 0.5)
    for side in range(4):
        if rng.random() < 0.6:
            w = rng.uniform(0.005, 0.03)
            coord = (xx, 1 - xx, yy, 1 - yy)[side]
            img = img * (1.0 - rng.uniform(0.15, 0.45) * torch.sigmoid((w - coord) / 0.004))
    return img.clamp(0.02, 0.98)


def _catheter(rng: np.random.Generator, size: int) -> torch.Tensor:
    s = size / 512.0
    side = int(rng.integers(3))
    along = rng.uniform(0.2, 0.8) * size
    x, y = [(along, 0.0), (0.0, along), (size - 1.0, along)][side]
    theta = [math.pi / 2, 0.0, math.pi][side] + rng.uniform(-0.5, 0.5)
    step = max(6.0 * s, 1.0)
    n = int(rng.uniform(0.4, 1.0) * size / step)
    omega = np.cumsum(rng.normal(0.0, 0.003, n)) + rng.normal(0.0, 0.012)
    ang = theta + np.cumsum(omega)
    xs = x + step * np.concatenate(([0.0], np.cumsum(np.cos(ang))))
    ys = y + step * np.concatenate(([0.0], np.cumsum(np.sin(ang))))
    r = max(rng.uniform(1.2, 2.2) * s, 0.5)
    seg = np.stack([xs[:-1], ys[:-1], xs[1:], ys[1:], np.full(n, r), np.full(n, r)], 1)
    return render_capsules([seg], size)


def add_quantum_noise(images: torch.Tensor, seed: int | np.random.SeedSequence | None = None, *, level: float | tuple[float, float] = (0.010, 0.018), correlation: float = 0.6) -> torch.Tensor:
    """Add Poisson-like (signal-dependent) X-ray quantum noise.

    ``out = x + sigma * sqrt(x) * blur(z)``, ``z`` standard normal, with the blur (Gaussian of
    ``correlation`` px) renormalised to unit variance; ``sigma`` is drawn per image from ``level``.

    Args:
        images: (N, 1, H, W) float intensities in [-1, 1].
        seed: Seed of the per-image noise generators (child ``i`` for image ``i``).
        level: Noise strength ``sigma`` (a number, or a range drawn from per image) in [0, 1]
            intensity units at full intensity (0.014 ~ 3.5 grey levels at mid grey).
        correlation: Standard deviation (px) of the Gaussian that correlates the noise (0 = white).

    Returns:
        (N, 1, H, W) float32 in [-1, 1] (clamped).
    """
    _check_images(images, "images")
    n, _, h, w = images.shape
    rngs = _rngs(seed, n)
    lo, hi = (level, level) if isinstance(level, (int, float)) else level
    z = torch.stack([torch.from_numpy(r.standard_normal((1, h, w)).astype(np.float32)) for r in rngs])
    sig = torch.tensor([r.uniform(lo, hi) if hi > lo else lo for r in rngs], dtype=torch.float32).view(n, 1, 1, 1)
    if correlation > 0:
        z = _blur(z, correlation)
        z = z / z.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    x = (images.float() + 1.0) / 2.0
    x = x + sig * torch.sqrt(x.clamp_min(0.0)) * z
    return (x.clamp(0.0, 1.0) * 2.0 - 1.0).float()


def _check_images(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must have shape (N, 1, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if torch.isnan(x).any():
        raise ValueError(f"{name} contains NaN")


def render_background(size: int = 512, seed: int | np.random.SeedSequence | None = None, *, n: int = 1, noise: bool = True) -> torch.Tensor:
    """Render XCAD-like X-ray backgrounds (no contrast agent).

    Args:
        size: Image side (even, >= 32).
        seed: Image ``i`` uses ``SeedSequence`` child ``i`` of ``seed`` (``None``: fresh entropy).
        n: Number of images.
        noise: Add quantum noise (``add_quantum_noise``); ``False`` gives the clean anatomy, e.g. to
            pass to ``render_angiogram``, which adds the noise after the vessels.

    Returns:
        (n, 1, size, size) float32 in [-1, 1] (mean grey ~100/255 on the 0-255 scale).
    """
    size, n = _check_size(size), _check_n(n)
    base = as_seed_sequence(seed)
    rngs = [child_rng(base, i) for i in range(n)]
    clean = torch.cat([_anatomy(r, size) for r in rngs]) * 2.0 - 1.0
    if not noise:
        return clean
    return add_quantum_noise(clean, np.random.SeedSequence(entropy=base.entropy, spawn_key=tuple(base.spawn_key) + (2**31,)))


def _max3x3(x: torch.Tensor, border: float) -> torch.Tensor:
    """3x3 maximum filter (separable, on shifted views; faster than ``max_pool2d`` on CPU)."""
    p = F.pad(x, (1, 1, 0, 0), value=border)
    h = torch.maximum(torch.maximum(p[..., :-2], p[..., 1:-1]), p[..., 2:])
    p = F.pad(h, (0, 0, 1, 1), value=border)
    return torch.maximum(torch.maximum(p[..., :-2, :], p[..., 1:-1, :]), p[..., 2:, :])


def vessel_chord(mask: torch.Tensor, max_radius: int) -> torch.Tensor:
    """Path length through round vessels: ``2 * sqrt(d * (2R - d))`` per pixel (0 outside).

    ``d`` is the depth inside the vessel (sum of ``max_radius`` iterated 3x3 erosions of the soft
    mask, so the anti-aliased rim counts fractionally); ``R`` is the largest depth reachable inside
    the vessel within ``max_radius`` steps (a geodesic dilation), i.e. the vessel's half-width.

    Args:
        mask: (N, 1, H, W) float vessel mask in [0, 1].
        max_radius: Largest vessel half-width measured (pixels); deeper points saturate.

    Returns:
        (N, 1, H, W) float chord lengths in pixels, in [0, 2 * max_radius].
    """
    depth = torch.zeros_like(mask)
    cur = mask
    for _ in range(max_radius):
        depth = depth + cur
        cur = -_max3x3(-cur, border=-1.0)  # erosion; a vessel is assumed to continue past the border
    inside = (mask > 0).to(mask.dtype)
    rad = depth
    for _ in range(max_radius):
        rad = torch.maximum(rad, _max3x3(rad, border=0.0) * inside)
    return 2.0 * torch.sqrt((depth * (2.0 * rad - depth)).clamp_min(0.0))


def render_angiogram(
    background: torch.Tensor,
    mask: torch.Tensor,
    seed: int | np.random.SeedSequence | None = None,
    *,
    attenuation: tuple[float, float] = (0.04, 0.07),
    blur: float = 0.7,
    noise: bool = True,
) -> torch.Tensor:
    """Fill the vessels of ``mask`` with contrast agent on ``background``.

    ``I = B * exp(-mu * chord)`` on the [0, 1] intensity scale, with ``mu`` drawn per image from
    ``attenuation`` (per pixel of a 512 image; scaled with the size so a 16 px vessel at 512 and
    its 8 px version at 256 look alike) and the chord from ``vessel_chord``; the attenuation map
    is blurred by ``blur`` px (focal-spot blur), then quantum noise is added.

    Args:
        background: (N, 1, H, W) float in [-1, 1] (best without noise: ``render_background(noise=False)``).
        mask: (N, 1, H, W) vessel mask, float in [0, 1] (soft edges allowed) or uint8 0..255.
        seed: Seed of the per-image attenuation and noise draws.
        attenuation: Range of ``mu`` (1/px at 512).
        blur: Gaussian blur (px) of the attenuation map.
        noise: Add quantum noise after the vessels.

    Returns:
        (N, 1, H, W) float32 angiograms in [-1, 1].

    Raises:
        ValueError: If shapes differ, the mask is outside [0, 1], or inputs contain NaN.
    """
    _check_images(background, "background")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype == torch.uint8:
        mask = mask.float() / 255.0
    _check_images(mask, "mask")
    if mask.shape != background.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal background shape {tuple(background.shape)}")
    if mask.min() < 0 or mask.max() > 1:
        raise ValueError(f"mask values must be in [0, 1] (float) or 0..255 (uint8), got range [{mask.min().item()}, {mask.max().item()}]")
    n, _, h, _ = mask.shape
    base = as_seed_sequence(seed)
    rngs = [child_rng(base, i) for i in range(n)]
    scale = h / 512.0
    mu = torch.tensor([r.uniform(*attenuation) for r in rngs], dtype=torch.float32).view(n, 1, 1, 1) / scale
    chord = vessel_chord(mask.float(), max_radius=max(2, int(math.ceil(12 * scale))))
    att = _blur(mu * chord, blur * scale) if blur > 0 else mu * chord
    x = (background.float() + 1.0) / 2.0 * torch.exp(-att)
    out = x * 2.0 - 1.0
    if noise:
        out = add_quantum_noise(out, np.random.SeedSequence(entropy=base.entropy, spawn_key=tuple(base.spawn_key) + (2**31,)))
    return out
