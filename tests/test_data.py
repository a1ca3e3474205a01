"""XCADDataset, PNG reading and intensity helpers, on the real sample and on broken files."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from darlkit.data import XCADDataset, from_unit_range, list_png_files, read_grayscale_png, to_unit_range


def _variants(full: np.ndarray) -> list[torch.Tensor]:
    """The 4 polyphase phases x 8 flip/transpose combinations of a full image, as [-1, 1] tensors."""
    out = []
    t = torch.from_numpy(full)
    for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):
        p = t[i::2, j::2]
        for h in (False, True):
            for v in (False, True):
                for tr in (False, True):
                    x = p.flip(-1) if h else p
                    x = x.flip(-2) if v else x
                    x = x.transpose(0, 1) if tr else x
                    out.append(x)
    return out


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "xcad"
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------- helpers
def test_unit_range_round_trip():
    u = torch.arange(256, dtype=torch.uint8)
    f = to_unit_range(u)
    assert f.dtype == torch.float32 and float(f[0]) == -1.0 and float(f[255]) == 1.0
    assert torch.equal(from_unit_range(f), u)
    assert torch.equal(to_unit_range(np.arange(256, dtype=np.uint8)), f)
    with pytest.raises(TypeError, match="uint8"):
        to_unit_range(u.float())
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        from_unit_range(torch.tensor([1.5]))
    assert torch.equal(from_unit_range(torch.tensor([1.5, -3.0]), clip=True), torch.tensor([255, 0], dtype=torch.uint8))
    with pytest.raises(ValueError, match="NaN"):
        from_unit_range(torch.tensor([float("nan")]))


# ----------------------------------------------------------------------------- train split
def test_train_items_shapes_ranges_and_phase00(xcad_sample):
    ds = XCADDataset(xcad_sample, "train", size=256, augment=False, seed=0)
    assert len(ds) == 2
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"angiogram", "background", "mask"}
        plan = ds.sample_plan(i)
        assert plan["angiogram"]["path"].parent.name == "trainB"
        for key, x in item.items():
            assert x.shape == (1, 256, 256) and x.dtype == torch.float32
            assert plan[key]["phase"] == (0, 0) and not plan[key]["hflip"]
            full = read_grayscale_png(plan[key]["path"])
            if key == "mask":
                assert set(torch.unique(x).tolist()) <= {-1.0, 1.0}
                assert torch.equal(x[0] > 0, torch.from_numpy(full[0::2, 0::2] == 255))
            else:
                assert torch.equal(x[0], to_unit_range(full[0::2, 0::2]))
                assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
        # item i takes angiogram i (sorted)
        assert plan["angiogram"]["path"] == sorted((xcad_sample / "train" / "trainB").glob("*.png"))[i]


def test_train_augment_is_a_phase_and_dihedral_variant(xcad_sample):
    ds = XCADDataset(xcad_sample, "train", size=256, augment=True, seed=3)
    fulls = {}
    seen_phases, seen_flags = set(), set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            plan = ds.sample_plan(i)
            for key in ("angiogram", "background", "mask"):
                p = plan[key]["path"]
                full = fulls.setdefault(p, read_grayscale_png(p))
                x = item[key][0]
                got = (x > 0) if key == "mask" else x
                cands = [(v == 255) if key == "mask" else to_unit_range(v) for v in _variants(full)]
                assert any(torch.equal(got, c) for c in cands)
                # and exactly the planned one
                ph = plan[key]["phase"]
                y = torch.from_numpy(full)[ph[0] :: 2, ph[1] :: 2]
                y = y.flip(-1) if plan[key]["hflip"] else y
                y = y.flip(-2) if plan[key]["vflip"] else y
                y = y.transpose(0, 1) if plan[key]["transpose"] else y
                assert torch.equal(got, (y == 255) if key == "mask" else to_unit_range(y))
                seen_phases.add(ph)
                seen_flags.add((plan[key]["hflip"], plan[key]["vflip"], plan[key]["transpose"]))
    assert len(seen_phases) == 4 and len(seen_flags) >= 6


def test_train_unpaired_across_epochs_and_deterministic(xcad_sample):
    ds = XCADDataset(xcad_sample, "train", size=256, seed=0)
    pairs = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        plan = ds.sample_plan(0)
        pairs.add((plan["background"]["path"].name, plan["mask"]["path"].name))
    assert len(pairs) >= 3  # background and mask partners of angiogram 0 change with the epoch
    ds.set_epoch(5)
    a = ds[1]
    other = XCADDataset(xcad_sample, "train", size=256, seed=0)
    other.set_epoch(5)
    b = other[1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    other.set_epoch(6)
    c = other[1]
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # within an epoch, backgrounds and masks are a permutation (no repeats)
    ds.set_epoch(2)
    assert len({ds.sample_plan(i)["background"]["path"] for i in range(2)}) == 2
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-1)


def test_dataloader_workers_and_distributed_sampler(xcad_sample):
    ds = XCADDataset(xcad_sample, "train", size=256, seed=1)
    ds.set_epoch(3)
    direct = [ds[i] for i in range(len(ds))]
    loaded = list(DataLoader(ds, batch_size=1, num_workers=2, shuffle=False))
    for d, b in zip(direct, loaded):
        assert all(torch.equal(d[k], b[k][0]) for k in d)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(3)
        idx = list(sampler)
        assert len(idx) == 1
        seen += idx
        batch = next(iter(DataLoader(ds, batch_size=1, sampler=sampler)))
        assert torch.equal(batch["angiogram"][0], direct[idx[0]]["angiogram"])
    assert sorted(seen) == [0, 1]


def test_test_split_items(xcad_sample):
    ds = XCADDataset(xcad_sample, "test")
    assert len(ds) == 2
    item = ds[0]
    assert item["name"] == "01251_32.png"
    assert item["image"].shape == (1, 512, 512) and item["image"].dtype == torch.float32
    raw_img = read_grayscale_png(xcad_sample / "test" / "images" / "01251_32.png")
    raw_mask = read_grayscale_png(xcad_sample / "test" / "masks" / "01251_32.png")
    assert torch.equal(item["image"][0], to_unit_range(raw_img))
    assert set(torch.unique(item["mask"]).tolist()) == {0.0, 1.0}
    assert torch.equal(item["mask"][0] == 1, torch.from_numpy(raw_mask > 127))
    assert float(item["mask"].mean()) == pytest.approx(0.0578, abs=5e-4)


def test_bad_arguments(xcad_sample, tmp_path):
    with pytest.raises(ValueError, match="split"):
        XCADDataset(xcad_sample, "valid")
    with pytest.raises(FileNotFoundError, match=r"val/images"):
        XCADDataset(xcad_sample, "val")  # a valid split, but the sample has no val/ folder
    with pytest.raises(ValueError, match="size"):
        XCADDataset(xcad_sample, size=0)
    with pytest.raises(ValueError, match="small"):
        XCADDataset(xcad_sample, small="crop")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        XCADDataset(tmp_path / "nowhere")
    # 512 images are no longer tied to size=256: size=128 takes 128 windows of the 256 phases ...
    ds = XCADDataset(xcad_sample, "train", size=128, augment=False)
    assert ds[0]["angiogram"].shape == (1, 128, 128)
    # ... and a crop larger than a phase is padded, or refused naming the file with small="error"
    big = XCADDataset(xcad_sample, "train", size=300, small="error")
    with pytest.raises(ValueError, match=r"000_PPA_44_PSA_00_8\.png is 512x512.*256x256.*300x300"):
        big[0]
    with pytest.raises(IndexError):
        ds[2]


# ----------------------------------------------------------------------------- bad data
def test_missing_and_empty_folders(xcad_sample, tmp_path):
    root = _copy(xcad_sample, tmp_path)
    shutil.rmtree(root / "train" / "trainC")
    with pytest.raises(FileNotFoundError, match="trainC"):
        XCADDataset(root, "train")
    (root / "train" / "trainC").mkdir()
    with pytest.raises(ValueError, match="no image files in .*trainC"):
        XCADDataset(root, "train")
    (root / "train" / "trainC" / ".DS_Store").write_bytes(b"x")  # hidden entries are ignored ...
    (root / "train" / "trainC" / "notes.txt").write_text("x")  # ... other entries are errors
    with pytest.raises(ValueError, match="notes.txt"):
        XCADDataset(root, "train")


def test_corrupt_truncated_and_non_png_files(xcad_sample, tmp_path):
    root = _copy(xcad_sample, tmp_path)
    b = sorted((root / "train" / "trainB").glob("*.png"))
    data = b[0].read_bytes()
    b[0].write_bytes(data[: len(data) // 2])  # truncated
    ds = XCADDataset(root, "train", augment=False)  # construction is cheap: no decoding yet
    with pytest.raises(ValueError, match=b[0].name):
        ds[0]
    b[1].write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match=b[1].name):
        ds[1]
    Image.new("L", (512, 512)).save(b[1], format="JPEG")  # JPEG bytes behind a .png name
    with pytest.raises(ValueError, match="not a PNG"):
        read_grayscale_png(b[1])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_grayscale_png(root / "missing.png")


def test_rgb_converted_with_warning_16bit_rejected(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.stack([grey] * 3, -1), mode="RGB").save(rgb)
    with pytest.warns(UserWarning, match="rgb.png.*RGB"):
        arr = read_grayscale_png(rgb)
    np.testing.assert_array_equal(arr, grey)
    b16 = tmp_path / "deep.png"
    Image.fromarray(grey.astype(np.uint16) * 256).save(b16)
    with pytest.raises(ValueError, match="deep.png.*16"):
        read_grayscale_png(b16)
    one = tmp_path / "one.png"
    Image.fromarray(grey > 127).save(one)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(read_grayscale_png(one), np.where(grey > 127, 255, 0))


def test_test_split_unmatched_and_mismatched(xcad_sample, tmp_path):
    root = _copy(xcad_sample, tmp_path)
    (root / "test" / "masks" / "02208_30.png").unlink()
    with pytest.raises(FileNotFoundError, match="02208_30.png"):
        XCADDataset(root, "test")
    Image.new("L", (256, 256), 255).save(root / "test" / "masks" / "02208_30.png")  # binary, wrong size
    Image.new("L", (512, 512)).save(root / "test" / "masks" / "extra.png")
    with pytest.raises(ValueError, match="extra.png"):
        XCADDataset(root, "test")
    (root / "test" / "masks" / "extra.png").unlink()
    ds = XCADDataset(root, "test")
    with pytest.raises(ValueError, match="02208_30.png is 256x256 but image"):
        ds[1]


def test_list_png_files_sorted(tmp_path):
    for name in ("b.png", "a.PNG", "c.png"):
        Image.new("L", (4, 4)).save(tmp_path / name, format="PNG")
    assert [p.name for p in list_png_files(tmp_path)] == ["a.PNG", "b.png", "c.png"]


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402


@settings(max_examples=30, deadline=None)
@given(arr=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6)))
def test_unit_range_round_trip_property(arr):
    f = to_unit_range(arr)
    assert f.shape == arr.shape and float(f.min()) >= -1 and float(f.max()) <= 1
    np.testing.assert_array_equal(from_unit_range(f).numpy(), arr)
