"""``darlkit segment``: masks equal the model's one-step (polyphase, tiled) segmentation, for
every format (JPEG, TIFF, DICOM cine, folders) and size; overlays, --scale, --channel; errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_io import _write_dicom
from test_training_support import make_checkpoint, make_xcad

from darlkit.cli import main
from darlkit.data.io import read_image_frames
from darlkit.model import segment_image
from darlkit.polyphase import polyphase_merge, polyphase_split
from darlkit.training import load_trained_model, read_png


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


# ---------------------------------------------------------------------- any format, any size
def _want(model, frame: np.ndarray, **kwargs) -> np.ndarray:
    """The mask darlkit segment should write for a (H, W) frame in [0, 1]."""
    x = torch.from_numpy(frame)[None, None] * 2 - 1
    return (segment_image(model, x, image_size=32, **kwargs)[0, 0] > 0).numpy()


def test_segment_jpg_tif_dcm_exactly_as_written(run, tmp_path, capsys):
    _, ckpt = run
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (70, 99, 3), dtype=np.uint8)).save(tmp_path / "X.jpg")
    Image.fromarray(rng.integers(0, 65536, (58, 65), dtype=np.uint16)).save(tmp_path / "Y.tif")
    cine = rng.integers(0, 4096, (3, 36, 40)).astype(np.uint16)
    _write_dicom(tmp_path / "Z.dcm", cine)
    args = ["segment", "X.jpg", "Y.tif", "Z.dcm", "--checkpoint", str(ckpt), "--out", "M"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        assert main(args) == 0
    assert "wrote 5 mask(s) for 3 input(s)" in capsys.readouterr().out
    model, _ = load_trained_model(ckpt)
    for name, src in (("X.png", "X.jpg"), ("Y.png", "Y.tif")):
        got = np.asarray(Image.open(tmp_path / "M" / name))
        frame = read_image_frames(tmp_path / src)[0]
        assert got.shape == frame.shape and set(np.unique(got)) <= {0, 255}
        np.testing.assert_array_equal(got == 255, _want(model, frame))
    frames = read_image_frames(tmp_path / "Z.dcm")
    assert sorted(p.name for p in (tmp_path / "M").glob("Z*")) == ["Z_f000.png", "Z_f001.png", "Z_f002.png"]
    for k in range(3):
        got = np.asarray(Image.open(tmp_path / "M" / f"Z_f{k:03d}.png"))
        np.testing.assert_array_equal(got == 255, _want(model, frames[k]))


def test_multipage_tiff_gives_one_mask_per_frame_and_overlays(run, tmp_path):
    _, ckpt = run
    rng = np.random.default_rng(1)
    pages = [Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)) for _ in range(2)]
    pages[0].save(tmp_path / "cine.tif", save_all=True, append_images=pages[1:])
    assert main(["segment", str(tmp_path / "cine.tif"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "m"),
                 "--overlay"]) == 0
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "cine_f000.png", "cine_f000_overlay.png", "cine_f001.png", "cine_f001_overlay.png"]
    for k in range(2):
        mask = np.asarray(Image.open(tmp_path / "m" / f"cine_f{k:03d}.png")) == 255
        over = np.asarray(Image.open(tmp_path / "m" / f"cine_f{k:03d}_overlay.png"))
        grey = np.asarray(pages[k]).astype(np.float64)
        assert over.shape == (20, 30, 3) and mask.any() and (~mask).any()
        # background: the grey image in all three channels; vessels: 50 % blend with red
        np.testing.assert_array_equal(over[~mask], np.repeat(grey[~mask][:, None], 3, 1))
        want = np.stack([np.round(0.5 * grey + 127.5), np.round(0.5 * grey), np.round(0.5 * grey)], -1)
        np.testing.assert_array_equal(over[mask], want[mask])


def test_folder_with_mixed_suffixes_takes_every_image(run, tmp_path):
    _, ckpt = run
    (tmp_path / "in").mkdir()
    Image.new("L", (9, 7), 100).save(tmp_path / "in" / "a.jpg")
    Image.new("L", (1, 1), 200).save(tmp_path / "in" / "b.png")
    assert main(["segment", str(tmp_path / "in"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "m")]) == 0
    assert np.asarray(Image.open(tmp_path / "m" / "a.png")).shape == (7, 9)
    assert np.asarray(Image.open(tmp_path / "m" / "b.png")).shape == (1, 1)


def test_channel_and_scale_round_trip(run, tmp_path):
    _, ckpt = run
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "f.png")
    out = tmp_path / "m"
    assert main(["segment", str(tmp_path / "f.png"), "--checkpoint", str(ckpt), "--out", str(out),
                 "--channel", "green", "--scale", "0.5"]) == 0
    got = np.asarray(Image.open(out / "f.png"))
    assert got.shape == (45, 61)  # the input's size, not the 23 x 30 the model saw
    model, _ = load_trained_model(ckpt)
    x = torch.from_numpy(rgb[..., 1] / 255.0).float()[None, None] * 2 - 1
    small = torch.nn.functional.interpolate(x, size=(22, 30), mode="bilinear", align_corners=False, antialias=True)
    pred = segment_image(model, small.clamp(-1, 1), image_size=32)
    back = torch.nn.functional.interpolate(pred, size=(45, 61), mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(got == 255, (back[0, 0] > 0).numpy())
    with pytest.MonkeyPatch.context():
        assert main(["segment", str(tmp_path / "f.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "m2"),
                     "--channel", "red"]) == 0
    red = np.asarray(Image.open(tmp_path / "m2" / "f.png")) == 255
    np.testing.assert_array_equal(red, _want(model, rgb[..., 0] / np.float32(255.0)))


def test_existing_masks_are_kept_unless_overwrite(run, tmp_path, capsys):
    _, ckpt = run
    Image.new("L", (8, 8), 50).save(tmp_path / "a.png")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.png").write_bytes(b"old mask")
    args = ["segment", str(tmp_path / "a.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "m")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a.png; pass --overwrite" in err
    assert (tmp_path / "m" / "a.png").read_bytes() == b"old mask"
    assert main([*args, "--overwrite"]) == 0
    assert np.asarray(Image.open(tmp_path / "m" / "a.png")).shape == (8, 8)
    # an input inside --out is never replaced, even with --overwrite
    assert main(["segment", str(tmp_path / "m" / "a.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "m"),
                 "--overwrite"]) == 2
    assert "is an input and would be replaced" in capsys.readouterr().err


def _one_line_error(args, capsys) -> str:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse errors (argtypes checks) exit from the parser
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("darlkit segment: error: "), err
    return err


def test_cli_errors_are_one_line(run, tmp_path, capsys):
    _, ckpt = run
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    Image.new("L", (8, 8)).save(tmp_path / "a.jpg")
    (tmp_path / "file").write_text("x")
    base = [str(tmp_path / "a.png"), "--checkpoint", str(ckpt)]
    assert f"argument --out: {tmp_path / 'file'} is a file, not a folder" in _one_line_error(
        ["segment", *base, "--out", str(tmp_path / "file")], capsys)
    err = _one_line_error(["segment", *base, "--out", str(tmp_path / "file" / "sub")], capsys)
    assert f"argument --out: {tmp_path / 'file' / 'sub'} cannot be created: {tmp_path / 'file'} is a file" in err
    if not torch.cuda.is_available():
        err = _one_line_error(["segment", *base, "--out", str(tmp_path / "m"), "--device", "cuda"], capsys)
        assert "argument --device: cuda: CUDA is not available on this machine (use --device cpu)" in err
    assert "argument --device: not a device name: 'gpu9'" in _one_line_error(
        ["segment", *base, "--out", str(tmp_path / "m"), "--device", "gpu9"], capsys)
    assert "tile must be a multiple of 8" in _one_line_error(
        ["segment", *base, "--out", str(tmp_path / "m"), "--tile", "30"], capsys)
    err = _one_line_error(["segment", str(tmp_path / "a.png"), str(tmp_path / "a.jpg"), "--checkpoint", str(ckpt),
                           "--out", str(tmp_path / "m")], capsys)
    assert "share the output name a.png" in err
    assert "not found" in _one_line_error(["segment", str(tmp_path / "nope.png"), "--checkpoint", str(ckpt),
                                           "--out", str(tmp_path / "m")], capsys)
    (tmp_path / "notes.txt").write_text("x")
    assert "not image files" in _one_line_error(["segment", str(tmp_path / "notes.txt"), "--checkpoint", str(ckpt),
                                                 "--out", str(tmp_path / "m")], capsys)
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def _prepared_folder(tmp_path, size, contrast="local"):
    """A `darlkit prepare` output (green channel) of two small colour 'fundus' images."""
    from darlkit.preparation import prepare_dataset

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:70, :90]
    fov = (yy - 35) ** 2 + (xx - 45) ** 2 < 30 ** 2
    for k in range(2):
        g = np.where(fov, 110 + 50 * xx / 90 + rng.normal(0, 4, fov.shape), 3)
        g[:, 40 + 6 * k:43 + 6 * k] -= 45 * fov[:, 40:43]
        Image.fromarray(np.stack([g * 0.6, g, g * 0.2], -1).clip(0, 255).astype(np.uint8)).save(tmp_path / f"r{k}.png")
    prepare_dataset(tmp_path / "prep", images=[tmp_path / "r0.png"], channel="green", size=size, contrast=contrast,
                    vessel_width_target=3.0, vessel_fraction_target=0.08)
    return tmp_path / "prep", tmp_path / "r1.png"


@pytest.mark.parametrize("size", [None, 50])
def test_prepared_gives_the_inputs_the_training_preparation(run, tmp_path, size):
    """--prepared DATA: the masks are those of the prepared image (prepare_like), at the input's size."""
    from darlkit.preparation import prepare_like, read_prepare_record, resample

    _, ckpt = run
    prep, image = _prepared_folder(tmp_path, size)
    out = tmp_path / "m"
    assert main(["segment", str(image), "--checkpoint", str(ckpt), "--out", str(out), "--prepared", str(prep)]) == 0
    got = np.asarray(Image.open(out / "r1.png")) == 255
    assert got.shape == (70, 90)
    model, _ = load_trained_model(ckpt)
    (frame,) = prepare_like(image, read_prepare_record(prep))
    if size is None:
        want = _want(model, frame)
    else:  # back to the input's size, then segmented at the prepared scale (the --scale path)
        x = torch.from_numpy(resample(frame, (70, 90)))[None, None] * 2 - 1
        small = torch.nn.functional.interpolate(x, size=(50, 64), mode="bilinear", align_corners=False, antialias=True)
        pred = segment_image(model, small.clamp(-1, 1), image_size=32)
        want = (torch.nn.functional.interpolate(pred, size=(70, 90), mode="bilinear", align_corners=False)[0, 0] > 0).numpy()
    np.testing.assert_array_equal(got, want)
    raw = _want(model, read_image_frames(image, channel="green")[0])
    assert (got != raw).mean() > 0.01  # the preparation really changed what the model saw


def test_prepared_refuses_conflicting_options_in_one_line(run, tmp_path, capsys):
    _, ckpt = run
    prep, image = _prepared_folder(tmp_path, 50)
    base = ["segment", str(image), "--checkpoint", str(ckpt), "--out", str(tmp_path / "m")]
    cases = [
        (["--prepared", str(prep), "--channel", "red"], "--channel red differs from the prepared folder's channel green"),
        (["--prepared", str(prep), "--scale", "0.5"], "--scale cannot be combined with --prepared"),
        (["--prepared", str(tmp_path)], "--prepared: "),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err


def test_segment_tta_flip_writes_the_flip_averaged_masks(run, tmp_path):
    data, ckpt = run
    model, _ = load_trained_model(ckpt)
    path = sorted((data / "test" / "images").glob("*.png"))[0]
    assert main(["segment", str(path), "--checkpoint", str(ckpt), "--out", str(tmp_path / "f"), "--tta", "flip"]) == 0
    got = np.asarray(Image.open(tmp_path / "f" / path.name)) == 255
    frame = (read_png(path)[0, 0].numpy() + 1) / 2
    np.testing.assert_array_equal(got, _want(model, frame, tta="flip"))
