"""Benchmark the fused normalization ops: eager vs torch.compile vs Triton (CUDA).

For each op (SPADE modulation ``spade``, affine instance norm ``inorm``; both with the fused
LeakyReLU(0.2) used by the DARL generator), shape, dtype and backend it reports the median
forward time and the median forward+backward time (``torch.autograd.grad`` of every input),
the ratio to eager (backends are timed in interleaved rounds, so load changes on a shared
machine hit all of them alike), and the fraction of the memory-bandwidth bound: the bytes the op must move
at least (each large tensor read or written once) divided by the copy bandwidth measured in the
same run (a large ``Tensor.copy_``), over the measured time.

Bytes counted (``E`` = bytes of one (N, C, H, W) tensor):

- spade forward: x, gamma, beta read, y written = 4E; backward: dy, x, gamma, y read, dx,
  dgamma, dbeta written = 7E; forward+backward = 11E.
- inorm forward: x read, y written = 2E; backward: dy, x, y read, dx written = 4E; total 6E.

Usage::

    python benchmarks/kernels.py                 # all default shapes, fp32 and bf16
    python benchmarks/kernels.py --quick         # one small shape, few repeats
    python benchmarks/kernels.py --shapes 4x64x256x256 --dtypes fp32 --ops spade
    python benchmarks/kernels.py --json          # JSON on stdout instead of the table

Results are written to ``benchmarks/results/kernels_<device>_<date>.json`` and ``.md`` (device
name and date in the name and the content) unless ``--no-save``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import torch

from darlkit._platform import device_name
from darlkit.kernels import instance_norm_act, spade_norm
from darlkit.kernels.composite import compile_available

DEFAULT_SHAPES = [(4, 256, 64, 64), (4, 128, 128, 128), (4, 64, 256, 256), (16, 256, 64, 64), (1, 64, 256, 256)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SLOPE = 0.2
TENSORS_MOVED = {"spade": (4, 11), "inorm": (2, 6)}  # (forward, forward+backward), in units of E


def parse_shape(text: str) -> tuple[int, int, int, int]:
    parts = [int(p) for p in re.split(r"[x,]", text.strip()) if p]
    if len(parts) != 4 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"shape must be NxCxHxW with positive sizes, got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_call(fn, device: torch.device) -> float:
    if device.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def timeit_interleaved(
    fns: dict[str, object], device: torch.device, repeats: int, warmup: int, min_seconds: float = 0.5
) -> dict[str, float]:
    """Median wall time (ms) of each ``fns[name]()``, timed in interleaved rounds.

    One round calls every function once, so slow phases of a shared, noisy machine hit all
    backends alike and the ratios stay fair. Runs at least ``repeats`` rounds, and more (up to
    200) until ``min_seconds`` of timed calls of the fastest function have passed.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    while True:
        for name, fn in fns.items():
            times[name].append(_time_call(fn, device))
        rounds = len(next(iter(times.values())))
        fastest = min(sum(t) for t in times.values())
        if rounds >= repeats and (fastest >= min_seconds * 1e3 or rounds >= 200):
            break
    return {name: statistics.median(t) for name, t in times.items()}


