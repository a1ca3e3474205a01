"""Fractal training masks matched to the target images (``darlkit prepare --masks synth``).

DARL learns from unpaired fractal masks, so their vessel fraction and width should be those of
the target images. Measured on label masks (bool, inside the ROI when one is given):

- ``vessel_fraction``: vessel pixels / pixels;
- ``vessel_width``: ``2 * q99(depth)``, where ``depth`` is each vessel pixel's chessboard distance
  to the background (number of 3x3 erosions that keep it) and ``q99`` its 99th percentile over
  vessel pixels: about the diameter of the widest vessels, robust to a few blobs.

``matched_tree_params`` turns a target (fraction, width, mask side) into ``TreeParams`` of the
``"tree"`` style shaped like real vessel trees: root diameters from ``0.94 * width`` to
``1.2 * width``, branches tapering slowly (end/start radius 0.9-0.99) and bifurcating down to a
minimum radius of ``0.19 * width`` (at most the style's default 2.2 px at 512), so that most
vessel pixels lie in thin vessels, as in real labels (CHASE_DB1 at full size: 61 % of the vessel
pixels at chessboard depth 1, 32 % at depth 2, 5 % at depth 3; the rule gives about 58 / 32 / 9 %;
the first rule, root diameters 0.8-1.0 x width and a minimum radius of half the root's, drew
trunks of one width only). The parameters are in pixels of a 512 canvas, so they are scaled by
``512 / size``; per-image vessel fraction in ``[0.85, 1.15] * fraction`` (capped at 0.5), up to 8
root trees for fractions above 7 %. ``calibrate_tree_params`` then corrects the two targets by
measuring probe masks (the vessel pixels at 255, as ``XCADDataset`` counts them; inside a field
of view when one is given) and rescaling the root radius and the fraction by target / measured,
a few rounds. ``restrict_to_fov`` keeps a mask's vessels inside a field of view (a fundus
photograph has vessels only inside the eye, so the synthetic masks should not have them outside
it either). The ``"ssvs"`` style (XCAD's released rectangle fractals) has no such controls and
is used as is.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from darlkit.data.morphology import erode
from darlkit.synthesis import FractalVesselSynthesizer, TreeParams

__all__ = [
    "vessel_fraction", "vessel_width", "matched_tree_params", "calibrate_tree_params", "synthesize_masks",
    "restrict_to_fov", "square_fov",
]


def vessel_fraction(mask: np.ndarray, roi: np.ndarray | None = None) -> float:
    """Fraction of vessel pixels of a bool mask (inside ``roi`` when given)."""
    m = np.asarray(mask, dtype=bool)
    if roi is None:
        return float(m.mean())
    r = np.asarray(roi, dtype=bool)
    if not r.any():
        raise ValueError("roi is empty")
    return float(m[r].mean())


def vessel_width(mask: np.ndarray) -> float:
    """About the diameter (px) of the widest vessels of a bool mask: ``2 * q99(depth)`` (module docstring).

    Returns:
        The width in pixels (0.0 for an empty mask).
    """
    cur = np.asarray(mask, dtype=np.float32)
    vessel = cur > 0.5
    if not vessel.any():
        return 0.0
    depth = np.zeros(cur.shape, np.float32)
    while cur.max() > 0.5:
        depth += cur > 0.5
        cur = erode(cur, 3)
    return float(2.0 * np.percentile(depth[vessel], 99))


def matched_tree_params(size: int, width: float, fraction: float) -> TreeParams:
    """``TreeParams`` whose masks of side ``size`` have about this widest-vessel ``width`` and ``fraction``.

    Args:
        size: Mask side in pixels.
        width: Target diameter (px at ``size``) of the widest vessels, > 0.
        fraction: Target vessel fraction, in (0, 0.5].

    Returns:
        The parameters (see the module docstring for the rule).
    """
    if not width > 0:
        raise ValueError(f"vessel width must be > 0 px, got {width!r}")
    if not 0 < fraction <= 0.5:
        raise ValueError(f"vessel fraction must be in (0, 0.5], got {fraction!r}")
    w512 = width * 512.0 / size
    root = (max(0.5, 0.47 * w512), max(0.5, 0.6 * w512))
    base = TreeParams()
    return dataclasses.replace(
        base,
        root_radius=root,
        min_radius=max(0.5, min(base.min_radius, 0.19 * w512)),
        taper=(0.9, 0.99),
        vessel_fraction=(0.85 * fraction, min(0.5, 1.15 * fraction)),
        max_roots=8 if fraction > 0.07 else base.max_roots,
    )


def square_fov(fov: np.ndarray, size: int) -> np.ndarray:
    """A field of view (H, W) cut or padded (with False) to a centred ``size`` x ``size`` square.

    Args:
        fov: bool (H, W) field of view of an image.
        size: Side of the square (the synthetic masks' side).

    Returns:
        bool (size, size).
    """
    f = np.asarray(fov, dtype=bool)
    if f.ndim != 2:
        raise ValueError(f"fov must be a (H, W) array, got shape {f.shape}")
    out = np.zeros((size, size), bool)
    h, w = min(size, f.shape[0]), min(size, f.shape[1])
    r0, c0 = (f.shape[0] - h) // 2, (f.shape[1] - w) // 2
    R0, C0 = (size - h) // 2, (size - w) // 2
    out[R0:R0 + h, C0:C0 + w] = f[r0:r0 + h, c0:c0 + w]
    return out


def restrict_to_fov(masks: torch.Tensor, fovs: list[np.ndarray]) -> torch.Tensor:
    """Zero the mask pixels outside a field of view: mask ``i`` keeps ``fovs[i % len(fovs)]``.

    Args:
        masks: uint8 (N, S, S) masks (as from ``synthesize_masks``).
        fovs: Non-empty list of bool (S, S) fields of view (``square_fov``).

    Returns:
        uint8 (N, S, S): the masks with 0 outside their field of view.
    """
    if not fovs:
        raise ValueError("fovs must hold at least one field of view")
    for f in fovs:
        if tuple(f.shape) != tuple(masks.shape[-2:]):
            raise ValueError(f"a field of view is {tuple(f.shape)} but the masks are {tuple(masks.shape[-2:])}")
    keep = torch.from_numpy(np.stack([fovs[i % len(fovs)] for i in range(masks.shape[0])]))
    return masks * keep.to(masks.dtype)


def synthesize_masks(
    n: int, size: int, *, style: str = "tree", params: TreeParams | None = None, seed: int = 0, first: int = 0
) -> torch.Tensor:
    """Fractal masks ``first .. first + n - 1`` of side ``size`` as uint8 (n, size, size) (255 vessel, grey rim).

    Args:
        n: Number of masks (>= 1).
        size: Side (even, >= 32).
        style: ``"tree"`` or ``"ssvs"``.
        params: ``TreeParams`` for the tree style (``matched_tree_params``).
        seed: Seed of the synthesizer (mask ``i`` depends on ``(seed, i)`` only, so chunks of a
            long series can be drawn separately).
        first: Index of the first mask.

    Returns:
        uint8 tensor (n, size, size).
    """
    synth = FractalVesselSynthesizer(size=size, style=style, seed=seed, output="uint8", tree_params=params)
    return torch.cat([synth.masks(range(k, min(first + n, k + 8))) for k in range(first, first + n, 8)])[:, 0]


def calibrate_tree_params(
    size: int, width: float, fraction: float, *, rounds: int = 1, probes: int = 2, seed: int = 0,
    fovs: list[np.ndarray] | None = None,
) -> tuple[TreeParams, dict[str, float]]:
    """``matched_tree_params`` corrected by measuring ``probes`` masks per round (module docstring).

    Args:
        size: Mask side (even, >= 32).
        width: Target widest-vessel diameter (px at ``size``).
        fraction: Target vessel fraction.
        rounds: Correction rounds (>= 0).
        probes: Masks measured per round.
        seed: Seed of the probe masks (drawn from a stream apart from the written masks).
        fovs: Fields of view (bool (size, size), ``square_fov``) the written masks will be
            restricted to (``restrict_to_fov``): the probes are too, and their fraction is
            measured inside them (``None``: the whole square).

    Returns:
        ``(params, {"width": measured, "fraction": measured})`` of the last measurement.
    """
    w_req, f_req = float(width), float(fraction)
    measured = {"width": float("nan"), "fraction": float("nan")}
    for k in range(rounds + 1):
        params = matched_tree_params(size, w_req, min(f_req, 0.5))
        masks = synthesize_masks(probes, size, params=params, seed=seed + 7919 * (k + 1))
        if fovs:
            masks = restrict_to_fov(masks, fovs)
        masks = masks.numpy() == 255
        inside = None if not fovs else [fovs[i % len(fovs)] for i in range(probes)]
        frac = masks.mean() if inside is None else np.mean([vessel_fraction(m, r) for m, r in zip(masks, inside)])
        measured = {"width": float(np.mean([vessel_width(m) for m in masks])), "fraction": float(frac)}
        if k == rounds:
            break
        if measured["width"] > 0:
            w_req *= float(np.clip(width / measured["width"], 0.5, 2.0))
        if measured["fraction"] > 0:
            f_req *= float(np.clip(fraction / measured["fraction"], 0.5, 2.0))
    return params, measured
