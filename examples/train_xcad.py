"""Train DARL on an XCAD-layout folder with the Python API (no labels needed).

The folder holds ``train/trainA`` (fractal vessel masks), ``train/trainB`` (angiograms),
``train/trainC`` (backgrounds) and optionally ``test/images`` + ``test/masks`` for validation.
Without ``--data`` a small synthetic dataset is written first.

Run:

    python examples/train_xcad.py --data /data/XCAD --preset paper --steps 200000 --out runs/xcad
    python examples/train_xcad.py --preset tiny --steps 600            # synthetic data, CPU minutes
    python examples/train_xcad.py --smoke                              # a few seconds (CI)
    torchrun --nproc_per_node 2 examples/train_xcad.py --data /data/XCAD --out runs/ddp
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.distributed as dist

from darlkit.data import XCADDataset
from darlkit.synthesis import write_synthetic_xcad
from darlkit.training import DARLTrainer, ModelConfig, TrainConfig, build_networks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="XCAD-layout folder (default: synthesise one)")
    p.add_argument("--preset", choices=("paper", "tiny"), default="tiny")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("runs/example"))
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt")
    p.add_argument("--smoke", action="store_true", help="toy sizes for CI")
    args = p.parse_args()

    overrides, net = {}, {}
    if args.smoke:
        overrides = dict(image_size=32, batch_size=1, val_every=0)
        net = {"unet.channel_mults": (1, 2), "unet.attn_resolutions": ()}
    config = TrainConfig.preset(args.preset, **overrides)  # the training half of the run
    model_config = ModelConfig.preset(args.preset, net)  # the networks
    data = args.data
    if data is None:
        data = args.out / "data"
        if not (data / "train").is_dir():
            n = (4, 2) if args.smoke else (256, 16)
            write_synthetic_xcad(data, n_train=n[0], n_test=n[1], size=2 * config.image_size, progress=not args.smoke)

    # Under torchrun every process trains on its share of each global batch; rank 0 writes.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")

    train_set = XCADDataset(data, split="train", size=config.image_size, augment=True, seed=config.seed)
    test_set = XCADDataset(data, split="test") if (data / "test" / "images").is_dir() else None
    model, disc_mask, disc_image = build_networks(config, model_config)
    trainer = DARLTrainer(model, disc_mask, disc_image, config, out_dir=args.out, progress=not args.smoke)
    result = trainer.fit(train_set, steps=2 if args.smoke and args.steps is None else args.steps,
                         val_data=test_set, resume=True if args.resume else None)
    if trainer.is_main:
        print(f"step {result['step']}: best Dice {result['best_dice']:.3f} at step {result['best_step']}")
        print(f"checkpoint {result['last_checkpoint']}, figure {result['figure']}")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
