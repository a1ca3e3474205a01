"""``darlkit evaluate``: Table 1/2 numbers equal SegmentationMetrics on the model's outputs."""

from __future__ import annotations

import json

import pytest
import torch

from darlkit.cli import main
from darlkit.data import XCADDataset
from darlkit.metrics import SegmentationMetrics
from darlkit.training import add_gaussian_noise, load_trained_model
from test_training_support import make_checkpoint, make_xcad


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = make_xcad(root / "data")
    return data, make_checkpoint(root / "run", data, steps=1)


def test_evaluate_json_matches_reference(run, capsys):
    data, ckpt = run
    assert main(["evaluate", "--data", str(data), "--checkpoint", str(ckpt), "--noise-sigma", "25", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_images"] == 2 and set(result["noise"]) == {"25"}
    model, _ = load_trained_model(ckpt)
    test = XCADDataset(data, "test")
    for sigma, key in ((0.0, None), (25.0, "25")):
        acc = SegmentationMetrics()
        for i in range(len(test)):
            x = test[i]["image"][None]
            if sigma:
                x = add_gaussian_noise(x, sigma, torch.Generator().manual_seed(i))
            with torch.no_grad():
                acc.update(model.segment(x, polyphase=True), test[i]["mask"][None])
        want = acc.aggregate()
        got = result["clean"] if key is None else result["noise"][key]
        for name in ("iou", "dice", "precision"):
            assert got[name]["mean"] == pytest.approx(want[name]["mean"], abs=1e-9)
            assert got[name]["std"] == pytest.approx(want[name]["std"], abs=1e-9)


def test_evaluate_table_text(run, capsys):
    data, ckpt = run
    assert main(["evaluate", "--data", str(data), "--checkpoint", str(ckpt), "--noise-sigma", "10", "50"]) == 0
    out = capsys.readouterr().out
    assert "Table 1 (n = 2 test images" in out and "| IoU | Dice | Precision |" in out
    assert "Table 2" in out and "| 10 |" in out and "| 50 |" in out
    rows = [line for line in out.splitlines() if line.startswith("|") and "±" in line]
    assert len(rows) == 4 and all(r.count("±") == 3 for r in rows)  # Table 1 + sigma 0, 10, 50


def test_gaussian_noise_scale_and_seed():
    x = torch.zeros(1, 1, 256, 256)
    a = add_gaussian_noise(x, 25.0, torch.Generator().manual_seed(0))
    b = add_gaussian_noise(x, 25.0, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    # sigma 25 on the 0-255 scale is 25 / 127.5 on the [-1, 1] scale
    assert float(a.std()) == pytest.approx(25 / 127.5, rel=0.02)
    assert float(add_gaussian_noise(torch.ones(1, 1, 8, 8), 50.0, torch.Generator().manual_seed(1)).max()) <= 1.0
    with pytest.raises(ValueError, match="sigma"):
        add_gaussian_noise(x, -1.0, torch.Generator())


def _with_roi_and_val(data, tmp_path):
    """A copy of ``data`` whose test split has roi/ masks (left half of each image) and a val/ split."""
    import shutil

    import numpy as np
    from PIL import Image

    root = tmp_path / "roi-data"
    shutil.copytree(data, root)
    (root / "test" / "roi").mkdir()
    for img in sorted((root / "test" / "images").iterdir()):
        w, h = Image.open(img).size
        fov = np.zeros((h, w), np.uint8)
        fov[:, : w // 2] = 255
        Image.fromarray(fov).save(root / "test" / "roi" / img.name)
    shutil.copytree(root / "test", root / "val")
    shutil.rmtree(root / "val" / "roi")
    return root


def test_evaluate_inside_roi_new_metrics_best_threshold_and_val(run, tmp_path, capsys):
    data, ckpt = run
    root = _with_roi_and_val(data, tmp_path)
    assert main(["evaluate", "--data", str(root), "--checkpoint", str(ckpt), "--json", "--best-threshold"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["roi"] is True and result["split"] == "test"
    model, _ = load_trained_model(ckpt)
    test = XCADDataset(root, "test")
    from darlkit.metrics import ALL_METRICS, DiceThresholdSweep

    inside, whole, sweep = SegmentationMetrics(metrics=ALL_METRICS), SegmentationMetrics(), DiceThresholdSweep()
    for i in range(len(test)):
        with torch.no_grad():
            pred = model.segment(test[i]["image"][None], polyphase=True)
        inside.update(pred, test[i]["mask"][None], test[i]["roi"][None])
        whole.update(pred, test[i]["mask"][None])
        sweep.update(pred, test[i]["mask"][None], test[i]["roi"][None])
    want = inside.aggregate()
    for name in ALL_METRICS:  # today's keys (mean/std/n) for every metric, the ROI applied
        for stat in ("mean", "std", "n"):
            assert result["clean"][name][stat] == pytest.approx(want[name][stat], abs=1e-9, nan_ok=True)
    assert result["clean"]["dice"]["mean"] != pytest.approx(whole.aggregate()["dice"]["mean"], abs=1e-6)
    best = result["clean"]["dice_at_best_threshold"]
    assert best == pytest.approx(sweep.best()) and best["mean"] >= result["clean"]["dice"]["mean"] - 1e-12
    # --no-roi: the whole image; --split val: the val split (no roi/ there)
    assert main(["evaluate", "--data", str(root), "--checkpoint", str(ckpt), "--json", "--no-roi"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["roi"] is False and "dice_at_best_threshold" not in plain["clean"]
    assert plain["clean"]["dice"]["mean"] == pytest.approx(whole.aggregate()["dice"]["mean"], abs=1e-9)
    assert main(["evaluate", "--data", str(root), "--checkpoint", str(ckpt), "--json", "--split", "val"]) == 0
    val = json.loads(capsys.readouterr().out)
    assert val["split"] == "val" and val["roi"] is False and val["clean"]["dice"] == plain["clean"]["dice"]
    assert main(["evaluate", "--data", str(root), "--checkpoint", str(ckpt), "--best-threshold"]) == 0
    out = capsys.readouterr().out
    assert "inside the field of view (roi/)" in out and "Also: Recall" in out and "AUC-ROC" in out
    assert "Dice at the best mean-Dice threshold (chosen on these labels; not the paper's rule)" in out


def test_evaluate_tta_flip_scores_the_flip_averaged_segmentation(run, capsys):
    from darlkit.model import segment_image

    data, ckpt = run
    assert main(["evaluate", "--data", str(data), "--checkpoint", str(ckpt), "--tta", "flip", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tta"] == "flip"
    model, config = load_trained_model(ckpt)
    test = XCADDataset(data, "test")
    acc = SegmentationMetrics()
    for i in range(len(test)):
        pred = segment_image(model, test[i]["image"][None], image_size=config.image_size, tta="flip")
        acc.update(pred, test[i]["mask"][None])
    assert result["clean"]["dice"]["mean"] == pytest.approx(acc.aggregate()["dice"]["mean"], abs=1e-9)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--data", str(data), "--checkpoint", str(ckpt), "--tta", "rot"])
    assert exit_info.value.code == 2 and "invalid choice: 'rot'" in capsys.readouterr().err
