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


def test_calibration_and_tta_flags():
    small = build_configs(_parse("--preset", "small"))[0]
    assert (small.calibrate_threshold, small.eval_tta) == (True, "flip")
    off = build_configs(_parse("--preset", "small", "--no-calibrate", "--eval-tta", "none"))[0]
    assert (off.calibrate_threshold, off.eval_tta) == (False, "none")
    on = build_configs(_parse("--preset", "tiny", "--calibrate", "--eval-tta", "flip"))[0]
    assert (on.calibrate_threshold, on.eval_tta) == (True, "flip")
    with pytest.raises(SystemExit):
        _parse("--eval-tta", "rot")


def test_lr_d_flag_sets_only_the_discriminators_rate():
    cfg = build_configs(_parse("--preset", "small", "--lr", "3e-4", "--lr-d", "5e-5"))[0]
    assert (cfg.lr, cfg.lr_d) == (3e-4, 5e-5)
