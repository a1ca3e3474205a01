"""LR warmup/decay and EMA decay warmup of the training config (issue 13)."""

from __future__ import annotations

import math

import pytest
import torch

from darlkit.training import TrainConfig
from darlkit.training.ema import ema_decay_at, make_ema, update_ema
from darlkit.training.optim import WarmupDecay, config_scheduler


# ---------------------------------------------------------------- the LR curve
def test_warmup_is_linear_and_reaches_one():
    w = WarmupDecay(4, "none", 0, 0.1)
    assert [w(k) for k in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])


def test_linear_decay_hand_computed():
    # warmup 2, then from 1 at k=2 down to 0.1 at k=12: slope 0.09 per step
    w = WarmupDecay(2, "linear", 12, 0.1)
    assert w(0) == pytest.approx(1 / 3)
    assert w(2) == pytest.approx(1.0)
    assert w(7) == pytest.approx(1.0 - 0.9 * 0.5)
    assert w(12) == pytest.approx(0.1)
    assert w(50) == pytest.approx(0.1)  # stays at the floor


def test_cosine_decay_hand_computed():
    w = WarmupDecay(0, "cosine", 8, 0.0)
    assert w(0) == pytest.approx(1.0)
    assert w(2) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert w(4) == pytest.approx(0.5)
    assert w(8) == pytest.approx(0.0)
    w = WarmupDecay(50, "cosine", 800, 0.1)
    assert w(425) == pytest.approx(0.55)  # half way: floor + (1 - floor) / 2


def test_no_horizon_means_constant_after_warmup():
    assert WarmupDecay(3, "cosine", 0, 0.1)(100) == 1.0
    assert WarmupDecay(3, "cosine", 3, 0.1)(100) == 1.0


@pytest.mark.parametrize("kwargs, word", [
    ({"warmup": -1}, "warmup"), ({"total": 1.5}, "total"), ({"decay": "step"}, "decay"), ({"floor": 1.5}, "floor"),
])
def test_warmup_decay_rejects_bad_arguments(kwargs, word):
    args = {"warmup": 1, "decay": "linear", "total": 10, "floor": 0.1, **kwargs}
    with pytest.raises(ValueError, match=word):
        WarmupDecay(**args)


def _opt(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_config_scheduler_drives_the_optimiser_lr_and_round_trips():
    cfg = TrainConfig(lr_warmup_steps=2, lr_decay="linear", lr_decay_steps=6, lr_min_ratio=0.0)
    opt = _opt(2.0)
    sched = config_scheduler(cfg)(opt)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2 / 3, 4 / 3, 2.0, 1.5, 1.0, 0.5, 0.0, 0.0])
    # the curve's settings go into the scheduler state (a checkpoint), the same curve comes back
    opt2 = _opt(2.0)
    sched2 = config_scheduler(cfg)(opt2)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.lr_lambdas[0].__dict__ == sched.lr_lambdas[0].__dict__
    assert sched2.last_epoch == 8


def test_config_scheduler_none_without_warmup_or_horizon():
    assert config_scheduler(TrainConfig()) is None  # the paper: constant LR
    assert config_scheduler(TrainConfig(lr_decay="cosine")) is None  # no horizon yet
    assert config_scheduler(TrainConfig(lr_warmup_steps=1)) is not None


@pytest.mark.parametrize("field, value, exc", [
    ("lr_decay", "exp", ValueError), ("lr_warmup_steps", -1, ValueError), ("lr_decay_steps", 2.5, TypeError),
    ("lr_min_ratio", 1.5, ValueError), ("lr_min_ratio", -0.1, ValueError),
])
def test_config_rejects_bad_schedule_fields(field, value, exc):
    with pytest.raises(exc, match=field):
        TrainConfig(**{field: value})


def test_paper_preset_keeps_constant_lr_and_no_ema():
    cfg = TrainConfig.preset("paper")
    assert (cfg.lr_warmup_steps, cfg.lr_decay, cfg.ema_decay, cfg.ema_warmup) == (0, "none", None, False)


def test_trainer_builds_the_config_schedule():
    from darlkit.training import DARLTrainer, build_networks

    cfg = TrainConfig.preset("tiny", lr_warmup_steps=5, lr_decay="cosine", lr_decay_steps=10)
    trainer = DARLTrainer(*build_networks(cfg), cfg, progress=False)
    assert trainer.update.sched_g is not None and trainer.update.sched_d is not None
    assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(cfg.lr / (cfg.lr_warmup_steps + 1))


def test_train_on_folder_stretches_the_decay_over_the_run(tmp_path):
    from darlkit.training.recipes import _with_decay_horizon

    cfg = TrainConfig.preset("tiny", lr_decay="cosine")
    assert _with_decay_horizon(cfg, 800, 256).lr_decay_steps == 800
    assert _with_decay_horizon(cfg, None, 256).lr_decay_steps == cfg.epochs * (256 // cfg.batch_size)
    assert _with_decay_horizon(cfg.replace(lr_decay_steps=300), 800, 256).lr_decay_steps == 300
    assert _with_decay_horizon(TrainConfig(), 800, 256).lr_decay_steps == 0  # no decay: untouched


# ---------------------------------------------------------------- EMA warmup
def test_ema_decay_warmup_values():
    assert ema_decay_at(0.99, 1, True) == pytest.approx(1 - 2 ** (-2 / 3))
    assert ema_decay_at(0.99, 100, True) == pytest.approx(1 - 101 ** (-2 / 3))
    assert ema_decay_at(0.99, 10_000, True) == 0.99  # capped
    assert ema_decay_at(0.99, 1, False) == 0.99


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_updates_hand_computed(warmup):
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = make_ema(model, 0.9, warmup=warmup)
    update_ema(ema, model)  # first update: a copy
    assert ema.module.weight.item() == pytest.approx(1.0)
    with torch.no_grad():
        model.weight.fill_(3.0)
    update_ema(ema, model)
    d = 1 - 2 ** (-2 / 3) if warmup else 0.9
    assert ema.module.weight.item() == pytest.approx(d * 1.0 + (1 - d) * 3.0)
    with torch.no_grad():
        model.weight.fill_(0.0)
    before = ema.module.weight.item()
    update_ema(ema, model)
    d = min(0.9, 1 - 3 ** (-2 / 3)) if warmup else 0.9
    assert ema.module.weight.item() == pytest.approx(d * before)


@pytest.mark.parametrize("warmup", [False, True])
def test_update_ema_matches_averaged_model_update_parameters(warmup):
    """The cached fast path gives exactly what ``AveragedModel.update_parameters`` gives."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    ours, ref = make_ema(model, 0.8, warmup=warmup), make_ema(model, 0.8, warmup=warmup)
    for _ in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
        update_ema(ours, model)
        ref.update_parameters(model)
        for a, b in zip(ours.module.state_dict().values(), ref.module.state_dict().values()):
            assert torch.equal(a, b)
    assert int(ours.n_averaged) == int(ref.n_averaged) == 4
    assert "_darlkit_pairs" not in ours.state_dict()
    with pytest.raises(ValueError, match="not an EMA of this model"):
        update_ema(ours, torch.nn.Linear(3, 4))
