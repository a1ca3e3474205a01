"""``darlkit prepare``: the DRIVE-style command as written, options, refusals, and CHASE_DB1 -> train -> evaluate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image

from darlkit.cli import main
from darlkit.data import XCADDataset, read_image, read_mask

REPO = Path(__file__).resolve().parents[1]
CHASE = REPO.parent / "shared" / "data" / "chase_db1"


def _fundus(seed: int, shape=(584, 565)):
    """A DRIVE-sized RGB 'fundus': bright disc on black, dark green-channel vessels; its vessel and FOV masks."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    fov = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.45 * min(h, w)) ** 2
    vessel = np.zeros(shape, bool)
    for _ in range(6):
        c, width = rng.integers(40, w - 40), rng.integers(3, 9)
        vessel |= np.abs(xx - c - 0.3 * (yy - h / 2)) < width / 2
    vessel &= fov
    rgb = np.zeros((h, w, 3), np.float64)
    rgb[fov] = (200, 120, 60)
    rgb[..., 1] -= 70 * vessel
    rgb += rng.normal(0, 3, rgb.shape) * fov[..., None]
    return np.clip(rgb, 0, 255).astype(np.uint8), vessel, fov


def _drive_folders(root: Path, n_train=2, n_test=2):
    for d in "ABCD":
        (root / d).mkdir(parents=True)
    for k in range(n_train):
        Image.fromarray(_fundus(k)[0]).save(root / "A" / f"{21 + k}_training.tif")
    truth = {}
    for k in range(n_test):
        rgb, vessel, fov = _fundus(100 + k)
        Image.fromarray(rgb).save(root / "B" / f"{k + 1:02d}_test.tif")
        Image.fromarray(vessel.astype(np.uint8) * 255).save(root / "C" / f"{k + 1:02d}_manual1.gif")
        Image.fromarray(fov.astype(np.uint8) * 255).save(root / "D" / f"{k + 1:02d}_test_mask.gif")
        truth[f"{k + 1:02d}_test"] = (rgb, vessel, fov)
    return truth


