"""One-step segmentation speed: eager vs inference path vs bf16 vs compiled vs onnxruntime.

Variants (paper networks unless ``--preset tiny``; every variant segments the same inputs):

- ``eager``: ``DARL.segment`` in float32 under ``torch.no_grad`` (the baseline of the ratios).
- ``inference``: :class:`darlkit.model.export.OneStepSegmenter` (spectral norms folded once,
  no per-call Python checks) under ``torch.inference_mode``.
- ``bf16``: ``inference`` under CPU bf16 autocast (native on CPUs with AVX512-BF16 / AMX).
- ``channels_last``: ``inference`` with the networks and inputs in the channels-last memory format.
- ``bf16_channels_last``: ``channels_last`` under bf16 autocast.
- ``compiled``: ``inference`` through ``torch.compile`` with Inductor freezing (warm-up, i.e.
  compilation, reported separately, never hidden in the timing).
- ``compiled_bf16``: ``compiled`` under bf16 autocast.
- ``onnxruntime``: the ONNX export run by onnxruntime (``pip install 'darlkit[onnx]'``; export
  time reported as set-up).
- ``segment_default``: the whole ``darlkit segment`` path at its defaults (less file I/O):
  ``segment_image`` of the whole images (default tiling, padding, polyphase split) with the
  :class:`~darlkit.model.InferenceSegmenter` that ``--runtime torch --precision auto`` builds:
  channels-last on a CPU, bf16 where the CPU has native bf16 and the bf16 masks of the first
  input agree with float32 (mask Dice >= 0.99, checked in the warm-up call as the CLI checks its
  first image), else float32; the row records the precision chosen and that Dice.
- ``segment_onnx``: the same whole-image path through the ONNX export (``darlkit segment
  --runtime onnx``; export reported as set-up; needs onnxruntime).

The hardware bound (``--bound``, on by default): the multiply-accumulates of one float32 call
(``darlkit.flops.count_macs(..., convention="exact")``: convolutions and matrix products), and
the machine's float32 convolution throughput measured in the same run on the network's own most
frequent convolution (3x3, 64 -> 64 channels at the input's side, the best of 5 calls): their
ratio is the time no float32 variant on PyTorch's own convolution kernels can beat on this
machine, so it bounds their float32 speed-ups (onnxruntime has its own kernels and can go below
it, as can bf16 where the CPU has native bf16).

Each (size, batch) cell calls every variant once (warm-up, reported), then runs ``--repeats``
rounds calling each variant once in turn (interleaved, so a change of the shared machine's load
affects all alike) and reports each variant's median, the ratio to ``eager`` measured in the
same run, and for the reduced-precision variants the
Dice between their masks and the float32 masks (a bf16 variant is only usable where that
agreement is >= 0.99). A variant that fails is reported with its error.

Usage::

    python benchmarks/inference.py                                  # 512 and 1024, batch 1 and 8
    python benchmarks/inference.py --sizes 512 --batches 1 --save   # writes benchmarks/results/
    python benchmarks/inference.py --preset tiny --sizes 64 --batches 1 --repeats 1   # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from darlkit._platform import device_name
from darlkit.metrics import dice_score
from darlkit.model import InferenceSegmenter, native_bf16, segment_image
from darlkit.model.export import OneStepSegmenter, export_segmenter, load_exported
from darlkit.polyphase import polyphase_merge, polyphase_split
from darlkit.training import TrainConfig, build_networks

VARIANTS: tuple[str, ...] = (
    "eager", "inference", "channels_last", "bf16", "bf16_channels_last", "compiled", "compiled_bf16", "onnxruntime",
    "segment_default", "segment_onnx",
)


def _bf16(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fn(x).float()

    return run


def _compiled(seg: OneStepSegmenter) -> Callable[[torch.Tensor], torch.Tensor]:
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    return torch.compile(seg, dynamic=False)


def build_variant(name: str, model: torch.nn.Module, workdir: Path) -> tuple[Callable, float]:
    """The callable of one variant and its set-up time (export; compilation happens at warm-up)."""
    t0 = time.perf_counter()
    if name == "eager":
        fn = model.segment
    elif name == "onnxruntime":
        path = workdir / "segmenter.onnx"
        export_segmenter(model, path, format="onnx", verify=False)
        fn = load_exported(path, format="onnx")
    elif name == "segment_onnx":
        path = workdir / "segment_onnx.onnx"
        export_segmenter(model, path, format="onnx", verify=False)
        fn = _whole_images(InferenceSegmenter(model, onnx=path), model)
    elif name == "segment_default":
        fn = _segment_default(model)
    else:
        seg = OneStepSegmenter(model)
        if "channels_last" in name:
            seg = seg.to(memory_format=torch.channels_last)
            fn = _channels_last(seg)
        else:
            fn = _compiled(seg) if name.startswith("compiled") else seg
        if "bf16" in name:
            fn = _bf16(fn)
    return fn, time.perf_counter() - t0


def _channels_last(seg: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        return seg(x.contiguous(memory_format=torch.channels_last))

    return run


def _segment_default(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``darlkit segment``'s default segmenter, its precision chosen on the first input it sees."""
    from darlkit.model import BF16_MIN_DICE, bf16_agreement

    fp32 = InferenceSegmenter(model, precision="fp32")
    state: dict[str, Any] = {}

    def run(x: torch.Tensor) -> torch.Tensor:
        if "fn" not in state:
            seg, precision = fp32, "fp32"
            if native_bf16("cpu"):
                bf16 = fp32.with_precision("bf16")  # shares fp32's networks, as darlkit segment does
                size = int(getattr(model.unet, "image_size", 256))
                state["bf16_mask_dice"] = bf16_agreement(
                    fp32, bf16, [polyphase_merge(x)], lambda seg, image: segment_image(seg, image, image_size=size))
                if state["bf16_mask_dice"] >= BF16_MIN_DICE:
                    seg, precision = bf16, "bf16"
            state.update(fn=_whole_images(seg, model), precision=precision)
        return state["fn"](x)

    run.choice = state  # type: ignore[attr-defined]
    return run


