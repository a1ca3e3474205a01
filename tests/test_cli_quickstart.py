"""``darlkit quickstart --smoke``: the whole main job at toy sizes."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from darlkit.cli import main
from darlkit.training import load_checkpoint


def test_quickstart_smoke_runs_every_stage(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--smoke", "--out", str(out), "--no-progress", "--batch-size", "1", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    for stage in ("[1/4]", "[2/4]", "[3/4]", "[4/4]", "checkpoint :", "figure     :", "masks      :"):
        assert stage in text
    ckpt = load_checkpoint(out / "run" / "last.pt")
    assert ckpt["step"] == 2 and ckpt["config"]["preset_name"] == "tiny" and ckpt["config"]["image_size"] == 32
    evaluation = json.loads((out / "run" / "evaluation.json").read_text())
    assert evaluation["n_images"] == 2 and 0.0 <= evaluation["clean"]["dice"]["mean"] <= 1.0
    assert f"Dice {evaluation['clean']['dice']['mean']:.3f}" in text
    masks = sorted((out / "masks").glob("*.png"))
    assert [m.name for m in masks] == sorted(p.name for p in (out / "data" / "test" / "images").glob("*.png"))
    assert np.asarray(Image.open(masks[0])).shape == (64, 64)
    assert (out / "run" / "figure.png").is_file()
    # a second run into the same folder needs --overwrite
    assert main(["quickstart", "--smoke", "--out", str(out), "--no-progress", "--batch-size", "1",
                 "--threads", "1", "--overwrite", "--steps", "1"]) == 0
    assert load_checkpoint(out / "run" / "last.pt")["step"] == 1
