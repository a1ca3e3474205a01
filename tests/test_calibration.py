"""Checkpoint calibration: the validation-chosen threshold and the run's TTA become the checkpoint's defaults."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from darlkit.cli import main
from darlkit.data import XCADDataset
from darlkit.metrics import DiceThresholdSweep
from darlkit.model import segment_image
from darlkit.training import (
    INFERENCE_KEY,
    TrainConfig,
    calibrate_checkpoint,
    evaluate_on_split,
    inference_defaults,
    load_checkpoint,
    load_trained_model,
)
from test_training_support import make_checkpoint, make_xcad


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    data = make_xcad(root / "data")
    shutil.copytree(data / "test", data / "val")  # a labelled validation split of two images
    return data, make_checkpoint(root / "run", data, steps=1, eval_tta="flip")


def _val_dice_by_hand(ckpt, data, tta: str) -> tuple[float, float]:
    """(best threshold, its mean Dice) over the val images, from the model's own outputs."""
    model, config = load_trained_model(ckpt)
    val = XCADDataset(data, "val")
    sweep = DiceThresholdSweep()
    for i in range(len(val)):
        with torch.no_grad():
            pred = segment_image(model, val[i]["image"][None], image_size=config.image_size, tta=tta)
        sweep.update(pred, val[i]["mask"][None])
    best = sweep.best()
    return float(best["threshold"]), float(best["mean"])


def test_uncalibrated_defaults_come_from_the_run_config(run, tmp_path):
    data, ckpt = run
    assert inference_defaults(ckpt) == {"threshold": 0.0, "tta": "flip", "source": "run config"}
    assert inference_defaults(tmp_path / "a_model_folder") == {"threshold": 0.0, "tta": "none", "source": "paper rule"}
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        inference_defaults(bad)


def test_calibration_stores_the_val_best_threshold_and_evaluate_uses_it(run, tmp_path, capsys):
    data, src = run
    ckpt = tmp_path / "best.pt"
    shutil.copy(src, ckpt)
    before = load_checkpoint(ckpt)
    record = calibrate_checkpoint(ckpt, data, "val")
    want_thr, want_dice = _val_dice_by_hand(ckpt, data, "flip")
    assert record["threshold"] == pytest.approx(want_thr) and record["dice"] == pytest.approx(want_dice, abs=1e-9)
    assert record["tta"] == "flip" and record["split"] == "val" and record["n_images"] == 2
    assert record["dice"] >= record["default_dice"]
    after = load_checkpoint(ckpt)  # the weights are unchanged; only the record was added
    assert after[INFERENCE_KEY] == record
    for key, value in before["model"].items():
        assert torch.equal(after["model"][key], value)
    assert inference_defaults(ckpt) == {"threshold": record["threshold"], "tta": "flip", "source": "calibrated on val"}
    # darlkit evaluate's defaults are the calibrated ones; explicit options still win
    assert main(["evaluate", "--data", str(data), "--checkpoint", str(ckpt), "--json"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["threshold"] == record["threshold"] and default["tta"] == "flip"
    assert default["defaults"] == "calibrated on val"
    explicit = evaluate_on_split(ckpt, data, "test", threshold=record["threshold"], tta="flip")
    assert default["clean"]["dice"] == explicit["clean"]["dice"]
    assert main(["evaluate", "--data", str(data), "--checkpoint", str(ckpt), "--threshold", "0", "--tta", "none", "--json"]) == 0
    paper = json.loads(capsys.readouterr().out)
    assert paper["threshold"] == 0.0 and paper["tta"] == "none"
    assert paper["clean"]["dice"] == evaluate_on_split(src, data, "test", threshold=0.0, tta="none")["clean"]["dice"]
    assert main(["evaluate", "--data", str(data), "--checkpoint", str(ckpt)]) == 0
    assert f"threshold {record['threshold']:g}, tta flip" in capsys.readouterr().out


def test_segment_uses_the_calibrated_defaults(run, tmp_path):
    data, src = run
    ckpt = tmp_path / "best.pt"
    shutil.copy(src, ckpt)
    record = calibrate_checkpoint(ckpt, data, "val", tta="none")  # tta given: overrides the run's flip
    assert record["tta"] == "none"
    image = sorted((data / "test" / "images").glob("*.png"))[0]
    assert main(["segment", str(image), "--checkpoint", str(ckpt), "--out", str(tmp_path / "m")]) == 0
    model, config = load_trained_model(ckpt)
    x = torch.from_numpy(np.asarray(Image.open(image), dtype=np.float32) / 255.0)[None, None] * 2 - 1
    with torch.no_grad():
        pred = segment_image(model, x, image_size=config.image_size)
    got = np.asarray(Image.open(tmp_path / "m" / image.name)) > 0
    np.testing.assert_array_equal(got, (pred[0, 0] > record["threshold"]).numpy())


def test_calibration_needs_a_training_checkpoint_with_val_images(run, tmp_path):
    data, src = run
    with pytest.raises(ValueError, match="training checkpoint file"):
        calibrate_checkpoint(tmp_path / "missing.pt", data)
    ckpt = tmp_path / "best.pt"
    shutil.copy(src, ckpt)
    with pytest.raises(ValueError, match="holds no images"):
        calibrate_checkpoint(ckpt, tmp_path)
    assert INFERENCE_KEY not in load_checkpoint(ckpt)  # a failed calibration leaves the file as it was


def test_small_preset_calibrates_with_flip_tta_and_others_keep_the_paper_rule():
    small = TrainConfig.preset("small")
    assert (small.eval_tta, small.calibrate_threshold) == ("flip", True)
    assert (small.lr, small.lr_d) == (2e-4, 5e-5)  # measured on CHASE_DB1: a slower discriminator
    for name in ("paper", "tiny"):
        cfg = TrainConfig.preset(name)
        assert (cfg.eval_tta, cfg.calibrate_threshold, cfg.val_threshold) == ("none", False, 0.0)
    with pytest.raises(ValueError, match="eval_tta"):
        TrainConfig(eval_tta="rot")
