"""``darlkit segment``: masks equal the model's one-step (polyphase) segmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from darlkit.cli import main
from darlkit.polyphase import polyphase_merge, polyphase_split
from darlkit.training import load_trained_model, read_png
from test_training_support import make_checkpoint, make_xcad


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    data = make_xcad(root / "data")
    return data, make_checkpoint(root / "run", data, steps=1)


def test_segment_writes_binary_masks_matching_the_model(run, tmp_path, capsys):
    data, ckpt = run
    images = sorted((data / "test" / "images").glob("*.png"))
    assert main(["segment", *map(str, images), "--checkpoint", str(ckpt), "--out", str(tmp_path / "m")]) == 0
    assert "wrote 2 mask(s)" in capsys.readouterr().out
    model, cfg = load_trained_model(ckpt)
    for path in images:
        got = np.asarray(Image.open(tmp_path / "m" / path.name))
        assert got.shape == (64, 64) and set(np.unique(got)) <= {0, 255}
        x = read_png(path)
        with torch.no_grad():  # 64 = 2 x the 32-px training crops: the four polyphase sub-images
            want = polyphase_merge(model.segment(polyphase_split(x)))[0, 0] > 0
        np.testing.assert_array_equal(got == 255, want.numpy())


def test_segment_folder_soft_and_no_polyphase(run, tmp_path):
    data, ckpt = run
    folder = data / "test" / "images"
    assert main(["segment", str(folder), "--checkpoint", str(ckpt), "--out", str(tmp_path / "s"), "--soft",
                 "--polyphase", "off", "--t", "3"]) == 0
    model, _ = load_trained_model(ckpt)
    path = sorted(folder.glob("*.png"))[0]
    got = np.asarray(Image.open(tmp_path / "s" / path.name)).astype(np.float64)
    torch.manual_seed(0)
    with torch.no_grad():
        pred = model.segment(read_png(path), t=0)[0, 0].numpy()
    assert got.shape == (64, 64)
    # --t 3 noises the image slightly: the soft map is close to, not equal to, the clean one
    assert np.abs(got / 127.5 - 1 - pred).mean() < 0.5
