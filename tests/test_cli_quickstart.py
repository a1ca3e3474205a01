"""``darlkit quickstart --smoke``: the whole main job at toy sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from darlkit.cli import main
from darlkit.cli.quickstart import QUICKSTART_DEFAULTS
from darlkit.training import load_checkpoint


def test_quickstart_smoke_runs_every_stage(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--smoke", "--out", str(out), "--no-progress", "--batch-size", "1", "--threads", "1",
                 "--val-images", "3", "--val-every", "1"]) == 0
    text = capsys.readouterr().out
    for stage in ("[1/4]", "[2/4]", "[3/4]", "[4/4]", "checkpoint :", "figure     :", "masks      :"):
        assert stage in text
    ckpt = load_checkpoint(out / "run" / "last.pt")
    assert ckpt["step"] == 2 and ckpt["config"]["preset_name"] == "tiny" and ckpt["config"]["image_size"] == 32
    assert ckpt["config"]["seed"] == QUICKSTART_DEFAULTS["smoke"]["seed"]
    assert ckpt["discriminator_config"]["base_channels"] == 32
    assert "64x64 windows of 128x128 renders" in text
    evaluation = json.loads((out / "run" / "evaluation.json").read_text())
    assert evaluation["n_images"] == 2 and 0.0 <= evaluation["clean"]["dice"]["mean"] <= 1.0
    assert evaluation["split"] == "test" and evaluation["checkpoint"].endswith("best.pt")
    # best.pt was chosen on the 3 validation images; the 2 test images were evaluated once, at the end
    assert len(list((out / "data" / "val" / "images").glob("*.png"))) == 3
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["n"] for r in rows] == [3, 3]
    best = load_checkpoint(out / "run" / "best.pt")
    assert best["best_dice"] == max(r["dice_mean"] for r in rows)
    assert "(chosen on 3 validation images;" in text and "once on the synthetic test set" in text
    # the threshold is chosen on the validation split, recorded, and the test evaluation uses it
    from darlkit.training import choose_threshold, evaluate_on_split

    thr = evaluation["threshold"]
    assert thr["chosen_on"] == "val"
    assert thr == {**choose_threshold(out / "run" / "best.pt", out / "data", "val"), "chosen_on": "val"}
    again = evaluate_on_split(out / "run" / "best.pt", out / "data", "test", threshold=thr["threshold"])
    assert again["clean"]["dice"]["mean"] == pytest.approx(evaluation["clean"]["dice"]["mean"], abs=1e-9)
    assert f"threshold {thr['threshold']:+.2f}" in text
    assert f"Dice {evaluation['clean']['dice']['mean']:.3f}" in text
    masks = sorted((out / "masks").glob("*.png"))
    assert [m.name for m in masks] == sorted(p.name for p in (out / "data" / "test" / "images").glob("*.png"))
    assert np.asarray(Image.open(masks[0])).shape == (64, 64)
    assert (out / "run" / "figure.png").is_file()
    # a second run into the same folder needs --overwrite
    assert main(["quickstart", "--smoke", "--out", str(out), "--no-progress", "--batch-size", "1",
                 "--threads", "1", "--overwrite", "--steps", "1"]) == 0
    assert load_checkpoint(out / "run" / "last.pt")["step"] == 1


def test_quickstart_data_are_windows_of_the_data_seed(tmp_path):
    from darlkit.synthesis import write_synthetic_xcad

    out = tmp_path / "qs"
    argv = ["quickstart", "--smoke", "--out", str(out), "--no-progress", "--batch-size", "1", "--threads", "1",
            "--steps", "1", "--val-every", "0", "--data-seed", "3", "--seed", "5"]
    assert main(argv) == 0
    ref = write_synthetic_xcad(tmp_path / "ref", n_train=8, n_test=2, size=128, crop=64, seed=3, progress=False,
                               train_style="tree")
    for folder in ("train/trainA", "train/trainB", "test/images", "test/masks"):
        for f in sorted((ref / folder).glob("*.png")):
            assert f.read_bytes() == (out / "data" / folder / f.name).read_bytes(), (folder, f.name)
    assert load_checkpoint(out / "run" / "last.pt")["config"]["seed"] == 5

