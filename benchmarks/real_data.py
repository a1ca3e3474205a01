"""DARL on real fundus photographs (CHASE_DB1): prepare -> train -> evaluate, against Frangi baselines.

Protocol (issue 12): the 28 CHASE_DB1 images are split by name: validation ``Image_01L``,
``Image_01R`` (with their ``_1stHO`` labels), test ``Image_11L`` .. ``Image_14R`` (``_1stHO``),
training the other 18 of ``Image_01L`` .. ``Image_10R`` (no labels used). Every number is
computed inside the field of view (``--roi-masks auto``), per image, and reported as mean ± std
over the 8 test images: Dice, IoU, precision and AUC-ROC.

Steps:

1. the synthetic masks' widest-vessel width and vessel fraction are measured on the two
   validation labels only (``darlkit.preparation.vessel_width`` / ``vessel_fraction``) and passed to
   ``darlkit prepare OUT --images ... --val-images ... --val-masks ... --test-images ...
   --test-masks ... --roi-masks auto --channel green --backgrounds auto --masks synth``
   (prepare's own default would measure them on the test labels too);
2. unless ``--skip-train``: ``darlkit train --data OUT --preset small --budget-min M --seed S
   --out RUN`` (``best.pt`` chosen on the validation split, then calibrated on it: the threshold
   with the best mean Dice on the two validation images under flip test-time augmentation
   becomes the checkpoint's default) and ``darlkit evaluate --data OUT --checkpoint RUN/best.pt
   --json`` (those defaults: the issue's check), and the paper's rule for comparison
   (``evaluate --threshold 0 --tta none``); validation during training never uses TTA;
3. Frangi vesselness (dark vessels), with two threshold rules computed per image inside the
   field of view: Otsu, and the vessel fraction measured on the validation labels. Each rule's
   variant (input: the data's own green channel or the prepared, contrast-normalised image DARL
   sees; working resolution; scales) is the one with the best mean Dice on the validation
   images; the test labels choose nothing.

Usage::

    python benchmarks/real_data.py --data ../shared/data/chase_db1 --skip-train
    python benchmarks/real_data.py --data ../shared/data/chase_db1 --budget-min 30 --seed 0
    python benchmarks/real_data.py --combine benchmarks/results/real_chase_*min_seed*.json --json T  # one table

Writes ``benchmarks/results/real_chase_<date>_<tag>.json`` and ``.md`` (or ``--json F`` and
``F`` with ``.md``) holding the command line, seed, date, machine and every number.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from darlkit._platform import device_name
from darlkit.baselines import fraction_threshold, frangi_vesselness, otsu_threshold
from darlkit.data import XCADDataset, field_of_view, read_image, read_mask
from darlkit.preparation import vessel_fraction, vessel_width
from darlkit.metrics import ALL_METRICS, SegmentationMetrics

REPO = Path(__file__).resolve().parents[1]
VAL = ("Image_01L", "Image_01R")
TEST = tuple(f"Image_{n:02d}{e}" for n in range(11, 15) for e in "LR")
TRAIN = tuple(f"Image_{n:02d}{e}" for n in range(1, 11) for e in "LR" if f"Image_{n:02d}{e}" not in VAL)
SHOWN = ("dice", "iou", "precision", "auc_roc")
NAMES = {"dice": "Dice", "iou": "IoU", "precision": "Precision", "auc_roc": "AUC-ROC"}
# Frangi variants tried on the validation images: (input, downsampling factor, scales in working pixels);
# input "green": the data's own green channel; "prepared": the image DARL sees (prepare's local contrast)
VARIANTS = tuple((i, f, s) for i in ("green", "prepared") for f in (1, 2)
                 for s in ((1.0, 2.0, 3.0), (1.0, 2.0, 3.0, 4.0, 5.0), (2.0, 3.0, 4.0)))


def _files(data: Path, names: tuple[str, ...], suffix: str) -> list[Path]:
    files = [data / f"{n}{suffix}" for n in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"real_data.py: --data {data}: missing {len(missing)} file(s), e.g. {missing[0]}")
    return files


def _darlkit(*args: str, log: list[str]) -> str:
    """Run ``python -m darlkit ARGS`` (this checkout first on the path); return its stdout."""
    cmd = [sys.executable, "-m", "darlkit", *args]
    log.append(shlex.join(["darlkit", *args]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"real_data.py: `{log[-1]}` failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def val_vessel_stats(images: list[Path], masks: list[Path]) -> dict[str, float]:
    """Mean widest-vessel width (px) and vessel fraction inside the field of view of labelled images."""
    widths, fractions = [], []
    for img, m in zip(images, masks):
        mask = read_mask(m)
        widths.append(vessel_width(mask))
        fractions.append(vessel_fraction(mask, field_of_view(read_image(img, channel="luma"))))
    return {"width": float(np.mean(widths)), "fraction": float(np.mean(fractions))}


def frangi_map(image: torch.Tensor, roi: torch.Tensor, factor: int, sigmas: tuple[float, ...]) -> torch.Tensor:
    """Dark-vessel Frangi response (H, W) of an (H, W) image in [0, 1], computed at 1/``factor`` size."""
    if factor == 1:
        return frangi_vesselness(image, sigmas, roi=roi)
    h, w = image.shape
    small = F.interpolate(image[None, None], scale_factor=1 / factor, mode="bilinear", antialias=True, align_corners=False)
    small_roi = F.interpolate(roi[None, None].float(), size=small.shape[-2:], mode="area") > 0.5
    v = frangi_vesselness(small, sigmas, roi=small_roi)
    return F.interpolate(v, size=(h, w), mode="bilinear", align_corners=False)[0, 0] * roi


def frangi_maps(dataset: XCADDataset, factor: int, sigmas: tuple[float, ...], raw: Path | None = None) -> list[tuple[torch.Tensor, ...]]:
    """``(response, mask, roi)`` (H, W) per image of a prepared split for one Frangi variant (on the
    green channel of ``raw/<name>.jpg`` when ``raw`` is given, else on the prepared image)."""
    maps = []
    for i in range(len(dataset)):
        item = dataset[i]
        image, roi = (item["image"][0] + 1.0) / 2.0, item["roi"][0] > 0
        if raw is not None:
            green = torch.from_numpy(read_image(raw / f"{Path(item['name']).stem}.jpg", channel="green"))
            if green.shape != image.shape:
                raise SystemExit(f"real_data.py: {item['name']}: the prepared image is not at the data's size")
            image = green
        maps.append((frangi_map(image.double(), roi, factor, sigmas), item["mask"][0], roi))
    return maps


def score_maps(maps: list[tuple[torch.Tensor, ...]], rule: str, fraction: float) -> dict:
    """Mean ± std metrics of thresholded maps (``rule`` ``"otsu"`` or ``"fraction"``, per image, inside the ROI)."""
    acc = SegmentationMetrics(threshold=0.0, metrics=ALL_METRICS)
    for v, mask, roi in maps:
        t = otsu_threshold(v, roi) if rule == "otsu" else fraction_threshold(v, fraction, roi)
        acc.update((v - t)[None, None].float(), mask[None, None], roi[None, None])  # vessel = v > t
    return acc.aggregate()


def frangi_baselines(out: Path, fraction: float, data: Path, log=print) -> dict:
    """Choose each rule's variant on ``out/val`` (mean Dice) and score it on ``out/test``."""
    val, test = XCADDataset(out, split="val"), XCADDataset(out, split="test")
    rules = ("otsu", "fraction")
    tried: dict[str, list] = {r: [] for r in rules}
    for source, factor, sigmas in VARIANTS:
        maps = frangi_maps(val, factor, sigmas, raw=data if source == "green" else None)
        for rule in rules:
            tried[rule].append({"input": source, "factor": factor, "sigmas": list(sigmas),
                                "val_dice": score_maps(maps, rule, fraction)["dice"]["mean"]})
    result = {}
    for rule in rules:
        best = max(tried[rule], key=lambda r: r["val_dice"])
        log(f"frangi/{rule}: chose {best['input']} input, 1/{best['factor']} size, sigmas {best['sigmas']} (val Dice {best['val_dice']:.3f})")
        maps = frangi_maps(test, best["factor"], tuple(best["sigmas"]), raw=data if best["input"] == "green" else None)
        result[rule] = {"chosen": best, "tried": tried[rule], "fraction": fraction if rule == "fraction" else None,
                        "test": score_maps(maps, rule, fraction)}
    return result


