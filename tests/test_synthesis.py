"""Vessel mask synthesizer (ssvs and tree styles), capsule rasteriser, warps, angiogram renderer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from darlkit.data import read_grayscale_png
from darlkit.synthesis import (
    FractalVesselSynthesizer,
    TreeParams,
    add_quantum_noise,
    apply_warp_grid,
    grow_vessel_tree,
    paint_rectangles,
    render_angiogram,
    render_background,
    render_capsules,
    painted_box,
    ssvs_rectangles,
    ssvs_warp_grid,
    vessel_chord,
    warp_ssvs_masks,
)


# ----------------------------------------------------------------------------- helpers
def _depth(mask: torch.Tensor, steps: int = 14) -> torch.Tensor:
    """Octagonal-distance depth inside binary masks (alternating cross / square erosions)."""
    x = mask.float()
    depth = torch.zeros_like(x)
    for k in range(steps):
        depth += x
        eh = -F.max_pool2d(-x, (1, 3), stride=1, padding=(0, 1))
        ev = -F.max_pool2d(-x, (3, 1), stride=1, padding=(1, 0))
        x = torch.minimum(eh, ev) if k % 2 == 0 else -F.max_pool2d(-eh, (3, 1), stride=1, padding=(1, 0))
    return depth


def _erosion_curve(mask: torch.Tensor, radii=(1, 2, 3, 5, 7)) -> torch.Tensor:
    """Per mask, the fraction of vessel pixels deeper than each radius (N, len(radii))."""
    d = _depth(mask)
    tot = mask.float().sum((1, 2, 3))
    return torch.stack([((d > r).float().sum((1, 2, 3)) / tot) for r in radii], 1)


# ----------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("style", ["ssvs", "tree"])
def test_same_seed_same_masks_and_index_order(style):
    a = FractalVesselSynthesizer(64, style, seed=7)
    b = FractalVesselSynthesizer(64, style, seed=7)
    first = a.sample(5)
    assert first.shape == (5, 1, 64, 64) and first.dtype == torch.float32
    # global RNG state must not matter
    torch.manual_seed(123)
    np.random.seed(123)
    assert torch.equal(first, b.sample(5))
    # indexing, batch composition and sample() continuation agree
    assert torch.equal(a[3], first[3])
    assert torch.equal(a.masks([4, 1]), torch.stack([first[4], first[1]]))
    nxt = a.sample(2)
    assert torch.equal(nxt[0], b[5]) and torch.equal(nxt[1], b[6])
    a.reset()
    assert torch.equal(a.sample(1)[0], first[0])
    # different seeds differ
    c = FractalVesselSynthesizer(64, style, seed=8)
    assert not torch.equal(c.sample(5), first)


@pytest.mark.parametrize("style", ["ssvs", "tree"])
def test_mask_does_not_depend_on_its_batch(style):
    synth = FractalVesselSynthesizer(64, style, seed=11)
    batch = synth.masks(range(16))
    single = torch.stack([synth[i] for i in range(16)])
    assert torch.equal(batch, single)
    assert torch.equal(synth.masks([9, 3, 15]), batch[[9, 3, 15]])


def test_seed_none_draws_fresh_entropy_and_uint8_output():
    a, b = FractalVesselSynthesizer(64, "ssvs"), FractalVesselSynthesizer(64, "ssvs")
    assert a.seed_sequence.entropy != b.seed_sequence.entropy
    again = FractalVesselSynthesizer(64, "ssvs", seed=a.seed_sequence.entropy)
    assert torch.equal(again[0], a[0])
    u = FractalVesselSynthesizer(64, "ssvs", seed=1, output="uint8")
    f = FractalVesselSynthesizer(64, "ssvs", seed=1)
    assert u[0].dtype == torch.uint8
    assert torch.equal(u[0], (f[0] * 255).round().to(torch.uint8))
    assert 0.0 <= float(f[0].min()) and float(f[0].max()) <= 1.0


def test_synthesizer_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        FractalVesselSynthesizer(63)
    with pytest.raises(ValueError, match="size"):
        FractalVesselSynthesizer(30)
    with pytest.raises(ValueError, match="style"):
        FractalVesselSynthesizer(64, "blobs")
    with pytest.raises(ValueError, match="output"):
        FractalVesselSynthesizer(64, output="int16")
    with pytest.raises(TypeError, match="seed"):
        FractalVesselSynthesizer(64, seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        FractalVesselSynthesizer(64, seed=-1)
    s = FractalVesselSynthesizer(64, seed=0)
    with pytest.raises(IndexError):
        s[-1]
    with pytest.raises(ValueError, match="n must"):
        s.sample(-2)
    with pytest.raises(ValueError, match="branch_angle"):
        FractalVesselSynthesizer(64, "tree", tree_params=TreeParams(branch_angle=(50.0, 10.0)))


def test_stream_with_dataloader_workers_matches_indexing():
    synth = FractalVesselSynthesizer(32, "ssvs", seed=3)
    loader = DataLoader(synth.stream(start=2, batch_size=2), batch_size=2, num_workers=2)
    got = []
    for k, batch in enumerate(loader):
        got.append(batch)
        if k == 3:
            break
    assert torch.equal(torch.cat(got), synth.masks(range(2, 10)))
    # map-style view works with a plain DataLoader too
    batch = next(iter(DataLoader(synth, batch_size=3)))
    assert torch.equal(batch, synth.masks(range(3)))
    assert len(synth) == 1621


# ----------------------------------------------------------------------------- ssvs
def test_ssvs_rectangle_counts_and_thicknesses():
    counts, root_t, child_t = set(), set(), []
    for i in range(300):
        rects = ssvs_rectangles(np.random.default_rng(i), 512)
        counts.add(len(rects))
        r0, r1, c0, c1 = rects[0]
        root_t.add(r1 - r0)  # the root is horizontal: its thickness is its row extent
        assert 350 <= c1 - c0 < 450 and 10 <= r0 < 250 and 2 <= c0 < 80
        for a0, a1, b0, b1 in rects[1:]:
            child_t.append(min(a1 - a0, b1 - b0))
    assert counts == {7, 15}
    assert root_t == set(range(15, 20))
    # children take at most 3/4 of the root thickness (<= 14) and get thinner with depth
    assert max(child_t) <= 3 * 19 // 4
    assert np.mean(child_t) < 8


def test_paint_rectangles_shift_and_cut():
    canvas = paint_rectangles([(-5, 5, 100, 110), (500, 530, 0, 4)], 512)
    # shifted, not cropped: rows 0..9 painted (10 rows)
    assert canvas[:, 100].sum() == 10 and canvas[10, 100] == 0
    # cut at 511: row 511 never painted
    assert canvas[500:511, 0].all() and canvas[511].sum() == 0
    assert canvas[:, 511].sum() == 0


def test_warp_identity_and_rotation_isometry():
    size = 48
    x = torch.rand(2, 1, size, size)
    rngs = [np.random.default_rng(0), np.random.default_rng(1)]
    grid = ssvs_warp_grid(rngs, size, jitter=(0.0, 0.0), rotate_p=0.0, stride=1)
    assert torch.allclose(apply_warp_grid(x, grid), x, atol=1e-5)
    # rotation only: an isometry about the centre, and mirrored borders keep an all-ones image at 1
    for seed in range(6):
        grid = ssvs_warp_grid([np.random.default_rng(seed)], size, jitter=(0.0, 0.0), rotate_p=1.0, stride=1)
        pix = (grid[0] + 1) * (size - 1) / 2  # (H, W, 2) source (x, y) in pixels
        yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
        c = (size - 1) / 2
        inner = ((xx - c) ** 2 + (yy - c) ** 2) < (0.45 * size) ** 2
        r_src = torch.sqrt((pix[..., 0] - c) ** 2 + (pix[..., 1] - c) ** 2)
        r_dst = torch.sqrt((xx - c) ** 2 + (yy - c) ** 2)
        assert torch.allclose(r_src[inner], r_dst[inner], atol=1e-3)
        assert not torch.allclose(pix[..., 0], xx, atol=0.5)  # it did rotate
        ones = apply_warp_grid(torch.ones(1, 1, size, size), grid)
        assert float(ones.min()) > 0.999
    # with the jitter, fill 0 shows up at the borders of an all-ones image
    grid = ssvs_warp_grid([np.random.default_rng(3)], 64, rotate_p=0.0)
    assert float(apply_warp_grid(torch.ones(1, 1, 64, 64), grid).min()) == 0.0


@pytest.mark.parametrize("size", [512, 66, 32])
def test_fast_ssvs_path_equals_paint_then_grid_sample(size):
    def rngs():
        return [np.random.default_rng(s) for s in range(12)]

    r1, r2 = rngs(), rngs()
    rects = [ssvs_rectangles(g, size) for g in r1]
    assert [ssvs_rectangles(g, size) for g in r2] == rects
    canvas = torch.from_numpy(np.stack([paint_rectangles(r, size) for r in rects]))[:, None]
    slow = apply_warp_grid(canvas, ssvs_warp_grid(r1, size))
    fast = warp_ssvs_masks(rects, r2, size)
    torch.testing.assert_close(fast, slow, atol=2e-4, rtol=0)
    assert torch.equal((fast * 255).round(), (slow * 255).round()) or float(((fast - slow) * 255).abs().max()) < 0.05
    # painted_box is the bounding box of the painted pixels
    for r, c in zip(rects, canvas[:, 0]):
        rows, cols = torch.nonzero(c.sum(1)).flatten(), torch.nonzero(c.sum(0)).flatten()
        assert painted_box(r, size) == (int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1]))
    assert painted_box([], size) is None


def test_ssvs_coarse_grid_close_to_exact():
    rngs = lambda: [np.random.default_rng(s) for s in range(4)]  # noqa: E731
    g4 = ssvs_warp_grid(rngs(), 128, stride=4)
    g1 = ssvs_warp_grid(rngs(), 128, stride=1)
    err = (g4 - g1).abs() * 127 / 2  # pixels
    assert float(err.mean()) < 0.05 and float(err.max()) < 4.0


def test_ssvs_statistics_match_released_sample(xcad_sample):
    real = np.stack([read_grayscale_png(p) for p in sorted((xcad_sample / "train" / "trainA").glob("*.png"))])
    masks = FractalVesselSynthesizer(512, "ssvs", seed=0, output="uint8").sample(64).numpy()[:, 0]
    frac_pos = (masks > 0).mean((1, 2))
    frac_255 = (masks == 255).mean((1, 2))
    real_pos, real_255 = (real > 0).mean((1, 2)), (real == 255).mean((1, 2))
    # the released masks sit inside the bulk of the synthetic distribution
    for value, dist in [(v, frac_pos) for v in real_pos] + [(v, frac_255) for v in real_255]:
        assert np.quantile(dist, 0.05) <= value <= np.quantile(dist, 0.97)
    assert 0.035 <= frac_pos.mean() <= 0.065
    # anti-aliased grey edges exist (0 < value < 255), row/column 511 is never fully painted
    assert ((masks > 0) & (masks < 255)).mean() > 0.003
    assert len(np.unique(masks)) > 200


# ----------------------------------------------------------------------------- tree
def test_render_capsules_matches_brute_force():
    rng = np.random.default_rng(0)
    size = 40
    segs = []
    for _ in range(2):
        n = 6
        p = rng.uniform(-5, size + 5, (n, 4))
        r = rng.uniform(0.3, 4.0, (n, 2))
        segs.append(np.concatenate([p, r], 1))
    got = render_capsules(segs, size, max_elements=500)
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    for k, s in enumerate(segs):
        ref = np.zeros((size, size))
        for x0, y0, x1, y1, r0, r1 in s:
            dx, dy = x1 - x0, y1 - y0
            t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0, 1)
            d = np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))
            ref = np.maximum(ref, np.clip(r0 + t * (r1 - r0) - d + 0.5, 0, 1))
        np.testing.assert_allclose(got[k, 0].numpy(), ref, atol=1e-4)


def test_tree_murray_law_and_taper():
    seg = grow_vessel_tree(np.random.default_rng(5), 512)
    assert seg.shape[1] == 6 and len(seg) > 20
    # radii never grow along a segment, and the thickest is the root range
    assert np.all(seg[:, 5] <= seg[:, 4] + 1e-9)
    assert 7.5 <= seg[:, 4].max() <= 11.0  # the root radius range
    # steps have the configured length (6 px at 512)
    lengths = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    np.testing.assert_allclose(lengths, 6.0, rtol=1e-6)
    # at every bifurcation point, Murray's law r_p^3 = r_1^3 + r_2^3 holds
    starts = {}
    for s in seg:
        starts.setdefault((round(s[0], 6), round(s[1], 6)), []).append(s[4])
    ends = {(round(s[2], 6), round(s[3], 6)): s[5] for s in seg}
    checked = 0
    for key, radii in starts.items():
        if len(radii) == 2 and key in ends:
            assert ends[key] ** 3 == pytest.approx(radii[0] ** 3 + radii[1] ** 3, rel=1e-9)
            checked += 1
    assert checked >= 3


def test_tree_statistics_match_real_test_masks(xcad_sample):
    real = np.stack([read_grayscale_png(p) for p in sorted((xcad_sample / "test" / "masks").glob("*.png"))])
    real_m = torch.from_numpy(real > 127)[:, None]
    soft = FractalVesselSynthesizer(512, "tree", seed=0).sample(16)
    # anti-aliased edges
    assert float(((soft > 0) & (soft < 1)).float().mean()) > 0.005
    syn_m = soft >= 0.5
    frac = syn_m.float().mean((1, 2, 3)).numpy()
    real_frac = real_m.float().mean((1, 2, 3)).numpy()  # 0.058, 0.049
    assert 0.045 <= frac.mean() <= 0.065
    assert frac.min() <= real_frac.min() and real_frac.max() <= frac.max()
    # width profile: fraction of vessel pixels deeper than r px, compared with the real masks
    syn_c, real_c = _erosion_curve(syn_m), _erosion_curve(real_m)
    np.testing.assert_allclose(syn_c.median(0).values.numpy(), real_c.mean(0).numpy(), atol=0.08)
    # widest vessels: a real mask reaches depth ~10-12 px; ours reach 7-14 (diameters up to ~20 px)
    max_depth = _depth(syn_m).amax((1, 2, 3))
    assert 7 <= float(max_depth.median()) <= 14
    # thin vessels exist: a good share of pixels is within 2 px of the edge
    assert float(1 - syn_c[:, 1].mean()) > 0.3


def test_tree_params_scale_with_size():
    m = FractalVesselSynthesizer(128, "tree", seed=1).sample(8)
    frac = (m >= 0.5).float().mean((1, 2, 3))
    assert 0.03 <= float(frac.mean()) <= 0.08


# ----------------------------------------------------------------------------- angiograms
def test_background_look_and_determinism():
    bg = render_background(128, seed=4, n=3)
    assert bg.shape == (3, 1, 128, 128) and bg.dtype == torch.float32
    assert float(bg.min()) >= -1 and float(bg.max()) <= 1
    grey = (bg + 1) * 127.5
    # XCAD frames: mean grey ~100, std ~35 (0-255 scale)
    assert 70 <= float(grey.mean()) <= 135
    assert 10 <= float(grey.std((1, 2, 3)).mean()) <= 50
    assert torch.equal(bg, render_background(128, seed=4, n=3))
    assert not torch.equal(bg[0], render_background(128, seed=5, n=1)[0])
    # image i does not depend on n
    assert torch.equal(bg[1], render_background(128, seed=4, n=2)[1])
    # the clean background is smoother than the noisy one
    clean = render_background(128, seed=4, n=3, noise=False)
    hf = lambda x: (x[..., 1:, :] - x[..., :-1, :]).abs().mean()  # noqa: E731
    assert float(hf(clean)) < float(hf(bg))


def test_vessel_chord_exact_on_a_bar():
    m = torch.zeros(1, 1, 40, 40)
    m[..., 14:21, :] = 1.0  # width 7: half-width w = 3, depth 1..4
    chord = vessel_chord(m, max_radius=6)[0, 0, :, 20]
    depth = torch.tensor([1, 2, 3, 4, 3, 2, 1], dtype=torch.float32)
    np.testing.assert_allclose(chord[14:21].numpy(), (2 * torch.sqrt(depth * (8 - depth))).numpy(), rtol=1e-6)
    assert float(chord[:14].abs().max()) == 0 and float(chord[21:].abs().max()) == 0


def test_angiogram_darkens_vessels_centre_darkest():
    size = 256  # vessel depth is measured up to 12 * size / 512 = 6 px
    bg = torch.full((1, 1, size, size), 0.0)  # mid grey
    m = torch.zeros(1, 1, size, size)
    m[..., 10:21, 5:60] = 1.0  # thick (11 px)
    m[..., 40:43, 5:60] = 1.0  # thin (3 px)
    a = render_angiogram(bg, m, seed=0, noise=False, blur=0.0)
    assert torch.equal(a[m == 0], bg[m == 0])  # unchanged away from vessels
    prof = a[0, 0, 10:21, 30]
    assert int(prof.argmin()) == 5  # darkest in the centre
    assert torch.all(prof[:5] > prof[1:6]) and torch.all(prof[6:] > prof[5:10])
    assert float(a[0, 0, 15, 30]) < float(a[0, 0, 41, 30]) < 0.0  # thick darker than thin
    # with noise and blur: still deterministic by seed, range kept
    n1 = render_angiogram(bg, m, seed=1)
    assert torch.equal(n1, render_angiogram(bg, m, seed=1))
    assert float(n1.min()) >= -1 and float(n1.max()) <= 1
    u8 = render_angiogram(bg, (m * 255).to(torch.uint8), seed=0, noise=False, blur=0.0)
    assert torch.equal(u8, a)


def test_angiogram_bad_inputs():
    bg = torch.zeros(1, 1, 32, 32)
    with pytest.raises(ValueError, match="shape"):
        render_angiogram(bg, torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        render_angiogram(bg, torch.full((1, 1, 32, 32), 2.0))
    with pytest.raises(ValueError, match="NaN"):
        render_angiogram(torch.full((1, 1, 32, 32), math.nan), torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        render_angiogram(torch.zeros(32, 32), torch.zeros(32, 32))
    with pytest.raises(ValueError, match="size"):
        render_background(33)


def test_quantum_noise_is_signal_dependent():
    x = torch.cat([torch.full((1, 1, 96, 96), -0.6), torch.full((1, 1, 96, 96), 0.6)])  # 0.2 and 0.8
    noisy = add_quantum_noise(x, seed=0, level=0.02, correlation=0.0)
    sd = (noisy - x).std((1, 2, 3))
    # std ~ 2 * level * sqrt(I) on the [-1, 1] scale: ratio sqrt(0.8 / 0.2) = 2
    assert float(sd[1] / sd[0]) == pytest.approx(2.0, rel=0.1)
    assert float(sd[0]) == pytest.approx(2 * 0.02 * math.sqrt(0.2), rel=0.1)


# ----------------------------------------------------------------------------- properties
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=20, deadline=None)
@given(size=st.integers(16, 80).map(lambda k: 2 * k), style=st.sampled_from(["ssvs", "tree"]), seed=st.integers(0, 2**32), index=st.integers(0, 10**6))
def test_any_size_seed_index_gives_valid_reproducible_masks(size, style, seed, index):
    synth = FractalVesselSynthesizer(size, style, seed=seed)
    m = synth[index]
    assert m.shape == (1, size, size) and m.dtype == torch.float32
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    assert torch.isfinite(m).all()
    assert torch.equal(FractalVesselSynthesizer(size, style, seed=seed).masks([index])[0], m)


@settings(max_examples=25, deadline=None)
@given(
    seg=st.lists(st.tuples(*([st.floats(-8, 32, allow_nan=False)] * 4), st.floats(0.2, 5), st.floats(0.2, 5)), min_size=1, max_size=5),
)
def test_render_capsules_property_matches_brute_force(seg):
    size = 24
    arr = np.array(seg, dtype=np.float64)
    got = render_capsules([arr], size, max_elements=300)[0, 0].numpy()
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    ref = np.zeros((size, size))
    for x0, y0, x1, y1, r0, r1 in arr.astype(np.float32).astype(np.float64):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0, 1)
        d = np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))
        ref = np.maximum(ref, np.clip(r0 + t * (r1 - r0) - d + 0.5, 0, 1))
    np.testing.assert_allclose(got, ref, atol=2e-3)
