"""Data loading for DARL: one image reader for every format, the XCAD folder layout, helpers.

- ``read_image`` / ``read_image_frames``: PNG, TIFF, JPEG, GIF, BMP, PNM and DICOM (optional
  extra ``darlkit[dicom]``) to float32 [0, 1], with a ``channel`` choice for colour and a
  documented window for high-depth data; ``read_mask``: binary masks to bool;
  ``list_image_files``: files, folders and globs to a sorted file list.
- ``XCADDataset``: unpaired train triplets (angiogram, background, mask) as random crops with
  random-phase polyphase 2x sub-sampling and flips, or paired full-size test/val images and masks.
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
from darlkit.data.xcad import SPLITS, TRAIN_FOLDERS, XCADDataset

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
    "read_grayscale_png",
    "list_png_files",
    "to_unit_range",
    "from_unit_range",
]
