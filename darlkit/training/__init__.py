"""darlkit.training: TrainConfig presets, DARLTrainer, crash-safe checkpoints, EMA and DDP.

``DARLTrainer`` runs the paper's alternating optimisation (generator step, then
discriminator step) with mixed precision, EMA, gradient clipping, validation, resumable
checkpoints and multi-process (``torchrun``) data parallelism.
"""

from darlkit.training.checkpoint import (
    CHECKPOINT_FORMAT,
    checkpoint_digest,
    remove_stale_temp_files,
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
from darlkit.training.networks import build_networks
from darlkit.training.resume import (
    CHANGEABLE_ON_RESUME,
    apply_optimizer_settings,
    check_resume_changes,
    config_changes,
    resume_config,
)
from darlkit.training.preflight import DatasetCheckError, PreflightReport, check_dataset_files
from darlkit.training.trainer import DARLTrainer, StepSampler, collate, save_figure, segment_image

__all__ = [
    "TrainConfig",
    "PRESETS",
    "AMP_MODES",
    "build_networks",
    "check_dataset_files",
    "CHANGEABLE_ON_RESUME",
    "config_changes",
    "check_resume_changes",
    "resume_config",
    "apply_optimizer_settings",
    "DatasetCheckError",
    "PreflightReport",
    "DARLTrainer",
    "StepSampler",
    "segment_image",
    "collate",
    "save_figure",
    "CHECKPOINT_FORMAT",
    "checkpoint_digest",
    "remove_stale_temp_files",
    "save_checkpoint",
    "load_checkpoint",
    "get_rng_state",
    "set_rng_state",
    "load_trained_model",
    "evaluate_model",
    "add_gaussian_noise",
    "read_png",
    "write_png",
]
