"""Preparing a user's images for DARL: ``darlkit prepare`` as library code.

Above :mod:`darlkit.data` (reading, pairing, pseudo-backgrounds, field of view) and
:mod:`darlkit.synthesis` (fractal masks), which it combines:

- ``prepare_dataset``: user folders (any format, size, modality) -> the XCAD layout that
  ``darlkit train`` and ``darlkit evaluate`` read, plus ``prepare.json`` recording every choice;
- ``vessel_width`` / ``vessel_fraction`` (statistics of label masks), ``matched_tree_params`` /
  ``calibrate_tree_params`` / ``synthesize_masks``: fractal training masks matched to the targets.
"""

from darlkit.preparation.masks import (
    calibrate_tree_params,
    matched_tree_params,
    synthesize_masks,
    vessel_fraction,
    vessel_width,
)
from darlkit.preparation.prepare import DEFAULT_VESSEL_FRACTION, DEFAULT_VESSEL_WIDTH_512, PREPARE_RECORD, prepare_dataset

__all__ = [
    "prepare_dataset",
    "PREPARE_RECORD",
    "DEFAULT_VESSEL_WIDTH_512",
    "DEFAULT_VESSEL_FRACTION",
    "vessel_width",
    "vessel_fraction",
    "matched_tree_params",
    "calibrate_tree_params",
    "synthesize_masks",
]
