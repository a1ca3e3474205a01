"""Benchmark the vessel mask synthesizer (both styles) and the angiogram renderer.

For each style it generates ``--batch`` masks per repeat with ``FractalVesselSynthesizer.masks``
(fresh indices every repeat, so nothing is cached) and reports masks per second: the median over
``--repeats`` timed repeats after one warm-up batch, with min and max. With ``--angiograms`` it
also times one synthetic XCAD training triplet as ``write_synthetic_xcad`` makes it (two clean
backgrounds, one angiogram, noise), without PNG encoding.

Usage::

    python benchmarks/synth.py                    # 512x512, batch 32, 5 repeats, both styles
    python benchmarks/synth.py --threads 2 --json
    python benchmarks/synth.py --size 256 --styles tree --angiograms

Results are written to ``benchmarks/results/synth_<host>_<date>_<threads>threads.json`` unless
``--no-save``.
The load average and CPU count are recorded: on a shared machine numbers vary with the load.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from darlkit.synthesis import FractalVesselSynthesizer, render_angiogram, render_background


def bench_style(style: str, size: int, batch: int, repeats: int) -> dict:
    synth = FractalVesselSynthesizer(size, style, seed=0)
    synth.masks(range(batch))  # warm-up
    rates = []
    for r in range(repeats):
        start = (r + 1) * batch
        t0 = time.perf_counter()
        synth.masks(range(start, start + batch))
        rates.append(batch / (time.perf_counter() - t0))
    return {"style": style, "masks_per_s": statistics.median(rates), "min": min(rates), "max": max(rates), "rates": rates}


def bench_angiograms(size: int, n: int, repeats: int) -> dict:
    masks = FractalVesselSynthesizer(size, "tree", seed=0).masks(range(n))
    render_background(size, seed=0)  # warm-up
    rates = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for i in range(n):
            bg = render_background(size, seed=(r * n + i) * 2, noise=False)
            render_angiogram(bg, masks[i : i + 1], seed=r * n + i)
            render_background(size, seed=(r * n + i) * 2 + 1, noise=True)
        rates.append(n / (time.perf_counter() - t0))
    return {"style": "angiogram triplets", "triplets_per_s": statistics.median(rates), "min": min(rates), "max": max(rates), "rates": rates}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32, help="masks per timed batch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--styles", nargs="+", default=["ssvs", "tree"], choices=["ssvs", "tree"])
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--angiograms", action="store_true", help="also time background + angiogram rendering")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [bench_style(s, args.size, args.batch, args.repeats) for s in args.styles]
    if args.angiograms:
        rows.append(bench_angiograms(args.size, max(2, args.batch // 8), args.repeats))
    now = _dt.datetime.now(_dt.timezone.utc)
    result = {
        "benchmark": "synth",
        "date": now.isoformat(timespec="seconds"),
        "host": platform.node(),
        "device": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "size": args.size,
        "batch": args.batch,
        "repeats": args.repeats,
        "results": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"# synth benchmark {result['date']} on {result['host']} ({result['cpu_count']} CPUs, {result['torch_threads']} torch threads, load {result['load_average']})")
        print(f"{'what':<20} {'median/s':>10} {'min':>8} {'max':>8}   ({args.size}x{args.size}, batch {args.batch}, {args.repeats} repeats)")
        for r in rows:
            key = "masks_per_s" if "masks_per_s" in r else "triplets_per_s"
            print(f"{r['style']:<20} {r[key]:>10.1f} {r['min']:>8.1f} {r['max']:>8.1f}")
    if not args.no_save:
        out = Path(__file__).resolve().parent / "results" / f"synth_{platform.node() or 'host'}_{now:%Y%m%d}_{torch.get_num_threads()}threads.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        if not args.json:
            print(f"saved {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
