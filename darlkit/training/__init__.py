"""darlkit.training: TrainConfig presets, DARLTrainer, crash-safe checkpoints, EMA and DDP.

``DARLTrainer`` runs the paper's alternating optimisation (:class:`DARLStep`: generator step,
then discriminator step) with injectable optimisers and LR schedulers, mixed precision, EMA,
gradient clipping, validation, resumable checkpoints, callbacks and multi-process
(``torchrun``) data parallelism.
"""

from darlkit.training.callbacks import Callback, ProgressBar
from darlkit.training.checkpoint import (
    CHECKPOINT_FORMAT,
    checkpoint_digest,
    remove_stale_temp_files,
    Checkpointer,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from darlkit.training.config import AMP_MODES, LEGACY_MODEL_FIELDS, PRESETS, TrainConfig, resolve_amp
from darlkit.training.inference import (
    INFERENCE_KEY,
    add_gaussian_noise,
    evaluate_model,
    inference_defaults,
    load_trained_model,
    read_png,
    write_png,
)
from darlkit.training.figures import save_figure
from darlkit.training.guard import RunGuard, restore_best
from darlkit.training.logs import RunLog
from darlkit.training.networks import *  # noqa: F403 - its __all__ is re-exported whole (below)
from darlkit.training.nonfinite import NonFiniteLoss, NonFiniteLossError
from darlkit.training.optim import LR_DECAYS, WarmupDecay, build_optimizer, build_scheduler, config_scheduler, paper_adam
from darlkit.training.preflight import DatasetCheckError, PreflightReport, check_dataset_files, check_training_datasets
from darlkit.training.resume import *  # noqa: F403 - its __all__ is re-exported whole (below)
from darlkit.training.monitor import CollapseMonitor, CollapseStatus
from darlkit.training.recipes import (
    VAL_FOLDERS,
    calibrate_checkpoint,
    choose_threshold,
    evaluate_on_split,
    train_on_folder,
    validation_seed,
    validation_split,
    write_quickstart_data,
    write_validation_split,
)
from darlkit.training.run_files import RunFiles
from darlkit.training.run_folder import RUN_FILES, check_run_folder, clear_run_files, truncate_logs
from darlkit.training.sampler import StepSampler, collate, step_batches, step_draws
from darlkit.training.signals import TrainingInterrupted, stop_on_signals
from darlkit.training.step import DARLStep
from darlkit.training.trainer import DARLTrainer
from darlkit.model.inference import segment_image  # noqa: F401 - kept importable here (moved to darlkit.model)
from darlkit.training.validation import ValidationHistory, run_validation
from darlkit.training import networks as _networks, resume as _resume

__all__ = [
    "TrainConfig",
    "PRESETS",
    "AMP_MODES",
    "resolve_amp",
    "LEGACY_MODEL_FIELDS",
    *_networks.__all__,
    "check_dataset_files",
    "check_training_datasets",
    "RunGuard",
    "restore_best",
    "TrainingInterrupted",
    "stop_on_signals",
    "NonFiniteLoss",
    "NonFiniteLossError",
    "RUN_FILES",
    "check_run_folder",
    "clear_run_files",
    "truncate_logs",
    *_resume.__all__,
    "DatasetCheckError",
    "PreflightReport",
    "DARLTrainer",
    "DARLStep",
    "Callback",
    "ProgressBar",
    "paper_adam",
    "build_optimizer",
    "build_scheduler",
    "config_scheduler",
    "WarmupDecay",
    "LR_DECAYS",
    "StepSampler",
    "step_draws",
    "step_batches",
    "collate",
    "RunFiles",
    "Checkpointer",
    "RunLog",
    "ValidationHistory",
    "run_validation",
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
    "CollapseMonitor",
    "CollapseStatus",
    "VAL_FOLDERS",
    "validation_seed",
    "write_validation_split",
    "write_quickstart_data",
    "validation_split",
    "train_on_folder",
    "evaluate_on_split",
    "choose_threshold",
    "calibrate_checkpoint",
    "inference_defaults",
    "INFERENCE_KEY",
]
