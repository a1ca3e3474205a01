"""The CLI's run-config flags come from one table and land in TrainConfig fields, validated by it."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from darlkit.cli.options import _config_flags, add_training_arguments, build_configs
from darlkit.training import TrainConfig


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    return parser.parse_args(list(argv))


def test_every_flag_names_real_config_fields():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for flag, targets, _ in _config_flags():
        assert set(targets) <= fields, flag


def test_flags_set_their_fields_and_unset_flags_keep_the_preset():
    cfg, _ = build_configs(_parse("--preset", "tiny", "--batch-size", "3", "--lr", "0.002", "--ema", "0.9",
                              "--channels-last", "--workers", "2", "--seed", "5"))
    tiny = TrainConfig.preset("tiny")
    assert (cfg.batch_size, cfg.lr, cfg.lr_d, cfg.ema_decay, cfg.eval_ema) == (3, 0.002, 0.002, 0.9, True)
    assert (cfg.channels_last, cfg.num_workers, cfg.seed) == (True, 2, 5)
    assert (cfg.image_size, cfg.compile, cfg.amp) == (tiny.image_size, tiny.compile, tiny.amp)
    assert build_configs(_parse(), default_preset="tiny")[0] == tiny


def test_values_are_validated_by_the_config():
    with pytest.raises(ValueError, match="ema_decay"):
        build_configs(_parse("--ema", "1.5"))
    with pytest.raises(ValueError, match="image_size"):
        build_configs(_parse("--image-size", "100"))  # checked with the model: paper U-Net needs 32
