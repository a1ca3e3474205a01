"""darlkit.baselines: Frangi vesselness (scale, polarity, ROI) and the Otsu / fraction thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from darlkit.baselines import fraction_threshold, frangi_vesselness, hessian_eigenvalues, otsu_threshold

SIGMAS = (1.0, 2.0, 3.0, 4.0, 5.0)


def _bar(width: int, dark: bool = True, size: int = 64, col: int = 30) -> torch.Tensor:
    img = torch.ones(size, size) if dark else torch.zeros(size, size)
    img[:, col : col + width] = 0.0 if dark else 1.0
    return img


@pytest.mark.parametrize("width", [4, 6, 8])
def test_bar_answers_most_at_half_its_width(width):
    # scale-normalised second derivative across a bar of width w peaks at sigma = w / 2
    img = _bar(width)
    centre = (32, 30 + width // 2)
    l2 = [hessian_eigenvalues(img, s)[1][0, 0][centre].item() for s in SIGMAS]
    assert int(np.argmax(l2)) == SIGMAS.index(width / 2)
    assert min(l2) > 0  # dark line: positive curvature across it
    v, idx = frangi_vesselness(img, SIGMAS, c=0.1, return_scale=True)
    assert idx[centre].item() == SIGMAS.index(width / 2)
    assert v[centre].item() > 0.99


@pytest.mark.parametrize("make", [lambda: torch.full((48, 48), 0.7), lambda: torch.linspace(-1, 1, 48).repeat(48, 1),
                                  lambda: torch.linspace(-1, 1, 48)[:, None] * 0.3 + torch.linspace(0, 1, 48)[None]])
def test_flat_image_and_linear_ramp_give_no_response(make):
    img = make()
    for c in (None, 0.01):
        v = frangi_vesselness(img, (1.0, 2.0, 3.0), c=c)
        assert v[12:-12, 12:-12].abs().max().item() < 1e-6  # away from the replicated borders
    l1, l2 = hessian_eigenvalues(img, 2.0)
    assert l2[0, 0, 12:-12, 12:-12].abs().max().item() < 1e-6  # float32 input rounding; a bar gives ~0.4


def test_polarity():
    dark, bright = _bar(6, dark=True), _bar(6, dark=False)
    centre = (32, 33)
    assert frangi_vesselness(dark, (3.0,), dark_vessels=True)[centre] > 0.8
    assert frangi_vesselness(dark, (3.0,), dark_vessels=False)[centre] == 0
    assert frangi_vesselness(bright, (3.0,), dark_vessels=False)[centre] > 0.8
    assert frangi_vesselness(bright, (3.0,), dark_vessels=True)[centre] == 0
    # polarity flip == intensity flip
    np.testing.assert_allclose(frangi_vesselness(dark, SIGMAS, dark_vessels=False).numpy(),
                               frangi_vesselness(1 - dark, SIGMAS, dark_vessels=True).numpy(), atol=1e-6)


def test_roi_edge_is_not_a_vessel():
    # a bright disc (the eye) on a dark surround, no vessels: without the ROI the rim answers
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    roi = ((yy - 48) ** 2 + (xx - 48) ** 2) < 36**2
    img = torch.where(roi, torch.tensor(0.8), torch.tensor(0.05))
    plain = frangi_vesselness(img, (1.0, 2.0, 3.0), c=0.05)
    masked = frangi_vesselness(img, (1.0, 2.0, 3.0), c=0.05, roi=roi)
    assert plain.max() > 0.5
    assert masked.max() < 1e-3
    assert (masked[~roi] == 0).all()
    # a vessel inside the ROI still answers
    img2 = img.clone()
    img2[20:76, 46:52] = 0.4
    v = frangi_vesselness(img2, (2.0, 3.0), c=0.05, roi=roi.numpy())
    assert v[48, 48] > 0.5


def test_numpy_batch_and_shapes():
    img = _bar(6).numpy()
    v = frangi_vesselness(img, (3.0,))
    assert isinstance(v, np.ndarray) and v.shape == img.shape and v.dtype == np.float32
    batch = torch.stack([_bar(4), _bar(8)])[:, None]
    vb = frangi_vesselness(batch, (2.0, 4.0))
    assert vb.shape == (2, 1, 64, 64)
    np.testing.assert_allclose(vb[1, 0].numpy(), frangi_vesselness(_bar(8), (2.0, 4.0)).numpy(), atol=1e-6)
    assert float(vb.min()) >= 0 and float(vb.max()) < 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(image=torch.ones(2, 3, 8, 8)), "shape"),
    (dict(image=[[1.0]]), "torch.Tensor or numpy"),
    (dict(image=torch.ones(8, 8), sigmas=(0.0,)), "sigmas"),
    (dict(image=torch.ones(8, 8), sigmas=()), "sigmas"),
    (dict(image=torch.ones(8, 8), beta=0), "beta"),
    (dict(image=torch.ones(8, 8), c=-1.0), "c must"),
    (dict(image=torch.full((8, 8), float("nan"))), "NaN"),
    (dict(image=torch.ones(8, 8), roi=torch.ones(4, 4)), "roi must have"),
    (dict(image=torch.ones(8, 8), roi=torch.zeros(8, 8)), "no pixel inside"),
])
def test_frangi_bad_input(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        frangi_vesselness(**kwargs)


def test_otsu_hand_computed_three_values():
    # {0, 0 | 1, 4}: .5 * .5 * 2.5**2 = 1.5625;  {0, 0, 1 | 4}: .75 * .25 * (11/3)**2 = 2.52  -> t = 1
    assert otsu_threshold(np.array([0.0, 0.0, 1.0, 4.0])) == 1.0
    assert otsu_threshold(torch.tensor([[0.2] * 7 + [0.9] * 3])) == pytest.approx(0.2)
    assert otsu_threshold(torch.full((3, 3), 0.5)) == 0.5  # one level: nothing above


def test_thresholds_look_only_inside_roi():
    scores = torch.tensor([[0.0, 0.0, 1.0, 4.0, 100.0, -50.0]])
    roi = torch.tensor([[1, 1, 1, 1, 0, 0]])
    assert otsu_threshold(scores, roi) == 1.0
    assert otsu_threshold(scores) != 1.0
    assert fraction_threshold(scores, 0.25, roi.bool()) == 1.0  # 1 of 4 inside above it


@given(n=st.integers(10, 400), fraction=st.floats(0.01, 0.9), seed=st.integers(0, 2**16))
def test_fraction_threshold_selects_the_fraction(n, fraction, seed):
    scores = torch.rand(n, generator=torch.Generator().manual_seed(seed))  # distinct values
    t = fraction_threshold(scores, fraction)
    assert int((scores > t).sum()) == min(round(fraction * n), n - 1)


@given(a=st.floats(-10, 10), gap=st.floats(0.5, 10), n0=st.integers(1, 30), n1=st.integers(1, 30))
def test_otsu_separates_two_levels(a, gap, n0, n1):
    values = torch.tensor([a] * n0 + [a + gap] * n1, dtype=torch.float64)
    t = otsu_threshold(values)
    assert int((values > t).sum()) == n1


@pytest.mark.parametrize("call, match", [
    (lambda: otsu_threshold(torch.ones(3), torch.zeros(3)), "selects nothing"),
    (lambda: otsu_threshold(torch.ones(3), torch.ones(4)), "roi must have"),
    (lambda: otsu_threshold([1.0, 2.0]), "torch.Tensor or numpy"),
    (lambda: otsu_threshold(torch.tensor([1.0, float("inf")])), "NaN or infinite"),
    (lambda: fraction_threshold(torch.ones(3), 1.0), "fraction"),
    (lambda: fraction_threshold(torch.ones(3), True), "fraction"),
])
def test_threshold_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
