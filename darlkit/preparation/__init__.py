"""Preparing a user's images for DARL: ``darlkit prepare`` as library code.

Above :mod:`darlkit.data` (reading, pairing, pseudo-backgrounds, field of view) and
:mod:`darlkit.synthesis` (fractal masks), which it combines:

- ``prepare_dataset``: user folders (any format, size, modality) -> the XCAD layout that
  ``darlkit train`` and ``darlkit evaluate`` read, plus ``prepare.json`` recording every choice;
- ``vessel_width`` / ``vessel_fraction`` (statistics of label masks), ``matched_tree_params`` /
  ``calibrate_tree_params`` / ``synthesize_masks``: fractal training masks matched to the targets;
  ``square_fov`` / ``restrict_to_fov``: masks kept inside a field of view;
- ``local_contrast``: the local contrast normalisation of ``--contrast local``;
- ``read_prepare_record`` / ``prepare_like``: a new image given the preparation a folder's images had;
- ``tile_grid`` / ``tile_coverages`` / ``write_tiles``: the training tiles of ``--train-tile``.
"""

from darlkit.preparation.contrast import CONTRAST_MODES, local_contrast
from darlkit.preparation.masks import (
    calibrate_tree_params,
    matched_tree_params,
    restrict_to_fov,
    square_fov,
    synthesize_masks,
    vessel_fraction,
    vessel_width,
)
from darlkit.preparation.prepare import (
    DEFAULT_VESSEL_FRACTION,
    DEFAULT_VESSEL_WIDTH_512,
    MASK_FOV_MODES,
    MAX_MASK_FOVS,
    PREPARE_RECORD,
    prepare_dataset,
)
from darlkit.preparation.replay import contrast_in_field_of_view, prepare_like, prepared_shape, read_prepare_record, resample
from darlkit.preparation.tiles import MIN_TILE_COVERAGE, tile_coverages, tile_grid, write_tiles

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
    "square_fov",
    "restrict_to_fov",
    "local_contrast",
    "CONTRAST_MODES",
    "MASK_FOV_MODES",
    "MAX_MASK_FOVS",
    "tile_grid",
    "tile_coverages",
    "write_tiles",
    "MIN_TILE_COVERAGE",
    "read_prepare_record",
    "prepare_like",
    "prepared_shape",
    "resample",
    "contrast_in_field_of_view",
]
