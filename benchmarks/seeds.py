"""Seed study of the quickstart: does the tiny preset converge for every training seed?

For each training seed, the quickstart's configuration (its dataset: 256 training, 16 validation
and 16 test images, 128x128 windows of 512x512 renders, data seed 0; the ``tiny`` preset; the
quickstart's step budget) is trained, ``best.pt`` is chosen on the validation split, and that
checkpoint is evaluated once on the test split. Runs go ``--parallel`` at a time (default 2),
each in its own process with one torch thread. The dataset is written once and shared.

Reported per seed: the validation-selected step and validation Dice, the test Dice / IoU /
precision of that checkpoint, whether the collapse monitor fired, the seconds per step, and the
segmentation threshold chosen on the validation split for that checkpoint with the test Dice at
it (``darlkit.training.recipes.choose_threshold``; the test labels choose nothing).
``--set FIELD=VALUE`` changes TrainConfig fields (an ablation, e.g. ``--set polarity_weight=0``).

Usage::

    python benchmarks/seeds.py --seeds 0-9 --json benchmarks/results/seeds_2026-12-02.json
    python benchmarks/seeds.py --seeds 0,4 --steps 500 --set polarity_weight=0 --json /tmp/ablation.json

With ``--json F`` a Markdown table is written next to it (``F`` with the ``.md`` suffix).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PASS_DICE = 0.60


def parse_seeds(text: str) -> list[int]:
    """``"0-9"``, ``"0,3,5"`` or ``"0-3,7"`` -> sorted unique seeds."""
    seeds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--seeds: expected e.g. 0-9 or 0,3,5, got {text!r}") from None
        if a < 0 or b < a:
            raise argparse.ArgumentTypeError(f"--seeds: bad range {part!r}")
        seeds.update(range(a, b + 1))
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds: no seed given")
    return sorted(seeds)


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["polarity_weight=0", "lr=1e-4"]`` -> ``{"polarity_weight": 0, "lr": 0.0001}`` (JSON values)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--set: expected FIELD=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _one_run(job: dict[str, Any]) -> dict[str, Any]:
    """Train one seed in this (spawned) process with one thread; returns its row."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from darlkit.training import TrainConfig, train_on_folder

    config = TrainConfig.preset("tiny", seed=job["seed"], image_size=job["image_size"], **job["overrides"])
    out = Path(job["out"])
    t0 = time.perf_counter()
    lines: list[str] = []
    result = train_on_folder(config, job["data"], out, steps=job["steps"], progress=False, log=lines.append)
    seconds = time.perf_counter() - t0
    test = result["test"]["clean"] if result["test"] else None
    warned = [r["step"] for r in result["history"] if r.get("collapse_warning")]
    row = {
        "seed": job["seed"],
        "steps": result["step"],
        "best_step": result["best_step"],
        "val_dice": result["best_dice"],
        "test_dice": None if test is None else test["dice"]["mean"],
        "test_iou": None if test is None else test["iou"]["mean"],
        "test_precision": None if test is None else test["precision"]["mean"],
        "collapse_warnings": warned,
        "seconds": round(seconds, 1),
        "seconds_per_step": round(result["seconds"] / max(1, result["step"]), 3),
        "val_curve": [(r["step"], round(r["dice_mean"], 3)) for r in result["history"]],
    }
    row.update(_threshold_fields(out, job["data"]))
    (out / "seed_row.json").write_text(json.dumps(row, indent=2) + "\n")
    return row


def _threshold_fields(run: Path, data: str | Path) -> dict[str, Any]:
    """The threshold chosen on the validation split for ``run/best.pt`` and the test Dice with it."""
    from darlkit.training import evaluate_on_split
    from darlkit.training.recipes import choose_threshold

    chosen = choose_threshold(run / "best.pt", data, "val")
    test = evaluate_on_split(run / "best.pt", data, "test", threshold=chosen["threshold"], metrics=("dice",))
    return {"val_threshold": chosen["threshold"], "val_dice_at_threshold": chosen["dice"],
            "test_dice_at_val_threshold": test["clean"]["dice"]["mean"]}


