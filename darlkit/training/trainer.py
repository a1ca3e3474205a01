"""DARLTrainer: the alternating generator / discriminator optimisation of DARL."""

from __future__ import annotations

import contextlib
import csv
import inspect
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from darlkit.model.inference import segment_image
from darlkit.training.checkpoint import (
    CHECKPOINT_FORMAT,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from darlkit.training.config import TrainConfig

__all__ = ["DARLTrainer", "StepSampler", "segment_image", "collate", "save_figure"]

_MIX = 0x9E3779B97F4A7C15


def _mix_seed(*values: int) -> int:
    """Deterministic 63-bit seed from integers (SplitMix64-style finaliser)."""
    h = 0x243F6A8885A308D3
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * _MIX & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
        h = h * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & 0x7FFFFFFFFFFFFFFF


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of dataset items (dicts of tensors) into a batch dict.

    Args:
        items: Dicts with equal keys; tensor values of equal shapes (e.g. (1, H, W)).

    Returns:
        A dict whose tensor values are stacked along a new batch dim ((N, 1, H, W)) and whose
        other values are lists.
    """
    out: dict[str, Any] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        out[key] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out


class StepSampler(torch.utils.data.Sampler):
    """Batch sampler whose batches are a pure function of ``(seed, step, rank)``.

    Epoch ``e`` is a random permutation of the dataset drawn from a generator seeded with
    ``(seed, e)``; it is cut into global batches of ``batch_size * world_size`` indices (the
    incomplete tail is dropped), and process ``rank`` takes the ``rank``-th contiguous block of
    ``batch_size`` indices of each global batch. So the union of the ranks' batches at a step is
    exactly the batch a single process with the global batch size sees (what makes multi-process
    training equal to one process), and a resumed run continues mid-epoch with the same order.
    This plays the role of ``DistributedSampler`` for the trainer.

    Args:
        num_items: Dataset length.
        batch_size: Per-process batch size.
        seed: Data-order seed.
        start_step: First step to yield.
        stop_step: One past the last step to yield.
        rank: This process's rank.
        world_size: Number of processes.

    Raises:
        ValueError: If the dataset is smaller than one global batch.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        start_step: int,
        stop_step: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        self.global_batch = self.batch_size * int(world_size)
        if self.num_items < self.global_batch:
            raise ValueError(
                f"the training set has {self.num_items} items, fewer than one global batch "
                f"({self.batch_size} x {world_size} processes)"
            )
        self.seed = int(seed)
        self.start_step = int(start_step)
        self.stop_step = int(stop_step)
        self.rank = int(rank)
        self.steps_per_epoch = self.num_items // self.global_batch
        self._perm_cache: tuple[int, list[int]] | None = None

    def epoch_of(self, step: int) -> int:
        """Epoch that contains ``step``."""
        return step // self.steps_per_epoch

    def indices(self, step: int) -> list[int]:
        """This rank's dataset indices at ``step``."""
        epoch, j = divmod(step, self.steps_per_epoch)
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            g = torch.Generator().manual_seed(_mix_seed(self.seed, epoch, 0xDA7A))
            self._perm_cache = (epoch, torch.randperm(self.num_items, generator=g).tolist())
        perm = self._perm_cache[1]
        start = j * self.global_batch + self.rank * self.batch_size
        return perm[start : start + self.batch_size]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.stop_step):
            yield self.indices(step)

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step)


def _unwrap(module: nn.Module) -> nn.Module:
    while hasattr(module, "module") and isinstance(module.module, nn.Module):
        module = module.module
    return module


