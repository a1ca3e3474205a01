"""benchmarks/real_data.py end to end on a tiny CHASE_DB1-like folder, and ``darlkit train --budget-min``."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("real_data_bench", REPO / "benchmarks" / "real_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _load_benchmark()


def _fake_fundus(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc on a dark surround with two dark vertical vessels; RGB uint8 and a 0/255 label."""
    yy, xx = np.mgrid[:size, :size]
    eye = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.45 * size) ** 2
    label = np.zeros((size, size), bool)
    for c, w in ((int(rng.integers(14, 22)), 3), (int(rng.integers(38, 46)), 2)):
        label[8:-8, c : c + w] = True
    label &= eye
    green = np.where(eye, 170.0, 3.0) - 70.0 * label + rng.normal(0, 3, (size, size))
    rgb = np.stack([green * 1.2, green, green * 0.4], -1).clip(0, 255).astype(np.uint8)
    return rgb, (label * 255).astype(np.uint8)


@pytest.fixture
def fake_chase(tmp_path) -> Path:
    root = tmp_path / "chase"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in bench.TRAIN + bench.VAL + bench.TEST:
        rgb, label = _fake_fundus(rng)
        Image.fromarray(rgb).save(root / f"{name}.jpg", quality=95)
        Image.fromarray(label).save(root / f"{name}_1stHO.png")
    return root


def test_split_is_the_issue_protocol():
    assert len(bench.TRAIN) == 18 and len(bench.TEST) == 8
    assert set(bench.VAL) == {"Image_01L", "Image_01R"}
    assert bench.TEST[0] == "Image_11L" and bench.TEST[-1] == "Image_14R"
    assert not set(bench.TRAIN) & (set(bench.VAL) | set(bench.TEST))


def test_val_stats_and_score_maps_hand_case(fake_chase):
    stats = bench.val_vessel_stats([fake_chase / "Image_01L.jpg"], [fake_chase / "Image_01L_1stHO.png"])
    assert 2.0 <= stats["width"] <= 4.0  # widest drawn vessel: 3 px
    assert 0.02 < stats["fraction"] < 0.2
    import torch

    # a perfect map thresholded at the exact fraction gives Dice 1 and AUC 1
    mask = torch.zeros(10, 10)
    mask[:, 3] = 1
    roi = torch.ones(10, 10, dtype=torch.bool)
    res = bench.score_maps([(mask.double() * 0.9 + 0.05, mask, roi)], "fraction", 0.1)
    assert res["dice"]["mean"] == pytest.approx(1.0) and res["auc_roc"]["mean"] == pytest.approx(1.0)
    res = bench.score_maps([(mask.double() * 0.9 + 0.05, mask, roi)], "otsu", 0.1)
    assert res["dice"]["mean"] == pytest.approx(1.0)


def test_missing_file_is_one_clear_error(tmp_path):
    (tmp_path / "Image_01L.jpg").write_bytes(b"")
    with pytest.raises(SystemExit, match="missing .* file"):
        bench.main(["--data", str(tmp_path), "--skip-train", "--work", str(tmp_path / "w"), "--json", str(tmp_path / "r.json")])


@pytest.mark.slow
def test_pipeline_with_two_training_steps(fake_chase, tmp_path):
    out = tmp_path / "res.json"
    assert bench.main(["--data", str(fake_chase), "--budget-min", "5", "--steps", "2", "--seed", "1",
                       "--work", str(tmp_path / "w"), "--json", str(out), "--note", "test"]) == 0
    r = json.loads(out.read_text())
    assert r["seed"] == 1 and r["note"] == "test" and r["darl"]["roi"] is True
    assert r["darl"]["train"]["step"] == 2 and (tmp_path / "w" / "run" / "best.pt").is_file()
    for rule in ("otsu", "fraction"):
        test = r["frangi"][rule]["test"]
        assert test["dice"]["n"] == 8 and 0.0 <= test["dice"]["mean"] <= 1.0
        assert len(r["frangi"][rule]["tried"]) == len(bench.VARIANTS)
    # the dark vessels of the fake images are easy for the filter
    assert r["frangi"]["fraction"]["test"]["auc_roc"]["mean"] > 0.9
    md = out.with_suffix(".md").read_text()
    assert "DARL (small, 5 min, step 2; `darlkit evaluate` defaults" in md and "Frangi + Otsu" in md and "--channel green" in md
    # the small preset's defaults: best.pt calibrated on the two validation images, flip TTA
    d, cal = r["darl"], r["darl"]["train"]["calibration"]
    assert d["tta"] == "flip" and d["defaults"] == "calibrated on val" and d["threshold"] == cal["threshold"]
    assert cal["n_images"] == 2 and -1.0 <= cal["threshold"] <= 1.0 and cal["dice"] >= cal["default_dice"]
    assert d["test"]["dice"]["n"] == 8 and d["paper_rule"]["test"]["dice"]["n"] == 8
    assert "paper rule (threshold 0, no TTA)" in md
    assert any(c.endswith("--threshold 0 --tta none --json") for c in r["commands"])
    assert {t["input"] for t in r["frangi"]["fraction"]["tried"]} == {"green", "prepared"}
    prep = json.loads((tmp_path / "w" / "prepared" / "prepare.json").read_text())
    assert prep["vessels"]["fraction_from"] == "option"  # statistics from the val labels, not test


