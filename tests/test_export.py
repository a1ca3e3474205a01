"""Export of the one-step segmenter: equal to eager within the stated tolerance, per format."""

from __future__ import annotations

import copy

import pytest
import torch

from darlkit.cli import main
from darlkit.model import DARL
from darlkit.model.export import (
    EXPORT_TOLERANCE,
    OneStepSegmenter,
    export_segmenter,
    load_exported,
    materialize_spectral_norm,
)
from darlkit.training import TrainConfig, build_networks, load_trained_model
from test_training_support import make_checkpoint, make_xcad


def _tiny() -> DARL:
    model, _, _ = build_networks(TrainConfig.preset("tiny"), seed=0)
    return model.eval()


def _batch(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 1, h, w), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_materialized_spectral_norm_gives_the_eval_forward_exactly():
    gen = _tiny().generator
    x = torch.cat([_batch(2, 64, 64), _batch(2, 64, 64, seed=1)], dim=1)
    with torch.no_grad():
        want = gen(x)
        plain = materialize_spectral_norm(copy.deepcopy(gen))
        got = plain(x)
    assert not any(n.endswith("weight_orig") for n, _ in plain.named_parameters())
    assert any(n.endswith("weight_orig") for n, _ in gen.named_parameters())
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_one_step_segmenter_equals_darl_segment_and_leaves_the_model_alone():
    model = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seg = OneStepSegmenter(model)
    x = _batch(3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(seg(x), model.segment(x), rtol=0, atol=0)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert seg.size_multiple == model.size_multiple
    with pytest.raises(TypeError, match="DARL model"):
        OneStepSegmenter(torch.nn.Conv2d(1, 1, 1))


def _formats():
    out = ["torchscript", "exported-program"]
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        out.insert(0, "onnx")
    except ImportError:
        out.insert(0, pytest.param("onnx", marks=pytest.mark.skip(reason="onnx/onnxruntime not installed")))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fmt", _formats())
def test_export_round_trip_tiny_any_batch_and_size(fmt, tmp_path):
    model = _tiny()
    report = export_segmenter(model, tmp_path / f"seg.{fmt}", format=fmt)
    assert report["max_abs_diff"] is not None and report["max_abs_diff"] <= report["allowed"]
    # On the tiny networks every format agrees with float32 eager to 1e-4 or better.
    assert report["max_abs_diff"] <= 1e-4
    fn = load_exported(tmp_path / f"seg.{fmt}", format=fmt)
    x = _batch(3, 3 * model.size_multiple, 5 * model.size_multiple, seed=7)  # neither the traced batch nor size
    with torch.no_grad():
        diff = (fn(x) - model.segment(x)).abs().max().item()
    assert diff <= EXPORT_TOLERANCE[fmt]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", _formats())
def test_export_round_trip_paper_networks(fmt, tmp_path):
    model, _, _ = build_networks(TrainConfig.preset("paper"), seed=0)
    report = export_segmenter(model.eval(), tmp_path / "paper", format=fmt, size=(64, 64))
    assert report["max_abs_diff"] <= report["allowed"] <= max(EXPORT_TOLERANCE[fmt], 2 * report["eager_fp32_error"])
    assert report["eager_fp32_error"] < 5e-3


def test_export_refuses_bad_format_and_size(tmp_path):
    model = _tiny()
    with pytest.raises(ValueError, match="format must be one of onnx, torchscript, exported-program"):
        export_segmenter(model, tmp_path / "x", format="tflite")
    with pytest.raises(ValueError, match=f"multiples of {model.size_multiple}"):
        export_segmenter(model, tmp_path / "x", format="torchscript", size=(model.size_multiple + 1, 64))
    with pytest.raises(FileNotFoundError, match="exported model not found"):
        load_exported(tmp_path / "missing.pt", format="torchscript")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="does not load as a torchscript file"):
        load_exported(tmp_path / "junk.pt", format="torchscript")


