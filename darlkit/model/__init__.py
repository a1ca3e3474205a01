"""The DARL model (A/B/cycle paths, one-step segmentation), model folders and loading.

* ``DARL`` -- epsilon_theta + G + the diffusion schedule; ``segment``, ``synthesize``,
  ``forward_paths`` (returns ``DARLPaths``), ``config`` / ``save_pretrained`` /
  ``from_pretrained`` (a model folder: ``config.json`` + ``model.safetensors``).
* ``load_model`` -- one loader for a model folder, a training checkpoint or the release.
* ``check_image`` / ``check_mask`` / ``IMAGE_RANGE_TOLERANCE`` -- the input rules of DARL's methods.
* ``segment_image`` / ``segment_tiled`` -- any H x W: padding, overlapping blended tiles;
  ``estimate_segment_memory`` / ``available_memory`` -- refuse calls that would not fit.
* ``load_released_checkpoint`` -- the authors' ``<prefix>_G.pth`` / ``_Ds.pth`` / ``_Da.pth``.
* ``OneStepSegmenter`` / ``export_segmenter`` / ``load_exported`` / ``OnnxSegmenter`` -- the
  one-step segmenter as a plain module, written to ONNX, TorchScript or a ``torch.export``
  program and checked against eager (``darlkit export``).
* ``InferenceSegmenter`` / ``native_bf16`` / ``bf16_agreement`` -- the fast inference path
  (folded spectral norms, inference mode, bf16, ``torch.compile``, ONNX Runtime) for
  ``segment_image``.
"""

from darlkit.model.darl import DARL, DARLPaths, mask_to_onehot
from darlkit.model.export import (
    EXPORT_FORMATS,
    EXPORT_TOLERANCE,
    OneStepSegmenter,
    OnnxSegmenter,
    export_segmenter,
    load_exported,
    materialize_spectral_norm,
    read_export_metadata,
    verify_export,
)
from darlkit.model.loading import load_model, model_from_checkpoint, read_torch_file
from darlkit.model.inputs import IMAGE_RANGE_TOLERANCE, check_image, check_mask
from darlkit.model.safe_load import safe_load_error
from darlkit.model.inference import default_tile, pad_to_multiple, segment_image, segment_tiled
from darlkit.model.runtime import (
    BF16_MIN_DICE,
    PRECISIONS,
    RUNTIMES,
    InferenceSegmenter,
    bf16_agreement,
    native_bf16,
)
from darlkit.model.memory import *  # noqa: F403 - its __all__ is re-exported whole (below)
from darlkit.model.memory import __all__ as _memory_names
from darlkit.model.released import RELEASED_PREFIX_MAP, ReleasedModels, load_released_checkpoint, map_released_keys

__all__ = [
    "DARL",
    "DARLPaths",
    "load_model",
    "model_from_checkpoint",
    "read_torch_file",
    "mask_to_onehot",
    "check_image",
    "check_mask",
    "IMAGE_RANGE_TOLERANCE",
    "safe_load_error",
    "segment_image",
    "segment_tiled",
    "InferenceSegmenter",
    "bf16_agreement",
    "native_bf16",
    "BF16_MIN_DICE",
    "PRECISIONS",
    "RUNTIMES",
    "default_tile",
    "pad_to_multiple",
    *_memory_names,
    "load_released_checkpoint",
    "map_released_keys",
    "ReleasedModels",
    "RELEASED_PREFIX_MAP",
    "OneStepSegmenter",
    "OnnxSegmenter",
    "export_segmenter",
    "load_exported",
    "read_export_metadata",
    "verify_export",
    "materialize_spectral_norm",
    "EXPORT_FORMATS",
    "EXPORT_TOLERANCE",
]
