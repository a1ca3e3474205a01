"""One-step segmentation speed: eager vs inference path vs bf16 vs compiled vs onnxruntime.

Variants (paper networks unless ``--preset tiny``; every variant segments the same inputs):

- ``eager``: ``DARL.segment`` in float32 under ``torch.no_grad`` (the baseline of the ratios).
- ``inference``: :class:`darlkit.model.export.OneStepSegmenter` (spectral norms folded once,
  no per-call Python checks) under ``torch.inference_mode``.
- ``bf16``: ``inference`` under CPU bf16 autocast (native on CPUs with AVX512-BF16 / AMX).
- ``compiled``: ``inference`` through ``torch.compile`` with Inductor freezing (warm-up, i.e.
  compilation, reported separately, never hidden in the timing).
- ``compiled_bf16``: ``compiled`` under bf16 autocast.
- ``onnxruntime``: the ONNX export run by onnxruntime (``pip install 'darlkit[onnx]'``; export
  time reported as warm-up).

Each (size, batch) cell reports the median of ``--repeats`` timed calls after one warm-up call,
the ratio to ``eager`` measured in the same run, and for the reduced-precision variants the
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
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from darlkit._platform import device_name
from darlkit.metrics import dice_score
from darlkit.model.export import OneStepSegmenter, export_segmenter, load_exported
from darlkit.training import TrainConfig, build_networks

VARIANTS: tuple[str, ...] = ("eager", "inference", "bf16", "compiled", "compiled_bf16", "onnxruntime")


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
    else:
        seg = OneStepSegmenter(model)
        fn = _compiled(seg) if name.startswith("compiled") else seg
        if name.endswith("bf16"):
            fn = _bf16(fn)
    return fn, time.perf_counter() - t0


def time_cell(fn: Callable, x: torch.Tensor, repeats: int) -> dict[str, Any]:
    """Warm-up call then ``repeats`` timed calls of ``fn(x)`` under inference mode."""
    ctx = torch.inference_mode() if fn.__class__.__name__ != "OnnxSegmenter" else contextlib.nullcontext()
    with ctx:
        t0 = time.perf_counter()
        out = fn(x)
        warm = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return {"warmup_s": warm, "median_s": statistics.median(times), "times_s": times, "out": out}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every variant at every (size, batch); returns the report (also printed)."""
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, _, _ = build_networks(TrainConfig.preset(args.preset), seed=args.seed)
    model.eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fns: dict[str, tuple[Callable, float] | str] = {}
        for name in args.variants:
            try:
                fns[name] = build_variant(name, model, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - report, do not stop the benchmark
                fns[name] = f"{type(exc).__name__}: {exc}"
        for size in args.sizes:
            for batch in args.batches:
                gen = torch.Generator().manual_seed(args.seed)
                # The paper's rule: a 2s x 2s image is segmented as its four s x s polyphase
                # sub-images in one batch; here the input is that batch of 4 * batch images.
                x = torch.rand((4 * batch, 1, size // 2, size // 2), generator=gen) * 2 - 1
                base = None
                for name in args.variants:
                    entry: dict[str, Any] = {"variant": name, "size": size, "batch": batch}
                    built = fns[name]
                    if isinstance(built, str):
                        entry["error"] = built
                    else:
                        fn, setup = built
                        try:
                            cell = time_cell(fn, x, args.repeats)
                        except Exception as exc:  # noqa: BLE001
                            entry["error"] = f"{type(exc).__name__}: {exc}"
                        else:
                            out = cell.pop("out").float()
                            entry.update(cell, setup_s=setup)
                            if name == "eager":
                                base = (cell["median_s"], out)
                            elif base is not None:
                                entry["speedup_vs_eager"] = base[0] / cell["median_s"]
                                entry["max_abs_diff_vs_eager"] = float((out - base[1]).abs().max())
                                entry["mask_dice_vs_eager"] = float(dice_score(out, (base[1] > 0).float()).mean())
                    rows.append(entry)
                    _print_row(entry)
    return {
        "benchmark": "inference",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": device_name("cpu"),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "preset": args.preset,
        "seed": args.seed,
        "repeats": args.repeats,
        "rows": rows,
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
        f"{report['repeats']} after one warm-up call. Sizes are image sides (segmented as four polyphase halves).",
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
        lines.append(f"| {e['variant']} | {e['size']} | {e['batch']} | {e['median_s']:.3f} | {e['warmup_s']:.1f} | {sp} | {dice} |")
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
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    p.add_argument("--save", action="store_true", help="write benchmarks/results/inference_cpu_<date>.json/.md")
    args = p.parse_args(argv)
    for s in args.sizes:
        if s <= 0 or s % 2:
            p.error(f"--sizes must be positive even numbers, got {s}")
    report = run(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.save:
        out = Path(__file__).resolve().parent / "results" / f"inference_cpu_{report['date'][:10]}"
        out.with_suffix(".json").write_text(json.dumps(report, indent=2))
        out.with_suffix(".md").write_text(to_markdown(report))
    return report


if __name__ == "__main__":
    main()
