"""prepare's real-image parts: local contrast, training tiles, field-of-view masks, fill backgrounds, mask shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darlkit.data.background import pseudo_background
from darlkit.data.morphology import gaussian_blur
from darlkit.preparation.contrast import Z_MAX, local_contrast
from darlkit.preparation import calibrate_tree_params, matched_tree_params, restrict_to_fov, square_fov
from darlkit.preparation import synthesize_masks, vessel_fraction
from darlkit.preparation.tiles import tile_coverages, tile_grid


def _disc(h=120, w=130, r=50):
    yy, xx = np.mgrid[:h, :w]
    return (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < r ** 2


# ----------------------------------------------------------------------------- local contrast
def test_local_contrast_removes_illumination_and_keeps_vessel_sign():
    h, w = 120, 130
    fov = _disc(h, w)
    yy, xx = np.mgrid[:h, :w]
    shading = 0.3 + 0.4 * xx / w  # illumination ramp, 0.3 .. 0.7
    vessel = np.abs(xx - 65) < 2
    texture = np.random.default_rng(0).normal(0.0, 0.01, (h, w))
    x = np.where(fov, shading * np.where(vessel, 0.9, 1.0) + texture, 0.02).astype(np.float32)
    y, limited = local_contrast(x, fov, sigma=8.0)
    assert y.dtype == np.float32 and y.shape == x.shape and 0.0 <= y.min() and y.max() <= 1.0
    assert np.all(y[~fov] == 0.5)  # the surround is the mean level: no rim edge
    inside = _disc(h, w, 32) & ~vessel & (np.abs(xx - 65) > 12)  # two sigmas away from the rim
    # the ramp is gone: left and right halves of the eye have the same level (the raw ones differ by 0.2)
    left, right = y[inside & (xx < 45)].mean(), y[inside & (xx > 85)].mean()
    assert abs(left - right) < 0.02
    assert y[vessel & fov].mean() < y[inside].mean() - 0.1  # vessels stay darker
    assert 0.0 <= limited < 0.05


def test_local_contrast_maps_z_scores_by_hand_and_refuses_bad_input():
    # a flat image with one dark pixel: far from it z = 0 -> 0.5; the pixel itself is limited at 0
    x = np.full((41, 41), 0.5, np.float32)
    x[20, 20] = 0.0
    y, limited = local_contrast(x, None, sigma=3.0)
    assert y[0, 0] == pytest.approx(0.5, abs=1e-6) and y[20, 20] == 0.0
    assert limited == pytest.approx(1 / 41 ** 2)
    # a step edge, against the formula written out with the same blur (no field of view: weights 1)
    step = np.repeat((np.arange(61) >= 30).astype(np.float32)[None], 61, 0)
    y_step, _ = local_contrast(step, None, sigma=5.0)
    n = gaussian_blur(np.ones_like(step), 5.0)  # the weights' blur: 1 up to the kernel's rounding
    m = gaussian_blur(step, 5.0) / n
    s = np.sqrt(gaussian_blur((step - m) ** 2, 5.0) / n)
    want = np.clip(0.5 + (step - m) / (s + 1e-3) / (2 * Z_MAX), 0, 1)
    np.testing.assert_allclose(y_step, want, atol=1e-5)
    assert y_step[30, 30] > 0.6 and y_step[30, 29] < 0.4  # bright side up, dark side down
    with pytest.raises(ValueError, match="sigma"):
        local_contrast(x, None, sigma=0)
    with pytest.raises(ValueError, match="fov is empty"):
        local_contrast(x, np.zeros((41, 41), bool), sigma=3.0)
    with pytest.raises(ValueError, match="fov is"):
        local_contrast(x, np.ones((40, 41), bool), sigma=3.0)


# ----------------------------------------------------------------------------- tiles
def test_tile_grid_covers_every_pixel_with_half_overlap():
    grid = tile_grid(960, 999, 512)
    assert grid == [(r, c) for r in (0, 256, 448) for c in (0, 256, 487)]
    cover = np.zeros((960, 999), int)
    for r, c in grid:
        cover[r:r + 512, c:c + 512] += 1
    assert cover.min() >= 1
    assert tile_grid(100, 80, 512) == [(0, 0)]
    with pytest.raises(ValueError, match="tile"):
        tile_grid(10, 10, 1)


def test_tile_coverages_match_a_direct_count():
    fov = _disc(200, 210, 80)
    for r, c, share in tile_coverages(fov, 64):
        assert share == pytest.approx(fov[r:r + 64, c:c + 64].mean())
    assert [s for _, _, s in tile_coverages(np.ones((64, 64), bool), 64)] == [1.0]


# ----------------------------------------------------------------------------- field-of-view masks
def test_square_fov_centres_and_restrict_to_fov_zeroes_outside():
    f = np.zeros((4, 6), bool)
    f[1:3, 2:4] = True
    sq = square_fov(f, 4)  # columns 1..4 of the 6 kept
    assert sq.shape == (4, 4) and sq.sum() == 4 and sq[1:3, 1:3].all()
    pad = square_fov(f, 8)  # padded with False
    assert pad.shape == (8, 8) and pad.sum() == 4 and pad[3:5, 3:5].all()
    masks = torch.full((3, 4, 4), 255, dtype=torch.uint8)
    out = restrict_to_fov(masks, [sq, np.ones((4, 4), bool)])
    assert out.dtype == torch.uint8 and int(out[0].sum()) == 4 * 255 and int(out[1].sum()) == 16 * 255
    assert torch.equal(out[2], out[0])  # cycled
    with pytest.raises(ValueError, match="at least one"):
        restrict_to_fov(masks, [])
    with pytest.raises(ValueError, match="field of view is"):
        restrict_to_fov(masks, [np.ones((5, 5), bool)])


@pytest.mark.slow
def test_calibration_matches_the_fraction_inside_the_fov():
    fov = square_fov(_disc(192, 192, 80), 192)
    params, achieved = calibrate_tree_params(192, 8.0, 0.10, seed=0, fovs=[fov])
    masks = restrict_to_fov(synthesize_masks(3, 192, params=params, seed=1), [fov]).numpy() == 255
    assert not masks[:, ~fov].any()
    inside = np.mean([vessel_fraction(m, fov) for m in masks])
    assert 0.06 <= achieved["fraction"] <= 0.14 and 0.05 <= inside <= 0.16


def test_matched_tree_params_are_retina_shaped():
    p = matched_tree_params(480, 7.0, 0.1)
    w512 = 7.0 * 512 / 480
    assert p.root_radius == pytest.approx((0.47 * w512, 0.6 * w512))
    assert p.min_radius == pytest.approx(0.19 * w512) and p.taper == (0.9, 0.99) and p.max_roots == 8
    assert matched_tree_params(512, 22.0, 0.05).min_radius == pytest.approx(2.2)  # capped at the style default
    with pytest.raises(ValueError, match="width"):
        matched_tree_params(512, 0.0, 0.05)


# ----------------------------------------------------------------------------- fill backgrounds
def test_fill_background_removes_the_vessel_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    x = np.clip(0.5 + rng.normal(0, 0.02, (96, 96)), 0, 1).astype(np.float32)
    x[:, 40:44] -= 0.3  # a dark vessel 4 px wide
    bg = pseudo_background(x, 11, seed=0, method="fill")
    assert bg.dtype == np.float32 and bg.shape == x.shape
    assert abs(float(bg[:, 40:44].mean()) - 0.5) < 0.03  # filled at the surrounding level
    far = np.r_[0:30, 60:96]
    kept = np.isclose(bg[:, far], x[:, far]).mean()
    assert kept > 0.8  # elsewhere the image's own texture (only depths beyond 2 sigma, widened, are replaced)
    with pytest.raises(ValueError, match="method"):
        pseudo_background(x, 11, method="median")


# ----------------------------------------------------------------------------- prepare, end to end
def test_prepare_tiles_contrast_and_fov_masks(tmp_path):
    from PIL import Image

    from darlkit.data import read_image
    from darlkit.preparation import prepare_dataset

    rng = np.random.default_rng(0)
    fov = _disc(96, 100, 30)
    for k in range(2):
        g = np.where(fov, 150 + rng.normal(0, 4, fov.shape), 2)
        g[:, 30 + 20 * k:34 + 20 * k] -= 50 * fov[:, 30:34]
        Image.fromarray(np.stack([g, g, g], -1).clip(0, 255).astype(np.uint8)).save(tmp_path / f"im{k}.png")
    out = tmp_path / "out"
    rec = prepare_dataset(out, images=[tmp_path / "im0.png", tmp_path / "im1.png"], channel="green", train_tile=48,
                          vessel_width_target=4.0, vessel_fraction_target=0.1)
    assert rec["contrast"]["mode"] == "local" and rec["contrast"]["sigma"] == pytest.approx(6.0)
    assert rec["tiles"]["side"] == 48 and rec["masks"]["fov"].startswith("auto")
    names = sorted(p.name for p in (out / "train" / "trainB").iterdir())
    # grid rows 0, 24, 48 and columns 0, 24, 48, 52; kept: the tiles at least half inside the eye
    from darlkit.data.roi import field_of_view

    found = [field_of_view(read_image(tmp_path / f"im{k}.png", channel="green")) for k in (0, 1)]  # prepare's rule
    kept = [(k, r, c) for k in (0, 1) for r in (0, 24, 48) for c in (0, 24, 48, 52) if found[k][r:r + 48, c:c + 48].mean() >= 0.5]
    assert 0 < len(kept) < 24 and names == sorted(f"im{k}_y{r:04d}_x{c:04d}.png" for k, r, c in kept)
    tile = read_image(out / "train" / "trainB" / "im0_y0024_x0024.png")
    assert tile.shape == (48, 48) and abs(float(tile.mean()) - 0.5) < 0.1
    for e in rec["files"]["train/trainA"]:  # synthetic vessels only inside the (square-cut) field of view
        m = np.asarray(Image.open(out / e["file"]))
        r, c = e["tile"]
        assert not m[~square_fov(found[0], 96)[r:r + 48, c:c + 48]].any() or not m[~square_fov(found[1], 96)[r:r + 48, c:c + 48]].any()
    with pytest.raises(ValueError, match="--train-tile"):
        prepare_dataset(tmp_path / "o2", images=[tmp_path / "im0.png"], train_tile=8)
    with pytest.raises(ValueError, match="--contrast"):
        prepare_dataset(tmp_path / "o2", images=[tmp_path / "im0.png"], contrast="clahe")
    with pytest.raises(ValueError, match="--background-method"):
        prepare_dataset(tmp_path / "o2", images=[tmp_path / "im0.png"], background_method="median")


@pytest.mark.parametrize("size, contrast", [(None, "local"), (60, "local"), (60, "none")])
def test_prepare_like_gives_a_new_image_the_folders_preparation(tmp_path, size, contrast):
    """``prepare_like`` on a test image reproduces the test image prepare wrote (to its 8-bit storage)."""
    from PIL import Image

    from darlkit.data import read_image
    from darlkit.preparation import PREPARE_RECORD, prepare_dataset, prepare_like, read_prepare_record

    rng = np.random.default_rng(1)
    fov = _disc(96, 100, 30)
    for k in range(3):
        g = np.where(fov, 120 + 40 * np.linspace(0, 1, 100)[None, :] + rng.normal(0, 4, fov.shape), 2)
        g[:, 30 + 20 * k:34 + 20 * k] -= 50 * fov[:, 30:34]
        rgb = np.stack([g * 0.5, g, g * 0.3], -1).clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / f"im{k}.png")
    Image.fromarray((np.abs(np.arange(100) - 52) < 2)[None].repeat(96, 0).astype(np.uint8) * 255).save(tmp_path / "im2_mask.png")
    out = tmp_path / "out"
    prepare_dataset(out, images=[tmp_path / "im0.png", tmp_path / "im1.png"], test_images=[tmp_path / "im2.png"],
                    test_masks=[tmp_path / "im2_mask.png"], channel="green", size=size, contrast=contrast,
                    vessel_width_target=4.0, vessel_fraction_target=0.1)
    record = read_prepare_record(out)
    assert record == read_prepare_record(out / PREPARE_RECORD)
    (frame,) = prepare_like(tmp_path / "im2.png", record)
    written = read_image(out / "test" / "images" / "im2.png")
    assert frame.shape == written.shape == ((96, 100) if size is None else (60, 62))
    assert np.abs(frame - written).max() <= 0.5 / 255 + 1e-6
    raw = read_image(tmp_path / "im2.png", channel="green")
    if contrast == "local":  # the normalisation really ran: the surround is the mean level
        assert abs(float(frame[0, 0]) - 0.5) < 1e-6 and abs(float(raw[0, 0]) - 0.5) > 0.4
    # keep_size: the same frame, resampled back to the input's size (no second decode needed)
    from darlkit.preparation import resample

    (kept,) = prepare_like(tmp_path / "im2.png", record, keep_size=True)
    assert kept.shape == raw.shape == (96, 100)
    np.testing.assert_array_equal(kept, resample(frame, (96, 100)))


def test_read_prepare_record_refuses_missing_and_bad_records(tmp_path):
    from darlkit.preparation import read_prepare_record

    with pytest.raises(ValueError, match="not found: give a folder written by darlkit prepare"):
        read_prepare_record(tmp_path)
    (tmp_path / "prepare.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable prepare record"):
        read_prepare_record(tmp_path)
    (tmp_path / "prepare.json").write_text('{"channel": "green"}')
    with pytest.raises(ValueError, match="lacks invert, size, contrast"):
        read_prepare_record(tmp_path)
