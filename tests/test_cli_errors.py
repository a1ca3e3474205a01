"""Every bad-argument path of train / segment / evaluate / quickstart: one line, exit status 2."""

from __future__ import annotations

import pytest
import torch

from darlkit.cli import main
from darlkit.training import CHECKPOINT_FORMAT
from test_training_support import make_checkpoint, make_xcad


class _Payload:
    """A class the safe loader does not allowlist."""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    data = make_xcad(root / "data", n_train=2, n_test=1)
    ckpt = make_checkpoint(root / "run", data, steps=1)
    junk = root / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint")
    evil = root / "evil.pt"

    torch.save({"format": CHECKPOINT_FORMAT, "config": {}, "x": _Payload()}, evil)
    jpg = root / "photo.jpg"
    jpg.write_bytes(b"\xff\xd8\xff\xe0 not really")
    fake_png = root / "fake.png"
    fake_png.write_bytes(b"this is text")
    odd = root / "odd.png"
    from PIL import Image

    Image.new("L", (50, 50)).save(odd)
    not_xcad = root / "empty"
    not_xcad.mkdir()
    a_file = root / "a_file.txt"
    a_file.write_text("not a folder")
    return {"data": data, "ckpt": ckpt, "junk": junk, "evil": evil, "jpg": jpg, "fake_png": fake_png,
            "odd": odd, "empty": not_xcad, "root": root, "file": a_file}


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    err = capsys.readouterr().err.strip()
    return code, err


