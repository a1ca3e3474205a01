"""Trainer safety: signals save last.pt, NaN losses stop or skip, the last checkpoint precedes a
failing final validation, options on resume, pre-flight, stale temp files (issue 17)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import darlkit.losses
from darlkit.data import XCADDataset
from darlkit.training import DARLTrainer, DatasetCheckError, load_checkpoint
from darlkit.training.nonfinite import NonFiniteLossError
from test_training_support import build_micro, RandomTestSet, RandomTrainSet, make_xcad, micro_config

REPO = Path(__file__).resolve().parents[1]


def _trainer(config, out=None, **kw):
    model, d_s, d_a = build_micro(config)
    return DARLTrainer(model, d_s, d_a, config, out_dir=out, progress=False, **kw)


def _nan_on_calls(monkeypatch, name, calls):
    """Make darlkit.losses.<name> return NaN on the given (1-based) calls."""
    real = getattr(darlkit.losses, name)
    count = {"n": 0}

    def patched(*args, **kwargs):
        count["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if count["n"] in calls else out

    monkeypatch.setattr(darlkit.losses, name, patched)


def _train_log(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------- non-finite losses
def test_nan_loss_stops_naming_the_step_and_keeps_a_good_checkpoint(tmp_path, monkeypatch):
    _nan_on_calls(monkeypatch, "lsgan_generator_loss", {3})
    trainer = _trainer(micro_config(ckpt_every=0), tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"loss became non-finite at step 3 \(non-finite generator loss \(loss_g=nan") as info:
        trainer.fit(RandomTrainSet(8, 32), steps=5)
    assert f"saved the state before it (step 2) to {tmp_path / 'last.pt'}" in str(info.value)
    assert "--skip-nonfinite" in str(info.value)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 2 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    for k, v in trainer.model.state_dict().items():  # the NaN step changed nothing
        assert torch.equal(ckpt["model"][k], v)


def test_nan_in_the_discriminator_phase_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    _nan_on_calls(monkeypatch, "lsgan_discriminator_loss", {7, 8})  # two calls per D step: step 4
    trainer = _trainer(micro_config(ckpt_every=2), tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"at step 4 \(non-finite discriminator loss") as info:
        trainer.fit(RandomTrainSet(8, 32), steps=6)
    assert f"kept the last good checkpoint {tmp_path / 'last.pt'}" in str(info.value)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2


def test_skip_nonfinite_skips_isolated_steps_and_stops_on_a_longer_run(tmp_path, monkeypatch):
    _nan_on_calls(monkeypatch, "lsgan_generator_loss", {2})
    trainer = _trainer(micro_config(skip_nonfinite=1), tmp_path / "a")
    result = trainer.fit(RandomTrainSet(8, 32), steps=4)
    assert result["step"] == 4 and load_checkpoint(tmp_path / "a" / "last.pt")["step"] == 4
    log = _train_log(tmp_path / "a")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert log[1]["skipped"] is True and log[1]["phase"] == "generator" and "skipped" not in log[2]

    monkeypatch.undo()
    _nan_on_calls(monkeypatch, "lsgan_generator_loss", {2, 3})
    trainer = _trainer(micro_config(skip_nonfinite=1), tmp_path / "b")
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        trainer.fit(RandomTrainSet(8, 32), steps=4)


def test_huge_learning_rate_stops_instead_of_writing_nan_weights(tmp_path):
    trainer = _trainer(micro_config(lr=1e30, lr_d=1e30, ckpt_every=1), tmp_path)
    with pytest.raises(NonFiniteLossError, match="loss became non-finite at step"):
        trainer.fit(RandomTrainSet(8, 32), steps=30)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


# ---------------------------------------------------------------------- final validation
class _FailingTestSet(RandomTestSet):
    def __getitem__(self, i):
        raise RuntimeError("test image unreadable")


def test_last_checkpoint_is_written_before_a_final_validation_that_fails(tmp_path):
    trainer = _trainer(micro_config(ckpt_every=0, val_every=0), tmp_path)
    with pytest.raises(RuntimeError, match="test image unreadable"):
        trainer.fit(RandomTrainSet(8, 32), steps=3, val_data=_FailingTestSet(1, 64))
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 3


def test_last_checkpoint_records_the_final_best(tmp_path):
    trainer = _trainer(micro_config(ckpt_every=0, val_every=0), tmp_path)
    trainer.fit(RandomTrainSet(8, 32), steps=2, val_data=RandomTestSet(1, 64))
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["best_step"] == 2 and ckpt["best_dice"] == trainer.best_dice


# ---------------------------------------------------------------------- resume
def test_resume_applies_a_changed_lr_and_refuses_fixed_settings(tmp_path):
    cfg = micro_config(ckpt_every=0)
    _trainer(cfg, tmp_path).fit(RandomTrainSet(8, 32), steps=1)
    (tmp_path / ".last.pt.k1lled.tmp").write_bytes(b"")
    (tmp_path / ".best.pt.k1lled.tmp").write_bytes(b"")
    resumed = _trainer(cfg.replace(lr=1e-2, lr_d=3e-3), tmp_path)
    resumed.fit(RandomTrainSet(8, 32), steps=2, resume=True)
    assert [g["lr"] for g in resumed.opt_g.param_groups] == [1e-2]
    assert [g["lr"] for g in resumed.opt_d.param_groups] == [3e-3]
    assert load_checkpoint(tmp_path / "last.pt")["config"]["lr"] == 1e-2
    assert not list(tmp_path.glob(".*.tmp"))  # stale temp files of killed saves removed
    with pytest.raises(ValueError, match=r"changed setting\(s\) pool_size \(checkpoint: 3, requested: 5\)"):
        _trainer(cfg.replace(pool_size=5), tmp_path).fit(RandomTrainSet(8, 32), steps=3, resume=True)


def test_resume_refuses_a_new_lr_when_a_scheduler_sets_it(tmp_path):
    sched = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # noqa: E731
    cfg = micro_config(ckpt_every=0)
    _trainer(cfg, tmp_path, scheduler_g=sched).fit(RandomTrainSet(8, 32), steps=1)
    with pytest.raises(ValueError, match=r"cannot change lr on resume \(checkpoint: 0.0002, requested: 0.01\)"):
        _trainer(cfg.replace(lr=1e-2), tmp_path, scheduler_g=sched).fit(RandomTrainSet(8, 32), steps=2, resume=True)


# ---------------------------------------------------------------------- pre-flight
def test_fit_checks_every_file_before_step_one(tmp_path):
    data = make_xcad(tmp_path / "data", n_train=3, n_test=1, size=64)
    bad = sorted((data / "train" / "trainC").glob("*.png"))[2]
    bad.write_bytes(bad.read_bytes()[:150])
    mask = next((data / "test" / "masks").glob("*.png"))
    mask.write_bytes(b"")
    trainer = _trainer(micro_config(), tmp_path / "run")
    with pytest.raises(DatasetCheckError) as info:
        trainer.fit(XCADDataset(data, "train", size=32), steps=100, val_data=XCADDataset(data, "test"))
    assert len(info.value.problems) == 2 and str(bad) in str(info.value) and str(mask) in str(info.value)
    assert trainer.step == 0 and not (tmp_path / "run" / "last.pt").exists()


# ---------------------------------------------------------------------- signals (subprocess)
@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_last_checkpoint_and_exits_with_the_signal_status(tmp_path, signum, code):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "darlkit", "train", "--synthetic", "--synthetic-train", "2", "--synthetic-test", "1",
            "--preset", "tiny", "--image-size", "32", "--batch-size", "1", "--steps", "100000", "--val-every", "0",
            "--save-every", "0", "--no-progress", "--threads", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (out / "train_log.jsonl").is_file():  # the first logged step (tiny: every 10 steps)
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no step was logged in time"
            time.sleep(0.1)
        assert not (out / "last.pt").exists()  # --save-every 0: nothing saved before the signal
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] >= 10
    name = signal.Signals(signum).name
    assert f"darlkit train: interrupted: {name} at step {ckpt['step']}; saved {out / 'last.pt'}" in err
    assert "Traceback" not in err