def test_drive_command_exactly_as_written(tmp_path):
    truth = _drive_folders(tmp_path)
    cmd = ("darlkit prepare OUT --images A/*.tif --test-images B/*.tif --test-masks C/*.gif "
           "--roi-masks D/*.gif --channel green --backgrounds auto --masks synth")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # the shell expands the globs, as for a user; `darlkit` is `python -m darlkit`
    proc = subprocess.run(["bash", "-c", cmd.replace("darlkit", f"{sys.executable} -m darlkit", 1)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "OUT"
    record = json.loads((out / "prepare.json").read_text())
    # 584 x 565 training files are cut into 2 x 2 tiles of 512 (all at least half inside the eye)
    assert record["counts"] == {"train/trainB": 8, "train/trainC": 8, "train/trainA": 8, "test/images": 2,
                                "test/masks": 2, "test/roi": 2}
    assert record["tiles"]["side"] == 512 and record["contrast"]["mode"] == "local"
    assert record["options"]["channel"] == "green" and record["backgrounds"]["mode"] == "auto"
    # the test labels never shape training: without validation labels the widths are the defaults
    assert record["vessels"]["width_from"] == "default" and record["vessels"]["fraction_from"] == "default"
    for name, (rgb, vessel, fov) in truth.items():
        img = np.asarray(Image.open(out / "test" / "images" / f"{name}.png"))
        assert img.shape == (584, 565) and img.dtype == np.uint8
        # local contrast of the green channel at full size: the mean level inside the eye, 128 outside
        inner = fov & (np.abs(np.mgrid[:584, :565][1] - 282) < 150)
        assert np.all(img[~fov & (read_mask(out / "test" / "roi" / f"{name}.png") == 0)] == 128)
        assert abs(float(img[inner & ~vessel].mean()) - 127.5) < 20 and img[inner & vessel].mean() < img[inner & ~vessel].mean() - 40
        np.testing.assert_array_equal(read_mask(out / "test" / "masks" / f"{name}.png"), vessel)
        np.testing.assert_array_equal(read_mask(out / "test" / "roi" / f"{name}.png"), fov)
    test = XCADDataset(out, "test")
    assert set(test[0]) == {"image", "mask", "roi", "name"}
    train = XCADDataset(out, "train", size=64, seed=0)
    assert train[0]["angiogram"].shape == (1, 64, 64)
    bg = read_image(out / "train" / "trainC" / "21_training_y0000_x0000.png")
    ang = read_image(out / "train" / "trainB" / "21_training_y0000_x0000.png")
    vessel_like = (ang < 0.25) & (bg > 0.4)  # the dark vessels are filled in the background
    assert vessel_like.sum() > 1000


def test_size_channel_val_split_and_given_backgrounds_and_masks(tmp_path):
    truth = _drive_folders(tmp_path, n_train=1, n_test=2)
    out = tmp_path / "out"
    argv = ["prepare", str(out), "--images", str(tmp_path / "A"), "--backgrounds", str(tmp_path / "A" / "*.tif"),
            "--masks", str(tmp_path / "C" / "01_manual1.gif"), "--val-images", str(tmp_path / "B" / "01_test.tif"),
            "--val-masks", str(tmp_path / "C" / "01_manual1.gif"), "--roi-masks", "auto", "--size", "100", "--contrast", "none"]
    assert main(argv) == 0
    rec = json.loads((out / "prepare.json").read_text())
    assert rec["counts"]["val/images"] == 1 and rec["counts"]["val/roi"] == 1 and "test/images" not in rec["counts"]
    img = np.asarray(Image.open(out / "val" / "images" / "01_test.png"))
    assert img.shape == (103, 100)  # shorter side 565 -> 100, 584 -> round(103.4)
    luma = (0.299 * truth["01_test"][0][..., 0] + 0.587 * truth["01_test"][0][..., 1] + 0.114 * truth["01_test"][0][..., 2])
    assert abs(float(img.mean()) - float(luma.mean())) < 2.0  # luma (the default), area-averaged
    m = np.asarray(Image.open(out / "val" / "masks" / "01_test.png"))
    assert set(np.unique(m)) == {0, 255} and abs((m > 0).mean() - truth["01_test"][1].mean()) < 0.01
    roi = read_mask(out / "val" / "roi" / "01_test.png")
    # auto FOV: the bright disc (plus the rim pixels of the shrunk image that are partly inside it)
    assert 0 <= roi.mean() - truth["01_test"][2].mean() < 0.03
    assert rec["backgrounds"]["mode"] == "files" and rec["masks"]["mode"] == "files"
    assert set(np.unique(np.asarray(Image.open(out / "train" / "trainA" / "01_manual1.png")))) <= set(range(256))
    assert XCADDataset(out, "val")[0]["roi"].shape == (1, 103, 100)


def test_refusals_are_one_line_errors(tmp_path, capsys):
    _drive_folders(tmp_path)
    base = ["prepare", str(tmp_path / "OUT"), "--images", str(tmp_path / "A" / "*.tif")]
    t = ["--test-images", str(tmp_path / "B" / "*.tif"), "--test-masks", str(tmp_path / "C" / "*.gif")]

    def fails(argv, *needles):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        for needle in needles:
            assert needle in err, err

    (tmp_path / "C" / "07_manual1.gif").write_bytes((tmp_path / "C" / "01_manual1.gif").read_bytes())
    fails(base + t, "unmatched files", "--test-masks without an image", "07_manual1.gif")
    (tmp_path / "C" / "07_manual1.gif").unlink()
    fails(base + t[:2], "--test-images and --test-masks go together")
    fails(base + ["--roi-masks", "auto"], "--roi-masks needs --test-images")
    fails(base + ["--masks", "synth", str(tmp_path / "C" / "01_manual1.gif")], "'synth' must be given alone")
    fails(base + ["--images", str(tmp_path / "nothing*.tif")], "no file matches")
    assert main(base) == 0  # backgrounds auto, masks synth, no test split
    capsys.readouterr()
    fails(base, "is not empty; pass --overwrite")
    assert main(base + ["--overwrite", "--seed", "3"]) == 0
    assert json.loads((tmp_path / "OUT" / "prepare.json").read_text())["options"]["seed"] == 3
    capsys.readouterr()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("precious")
    fails(["prepare", str(tmp_path / "other"), "--images", str(tmp_path / "A"), "--overwrite"], "holds no prepare.json")
    assert (tmp_path / "other" / "keep.txt").read_text() == "precious"
    fails(["prepare", str(tmp_path), "--images", str(tmp_path / "A" / "*.tif"), "--overwrite"], "contains the input")
    fails(base[:2] + ["--images", str(tmp_path / "C")], "OUT")  # OUT still holds the earlier run: refused
    (tmp_path / "afile").write_text("x")
    fails(["prepare", str(tmp_path / "afile" / "out"), "--images", str(tmp_path / "A")], "cannot write beside it")
    # nothing half-written is left beside OUT after a failure
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


@pytest.mark.slow
@pytest.mark.parametrize("with_val", [False, True])
def test_chase_db1_prepare_train_evaluate(tmp_path, capsys, with_val):
    """CHASE_DB1 end to end: 20 unlabeled training images, 8 labeled test images (1stHO), green channel,
    pseudo-backgrounds, matched synthetic masks, auto field of view; 3 tiny training steps; evaluate."""
    shared_path(CHASE, "CHASE_DB1")  # skipped locally without it, failed with CI=true
    train = [str(CHASE / f"Image_{k:02d}{eye}.jpg") for k in range(1, 11) for eye in "LR"]
    test = [str(CHASE / f"Image_{k:02d}{eye}.jpg") for k in range(11, 15) for eye in "LR"]
    labels = [p.replace(".jpg", "_1stHO.png") for p in test]
    out, run = tmp_path / "chase", tmp_path / "run"
    argv = ["prepare", str(out), "--images", *train, "--test-images", *test, "--test-masks", *labels,
            "--channel", "green", "--backgrounds", "auto", "--masks", "synth", "--roi-masks", "auto", "--size", "192"]
    if with_val:
        argv += ["--val-images", train[0], train[1], "--val-masks", *(p.replace(".jpg", "_1stHO.png") for p in train[:2])]
    assert main(argv) == 0
    record = json.loads((out / "prepare.json").read_text())
    assert record["counts"]["train/trainB"] == 20 and record["counts"]["test/roi"] == 8
    assert record["counts"].get("val/images", 0) == (2 if with_val else 0)
    v = record["vessels"]
    if with_val:  # measured on the two validation labels only (never the test labels)
        assert v["width_from"] == v["fraction_from"] == "val masks"
        assert 2 <= v["width"] <= 8 and 0.05 <= v["fraction"] <= 0.15  # CHASE at 192 px: thin vessels, ~8 % of the FOV
    else:
        assert v["width_from"] == v["fraction_from"] == "default"
    assert np.asarray(Image.open(out / "test" / "images" / "Image_11L.png")).shape == (192, 200)
    capsys.readouterr()
    assert main(["train", "--data", str(out), "--preset", "tiny", "--steps", "3", "--batch-size", "1",
                 "--out", str(run), "--no-progress", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--data", str(out), "--checkpoint", str(run / "last.pt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["roi"] is True and result["n_images"] == 8
    for name in ("iou", "dice", "precision", "recall", "specificity", "auc_roc", "average_precision"):
        assert result["clean"][name]["n"] == 8 and 0.0 <= result["clean"][name]["mean"] <= 1.0


def test_dicom_cine_and_16bit_tiff_training_images(tmp_path):
    from test_io import _write_dicom

    cine = (np.arange(3 * 40 * 48).reshape(3, 40, 48) % 4096).astype(np.uint16)
    _write_dicom(tmp_path / "run1.dcm", cine)
    deep = (np.linspace(0, 1, 40 * 48).reshape(40, 48) * 60000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.tif")
    out = tmp_path / "out"
    assert main(["prepare", str(out), "--images", str(tmp_path / "run1.dcm"), str(tmp_path / "deep.tif"), "--contrast", "none"]) == 0
    names = sorted(p.name for p in (out / "train" / "trainB").iterdir())
    assert names == ["deep.png", "run1_f000.png", "run1_f001.png", "run1_f002.png"]
    f1 = np.asarray(Image.open(out / "train" / "trainB" / "run1_f001.png"))
    np.testing.assert_array_equal(f1, np.round(cine[1] / 4095 * 255).astype(np.uint8))  # stored range, 8 bits
    d = np.asarray(Image.open(out / "train" / "trainB" / "deep.png"))
    lo, hi = np.percentile(deep.astype(np.float64), [0.5, 99.5])
    np.testing.assert_array_equal(d, np.round(np.clip((deep - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8))
    rec = json.loads((out / "prepare.json").read_text())
    assert [e["frame"] for e in rec["files"]["train/trainB"] if "run1" in e["file"]] == [0, 1, 2]
    assert rec["counts"]["train/trainC"] == 4 and rec["counts"]["train/trainA"] == 4
    assert rec["vessels"]["width_from"] == "default"  # no labels: 22 px per 512 of the shorter side
    assert rec["vessels"]["width"] == pytest.approx(22.0 * 40 / 512)


def test_pair_regex_and_roi_for_test_and_val(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for d in ("img", "lbl", "fov"):
        (tmp_path / d).mkdir()
    for name in ("scanA", "scanB", "scanC"):
        Image.fromarray(rng.integers(0, 256, (40, 44), dtype=np.uint8)).save(tmp_path / "img" / f"{name}_img.png")
        m = np.zeros((40, 44), np.uint8)
        m[10:30, 5:9] = 1
        Image.fromarray(m).save(tmp_path / "lbl" / f"label-{name}.png")
        Image.fromarray(np.full((40, 44), 255, np.uint8)).save(tmp_path / "fov" / f"{name}.bmp")
    base = ["prepare", str(tmp_path / "out"), "--images", str(tmp_path / "img"),
            "--test-images", str(tmp_path / "img" / "scan[AB]_img.png"), "--test-masks", str(tmp_path / "lbl" / "label-scan[AB].png"),
            "--val-images", str(tmp_path / "img" / "scanC_img.png"), "--val-masks", str(tmp_path / "lbl" / "label-scanC.png"),
            "--roi-masks", str(tmp_path / "fov")]
    assert main(base) == 2  # default keys: 'scanA_img' vs 'label-scanA' do not pair
    assert "unmatched files" in capsys.readouterr().err
    assert main(base + ["--pair", r"(scan[A-Z])"]) == 0
    rec = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert rec["counts"]["test/roi"] == 2 and rec["counts"]["val/roi"] == 1 and rec["options"]["pair"] == "(scan[A-Z])"
    pairs = {e["file"]: Path(e["source"]).name for e in rec["files"]["test/masks"]}
    assert pairs == {"test/masks/scanA_img.png": "label-scanA.png", "test/masks/scanB_img.png": "label-scanB.png"}
    assert read_mask(tmp_path / "out" / "val" / "masks" / "scanC_img.png").sum() == 80  # a 0/1 label -> 0/255