CASES = {
    "train-missing-data": (lambda e: ["train", "--data", str(e["root"] / "nope"), "--steps", "1"], "dataset folder not found"),
    "train-not-xcad": (lambda e: ["train", "--data", str(e["empty"]), "--steps", "1"], "not an XCAD layout"),
    "train-no-source": (lambda e: ["train", "--steps", "1"], "one of the arguments --data --synthetic is required"),
    "train-bad-preset": (lambda e: ["train", "--data", str(e["data"]), "--preset", "huge"], "invalid choice: 'huge'"),
    "train-negative-steps": (lambda e: ["train", "--data", str(e["data"]), "--steps", "-5"], "expected a non-negative integer, got -5"),
    "train-bad-batch": (lambda e: ["train", "--data", str(e["data"]), "--batch-size", "0"], "expected a positive integer"),
    "train-bad-lr": (lambda e: ["train", "--data", str(e["data"]), "--lr", "abc"], "expected a positive number"),
    "train-fp16-cpu": (lambda e: ["train", "--data", str(e["data"]), "--amp", "fp16", "--device", "cpu"], "fp16 needs a CUDA device"),
    "train-bad-device": (lambda e: ["train", "--data", str(e["data"]), "--device", "toaster"], "not a device name"),
    "train-resume-nothing": (lambda e: ["train", "--data", str(e["data"]), "--out", str(e["root"] / "fresh"), "--resume"], "no checkpoint to continue"),
    "train-resume-missing": (lambda e: ["train", "--data", str(e["data"]), "--resume", str(e["root"] / "x.pt")], "checkpoint not found"),
    "train-bad-image-size": (lambda e: ["train", "--data", str(e["data"]), "--image-size", "36", "--preset", "tiny"], "image_size must be divisible"),
    "train-bad-ema": (lambda e: ["train", "--data", str(e["data"]), "--ema", "2"], "ema_decay must be in (0, 1)"),
    "segment-missing-image": (lambda e: ["segment", str(e["root"] / "no.png"), "--checkpoint", str(e["ckpt"]), "--out", "o"], "image file or folder not found"),
    "segment-broken-jpg": (lambda e: ["segment", str(e["jpg"]), "--checkpoint", str(e["ckpt"]), "--out", "o"], "cannot decode image"),
    "segment-fake-png": (lambda e: ["segment", str(e["fake_png"]), "--checkpoint", str(e["ckpt"]), "--out", str(e["root"] / "o")], "cannot decode image"),
    "segment-empty-folder": (lambda e: ["segment", str(e["empty"]), "--checkpoint", str(e["ckpt"]), "--out", "o"], "holds no image files"),
    "segment-missing-ckpt": (lambda e: ["segment", str(e["odd"]), "--checkpoint", str(e["root"] / "none.pt"), "--out", "o"], "file not found"),
    "segment-junk-ckpt": (lambda e: ["segment", str(e["odd"]), "--checkpoint", str(e["junk"]), "--out", "o"], "not a readable PyTorch file"),
    "segment-evil-ckpt": (lambda e: ["segment", str(e["odd"]), "--checkpoint", str(e["evil"]), "--out", "o"], "refused by the safe loader"),
    "segment-bad-tile": (lambda e: ["segment", str(e["odd"]), "--checkpoint", str(e["ckpt"]), "--out", str(e["root"] / "o"), "--tile", "30"], "tile must be a multiple of"),
    "segment-big-t": (lambda e: ["segment", str(e["odd"]), "--checkpoint", str(e["ckpt"]), "--out", "o", "--t", "2000"], "--t must be < 2000"),
    "segment-bad-threshold": (lambda e: ["segment", str(e["odd"]), "--checkpoint", str(e["ckpt"]), "--out", "o", "--threshold", "3"], "expected a number in [-1, 1]"),
    "segment-ema-missing": (lambda e: ["segment", str(e["odd"]), "--checkpoint", str(e["ckpt"]), "--out", "o", "--ema"], "has no EMA weights"),
    "evaluate-missing-data": (lambda e: ["evaluate", "--data", str(e["root"] / "nope"), "--checkpoint", str(e["ckpt"])], "dataset folder not found"),
    "evaluate-no-test": (lambda e: ["evaluate", "--data", str(e["empty"]), "--checkpoint", str(e["ckpt"])], "missing folder test/images"),
    "evaluate-junk-ckpt": (lambda e: ["evaluate", "--data", str(e["data"]), "--checkpoint", str(e["junk"])], "not a readable PyTorch file"),
    "evaluate-negative-sigma": (lambda e: ["evaluate", "--data", str(e["data"]), "--checkpoint", str(e["ckpt"]), "--noise-sigma", "-10"], "expected a finite number >= 0"),
    "evaluate-bad-max": (lambda e: ["evaluate", "--data", str(e["data"]), "--checkpoint", str(e["ckpt"]), "--max-images", "0"], "--max-images must be a positive integer"),
    "quickstart-odd-size": (lambda e: ["quickstart", "--smoke", "--size", "63", "--out", str(e["root"] / "q")], "--size must be even"),
    "quickstart-not-empty": (lambda e: ["quickstart", "--smoke", "--out", str(e["root"])], "exists and is not empty"),
    "quickstart-bad-preset": (lambda e: ["quickstart", "--preset", "giant"], "invalid choice: 'giant'"),
    "quickstart-small-render": (lambda e: ["quickstart", "--smoke", "--render-size", "32", "--out", str(e["root"] / "q")], "--render-size must be an even integer"),
    "quickstart-odd-render": (lambda e: ["quickstart", "--smoke", "--render-size", "129", "--out", str(e["root"] / "q")], "--render-size must be an even integer"),
    "quickstart-bad-data-seed": (lambda e: ["quickstart", "--smoke", "--data-seed", "-1"], "argument --data-seed: expected a non-negative integer"),
    "unknown-command": (lambda e: ["fly"], "invalid choice: 'fly'"),
    # output paths, folders given as files and files given as folders, devices (issue 17)
    "train-out-is-file": (lambda e: ["train", "--data", str(e["data"]), "--out", str(e["file"])], "argument --out: {file} is a file, not a folder"),
    "train-out-under-file": (lambda e: ["train", "--data", str(e["data"]), "--out", str(e["file"] / "run")], "argument --out: {file}/run cannot be created: {file} is a file, not a folder"),
    "train-data-is-file": (lambda e: ["train", "--data", str(e["file"]), "--out", str(e["root"] / "r")], "--data {file} is a file, not a dataset folder"),
    "train-resume-folder": (lambda e: ["train", "--data", str(e["data"]), "--out", str(e["root"] / "r"), "--resume", str(e["empty"])], "--resume {empty} is a folder, not a checkpoint file"),
    "train-device-unknown": (lambda e: ["train", "--data", str(e["data"]), "--device", "gpu0"], "argument --device: not a device name: 'gpu0'"),
    "train-device-type": (lambda e: ["train", "--data", str(e["data"]), "--device", "meta"], "argument --device: meta: unsupported device type 'meta'"),
    "quickstart-out-is-file": (lambda e: ["quickstart", "--smoke", "--out", str(e["file"])], "argument --out: {file} is a file, not a folder"),
    "quickstart-device-unknown": (lambda e: ["quickstart", "--smoke", "--device", "toaster"], "argument --device: not a device name: 'toaster'"),
    "synth-out-is-file": (lambda e: ["synth", str(e["file"])], "argument out: {file} is a file, not a folder"),
    "synth-out-under-file": (lambda e: ["synth", str(e["file"] / "x")], "argument out: {file}/x cannot be created: {file} is a file"),
    "flops-json-is-folder": (lambda e: ["flops", "--json", str(e["empty"])], "--json: {empty} is a folder, not a file"),
    "flops-json-under-file": (lambda e: ["flops", "--json", str(e["file"] / "t.json")], "--json: {file}/t.json cannot be created: {file} is a file"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_arguments_give_one_line_and_status_2(env, capsys, case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv_fn, expected = CASES[case]
    expected = expected.replace("{file}", str(env["file"])).replace("{empty}", str(env["empty"]))
    code, err = _run(argv_fn(env), capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "error:" in err and expected in err, err
    assert "Traceback" not in err


def _one_line_error(argv, capsys, expected):
    code, err = _run(argv, capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("command", ["train", "quickstart"])
def test_cuda_device_without_cuda_is_one_line(env, capsys, command, tmp_path):
    argv = [command, "--device", "cuda", "--out", str(tmp_path / "o")]
    argv += ["--data", str(env["data"])] if command == "train" else ["--smoke"]
    _one_line_error(argv, capsys, "argument --device: cuda: CUDA is not available on this machine (use --device cpu)")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_missing_cuda_index_is_one_line(env, capsys, tmp_path):
    n = torch.cuda.device_count()
    argv = ["train", "--data", str(env["data"]), "--device", f"cuda:{n}", "--out", str(tmp_path / "o")]
    _one_line_error(argv, capsys, f"cuda:{n}: no such CUDA device (this machine has {n})")


def _read_only_folder(tmp_path):
    """A folder nobody can create files in: chmod 500 (non-root), /proc/1 (root, Linux)."""
    import os
    from pathlib import Path

    if os.name == "posix" and os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        return ro
    if Path("/proc/1").is_dir():
        return Path("/proc/1")
    pytest.skip("no read-only folder available")


@pytest.mark.parametrize(
    "argv, option",
    [
        (lambda ro, e: ["train", "--data", str(e["data"]), "--out", str(ro / "run")], "argument --out"),
        (lambda ro, e: ["quickstart", "--smoke", "--out", str(ro / "q")], "argument --out"),
        (lambda ro, e: ["synth", str(ro / "s")], "argument out"),
        (lambda ro, e: ["flops", "--json", str(ro / "t.json")], "--json"),
    ],
)
def test_unwritable_output_is_one_line_naming_option_and_path(env, capsys, tmp_path, argv, option):
    ro = _read_only_folder(tmp_path)
    args = argv(ro, env)
    _one_line_error(args, capsys, f"{option}: {args[-1]} is not writable (in {ro})")


def test_path_argtypes_accept_good_paths_without_creating_anything(tmp_path):
    from darlkit.cli import argtypes

    nested = tmp_path / "a" / "b"
    assert argtypes.output_dir(str(nested)) == nested and not (tmp_path / "a").exists()
    assert argtypes.output_dir(str(tmp_path)) == tmp_path
    assert argtypes.output_file(str(nested / "t.json")) == nested / "t.json"
    assert sorted(tmp_path.iterdir()) == []  # the write probe leaves nothing behind
    assert argtypes.device("cpu") == "cpu"


def test_positive_int_or_auto_accepts_auto_and_refuses_the_rest():
    import argparse

    from darlkit.cli import argtypes

    assert argtypes.positive_int_or_auto("auto") == "auto" and argtypes.positive_int_or_auto("16") == 16
    for bad in ("0", "-3", "many", "2.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="a positive integer or 'auto'"):
            argtypes.positive_int_or_auto(bad)
