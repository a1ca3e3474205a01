"""Honest model selection: the validation split, best.pt chosen on it, the test split evaluated once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from darlkit.cli import main
from darlkit.training import (
    DARLTrainer,
    evaluate_on_split,
    train_on_folder,
    validation_seed,
    validation_split,
    write_validation_split,
)
from darlkit.training import recipes
from test_training_support import micro_config

N_TRAIN, N_TEST, N_VAL, SIZE = 4, 2, 3, 64


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from darlkit.synthesis import write_synthetic_xcad

    root = tmp_path_factory.mktemp("sel") / "data"
    write_synthetic_xcad(root, n_train=N_TRAIN, n_test=N_TEST, size=SIZE, seed=0, progress=False)
    write_validation_split(root, N_VAL, size=SIZE, data_seed=0)
    return root


def _pngs(folder):
    return sorted(folder.glob("*.png"))


def test_validation_seed_is_its_own_stream():
    seeds = [validation_seed(s) for s in range(50)]
    assert len(set(seeds)) == 50 and all(s >= 50 for s in seeds)  # never a small data seed
    assert validation_seed(3) == validation_seed(3)
    assert all(0 <= s < 2**63 for s in seeds)
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(ValueError, match="data_seed"):
            validation_seed(bad)


def test_validation_split_is_disjoint_from_test_and_reproducible(data, tmp_path):
    from darlkit.synthesis import write_synthetic_xcad

    val_images, test_images = _pngs(data / "val" / "images"), _pngs(data / "test" / "images")
    assert len(val_images) == N_VAL and [p.name for p in _pngs(data / "val" / "masks")] == [p.name for p in val_images]
    test_bytes = {p.read_bytes() for p in test_images} | {p.read_bytes() for p in _pngs(data / "test" / "masks")}
    for p in val_images + _pngs(data / "val" / "masks"):
        assert p.read_bytes() not in test_bytes, p
    # pixel-level: no validation image is (close to) a test image
    for v in val_images:
        a = np.asarray(Image.open(v), dtype=np.float64)
        for t in test_images:
            b = np.asarray(Image.open(t), dtype=np.float64)
            assert np.abs(a - b).mean() > 5.0
    # the split is the test split of the dataset seeded with validation_seed(0), nothing else
    ref = write_synthetic_xcad(tmp_path / "ref", n_train=0, n_test=N_VAL, size=SIZE, seed=validation_seed(0), progress=False)
    for folder in ("images", "masks"):
        for p in _pngs(ref / "test" / folder):
            assert p.read_bytes() == (data / "val" / folder / p.name).read_bytes()
    # and no temporary folder is left behind
    assert not (data / ".val-writing").exists()


def test_write_validation_split_refuses_to_overwrite(data, tmp_path):
    with pytest.raises(FileExistsError, match="overwrite"):
        write_validation_split(data, 1, size=SIZE)
    with pytest.raises(ValueError, match="n must be a positive int"):
        write_validation_split(tmp_path, 0, size=SIZE)
    out = write_validation_split(tmp_path / "d", 1, size=SIZE, data_seed=1)
    first = _pngs(out / "images")[0].read_bytes()
    write_validation_split(tmp_path / "d", 2, size=SIZE, data_seed=2, overwrite=True)
    assert len(_pngs(out / "images")) == 2 and _pngs(out / "images")[0].read_bytes() != first


def test_validation_split_prefers_val_and_says_when_it_falls_back(data, tmp_path):
    ds, split, message = validation_split(data)
    assert split == "val" and len(ds) == N_VAL and "validation split" in message
    item = ds[0]
    assert item["image"].shape == (1, SIZE, SIZE) and set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert -1.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0

    import shutil

    no_val = tmp_path / "no_val"
    shutil.copytree(data / "test", no_val / "test")
    ds, split, message = validation_split(no_val)
    assert split == "test" and len(ds) == N_TEST and "TEST split" in message and "optimistic" in message
    ds, split, message = validation_split(tmp_path / "empty")
    assert ds is None and split == "none"


def test_val_masks_must_match_images(data, tmp_path):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(data / "val", root / "val")
    _pngs(root / "val" / "masks")[0].unlink()
    with pytest.raises(FileNotFoundError, match="has no mask"):
        validation_split(root)


@pytest.mark.filterwarnings("ignore:step .* the segmentation looks collapsed:RuntimeWarning")
def test_best_checkpoint_is_chosen_on_val_and_test_is_evaluated_once(data, tmp_path, monkeypatch):
    seen_sizes: list[int] = []
    real_validate = DARLTrainer.validate

    def spy_validate(self, val_data, **kw):
        seen_sizes.append(len(val_data))
        return real_validate(self, val_data, **kw)

    evaluated: list[tuple[str, str]] = []
    real_eval = recipes.evaluate_on_split

    def spy_eval(checkpoint, root, split="test", **kw):
        evaluated.append((str(checkpoint), split))
        return real_eval(checkpoint, root, split, **kw)

    monkeypatch.setattr(DARLTrainer, "validate", spy_validate)
    monkeypatch.setattr(recipes, "evaluate_on_split", spy_eval)
    lines: list[str] = []
    cfg = micro_config(val_every=1, lr=2e-3, lr_d=2e-3)
    result = train_on_folder(cfg, data, tmp_path / "run", steps=4, progress=False, log=lines.append)

    # every validation ran on the validation split, never on the test images
    assert seen_sizes == [N_VAL] * 4 and all(r["n"] == N_VAL for r in result["history"])
    assert result["selection_split"] == "val" and any("validation split" in line for line in lines)
    # best.pt is the step of the highest validation Dice (first one on ties)
    dice = [r["dice_mean"] for r in result["history"]]
    assert result["best_step"] == result["history"][int(np.argmax(dice))]["step"]
    assert result["best_dice"] == pytest.approx(max(dice))
    # ... and its validation score is reproduced by the saved checkpoint
    best = tmp_path / "run" / "best.pt"
    assert result["best_checkpoint"] == str(best)
    assert real_eval(best, data, "val")["clean"]["dice"]["mean"] == pytest.approx(result["best_dice"], abs=1e-6)
    # the test split is evaluated exactly once, with best.pt
    assert evaluated == [(str(best), "test")]
    assert result["test"]["split"] == "test" and result["test"]["n_images"] == N_TEST
    # the metrics file records the predicted vessel fraction and the collapse column
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "vessel_fraction_mean" in header and "collapse_warning" in header


def test_collapse_warning_is_raised_and_recorded(data, tmp_path):
    # an impossible band: every validation is "collapsed", so the third one warns
    cfg = micro_config(val_every=1, collapse_patience=3, collapse_min_dice=1.0)
    with pytest.warns(RuntimeWarning, match="collapsed for 3 validations"):
        result = train_on_folder(cfg, data, tmp_path / "run", steps=3, progress=False, log=lambda _: None,
                                 evaluate_test=False)
    assert result["test"] is None
    flags = [r["collapse_warning"] for r in result["history"]]
    assert flags[:2] == ["", ""] and flags[2].startswith("dice ")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["collapse_warning"] != "" for r in rows] == [False, False, True]


def test_evaluate_on_split_checks_its_arguments(data, tmp_path):
    with pytest.raises(ValueError, match="split must be"):
        evaluate_on_split(tmp_path / "x.pt", data, "train")
    with pytest.raises(ValueError, match="holds no images"):
        evaluate_on_split(tmp_path / "x.pt", tmp_path, "val")


def test_cli_train_selects_on_val_or_says_it_falls_back(data, tmp_path, capsys):
    import shutil

    tiny = ["--preset", "tiny", "--image-size", "32", "--batch-size", "1", "--no-progress", "--threads", "1",
            "--steps", "1", "--val-every", "1"]
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "a"), *tiny]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["selection_split"] == "val" and 0.0 <= summary["test_dice"] <= 1.0
    assert "selecting best.pt on the validation split" in out

    no_val = tmp_path / "no_val"
    shutil.copytree(data / "train", no_val / "train")
    shutil.copytree(data / "test", no_val / "test")
    assert main(["train", "--data", str(no_val), "--out", str(tmp_path / "b"), *tiny]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["selection_split"] == "test" and "test_dice" not in summary
    assert sum("TEST split" in line for line in out.splitlines()) == 1


def test_paper_preset_keeps_the_paper_objective():
    from darlkit.training import TrainConfig

    paper, tiny = TrainConfig.preset("paper"), TrainConfig.preset("tiny")
    assert paper.polarity_weight == 0.0 and tiny.polarity_weight == 1.0
    assert torch.isfinite(torch.tensor(tiny.polarity_margin))


def test_cli_train_synthetic_writes_a_validation_split(tmp_path, capsys):
    out = tmp_path / "syn"
    argv = ["train", "--synthetic", "--synthetic-train", "2", "--synthetic-test", "1", "--steps", "1", "--out", str(out),
            "--preset", "tiny", "--image-size", "32", "--batch-size", "1", "--no-progress", "--threads", "1"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["selection_split"] == "val" and "test_dice" in summary
    val = _pngs(out / "data" / "val" / "images")
    assert len(val) == 1 and val[0].read_bytes() != _pngs(out / "data" / "test" / "images")[0].read_bytes()
