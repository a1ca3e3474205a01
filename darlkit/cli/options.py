"""Options shared by the training commands (``darlkit train`` and ``darlkit quickstart``).

Not a command: the command modules import it, never each other. Two kinds of option:

* run-config flags (``--batch-size``, ``--lr``, ...), one table (:func:`_config_flags`) from
  flag to ``TrainConfig`` fields, validated by ``TrainConfig`` itself;
* ``--net PART.ARG=VALUE`` (repeatable): any constructor argument of the networks, named and
  typed by their signatures (``darlkit.training.settable``) and validated by
  ``ModelConfig``, e.g. ``--net unet.base_channels=24 --net unet.channel_mults=1,2,2,4
  --net generator.backend=eager``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from darlkit.cli import argtypes

if TYPE_CHECKING:  # pragma: no cover
    from darlkit.training import ModelConfig, TrainConfig

__all__ = ["add_training_arguments", "config_overrides", "build_configs"]

_VALUE = object()  # stands for the flag's parsed value in _config_flags


def _config_flags() -> tuple[tuple[str, dict[str, Any], dict[str, Any]], ...]:
    """``(flag, TrainConfig fields it sets, argparse options)``: the one table from CLI flags to the config.

    ``_VALUE`` in the fields stands for the parsed value; every flag defaults to ``None`` (the
    preset's value). The values are validated by ``TrainConfig`` itself when it is built.
    """
    from darlkit.training import AMP_MODES, LR_DECAYS

    flag_on = {"action": "store_const", "const": True, "default": None}
    return (
        ("--batch-size", {"batch_size": _VALUE},
         {"type": argtypes.positive_int, "help": "images per step and process"}),
        ("--lr", {"lr": _VALUE, "lr_d": _VALUE},
         {"type": argtypes.positive_float, "help": "learning rate of all optimisers"}),
        ("--lr-d", {"lr_d": _VALUE},
         {"type": argtypes.positive_float, "help": "learning rate of the discriminators (after --lr)"}),
        ("--image-size", {"image_size": _VALUE}, {"type": argtypes.positive_int, "help": "training crop side"}),
        ("--val-every", {"val_every": _VALUE},
         {"type": argtypes.non_negative_int, "help": "validate every N steps (0: at the end)"}),
        ("--seed", {"seed": _VALUE}, {"type": argtypes.non_negative_int, "help": "seed of init, data order and draws"}),
        ("--amp", {"amp": _VALUE}, {"choices": AMP_MODES, "help": "mixed precision (bf16 autocast; fp16 on CUDA)"}),
        ("--channels-last", {"channels_last": _VALUE}, {**flag_on, "help": "channels-last memory format"}),
        ("--compile", {"compile": _VALUE}, {**flag_on, "help": "torch.compile the networks"}),
        ("--ema", {"ema_decay": _VALUE, "eval_ema": True},
         {"type": float, "metavar": "DECAY", "help": "keep an EMA of the weights and evaluate with it"}),
        ("--lr-warmup", {"lr_warmup_steps": _VALUE},
         {"type": argtypes.non_negative_int, "metavar": "N", "help": "linear LR warmup over N steps (0: none)"}),
        ("--lr-decay", {"lr_decay": _VALUE},
         {"choices": LR_DECAYS, "help": "LR decay after the warmup, to 0.1 x lr at the last step"}),
        ("--grad-clip", {"grad_clip": _VALUE},
         {"type": argtypes.positive_float, "help": "clip gradient norms to this value"}),
        ("--workers", {"num_workers": _VALUE}, {"type": argtypes.non_negative_int, "help": "DataLoader workers"}),
        ("--save-every", {"ckpt_every": _VALUE},
         {"type": argtypes.non_negative_int, "metavar": "N",
          "help": "write OUT/last.pt every N steps (0: only at the end; default: the preset's ckpt_every)"}),
        ("--eval-tta", {"eval_tta": _VALUE},
         {"choices": argtypes.TTA_CHOICES,
          "help": "test-time augmentation that evaluate/segment use by default with this run's checkpoints"}),
        ("--calibrate", {"calibrate_threshold": True},
         {**flag_on, "help": "after training, store the threshold with the best validation Dice in best.pt "
                             "as its default (the small preset does)"}),
        ("--no-calibrate", {"calibrate_threshold": False},
         {**flag_on, "help": "keep best.pt's threshold at the paper's 0 (no calibration)"}),
        ("--collapse-restore", {"collapse_restore": True},
         {**flag_on, "help": "when validation shows a collapsed segmentation, go back to best.pt and train on "
                             "(the small preset does)"}),
        ("--no-collapse-restore", {"collapse_restore": False},
         {**flag_on, "help": "on a collapse only warn and train on"}),
        ("--skip-nonfinite", {"skip_nonfinite": _VALUE},
         {"type": argtypes.non_negative_int, "metavar": "N",
          "help": "skip up to N consecutive steps whose loss is NaN/Inf (default 0: stop at the first, "
                  "keeping the last good checkpoint)"}),
    )


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """Register the options shared by ``train`` and ``quickstart``: the preset, the run-config flags
    of :func:`_config_flags`, ``--net`` and the process options (steps, device, threads, progress)."""
    from darlkit.training import PRESETS

    p.add_argument("--preset", choices=PRESETS, default=None, help="configuration preset (default: paper; quickstart: tiny)")
    p.add_argument("--steps", type=argtypes.non_negative_int, default=None, help="total training iterations")
    for flag, _, options in _config_flags():
        p.add_argument(flag, **{"default": None, **options})
    p.add_argument("--net", action="append", default=None, metavar="PART.ARG=VALUE",
                   help="a network setting of the model config (repeatable), e.g. unet.base_channels=24, "
                        "unet.channel_mults=1,2,2,4, generator.backend=eager; PART is unet, generator, "
                        "discriminator or diffusion (or t_a_max=N); ARG any argument of its constructor")
    p.add_argument("--device", type=argtypes.device, default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--threads", type=argtypes.positive_int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``TrainConfig`` fields set explicitly by the run-config flags.

    Args:
        args: Parsed arguments.

    Returns:
        ``{field: value}`` for every flag given on the command line.
    """
    overrides: dict[str, Any] = {}
    for flag, fields, _ in _config_flags():
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            overrides.update({k: value if v is _VALUE else v for k, v in fields.items()})
    return overrides


def build_configs(args: argparse.Namespace, default_preset: str = "paper") -> tuple[TrainConfig, ModelConfig]:
    """The ``(TrainConfig, ModelConfig)`` of parsed CLI arguments: the preset's, with the options given.

    Args:
        args: Parsed arguments with the options of :func:`add_training_arguments`.
        default_preset: Preset used when ``--preset`` is not given.

    Returns:
        Both configurations, validated and checked to fit together (``check_run``).

    Raises:
        ValueError: If an option is invalid (the message names the setting).
    """
    from darlkit.training import ModelConfig, TrainConfig, check_run

    preset = args.preset or default_preset
    config = TrainConfig.preset(preset, **config_overrides(args))
    base = ModelConfig.preset(preset)
    model = base.replace(base.parse_overrides(args.net or []))
    check_run(config, model)
    return config, model
