"""``darlkit synth`` round trip: CLI -> XCAD-layout PNGs -> XCADDataset."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from darlkit.cli import main
from darlkit.data import XCADDataset, read_grayscale_png


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))}


def test_synth_cli_round_trip(tmp_path, capsys):
    out = tmp_path / "synth"
    args = ["synth", str(out), "--n-train", "4", "--n-test", "2", "--size", "64", "--seed", "3", "--no-progress"]
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    files = _digest(out)
    assert len(files) == 4 * 3 + 2 * 2
    for folder in ("train/trainA", "train/trainB", "train/trainC", "test/images", "test/masks"):
        names = sorted(k.split("/")[-1] for k in files if k.startswith(folder + "/"))
        assert names == (["00000.png", "00001.png", "00002.png", "00003.png"] if folder.startswith("train") else ["00000.png", "00001.png"])
    for k in files:
        arr = read_grayscale_png(out / k)
        assert arr.shape == (64, 64) and arr.dtype == np.uint8
    assert set(np.unique(read_grayscale_png(out / "test/masks/00000.png")).tolist()) == {0, 255}

    train = XCADDataset(out, "train", size=32, seed=0)
    assert len(train) == 4
    item = train[2]
    assert {k: tuple(v.shape) for k, v in item.items()} == {"angiogram": (1, 32, 32), "background": (1, 32, 32), "mask": (1, 32, 32)}
    assert set(torch.unique(item["mask"]).tolist()) <= {-1.0, 1.0}
    test = XCADDataset(out, "test")
    t = test[1]
    assert t["image"].shape == (1, 64, 64) and t["name"] == "00001.png"
    assert float(t["mask"].sum()) > 0

    # refuses to overwrite, naming the folder; exit status 2, no traceback
    assert main(args) == 2
    assert str(out) in capsys.readouterr().err
    # --overwrite with the same seed reproduces byte-identical files
    assert main(args + ["--overwrite"]) == 0
    assert _digest(out) == files


@pytest.mark.parametrize("bad", [["--size", "63"], ["--size", "16"], ["--n-train", "-1"], ["--seed", "-3"]])
def test_synth_cli_bad_arguments(tmp_path, capsys, bad):
    assert main(["synth", str(tmp_path / "x"), "--n-train", "1", "--n-test", "1", "--no-progress", *bad]) == 2
    err = capsys.readouterr().err
    assert "darlkit synth: error:" in err
    assert not (tmp_path / "x").exists()
