"""``darlkit train``: a tiny run on synthetic XCAD data, resume, and the run folder's files."""

from __future__ import annotations

import json

import pytest
import torch

from darlkit.cli import main
from darlkit.training import load_checkpoint
from test_training_support import make_xcad

TINY = ["--preset", "tiny", "--image-size", "32", "--batch-size", "1", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_xcad(tmp_path_factory.mktemp("xcad") / "data")


def test_train_writes_checkpoint_metrics_and_figure(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--steps", "2", "--val-every", "1", "--out", str(out), *TINY]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 2 and 0.0 <= summary["best_dice"] <= 1.0
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == 2 and ckpt["config"]["image_size"] == 32 and ckpt["config"]["preset_name"] == "tiny"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["n"] == 2 for r in rows)
    assert (out / "figure.png").is_file() and (out / "best.pt").is_file() and (out / "metrics.csv").is_file()
    assert json.loads((out / "config.json").read_text())["batch_size"] == 1

    # --resume continues from last.pt to the new total and keeps the history
    assert main(["train", "--data", str(data), "--steps", "3", "--val-every", "0", "--out", str(out), "--resume", *TINY]) == 0
    resumed = load_checkpoint(out / "last.pt")
    assert resumed["step"] == 3
    assert any(not torch.equal(resumed["model"][k], ckpt["model"][k]) for k in ckpt["model"])


def test_train_synthetic(tmp_path):
    out = tmp_path / "syn"
    argv = ["train", "--synthetic", "--synthetic-train", "2", "--synthetic-test", "1", "--steps", "1", "--out", str(out)]
    assert main([*argv, *TINY]) == 0
    assert (out / "data" / "train" / "trainA").is_dir() and load_checkpoint(out / "last.pt")["step"] == 1
    assert len(list((out / "data" / "test" / "images").glob("*.png"))) == 1
    # rendered at 512 (XCAD's vessel widths) and saved as windows of twice the crop side
    from darlkit.data import read_grayscale_png

    side = 2 * load_checkpoint(out / "last.pt")["config"]["image_size"]
    assert read_grayscale_png(next((out / "data" / "train" / "trainB").glob("*.png"))).shape == (side, side)


def test_train_synthetic_render_size_must_cover_the_image(tmp_path, capsys):
    argv = ["train", "--synthetic", "--synthetic-size", "64", "--synthetic-render-size", "32", "--steps", "1",
            "--out", str(tmp_path / "bad")]
    assert main([*argv, *TINY]) == 2
    assert "--synthetic-render-size" in capsys.readouterr().err


def test_python_m_darlkit_lists_the_commands():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "darlkit", "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in ("quickstart", "train", "segment", "evaluate"):
        assert name in proc.stdout


def test_synthesise_once_rank0_rewrites_an_unfinished_folder(tmp_path, monkeypatch):
    from darlkit.cli.train import SYNTH_COMPLETE_MARKER, synthesise_once

    monkeypatch.delenv("RANK", raising=False)
    calls = []
    root = tmp_path / "data"
    root.mkdir()
    (root / "partial.png").write_bytes(b"")  # an interrupted earlier write: no marker
    synthesise_once(root, lambda: calls.append(1))
    assert calls == [1] and (root / SYNTH_COMPLETE_MARKER).is_file()
    synthesise_once(root, lambda: calls.append(2))  # complete: not written again
    assert calls == [1]


def test_synthesise_once_other_ranks_wait_for_rank0(tmp_path, monkeypatch):
    import threading

    from darlkit.cli import CLIError
    from darlkit.cli.train import SYNTH_COMPLETE_MARKER, synthesise_once

    monkeypatch.setenv("RANK", "1")
    root = tmp_path / "data"
    root.mkdir()
    never = []
    with pytest.raises(CLIError, match="rank 0 did not finish"):
        synthesise_once(root, lambda: never.append(1), timeout=0.2, poll=0.05)
    timer = threading.Timer(0.3, lambda: (root / SYNTH_COMPLETE_MARKER).write_text("complete\n"))
    timer.start()
    try:
        synthesise_once(root, lambda: never.append(1), timeout=30, poll=0.05)
    finally:
        timer.cancel()
    assert never == []  # a rank > 0 never writes
