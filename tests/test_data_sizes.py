"""XCADDataset on any format and size: random crops, padding, val/roi splits, masks, channels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from darlkit.data import XCADDataset, read_image

SIZES = [(1, 1), (9, 7), (584, 565), (960, 999), (1000, 1000)]  # (H, W)


def _grey(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _train_root(tmp_path, shapes, fmt="PNG", suffix=".png"):
    root = tmp_path / "data"
    for folder in ("trainA", "trainB", "trainC"):
        (root / "train" / folder).mkdir(parents=True)
    for k, shape in enumerate(shapes):
        Image.fromarray(_grey(shape, k)).save(root / "train" / "trainB" / f"{k:02d}{suffix}", format=fmt)
        Image.fromarray(_grey(shape, 100 + k)).save(root / "train" / "trainC" / f"{k:02d}{suffix}", format=fmt)
        m = np.where(_grey(shape, 200 + k) > 128, 255, 0).astype(np.uint8)
        m.flat[0] = 255
        Image.fromarray(m).save(root / "train" / "trainA" / f"{k:02d}.png")
    return root


def _expected(full, step, size):
    """The documented window rule, written out independently: phase, reflect pad, crop, flips."""
    x = full[step["phase"][0] if full.shape[0] > 1 else 0 :: 2, step["phase"][1] if full.shape[1] > 1 else 0 :: 2]
    pad = [(0, max(0, size - n)) for n in x.shape]
    x = np.pad(x, pad, mode="reflect" if min(x.shape) > 1 else "edge")
    h, w = x.shape
    r, c = ((h - size) // 2, (w - size) // 2) if step["crop"] is None else (
        int(np.floor(step["crop"][0] * (h - size + 1))), int(np.floor(step["crop"][1] * (w - size + 1))))
    x = x[r : r + size, c : c + size]
    x = x[:, ::-1] if step["hflip"] else x
    x = x[::-1] if step["vflip"] else x
    return x.T if step["transpose"] else x


@pytest.mark.parametrize("shape", SIZES)
def test_train_crops_of_any_size_follow_the_plan(tmp_path, shape):
    root = _train_root(tmp_path, [shape], fmt="TIFF" if shape[0] > 500 else "PNG", suffix=".tif" if shape[0] > 500 else ".png")
    size = 64
    ds = XCADDataset(root, "train", size=size, seed=1)
    for epoch in range(3):
        ds.set_epoch(epoch)
        item, plan = ds[0], ds.sample_plan(0)
        for key in ("angiogram", "background"):
            x = item[key]
            assert x.shape == (1, size, size) and x.dtype == torch.float32
            full = read_image(plan[key]["path"])
            np.testing.assert_array_equal(x[0].numpy(), _expected(full, plan[key], size) * 2 - 1)
        m = item["mask"][0].numpy()
        assert set(np.unique(m)) <= {-1.0, 1.0}
        full_m = read_image(plan["mask"]["path"]) == 1.0
        np.testing.assert_array_equal(m > 0, _expected(full_m, plan["mask"], size))


def test_crop_positions_cover_the_image_and_are_deterministic(tmp_path):
    root = _train_root(tmp_path, [(300, 200)])
    ds = XCADDataset(root, "train", size=32, seed=5)
    starts = set()
    for epoch in range(60):
        ds.set_epoch(epoch)
        u = ds.sample_plan(0)["angiogram"]["crop"]
        assert 0.0 <= u[0] < 1.0 and 0.0 <= u[1] < 1.0
        starts.add((int(u[0] * (150 - 32 + 1)), int(u[1] * (100 - 32 + 1))))
    rows = {r for r, _ in starts}
    assert len(starts) > 50  # positions vary from epoch to epoch
    assert min(rows) < 20 and max(rows) > 99  # ... over the whole range 0 .. 118
    other = XCADDataset(root, "train", size=32, seed=5)
    other.set_epoch(7)
    ds.set_epoch(7)
    assert all(torch.equal(ds[0][k], other[0][k]) for k in ("angiogram", "background", "mask"))
    fixed = XCADDataset(root, "train", size=32, seed=5, augment=False)
    plan = fixed.sample_plan(0)["angiogram"]
    assert plan["crop"] is None and plan["phase"] == (0, 0)
    full = read_image(plan["path"])
    np.testing.assert_array_equal(fixed[0]["angiogram"][0].numpy(), full[0::2, 0::2][59:91, 34:66] * 2 - 1)  # centre


def test_small_images_reflect_padding_by_hand_and_error_mode(tmp_path):
    root = _train_root(tmp_path, [(6, 4)])
    ds = XCADDataset(root, "train", size=5, augment=False)
    full = read_image(ds.files["angiogram"][0])
    phase = full[0::2, 0::2]  # 3 x 2
    rows = [0, 1, 2, 1, 0]
    cols = [0, 1, 0, 1, 0]
    np.testing.assert_array_equal(ds[0]["angiogram"][0].numpy(), phase[np.ix_(rows, cols)] * 2 - 1)
    no_pp = XCADDataset(root, "train", size=5, augment=False, polyphase=False)
    np.testing.assert_array_equal(no_pp[0]["angiogram"][0].numpy(), full[np.ix_([0, 1, 2, 3, 4], [0, 1, 2, 3, 2])] * 2 - 1)
    strict = XCADDataset(root, "train", size=5, small="error")
    with pytest.raises(ValueError, match=r"00\.png is 4x6, so its polyphase phase \(2x3\) is smaller than the 5x5"):
        strict[0]
    one = _train_root(tmp_path / "one", [(1, 1)])
    item = XCADDataset(one, "train", size=8)[0]
    assert torch.unique(item["angiogram"]).numel() == 1 and item["angiogram"].shape == (1, 8, 8)


def test_train_masks_binary_01_and_refused_without_vessel_value(tmp_path):
    root = _train_root(tmp_path, [(16, 16)])
    truth = _grey((16, 16), 9) > 100
    Image.fromarray(truth.astype(np.uint8)).save(root / "train" / "trainA" / "00.png")  # 0/1 mask
    ds = XCADDataset(root, "train", size=8, augment=False, polyphase=False)
    np.testing.assert_array_equal(ds[0]["mask"][0].numpy() > 0, truth[4:12, 4:12])
    Image.fromarray(np.array([[0, 100, 200]] * 3, np.uint8)).save(root / "train" / "trainA" / "00.png")
    with pytest.raises(ValueError, match=r"00\.png has no pixel at 255"):
        ds[0]


def _paired(tmp_path, split, *, roi=True, n=2, shape=(9, 7)):
    root = tmp_path / "data"
    for folder in ("images", "masks") + (("roi",) if roi else ()):
        (root / split / folder).mkdir(parents=True, exist_ok=True)
    truths = []
    for k in range(n):
        rgb = np.stack([_grey(shape, 10 * k + c) for c in range(3)], -1)
        Image.fromarray(rgb).save(root / split / "images" / f"im{k}.jpg", quality=100)
        truth = _grey(shape, 50 + k) > 128
        Image.fromarray(truth.astype(np.uint8)).save(root / split / "masks" / f"im{k}.png")  # 0/1 masks
        if roi:
            fov = np.zeros(shape, bool)
            fov[1:-1, 1:-1] = True
            Image.fromarray(fov).save(root / split / "roi" / f"im{k}.gif")
        truths.append(truth)
    return root, truths


@pytest.mark.parametrize("split", ["test", "val"])
def test_paired_splits_with_roi_channel_and_01_masks(tmp_path, split):
    root, truths = _paired(tmp_path, split)
    ds = XCADDataset(root, split, channel="green")
    assert len(ds) == 2
    item = ds[1]
    assert set(item) == {"image", "mask", "roi", "name"} and item["name"] == "im1.jpg"
    assert item["image"].shape == item["mask"].shape == item["roi"].shape == (1, 9, 7)
    green = read_image(root / split / "images" / "im1.jpg", channel="green")
    np.testing.assert_array_equal(item["image"][0].numpy(), green * 2 - 1)
    luma = XCADDataset(root, split)[1]["image"]
    assert not torch.equal(luma, item["image"])
    np.testing.assert_array_equal(item["mask"][0].numpy(), truths[1].astype(np.float32))
    assert float(item["roi"].sum()) == 7 * 5 and float(item["roi"][0, 0, 0]) == 0.0


def test_paired_split_without_roi_and_errors(tmp_path):
    root, _ = _paired(tmp_path, "test", roi=False)
    assert "roi" not in XCADDataset(root, "test")[0]
    root2, _ = _paired(tmp_path / "b", "val")
    (root2 / "val" / "roi" / "im1.gif").unlink()
    with pytest.raises(FileNotFoundError, match=r"val image .*im1\.jpg has no roi file"):
        XCADDataset(root2, "val")
    Image.fromarray(np.ones((3, 3), np.uint8)).save(root2 / "val" / "roi" / "im1.png")
    with pytest.raises(ValueError, match=r"roi .*im1\.png is 3x3 but image .*im1\.jpg is 7x9"):
        XCADDataset(root2, "val")[1]
    Image.fromarray(np.ones((3, 3), np.uint8)).save(root2 / "val" / "masks" / "im1.bmp")
    with pytest.raises(ValueError, match=r"two files with the stem 'im1'"):
        XCADDataset(root2, "val")