@torch.no_grad()
def save_figure(checkpoint: Path, out: Path, path: Path, names: tuple[str, ...] = TEST[:3], width: int = 300) -> None:
    """A PNG with one row per test image: prepared image | prediction | truth, ``width`` px each.

    The prediction is what ``darlkit segment`` gives with the checkpoint's defaults (its
    calibrated threshold and test-time augmentation, ``darlkit.training.inference_defaults``),
    inside the field of view.
    """
    from PIL import Image

    from darlkit.model import segment_image
    from darlkit.training.inference import inference_defaults, load_trained_model

    defaults = inference_defaults(checkpoint)
    model, config = load_trained_model(checkpoint)
    test = XCADDataset(out, split="test")
    rows = []
    for i in range(len(test)):
        item = test[i]
        if Path(item["name"]).stem not in names:
            continue
        logits = segment_image(model, item["image"][None], image_size=config.image_size, tta=defaults["tta"])
        pred = logits[0, 0] > defaults["threshold"]
        roi = item["roi"][0] > 0
        tiles = [(item["image"][0] + 1) / 2, (pred & roi).float(), item["mask"][0]]
        h = round(width * tiles[0].shape[0] / tiles[0].shape[1])
        rows.append(np.concatenate([np.asarray(Image.fromarray((t.numpy() * 255).astype(np.uint8)).resize((width, h), Image.BILINEAR))
                                    for t in tiles], 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(path, optimize=True)


def _options_label(r: dict) -> str:
    """`` `--train-options` `` of a results record for a row label ("" for the preset's own settings)."""
    return f" `{r['train_options']}`" if r.get("train_options") else ""


def _cells(metrics: dict) -> str:
    return " | ".join(f"{metrics[m]['mean']:.3f} ± {metrics[m]['std']:.3f}" for m in SHOWN)


def to_markdown(r: dict) -> str:
    """The results file's text: provenance, then one table row per method."""
    lines = [
        f"# DARL vs Frangi on CHASE_DB1 ({r['date']})", "",
        *([f"**{r['note']}**", ""] if r.get("note") else []),
        f"- command: `{r['command']}`", f"- seed: {r['seed']}", f"- machine: {r['machine']}",
        f"- torch {r['torch']}, {r['threads']} thread(s), commit {r['commit']}",
        f"- split: train {len(TRAIN)} images (no labels), val {', '.join(VAL)} (_1stHO), test {TEST[0]} .. {TEST[-1]} (_1stHO)",
        f"- synthetic-mask statistics from the validation labels: widest vessel {r['val_stats']['width']:.1f} px, "
        f"vessel fraction {r['val_stats']['fraction']:.3f}",
        "- protocol: inside the field of view (prepare --roi-masks auto), per image, mean ± std over the 8 test images", "",
        f"| Method | {' | '.join(NAMES[m] for m in SHOWN)} |", "| --- |" + " --- |" * len(SHOWN),
    ]
    if r.get("darl") and r["darl"].get("paper_rule"):  # this script since the calibrated defaults
        d = r["darl"]
        opts = _options_label(r)
        lines.append(f"| DARL (small{opts}, {r['budget_min']:g} min, step {d['train']['step']}; `darlkit evaluate` defaults: "
                     f"threshold {d['threshold']:g} {d['defaults']}, tta {d['tta']}) | {_cells(d['test'])} |")
        lines.append(f"| DARL, paper rule (threshold 0, no TTA) | {_cells(d['paper_rule']['test'])} |")
    elif r.get("darl"):  # earlier files: threshold 0 by default, TTA and validation thresholds as extra rows
        lines.append(f"| DARL (small, {r['budget_min']:g} min, step {r['darl']['train']['step']}, threshold 0) | {_cells(r['darl']['test'])} |")
        if r["darl"].get("val_threshold"):
            vt = r["darl"]["val_threshold"]
            lines.append(f"| DARL, threshold {vt['threshold']:g} chosen on the validation images | {_cells(vt['test'])} |")
        if r["darl"].get("tta_flip"):
            tta = r["darl"]["tta_flip"]
            lines.append(f"| DARL + flip TTA, threshold 0 | {_cells(tta['test'])} |")
            lines.append(f"| DARL + flip TTA, threshold {tta['val_threshold']['threshold']:g} chosen on the validation images "
                         f"| {_cells(tta['val_threshold']['test'])} |")
    for rule, name in (("otsu", "Otsu"), ("fraction", f"vessel fraction {r['frangi']['fraction']['fraction']:.3f}")):
        c = r["frangi"][rule]["chosen"]
        lines.append(f"| Frangi + {name} ({c.get('input', 'prepared')} input, 1/{c['factor']} size, sigmas {c['sigmas']}) | "
                     f"{_cells(r['frangi'][rule]['test'])} |")
    if r.get("tta_added"):  # files of 2026-12-02, whose TTA rows a since-removed --add-tta option added
        a = r["tta_added"]
        lines += ["", f"The flip-TTA rows were added later from the same run's best.pt: `{a['command']}` "
                      f"({a['date']}, commit {a['commit']}, {a['machine']}, {a['threads']} thread(s))."]
    lines += ["", "Frangi variants were chosen by mean Dice on the validation images; the test labels chose nothing.",
              "", "Commands run:", ""] + [f"    {c}" for c in r["commands"]]
    return "\n".join(lines) + "\n"


def combine(files: list[Path], recipe: str | None = None) -> str:
    """One table (a row per run and method) from several results JSON files of this script.

    The seed statistics group runs by their ``--train-options``, or all under ``recipe`` when
    given (runs of one configuration reached through different options or commits)."""
    lines = ["# DARL vs Frangi on CHASE_DB1: combined runs", "",
             f"| Run | Method | {' | '.join(NAMES[m] for m in SHOWN)} |", "| --- | --- |" + " --- |" * len(SHOWN)]
    dice: dict[tuple[str, float], list[float]] = {}

    def row(run: str, label: str, budget: float, metrics: dict, group: str | None = None) -> None:
        lines.append(f"| {run} | DARL small {budget:g} min{label} | {_cells(metrics)} |")
        dice.setdefault((label if group is None else group, budget), []).append(metrics["dice"]["mean"])

    for f in files:
        r = json.loads(f.read_text())
        run = f"seed {r['seed']}, {r['date'][:16]}, `{f.name}`"
        d = r.get("darl")
        opts = _options_label(r)
        head = f" ({recipe})" if recipe else opts
        if d and d.get("paper_rule"):  # files since the calibrated defaults
            rules = (f", evaluate defaults (val-chosen threshold, tta {d['tta']})", ", paper rule (threshold 0, no TTA)")
            row(run, opts + rules[0], r["budget_min"], d["test"], head + rules[0])
            row(run, opts + rules[1], r["budget_min"], d["paper_rule"]["test"], head + rules[1])
        elif d:
            row(run, "", r["budget_min"], d["test"])
            if d.get("tta_flip"):
                row(run, " + flip TTA", r["budget_min"], d["tta_flip"]["test"])
        best = max(("otsu", "fraction"), key=lambda k: r["frangi"][k]["test"]["dice"]["mean"])
        lines.append(f"| {run} | best Frangi ({best}) | {_cells(r['frangi'][best]['test'])} |")
    for (label, budget), values in sorted(dice.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"\nDARL {budget:g} min{label} over {len(values)} seed(s): mean test Dice {np.mean(values):.3f}, "
                     f"spread (max - min) {max(values) - min(values):.3f}")
    return "\n".join(lines) + "\n"


def evaluate_darl(out: Path, run: Path, commands: list[str]) -> dict:
    """Test metrics of ``run/best.pt`` through ``darlkit evaluate``: at the checkpoint's defaults (what
    ``darlkit evaluate --data OUT --checkpoint RUN/best.pt`` gives: the ``small`` preset's threshold
    chosen on the two validation images after training, with flip TTA) and by the paper's rule
    (threshold 0, no TTA)."""
    best = str(run / "best.pt")
    ev = json.loads(_darlkit("evaluate", "--data", str(out), "--checkpoint", best, "--json", log=commands))
    paper = json.loads(_darlkit("evaluate", "--data", str(out), "--checkpoint", best, "--threshold", "0", "--tta", "none",
                                "--json", log=commands))
    return {"test": ev["clean"], "roi": ev["roi"], "threshold": ev["threshold"], "tta": ev["tta"],
            "defaults": ev["defaults"], "paper_rule": {"test": paper["clean"]}}


def _provenance(argv: list[str] | None) -> dict:
    """Command line, date, commit, machine and torch threads of this invocation."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]) if argv is None else shlex.join(["real_data.py", *argv]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "commit": commit or "unknown",
        "machine": f"{device_name('cpu')} ({os.cpu_count()} CPUs, {platform.system()})", "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=None, help="CHASE_DB1 folder (Image_NN{L,R}.jpg + _1stHO.png); required")
    p.add_argument("--budget-min", type=float, default=30.0, help="training budget in minutes (default 30)")
    p.add_argument("--seed", type=int, default=0, help="training and prepare seed")
    p.add_argument("--steps", type=int, default=None, help="also stop training after this many steps (smoke runs)")
    p.add_argument("--train-options", default="", metavar="'OPTS'",
                   help="extra `darlkit train` options for an ablation, e.g. '--ema 0.995' (default: none, the preset's)")
    p.add_argument("--skip-train", action="store_true", help="run prepare and the Frangi baselines only")
    p.add_argument("--work", type=Path, default=None, help="folder for the prepared data and the run (default: a temp dir)")
    p.add_argument("--note", default=None, help="a remark stored in the results (e.g. 'smoke run, not a result')")
    p.add_argument("--json", type=Path, default=None, metavar="F",
                   help="results JSON (default benchmarks/results/real_chase_<date>_<tag>.json); the .md goes beside it")
    p.add_argument("--figure", type=Path, default=None, metavar="PNG",
                   help="also save image | prediction | truth of three test images with the trained best.pt")
    p.add_argument("--combine", type=Path, nargs="+", default=None, metavar="JSON",
                   help="only merge results files of earlier runs into one table (printed; --json F writes F.md)")
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help="with --combine: count all the files as one configuration named NAME in the seed statistics")
    args = p.parse_args(argv)
    if args.combine:
        text = combine(args.combine, args.recipe)
        prov = _provenance(argv)
        text = text.replace("\n\n", f"\n\nCommand: `{prov['command']}` ({prov['date']}, commit {prov['commit']}); every "
                            "row's command line, seed, date and machine are in its file.\n\n", 1)
        if args.json:
            args.json.with_suffix(".md").write_text(text)
        print(text)
        return 0
    if args.data is None:
        raise SystemExit("real_data.py: --data is required (unless --combine)")
    if not args.data.is_dir():
        raise SystemExit(f"real_data.py: --data: folder not found: {args.data}")
    if not args.budget_min > 0:
        raise SystemExit(f"real_data.py: --budget-min must be > 0, got {args.budget_min}")
    work = args.work or Path(tempfile.mkdtemp(prefix="darlkit_real_"))
    out, run = work / "prepared", work / "run"
    images = {k: _files(args.data, v, ".jpg") for k, v in (("train", TRAIN), ("val", VAL), ("test", TEST))}
    masks = {k: _files(args.data, v, "_1stHO.png") for k, v in (("val", VAL), ("test", TEST))}
    stats = val_vessel_stats(images["val"], masks["val"])
    commands: list[str] = []
    t0 = time.perf_counter()
    _darlkit("prepare", str(out), "--images", *map(str, images["train"]), "--val-images", *map(str, images["val"]),
             "--val-masks", *map(str, masks["val"]), "--test-images", *map(str, images["test"]),
             "--test-masks", *map(str, masks["test"]), "--roi-masks", "auto", "--channel", "green",
             "--backgrounds", "auto", "--masks", "synth", "--vessel-width", f"{stats['width']:.3f}",
             "--vessel-fraction", f"{stats['fraction']:.4f}", "--seed", str(args.seed), "--overwrite", log=commands)
    record: dict = {"prepare_s": round(time.perf_counter() - t0, 1)}
    if not args.skip_train:
        t0 = time.perf_counter()
        extra = ([] if args.steps is None else ["--steps", str(args.steps)]) + shlex.split(args.train_options)
        train_out = _darlkit("train", "--data", str(out), "--preset", "small", "--budget-min", f"{args.budget_min:g}",
                             "--seed", str(args.seed), "--out", str(run), "--no-progress", *extra, log=commands)
        summary = json.loads(train_out.strip().splitlines()[-1])
        record["darl"] = {"train": summary, "train_s": round(time.perf_counter() - t0, 1)}
        record["darl"].update(evaluate_darl(out, run, commands))
        if args.figure:
            save_figure(run / "best.pt", out, args.figure)
    record["frangi"] = frangi_baselines(out, stats["fraction"], args.data)
    record.update(_provenance(argv))
    record.update(seed=args.seed, budget_min=None if args.skip_train else args.budget_min, torch=torch.__version__,
                  train_options=args.train_options,
                  val_stats=stats, commands=commands, note=args.note)
    date = _dt.datetime.fromisoformat(record["date"])
    tag = "frangi" if args.skip_train else f"{args.budget_min:g}min_seed{args.seed}"
    path = args.json or REPO / "benchmarks" / "results" / f"real_chase_{date:%Y-%m-%d}_{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    path.with_suffix(".md").write_text(to_markdown(record))
    print(to_markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
