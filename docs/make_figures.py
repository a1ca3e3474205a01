"""Generate the documentation figures in ``docs/figures/`` (PNG grids).

- ``masks_grid.png``: real masks from the XCAD sample (released fractal ``trainA`` masks and
  hand-labelled ``test`` masks) | synthetic ``"ssvs"`` masks | synthetic ``"tree"`` masks.
- ``angiograms_grid.png``: real angiogram and background from the sample | synthetic ones
  (``render_angiogram`` with a ``"tree"`` mask, ``render_background``).

Run from the repository root::

    python docs/make_figures.py                       # sample from ../shared/data/xcad-sample
    python docs/make_figures.py --sample PATH --out docs/figures

The functions ``mask_grid`` and ``angiogram_grid`` can be imported and called on their own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from darlkit.data import read_grayscale_png
from darlkit.synthesis import FractalVesselSynthesizer, render_angiogram, render_background

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE = REPO.parent / "shared" / "data" / "xcad-sample"
HEADER = 28
GAP = 6


def _tile(arr: np.ndarray, tile: int) -> Image.Image:
    return Image.fromarray(arr).resize((tile, tile), Image.BILINEAR)


def _grid(columns: list[tuple[str, list[np.ndarray]]], tile: int) -> Image.Image:
    rows = max(len(c[1]) for c in columns)
    w = len(columns) * tile + (len(columns) - 1) * GAP
    h = HEADER + rows * tile + (rows - 1) * GAP
    canvas = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(canvas)
    for c, (title, images) in enumerate(columns):
        x = c * (tile + GAP)
        draw.text((x + 6, 8), title, fill=0)
        for r, arr in enumerate(images):
            canvas.paste(_tile(arr, tile), (x, HEADER + r * (tile + GAP)))
    return canvas


def _u8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def mask_grid(out: str | Path, sample: str | Path = DEFAULT_SAMPLE, *, rows: int = 4, size: int = 512, seed: int = 0, tile: int = 192) -> Path:
    """Write a PNG grid: real sample masks | ``"ssvs"`` masks | ``"tree"`` masks.

    Args:
        out: Output PNG path.
        sample: XCAD-layout folder with ``train/trainA`` and ``test/masks`` (the real sample).
        rows: Masks per column.
        size: Side of the synthetic masks.
        seed: Seed of both synthesizers.
        tile: Side of each tile in the figure.

    Returns:
        The written path.
    """
    sample = Path(sample)
    real = [read_grayscale_png(p) for p in sorted((sample / "train" / "trainA").glob("*.png"))]
    real += [read_grayscale_png(p) for p in sorted((sample / "test" / "masks").glob("*.png"))]
    ssvs = FractalVesselSynthesizer(size, "ssvs", seed=seed, output="uint8").sample(rows)[:, 0].numpy()
    tree = FractalVesselSynthesizer(size, "tree", seed=seed, output="uint8").sample(rows)[:, 0].numpy()
    img = _grid(
        [("real: trainA (top 2), test (bottom 2)", real[:rows]), ('synthetic "ssvs"', list(ssvs)), ('synthetic "tree"', list(tree))],
        tile,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, optimize=True)
    return out


def angiogram_grid(out: str | Path, sample: str | Path = DEFAULT_SAMPLE, *, size: int = 512, seed: int = 0, tile: int = 256) -> Path:
    """Write a PNG grid: real angiograms / backgrounds (sample) | synthetic ones.

    Args:
        out: Output PNG path.
        sample: XCAD-layout folder with ``train/trainB`` and ``train/trainC``.
        size: Side of the synthetic images.
        seed: Seed of the synthetic images.
        tile: Side of each tile in the figure.

    Returns:
        The written path.
    """
    sample = Path(sample)
    real_b = [read_grayscale_png(p) for p in sorted((sample / "train" / "trainB").glob("*.png"))][:2]
    real_c = [read_grayscale_png(p) for p in sorted((sample / "train" / "trainC").glob("*.png"))][:2]
    masks = FractalVesselSynthesizer(size, "tree", seed=seed).sample(2)
    clean = render_background(size, seed=seed, n=2, noise=False)
    syn_b = [_u8(a[0]) for a in render_angiogram(clean, masks, seed=seed + 1)]
    syn_c = [_u8(b[0]) for b in render_background(size, seed=seed + 2, n=2)]
    img = _grid(
        [("real angiograms (trainB)", real_b), ("synthetic angiograms", syn_b), ("real backgrounds (trainC)", real_c), ("synthetic backgrounds", syn_c)],
        tile,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate docs/figures/*.png")
    ap.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE, help="XCAD sample folder")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "figures", help="output folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quickstart", type=Path, default=None, metavar="OUT",
                    help="also run `darlkit quickstart --out OUT` (minutes) and take its result grid")
    args = ap.parse_args(argv)
    for path in (mask_grid(args.out / "masks_grid.png", args.sample, seed=args.seed), angiogram_grid(args.out / "angiograms_grid.png", args.sample, seed=args.seed)):
        print(f"wrote {path}")
    if args.quickstart is not None:
        print(f"wrote {quickstart_grid(args.out / 'quickstart_grid.png', args.quickstart)}")
    return 0


def quickstart_grid(out: Path, run_root: Path) -> Path:
    """Run the quickstart into ``run_root`` (unless it already ran there) and copy its Fig.-4 grid.

    The grid (angiogram | prediction | ground truth | synthetic angiogram) is written by the
    trainer to ``run_root/run/figure.png``; it is copied unchanged.
    """
    import shutil

    from darlkit.cli import main as darlkit_main

    figure = run_root / "run" / "figure.png"
    if not figure.is_file() and darlkit_main(["quickstart", "--out", str(run_root)]) != 0:
        raise SystemExit("darlkit quickstart failed")
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(figure, out)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
