"""Synthetic vessel data: fractal/tree vessel masks, XCAD-like angiograms, a synthetic XCAD writer.

- ``FractalVesselSynthesizer`` (styles ``"ssvs"``: the released rectangle fractals of XCAD's
  ``trainA``; ``"tree"``: curved, tapering Murray's-law trees) and its endless ``VesselMaskStream``.
- ``render_background`` / ``render_angiogram`` / ``add_quantum_noise``: XCAD-like X-ray frames.
- ``write_synthetic_xcad``: a complete dataset in the XCAD folder layout (``darlkit synth``).
"""

from darlkit.synthesis.angiogram import add_quantum_noise, render_angiogram, render_background, vessel_chord
from darlkit.synthesis.ssvs import apply_warp_grid, paint_rectangles, painted_box, ssvs_rectangles, ssvs_warp_grid, warp_ssvs_masks
from darlkit.synthesis.synthesizer import STYLES, FractalVesselSynthesizer, VesselMaskStream
from darlkit.synthesis.tree import TreeParams, grow_vessel_tree, render_capsules
from darlkit.synthesis.writer import CROP_MIN_VESSEL_FRACTION, SyntheticXCADSpec, crop_window, write_synthetic_xcad

__all__ = [
    "FractalVesselSynthesizer",
    "VesselMaskStream",
    "STYLES",
    "TreeParams",
    "grow_vessel_tree",
    "render_capsules",
    "ssvs_rectangles",
    "paint_rectangles",
    "painted_box",
    "ssvs_warp_grid",
    "apply_warp_grid",
    "warp_ssvs_masks",
    "render_background",
    "render_angiogram",
    "add_quantum_noise",
    "vessel_chord",
    "write_synthetic_xcad",
    "SyntheticXCADSpec",
    "crop_window",
    "CROP_MIN_VESSEL_FRACTION",
]
