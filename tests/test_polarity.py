"""polarity_loss (synthetic vessels darker than their background) and its place in the G step."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from darlkit.losses import polarity_loss
from darlkit.training import DARLTrainer
from test_training_support import build_micro, RandomTrainSet, micro_config


def test_hand_computed_values():
    bg = torch.zeros(1, 1, 2, 2)
    mask = torch.tensor([[[[1.0, 1.0], [-1.0, -1.0]]]])
    synth = torch.tensor([[[[0.2, -0.5], [0.9, 0.9]]]])  # vessel pixels: one brighter, one darker
    # relu(0.2 + 0.05) = 0.25 and relu(-0.5 + 0.05) = 0 over 2 vessel pixels; non-vessels ignored
    assert float(polarity_loss(synth, bg, mask, margin=0.05)) == pytest.approx(0.125)
    assert float(polarity_loss(synth, bg, mask, margin=0.0)) == pytest.approx(0.1)
    # no vessel pixel: 0, not NaN
    assert float(polarity_loss(synth, bg, -torch.ones_like(mask))) == 0.0


def test_gradient_pushes_bright_vessels_darker():
    bg = torch.zeros(1, 1, 4, 4)
    mask = torch.ones(1, 1, 4, 4)
    synth = torch.full((1, 1, 4, 4), 0.3, requires_grad=True)
    polarity_loss(synth, bg, mask).backward()
    assert torch.all(synth.grad > 0)  # gradient descent lowers the intensity


def test_vessels_brighter_than_their_synthetic_surroundings_are_penalised():
    """Darkening the whole image does not satisfy the prior: the reference is also the local
    non-vessel mean of the synthetic image itself."""
    bg = torch.zeros(1, 1, 9, 9)
    mask = -torch.ones(1, 1, 9, 9)
    mask[..., 4, :] = 1.0
    synth = torch.full((1, 1, 9, 9), -0.5)
    synth[..., 4, :] = -0.3  # darker than the background, brighter than its surroundings
    # reference = min(0, -0.5) = -0.5 on every vessel pixel: relu(-0.3 + 0.5 + 0.05) = 0.25
    assert float(polarity_loss(synth, bg, mask, margin=0.05)) == pytest.approx(0.25, abs=1e-6)
    synth[..., 4, :] = -0.6
    assert float(polarity_loss(synth, bg, mask, margin=0.05)) == 0.0
    # the surroundings are a detached reference: only vessel pixels get a gradient
    synth = synth.clone().requires_grad_(True)
    with torch.no_grad():
        synth[..., 4, :] = 0.0
    polarity_loss(synth, bg, mask).backward()
    assert torch.all(synth.grad[..., 4, :] > 0) and torch.all(synth.grad[mask < 0] == 0)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 0.5))
def test_zero_when_vessels_are_darker_than_everything_else(seed, margin):
    g = torch.Generator().manual_seed(seed)
    bg = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1
    mask = torch.where(torch.rand(2, 1, 8, 8, generator=g) > 0.5, 1.0, -1.0)
    vessel = mask > 0
    others = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1
    floor = torch.minimum(bg.min(), others.min())
    synth = torch.where(vessel, floor - margin - torch.rand(2, 1, 8, 8, generator=g) * 0.1, others)
    assert float(polarity_loss(synth, bg, mask, margin)) == 0.0
    # brightening the whole background costs at least the brightening (plus the margin)
    loss = float(polarity_loss(bg + 0.2, bg, mask, margin))
    if vessel.any():
        assert loss >= 0.2 + margin - 1e-5
    else:
        assert loss == 0.0


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"margin": -0.1}, ValueError, "margin"),
        ({"margin": float("nan")}, ValueError, "margin"),
        ({"mask": torch.ones(1, 1, 3, 3)}, ValueError, "one shape"),
        ({"synth": torch.ones(1, 1, 2, 2, dtype=torch.int64)}, TypeError, "synth"),
        ({"window": 4}, ValueError, "window"),
        ({"window": 0}, ValueError, "window"),
    ],
)
def test_bad_inputs(kwargs, exc, match):
    args = {"synth": torch.zeros(1, 1, 2, 2), "background": torch.zeros(1, 1, 2, 2), "mask": torch.ones(1, 1, 2, 2)}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        polarity_loss(**args)


def test_generator_loss_adds_the_weighted_prior():
    """Same draws, same init: loss_g(with prior) = loss_g(paper) + weight * loss_pol."""
    data = RandomTrainSet(4, 32)
    batch = {k: torch.stack([data[i][k] for i in (0, 1)]) for k in ("angiogram", "background", "mask")}
    losses = {}
    for w in (0.0, 2.5):
        cfg = micro_config(pool_size=0, polarity_weight=w, polarity_margin=0.1)
        torch.manual_seed(0)
        trainer = DARLTrainer(*build_micro(cfg), cfg, progress=False)
        losses[w] = trainer.train_step(batch)
    assert "loss_pol" not in losses[0.0] and losses[2.5]["loss_pol"] > 0.0
    for name in ("loss_diff", "loss_adv", "loss_cyc"):
        assert losses[2.5][name] == pytest.approx(losses[0.0][name], rel=1e-6)
    assert losses[2.5]["loss_g"] == pytest.approx(losses[0.0]["loss_g"] + 2.5 * losses[2.5]["loss_pol"], rel=1e-6)
