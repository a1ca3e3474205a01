"""Synthetic vessel masks and angiograms, and a tiny synthetic XCAD dataset read back.

1. Draws masks of both styles with ``FractalVesselSynthesizer`` and prints their vessel
   fractions (the released "ssvs" fractals and the curved "tree" style).
2. Streams masks through a ``DataLoader`` (endless ``IterableDataset`` view).
3. Renders an XCAD-like angiogram from a background and a tree mask.
4. Writes a small dataset in the XCAD layout with ``write_synthetic_xcad`` and loads it with
   ``XCADDataset`` (random-phase 2x polyphase crops, flips), as training would.

Run:

    python examples/synth_masks.py            # 512 x 512, writes to a temporary folder
    python examples/synth_masks.py --smoke    # 64 x 64 (CI)
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from torch.utils.data import DataLoader

from darlkit import FractalVesselSynthesizer, XCADDataset, render_angiogram, render_background, write_synthetic_xcad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    ap.add_argument("--out", default=None, help="dataset folder (default: a temporary one)")
    args = ap.parse_args(argv)
    size = 64 if args.smoke else args.size

    for style in ("ssvs", "tree"):
        synth = FractalVesselSynthesizer(size, style, seed=0)
        masks = synth.sample(8)  # (8, 1, size, size) float in [0, 1]
        frac = (masks > 0).float().mean((1, 2, 3))
        print(f"{style:>4}: {tuple(masks.shape)} vessel fraction {frac.mean():.3f} (min {frac.min():.3f}, max {frac.max():.3f})")
        assert torch.equal(synth[3], masks[3])  # indexable, deterministic per index

    stream = FractalVesselSynthesizer(size, "tree", seed=1).stream(batch_size=4)
    batch = next(iter(DataLoader(stream, batch_size=4)))
    print(f"stream batch {tuple(batch.shape)}")

    background = render_background(size, seed=2, noise=False)  # (1, 1, size, size) in [-1, 1]
    angiogram = render_angiogram(background, batch[:1], seed=3)
    vessel = batch[:1] > 0.5
    print(f"angiogram: mean {angiogram[vessel].mean():.2f} on vessels vs {angiogram[~vessel].mean():.2f} elsewhere ([-1, 1] scale)")

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or f"{tmp}/synthetic-xcad"
        write_synthetic_xcad(out, n_train=4, n_test=2, size=size, seed=0, progress=False)
        train = XCADDataset(out, "train", size=size // 2, seed=0)
        item = train[0]
        print("train item:", {k: tuple(v.shape) for k, v in item.items()})
        test = XCADDataset(out, "test")
        print("test item:", test[0]["name"], tuple(test[0]["image"].shape))
    print("OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
