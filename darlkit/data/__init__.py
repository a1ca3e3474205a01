"""Data loading for DARL: the XCAD folder layout and 8-bit PNG / intensity helpers.

- ``XCADDataset``: unpaired train triplets (angiogram, background, mask) with random-phase
  polyphase 2x sub-sampling and flips, or paired full-size test images and masks.
- ``read_grayscale_png``, ``list_png_files``: strict PNG reading with errors that name the file.
- ``to_unit_range`` / ``from_unit_range``: uint8 [0, 255] <-> float32 [-1, 1].
"""

from darlkit.data.io import from_unit_range, list_png_files, read_grayscale_png, to_unit_range
from darlkit.data.xcad import SPLITS, TRAIN_FOLDERS, XCADDataset

__all__ = ["XCADDataset", "SPLITS", "TRAIN_FOLDERS", "read_grayscale_png", "list_png_files", "to_unit_range", "from_unit_range"]
