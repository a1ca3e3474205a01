"""Where one-step segmentation spends its time: a per-operator profile of the inference path.

Runs :class:`darlkit.model.InferenceSegmenter` (paper networks unless ``--preset``; random
weights, seed ``--seed``) on a batch of ``--batch`` images of ``--size`` pixels split into four
polyphase halves, as ``darlkit segment`` does, once to warm up and once under
``torch.profiler``, and reports the operators by self CPU time (their share of the call), the
time of the U-Net and of the generator measured separately, and the call's total. It tells
which part of a call a faster path has to remove: at bf16 on a CPU with native bf16 the
convolutions are only a quarter of it, the rest is elementwise work (SiLU, GroupNorm, adds,
concatenations, dtype copies) that fusion (``torch.compile``) can remove.

Usage::

    python benchmarks/inference_profile.py --precision bf16 --threads 1 --save
    python benchmarks/inference_profile.py --preset tiny --size 64 --top 5   # smoke
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from darlkit._platform import device_name
from darlkit.model import PRECISIONS, InferenceSegmenter
from darlkit.polyphase import polyphase_split
from darlkit.training import PRESETS, TrainConfig, build_networks


def profile_call(args: argparse.Namespace) -> dict[str, Any]:
    """Profile one segmentation call; returns the report (also printed by ``main``)."""
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, _, _ = build_networks(TrainConfig.preset(args.preset), seed=args.seed)
    model.eval()
    seg = InferenceSegmenter(model, precision=args.precision)
    gen = torch.Generator().manual_seed(args.seed)
    x = polyphase_split(torch.rand(args.batch, 1, args.size, args.size, generator=gen) * 2 - 1)
    seg(x)  # warm-up (the fused-norm probe compile and oneDNN's first-call set-up)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        seg(x)
        total = time.perf_counter() - start
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    self_total = sum(e.self_cpu_time_total for e in events) or 1.0
    ops = [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "share": e.self_cpu_time_total / self_total,
            "calls": e.count} for e in events[: args.top]]
    parts = _part_times(seg, x)
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["inference_profile.py", *sys.argv[1:]]),
        "machine": device_name("cpu"),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "preset": args.preset,
        "seed": args.seed,
        "size": args.size,
        "batch": args.batch,
        "precision": seg.precision,
        "channels_last": seg.channels_last,
        "total_s": total,
        "parts_s": parts,
        "ops": ops,
    }


def _part_times(seg: InferenceSegmenter, x: torch.Tensor) -> dict[str, float]:
    """Seconds of the U-Net and of the generator on ``x`` (network input), as the segmenter runs them."""
    nets = seg._seg
    if seg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    steps = torch.zeros(x.shape[0], dtype=torch.long)
    with torch.inference_mode(), seg._autocast(x.device):  # the segmenter's own precision rule
        for _ in range(2):  # the second round is timed (the first warms this call pattern up)
            start = time.perf_counter()
            eps = nets.unet(x, steps)
            mid = time.perf_counter()
            nets.generator(torch.cat([x, eps], dim=1))
            end = time.perf_counter()
    return {"unet": mid - start, "generator": end - mid}


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    lines = [
        f"# Inference profile ({report['date'][:10]})",
        "",
        f"Command: `{report['command']}`; machine: {report['machine']}, {report['threads']} threads, "
        f"torch {report['torch']}; preset {report['preset']} (random weights, seed {report['seed']}), "
        f"{report['batch']} image(s) of {report['size']} px as four polyphase halves, precision "
        f"{report['precision']}, channels-last {report['channels_last']}.",
        "",
        f"One profiled call: {report['total_s']:.3f} s; U-Net {report['parts_s']['unet']:.3f} s, generator "
        f"{report['parts_s']['generator']:.3f} s (unprofiled, measured separately).",
        "",
        "| operator | self s | share | calls |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| `{o['op']}` | {o['self_s']:.3f} | {o['share']:.1%} | {o['calls']} |" for o in report["ops"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper", choices=PRESETS)
    p.add_argument("--size", type=int, default=512, help="image side (even)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--precision", default="bf16", choices=PRECISIONS)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=15, help="operators to list")
    p.add_argument("--save", action="store_true", help="write benchmarks/results/inference_profile_<date>.json/.md")
    p.add_argument("--tag", default="", help="suffix of the saved file names")
    args = p.parse_args(argv)
    if args.size < 2 or args.size % 2:
        p.error(f"--size must be an even number >= 2, got {args.size}")
    if args.batch < 1 or args.top < 1 or args.threads < 0:
        p.error(f"--batch and --top must be >= 1 and --threads >= 0, got {args.batch}, {args.top}, {args.threads}")
    report = profile_call(args)
    text = to_markdown(report)
    print(text)
    if args.save:
        out = Path(__file__).resolve().parent / "results" / f"inference_profile_{report['date'][:10]}{args.tag}"
        out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        out.with_suffix(".md").write_text(text)
        print(f"wrote {out}.json/.md")
    return report


if __name__ == "__main__":
    main()
