"""darlkit.training: TrainConfig presets, DARLTrainer, crash-safe checkpoints, EMA and DDP.

``DARLTrainer`` runs the paper's alternating optimisation (generator step, then
discriminator step) with mixed precision, EMA, gradient clipping, validation, resumable
checkpoints and multi-process (``torchrun``) data parallelism.
"""

from darlkit.training.checkpoint import (
    CHECKPOINT_FORMAT,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from darlkit.training.config import AMP_MODES, PRESETS, TrainConfig
from darlkit.training.inference import (
    add_gaussian_noise,
    evaluate_model,
    load_trained_model,
    read_png,
    write_png,
)
from darlkit.training.monitor import CollapseMonitor, CollapseStatus
from darlkit.training.networks import build_networks
from darlkit.training.recipes import (
    VAL_FOLDERS,
    evaluate_on_split,
    train_on_folder,
    validation_seed,
    validation_split,
    write_quickstart_data,
    write_validation_split,
)
from darlkit.training.trainer import DARLTrainer, StepSampler, collate, save_figure, segment_image

__all__ = [
    "TrainConfig",
    "PRESETS",
    "AMP_MODES",
    "build_networks",
    "DARLTrainer",
    "StepSampler",
    "segment_image",
    "collate",
    "save_figure",
    "CHECKPOINT_FORMAT",
    "save_checkpoint",
    "load_checkpoint",
    "get_rng_state",
    "set_rng_state",
    "load_trained_model",
    "evaluate_model",
    "add_gaussian_noise",
    "read_png",
    "write_png",
    "CollapseMonitor",
    "CollapseStatus",
    "VAL_FOLDERS",
    "validation_seed",
    "write_validation_split",
    "write_quickstart_data",
    "validation_split",
    "train_on_folder",
    "evaluate_on_split",
]
