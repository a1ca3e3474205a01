"""CollapseMonitor: the collapse verdict on synthetic validation sequences."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from darlkit.training import CollapseMonitor


def _run(monitor, seq):
    return [monitor.update(d, f) for d, f in seq]


def test_near_zero_dice_for_patience_validations_is_a_collapse():
    m = CollapseMonitor(patience=3, min_dice=0.05)
    statuses = _run(m, [(0.01, 0.06), (0.02, 0.05), (0.0, 0.07)])
    assert [s.collapsed for s in statuses] == [False, False, True]
    assert [s.streak for s in statuses] == [1, 2, 3]
    assert statuses[-1].reason == "dice 0.000 < 0.05"


def test_a_healthy_validation_resets_the_streak():
    m = CollapseMonitor(patience=2)
    statuses = _run(m, [(0.01, 0.1), (0.6, 0.1), (0.02, 0.1), (0.03, 0.1)])
    assert [s.streak for s in statuses] == [1, 0, 1, 2]
    assert [s.collapsed for s in statuses] == [False, False, False, True]
    assert statuses[1].reason == ""


def test_vessel_fraction_outside_the_band_is_a_symptom_even_with_some_dice():
    m = CollapseMonitor(patience=2, min_dice=0.05, min_fraction=0.01, max_fraction=0.4)
    low = _run(m, [(0.3, 0.002), (0.3, 0.001)])
    assert low[-1].collapsed and low[-1].reason == "vessel fraction 0.0010 < 0.01"
    m.reset()
    high = _run(m, [(0.2, 0.6), (0.1, 0.9)])
    assert high[-1].collapsed and high[-1].reason == "vessel fraction 0.9000 > 0.4"
    # both symptoms at once are both named
    assert m.symptoms(0.0, 0.0) == "dice 0.000 < 0.05; vessel fraction 0.0000 < 0.01"
    # the band is inclusive
    assert m.symptoms(0.05, 0.01) == "" and m.symptoms(0.05, 0.4) == ""


def test_nan_is_a_symptom():
    m = CollapseMonitor(patience=1)
    assert m.update(math.nan, 0.1).collapsed
    assert m.update(0.5, math.nan).collapsed
    assert not m.update(0.5, 0.1).collapsed


def test_state_round_trip_and_bad_state():
    m = CollapseMonitor(patience=3)
    _run(m, [(0.0, 0.0), (0.0, 0.0)])
    m2 = CollapseMonitor(patience=3)
    m2.load_state_dict(m.state_dict())
    assert m2.update(0.0, 0.0).collapsed
    with pytest.raises(ValueError, match="streak"):
        m2.load_state_dict({"streak": -1})
    with pytest.raises(ValueError, match="streak"):
        m2.load_state_dict({})


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"patience": 0}, ValueError, "patience"),
        ({"patience": 1.5}, TypeError, "patience"),
        ({"patience": True}, TypeError, "patience"),
        ({"min_dice": 1.5}, ValueError, "min_dice"),
        ({"min_fraction": -0.1}, ValueError, "min_fraction"),
        ({"min_fraction": 0.3, "max_fraction": 0.2}, ValueError, "max_fraction"),
        ({"max_fraction": "0.5"}, TypeError, "max_fraction"),
    ],
)
def test_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        CollapseMonitor(**kwargs)


def test_bad_update_values():
    with pytest.raises(TypeError, match="dice"):
        CollapseMonitor().update("0.1", 0.1)


@settings(max_examples=60, deadline=None)
@given(
    patience=st.integers(1, 5),
    seq=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=20),
)
def test_collapsed_iff_the_last_patience_validations_were_all_symptomatic(patience, seq):
    m = CollapseMonitor(patience=patience)
    statuses = _run(m, seq)
    sick = [d < m.min_dice or not (m.min_fraction <= f <= m.max_fraction) for d, f in seq]
    for k, status in enumerate(statuses):
        window = sick[max(0, k - patience + 1) : k + 1]
        assert status.collapsed == (len(window) == patience and all(window))
        assert bool(status.reason) == sick[k]


# ---------------------------------------------------------------- collapse_restore in the trainer
def _restore_run(tmp_path, dice_seq, **overrides):
    """Train a micro run validating every step, with the validation Dice forced to ``dice_seq``;
    return (result, weights seen after each validation, best.pt's model weights at the end)."""
    from darlkit.data import XCADDataset
    from darlkit.training import Callback, DARLTrainer, load_checkpoint
    from test_training_support import build_micro, make_xcad, micro_config

    data = make_xcad(tmp_path / "data")
    cfg = micro_config(val_every=1, collapse_patience=2, **overrides)
    model, d_s, d_a = build_micro(cfg)
    seen = []

    class Weights(Callback):
        def on_validation_end(self, trainer, record, improved):
            seen.append((dict(record), {k: v.clone() for k, v in trainer.model.state_dict().items()}))

    trainer = DARLTrainer(model, d_s, d_a, cfg, out_dir=tmp_path / "run", progress=False, callbacks=[Weights()])
    validate, dices = trainer.validate, iter(dice_seq)

    def forced(val_data, **kw):
        out = validate(val_data, **kw)
        out["metrics"]["dice"] = {"mean": next(dices), "std": 0.0, "n": 1}
        return out

    trainer.validate = forced
    ds = XCADDataset(data, "train", size=cfg.image_size)
    with pytest.warns(RuntimeWarning, match="collapsed"):
        result = trainer.fit(ds, steps=len(dice_seq) - 1, val_data=XCADDataset(data, "test"))
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    return result, seen, best


def test_collapse_restore_goes_back_to_best_and_trains_on(tmp_path):
    # validations at steps 1..4 (+ the final one at 4 is skipped: just validated); dice collapses at 2 and 3
    result, seen, best = _restore_run(tmp_path, [0.6, 0.01, 0.01, 0.3, 0.3], collapse_restore=True)
    records = [r for r, _ in seen]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [r.get("restored_from") for r in records] == [None, None, 1, None]
    assert best["step"] == 1 and result["best_step"] == 1 and result["step"] == 4
    # right after the restore the weights are best.pt's; one step later they moved on
    for k, v in seen[2][1].items():
        torch.testing.assert_close(v, best["model"][k], rtol=0, atol=0)
    assert any(not torch.equal(v, best["model"][k]) for k, v in seen[3][1].items())
    # the streak starts again after the restore: step 4 is healthy, no warning recorded
    assert records[3]["collapse_warning"] == ""


def test_without_collapse_restore_the_collapsed_weights_stay(tmp_path):
    _, seen, best = _restore_run(tmp_path, [0.6, 0.01, 0.01, 0.3, 0.3])
    assert all("restored_from" not in r for r, _ in seen)
    assert any(not torch.equal(v, best["model"][k]) for k, v in seen[2][1].items())


def test_collapse_restore_needs_a_usable_best(tmp_path):
    # the best validation (0.02) is itself below collapse_min_dice: nothing to go back to
    _, seen, _ = _restore_run(tmp_path, [0.02, 0.01, 0.01, 0.01, 0.01], collapse_restore=True)
    assert all("restored_from" not in r for r, _ in seen)


def test_collapse_restore_must_be_a_bool():
    from darlkit.training import TrainConfig

    with pytest.raises(TypeError, match="collapse_restore must be a bool"):
        TrainConfig(collapse_restore=1)
    assert TrainConfig.preset("small").collapse_restore and not TrainConfig().collapse_restore
