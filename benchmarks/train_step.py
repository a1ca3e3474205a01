"""Time one DARL training iteration per configuration, interleaved, with ratios to eager.

Configurations (all at the paper's networks unless ``--preset tiny``):

- ``eager_loop_adam``: float32, ``backend="eager"`` norms and the per-tensor Adam loop that was
  ``paper_adam`` before it became the foreach Adam (the previous implementation; bit-identical results).
- ``eager``: float32, ``backend="eager"``, the default (foreach) Adam: the baseline of the ratios.
- ``default``: ``TrainConfig``'s defaults (``backend="auto"``, float32, foreach Adam).
- ``channels_last``: eager with the channels-last memory format.
- ``fused``: ``backend="compile"`` fused SPADE / instance-norm kernels.
- ``bf16``: eager with bf16 autocast.
- ``fused_bf16``: fused kernels + bf16 autocast.
- ``fused_channels_last``: fused kernels + channels-last.
- ``compile``: fused + bf16 + ``torch.compile`` of the U-Net, generator and discriminators
  (``--with-compile``; compilation takes minutes on a CPU and is reported as warm-up).

A training iteration is ``DARLTrainer.train_step`` (G step: A, B and cycle paths, two
discriminator forwards, backward, Adam; D step: pooled fakes, four discriminator forwards,
backward, Adam) at 256x256, batch 1. Every configuration's trainer is built first and warmed up
(``--warmup`` steps, reported); then ``--repeats`` rounds run one step of each configuration in
turn (interleaved, so a change of the shared machine's load affects all alike). Reported: each
configuration's median step time and its ratio to ``eager`` from the same run, and the load
average before and after. A configuration that fails is reported with its error.

Usage::

    python benchmarks/train_step.py                      # prints a table
    python benchmarks/train_step.py --json --save        # also writes benchmarks/results/
"""

from __future__ import annotations

import argparse
import functools
import datetime as _dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from darlkit._platform import device_name
from darlkit.training import DARLTrainer, ModelConfig, TrainConfig, build_networks

VARIANTS = {
    "eager_loop_adam": dict(backend="eager"),
    "eager": dict(backend="eager"),
    "default": dict(),
    "channels_last": dict(backend="eager", channels_last=True),
    "fused": dict(backend="compile"),
    "bf16": dict(backend="eager", amp="bf16"),
    "fused_bf16": dict(backend="compile", amp="bf16"),
    "fused_channels_last": dict(backend="compile", channels_last=True),
    "compile": dict(backend="compile", amp="bf16", compile=True),
}
BASELINE = "eager"


