"""Segment angiograms in one step with a trained DARL checkpoint (Python API).

``DARL.segment`` runs ``G(concat(x, eps_theta(x, t)))`` once: no reverse diffusion. A 512x512
angiogram for a model trained on 256x256 crops is segmented as its four polyphase sub-images
(``polyphase=True``), as the authors' code does.

Run:

    python examples/segment.py runs/xcad/best.pt image1.png image2.png --out masks/
    python examples/segment.py --smoke      # trains a toy checkpoint first (CI)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from darlkit.training import load_trained_model, read_png, segment_image, write_png


def segment(checkpoint: Path, images: list[Path], out: Path, t: int = 0) -> list[Path]:
    """Write a 0/255 vessel mask PNG for every input PNG."""
    model, config = load_trained_model(checkpoint)
    written = []
    for path in images:
        x = read_png(path)  # (1, 1, H, W) in [-1, 1]
        with torch.no_grad():
            # polyphase="auto": 4 sub-images when the side is twice the training crop side
            pred = segment_image(model, x, image_size=config.image_size, t=t, polyphase="auto")
        written.append(write_png((pred[0] > 0).float(), out / path.name, lo=0.0, hi=1.0))
        print(f"{path.name}: {float((pred > 0).float().mean()) * 100:.1f}% vessel pixels")
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, nargs="?")
    p.add_argument("images", type=Path, nargs="*")
    p.add_argument("--out", type=Path, default=Path("masks"))
    p.add_argument("--t", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="train a toy checkpoint on synthetic data, then segment")
    args = p.parse_args()
    if args.smoke:
        from darlkit.data import XCADDataset
        from darlkit.synthesis import write_synthetic_xcad
        from darlkit.training import DARLTrainer, ModelConfig, TrainConfig, build_networks

        tmp = Path(tempfile.mkdtemp(prefix="darlkit-segment-"))
        write_synthetic_xcad(tmp / "data", n_train=2, n_test=2, size=64, progress=False)
        cfg = TrainConfig.preset("tiny", image_size=32, batch_size=1)
        net = ModelConfig.preset("tiny", {"unet.channel_mults": (1, 2), "unet.attn_resolutions": ()})
        trainer = DARLTrainer(*build_networks(cfg, net), cfg, out_dir=tmp / "run", progress=False)
        trainer.fit(XCADDataset(tmp / "data", size=32), steps=1)
        args.checkpoint = tmp / "run" / "last.pt"
        args.images = sorted((tmp / "data" / "test" / "images").glob("*.png"))
        args.out = tmp / "masks"
    if args.checkpoint is None or not args.images:
        p.error("give a checkpoint and at least one image (or --smoke)")
    written = segment(args.checkpoint, args.images, args.out, t=args.t)
    print(f"wrote {len(written)} mask(s) to {args.out}")


if __name__ == "__main__":
    main()