def timeit(fn, device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    return timeit_interleaved({"fn": fn}, device, repeats, warmup)["fn"]


def copy_bandwidth(device: torch.device, repeats: int) -> float:
    """Bytes per second of a large tensor copy (read + write counted)."""
    n = (256 << 20) // 4
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    ms = timeit(lambda: dst.copy_(src), device, repeats, 2)
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


def make_inputs(op, shape, dtype, device, channels_last):
    x = torch.randn(shape, device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dy = torch.randn_like(x)
    if op == "spade":
        gamma = torch.randn_like(x) * 0.5
        beta = torch.randn_like(x)
        inputs = [t.requires_grad_() for t in (x, gamma, beta)]
        call = lambda backend: spade_norm(  # noqa: E731
            *inputs, negative_slope=SLOPE, backend=backend
        )
    else:
        w = torch.rand(shape[1], device=device) + 0.5
        b = torch.randn(shape[1], device=device)
        inputs = [t.requires_grad_() for t in (x, w, b)]
        call = lambda backend: instance_norm_act(  # noqa: E731
            *inputs, negative_slope=SLOPE, backend=backend
        )
    return inputs, dy, call


def bench_case(op, shape, dtype, backends, device, repeats, warmup, channels_last):
    """Forward and forward+backward medians (ms) of every backend, timed interleaved."""
    inputs, dy, call = make_inputs(op, shape, dtype, device, channels_last)
    fwd, fwd_bwd, first = {}, {}, {}
    for backend in backends:

        def f(backend=backend):
            with torch.no_grad():
                call(backend)

        def fb(backend=backend):
            torch.autograd.grad(call(backend), inputs, dy)

        t0 = time.perf_counter()
        fb()  # first call: compiles where needed
        sync(device)
        first[backend] = (time.perf_counter() - t0) * 1e3
        fwd[backend], fwd_bwd[backend] = f, fb
    t_f = timeit_interleaved(fwd, device, repeats, warmup)
    t_fb = timeit_interleaved(fwd_bwd, device, repeats, warmup)
    return {
        b: {"fwd_ms": t_f[b], "fwd_bwd_ms": t_fb[b], "first_call_ms": first[b]} for b in backends
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=parse_shape, nargs="+", default=None, help="NxCxHxW ...")
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32,bf16,fp16")
    parser.add_argument("--ops", default="spade,inorm", help="comma list of spade,inorm")
    parser.add_argument("--backends", default=None, help="comma list (default: eager,compile[,triton])")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per case (median)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (default 1: on a shared machine, OpenMP barriers of a multi-thread "
        "run wait on descheduled threads and the timings become meaningless)",
    )
    parser.add_argument("--channels-last", action="store_true", help="channels_last inputs")
    parser.add_argument("--quick", action="store_true", help="one small shape, few repeats")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out-dir", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    parser.add_argument("--no-save", action="store_true", help="do not write result files")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, args.threads))
    shapes = args.shapes or ([(2, 32, 64, 64)] if args.quick else DEFAULT_SHAPES)
    repeats = args.repeats or (3 if args.quick else (15 if device.type == "cpu" else 50))
    warmup = 1 if device.type == "cpu" else 10
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    for d in dtypes:
        if d not in DTYPES:
            parser.error(f"--dtypes: unknown dtype {d!r}, expected one of {sorted(DTYPES)}")
    for o in ops:
        if o not in TENSORS_MOVED:
            parser.error(f"--ops: unknown op {o!r}, expected spade or inorm")
    if args.backends:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    else:
        backends = ["eager", "compile"] + (["triton"] if device.type == "cuda" else [])
    notes = []
    if "compile" in backends and device.type == "cpu" and not compile_available():
        backends.remove("compile")
        notes.append("torch.compile unavailable on this machine: compile backend skipped")

    bw = copy_bandwidth(device, max(3, repeats))
    dev_name = device_name(device)
    date = _dt.date.today().isoformat()
    meta = {
        "device": dev_name,
        "device_type": device.type,
        "date": date,
        "torch": torch.__version__,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "cpu_count": os.cpu_count(),
        "copy_bandwidth_GBps": bw / 1e9,
        "repeats": repeats,
        "negative_slope": SLOPE,
        "channels_last": args.channels_last,
        "notes": notes,
    }
    rows = []
    for op in ops:
        for shape in shapes:
            for dname in dtypes:
                dtype = DTYPES[dname]
                elem = torch.empty((), dtype=dtype).element_size()
                numel = shape[0] * shape[1] * shape[2] * shape[3]
                res = bench_case(op, shape, dtype, backends, device, repeats, warmup, args.channels_last)
                base = res.get("eager")
                for backend, r in res.items():
                    n_f, n_fb = TENSORS_MOVED[op]
                    bound_f = n_f * numel * elem / bw * 1e3
                    bound_fb = n_fb * numel * elem / bw * 1e3
                    row = {
                        "op": op,
                        "shape": "x".join(map(str, shape)),
                        "dtype": dname,
                        "backend": backend,
                        **{k: round(v, 3) for k, v in r.items()},
                        "fwd_vs_eager": round(base["fwd_ms"] / r["fwd_ms"], 2) if base else None,
                        "fwd_bwd_vs_eager": round(base["fwd_bwd_ms"] / r["fwd_bwd_ms"], 2) if base else None,
                        "fwd_bw_fraction": round(bound_f / r["fwd_ms"], 3),
                        "fwd_bwd_bw_fraction": round(bound_fb / r["fwd_bwd_ms"], 3),
                    }
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)

    result = {"meta": meta, "results": rows}
    md = to_markdown(result)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(md)
    if not args.no_save:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"kernels_{device.type}_{slug(dev_name)}_{date}{('_' + slug(args.tag)) if args.tag else ''}"
        (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
        (out / f"{stem}.md").write_text(md + "\n")
        print(f"saved {out / stem}.json/.md", file=sys.stderr)
    return 0


def to_markdown(result: dict) -> str:
    m = result["meta"]
    lines = [
        f"# Fused norm kernels: {m['device']} ({m['device_type']}), {m['date']}",
        "",
        f"torch {m['torch']}, threads {m['threads']}, copy bandwidth {m['copy_bandwidth_GBps']:.1f} GB/s, "
        f"median of {m['repeats']} calls, LeakyReLU({m['negative_slope']}) fused, "
        f"channels_last={m['channels_last']}.",
        "",
        "| op | shape | dtype | backend | fwd ms | fwd x eager | fwd BW frac | fwd+bwd ms | fwd+bwd x eager | fwd+bwd BW frac | first call ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        lines.append(
            f"| {r['op']} | {r['shape']} | {r['dtype']} | {r['backend']} | {r['fwd_ms']:.2f} | "
            f"{r['fwd_vs_eager']} | {r['fwd_bw_fraction']:.2f} | {r['fwd_bwd_ms']:.2f} | "
            f"{r['fwd_bwd_vs_eager']} | {r['fwd_bwd_bw_fraction']:.2f} | {r['first_call_ms']:.0f} |"
        )
    for n in m["notes"]:
        lines += ["", f"Note: {n}"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
