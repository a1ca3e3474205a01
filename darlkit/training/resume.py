"""Options on resume: which settings may change when a run continues, and applying them.

A resumed run continues the stored one, so the settings that define the model, the losses and
the data order (network widths, T, the schedule, batch size, seed, loss weights, pool size, the
step ranges, EMA, mixed precision, ...) must equal the checkpoint's; changing one is refused
with the field names and both values. The settings listed in :data:`CHANGEABLE_ON_RESUME` may
change; they are applied (the optimisers' learning rates and betas are set in their parameter
groups after the optimiser states are loaded, which would otherwise restore the old ones), and
the configuration stored in later checkpoints is the one that ran.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from darlkit.training.config import TrainConfig
from darlkit.training.networks import ModelConfig

__all__ = [
    "CHANGEABLE_ON_RESUME",
    "MODEL_CHANGEABLE_ON_RESUME",
    "check_model_changes",
    "resume_model_config",
    "config_changes",
    "check_resume_changes",
    "resume_config",
    "apply_optimizer_settings",
]

CHANGEABLE_ON_RESUME: tuple[str, ...] = (
    "lr",
    "lr_d",
    "betas",
    "grad_clip",
    "epochs",
    "val_every",
    "ckpt_every",
    "log_every",
    "skip_nonfinite",
    "val_threshold",
    "eval_tta",
    "calibrate_threshold",
    "num_workers",
    "max_val_images",
    "figure_rows",
    "channels_last",
    "compile",
    "eval_ema",
    "collapse_patience",
    "collapse_restore",
)
"""``TrainConfig`` fields that may differ from the checkpoint's when resuming (the others may not;
``preset_name`` is informational and keeps the checkpoint's value)."""

MODEL_CHANGEABLE_ON_RESUME: tuple[str, ...] = ("generator.backend",)
"""``ModelConfig`` settings (dotted keys) that may differ from the checkpoint's when resuming: the
kernel backend computes the same function; every other network setting defines the weights."""

_INFORMATIONAL = ("preset_name",)


def _as_config(value: TrainConfig | Mapping[str, Any], name: str) -> TrainConfig:
    if isinstance(value, TrainConfig):
        return value
    if isinstance(value, Mapping):
        return TrainConfig.from_dict(dict(value))
    raise TypeError(f"{name} must be a TrainConfig or its dict, got {type(value).__name__}")


