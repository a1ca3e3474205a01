"""Run folders and resume: refusal, --overwrite, options on resume, log cut-back, pre-flight (issue 17)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from darlkit.cli import main
from darlkit.training import TrainConfig, check_resume_changes, load_checkpoint, resume_config
from darlkit.training.run_folder import RUN_FILES, clear_run_files, truncate_logs
from test_training_support import make_xcad

TINY = ["--preset", "tiny", "--image-size", "32", "--batch-size", "1", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_xcad(tmp_path_factory.mktemp("xcad") / "data", n_train=2, n_test=1)


@pytest.fixture(scope="module")
def base_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "run"
    argv = ["train", "--data", str(data), "--steps", "2", "--val-every", "1", "--out", str(out), *TINY]
    assert main(argv) == 0
    return out


@pytest.fixture
def run(base_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    return out


def _train(data, out, *extra, steps=3):
    return main(["train", "--data", str(data), "--steps", str(steps), "--val-every", "0", "--out", str(out), *TINY, *extra])


def _err(capsys):
    return capsys.readouterr().err.strip()


# ---------------------------------------------------------------------- run folder
def test_a_previous_run_is_refused_without_resume_or_overwrite(data, run, capsys):
    before = {name: (run / name).read_bytes() for name in RUN_FILES if (run / name).exists()}
    assert _train(data, run) == 2
    err = _err(capsys)
    assert len(err.splitlines()) == 1
    assert f"--out {run} already holds a training run (last.pt, best.pt, metrics.jsonl" in err
    assert "pass --resume to continue it or --overwrite to replace it" in err
    assert {name: (run / name).read_bytes() for name in before} == before  # nothing replaced or appended


def test_overwrite_replaces_only_the_runs_own_files(data, run):
    (run / "notes.txt").write_text("mine")
    (run / "data").mkdir()
    (run / "data" / "keep.png").write_bytes(b"x")
    (run / ".last.pt.dead.tmp").write_bytes(b"")
    assert _train(data, run, "--overwrite", steps=1) == 0
    assert (run / "notes.txt").read_text() == "mine" and (run / "data" / "keep.png").exists()
    assert not (run / ".last.pt.dead.tmp").exists()
    assert load_checkpoint(run / "last.pt")["step"] == 1
    assert load_checkpoint(run / "best.pt")["step"] == 1  # the new run's (final validation at step 1)
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1]


def test_resume_and_overwrite_exclude_each_other(data, run, capsys):
    assert _train(data, run, "--resume", "--overwrite") == 2
    assert "--resume and --overwrite exclude each other" in _err(capsys)


def test_clear_run_files_names_exactly_the_run_files(tmp_path):
    for name in (*RUN_FILES, "other.pt", "metrics.txt", ".best.pt.x.tmp", ".other.tmp"):
        (tmp_path / name).write_text("x")
    removed = sorted(p.name for p in clear_run_files(tmp_path))
    assert removed == sorted([*RUN_FILES, ".best.pt.x.tmp"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp", "metrics.txt", "other.pt"]


# ---------------------------------------------------------------------- options on resume
def test_resume_refuses_fixed_settings_with_both_values(data, run, capsys):
    assert _train(data, run, "--resume", "--seed", "5") == 2
    err = _err(capsys)
    assert "cannot resume with changed setting(s) seed (checkpoint: 0, requested: 5)" in err
    assert len(err.splitlines()) == 1
    assert main(["train", "--data", str(data), "--out", str(run), "--resume", "--steps", "3", "--preset", "paper",
                 "--no-progress"]) == 2
    err = _err(capsys)
    assert "--preset paper: the checkpoint" in err and "was trained with preset 'tiny'" in err


def test_resume_checks_the_network_settings(data, run, capsys):
    assert _train(data, run, "--resume", "--net", "unet.base_channels=8") == 2
    err = _err(capsys)
    assert "changed network setting(s) unet.base_channels (checkpoint: 16, requested: 8)" in err
    assert len(err.splitlines()) == 1
    assert _train(data, run, "--resume", "--net", "generator.backend=auto") == 0  # same function: allowed
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["step"] == 3 and ckpt["model_config"]["generator"]["backend"] == "auto"
    assert ckpt["discriminator_config"]["base_channels"] == 32  # the tiny preset's, stored beside the model's


def test_resume_uses_the_checkpoint_settings_and_applies_a_new_lr(data, run):
    # no --preset/--image-size: the checkpoint's settings are used, not the paper preset's
    argv = ["train", "--data", str(data), "--out", str(run), "--resume", "--steps", "3", "--lr", "1e-3",
            "--no-progress", "--threads", "1"]
    assert main(argv) == 0
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["step"] == 3 and ckpt["config"]["image_size"] == 32 and ckpt["config"]["lr"] == 1e-3
    assert ckpt["config"]["preset_name"] == "tiny"
    assert [g["lr"] for g in ckpt["opt_g"]["param_groups"]] == [1e-3]  # applied, not only stored
    assert [g["lr"] for g in ckpt["opt_d"]["param_groups"]] == [1e-3]
    written = json.loads((run / "config.json").read_text())
    assert written["lr"] == 1e-3 and written["model_config"]["unet"]["base_channels"] == 16  # both halves of the run


def test_resume_config_rules():
    stored = TrainConfig.preset("tiny")
    assert resume_config(stored.to_dict(), {"lr": 1e-5, "val_every": 7}).lr == 1e-5
    with pytest.raises(ValueError, match=r"batch_size \(checkpoint: 4, requested: 8\), alpha \(checkpoint: 1.0, requested: 0.2\)"):
        resume_config(stored, {"batch_size": 8, "alpha": 0.2})
    changed = check_resume_changes(stored, stored.replace(lr=1e-5, ckpt_every=5))
    assert changed == {"lr": (2e-4, 1e-5), "ckpt_every": (100, 5)}
    with pytest.raises(TypeError, match="unknown TrainConfig field"):
        resume_config(stored, {"learning_rate": 1.0})


# ---------------------------------------------------------------------- logs
def test_truncate_logs_drops_steps_after_the_checkpoint(tmp_path):
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 0.1}) + "\n" for s in range(1, 7))
                                              + '{"step": 7, "lo')  # torn last line
    with open(tmp_path / "metrics.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([["step", "dice_mean"], [2, 0.1], [4, 0.2], [6, 0.3]])
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 2}) + "\n")
    dropped = truncate_logs(tmp_path, 4)
    assert dropped == {"metrics.csv": 1, "train_log.jsonl": 3}
    assert [json.loads(x)["step"] for x in (tmp_path / "train_log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert list(csv.reader(open(tmp_path / "metrics.csv"))) == [["step", "dice_mean"], ["2", "0.1"], ["4", "0.2"]]
    assert truncate_logs(tmp_path, 4) == {}


def test_resumed_logs_do_not_repeat_steps(data, run):
    """A run killed after logging steps past its checkpoint resumes without duplicate steps."""
    log = run / "metrics.jsonl"
    log.write_text(log.read_text() + json.dumps({"step": 3, "dice_mean": 9.9}) + "\n")  # logged, never saved
    with open(run / "metrics.csv", "a", newline="") as fh:
        fh.write("3" + ",9.9" * (len(open(run / "metrics.csv").readline().split(",")) - 1) + "\r\n")
    assert _train(data, run, "--resume", "--val-every", "1", steps=4) == 0
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4] and 9.9 not in [r["dice_mean"] for r in records]
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and "9.9" not in [r["dice_mean"] for r in rows]


# ---------------------------------------------------------------------- pre-flight
def test_bad_files_stop_the_cli_before_step_one(data, tmp_path, capsys):
    bad = tmp_path / "data"
    shutil.copytree(data, bad)
    trainb = sorted((bad / "train" / "trainB").glob("*.png"))[1]
    trainb.write_bytes(trainb.read_bytes()[:100])
    mask = next((bad / "test" / "masks").glob("*.png"))
    mask.write_text("not an image")
    assert _train(bad, tmp_path / "out", steps=5) == 2
    err = _err(capsys)
    assert len(err.splitlines()) == 1 and "found 2 problem(s)" in err
    assert str(trainb) in err and str(mask) in err
    assert not (tmp_path / "out" / "last.pt").exists()