class _GeneratorStep(nn.Module):
    """Adapter: ``forward`` runs the three paths of DARL (what DDP wraps for the G step)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, angiogram, background, mask, t_a, t_b, noise):  # noqa: D102
        return self.model.forward_paths(angiogram, background, mask, t_a=t_a, t_b=t_b, noise=noise)


class _DiscriminatorPair(nn.Module):
    """Adapter: D_s and D_a on real/fake inputs in one forward (what DDP wraps for the D step)."""

    def __init__(self, disc_mask: nn.Module, disc_image: nn.Module) -> None:
        super().__init__()
        self.disc_mask = disc_mask
        self.disc_image = disc_image

    def forward(self, real_mask, fake_mask, real_image, fake_image):  # noqa: D102
        return (
            self.disc_mask(real_mask),
            self.disc_mask(fake_mask),
            self.disc_image(real_image),
            self.disc_image(fake_image),
        )


class DARLTrainer:
    """Trains DARL (diffusion module + generator) against two PatchGAN discriminators.

    One iteration (SPEC "Training"):

    1. Generator step. With ``t_a ~ U{0..t_a_max-1}``, ``t_b ~ U{0..T-1}`` and one noise
       tensor eps, the model runs path A (segmentation ŝ of the noisy angiogram), path B
       (synthetic angiogram x̂^a from the noisy background and the fractal mask) and the cycle
       (segmentation of the noisy x̂^a). The loss
       ``L^G = L_diff + alpha * (mse(D_s(ŝ), 1) + mse(D_a(x̂^a), 1)) + beta * L_cyc``
       is minimised by Adam over the U-Net and generator; the discriminators do not receive
       gradients (``requires_grad`` off) and are not stepped.
    2. Discriminator step. Fakes go through 50-image history pools; each discriminator gets
       ``0.5 * (mse(D(real), 1) + mse(D(fake), 0))`` with real = fractal mask, fake = ŝ for D_s
       and real = angiogram, fake = x̂^a for D_a; one Adam steps both.

    Every random draw of a step (t_a, t_b, eps, the data order) comes from generators seeded
    with ``(config.seed, step)``; the image pools and global RNGs are checkpointed. A run
    interrupted at step k and resumed from ``last.pt`` therefore ends bit-identical to an
    uninterrupted run on CPU with deterministic kernels.

    Multi-process: when ``torch.distributed`` is initialised (e.g. by ``torchrun``), the
    U-Net + generator and the discriminators are wrapped in ``DistributedDataParallel``; each
    rank takes its block of every global batch (:class:`StepSampler`) and its slice of the
    per-step global noise draws; only rank 0 logs and writes files. All losses are means over
    the batch, so the averaged gradients equal those of one process with the global batch
    (exactly so with ``pool_size=0``; with a pool, each rank's pool draws its own history).
    Spectral-norm power iterations depend only on the weights and the stored vectors, so they
    stay identical on every rank; ``broadcast_buffers`` keeps them in sync regardless.

    Args:
        model: A ``darlkit.model.DARL`` (``.unet``, ``.generator``, ``.diffusion``,
            ``forward_paths``, ``segment``).
        disc_mask: Mask discriminator D_s: (N, 1, H, W) in [-1, 1] -> patch logits.
        disc_image: Angiogram discriminator D_a: (N, 1, H, W) in [-1, 1] -> patch logits.
        config: The run's :class:`TrainConfig`.
        out_dir: Run folder for checkpoints, logs and figures (``None``: write nothing).
        device: Training device (default: ``cuda:LOCAL_RANK`` under NCCL, else the CPU).
        progress: Show a tqdm progress bar (rank 0 only).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``amp="fp16"`` is requested on a non-CUDA device.
    """

    def __init__(
        self,
        model: nn.Module,
        disc_mask: nn.Module,
        disc_image: nn.Module,
        config: TrainConfig | None = None,
        *,
        out_dir: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        progress: bool = True,
    ) -> None:
        from darlkit.losses import ImagePool

        config = TrainConfig() if config is None else config
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        for name, mod in (("model", model), ("disc_mask", disc_mask), ("disc_image", disc_image)):
            if not isinstance(mod, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(mod).__name__}")
        if not hasattr(model, "forward_paths") or not hasattr(model, "segment"):
            raise TypeError("model must be a darlkit DARL model (forward_paths and segment methods)")
        self.config = config
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        if device is None:
            if self.distributed and dist.get_backend() == "nccl":
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            else:
                device = torch.device("cpu")
        self.device = torch.device(device)
        if config.amp == "fp16" and self.device.type != "cuda":
            raise ValueError("amp='fp16' needs a CUDA device (use amp='bf16' on the CPU)")
        self.is_main = self.rank == 0
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress

        fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=fmt)
        self.disc_mask = disc_mask.to(self.device, memory_format=fmt)
        self.disc_image = disc_image.to(self.device, memory_format=fmt)
        if config.compile:
            for mod in (self.model.unet, self.model.generator, self.disc_mask, self.disc_image):
                mod.compile()

        self.g_params = [p for p in self.model.parameters() if p.requires_grad]
        self.d_params = [p for m in (self.disc_mask, self.disc_image) for p in m.parameters()]
        self.opt_g = torch.optim.Adam(self.g_params, lr=config.lr, betas=tuple(config.betas))
        self.opt_d = torch.optim.Adam(self.d_params, lr=config.lr_d, betas=tuple(config.betas))
        use_scaler = config.amp == "fp16"
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=use_scaler)
        # The pools draw from their own generators (state checkpointed with the pool).
        self.pool_mask = ImagePool(
            config.pool_size, generator=torch.Generator().manual_seed(_mix_seed(config.seed, self.rank, 0x5001))
        )
        self.pool_image = ImagePool(
            config.pool_size, generator=torch.Generator().manual_seed(_mix_seed(config.seed, self.rank, 0x5002))
        )

        self.ema: torch.optim.swa_utils.AveragedModel | None = None
        if config.ema_decay is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(float(config.ema_decay)), use_buffers=False
            )

        g_step: nn.Module = _GeneratorStep(self.model)
        d_step: nn.Module = _DiscriminatorPair(self.disc_mask, self.disc_image)
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # Buffers (spectral-norm vectors) are re-synchronised from rank 0 at every forward;
            # newer torch names the option forward_sync_buffers, older ones broadcast_buffers.
            sync = (
                {"forward_sync_buffers": True}
                if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
                else {"broadcast_buffers": True}
            )
            g_step = DDP(g_step, device_ids=ids, **sync)
            d_step = DDP(d_step, device_ids=ids, **sync)
        self._g_step = g_step
        self._d_step = d_step

        self.step = 0
        self.best_dice = -math.inf
        self.best_step = -1
        self.history: list[dict[str, Any]] = []
        self._last_batch: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ helpers
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, dtype=torch.float32, non_blocking=True)
        if self.config.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _step_draws(self, step: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """t_a, t_b and eps for this rank at ``step``, sliced from the global-batch draws."""
        g = torch.Generator().manual_seed(_mix_seed(self.config.seed, step, 0x5EED))
        n = shape[0]
        gb = n * self.world_size
        t_a = torch.randint(0, self.config.t_a_max, (gb,), generator=g)
        t_b = torch.randint(0, self.config.t_b_max or self.config.num_timesteps, (gb,), generator=g)
        noise = torch.randn((gb, *shape[1:]), generator=g)
        sl = slice(self.rank * n, (self.rank + 1) * n)
        return t_a[sl].to(self.device), t_b[sl].to(self.device), self._to_device(noise[sl])

    def _set_disc_grad(self, flag: bool) -> None:
        for p in self.d_params:
            p.requires_grad_(flag)

    def _clip(self, params: list[torch.nn.Parameter], opt: torch.optim.Optimizer, scaler) -> float | None:
        if self.config.grad_clip is None:
            return None
        scaler.unscale_(opt)
        return float(torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip))

    @property
    def eval_model(self) -> nn.Module:
        """The model used for validation and segmentation (the EMA copy if ``eval_ema``)."""
        if self.config.eval_ema and self.ema is not None:
            return self.ema.module
        return self.model

    # ------------------------------------------------------------------ one iteration
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Run one generator step and one discriminator step on ``batch``.

        Args:
            batch: Dict with ``"angiogram"``, ``"background"`` and ``"mask"``, each
                (N, 1, H, W) in [-1, 1] (mask in {-1, 1}); N is this process's batch.

        Returns:
            The loss terms as floats: ``loss_g``, ``loss_diff``, ``loss_adv``, ``loss_cyc``,
            ``loss_d``, ``loss_ds``, ``loss_da``.

        Raises:
            KeyError: If a key is missing (reported as ValueError).
        """
        from darlkit.losses import lsgan_discriminator_loss, lsgan_generator_loss

        cfg = self.config
        try:
            angio = self._to_device(batch["angiogram"])
            background = self._to_device(batch["background"])
            mask = self._to_device(batch["mask"])
        except KeyError as exc:
            raise ValueError(f"a training batch needs the key {exc} (angiogram, background, mask)") from None
        self.model.train()
        self.disc_mask.train()
        self.disc_image.train()
        t_a, t_b, noise = self._step_draws(self.step, tuple(angio.shape))

        # ---- generator step (discriminators frozen)
        self._set_disc_grad(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            paths = self._g_step(angio, background, mask, t_a, t_b, noise)
            loss_adv = lsgan_generator_loss(self.disc_mask(paths.seg), self.disc_image(paths.synth))
        loss_diff = paths.loss_diff.float()
        loss_cyc = paths.loss_cyc.float()
        loss_g = loss_diff + cfg.alpha * loss_adv.float() + cfg.beta * loss_cyc
        self.scaler_g.scale(loss_g).backward()
        self._clip(self.g_params, self.opt_g, self.scaler_g)
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        self._set_disc_grad(True)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
            with torch.no_grad():
                for b_ema, b in zip(self.ema.module.buffers(), self.model.buffers()):
                    b_ema.copy_(b)

        # ---- discriminator step
        seg = paths.seg.detach().float()
        synth = paths.synth.detach().float()
        fake_mask = self.pool_mask.query(seg)
        fake_image = self.pool_image.query(synth)
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            pr_s, pf_s, pr_a, pf_a = self._d_step(mask, fake_mask, angio, fake_image)
            loss_ds = lsgan_discriminator_loss(pr_s.float(), pf_s.float())
            loss_da = lsgan_discriminator_loss(pr_a.float(), pf_a.float())
        loss_d = loss_ds + loss_da
        self.scaler_d.scale(loss_d).backward()
        self._clip(self.d_params, self.opt_d, self.scaler_d)
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()

        self._last_batch = {"background": background[:1].detach(), "mask": mask[:1].detach(), "synth": synth[:1]}
        self.step += 1
        return {
            "loss_g": float(loss_g.detach()),
            "loss_diff": float(loss_diff.detach()),
            "loss_adv": float(loss_adv.detach()),
            "loss_cyc": float(loss_cyc.detach()),
            "loss_d": float(loss_d.detach()),
            "loss_ds": float(loss_ds.detach()),
            "loss_da": float(loss_da.detach()),
        }

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, val_data: Dataset | DataLoader, *, max_images: int | None = None) -> dict[str, Any]:
        """Segment the test split and compute IoU / Dice / precision (mean and std over images).

        Args:
            val_data: Items ``{"image": (1, H, W) in [-1, 1], "mask": (1, H, W) in {0, 1}, ...}``
                (a Dataset, or a DataLoader whose batches are such dicts).
            max_images: Use at most this many images (default ``config.max_val_images``).

        Returns:
            ``{"step": int, "metrics": {name: {"mean", "std", "n"}}, "examples": [...]}`` where
            ``examples`` holds up to ``config.figure_rows`` (image, prediction, truth) triples.
        """
        from darlkit.metrics import SegmentationMetrics

        max_images = self.config.max_val_images if max_images is None else max_images
        model = self.eval_model
        was_training = model.training
        model.eval()
        acc = SegmentationMetrics(threshold=self.config.val_threshold)
        examples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        seen = 0
        for item in _iter_items(val_data):
            if max_images is not None and seen >= max_images:
                break
            image = self._to_device(item["image"].unsqueeze(0) if item["image"].dim() == 3 else item["image"])
            target = item["mask"]
            target = target.unsqueeze(0) if target.dim() == 3 else target
            pred = segment_image(model, image, image_size=self.config.image_size, amp=self.config.amp)
            pred = pred.cpu()
            acc.update(pred, target.float())
            for k in range(image.shape[0]):
                if len(examples) < self.config.figure_rows:
                    examples.append((image[k].float().cpu(), pred[k], target[k].float()))
            seen += image.shape[0]
        model.train(was_training)
        metrics = acc.aggregate()
        return {"step": self.step, "metrics": metrics, "examples": examples}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run (plain data and tensors only).

        Returns:
            The checkpoint dict written by :meth:`save`.
        """
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "config": self.config.to_dict(),
            "model": _unwrap(self.model).state_dict(),
            "disc_mask": _unwrap(self.disc_mask).state_dict(),
            "disc_image": _unwrap(self.disc_image).state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "pool_mask": self.pool_mask.state_dict(),
            "pool_image": self.pool_image.state_dict(),
            "rng": get_rng_state(),
            "best_dice": float(self.best_dice),
            "best_step": int(self.best_step),
        }

    def load_state_dict(self, state: dict[str, Any], *, strict_config: bool = True) -> None:
        """Restore a run from a checkpoint dict.

        Args:
            state: A dict from :meth:`state_dict` / :func:`load_checkpoint`.
            strict_config: Refuse a checkpoint whose network/loss settings differ from this
                trainer's configuration.

        Raises:
            ValueError: If the checkpoint is not a darlkit training checkpoint or its
                configuration does not match.
        """
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a darlkit training checkpoint (format {state.get('format')!r})")
        if strict_config:
            theirs = TrainConfig.from_dict(state["config"])
            keys = (
                "image_size", "unet_base_channels", "unet_channel_mults", "unet_num_res_blocks",
                "unet_attn_resolutions", "unet_norm_groups", "gen_base_channels", "spade_hidden", "disc_base_channels",
                "num_timesteps", "beta_schedule", "batch_size", "seed",
            )
            diff = [k for k in keys if getattr(theirs, k) != getattr(self.config, k)]
            if diff:
                raise ValueError(
                    "checkpoint configuration differs from the trainer's in: " + ", ".join(diff)
                )
        _unwrap(self.model).load_state_dict(state["model"])
        _unwrap(self.disc_mask).load_state_dict(state["disc_mask"])
        _unwrap(self.disc_image).load_state_dict(state["disc_image"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise ValueError("the trainer uses an EMA but the checkpoint has none")
            self.ema.load_state_dict(state["ema"])
        self.pool_mask.load_state_dict(state["pool_mask"])
        self.pool_image.load_state_dict(state["pool_image"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.best_dice = float(state.get("best_dice", -math.inf))
        self.best_step = int(state.get("best_step", -1))

    def save(self, path: str | os.PathLike[str]) -> Path | None:
        """Write the checkpoint atomically (rank 0 only; other ranks return ``None``).

        Args:
            path: Destination ``.pt`` file.

        Returns:
            The written path, or ``None`` on ranks other than 0.
        """
        if not self.is_main:
            return None
        return save_checkpoint(self.state_dict(), path)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Resume from a checkpoint file (see :meth:`load_state_dict`).

        Args:
            path: A ``last.pt``/``best.pt`` written by :meth:`save`.
        """
        self.load_state_dict(load_checkpoint(path, map_location=self.device))

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        train_data: Dataset | DataLoader,
        steps: int | None = None,
        val_data: Dataset | DataLoader | None = None,
        *,
        resume: str | os.PathLike[str] | bool | None = None,
        time_limit: float | None = None,
    ) -> dict[str, Any]:
        """Train until ``steps`` total iterations (counting those of a resumed run).

        Args:
            train_data: A Dataset of ``{"angiogram", "background", "mask"}`` items, each
                (1, S, S) in [-1, 1] with ``S = config.image_size``, or a DataLoader over such a
                dataset (its dataset and ``num_workers`` are used; batches of
                ``config.batch_size`` are drawn by :class:`StepSampler` so that the order is
                resumable). A dataset with ``set_epoch(e)`` is told the epoch.
            steps: Total number of iterations (default: ``config.epochs`` epochs).
            val_data: Test items ``{"image", "mask"}`` for validation every
                ``config.val_every`` steps and at the end (``None``: no validation).
            resume: A checkpoint path to continue from, or ``True`` for ``out_dir/last.pt``.
            time_limit: Stop early (then validate and save as at the end) once this many seconds
                of this call have passed; ``None``: no limit. Under DDP rank 0's clock decides.

        Returns:
            ``{"step", "best_dice", "best_step", "history", "last_checkpoint",
            "best_checkpoint", "figure", "seconds"}``.

        Raises:
            ValueError: If ``steps`` is negative or the data are unusable.
        """
        cfg = self.config
        dataset, num_workers = _dataset_of(train_data, cfg.num_workers)
        if resume:
            if resume is True:
                if self.out_dir is None:
                    raise ValueError("resume=True needs the trainer's out_dir")
                resume = self.out_dir / "last.pt"
            self.load(resume)
        n = len(dataset)
        sampler_probe = StepSampler(n, cfg.batch_size, cfg.seed, 0, 0, self.rank, self.world_size)
        if steps is None:
            steps = cfg.epochs * sampler_probe.steps_per_epoch
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative int, got {steps!r}")
        if time_limit is not None and not time_limit > 0:
            raise ValueError(f"time_limit must be a positive number of seconds or None, got {time_limit!r}")
        files = self._prepare_out_dir()
        start = time.perf_counter()
        bar = None
        if self.progress and self.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, initial=min(self.step, steps), desc="train", dynamic_ncols=True)
        last: dict[str, float] = {}
        stopped_early = False
        try:
            while self.step < steps and not stopped_early:
                epoch = sampler_probe.epoch_of(self.step)
                epoch_end = min(steps, (epoch + 1) * sampler_probe.steps_per_epoch)
                if hasattr(dataset, "set_epoch"):
                    dataset.set_epoch(epoch)
                sampler = StepSampler(n, cfg.batch_size, cfg.seed, self.step, epoch_end, self.rank, self.world_size)
                loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate)
                for batch in loader:
                    last = self.train_step(batch)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(
                            diff=f"{last['loss_diff']:.3f}", adv=f"{last['loss_adv']:.3f}",
                            cyc=f"{last['loss_cyc']:.3f}", d=f"{last['loss_d']:.3f}", refresh=False,
                        )
                    if self.is_main and files and cfg.log_every and self.step % cfg.log_every == 0:
                        _append_jsonl(files["train_log"], {"step": self.step, "time": time.perf_counter() - start, **last})
                    if val_data is not None and cfg.val_every and self.step % cfg.val_every == 0 and self.step < steps:
                        self._validate_and_log(val_data, files, start)
                    if files and cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step < steps:
                        self.save(files["last"])
                    if time_limit is not None and self._out_of_time(start, time_limit):
                        stopped_early = self.step < steps
                        break
        finally:
            if bar is not None:
                bar.close()
        if val_data is not None and (not self.history or self.history[-1]["step"] != self.step):
            self._validate_and_log(val_data, files, start)
        if files:
            self.save(files["last"])
        return {
            "step": self.step,
            "best_dice": self.best_dice,
            "best_step": self.best_step,
            "history": self.history,
            "last_loss": last,
            "last_checkpoint": str(files["last"]) if files else None,
            "best_checkpoint": str(files["best"]) if files and files["best"].exists() else None,
            "figure": str(files["figure"]) if files and files["figure"].exists() else None,
            "seconds": time.perf_counter() - start,
            "stopped_early": stopped_early,
        }

    def _out_of_time(self, start: float, limit: float) -> bool:
        flag = torch.tensor([float(time.perf_counter() - start > limit)], device=self.device)
        if self.distributed:
            dist.broadcast(flag, src=0)
        return bool(flag.item())

    def _prepare_out_dir(self) -> dict[str, Path] | None:
        if self.out_dir is None:
            return None
        files = {
            "last": self.out_dir / "last.pt",
            "best": self.out_dir / "best.pt",
            "metrics_jsonl": self.out_dir / "metrics.jsonl",
            "metrics_csv": self.out_dir / "metrics.csv",
            "train_log": self.out_dir / "train_log.jsonl",
            "figure": self.out_dir / "figure.png",
            "config": self.out_dir / "config.json",
        }
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            files["config"].write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        return files

    def _validate_and_log(self, val_data, files: dict[str, Path] | None, start: float) -> dict[str, Any]:
        result = self.validate(val_data)
        metrics = result["metrics"]
        record: dict[str, Any] = {"step": self.step, "time": round(time.perf_counter() - start, 3)}
        for name, stats in metrics.items():
            record[f"{name}_mean"] = float(stats["mean"])
            record[f"{name}_std"] = float(stats["std"])
        record["n"] = int(next(iter(metrics.values()))["n"]) if metrics else 0
        self.history.append(record)
        dice = record.get("dice_mean", float("nan"))
        improved = dice == dice and dice > self.best_dice
        if improved:
            self.best_dice = dice
            self.best_step = self.step
        if self.is_main and files:
            _append_jsonl(files["metrics_jsonl"], record)
            _append_csv(files["metrics_csv"], record)
            if improved:
                self.save(files["best"])
            synth = self._last_batch["synth"][0] if self._last_batch is not None else None
            save_figure(result["examples"], synth, files["figure"])
        return record