def config_changes(stored: TrainConfig | Mapping[str, Any], current: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Fields whose value differs between a checkpoint's configuration and ``current``.

    Args:
        stored: The checkpoint's configuration (a ``TrainConfig`` or its ``to_dict()``).
        current: The configuration of the resuming trainer.

    Returns:
        ``{field: (stored value, current value)}`` in field order, without ``preset_name``.
    """
    old = _as_config(stored, "stored").to_dict()
    new = _as_config(current, "current").to_dict()
    return {k: (old[k], new[k]) for k in new if k not in _INFORMATIONAL and old.get(k) != new[k]}


def check_resume_changes(stored: TrainConfig | Mapping[str, Any], current: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Refuse changed fixed settings; return the changed settings that are applied.

    Args:
        stored: The checkpoint's configuration.
        current: The configuration of the resuming trainer.

    Returns:
        ``{field: (stored value, current value)}`` of the changed fields of
        :data:`CHANGEABLE_ON_RESUME`.

    Raises:
        ValueError: If a field outside :data:`CHANGEABLE_ON_RESUME` differs; the message lists
            every such field with the checkpoint's and the requested value.
    """
    changes = config_changes(stored, current)
    fixed = {k: v for k, v in changes.items() if k not in CHANGEABLE_ON_RESUME}
    if fixed:
        listed = ", ".join(f"{k} (checkpoint: {a!r}, requested: {b!r})" for k, (a, b) in fixed.items())
        raise ValueError(
            f"cannot resume with changed setting(s) {listed}: they define the model, the losses or the "
            f"data order of the stored run; only {', '.join(CHANGEABLE_ON_RESUME)} may change on resume"
        )
    return {k: v for k, v in changes.items() if k in CHANGEABLE_ON_RESUME}


def resume_config(stored: TrainConfig | Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The configuration a resumed run uses: the checkpoint's, with explicit overrides.

    Args:
        stored: The checkpoint's configuration.
        overrides: Fields the user set explicitly for the continued run (e.g. ``{"lr": 1e-5}``).

    Returns:
        The validated configuration (``preset_name`` and every unset field as stored).

    Raises:
        ValueError: If an override changes a fixed setting (see :func:`check_resume_changes`) or
            is invalid.
        TypeError: If an override names an unknown field.
    """
    base = _as_config(stored, "stored")
    overrides = dict(overrides or {})
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
    current = base.replace(**overrides)
    check_resume_changes(base, current)
    return current


def check_model_changes(stored: ModelConfig, current: ModelConfig) -> dict[str, tuple[Any, Any]]:
    """Refuse changed network settings except :data:`MODEL_CHANGEABLE_ON_RESUME`.

    Args:
        stored: The checkpoint's model configuration (``ModelConfig.from_checkpoint``).
        current: The model configuration of the resuming run.

    Returns:
        ``{key: (stored value, current value)}`` of the changed changeable settings.

    Raises:
        ValueError: If another setting differs; the message lists each with both values.
    """
    old, new = stored.flat(), current.flat()
    changes = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
    fixed = {k: v for k, v in changes.items() if k not in MODEL_CHANGEABLE_ON_RESUME}
    if fixed:
        listed = ", ".join(f"{k} (checkpoint: {a!r}, requested: {b!r})" for k, (a, b) in fixed.items())
        raise ValueError(f"cannot resume with changed network setting(s) {listed}: they define the stored "
                         f"weights; only {', '.join(MODEL_CHANGEABLE_ON_RESUME)} may change on resume")
    return changes


def resume_model_config(stored: ModelConfig, overrides: Mapping[str, Any] | None = None) -> ModelConfig:
    """The model configuration a resumed run uses: the checkpoint's, with explicit overrides.

    Args:
        stored: The checkpoint's model configuration.
        overrides: Dotted-key settings given for the continued run (e.g. ``{"generator.backend": "eager"}``).

    Returns:
        The validated configuration.

    Raises:
        ValueError: If an override changes a fixed setting (see :func:`check_model_changes`).
    """
    current = stored.replace(dict(overrides or {}))
    check_model_changes(stored, current)
    return current


def apply_optimizer_settings(
    changes: Mapping[str, tuple[Any, Any]],
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    *,
    schedulers: tuple[Any, Any] = (None, None),
) -> None:
    """Apply changed ``lr`` / ``lr_d`` / ``betas`` to the optimisers' parameter groups.

    ``Optimizer.load_state_dict`` restores the stored groups' hyper-parameters, so call this
    after loading a checkpoint for the resumed run to use the requested ones. Unchanged settings
    are left as loaded (an injected optimiser keeps its own values).

    Args:
        changes: ``{field: (stored, requested)}`` from :func:`check_resume_changes`.
        opt_g: Optimiser of the diffusion module + generator (gets ``lr``).
        opt_d: Optimiser of the discriminators (gets ``lr_d``).
        schedulers: The LR schedulers of ``opt_g`` and ``opt_d`` (``None``: none).

    Raises:
        ValueError: If a learning rate changes for an optimiser driven by an LR scheduler (the
            scheduler owns it; build the trainer with a new scheduler instead).
    """
    for field, opt, sched in (("lr", opt_g, schedulers[0]), ("lr_d", opt_d, schedulers[1])):
        if field in changes:
            if sched is not None:
                old, new = changes[field]
                raise ValueError(
                    f"cannot change {field} on resume (checkpoint: {old!r}, requested: {new!r}): an LR "
                    "scheduler sets this optimiser's learning rate"
                )
            for group in opt.param_groups:
                group["lr"] = float(changes[field][1])
        if "betas" in changes:
            for group in opt.param_groups:
                if "betas" in group:
                    group["betas"] = tuple(changes["betas"][1])
