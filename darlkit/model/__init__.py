"""The DARL model (A/B/cycle paths, one-step segmentation) and released-checkpoint loading.

* ``DARL`` -- epsilon_theta + G + the diffusion schedule; ``segment``, ``synthesize``,
  ``forward_paths`` (returns ``DARLPaths``), ``DARL.from_released``.
* ``segment_image`` / ``segment_tiled`` -- any H x W: padding, overlapping blended tiles;
  ``estimate_segment_memory`` / ``available_memory`` -- refuse calls that would not fit.
* ``load_released_checkpoint`` -- the authors' ``<prefix>_G.pth`` / ``_Ds.pth`` / ``_Da.pth``.
"""

from darlkit.model.darl import DARL, DARLPaths, mask_to_onehot
from darlkit.model.inference import default_tile, pad_to_multiple, segment_image, segment_tiled
from darlkit.model.memory import (
    ACTIVATION_BASE,
    ACTIVATION_FACTOR,
    SegmentMemoryError,
    available_memory,
    check_segment_memory,
    estimate_segment_memory,
)
from darlkit.model.released import RELEASED_PREFIX_MAP, ReleasedModels, load_released_checkpoint, map_released_keys

__all__ = [
    "DARL",
    "DARLPaths",
    "mask_to_onehot",
    "segment_image",
    "segment_tiled",
    "default_tile",
    "pad_to_multiple",
    "estimate_segment_memory",
    "available_memory",
    "check_segment_memory",
    "SegmentMemoryError",
    "ACTIVATION_FACTOR",
    "ACTIVATION_BASE",
    "load_released_checkpoint",
    "map_released_keys",
    "ReleasedModels",
    "RELEASED_PREFIX_MAP",
]
