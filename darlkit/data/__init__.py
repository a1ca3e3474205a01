"""Data loading for DARL: one image reader for every format, the XCAD folder layout, helpers.

- ``read_image`` / ``read_image_frames``: PNG, TIFF, JPEG, GIF, BMP, PNM and DICOM (optional
  extra ``darlkit[dicom]``) to float32 [0, 1], with a ``channel`` choice for colour and a
  documented window for high-depth data; ``read_mask``: binary masks to bool;
  ``list_image_files``: files, folders and globs to a sorted file list.
- ``XCADDataset``: unpaired train triplets (angiogram, background, mask) as random crops with
  random-phase polyphase 2x sub-sampling and flips, or paired full-size test/val images and masks.
- ``prepare_dataset`` (``darlkit prepare``): user folders -> the XCAD layout, with its parts:
  ``pair_files`` / ``pairing_key`` (labels by name key), ``pseudo_background`` (vessel-free
  backgrounds by grey closing), ``field_of_view`` (automatic ROI), ``vessel_width`` /
  ``vessel_fraction`` / ``calibrate_tree_params`` / ``synthesize_masks`` (matched fractal masks)
  and the morphology helpers ``grey_closing`` / ``grey_opening`` / ``gaussian_blur``.
- ``read_grayscale_png``, ``list_png_files``: the strict 8-bit PNG reader of the XCAD layout.
- ``to_unit_range`` / ``from_unit_range``: uint8 [0, 255] <-> float32 [-1, 1].
"""

from darlkit.data.dicom import DICOM_INSTALL_HINT, MissingDependencyError, read_dicom_frames
from darlkit.data.intensity import CHANNELS, DEFAULT_PERCENTILES, SCALINGS, scale_to_unit, select_channel
from darlkit.data.io import (
    IMAGE_SUFFIXES,
    from_unit_range,
    list_image_files,
    list_png_files,
    read_grayscale_png,
    read_image,
    read_image_frames,
    read_mask,
    to_unit_range,
)
from darlkit.data.background import noise_level, pseudo_background
from darlkit.data.morphology import gaussian_blur, grey_closing, grey_opening
from darlkit.data.pairing import KEY_SUFFIXES, pair_files, pairing_key
from darlkit.data.prepare import DEFAULT_VESSEL_FRACTION, DEFAULT_VESSEL_WIDTH_512, PREPARE_RECORD, prepare_dataset
from darlkit.data.roi import field_of_view
from darlkit.data.synth_masks import calibrate_tree_params, matched_tree_params, synthesize_masks, vessel_fraction, vessel_width
from darlkit.data.xcad import PAIRED_FOLDERS, SMALL_IMAGE_MODES, SPLITS, TRAIN_FOLDERS, XCADDataset

__all__ = [
    "read_image",
    "read_image_frames",
    "read_mask",
    "list_image_files",
    "IMAGE_SUFFIXES",
    "CHANNELS",
    "SCALINGS",
    "DEFAULT_PERCENTILES",
    "select_channel",
    "scale_to_unit",
    "read_dicom_frames",
    "DICOM_INSTALL_HINT",
    "MissingDependencyError",
    "XCADDataset",
    "SPLITS",
    "TRAIN_FOLDERS",
    "PAIRED_FOLDERS",
    "SMALL_IMAGE_MODES",
    "prepare_dataset",
    "PREPARE_RECORD",
    "DEFAULT_VESSEL_WIDTH_512",
    "DEFAULT_VESSEL_FRACTION",
    "pair_files",
    "pairing_key",
    "KEY_SUFFIXES",
    "pseudo_background",
    "noise_level",
    "field_of_view",
    "vessel_width",
    "vessel_fraction",
    "matched_tree_params",
    "calibrate_tree_params",
    "synthesize_masks",
    "grey_closing",
    "grey_opening",
    "gaussian_blur",
    "read_grayscale_png",
    "list_png_files",
    "to_unit_range",
    "from_unit_range",
]
