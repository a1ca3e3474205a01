"""The fast inference path: InferenceSegmenter equals DARL's segmentation (fp32 exactly, ONNX Runtime
within its tolerance), bf16 agreement, boundary checks, and ``darlkit segment --runtime/--precision/--workers``."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from test_training_support import make_checkpoint, make_xcad, micro_config

from darlkit.cli import main
from darlkit.metrics import dice_score
from darlkit.model import (
    EXPORT_TOLERANCE,
    InferenceSegmenter,
    bf16_agreement,
    export_segmenter,
    native_bf16,
    segment_image,
    segment_tiled,
)
from darlkit.polyphase import polyphase_split
from darlkit.training import TrainConfig, build_networks, load_trained_model, read_png

HAVE_ORT = all(__import__("importlib").util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
needs_ort = pytest.mark.skipif(not HAVE_ORT, reason="onnx/onnxruntime not installed (pip install 'darlkit[onnx]')")


@pytest.fixture(scope="module")
def tiny():
    model, _, _ = build_networks(TrainConfig.preset("tiny"), seed=0)
    return model.eval()


def _image(h: int = 96, w: int = 80, n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 1, h, w), generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("tile", [None, 48])  # None: one 128-px tile (untiled); 48: 3 x 2 tiles
def test_fp32_segmenter_equals_darl_exactly_tiled_and_untiled(tiny, tile):
    x = _image()
    want = segment_image(tiny, x, image_size=64, tile=tile)
    got = segment_image(InferenceSegmenter(tiny, channels_last=False), x, image_size=64, tile=tile)
    assert got.shape == (1, 1, 96, 80) and got.dtype == torch.float32
    assert torch.equal(got, want)
    assert not got.is_inference()  # a normal tensor: callers may update it in place


def test_fp32_segmenter_equals_darl_with_noise_at_t_above_0(tiny):
    x = _image(n=2)
    want = segment_tiled(tiny, x, tile=48, t=7, generator=torch.Generator().manual_seed(3))
    got = segment_tiled(InferenceSegmenter(tiny, channels_last=False), x, tile=48, t=7,
                        generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, want)
    whole = tiny.segment(x, 7, True, generator=torch.Generator().manual_seed(4))
    fast = InferenceSegmenter(tiny, channels_last=False).segment(x, 7, True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(fast, whole)
    cl = InferenceSegmenter(tiny, channels_last=True).segment(x, 7, True, generator=torch.Generator().manual_seed(4))
    assert (cl - whole).abs().max().item() <= 1e-4


def _fp32_error(model, x):
    """max |float32 - float64| of the one-step segmenter on ``x``: the rounding any reordering may show."""
    import copy

    from darlkit.model import OneStepSegmenter

    seg = OneStepSegmenter(model)
    with torch.no_grad():
        return (seg(x).double() - copy.deepcopy(seg).double()(x.double())).abs().max().item()


@pytest.mark.parametrize("preset", ["tiny", pytest.param("paper", marks=pytest.mark.slow)])
def test_channels_last_is_the_cpu_default_and_equal_to_eager_within_float32_rounding(preset):
    model, _, _ = build_networks(TrainConfig.preset(preset), seed=0)
    model.eval()
    m = model.size_multiple
    x = _image(2 * m, 4 * m, n=2, seed=5)
    seg = InferenceSegmenter(model)
    assert seg.channels_last and not InferenceSegmenter(model, channels_last=False).channels_last
    got = seg.segment(x, 0, True)
    with torch.no_grad():
        want = model.segment(x, 0, True)
    assert got.is_contiguous() and got.shape == want.shape
    # the same arithmetic summed in another order: within a few times float32's own rounding
    assert (got - want).abs().max().item() <= max(1e-4, 4 * _fp32_error(model, polyphase_split(x)))


def test_segmenter_does_not_change_the_model(tiny):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    InferenceSegmenter(tiny, precision="bf16").segment(_image())
    after = tiny.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_bf16_agreement_is_the_dice_of_the_two_masks(tiny):
    fp32, bf16 = InferenceSegmenter(tiny), InferenceSegmenter(tiny, precision="bf16")
    images = [_image(seed=1), _image(64, 64, seed=2)]

    def seg(s, x):
        return segment_image(s, x, image_size=64)

    want = [float(dice_score(seg(bf16, x), (seg(fp32, x) > 0).float())) for x in images]
    assert bf16_agreement(fp32, bf16, images, seg) == pytest.approx(sum(want) / 2, abs=1e-12)
    assert 0.5 < min(want) <= 1.0  # bf16 rounds: close to, not necessarily equal to, fp32
    with pytest.raises(ValueError, match="at least one"):
        bf16_agreement(fp32, bf16, [], seg)


def test_benchmark_machine_names_carry_the_cpu_features():
    # results files name the machine; the same model name covers AVX2-only and AVX512-BF16 CPUs
    from darlkit._platform import device_name

    name = device_name("cpu")
    assert torch.backends.cpu.get_cpu_capability() in name
    assert ("native bf16" in name) == native_bf16("cpu")


def test_native_bf16_is_a_bool_and_false_off_cpu_and_cuda():
    assert isinstance(native_bf16("cpu"), bool)
    assert native_bf16("meta") is False


def test_the_api_boundary_checks_the_image_and_t_once(tiny):
    seg = InferenceSegmenter(tiny)
    bad = _image()
    bad[0, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        segment_image(seg, bad, image_size=64, tile=48)
    for t in (-1, 2000, 1.5, True):
        with pytest.raises(ValueError, match="t must be"):
            segment_image(seg, _image(), image_size=64, t=t)
    with pytest.raises(ValueError, match="precision"):
        InferenceSegmenter(tiny, precision="fp16")
    with pytest.raises(ValueError, match="DARL model or an onnx file"):
        InferenceSegmenter()
    with pytest.raises(ValueError, match="without compile or channels_last"):
        InferenceSegmenter(onnx="x.onnx", channels_last=True)


@needs_ort
@pytest.mark.parametrize("tile", [None, 48])
def test_onnx_segmenter_masks_equal_torch_masks_tiled_and_untiled(tiny, tile, tmp_path):
    path = tmp_path / "tiny.onnx"
    export_segmenter(tiny, path, format="onnx", metadata={"image_size": "64"})
    onnx = InferenceSegmenter(onnx=path)
    assert onnx.size_multiple == tiny.size_multiple and onnx._segment_min_side == tiny._segment_min_side
    assert onnx._onnx.metadata["image_size"] == "64"
    x = _image(n=2)
    want = segment_image(InferenceSegmenter(tiny, channels_last=False), x, image_size=64, tile=tile)
    got = segment_image(onnx, x, image_size=64, tile=tile)
    assert (got - want).abs().max().item() <= EXPORT_TOLERANCE["onnx"]
    differ = (got > 0) != (want > 0)  # masks differ only at logits within the tolerance of 0
    assert not differ.any() or want[differ].abs().max().item() <= EXPORT_TOLERANCE["onnx"]
    with pytest.raises(ValueError, match="t must be 0"):
        segment_image(onnx, x, image_size=64, t=1)


# ---------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runtime")
    data = make_xcad(root / "data")
    return data, make_checkpoint(root / "run", data, steps=1)


def _masks(folder):
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def _images(data, k: int = 2):
    return sorted((data / "test" / "images").glob("*.png"))[:k]


def test_cli_fp32_masks_equal_the_model_and_workers_do_not_change_them(run, tmp_path, capsys):
    data, ckpt = run
    images = _images(data, 2)
    base = ["segment", *map(str, images), "--checkpoint", str(ckpt), "--runtime", "torch", "--precision", "fp32",
            "--tile", "48"]
    assert main([*base, "--out", str(tmp_path / "w0"), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "runtime: torch" in out and "precision: fp32 (--precision)" in out
    assert main([*base, "--out", str(tmp_path / "w2"), "--workers", "2", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""  # no bar (not a terminal), no worker traceback
    w0, w2 = _masks(tmp_path / "w0"), _masks(tmp_path / "w2")
    assert w0.keys() == w2.keys() == {p.name for p in images}
    model, cfg = load_trained_model(ckpt)
    for p in images:
        x = read_png(p)
        want = (segment_image(model, x, image_size=cfg.image_size, tile=48)[0, 0] > 0).numpy()
        assert np.array_equal(w0[p.name] == 255, want)
        assert np.array_equal(w0[p.name], w2[p.name])


def test_cli_auto_precision_is_checked_once_and_cached(run, tmp_path, capsys):
    data, ckpt = run
    argv = ["segment", str(_images(data, 1)[0]), "--checkpoint", str(ckpt), "--runtime", "torch", "--overwrite",
            "--out", str(tmp_path)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    second = capsys.readouterr().out
    if native_bf16("cpu"):
        assert "mask Dice" in first and "cached" not in first and "cached" in second
        cache = list((ckpt.parent / ".darlkit-cache").glob("*.json"))
        assert cache and "bf16_mask_dice" in cache[0].read_text()
    else:
        assert "precision: fp32 (no native bf16" in first


def test_cli_unreadable_input_in_a_worker_is_one_line(run, tmp_path, capsys):
    data, ckpt = run
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    argv = ["segment", str(_images(data, 1)[0]), str(broken), "--checkpoint", str(ckpt), "--precision", "fp32",
            "--workers", "1", "--out", str(tmp_path / "m")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "broken.png" in err and len(err.splitlines()) == 1, err


@needs_ort
@pytest.mark.slow
def test_cli_onnx_runtime_masks_equal_torch_masks_and_the_export_is_cached(run, tmp_path, capsys):
    import shutil

    data, shared = run
    ckpt = tmp_path / "ck" / "last.pt"  # a checkpoint of its own: no export cached by other tests
    ckpt.parent.mkdir()
    shutil.copy(shared, ckpt)
    images = _images(data, 2)
    base = ["segment", *map(str, images), "--tile", "48", "--overlay"]
    assert main([*base, "--checkpoint", str(ckpt), "--runtime", "torch", "--precision", "fp32",
                 "--out", str(tmp_path / "torch")]) == 0
    capsys.readouterr()
    assert main([*base, "--checkpoint", str(ckpt), "--runtime", "onnx", "--out", str(tmp_path / "onnx")]) == 0
    first = capsys.readouterr().out
    assert "exported to" in first and "max |onnx - eager|" in first
    assert main([*base, "--checkpoint", str(ckpt), "--runtime", "onnx", "--out", str(tmp_path / "again")]) == 0
    assert "runtime: onnxruntime, cached export" in capsys.readouterr().out
    onnx_file = tmp_path / "seg.onnx"  # a file from `darlkit export` as --checkpoint (runtime onnx implied)
    assert main(["export", str(ckpt), "--out", str(onnx_file)]) == 0
    assert main([*base, "--checkpoint", str(onnx_file), "--out", str(tmp_path / "file")]) == 0
    want = _masks(tmp_path / "torch")
    assert len(want) == 4  # two masks, two overlays
    for name in ("onnx", "again", "file"):
        got = _masks(tmp_path / name)
        assert got.keys() == want.keys()
        for key in want:  # ONNX logits are within 1e-4 of torch's: masks agree but for ties at 0
            differ = got[key] != want[key]
            assert (differ.any(axis=-1) if differ.ndim == 3 else differ).mean() <= 1e-3, (name, key)


@needs_ort
def test_cli_onnx_errors_are_one_line(run, tmp_path, capsys):
    data, ckpt = run
    image = str(_images(data, 1)[0])
    cases = [
        (["--checkpoint", str(ckpt), "--runtime", "onnx", "--t", "3"], "--t must be 0"),
        (["--checkpoint", str(ckpt), "--runtime", "onnx", "--precision", "bf16"], "runs float32"),
        (["--checkpoint", str(ckpt), "--runtime", "onnx", "--compile"], "runs float32"),
    ]
    onnx_file = tmp_path / "seg.onnx"
    export_segmenter(build_networks(micro_config())[0].eval(), onnx_file, format="onnx", verify=False)
    cases += [
        (["--checkpoint", str(onnx_file), "--runtime", "torch"], "is an ONNX file"),
        (["--checkpoint", str(onnx_file)], "--tile is needed"),  # no image_size metadata
    ]
    for extra, needle in cases:
        assert main(["segment", image, "--out", str(tmp_path / "m"), "--overwrite", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err


def test_cli_onnx_without_onnxruntime_is_one_line(run, tmp_path, capsys, monkeypatch):
    data, ckpt = run
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    argv = ["segment", str(_images(data, 1)[0]), "--checkpoint", str(ckpt), "--runtime", "onnx", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'darlkit[onnx]'" in err and len(err.splitlines()) == 1, err


def test_cli_default_runtime_is_torch(run, tmp_path, capsys):
    data, ckpt = run
    image = str(_images(data, 1)[0])
    assert main(["segment", image, "--checkpoint", str(ckpt), "--out", str(tmp_path / "a")]) == 0
    assert "runtime: torch" in capsys.readouterr().out


def test_with_precision_shares_the_networks_and_checks_its_argument(tiny):
    fp32 = InferenceSegmenter(tiny)
    bf16 = fp32.with_precision("bf16")
    assert bf16.precision == "bf16" and fp32.precision == "fp32" and bf16._seg is fp32._seg
    x = _image()
    assert torch.equal(bf16.with_precision("fp32").segment(x), fp32.segment(x))
    with pytest.raises(ValueError, match="precision must be one of"):
        fp32.with_precision("fp16")