@pytest.mark.slow
def test_onnx_segmenter_polyphase_matches_darl(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = _tiny()
    export_segmenter(model, tmp_path / "s.onnx", format="onnx", verify=False)
    runner = load_exported(tmp_path / "s.onnx", format="onnx")
    assert runner.size_multiple == model.size_multiple
    x = _batch(1, 4 * model.size_multiple, 2 * model.size_multiple)
    with torch.no_grad():
        want = model.segment(x, polyphase=True)
    assert (runner.segment(x, polyphase=True) - want).abs().max().item() <= EXPORT_TOLERANCE["onnx"]
    with pytest.raises(ValueError, match="t must be 0"):
        runner.segment(x, t=5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    return make_checkpoint(root / "run", make_xcad(root / "data"), steps=1)


@pytest.mark.slow
def test_cli_export_torchscript_matches_the_checkpoint(checkpoint, tmp_path, capsys):
    out = tmp_path / "seg.pt"
    assert main(["export", str(checkpoint), "--format", "torchscript", "--out", str(out)]) == 0
    assert "max |exported - eager|" in capsys.readouterr().out
    model, _ = load_trained_model(checkpoint)
    fn = load_exported(out, format="torchscript")
    x = _batch(2, 2 * model.size_multiple, 2 * model.size_multiple)
    with torch.no_grad():
        assert (fn(x) - model.segment(x)).abs().max().item() <= EXPORT_TOLERANCE["torchscript"]


def test_cli_export_errors_are_one_line(checkpoint, tmp_path, capsys):
    existing = tmp_path / "exists.pt"
    existing.write_bytes(b"keep me")
    cases = [
        (["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "a.onnx")], "checkpoint: file not found"),
        (["export", str(checkpoint), "--out", str(tmp_path)], "is a folder"),
        (["export", str(checkpoint), "--out", str(existing), "--format", "torchscript"], "--overwrite"),
        (["export", str(checkpoint), "--out", str(tmp_path / "no" / "dir.pt")], "does not exist"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert existing.read_bytes() == b"keep me"


@pytest.mark.slow
def test_inference_benchmark_smoke(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "inference.py"
    spec = importlib.util.spec_from_file_location("inference_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    variants = ["eager", "inference", "channels_last", "bf16", "bf16_channels_last", "segment_default"]
    report = bench.main(["--preset", "tiny", "--sizes", "64", "--batches", "1", "--repeats", "2",
                         "--variants", *variants, "--json", str(tmp_path / "r.json")])
    rows = {r["variant"]: r for r in report["rows"]}
    assert set(rows) == set(variants) and not any("error" in r for r in rows.values())
    assert rows["inference"]["max_abs_diff_vs_eager"] == 0.0  # the same numbers, faster path
    assert 0.9 <= rows["bf16"]["mask_dice_vs_eager"] <= 1.0
    assert all(len(r["times_s"]) == 2 and r["median_s"] > 0 for r in rows.values())  # interleaved rounds
    assert rows["channels_last"]["max_abs_diff_vs_eager"] <= 1e-4  # float32 summed in another order
    assert 0.9 <= rows["bf16_channels_last"]["mask_dice_vs_eager"] <= 1.0
    # segment_default: darlkit segment's default (channels-last; bf16 only where native and its
    # masks agreed with float32 on the input, else float32), whole images through segment_image
    seg = rows["segment_default"]
    assert seg["precision"] in ("fp32", "bf16")
    from darlkit.model import BF16_MIN_DICE, native_bf16

    assert (seg["precision"] == "bf16") == (native_bf16("cpu") and seg["bf16_mask_dice"] >= BF16_MIN_DICE)
    assert seg["max_abs_diff_vs_eager"] <= (1.0 if seg["precision"] == "bf16" else 1e-4)
    assert seg["mask_dice_vs_eager"] >= (BF16_MIN_DICE - 0.01 if seg["precision"] == "bf16" else 0.999)
    assert f"| segment_default ({seg['precision']}) | 64 | 1 |" in bench.to_markdown(report)
    assert len(report["load_average_1_5_15min"]["before"]) == 3
    assert "| inference | 64 | 1 |" in bench.to_markdown(report)
    assert (tmp_path / "r.json").is_file()
    # the float32 hardware bound: the exact MACs of one call over the measured conv throughput
    (bound,) = report["hardware_bound"]
    assert bound["fp32_lower_bound_s"] == pytest.approx(bound["gmacs"] / bound["conv_gmacs_per_s"])
    assert bound["eager_over_bound"] == pytest.approx(rows["eager"]["median_s"] / bound["fp32_lower_bound_s"])
    assert "Hardware bound (float32)" in bench.to_markdown(report)


def test_inference_benchmark_bound_counts_the_segmenter_macs():
    import importlib.util
    from pathlib import Path

    from darlkit.flops import count_macs
    from darlkit.model.export import OneStepSegmenter
    from darlkit.training import TrainConfig, build_networks

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "inference.py"
    spec = importlib.util.spec_from_file_location("inference_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model, _, _ = build_networks(TrainConfig.preset("tiny"), seed=0)
    x = torch.zeros(4, 1, 32, 32)
    bound = bench.hardware_bound(model.eval(), x)
    # convolutions only (hooks) bound the exact count from below; attention and linears add little
    convs = []
    hooks = [m.register_forward_hook(lambda m, i, o: convs.append(o.numel() * m.weight[0].numel()))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        OneStepSegmenter(model)(x)
    for h in hooks:
        h.remove()
    assert bound["gmacs"] * 1e9 == pytest.approx(count_macs(OneStepSegmenter(model), x, convention="exact").total)
    assert sum(convs) <= bound["gmacs"] * 1e9 <= 1.1 * sum(convs)
    assert bound["conv_gmacs_per_s"] > 0


# ---------------------------------------------------------------- metadata in the exported files
@pytest.mark.parametrize("fmt", _formats())
def test_export_metadata_round_trip_per_format(fmt, tmp_path):
    from darlkit.model import read_export_metadata

    model = _tiny()
    path = tmp_path / {"onnx": "s.onnx", "torchscript": "s.pt", "exported-program": "s.pt2"}[fmt]
    export_segmenter(model, path, format=fmt, verify=False, metadata={"threshold": 0.25, "tta": "flip"})
    meta = read_export_metadata(path)  # format from the suffix
    assert meta == {"size_multiple": str(model.size_multiple), "segment_min_side": str(model._segment_min_side),
                    "threshold": "0.25", "tta": "flip"}
    assert read_export_metadata(path, format=fmt) == meta


def test_read_export_metadata_of_foreign_and_broken_files(tmp_path):
    from darlkit.model import read_export_metadata

    plain = tmp_path / "plain.pt"  # TorchScript written without darlkit's metadata
    torch.jit.save(torch.jit.trace(OneStepSegmenter(_tiny()), (_batch(1, 64, 64),), check_trace=False), str(plain))
    assert read_export_metadata(plain) == {}
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="does not load as a torchscript file"):
        read_export_metadata(junk)
    with pytest.raises(FileNotFoundError):
        read_export_metadata(tmp_path / "missing.pt2")


def _calibrated(checkpoint, tmp_path, threshold=-0.3, tta="flip"):
    from darlkit.training import INFERENCE_KEY, load_checkpoint, save_checkpoint

    state = load_checkpoint(checkpoint)
    state[INFERENCE_KEY] = {"threshold": threshold, "tta": tta, "split": "val", "n_images": 2}
    return save_checkpoint(state, tmp_path / "best.pt")


@pytest.mark.parametrize("fmt", _formats())
def test_cli_export_carries_the_calibrated_defaults(fmt, checkpoint, tmp_path, capsys):
    from darlkit.model import read_export_metadata
    from darlkit.training import inference_defaults

    ckpt = _calibrated(checkpoint, tmp_path)
    out = tmp_path / {"onnx": "s.onnx", "torchscript": "s.pt", "exported-program": "s.pt2"}[fmt]
    assert main(["export", str(ckpt), "--format", fmt, "--out", str(out), "--no-verify"]) == 0
    assert "threshold -0.3, tta flip (calibrated on val) in its metadata" in capsys.readouterr().out
    meta = read_export_metadata(out)
    assert (float(meta["threshold"]), meta["tta"], meta["inference_source"]) == (-0.3, "flip", "calibrated on val")
    assert meta["image_size"] == str(load_trained_model(ckpt)[1].image_size)
    if fmt == "onnx":  # darlkit segment --checkpoint FILE.onnx segments with them
        assert inference_defaults(out) == {"threshold": -0.3, "tta": "flip",
                                           "source": "calibrated on val (export metadata)"}


@pytest.mark.parametrize("meta, ok", [({}, True), ({"threshold": "0.5", "tta": "none"}, True),
                                      ({"threshold": "2"}, False), ({"threshold": "x"}, False),
                                      ({"threshold": "0", "tta": "rot90"}, False)])
def test_inference_defaults_of_an_onnx_file_check_its_metadata(meta, ok, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from darlkit.training import inference_defaults

    path = tmp_path / "s.onnx"
    export_segmenter(_tiny(), path, format="onnx", verify=False, metadata=meta)
    if not ok:
        with pytest.raises(ValueError, match="invalid inference metadata"):
            inference_defaults(path)
        return
    want = ({"threshold": 0.0, "tta": "none", "source": "paper rule"} if not meta else
            {"threshold": 0.5, "tta": "none", "source": "checkpoint (export metadata)"})
    assert inference_defaults(path) == want


def test_inference_profile_benchmark_smoke(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "inference_profile.py"
    spec = importlib.util.spec_from_file_location("inference_profile_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--preset", "tiny", "--size", "32", "--precision", "fp32", "--top", "4"])
    ops = report["ops"]
    assert len(ops) == 4 and all(o["calls"] >= 1 and o["self_s"] >= 0 for o in ops)
    assert [o["self_s"] for o in ops] == sorted((o["self_s"] for o in ops), reverse=True)
    assert 0 < sum(o["share"] for o in ops) <= 1.0 + 1e-9
    assert any("conv" in o["op"] for o in ops)  # the convolutions are among the costliest operators
    assert report["precision"] == "fp32" and report["channels_last"] is True  # the CPU default
    assert report["total_s"] > 0 and set(report["parts_s"]) == {"unet", "generator"}
    assert f"| `{ops[0]['op']}` |" in bench.to_markdown(report)
    with pytest.raises(SystemExit):
        bench.main(["--size", "33"])
    assert "--size must be an even number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--top", "0"])
    assert "--batch and --top must be >= 1" in capsys.readouterr().err
