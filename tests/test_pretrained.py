"""Model files: network configs, DARL.save_pretrained/from_pretrained, load_model, old checkpoints."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from darlkit.model import DARL, load_model
from darlkit.nets import (
    DiffusionUNet,
    PatchDiscriminator,
    SPADEGenerator,
    SSVSGenerator,
    network_config,
    network_from_config,
)
from darlkit.training import DARLTrainer, ModelConfig, TrainConfig, load_checkpoint, load_trained_model
from test_training_support import build_micro, micro_model, RandomTrainSet, micro_config

FIXTURES = Path(__file__).parent / "fixtures"
NETS = [
    (DiffusionUNet, dict(base_channels=8, channel_mults=(1, 2), attn_resolutions=(16,), norm_groups=4, image_size=32)),
    (SPADEGenerator, dict(base_channels=4, spade_hidden=8, backend="eager")),
    (PatchDiscriminator, dict(base_channels=4, num_layers=2)),
    (SSVSGenerator, dict(base_channels=4, num_blocks=2)),
]


def _tiny_darl() -> DARL:
    model, _, _ = build_micro(micro_config())
    return model.eval()


def _outputs(model: DARL) -> list[torch.Tensor]:
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    mask = torch.where(torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(4)) > 0.7, 1.0, -1.0)
    noise = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return [model.segment(x), model.segment(x, t=7, noise=noise), model.synthesize(x, mask, t=3, noise=noise)]


@pytest.mark.parametrize("cls, kwargs", NETS, ids=[c.__name__ for c, _ in NETS])
def test_each_network_records_its_arguments_and_rebuilds_from_them(cls, kwargs):
    net = cls(**kwargs)
    cfg = net.config
    assert json.loads(json.dumps(cfg)) == cfg  # plain JSON data
    for k, v in kwargs.items():
        assert cfg[k] == (list(v) if isinstance(v, tuple) else v)
    assert cfg["init"] == "orthogonal" if cls is DiffusionUNet else cfg["init"] == "normal"  # defaults filled in
    again = network_from_config(network_config(net))
    assert type(again) is cls and again.config == cfg
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


def test_from_config_warns_on_unknown_keys_and_refuses_another_class():
    cfg = {**SPADEGenerator(base_channels=4, spade_hidden=8).config, "future_option": 3}
    with pytest.warns(UserWarning, match=r"unknown key\(s\) \['future_option'\]"):
        net = SPADEGenerator.from_config(cfg)
    assert net.config["base_channels"] == 4
    with pytest.raises(ValueError, match="describes a SPADEGenerator, not a DiffusionUNet"):
        DiffusionUNet.from_config({"_class_name": "SPADEGenerator"})
    with pytest.raises(ValueError, match="network class 'Nope'"):
        network_from_config({"_class_name": "Nope"})
    with pytest.raises(TypeError, match="generator is a Conv2d, which does not record"):
        DARL(generator=torch.nn.Conv2d(2, 1, 1), unet=DiffusionUNet(base_channels=4, channel_mults=(1,),
             attn_resolutions=(), norm_groups=2)).config


def test_save_pretrained_round_trip_is_bit_identical(tmp_path):
    model = _tiny_darl()
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    again = DARL.from_pretrained(tmp_path / "m")
    assert not again.training
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    for x, y in zip(_outputs(model), _outputs(again)):
        assert torch.equal(x, y)
    assert again.config == model.config and again.t_a_max == model.t_a_max


def test_model_safetensors_loads_without_torch_load(tmp_path, monkeypatch):
    from safetensors import safe_open

    model = _tiny_darl()
    model.save_pretrained(tmp_path)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as fh:
        assert fh.metadata() == {"format": "pt"}
        keys = set(fh.keys())
        tensor = fh.get_tensor("unet.final_conv.block.3.weight")
    assert keys == set(model.state_dict())
    assert torch.equal(tensor, model.state_dict()["unet.final_conv.block.3.weight"])
    assert DARL.from_pretrained(tmp_path).config == model.config  # and the whole load never unpickles
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["_class_name"] == "DARL" and cfg["unet"]["_class_name"] == "DiffusionUNet"
    assert cfg["diffusion"] == {"_class_name": "GaussianDiffusion", "schedule": "linear", "timesteps": 2000}


@pytest.mark.slow
def test_paper_networks_round_trip(tmp_path):
    model = DARL(unet=DiffusionUNet(init=None), generator=SPADEGenerator(init=None)).eval()
    model.save_pretrained(tmp_path)
    again = DARL.from_pretrained(tmp_path)
    a, b = model.state_dict(), again.state_dict()
    assert len(a) == len(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.segment(x), again.segment(x))
    assert again.config["unet"]["channel_mults"] == [1, 1, 2, 2, 4, 4]


def test_config_json_with_unknown_keys_still_loads(tmp_path):
    model = _tiny_darl()
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["new_top_level"] = 1
    cfg["generator"]["new_generator_option"] = True
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning) as record:
        again = DARL.from_pretrained(tmp_path)
    text = " ".join(str(w.message) for w in record)
    assert "new_top_level" in text and "new_generator_option" in text
    assert torch.equal(_outputs(model)[0], _outputs(again)[0])


def test_broken_model_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        DARL.from_pretrained(tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="without config.json"):
        load_model(tmp_path)
    _tiny_darl().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        DARL.from_pretrained(tmp_path / "m")
    other = build_micro(micro_config(), micro_model(generator__base_channels=16))[0]
    other.save_pretrained(tmp_path / "o")
    shutil.copy(tmp_path / "m" / "config.json", tmp_path / "o" / "config.json")
    with pytest.raises(ValueError, match="does not match config.json"):
        DARL.from_pretrained(tmp_path / "o")
    (tmp_path / "m" / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        DARL.from_pretrained(tmp_path / "m")


def test_training_checkpoint_holds_the_model_config_and_loads_like_a_folder(tmp_path):
    cfg = micro_config(ema_decay=0.5, eval_ema=True)
    trainer = DARLTrainer(*build_micro(cfg), cfg, out_dir=tmp_path / "run", progress=False)
    trainer.fit(RandomTrainSet(4, 32), steps=2)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["model_config"] == trainer.model.config
    from_ckpt = load_model(tmp_path / "run" / "last.pt")  # eval_ema: the EMA weights
    ema = trainer.ema.module.eval()
    assert torch.equal(_outputs(from_ckpt)[0], _outputs(ema)[0])
    raw = load_model(state, use_ema=False)
    assert torch.equal(_outputs(raw)[0], _outputs(trainer.model.eval())[0])
    raw.save_pretrained(tmp_path / "folder")
    model, config = load_trained_model(tmp_path / "folder")
    assert torch.equal(_outputs(model)[0], _outputs(raw)[0])
    net = ModelConfig.from_dict(model.config)
    assert (config.image_size, model.num_timesteps, net.unet["channel_mults"]) == (32, 2000, (1, 2))
    assert ModelConfig.from_checkpoint(state) == micro_model()  # networks and discriminators
    assert (net.unet, net.generator, net.diffusion) == (micro_model().unet, micro_model().generator, micro_model().diffusion)


@pytest.fixture
def old_checkpoint(tmp_path) -> Path:
    path = tmp_path / "train_v1_tiny.pt"
    path.write_bytes(gzip.decompress((FIXTURES / "train_v1_tiny.pt.gz").read_bytes()))
    return path


def test_checkpoint_of_the_previous_format_loads_with_its_numbers(old_checkpoint):
    from safetensors.torch import load_file

    ref = load_file(str(FIXTURES / "train_v1_tiny_outputs.safetensors"))
    state = load_checkpoint(old_checkpoint)
    assert "model_config" not in state and "optimizers" not in state  # the old format
    with pytest.raises(ValueError, match="no model configuration.*load_trained_model"):
        load_model(old_checkpoint)
    for name, ema in (("raw", False), ("ema", True)):
        model, config = load_trained_model(old_checkpoint, use_ema=ema)
        assert model.num_timesteps == 100 and model.generator.config["base_channels"] == 2
        # the stored outputs were computed with another CPU's kernels (AVX512): equal up to float32
        # rounding (a wrongly mapped weight moves them by > 1e-2)
        with torch.no_grad():
            torch.testing.assert_close(model.segment(ref["input"]), ref[f"{name}_t0"], rtol=0, atol=1e-5, msg=name)
            torch.testing.assert_close(model.segment(ref["input"], t=5, noise=ref["noise"]), ref[f"{name}_t5"],
                                       rtol=0, atol=1e-5, msg=name)


def test_checkpoint_of_the_previous_format_resumes(old_checkpoint):
    state = load_checkpoint(old_checkpoint)
    config, net = TrainConfig.from_dict(state["config"]), ModelConfig.from_checkpoint(state)  # flat fields mapped
    assert (net.unet["base_channels"], net.discriminator["base_channels"], net.t_a_max) == (2, 2, 20)
    trainer = DARLTrainer(*build_micro(config, net), config, progress=False)
    trainer.load(old_checkpoint)
    assert trainer.step == 2 and len(trainer.pool_mask) == 2
    result = trainer.fit(RandomTrainSet(2, 32), steps=3)
    assert result["step"] == 3 and all(torch.isfinite(torch.tensor(v)) for v in result["last_loss"].values())


def test_checkpoint_config_with_unknown_keys_warns_and_loads(tmp_path, old_checkpoint):
    state = load_checkpoint(old_checkpoint)
    state["config"]["a_field_from_the_future"] = 1
    torch.save(state, tmp_path / "future.pt")
    with pytest.warns(UserWarning, match="a_field_from_the_future"):
        model, config = load_trained_model(tmp_path / "future.pt")
    assert model.num_timesteps == 100 and config.image_size == 32


def test_segment_cli_accepts_a_model_folder(tmp_path):
    from darlkit.cli import main
    from darlkit.training import write_png

    _tiny_darl().save_pretrained(tmp_path / "model")
    write_png(torch.rand(32, 32) * 2 - 1, tmp_path / "in" / "a.png")
    assert main(["segment", str(tmp_path / "in" / "a.png"), "--checkpoint", str(tmp_path / "model"),
                 "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "a.png").is_file()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
