"""ModelConfig: the networks' own settings, its presets, --net, resume checks and old checkpoints."""

from __future__ import annotations

import argparse
import warnings

import pytest
import torch

from darlkit.cli.options import add_training_arguments, build_configs
from darlkit.training import (
    LEGACY_MODEL_FIELDS,
    ModelConfig,
    TrainConfig,
    build_networks,
    check_run,
    resume_model_config,
    settable,
)

# Parameter counts of (U-Net, generator, one discriminator) of each preset on main (d52e66d),
# measured with `build_networks(TrainConfig.preset(name))`: the presets' networks must not change
# (except "small", which issue 12's CHASE_DB1 measurements set to the tiny networks on 2026-12-02).
MAIN_PARAMS = {
    "tiny": (759_329, 504_193, 693_217),
    "small": (759_329, 504_193, 693_217),
    "paper": (27_432_513, 7_936_513, 2_762_689),
}


def _n(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(MAIN_PARAMS))
def test_presets_build_the_networks_they_built_on_main(name):
    model, d_s, d_a = build_networks(TrainConfig.preset(name))
    assert (_n(model.unet), _n(model.generator), _n(d_s)) == MAIN_PARAMS[name]
    assert _n(d_a) == _n(d_s) and model.unet.image_size == TrainConfig.preset(name).image_size


def test_every_part_holds_all_constructor_arguments_with_the_paper_defaults():
    cfg = ModelConfig()
    assert set(cfg.unet) == set(settable("unet")) and "image_size" not in cfg.unet
    assert cfg.generator["spade_hidden"] == 128 and cfg.discriminator["base_channels"] == 64
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.flat()["unet.channel_mults"] == (1, 1, 2, 2, 4, 4)


@pytest.mark.parametrize(
    "overrides, exc, match",
    [
        ({"unet.base_channels": 0}, ValueError, r"ModelConfig unet: base_channels must be >= 1, got 0"),
        ({"unet.image_size": 64}, ValueError, r"unet.image_size is fixed by DARL .*TrainConfig.image_size"),
        ({"unet.widths": 3}, TypeError, r"unet has no setting 'widths'"),
        ({"generator.spade_hidden": 8.5}, TypeError, r"generator.spade_hidden must be an int, got 8.5"),
        ({"diffusion.schedule": "nope"}, ValueError, r"ModelConfig diffusion: unknown beta schedule"),
        ({"t_a_max": 3000}, ValueError, r"ModelConfig t_a_max: t_a_max must be an int in \[1, 2000\]"),
        ({"decoder.x": 1}, TypeError, r"unknown model setting 'decoder.x'"),
    ],
)
def test_bad_settings_fail_with_the_setting_named(overrides, exc, match):
    with pytest.raises(exc, match=match):
        ModelConfig.preset("tiny", overrides)


def test_train_and_model_configs_are_checked_together():
    net = ModelConfig.preset("tiny")  # 4 U-Net levels: crops divisible by 8
    with pytest.raises(ValueError, match="image_size must be divisible by 8"):
        check_run(TrainConfig.preset("tiny", image_size=36), net)
    with pytest.raises(ValueError, match=r"t_b_max must be <= the diffusion steps T=100"):
        check_run(TrainConfig.preset("tiny"), net.replace({"diffusion.timesteps": 100, "t_a_max": 50}))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    return parser.parse_args(list(argv))


def test_net_option_sets_typed_network_settings():
    config, net = build_configs(_args("--preset", "tiny", "--net", "unet.base_channels=24", "--net",
                                      "unet.channel_mults=1,2,4", "--net", "generator.spectral_norm=false",
                                      "--net", "generator.init=none", "--net", "t_a_max=150"))
    assert config == TrainConfig.preset("tiny")
    assert (net.unet["base_channels"], net.unet["channel_mults"]) == (24, (1, 2, 4))
    assert (net.generator["spectral_norm"], net.generator["init"], net.t_a_max) == (False, None, 150)
    assert net.generator["base_channels"] == 16  # the preset's, untouched
    assert build_configs(_args(), "tiny") == (TrainConfig.preset("tiny"), ModelConfig.preset("tiny"))


@pytest.mark.parametrize(
    "item, match",
    [("unet.base_channels", "is not KEY=VALUE"), ("unet.nope=3", "is not KEY=VALUE"),
     ("unet.base_channels=wide", "unet.base_channels must be an int, got 'wide'"),
     ("unet.channel_mults=1,x", "comma-separated ints")],
)
def test_net_option_errors_are_one_line(item, match):
    with pytest.raises(ValueError, match=match) as err:
        build_configs(_args("--net", item), "tiny")
    assert "\n" not in str(err.value)


def test_cli_reports_a_bad_net_setting_in_one_line(tmp_path, capsys):
    from darlkit.cli import main

    code = main(["train", "--synthetic", "--preset", "tiny", "--out", str(tmp_path / "r"), "--net", "unet.base_channels=0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "base_channels must be >= 1" in err


def test_resume_allows_only_the_backend_to_change():
    stored = ModelConfig.preset("tiny")
    assert resume_model_config(stored, {"generator.backend": "auto"}).generator["backend"] == "auto"
    with pytest.raises(ValueError, match=r"unet.base_channels \(checkpoint: 16, requested: 8\)"):
        resume_model_config(stored, {"unet.base_channels": 8})


def test_legacy_flat_fields_map_into_the_model_config():
    old = {"unet_base_channels": 2, "unet_channel_mults": [1, 2], "unet_num_res_blocks": 1,
           "unet_attn_resolutions": [16], "unet_norm_groups": 1, "gen_base_channels": 2, "spade_hidden": 2,
           "disc_base_channels": 2, "backend": "eager", "num_timesteps": 100, "beta_schedule": "linear",
           "t_a_max": 20, "image_size": 32, "lr": 0.01}
    assert set(LEGACY_MODEL_FIELDS) <= set(old)
    net = ModelConfig.from_checkpoint({"config": old})
    assert (net.unet["channel_mults"], net.generator["spade_hidden"], net.discriminator["base_channels"]) == ((1, 2), 2, 2)
    assert (net.diffusion["timesteps"], net.t_a_max, net.generator["backend"]) == (100, 20, "eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the legacy keys are known: no warning
        assert TrainConfig.from_dict(old) == TrainConfig(image_size=32, lr=0.01)


def test_unknown_model_keys_warn_and_are_ignored():
    data = ModelConfig.preset("tiny").to_dict()
    data["unet"]["future_option"] = 1
    with pytest.warns(UserWarning, match="unknown key.*unet.future_option"):
        assert ModelConfig.from_dict(data) == ModelConfig.preset("tiny")


def test_trainer_from_configs_builds_the_runs_networks():
    from darlkit.training import DARLTrainer

    config = TrainConfig.preset("tiny", image_size=32)
    net = ModelConfig.preset("tiny", {"unet.channel_mults": (1, 2), "unet.attn_resolutions": (), "unet.base_channels": 8})
    trainer = DARLTrainer.from_configs(config, net, progress=False)
    ref = build_networks(config, net)[0].state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in trainer.model.state_dict().items())
    assert ModelConfig.of_networks(trainer.model, trainer.disc_mask) == net
    state = trainer.state_dict()
    assert ModelConfig.from_checkpoint(state) == net and state["discriminator_config"]["base_channels"] == 32
