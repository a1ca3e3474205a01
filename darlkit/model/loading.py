"""One loader for a DARL model: a model folder, a training checkpoint, or the authors' release.

:func:`load_model` accepts

* a model folder written by :meth:`DARL.save_pretrained <darlkit.model.DARL.save_pretrained>`
  (``config.json`` + ``model.safetensors``);
* a training checkpoint (``last.pt`` / ``best.pt``; a file, or the dict read from one) that
  holds the model's configuration under ``"model_config"`` (checkpoints written before darlkit
  stored it are read by ``darlkit.training.load_trained_model``, which knows their format);
* the prefix of the authors' release (``<prefix>_G.pth``).

Training checkpoints are read with ``torch.load(weights_only=True)`` (:func:`read_torch_file`),
which refuses pickled Python objects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from darlkit.model.darl import DARL
from darlkit.model.released import load_released_checkpoint
from darlkit.model.safe_load import read_torch_file
from darlkit.nets.config import CONFIG_NAME

__all__ = ["load_model", "model_from_checkpoint", "read_torch_file"]


def _ema_weights(state: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    ema = state.get("ema")
    if ema is None:
        raise ValueError(f"{source} has no EMA weights (train with an EMA decay)")
    prefix = "module."
    weights = {k[len(prefix):]: v for k, v in ema.items() if k.startswith(prefix)}
    # Buffers (spectral-norm vectors, schedules) are not averaged: take the live ones.
    for k, v in state["model"].items():
        weights.setdefault(k, v)
    return weights


def model_from_checkpoint(
    state: Mapping[str, Any],
    *,
    use_ema: bool = False,
    model_config: Mapping[str, Any] | None = None,
    source: str = "checkpoint",
) -> DARL:
    """Rebuild the DARL model of a training-checkpoint dict (in eval mode, on the CPU).

    Args:
        state: The checkpoint dict (``"model"``, optionally ``"ema"`` and ``"model_config"``).
        use_ema: Load the EMA weights instead of the live ones.
        model_config: The model's configuration (default: ``state["model_config"]``).
        source: How to name the checkpoint in error messages (e.g. its path).

    Returns:
        The model with the checkpoint's weights.

    Raises:
        ValueError: If the configuration is missing or invalid, the EMA is requested but
            absent, or the weights do not match the configuration.
    """
    config = state.get("model_config") if model_config is None else model_config
    if config is None:
        raise ValueError(
            f"{source} holds no model configuration (written before darlkit stored one): "
            "load it with darlkit.training.load_trained_model"
        )
    try:
        model = DARL.from_config(config, skip_init=True)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{source} has an invalid model configuration: {exc}") from None
    weights = _ema_weights(state, source) if use_ema else state["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{source} does not match its configuration: {first}") from None
    return model.eval()


def load_model(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    use_ema: bool | None = None,
    map_location: str | torch.device = "cpu",
) -> DARL:
    """Load a DARL model from a model folder, a training checkpoint or the authors' release.

    Args:
        source: A folder with ``config.json`` (see :meth:`DARL.save_pretrained`), a training
            checkpoint file or dict, or a release prefix ``P`` with ``P_G.pth``.
        use_ema: For training checkpoints: load the EMA weights (default: when the run
            evaluated with them and the checkpoint has them; ``True`` without an EMA is an error).
        map_location: Device to put the model on.

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError: If nothing loadable exists at ``source``.
        ValueError: If the files are unreadable or inconsistent (the message names them).
    """
    if isinstance(source, Mapping):
        state, name = source, "checkpoint"
    else:
        path = Path(source)
        if path.is_dir():
            if not (path / CONFIG_NAME).is_file():
                raise FileNotFoundError(f"{path} is a folder without {CONFIG_NAME} (not a darlkit model folder)")
            return DARL.from_pretrained(path, map_location=map_location)
        if not path.exists():
            if Path(f"{path}_G.pth").is_file():
                return load_released_checkpoint(path, map_location=map_location).model
            raise FileNotFoundError(
                f"nothing to load at {path}: no model folder, no checkpoint file and no release file {path}_G.pth"
            )
        state, name = read_torch_file(path), f"checkpoint {path}"
        if not isinstance(state, Mapping) or "model" not in state:
            raise ValueError(f"{path} is not a darlkit training checkpoint (no 'model' weights)")
    if use_ema is None:
        run = state.get("config") or {}
        use_ema = bool(run.get("eval_ema") and state.get("ema") is not None)
    return model_from_checkpoint(state, use_ema=use_ema, source=name).to(map_location)
