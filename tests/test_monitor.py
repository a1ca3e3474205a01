"""CollapseMonitor: the collapse verdict on synthetic validation sequences."""

from __future__ import annotations

import math

import pytest
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
