"""Stand-in datasets and configs shared by the training, trainer, DDP and CLI tests (no tests here)."""

from __future__ import annotations

import torch

from darlkit.training import TrainConfig


class RandomTrainSet(torch.utils.data.Dataset):
    """Fixed random ``{"angiogram", "background", "mask"}`` items of shape (1, size, size)."""

    def __init__(self, n: int = 8, size: int = 32, seed: int = 1) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 3, 1, size, size, generator=g) * 2 - 1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a, b, m = self.x[i]
        return {"angiogram": a.clone(), "background": b.clone(), "mask": torch.where(m > 0.6, 1.0, -1.0)}


class RandomTestSet(torch.utils.data.Dataset):
    """Fixed random ``{"image", "mask", "name"}`` items; masks in {0, 1}."""

    def __init__(self, n: int = 2, size: int = 64) -> None:
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(100 + i)
        image = torch.rand(1, self.size, self.size, generator=g) * 2 - 1
        mask = (torch.rand(1, self.size, self.size, generator=g) > 0.9).float()
        return {"image": image, "mask": mask, "name": f"{i}.png"}


def micro_config(**overrides) -> TrainConfig:
    """A 32x32 two-level configuration: a training step takes tens of milliseconds."""
    values = dict(
        alpha=0.2,  # the paper's loss weights and step ranges (no polarity prior)
        polarity_weight=0.0,
        lr_warmup_steps=0,  # and the paper's constant LR, no EMA
        lr_decay="none",
        ema_decay=None,
        ema_warmup=False,
        eval_ema=False,
        t_b_max=None,
        image_size=32,
        batch_size=2,
        pool_size=3,
        val_every=0,
        ckpt_every=0,
        log_every=1,
    )
    values.update(overrides)
    return TrainConfig.preset("tiny", **values)


MICRO_MODEL = {
    "unet.base_channels": 8, "unet.channel_mults": (1, 2), "unet.attn_resolutions": (), "unet.norm_groups": 4,
    "generator.base_channels": 8, "generator.spade_hidden": 8, "discriminator.base_channels": 8,
}
"""The networks of :func:`micro_config` runs (on top of the tiny preset's)."""


def micro_model(**overrides):
    """The micro networks' ModelConfig; ``overrides`` use ``__`` for the dot (``generator__base_channels=16``)."""
    from darlkit.training import ModelConfig

    return ModelConfig.preset("tiny", {**MICRO_MODEL, **{k.replace("__", "."): v for k, v in overrides.items()}})


def build_micro(config, model=None, **kw):
    """``build_networks(config, model or micro_model())``."""
    from darlkit.training import build_networks

    return build_networks(config, model if model is not None else micro_model(), **kw)


def make_xcad(root, n_train: int = 4, n_test: int = 2, size: int = 64, seed: int = 0):
    """Write a tiny synthetic XCAD-layout dataset (``size``-px images) and return its path."""
    from darlkit.synthesis import write_synthetic_xcad

    return write_synthetic_xcad(root, n_train=n_train, n_test=n_test, size=size, seed=seed, progress=False)


def make_checkpoint(run_dir, data_root, steps: int = 1, **overrides):
    """Train ``micro_config`` for ``steps`` on ``data_root`` and return the path of ``last.pt``."""
    from darlkit.data import XCADDataset
    from darlkit.training import DARLTrainer

    cfg = micro_config(**overrides)
    model, d_s, d_a = build_micro(cfg)
    trainer = DARLTrainer(model, d_s, d_a, cfg, out_dir=run_dir, progress=False)
    trainer.fit(XCADDataset(data_root, "train", size=cfg.image_size), steps=steps)
    return run_dir / "last.pt"