def _markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [
        f"# Quickstart seed study ({report['date']})",
        "",
        f"Command: `{report['command']}`",
        f"Machine: {report['machine']}; torch {report['torch']}; {report['parallel']} runs at a time, one thread each.",
        f"Configuration: tiny preset, {'/'.join(map(str, report['steps']))} steps, overrides {report['overrides'] or 'none'}; quickstart "
        "data (data seed 0): 256 training, 16 validation, 16 test images (128x128 windows of 512x512 renders).",
        "`best.pt` is chosen on the validation split; the test split is evaluated once with it.",
        "",
        f"Seeds asked: {report['seeds_asked']}; finished: {[r['seed'] for r in report['runs']]}.",
        "",
        f"**{s['n_pass']} of {s['n']} finished seeds reach test Dice >= {PASS_DICE}; median test Dice {s['median_test_dice']:.3f} "
        f"(min {s['min_test_dice']:.3f}, max {s['max_test_dice']:.3f}).**",
        f"With the threshold chosen on the validation split (test labels never used): {s['n_pass_at_val_threshold']} "
        f"of {s['n']} reach {PASS_DICE}, median {s['median_test_dice_at_val_threshold']:.3f}.",
        "",
        "| seed | best step | val Dice | test Dice | test IoU | test precision | collapse warnings | s/step "
        "| val-chosen threshold | val Dice there | test Dice there |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["runs"]:
        warn = ", ".join(str(w) for w in r["collapse_warnings"]) or "-"
        lines.append(
            f"| {r['seed']} | {r['best_step']} | {r['val_dice']:.3f} | {r['test_dice']:.3f} | {r['test_iou']:.3f} | "
            f"{r['test_precision']:.3f} | {warn} | {r['seconds_per_step']:.2f} | {r['val_threshold']:+.2f} | "
            f"{r['val_dice_at_threshold']:.3f} | {r['test_dice_at_val_threshold']:.3f} |"
        )
    lines += ["", "Validation Dice by step:", "", "| seed | curve |", "| --- | --- |"]
    for r in report["runs"]:
        lines.append(f"| {r['seed']} | " + ", ".join(f"{st}: {d:.2f}" for st, d in r["val_curve"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the study; see the module docstring."""
    from darlkit._platform import device_name
    from darlkit.cli.quickstart import QUICKSTART_DEFAULTS

    q = QUICKSTART_DEFAULTS["full"]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-9"), help="e.g. 0-9 or 0,3,5")
    ap.add_argument("--steps", type=int, default=q["steps"], help=f"training steps (default {q['steps']}, the quickstart's)")
    ap.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="TrainConfig overrides (an ablation)")
    ap.add_argument("--work", type=Path, default=Path("seed-study"), help="folder for the dataset and the runs")
    ap.add_argument("--json", type=Path, default=None, help="write the report here (and a .md beside it)")
    ap.add_argument("--notes", type=Path, default=None,
                    help="a Markdown file appended to the report (e.g. the ablation table)")
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: report the seeds whose runs in --work are finished (seed_N/seed_row.json)")
    args = ap.parse_args(argv)
    overrides = parse_set(args.set)
    if args.steps < 1 or args.parallel < 1:
        ap.error("--steps and --parallel must be positive")

    from darlkit.training import TrainConfig, write_quickstart_data

    TrainConfig.preset("tiny", **overrides)  # a bad override fails here, not in every worker
    data = args.work / "data"
    if not args.report_only and not (data / "val" / "images").is_dir():
        write_quickstart_data(data, n_train=q["n_train"], n_test=q["n_test"], n_val=q["n_val"], size=q["size"],
                              render_size=q["render_size"], data_seed=0, progress=False, workers=args.parallel)
    # A finished seed (its seed_row.json) is not trained again: an interrupted study continues.
    rows, jobs = [], []
    for s in args.seeds:
        done = args.work / f"seed_{s}" / "seed_row.json"
        if done.is_file():
            row = json.loads(done.read_text())
            if "val_threshold" not in row:  # a run of an older seeds.py: add the threshold fields
                row.update(_threshold_fields(done.parent, data))
                done.write_text(json.dumps(row, indent=2) + "\n")
            rows.append(row)
        elif not args.report_only:
            jobs.append({"seed": s, "steps": args.steps, "image_size": q["size"] // 2, "overrides": overrides,
                         "data": str(data), "out": str(args.work / f"seed_{s}")})
    if jobs:
        with mp.get_context("spawn").Pool(args.parallel, maxtasksperchild=1) as pool:
            for row in pool.imap_unordered(_one_run, jobs):
                print(json.dumps({k: row[k] for k in ("seed", "best_step", "val_dice", "test_dice", "seconds")}), flush=True)
                rows.append(row)
    if not rows:
        ap.error(f"no finished run in {args.work}")
    rows.sort(key=lambda r: r["seed"])
    dice = [r["test_dice"] for r in rows]
    import torch

    report = {
        "command": "python benchmarks/seeds.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": _dt.date.today().isoformat(),
        "machine": f"{device_name('cpu')}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "parallel": args.parallel,
        "steps": sorted({r["steps"] for r in rows}),
        "overrides": overrides,
        "seeds_asked": args.seeds,
        "runs": rows,
        "summary": {"n": len(rows), "n_pass": sum(d >= PASS_DICE for d in dice), "median_test_dice": statistics.median(dice),
                    "min_test_dice": min(dice), "max_test_dice": max(dice),
                    "n_pass_at_val_threshold": sum(r["test_dice_at_val_threshold"] >= PASS_DICE for r in rows),
                    "median_test_dice_at_val_threshold": statistics.median(r["test_dice_at_val_threshold"] for r in rows)},
    }
    text = _markdown(report) + ("" if args.notes is None else "\n" + args.notes.read_text())
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        args.json.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
