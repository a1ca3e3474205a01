"""``write_synthetic_xcad``: layout, determinism, seed-stream independence, overwrite rules."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from darlkit.data import read_grayscale_png
from darlkit.synthesis import FractalVesselSynthesizer, write_synthetic_xcad
from darlkit.synthesis import writer as writer_mod
from darlkit.synthesis._seeding import as_seed_sequence, child_sequence


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))}


def _load(root, folder):
    return np.stack([read_grayscale_png(p) for p in sorted((root / folder).glob("*.png"))])


def test_deterministic_and_seed_dependent(tmp_path):
    a = write_synthetic_xcad(tmp_path / "a", n_train=3, n_test=2, size=64, seed=5, progress=False)
    b = write_synthetic_xcad(tmp_path / "b", n_train=3, n_test=2, size=64, seed=5, progress=False)
    c = write_synthetic_xcad(tmp_path / "c", n_train=3, n_test=2, size=64, seed=6, progress=False)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert da == db
    assert len(da) == 3 * 3 + 2 * 2
    assert all(da[k] != dc[k] for k in da)
    # file i does not depend on how many files are written
    d = write_synthetic_xcad(tmp_path / "d", n_train=2, n_test=1, size=64, seed=5, progress=False)
    assert all(da[k] == v for k, v in _digest(d).items())


def test_streams_are_independent_and_styles(tmp_path):
    root = write_synthetic_xcad(tmp_path / "s", n_train=4, n_test=3, size=128, seed=0, progress=False)
    train_a = _load(root, "train/trainA")
    test_m = _load(root, "test/masks")
    # trainA: released-style fractals with grey anti-aliased edges
    assert ((train_a > 0) & (train_a < 255)).any()
    # test masks: binary trees from another stream, not any trainA mask
    assert set(np.unique(test_m).tolist()) == {0, 255}
    for m in test_m:
        assert all(not np.array_equal(m > 127, a == 255) for a in train_a)
    # the trainB vessels come from their own stream: neither trainA nor test masks
    base = as_seed_sequence(0)
    b_masks = FractalVesselSynthesizer(128, "tree", seed=child_sequence(base, writer_mod._TRAIN_B_MASKS)).masks(range(4))
    t_masks = FractalVesselSynthesizer(128, "tree", seed=child_sequence(base, writer_mod._TEST_MASKS)).masks(range(3))
    assert np.array_equal(test_m > 127, (t_masks[:, 0] >= 0.5).numpy())
    for bm in b_masks[:, 0] >= 0.5:
        assert all(not torch.equal(bm, tm) for tm in t_masks[:, 0] >= 0.5)
        assert all(not np.array_equal(bm.numpy(), a == 255) for a in train_a)
    # and the trainB angiograms are darker on those vessels than elsewhere
    ang = _load(root, "train/trainB").astype(float)
    on = b_masks[:, 0].numpy() > 0.9
    assert all(ang[i][on[i]].mean() < ang[i][~on[i]].mean() - 5 for i in range(4))


def test_thread_setting_restored(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        write_synthetic_xcad(tmp_path / "t", n_train=1, n_test=1, size=32, seed=0, progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_overwrite_rules(tmp_path):
    out = tmp_path / "o"
    write_synthetic_xcad(out, n_train=3, n_test=1, size=32, seed=0, progress=False)
    with pytest.raises(FileExistsError, match=str(out)):
        write_synthetic_xcad(out, n_train=1, n_test=1, size=32, seed=0, progress=False)
    (out / "README.txt").write_text("keep me")
    write_synthetic_xcad(out, n_train=1, n_test=1, size=32, seed=0, overwrite=True, progress=False)
    # stale PNGs from the bigger run are gone; other files are kept
    assert len(list((out / "train" / "trainA").glob("*.png"))) == 1
    assert (out / "README.txt").read_text() == "keep me"
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        write_synthetic_xcad(f, n_train=1, n_test=1, size=32, progress=False)


def test_bad_arguments(tmp_path):
    for kwargs, match in [
        ({"size": 34 + 1}, "size"),
        ({"size": 30}, "size"),
        ({"n_train": -1}, "n_train"),
        ({"n_train": 0, "n_test": 0}, "nothing"),
        ({"test_style": "x"}, "test_style"),
        ({"seed": 1.0}, "seed"),
        ({"crop": 31}, "crop"),
        ({"crop": 34}, "crop"),
        ({"crop": 16}, "crop"),
        ({"crop": 64.0}, "crop"),
    ]:
        with pytest.raises(ValueError, match=match):
            write_synthetic_xcad(tmp_path / "bad", **{"n_train": 1, "n_test": 1, "size": 32, "progress": False, **kwargs})
    assert not (tmp_path / "bad").exists()


def test_crop_windows_of_the_full_render(tmp_path):
    full = write_synthetic_xcad(tmp_path / "full", n_train=3, n_test=2, size=128, seed=3, progress=False, train_style="tree")
    crop = write_synthetic_xcad(tmp_path / "crop", n_train=3, n_test=2, size=128, seed=3, progress=False, train_style="tree", crop=64)
    base = as_seed_sequence(3)
    for k, folder in enumerate(("train/trainA", "train/trainB", "train/trainC", "test/masks")):
        big, small = _load(full, folder), _load(crop, folder)
        assert small.shape == (len(big), 64, 64)
        for i, (b, s) in enumerate(zip(big, small)):
            # every crop is a window of the same-seed full-size image
            vessel = None
            if folder == "train/trainA":
                vessel = b == 255
            elif folder == "test/masks":
                vessel = b > 127
            elif folder == "train/trainB":
                vessel = (FractalVesselSynthesizer(128, "tree", seed=child_sequence(base, writer_mod._TRAIN_B_MASKS))[i][0] >= 0.5).numpy()
            r, c = writer_mod.crop_window(128, 64, child_sequence(base, writer_mod._CROP, k, i), vessel)
            assert np.array_equal(s, b[r : r + 64, c : c + 64]), (folder, i)
            if vessel is not None and vessel.mean() > 0.05:
                assert vessel[r : r + 64, c : c + 64].mean() >= writer_mod.CROP_MIN_VESSEL_FRACTION
    # a window as large as the image is the whole image
    same = write_synthetic_xcad(tmp_path / "same", n_train=3, n_test=2, size=128, seed=3, progress=False, train_style="tree", crop=128)
    assert _digest(same) == _digest(full)
    # a test image and its mask share the window
    img_full, img_crop = _load(full, "test/images"), _load(crop, "test/images")
    m_full, m_crop = _load(full, "test/masks"), _load(crop, "test/masks")
    for i in range(2):
        r, c = writer_mod.crop_window(128, 64, child_sequence(base, writer_mod._CROP, 3, i), m_full[i] > 127)
        assert np.array_equal(img_crop[i], img_full[i][r : r + 64, c : c + 64])
        assert np.array_equal(m_crop[i], m_full[i][r : r + 64, c : c + 64])


def test_crop_window_rules():
    seed = as_seed_sequence(0)
    vessel = np.zeros((100, 100), bool)
    vessel[70:, 70:] = True  # only the bottom-right corner has vessels
    r, c = writer_mod.crop_window(100, 40, seed, vessel)
    assert vessel[r : r + 40, c : c + 40].mean() >= writer_mod.CROP_MIN_VESSEL_FRACTION
    # impossible fraction: the window with the most vessel pixels among the tries
    r2, c2 = writer_mod.crop_window(100, 40, seed, vessel, min_fraction=1.0)
    assert vessel[r2 : r2 + 40, c2 : c2 + 40].any()
    assert writer_mod.crop_window(100, 100, seed) == (0, 0)
    assert writer_mod.crop_window(100, 40, seed) == writer_mod.crop_window(100, 40, seed)


@pytest.mark.slow
def test_workers_give_identical_bytes(tmp_path):
    a = write_synthetic_xcad(tmp_path / "a", n_train=10, n_test=9, size=32, seed=2, progress=False)
    b = write_synthetic_xcad(tmp_path / "b", n_train=10, n_test=9, size=32, seed=2, progress=False, workers=2)
    assert _digest(a) == _digest(b)


def test_synth_masks_example_smoke(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "synth_masks.py"
    spec = importlib.util.spec_from_file_location("synth_masks_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "train item: {'angiogram': (1, 32, 32)" in out and out.rstrip().endswith("OK")
