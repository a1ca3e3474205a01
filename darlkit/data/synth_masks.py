"""Fractal training masks matched to the target images (``darlkit prepare --masks synth``).

DARL learns from unpaired fractal masks, so their vessel fraction and width should be those of
the target images. Measured on label masks (bool, inside the ROI when one is given):

- ``vessel_fraction``: vessel pixels / pixels;
- ``vessel_width``: ``2 * q99(depth)``, where ``depth`` is each vessel pixel's chessboard distance
  to the background (number of 3x3 erosions that keep it) and ``q99`` its 99th percentile over
  vessel pixels: about the diameter of the widest vessels, robust to a few blobs.

``matched_tree_params`` turns a target (fraction, width, mask side) into ``TreeParams`` of the
``"tree"`` style: root diameters from ``0.8 * width`` to ``width`` (the parameters are in pixels of
a 512 canvas, so they are scaled by ``512 / size``), per-image vessel fraction in
``[0.85, 1.15] * fraction`` (capped at 0.5), up to 8 root trees for fractions above 7 %; the other
shape parameters are the defaults. ``calibrate_tree_params`` then corrects the two targets by
measuring probe masks (the vessel pixels at 255, as ``XCADDataset`` counts them) and rescaling the
root radius and the fraction by target / measured, a few rounds. The ``"ssvs"`` style (XCAD's released rectangle fractals) has
no such controls and is used as is.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from darlkit.data.morphology import erode
from darlkit.synthesis import FractalVesselSynthesizer, TreeParams

__all__ = ["vessel_fraction", "vessel_width", "matched_tree_params", "calibrate_tree_params", "synthesize_masks"]


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
    to512 = 512.0 / size
    root = (max(0.5, 0.4 * width * to512), max(0.5, 0.5 * width * to512))
    base = TreeParams()
    return dataclasses.replace(
        base,
        root_radius=root,
        min_radius=min(base.min_radius, 0.5 * root[0]),
        vessel_fraction=(0.85 * fraction, min(0.5, 1.15 * fraction)),
        max_roots=8 if fraction > 0.07 else base.max_roots,
    )


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
    size: int, width: float, fraction: float, *, rounds: int = 1, probes: int = 2, seed: int = 0
) -> tuple[TreeParams, dict[str, float]]:
    """``matched_tree_params`` corrected by measuring ``probes`` masks per round (module docstring).

    Args:
        size: Mask side (even, >= 32).
        width: Target widest-vessel diameter (px at ``size``).
        fraction: Target vessel fraction.
        rounds: Correction rounds (>= 0).
        probes: Masks measured per round.
        seed: Seed of the probe masks (drawn from a stream apart from the written masks).

    Returns:
        ``(params, {"width": measured, "fraction": measured})`` of the last measurement.
    """
    w_req, f_req = float(width), float(fraction)
    measured = {"width": float("nan"), "fraction": float("nan")}
    for k in range(rounds + 1):
        params = matched_tree_params(size, w_req, min(f_req, 0.5))
        masks = synthesize_masks(probes, size, params=params, seed=seed + 7919 * (k + 1)).numpy() == 255
        measured = {"width": float(np.mean([vessel_width(m) for m in masks])), "fraction": float(masks.mean())}
        if k == rounds:
            break
        if measured["width"] > 0:
            w_req *= float(np.clip(width / measured["width"], 0.5, 2.0))
        if measured["fraction"] > 0:
            f_req *= float(np.clip(fraction / measured["fraction"], 0.5, 2.0))
    return params, measured