def _whole_images(seg: InferenceSegmenter, model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``segment_image`` as ``darlkit segment`` calls it, on the images the polyphase halves come from.

    The benchmark's inputs are the four polyphase halves of each image (a batch of 4 x batch);
    this merges them back, segments the images with the default tiling (tile = 2 x the training
    crop) and splits the output again, so its output compares with the other variants'."""
    image_size = int(getattr(model.unet, "image_size", 256))

    def run(x: torch.Tensor) -> torch.Tensor:
        return polyphase_split(segment_image(seg, polyphase_merge(x), image_size=image_size))

    return run


def _call(fn: Callable, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    ctx = torch.inference_mode() if fn.__class__.__name__ != "OnnxSegmenter" else contextlib.nullcontext()
    with ctx:
        t0 = time.perf_counter()
        out = fn(x)
        return time.perf_counter() - t0, out.float().clone() if isinstance(out, torch.Tensor) else out


def time_cell(fns: dict[str, Callable], x: torch.Tensor, repeats: int) -> dict[str, dict[str, Any]]:
    """One warm-up call of every variant, then ``repeats`` rounds calling each variant once in turn.

    Interleaving the rounds makes a change of the machine's load affect every variant alike; each
    variant's median over the rounds is reported, with its warm-up (first call: compilation
    for the compiled variants) separately."""
    cells: dict[str, dict[str, Any]] = {}
    for name, fn in fns.items():
        try:
            warm, out = _call(fn, x)
            cells[name] = {"warmup_s": warm, "times_s": [], "out": out}
        except Exception as exc:  # noqa: BLE001 - report, do not stop the benchmark
            cells[name] = {"error": f"{type(exc).__name__}: {exc}"}
    for _ in range(repeats):
        for name, fn in fns.items():
            if "error" not in cells[name]:
                cells[name]["times_s"].append(_call(fn, x)[0])
    for cell in cells.values():
        if "error" not in cell:
            cell["median_s"] = statistics.median(cell["times_s"])
    return cells


def conv_throughput(side: int, batch: int, repeats: int = 5) -> float:
    """Float32 multiply-accumulates per second of the networks' most frequent convolution
    (3x3, 64 -> 64 channels, padding 1) on ``batch`` inputs of ``side`` x ``side``; best of ``repeats``."""
    x = torch.randn(batch, 64, side, side)
    w = torch.randn(64, 64, 3, 3)
    b = torch.randn(64)
    best = float("inf")
    with torch.inference_mode():
        torch.nn.functional.conv2d(x, w, b, padding=1)
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.nn.functional.conv2d(x, w, b, padding=1)
            best = min(best, time.perf_counter() - t0)
    return batch * side * side * 64 * 64 * 9 / best


def hardware_bound(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """MACs of one float32 call on ``x``, the measured convolution throughput, and their ratio (s)."""
    from darlkit.flops import count_macs

    macs = count_macs(OneStepSegmenter(model), x, convention="exact").total
    rate = conv_throughput(x.shape[-1], x.shape[0])
    return {"gmacs": macs / 1e9, "conv_gmacs_per_s": rate / 1e9, "fp32_lower_bound_s": macs / rate}


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every variant at every (size, batch); returns the report (also printed)."""
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, _, _ = build_networks(TrainConfig.preset(args.preset), seed=args.seed)
    model.eval()
    rows, bounds = [], []
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        fns: dict[str, tuple[Callable, float]] = {}
        failed: dict[str, str] = {}
        for name in args.variants:
            try:
                fns[name] = build_variant(name, model, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - report, do not stop the benchmark
                failed[name] = f"{type(exc).__name__}: {exc}"
        for size in args.sizes:
            for batch in args.batches:
                gen = torch.Generator().manual_seed(args.seed)
                # The paper's rule: a 2s x 2s image is segmented as its four s x s polyphase
                # sub-images in one batch; here the input is that batch of 4 * batch images.
                x = torch.rand((4 * batch, 1, size // 2, size // 2), generator=gen) * 2 - 1
                cells = time_cell({k: v[0] for k, v in fns.items()}, x, args.repeats)
                base = cells.get("eager", {})
                if args.bound:
                    bound = hardware_bound(model, x)
                    bounds.append({"size": size, "batch": batch, **bound})
                    if "median_s" in base:
                        bounds[-1]["eager_over_bound"] = base["median_s"] / bound["fp32_lower_bound_s"]
                    print(f"{'bound':>14} {size:>5}px batch {batch:>2}: {bound['gmacs']:.1f} GMAC at "
                          f"{bound['conv_gmacs_per_s']:.1f} GMAC/s = {bound['fp32_lower_bound_s']:.3f} s", flush=True)
                for name in args.variants:
                    entry: dict[str, Any] = {"variant": name, "size": size, "batch": batch}
                    if name in failed:
                        entry["error"] = failed[name]
                    else:
                        cell = dict(cells[name])
                        out = cell.pop("out", None)
                        entry.update(cell, setup_s=fns[name][1])
                        choice = getattr(fns[name][0], "choice", None)
                        if choice:
                            entry.update({k: v for k, v in choice.items() if k != "fn"})
                        if "error" not in cell and name != "eager" and "median_s" in base:
                            entry["speedup_vs_eager"] = base["median_s"] / cell["median_s"]
                            entry["max_abs_diff_vs_eager"] = float((out - base["out"]).abs().max())
                            entry["mask_dice_vs_eager"] = float(dice_score(out, (base["out"] > 0).float()).mean())
                    rows.append(entry)
                    _print_row(entry)
    return {
        "benchmark": "inference",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": device_name("cpu"),
        "native_bf16": native_bf16("cpu"),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "preset": args.preset,
        "seed": args.seed,
        "repeats": args.repeats,
        "load_average_1_5_15min": {"before": load_before, "after": _load()},
        "rows": rows,
        "hardware_bound": bounds,
    }


def _print_row(e: dict[str, Any]) -> None:
    head = f"{e['variant']:>14} {e['size']:>5}px batch {e['batch']:>2}: "
    if "error" in e:
        print(head + "FAILED " + e["error"].splitlines()[0][:200], flush=True)
        return
    extra = ""
    if "speedup_vs_eager" in e:
        extra = f"  x{e['speedup_vs_eager']:.2f} vs eager, mask Dice {e['mask_dice_vs_eager']:.4f}"
    print(head + f"median {e['median_s']:.3f} s (warm-up {e['warmup_s']:.1f} s){extra}", flush=True)


def to_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    lines = [
        f"# One-step segmentation speed ({report['date'][:10]})",
        "",
        f"Command: `{report['command']}`; machine: {report['machine']}, {report['threads']} threads, "
        f"torch {report['torch']}; preset {report['preset']}, seed {report['seed']}, median of "
        f"{report['repeats']} interleaved rounds after one warm-up call. Sizes are image sides (segmented as four "
        f"polyphase halves). Load average (1, 5, 15 min) before / after: {report.get('load_average_1_5_15min')}.",
        "",
        "| variant | size | batch | median s | warm-up s | x eager | mask Dice vs fp32 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in report["rows"]:
        if "error" in e:
            lines.append(f"| {e['variant']} | {e['size']} | {e['batch']} | failed: {e['error'][:80]} | | | |")
            continue
        sp = f"{e['speedup_vs_eager']:.2f}" if "speedup_vs_eager" in e else "1.00"
        dice = f"{e['mask_dice_vs_eager']:.4f}" if "mask_dice_vs_eager" in e else ""
        label = e["variant"] + (f" ({e['precision']})" if "precision" in e else "")
        lines.append(f"| {label} | {e['size']} | {e['batch']} | {e['median_s']:.3f} | {e['warmup_s']:.1f} | {sp} | {dice} |")
    if report.get("hardware_bound"):
        lines += [
            "",
            "Hardware bound (float32): multiply-accumulates of one call / the convolution throughput measured "
            "in this run (3x3, 64 -> 64 at the input's side, best of 5): no float32 variant on PyTorch's "
            "convolution kernels can be faster (onnxruntime uses its own kernels).",
            "",
            "| size | batch | GMAC per call | conv GMAC/s | fp32 lower bound s | eager / bound |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for b in report["hardware_bound"]:
            ratio = f"{b['eager_over_bound']:.2f}" if "eager_over_bound" in b else ""
            lines.append(f"| {b['size']} | {b['batch']} | {b['gmacs']:.1f} | {b['conv_gmacs_per_s']:.1f} | "
                         f"{b['fp32_lower_bound_s']:.3f} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper", choices=("paper", "tiny"))
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-bound", dest="bound", action="store_false",
                   help="skip the hardware bound (MACs per call over the measured convolution throughput)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    p.add_argument("--save", action="store_true", help="write benchmarks/results/inference_cpu_<date>.json/.md")
    p.add_argument("--tag", default="", help="suffix of the saved file names (e.g. _512)")
    args = p.parse_args(argv)
    for s in args.sizes:
        if s <= 0 or s % 2:
            p.error(f"--sizes must be positive even numbers, got {s}")
    report = run(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.save:
        out = Path(__file__).resolve().parent / "results" / f"inference_cpu_{report['date'][:10]}{args.tag}"
        out.with_suffix(".json").write_text(json.dumps(report, indent=2))
        out.with_suffix(".md").write_text(to_markdown(report))
    return report


if __name__ == "__main__":
    main()