# ---------------------------------------------------------------------- utilities
def _dataset_of(data: Dataset | DataLoader, default_workers: int) -> tuple[Dataset, int]:
    if isinstance(data, DataLoader):
        return data.dataset, data.num_workers
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise TypeError(f"train_data must be a Dataset or DataLoader, got {type(data).__name__}")
    return data, default_workers


def _iter_items(data: Dataset | DataLoader):
    if isinstance(data, DataLoader):
        yield from data
        return
    for i in range(len(data)):
        yield data[i]


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def _append_csv(path: Path, record: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(record))
        if new:
            writer.writeheader()
        writer.writerow(record)


def _to_uint8(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    x = x.detach().float().cpu()
    if x.dim() == 3:
        x = x[0]
    return ((x.clamp(lo, hi) - lo) / (hi - lo) * 255.0).round().to(torch.uint8)


def save_figure(
    examples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    synth: torch.Tensor | None,
    path: str | os.PathLike[str],
) -> Path | None:
    """Write a grid like the paper's Fig. 4: angiogram | prediction | truth | synthetic angiogram.

    Args:
        examples: (image in [-1, 1], prediction in [-1, 1], truth in {0, 1}) triples, each
            (1, H, W); one row per triple.
        synth: A synthetic angiogram (1, h, w) in [-1, 1] from the last training step, resized
            (nearest) into the last column of every row; ``None`` leaves it black.
        path: Destination PNG.

    Returns:
        The written path, or ``None`` when there are no examples.
    """
    from PIL import Image

    if not examples:
        return None
    h, w = examples[0][0].shape[-2:]
    rows = []
    for image, pred, truth in examples:
        if image.shape[-2:] != (h, w):
            continue
        tiles = [_to_uint8(image, -1, 1), _to_uint8(pred, -1, 1), _to_uint8(truth, 0, 1)]
        if synth is not None:
            s = F.interpolate(synth.float().reshape(1, 1, *synth.shape[-2:]), size=(h, w), mode="nearest")[0]
            tiles.append(_to_uint8(s, -1, 1))
        else:
            tiles.append(torch.zeros(h, w, dtype=torch.uint8))
        sep = torch.full((h, 2), 255, dtype=torch.uint8)
        row = torch.cat([t if i == 0 else torch.cat([sep, t], 1) for i, t in enumerate(tiles)], 1)
        rows.append(row)
    sep_row = torch.full((2, rows[0].shape[1]), 255, dtype=torch.uint8)
    grid = torch.cat([r if i == 0 else torch.cat([sep_row, r], 0) for i, r in enumerate(rows)], 0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(grid.numpy(), mode="L").save(tmp, format="PNG")
    os.replace(tmp, path)
    return path

