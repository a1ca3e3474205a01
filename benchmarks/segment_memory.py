"""Peak memory (RSS) of ``darlkit segment`` on one large image, measured in a subprocess.

Writes a checkpoint of randomly initialised networks of a preset (with Adam moments, so it
has the size of a trained run's checkpoint), a random 8-bit grey PNG of the requested size,
and runs ``python -m darlkit segment IMAGE --checkpoint CK --out DIR`` in a child process.
The child's peak resident set size is read by a wrapper process with
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` (so no earlier child counts), and compared
with ``darlkit.model.estimate_segment_memory``. Results are appended to
``benchmarks/results/segment_memory_cpu_<date>.json`` with the command line, date and machine.

Usage::

    python benchmarks/segment_memory.py --preset paper --size 4096 4096
    python benchmarks/segment_memory.py --preset tiny --size 1000 1000 --json -
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:]).returncode\n"
    "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def write_checkpoint(preset: str, path: Path) -> Path:
    """Save a ``DARLTrainer`` checkpoint of fresh ``preset`` networks with Adam moments.

    One optimiser step on zero gradients creates the moments without changing a weight
    (Adam's update is 0 when both moments are 0).
    """
    from darlkit.training import DARLTrainer, TrainConfig, build_networks

    config = TrainConfig.preset(preset)
    model, d_s, d_a = build_networks(config)
    trainer = DARLTrainer(model, d_s, d_a, config, out_dir=None, progress=False)
    for opt in (trainer.opt_g, trainer.opt_d):
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return trainer.save(path)


def write_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    """A random 8-bit grey PNG (uniform noise) of ``height x width``."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(height, width), dtype=np.uint8)).save(path)
    return path


def peak_rss(command: list[str], env: dict[str, str] | None = None) -> tuple[int, int, float]:
    """Run ``command`` under a fresh wrapper process.

    Returns:
        ``(exit status, peak RSS in bytes, wall seconds)`` of the command.
    """
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *command], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        raise RuntimeError(f"wrapper failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    rc, kib = (int(v) for v in lines[-1].split())
    if rc:
        raise RuntimeError(f"command failed ({rc}): {done.stderr.strip()[-2000:]}")
    return rc, kib * 1024, wall


def measure(preset: str, height: int, width: int, extra: list[str], workdir: Path) -> dict:
    """Measure ``darlkit segment`` on one ``height x width`` image; returns a result record."""
    from darlkit.model import default_tile, estimate_segment_memory
    from darlkit.training import load_trained_model

    ckpt = write_checkpoint(preset, workdir / f"{preset}.pt")
    image = write_image(workdir / f"image_{height}x{width}.png", height, width)
    command = [sys.executable, "-m", "darlkit", "segment", str(image), "--checkpoint", str(ckpt),
               "--out", str(workdir / "masks"), "--overwrite", *extra]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")]))
    _, rss, wall = peak_rss(command, env)
    model, config = load_trained_model(ckpt)
    opts = {k: int(v) for k, v in zip(extra[::2], extra[1::2]) if k in ("--tile", "--overlap", "--tile-batch")}
    tile = opts.get("--tile", default_tile(config.image_size))
    estimate = estimate_segment_memory(
        model, height, width, tile=tile, overlap=opts.get("--overlap", tile // 8), tile_batch=opts.get("--tile-batch", 1)
    )
    with Image.open(workdir / "masks" / f"{image.stem}.png") as im:
        assert im.size == (width, height), im.size
    return {
        "preset": preset,
        "height": height,
        "width": width,
        "options": extra,
        "peak_rss_mib": round(rss / 2**20, 1),
        "estimate_extra_mib": round(estimate / 2**20, 1),
        "checkpoint_mib": round(ckpt.stat().st_size / 2**20, 1),
        "wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    from darlkit._platform import device_name

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("tiny", "paper"), default="paper")
    parser.add_argument("--size", type=int, nargs=2, default=(4096, 4096), metavar=("H", "W"))
    parser.add_argument("--json", default=None, help="result file (default benchmarks/results/segment_memory_cpu_<date>.json; '-': stdout only)")
    args, extra = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        record = measure(args.preset, args.size[0], args.size[1], extra, Path(tmp))
    date = _dt.date.today().isoformat()
    record.update(
        command=" ".join([Path(sys.executable).name, *sys.argv]),
        date=date,
        machine=device_name("cpu"),
        cpus=os.cpu_count(),
        torch=torch.__version__,
    )
    print(json.dumps(record, indent=2))
    if args.json != "-":
        path = Path(args.json or Path(__file__).parent / "results" / f"segment_memory_cpu_{date}.json")
        records = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(records + [record], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
