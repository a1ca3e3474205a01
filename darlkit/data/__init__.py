"""Data loading for DARL: one image reader for every format, the XCAD folder layout, helpers.

- ``read_image`` / ``read_image_frames``: PNG, TIFF, JPEG, GIF, BMP, PNM and DICOM (optional
  extra ``darlkit[dicom]``) to float32 [0, 1], with a ``channel`` choice for colour and a
  documented window for high-depth data; ``read_mask``: binary masks to bool;
  ``list_image_files``: files, folders and globs to a sorted file list.
- ``XCADDataset``: unpaired train triplets (angiogram, background, mask) as random crops with
  random-phase polyphase 2x sub-sampling and flips, or paired full-size test/val images and masks.
- the parts of ``darlkit.preparation.prepare_dataset`` (``darlkit prepare``) that need no
  synthesis: ``pair_files`` / ``pairing_key`` (labels by name key), ``pseudo_background``
  (vessel-free backgrounds by grey closing), ``field_of_view`` (automatic ROI)
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
from darlkit.data.roi import field_of_view
from darlkit.data.xcad import PAIRED_FOLDERS, SMALL_IMAGE_MODES, SPLITS, TRAIN_FOLDERS, XCADDataset, read_training_mask

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
    "pair_files",
    "pairing_key",
    "KEY_SUFFIXES",
    "pseudo_background",
    "noise_level",
    "field_of_view",
    "grey_closing",
    "grey_opening",
    "gaussian_blur",
    "read_grayscale_png",
    "list_png_files",
    "to_unit_range",
    "from_unit_range",
    "read_training_mask",
]