def build_step(name: str, preset: str, size: int, batch: int = 1):
    """A zero-argument callable running one training step of configuration ``name``."""
    options = dict(VARIANTS[name])
    backend = options.pop("backend", None)  # a network setting (ModelConfig); the rest are training settings
    cfg = TrainConfig.preset(preset, image_size=size, batch_size=batch, **options)
    net = ModelConfig.preset(preset, None if backend is None else {"generator.backend": backend})
    model, d_s, d_a = build_networks(cfg, net)
    opt = None
    if name == "eager_loop_adam":
        opt_g = functools.partial(torch.optim.Adam, lr=cfg.lr, betas=tuple(cfg.betas), foreach=False)
        opt = dict(optimizer_g=opt_g, optimizer_d=functools.partial(opt_g, lr=cfg.lr_d))
    trainer = DARLTrainer(model, d_s, d_a, cfg, progress=False, **(opt or {}))
    g = torch.Generator().manual_seed(0)
    batch = {
        "angiogram": torch.rand(batch, 1, size, size, generator=g) * 2 - 1,
        "background": torch.rand(batch, 1, size, size, generator=g) * 2 - 1,
        "mask": torch.where(torch.rand(batch, 1, size, size, generator=g) > 0.9, 1.0, -1.0),
    }
    return lambda: trainer.train_step(batch)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def run(variants: list[str], preset: str, size: int, warmup: int, repeats: int, on_round=None, batch: int = 1) -> list[dict]:
    """Build and warm up every configuration, then time ``repeats`` interleaved rounds.

    ``on_round(results)`` is called after every round with the results so far (medians of the
    rounds done), so a run stopped early keeps what it measured."""
    steps, results = {}, {}
    for v in variants:
        try:
            fn = build_step(v, preset, size, batch)
            results[v] = {"variant": v, "options": VARIANTS[v], "warmup_s": sum(_timed(fn) for _ in range(warmup)), "runs": []}
            steps[v] = fn
        except Exception as exc:  # noqa: BLE001 - report and go on with the other variants
            results[v] = {"variant": v, "options": VARIANTS[v], "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        print(f"[train_step] {v} built and warmed up", file=sys.stderr, flush=True)
    for r in range(repeats):
        for v, fn in steps.items():
            results[v]["runs"].append(_timed(fn))
        print(f"[train_step] round {r + 1}/{repeats} done", file=sys.stderr, flush=True)
        _summarise(results)
        if on_round is not None:
            on_round([results[v] for v in variants])
    _summarise(results)
    return [results[v] for v in variants]


def _summarise(results: dict[str, dict]) -> None:
    """Medians of the rounds so far and their ratios to the baseline, in place."""
    for res in results.values():
        if res.get("runs"):
            res["median_s"] = statistics.median(res["runs"])
    base = results.get(BASELINE, {}).get("median_s")
    for res in results.values():
        if base and "median_s" in res:
            res["speedup_vs_eager"] = base / res["median_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=("paper", "tiny", "small"), default="paper")
    p.add_argument("--batch", type=int, default=1, help="images per step (default 1; the small preset trains with 4)")
    p.add_argument("--size", type=int, default=None, help="training crop side (default: the preset's)")
    p.add_argument("--variants", nargs="+", default=["eager_loop_adam", "eager", "default", "channels_last", "bf16"],
                   choices=list(VARIANTS))
    p.add_argument("--with-compile", action="store_true", help="also time the torch.compile variant")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--save", action="store_true", help="write benchmarks/results/train_step_cpu_<date><tag>.json/.md")
    p.add_argument("--tag", default="", help="suffix of the saved file names (e.g. _avx512bf16)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = args.size or TrainConfig.preset(args.preset).image_size
    variants = list(args.variants) + (["compile"] if args.with_compile and "compile" not in args.variants else [])
    if BASELINE not in variants:
        variants.insert(0, BASELINE)
    load_before = _load()

    def report_of(results: list[dict]) -> dict:
        return {
            "benchmark": "train_step",
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "device": device_name(),
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "preset": args.preset,
            "image_size": size,
            "batch_size": args.batch,
            "seed": TrainConfig.preset(args.preset).seed,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "rounds_done": min((len(r.get("runs", [])) for r in results if "error" not in r), default=0),
            "load_average_1_5_15min": {"before": load_before, "after": _load()},
            "results": results,
        }

    def save(report: dict) -> None:
        out = Path(__file__).resolve().parent / "results"
        out.mkdir(exist_ok=True)
        stem = f"train_step_cpu_{_dt.date.today().isoformat()}{args.tag}"
        (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / f"{stem}.md").write_text(_markdown(report) + "\n")

    results = run(variants, args.preset, size, args.warmup, args.repeats,
                  on_round=(lambda res: save(report_of(res))) if args.save else None, batch=args.batch)
    report = report_of(results)
    print(json.dumps(report, indent=2) if args.json else _markdown(report))
    if args.save:
        save(report)


def _markdown(report: dict) -> str:
    lines = [
        f"# DARL training iteration on CPU ({report['device']}, {report['cpu_threads']} threads, torch {report['torch']})",
        "",
        f"Command: `{report['command']}`; {report['preset']} networks, {report['image_size']}x{report['image_size']} "
        f"batch {report.get('batch_size', 1)}, seed {report['seed']}. Median of {report['rounds_done']} (of {report['repeats']} asked) interleaved "
        f"rounds after {report['warmup']} "
        f"warm-up step(s); {report['date']}. Load average (1, 5, 15 min) before / after: "
        f"{report['load_average_1_5_15min']['before']} / {report['load_average_1_5_15min']['after']} (shared machine).",
        "",
        "| variant | train step (s) | x eager | runs (s) | warm-up (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error']} | | | |")
            continue
        runs = ", ".join(f"{t:.2f}" for t in r["runs"])
        if "median_s" not in r:
            continue
        lines.append(f"| {r['variant']} | {r['median_s']:.3f} | {r.get('speedup_vs_eager', 1.0):.2f} | {runs} | "
                     f"{r['warmup_s']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
