"""Segmentation memory: the estimate, the refusal, and peak RSS of ``darlkit segment`` (subprocess)."""

from __future__ import annotations

import builtins
import importlib.util
import io

import pytest
import torch
from conftest import REPO_ROOT

from darlkit.cli import main
from darlkit.model import (
    ACTIVATION_BASE,
    SegmentMemoryError,
    available_memory,
    estimate_segment_memory,
    memory,
    segment_image,
)
from darlkit.model.memory import _activation_profile
from darlkit.training import TrainConfig, build_networks


@pytest.fixture(scope="module")
def tiny():
    model, _, _ = build_networks(TrainConfig.preset("tiny"))
    return model.eval()


def _benchmark():
    spec = importlib.util.spec_from_file_location("segment_memory", REPO_ROOT / "benchmarks" / "segment_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_available_memory_reads_meminfo_and_falls_back_to_sysconf(monkeypatch):
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/meminfo":
            return io.StringIO("MemTotal:       1000 kB\nMemAvailable:     640 kB\n")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert available_memory() == 640 * 1024

    def no_meminfo(path, *args, **kwargs):
        if path == "/proc/meminfo":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_meminfo)
    monkeypatch.setattr(memory.os, "sysconf", lambda name: {"SC_AVPHYS_PAGES": 10, "SC_PAGE_SIZE": 4096}[name])
    assert available_memory() == 40960
    assert available_memory("meta") is None  # no notion of free memory: no check


def test_the_probe_leaves_the_model_state_and_modes_alone(tiny):
    model, _, _ = build_networks(TrainConfig.preset("tiny"))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    per_pixel, attn = _activation_profile(model)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # no spectral-norm update
    # the tiny U-Net: attention at 8x8 of 64 (two blocks, 1/64 of the pixels) and in the middle
    assert per_pixel > 0 and len(attn) == 4 and all(h == 1 for _, h in attn)
    assert sorted({r for r, _ in attn}) == [1 / 64]


def test_the_estimate_is_bounded_by_the_tile_not_the_image(tiny):
    small = estimate_segment_memory(tiny, 1024, 1024, tile=128, overlap=16)
    large = estimate_segment_memory(tiny, 4096, 4096, tile=128, overlap=16)
    assert large - small == 16 * (4096**2 - 1024**2)  # only the 4 image-sized float32 buffers grow
    per_pixel, _ = _activation_profile(tiny)
    one = estimate_segment_memory(tiny, 1024, 1024, tile=128, overlap=16, tile_batch=1)
    four = estimate_segment_memory(tiny, 1024, 1024, tile=128, overlap=16, tile_batch=4)
    # 3 more 64x64 polyphase sub-images per pass: activations, and attention over 64 tokens each
    want = memory.ACTIVATION_FACTOR * per_pixel * 3 * 64**2 + 3 * (2 * 64**2 * 4)
    assert four - one == pytest.approx(want, abs=2)
    # whole-image segmentation of a 1024 image: the quadratic attention dominates (> 1 GiB)
    assert estimate_segment_memory(tiny, 1024, 1024, tile=1024) > 2**30 > 8 * one


def test_the_estimate_covers_a_measured_tile(tiny):
    # Measured (benchmarks/segment_memory.py, this machine): 273 MiB of activations for one
    # 512x512 polyphase tile of the tiny networks; the estimate errs on the safe side by < 2x.
    est = estimate_segment_memory(tiny, 512, 512, tile=512)
    assert ACTIVATION_BASE < 273 * 2**20 < est < 2 * 273 * 2**20


def test_segment_image_refuses_an_estimate_above_the_limit(tiny, monkeypatch):
    x = torch.zeros(1, 1, 300, 200)
    with pytest.raises(SegmentMemoryError, match=r"segmenting 1 image\(s\) of 200x300 with tile=128.*needs about \d+ MiB but only 1 MiB"):
        segment_image(tiny, x, image_size=64, memory_limit=2**20)
    monkeypatch.setattr(memory, "available_memory", lambda device=None: 5 * 2**20)  # "auto" reads this
    with pytest.raises(SegmentMemoryError, match="only 5 MiB are available; use a smaller tile"):
        segment_image(tiny, x, image_size=64)
    monkeypatch.setattr(memory, "available_memory", lambda device=None: None)  # unknown: no check
    assert segment_image(tiny, x, image_size=64).shape == x.shape


def test_cli_refuses_a_segmentation_that_does_not_fit(tmp_path, monkeypatch, capsys):
    from PIL import Image

    bench = _benchmark()
    ckpt = bench.write_checkpoint("tiny", tmp_path / "tiny.pt")
    Image.new("L", (300, 200)).save(tmp_path / "a.png")
    monkeypatch.setattr(memory, "available_memory", lambda device=None: 3 * 2**20)
    assert main(["segment", str(tmp_path / "a.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.png: segmenting 1 image(s) of 300x200" in err and "only 3 MiB" in err
    assert not (tmp_path / "m" / "a.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "preset, options",
    [
        ("tiny", []),
        # paper networks: 512-px tiles; --overlap 24 makes 2 x 2 tiles (instead of 3 x 3 with the
        # default 64) to keep the run short; the overlap does not change the peak (one tile at a time)
        ("paper", ["--overlap", "24"]),
    ],
)
def test_darlkit_segment_peak_rss_on_a_1000px_image_stays_under_1_5_gb(tmp_path, preset, options):
    bench = _benchmark()
    record = bench.measure(preset, 1000, 1000, options, tmp_path)
    print(record)  # shown with -s (the numbers of the report)
    assert record["peak_rss_mib"] < 1.5 * 1024, record


def test_auto_tile_batch_batches_small_inputs_and_keeps_large_ones_alone(tiny):
    from darlkit.model import AUTO_PASS_BYTES, AUTO_TILE_BATCH_MAX, auto_tile_batch

    # tiny networks, 128 px tiles -> 64 x 64 sub-images: the maximum fits in the pass budget
    assert auto_tile_batch(tiny, 128, True) == AUTO_TILE_BATCH_MAX
    # every choice respects the budget, and doubling it would not (unless at the maximum)
    per_pixel, _ = _activation_profile(tiny)
    for tile in (128, 256, 512, 1024):
        n = auto_tile_batch(tiny, tile, True)
        pass_bytes = estimate_segment_memory(tiny, 4 * tile, 4 * tile, tile=tile, tile_batch=n)
        assert n == 1 or pass_bytes - 16 * (4 * tile) ** 2 - ACTIVATION_BASE <= AUTO_PASS_BYTES
        if n < AUTO_TILE_BATCH_MAX:
            double = estimate_segment_memory(tiny, 4 * tile, 4 * tile, tile=tile, tile_batch=2 * n)
            assert double - 16 * (4 * tile) ** 2 - ACTIVATION_BASE > AUTO_PASS_BYTES
    assert auto_tile_batch(tiny, 1024, True) < auto_tile_batch(tiny, 128, True)
    assert auto_tile_batch(None, 128, True) == 4 and auto_tile_batch(None, 128, False) == 1


def test_auto_tile_batch_gives_the_single_input_result(tiny):
    x = torch.rand(1, 1, 300, 260, generator=torch.Generator().manual_seed(0)) * 2 - 1
    one = segment_image(tiny, x, image_size=64, tile_batch=1)
    auto = segment_image(tiny, x, image_size=64)  # tile_batch="auto": 16 sub-images per pass here
    torch.testing.assert_close(auto, one, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="tile_batch must be an int >= 1 or 'auto'"):
        segment_image(tiny, x, image_size=64, tile_batch="many")
