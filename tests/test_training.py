"""TrainConfig presets/validation, crash-safe checkpoints, weights_only loading, RNG capture."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from darlkit.training import (
    CHECKPOINT_FORMAT,
    TrainConfig,
    ModelConfig,
    build_networks,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from darlkit.training import checkpoint as ckpt_mod


# ---------------------------------------------------------------------- config
def test_paper_defaults():
    cfg = TrainConfig()
    assert (cfg.alpha, cfg.beta, cfg.lr, cfg.lr_d, cfg.betas) == (0.2, 5.0, 5e-6, 5e-6, (0.5, 0.999))
    assert (cfg.pool_size, cfg.batch_size, cfg.image_size, cfg.t_b_max) == (50, 1, 256, None)
    net = ModelConfig()
    assert (net.t_a_max, net.diffusion["timesteps"], net.diffusion["schedule"]) == (200, 2000, "linear")
    assert net.unet["channel_mults"] == (1, 1, 2, 2, 4, 4) and net.unet["attn_resolutions"] == (16,)
    assert TrainConfig.preset("paper") == TrainConfig() and ModelConfig.preset("paper") == net


def test_tiny_preset_keeps_the_method_and_shrinks_the_nets():
    tiny = TrainConfig.preset("tiny")
    paper = TrainConfig()
    for same in ("beta", "betas"):
        assert getattr(tiny, same) == getattr(paper, same)
    tiny_net, paper_net = ModelConfig.preset("tiny"), ModelConfig()
    assert (tiny_net.t_a_max, tiny_net.diffusion) == (paper_net.t_a_max, paper_net.diffusion)
    assert tiny.alpha > 0 and tiny.t_b_max is not None and paper.t_b_max is None
    assert tiny.image_size < paper.image_size and tiny_net.unet["base_channels"] < paper_net.unet["base_channels"]
    assert TrainConfig.preset("tiny", batch_size=2).batch_size == 2


def test_config_dict_round_trip_is_plain_data():
    cfg = TrainConfig.preset("tiny", ema_decay=0.99, eval_ema=True)
    d = cfg.to_dict()
    assert all(isinstance(v, (int, float, str, bool, list, type(None))) for v in d.values())
    assert TrainConfig.from_dict(d) == cfg


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"lr": -1.0}, ValueError, "lr"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"amp": "fp8"}, ValueError, "amp"),
        ({"ema_decay": 1.5}, ValueError, "ema_decay"),
        ({"eval_ema": True}, ValueError, "eval_ema"),
        ({"betas": (0.5, 1.5)}, ValueError, "betas"),
        ({"batch_size": 2.0}, TypeError, "batch_size"),
        ({"t_b_max": 0}, ValueError, "t_b_max"),
    ],
)
def test_config_rejects_bad_values(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        TrainConfig(**kwargs)


def test_preset_errors():
    with pytest.raises(ValueError, match="preset"):
        TrainConfig.preset("huge")
    with pytest.raises(TypeError, match="bogus"):
        TrainConfig.preset("tiny", bogus=1)
    with pytest.warns(UserWarning, match="unknown field.*nope"):  # another version's field: kept loadable
        assert TrainConfig.from_dict({"lr": 1e-4, "nope": 1}) == TrainConfig(lr=1e-4)


def test_build_networks_is_seeded_and_leaves_global_rng_alone():
    cfg = TrainConfig.preset("tiny", image_size=32)
    net = ModelConfig.preset("tiny", {"unet.channel_mults": (1, 2), "unet.attn_resolutions": ()})
    state = torch.get_rng_state()
    a = build_networks(cfg, net)
    assert torch.equal(state, torch.get_rng_state())
    b = build_networks(cfg, net)
    c = build_networks(cfg, net, seed=cfg.seed + 1)
    for ma, mb, mc in zip(a, b, c):
        sa, sb, sc = ma.state_dict(), mb.state_dict(), mc.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point() and sa[k].numel() > 1)


# ---------------------------------------------------------------------- checkpoints
def _ckpt(value: float) -> dict:
    return {"format": CHECKPOINT_FORMAT, "step": 1, "w": torch.full((3,), value), "config": {"a": [1, 2]}}


def test_save_and_load_round_trip(tmp_path):
    path = save_checkpoint(_ckpt(1.0), tmp_path / "sub" / "last.pt")
    got = load_checkpoint(path)
    assert got["step"] == 1 and torch.equal(got["w"], torch.ones(3)) and got["config"] == {"a": [1, 2]}
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["last.pt"]  # no temp file left


@pytest.mark.parametrize("where", ["torch.save", "os.replace", "fsync"])
def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch, where):
    path = tmp_path / "last.pt"
    save_checkpoint(_ckpt(1.0), path)

    def boom(*args, **kwargs):
        raise OSError("simulated crash")

    if where == "torch.save":
        real_save = torch.save

        def partial_save(obj, fh, *a, **k):  # write some bytes, then die
            fh.write(b"PK\x03\x04 partial")
            raise OSError("simulated crash")

        monkeypatch.setattr(ckpt_mod.torch, "save", partial_save)
    elif where == "os.replace":
        monkeypatch.setattr(ckpt_mod.os, "replace", boom)
    else:
        monkeypatch.setattr(ckpt_mod.os, "fsync", boom)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(_ckpt(2.0), path)
    monkeypatch.undo()
    got = load_checkpoint(path)
    assert torch.equal(got["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _Custom:
    pass


@pytest.mark.parametrize("payload, found", [(_Custom(), "_Custom"), (_Evil(), "system")])
def test_weights_only_refuses_pickled_objects(tmp_path, payload, found):
    path = tmp_path / "bad.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "step": 0, "obj": payload}, path)
    with pytest.raises(ValueError, match="refused by the safe loader") as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and found in message  # names the file and what was found
    assert "weights_only" not in message.replace(str(path), "")  # never suggests weights_only=False


def test_load_rejects_non_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"state": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="not a darlkit training checkpoint"):
        load_checkpoint(other)
    with pytest.raises(TypeError, match="dict"):
        save_checkpoint([1, 2], tmp_path / "x.pt")


def test_rng_state_round_trip_through_weights_only(tmp_path):
    torch.manual_seed(3)
    np.random.seed(4)
    random.seed(5)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    state = get_rng_state()
    want = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    save_checkpoint({"format": CHECKPOINT_FORMAT, "rng": state}, tmp_path / "r.pt")
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    got = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    assert torch.equal(want[0], got[0])
    np.testing.assert_array_equal(want[1], got[1])
    assert want[2] == got[2] and want[3] == got[3]
    with pytest.raises(ValueError, match="missing"):
        set_rng_state({"torch": torch.get_rng_state()})
