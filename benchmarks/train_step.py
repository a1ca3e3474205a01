"""Time one DARL training iteration and one 512x512 polyphase segmentation.

Configurations (all at the paper's networks unless ``--preset tiny``):

- ``eager``: float32, contiguous, ``backend="eager"`` norms (the plain PyTorch reference).
- ``channels_last``: eager with the channels-last memory format.
- ``fused``: ``backend="compile"`` fused SPADE / instance-norm kernels.
- ``bf16``: eager with bf16 autocast.
- ``fused_bf16``: fused kernels + bf16 autocast.
- ``fused_channels_last``: fused kernels + channels-last.
- ``compile``: fused + bf16 + ``torch.compile`` of the U-Net, generator and discriminators
  (``--with-compile``; compilation takes minutes on a CPU and is excluded from the timing).

The fused kernels are compiled shape-generic (one kernel per dtype, memory format and
activation), so dynamo's default recompile limit applies unchanged.
A variant that fails is reported with its error instead of a time.

A training iteration is ``DARLTrainer.train_step`` (G step: A, B and cycle paths, two
discriminator forwards, backward, Adam; D step: pooled fakes, four discriminator forwards,
backward, Adam) at 256x256, batch 1. Segmentation is ``DARL.segment`` of one 512x512 image as
its four polyphase 256x256 sub-images in one batch of 4 ("batched") versus four separate calls
("sequential"). Reported: the median of ``--repeats`` timed runs after ``--warmup`` runs.

Usage::

    python benchmarks/train_step.py                      # prints a table
    python benchmarks/train_step.py --json --save        # also writes benchmarks/results/
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from darlkit._platform import device_name
from darlkit.polyphase import polyphase_merge, polyphase_split
from darlkit.training import DARLTrainer, TrainConfig, build_networks

VARIANTS = {
    "eager": dict(backend="eager"),
    "channels_last": dict(backend="eager", channels_last=True),
    "fused": dict(backend="compile"),
    "bf16": dict(backend="eager", amp="bf16"),
    "fused_bf16": dict(backend="compile", amp="bf16"),
    "fused_channels_last": dict(backend="compile", channels_last=True),
    "compile": dict(backend="compile", amp="bf16", compile=True),
}


def _time(fn, warmup: int, repeats: int) -> dict[str, float]:
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "warmup_s": warm, "runs": times}


def bench_variant(name: str, preset: str, size: int, warmup: int, repeats: int, seg: bool) -> dict:
    """Time one training iteration (and the segmentation) of one variant."""
    opts = dict(VARIANTS[name])
    cfg = TrainConfig.preset(preset, image_size=size, batch_size=1, **opts)
    model, d_s, d_a = build_networks(cfg)
    trainer = DARLTrainer(model, d_s, d_a, cfg, progress=False)
    g = torch.Generator().manual_seed(0)
    batch = {
        "angiogram": torch.rand(1, 1, size, size, generator=g) * 2 - 1,
        "background": torch.rand(1, 1, size, size, generator=g) * 2 - 1,
        "mask": torch.where(torch.rand(1, 1, size, size, generator=g) > 0.9, 1.0, -1.0),
    }
    out = {"variant": name, "options": opts, "train_step": _time(lambda: trainer.train_step(batch), warmup, repeats)}
    if seg:
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        image = (torch.rand(1, 1, 2 * size, 2 * size, generator=g) * 2 - 1).contiguous(memory_format=fmt)
        model.eval()
        ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if cfg.amp == "bf16" else None

        def batched():
            with torch.no_grad(), (ctx() if ctx else contextlib.nullcontext()):
                return model.segment(image, polyphase=True)

        def sequential():
            with torch.no_grad(), (ctx() if ctx else contextlib.nullcontext()):
                subs = polyphase_split(image)
                return polyphase_merge(torch.cat([model.segment(subs[k : k + 1]) for k in range(4)]))

        out["segment_batched"] = _time(batched, warmup, repeats)
        out["segment_sequential"] = _time(sequential, warmup, repeats)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=("paper", "tiny"), default="paper")
    p.add_argument("--size", type=int, default=None, help="training crop side (default: the preset's)")
    p.add_argument("--variants", nargs="+", default=["eager", "channels_last", "fused", "bf16", "fused_bf16"],
                   choices=list(VARIANTS))
    p.add_argument("--with-compile", action="store_true", help="also time the torch.compile variant")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-segment", action="store_true")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--save", action="store_true", help="write benchmarks/results/train_step_cpu_<date>.json/.md")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = args.size or TrainConfig.preset(args.preset).image_size
    variants = list(args.variants) + (["compile"] if args.with_compile and "compile" not in args.variants else [])
    results = []
    for v in variants:
        try:
            results.append(bench_variant(v, args.preset, size, args.warmup, args.repeats, not args.no_segment))
        except Exception as exc:  # noqa: BLE001 - report and go on with the other variants
            results.append({"variant": v, "options": VARIANTS[v], "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
        print(f"[train_step] {v} done", file=sys.stderr, flush=True)
    report = {
        "benchmark": "train_step",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "preset": args.preset,
        "image_size": size,
        "segment_size": 2 * size,
        "batch_size": 1,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "results": results,
    }
    md = _markdown(report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(md)
    if args.save:
        out = Path(__file__).resolve().parent / "results"
        out.mkdir(exist_ok=True)
        stem = f"train_step_cpu_{_dt.date.today().isoformat()}"
        (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / f"{stem}.md").write_text(md + "\n")


def _markdown(report: dict) -> str:
    ok = [r for r in report["results"] if "error" not in r]
    base = ok[0]["train_step"]["median_s"] if ok else float("nan")
    lines = [
        f"# DARL training iteration on CPU ({report['device']}, {report['cpu_threads']} threads, torch {report['torch']})",
        "",
        f"{report['preset']} networks, {report['image_size']}x{report['image_size']} batch 1; segmentation of one "
        f"{report['segment_size']}x{report['segment_size']} image (4 polyphase sub-images). Median of "
        f"{report['repeats']} runs after {report['warmup']} warm-up; {report['date']}.",
        "",
        "| variant | train step (s) | speed-up | segment batched (s) | segment sequential (s) | warm-up (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error']} | | | | |")
            continue
        ts = r["train_step"]["median_s"]
        sb = r.get("segment_batched", {}).get("median_s")
        ss = r.get("segment_sequential", {}).get("median_s")
        lines.append(
            f"| {r['variant']} | {ts:.3f} | {base / ts:.2f}x | "
            f"{'-' if sb is None else f'{sb:.3f}'} | {'-' if ss is None else f'{ss:.3f}'} | "
            f"{r['train_step']['warmup_s']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