@pytest.mark.slow
def test_train_budget_min_stops_early(fake_chase, tmp_path):
    work = tmp_path / "w"
    assert bench.main(["--data", str(fake_chase), "--skip-train", "--work", str(work), "--json", str(tmp_path / "r.json")]) == 0
    done = subprocess.run(
        [sys.executable, "-m", "darlkit", "train", "--data", str(work / "prepared"), "--preset", "tiny", "--steps", "100000",
         "--budget-min", "0.01", "--out", str(tmp_path / "run"), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert 1 <= summary["step"] < 100 and summary["seconds"] < 30
    assert "2 validation images for selection" in done.stdout  # validated on val/, not test/
    assert Path(summary["best_checkpoint"]).is_file()


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_budget_min_must_be_positive(value, capsys):
    from darlkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", ".", "--budget-min", value])
    assert exc.value.code == 2
    assert "--budget-min" in capsys.readouterr().err


def test_combine_reports_seed_spread(tmp_path):
    def metrics(d):
        return {m: {"mean": d, "std": 0.01, "n": 8} for m in bench.SHOWN}

    files = []
    for seed, d in ((0, 0.60), (1, 0.66), (2, 0.63)):
        r = {"seed": seed, "date": "2026-12-01T22:00:00+00:00", "budget_min": 30.0, "darl": {"test": metrics(d)},
             "frangi": {"otsu": {"test": metrics(0.3)}, "fraction": {"test": metrics(0.55)}}}
        files.append(tmp_path / f"r{seed}.json")
        files[-1].write_text(json.dumps(r))
    text = bench.combine(files)
    assert "mean test Dice 0.630, spread (max - min) 0.060" in text
    assert text.count("best Frangi (fraction)") == 3 and "0.550 ± 0.010" in text


def test_small_preset_is_tiny_sized_with_real_image_schedule():
    from darlkit.training import PRESETS, ModelConfig, TrainConfig, build_networks

    assert "small" in PRESETS
    sizes = {}
    for name in ("tiny", "small", "paper"):
        cfg = TrainConfig.preset(name)
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg
        sizes[name] = (cfg.image_size, sum(p.numel() for p in build_networks(cfg)[0].parameters()))
    # measured on CHASE_DB1 (issue 12): tiny-sized networks and 64 px crops, for step speed
    assert sizes["small"] == sizes["tiny"] and sizes["small"][1] < sizes["paper"][1] / 10
    small, tiny = TrainConfig.preset("small"), TrainConfig.preset("tiny")
    small_net = ModelConfig.preset("small")
    assert (small.alpha, small.beta, small_net.t_a_max, small_net.diffusion["timesteps"]) == (1.0, 5.0, 200, 2000)
    assert small_net == ModelConfig.preset("tiny")
    assert (small.polarity_weight, small.t_b_max, small.batch_size) == (tiny.polarity_weight, tiny.t_b_max, tiny.batch_size)
    assert (small.val_every, small.epochs) == (150, 1000)
    assert TrainConfig.preset("small", image_size=256).image_size == 256


def test_combine_groups_calibrated_runs_by_options_or_recipe(tmp_path):
    def metrics(d):
        return {m: {"mean": d, "std": 0.01, "n": 8} for m in bench.SHOWN}

    files = []
    for seed, d, opts in ((0, 0.64, "--lr-d 5e-5"), (1, 0.67, ""), (2, 0.63, "")):
        r = {"seed": seed, "date": "2026-12-02T14:00:00+00:00", "budget_min": 30.0, "train_options": opts,
             "darl": {"test": metrics(d), "tta": "flip", "paper_rule": {"test": metrics(d - 0.02)}},
             "frangi": {"otsu": {"test": metrics(0.3)}, "fraction": {"test": metrics(0.55)}}}
        files.append(tmp_path / f"r{seed}.json")
        files[-1].write_text(json.dumps(r))
    by_options = bench.combine(files)
    assert "over 2 seed(s): mean test Dice 0.650, spread (max - min) 0.040" in by_options  # the two without options
    one = bench.combine(files, recipe="small")
    assert "(small), evaluate defaults (val-chosen threshold, tta flip) over 3 seed(s): mean test Dice 0.647" in one
    assert "(small), paper rule (threshold 0, no TTA) over 3 seed(s): mean test Dice 0.627" in one
    assert "`--lr-d 5e-5`, evaluate defaults" in one  # the row still says how the run was made
