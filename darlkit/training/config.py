"""Training configuration: the paper's defaults, a tiny CPU preset and a small real-image CPU preset.

:class:`TrainConfig` holds the training half of a run; the networks are described by
:class:`darlkit.training.ModelConfig` (same preset names, :data:`darlkit.training.MODEL_PRESETS`).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["TrainConfig", "PRESETS", "AMP_MODES", "LEGACY_MODEL_FIELDS", "resolve_amp"]

AMP_MODES: tuple[str, ...] = ("none", "bf16", "fp16", "auto")
"""Accepted values of ``TrainConfig.amp``."""

PRESETS: tuple[str, ...] = ("paper", "tiny", "small")
"""Names accepted by ``TrainConfig.preset`` (and ``ModelConfig.preset``)."""

def resolve_amp(amp: str, device: torch.device | str) -> str:
    """The mixed-precision mode ``TrainConfig.amp`` means on ``device``.

    Args:
        amp: One of :data:`AMP_MODES`.
        device: The training device.

    Returns:
        ``amp`` itself, except ``"auto"``: ``"bf16"`` where ``device`` runs bf16 natively
        (:func:`darlkit.model.native_bf16`), else ``"none"``.

    Raises:
        ValueError: If ``amp`` is not one of :data:`AMP_MODES`.
    """
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp != "auto":
        return amp
    from darlkit.model.runtime import native_bf16

    return "bf16" if native_bf16(device) else "none"


LEGACY_MODEL_FIELDS: dict[str, str] = {
    "unet_base_channels": "unet.base_channels",
    "unet_channel_mults": "unet.channel_mults",
    "unet_num_res_blocks": "unet.num_res_blocks",
    "unet_attn_resolutions": "unet.attn_resolutions",
    "unet_norm_groups": "unet.norm_groups",
    "gen_base_channels": "generator.base_channels",
    "spade_hidden": "generator.spade_hidden",
    "backend": "generator.backend",
    "disc_base_channels": "discriminator.base_channels",
    "beta_schedule": "diffusion.schedule",
    "num_timesteps": "diffusion.timesteps",
    "t_a_max": "t_a_max",
}
"""The network fields that ``TrainConfig`` held before the networks had a configuration of their
own -> their ``ModelConfig`` keys: the one table that reads old checkpoints
(``ModelConfig.from_checkpoint``); :meth:`TrainConfig.from_dict` skips these keys silently."""


@dataclass
class TrainConfig:
    """Every training setting of a DARL run (the networks: :class:`~darlkit.training.ModelConfig`).

    The defaults are the paper's (SPEC "Training"): Adam with lr 5e-6 and betas (0.5, 0.999)
    for the diffusion module + generator and for both discriminators, alpha = 0.2 (adversarial
    weight), beta = 5.0 (cycle weight), a 50-image history pool, ``t_b`` drawn from all T steps,
    batch 1 and 256x256 crops (the networks, ``t_a < 200`` and T = 2000 linear steps are
    ``ModelConfig()``'s defaults). ``TrainConfig.preset("tiny")`` returns a
    configuration that trains in minutes on a CPU (smaller crops and networks, a higher learning
    rate, a larger batch); every loss term of the method is kept.

    The configuration is plain data (ints, floats, strings, bools, tuples), so it round-trips
    through :meth:`to_dict` / :meth:`from_dict` and is stored in checkpoints without pickling
    Python objects.

    Attributes:
        preset_name: Name of the preset the configuration started from (informational).
        image_size: Side of the square training crops (pixels).
        batch_size: Images per step and process (the global batch is ``batch_size * world_size``).
        lr: Adam learning rate of the diffusion module + generator.
        lr_d: Adam learning rate of the two discriminators.
        betas: Adam betas of both optimisers.
        alpha: Weight of the generator's LSGAN terms.
        beta: Weight of the cycle loss.
        pool_size: History-pool size for discriminator fakes (0 disables the pool).
        t_b_max: ``t_b`` is drawn from ``{0, ..., t_b_max - 1}``; ``None`` (the paper): all T steps.
        seed: Seed of the network initialisation, the data order and every random draw.
        epochs: Default run length in epochs when ``fit`` gets no ``steps`` (150 in the paper).
        amp: Mixed precision: ``"none"``, ``"bf16"`` (autocast), ``"fp16"`` (autocast + grad
            scaler; CUDA only) or ``"auto"``: bf16 where the training device runs bf16 natively
            (a CPU with AVX512-BF16 / AMX, a CUDA GPU with bf16; ``darlkit.model.native_bf16``),
            else none (emulated bf16 is slower than float32). :func:`resolve_amp` gives the mode
            a device gets (``DARLTrainer.amp``).
        channels_last: Use the channels-last memory format for networks and inputs.
        compile: ``torch.compile`` the U-Net, generator and discriminators.
        grad_clip: Clip the global gradient norm of each optimiser to this value (``None``: off).
        lr_warmup_steps: Linear LR warmup over this many steps, both optimisers (0: none).
        lr_decay: LR decay after the warmup: ``"none"`` (the paper), ``"linear"`` or ``"cosine"``
            down to ``lr_min_ratio * lr`` at step ``lr_decay_steps``
            (:class:`~darlkit.training.optim.WarmupDecay`).
        lr_decay_steps: Step at which the decay ends (0: the run's step count, set by
            ``train_on_folder``; a trainer built directly with 0 does not decay).
        lr_min_ratio: Final LR of the decay as a fraction of ``lr`` / ``lr_d`` (in [0, 1]).
        ema_decay: Decay of the exponential moving average of U-Net + generator (``None``: no EMA).
        ema_warmup: Ramp the EMA decay up as timm's ``ModelEmaV3`` does
            (``min(ema_decay, 1 - (1 + n) ** (-2/3))`` after ``n`` updates).
        eval_ema: Validate and segment with the EMA weights (needs ``ema_decay``).
        val_every: Validate every this many steps (0: only at the end).
        ckpt_every: Write ``last.pt`` every this many steps (0: only at the end; the CLI's
            ``--save-every``).
        log_every: Write the loss terms to ``train_log.jsonl`` every this many steps.
        skip_nonfinite: A step whose loss is NaN or Inf is skipped (no optimiser update) up to
            this many times in a row; one more stops the run. 0 (default): the first
            non-finite loss stops the run, keeping the last good checkpoint.
        val_threshold: Threshold on the [-1, 1] prediction for the validation metrics (and the
            default of ``darlkit evaluate`` / ``segment`` unless the checkpoint was calibrated).
        eval_tta: Test-time augmentation that ``darlkit evaluate`` / ``segment`` use by default
            with this run's checkpoints (``"none"`` or ``"flip"``, see
            ``darlkit.model.segment_image``); validation during training never uses it.
        calibrate_threshold: After training, choose the threshold with the best mean Dice on the
            validation split (with ``eval_tta``) and store it in ``best.pt`` as the checkpoint's
            default (``darlkit.training.calibrate_checkpoint``); needs a ``val/`` split with labels.
        num_workers: DataLoader workers (0: load in the main process).
        max_val_images: Validate on at most this many test images (``None``: all).
        figure_rows: Rows of the validation figure (angiogram | prediction | truth | synthetic).
        polarity_weight: Weight of the polarity prior on the synthesis path
            (``darlkit.losses.polarity_loss``: synthetic vessel pixels must be darker than their
            background; 0, the paper: off). Added to the generator loss.
        polarity_margin: Darkening the polarity prior asks of a vessel pixel ([-1, 1] units).
        collapse_patience: Consecutive validations showing a collapse symptom (Dice below
            ``collapse_min_dice``, or a predicted vessel fraction outside
            ``[collapse_min_fraction, collapse_max_fraction]``) after which training warns and the
            metrics record ``collapse_warning`` (see ``CollapseMonitor``; 0: no monitor).
        collapse_min_dice: Validation Dice below this is "near zero".
        collapse_min_fraction: Smallest plausible mean predicted vessel fraction.
        collapse_max_fraction: Largest plausible mean predicted vessel fraction.
        collapse_restore: When the monitor reports a collapse, go back to ``best.pt`` (networks,
            optimisers, schedulers, EMA and pools; the step count, data order and random draws go
            on, so the run does not repeat itself) instead of training on from the collapsed
            state. Needs a run folder and a ``best.pt`` whose validation Dice is at least
            ``collapse_min_dice``; otherwise only the warning is given. The validation record
            says ``restored_from`` (the step of ``best.pt``).
    """

    preset_name: str = "paper"
    image_size: int = 256
    batch_size: int = 1
    lr: float = 5e-6
    lr_d: float = 5e-6
    betas: tuple[float, float] = (0.5, 0.999)
    alpha: float = 0.2
    beta: float = 5.0
    pool_size: int = 50
    t_b_max: int | None = None
    seed: int = 0
    epochs: int = 150
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    grad_clip: float | None = None
    lr_warmup_steps: int = 0
    lr_decay: str = "none"
    lr_decay_steps: int = 0
    lr_min_ratio: float = 0.1
    ema_decay: float | None = None
    ema_warmup: bool = False
    eval_ema: bool = False
    val_every: int = 1000
    ckpt_every: int = 1000
    log_every: int = 50
    skip_nonfinite: int = 0
    val_threshold: float = 0.0
    eval_tta: str = "none"
    calibrate_threshold: bool = False
    num_workers: int = 0
    max_val_images: int | None = None
    figure_rows: int = 4
    polarity_weight: float = 0.0
    polarity_margin: float = 0.05
    collapse_patience: int = 3
    collapse_min_dice: float = 0.05
    collapse_min_fraction: float = 0.005
    collapse_max_fraction: float = 0.5
    collapse_restore: bool = False

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: If a field is out of range, naming the field and what was expected.
            TypeError: If a field has the wrong type.
        """

        def pos_int(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"TrainConfig.{name} must be an int, got {type(v).__name__}")
            if v < 0 or (v == 0 and not allow_zero):
                want = "a non-negative int" if allow_zero else "a positive int"
                raise ValueError(f"TrainConfig.{name} must be {want}, got {v}")

        def pos_float(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"TrainConfig.{name} must be a float, got {type(v).__name__}")
            if not (v >= 0 if allow_zero else v > 0) or v != v or v == float("inf"):
                want = "a finite float >= 0" if allow_zero else "a finite float > 0"
                raise ValueError(f"TrainConfig.{name} must be {want}, got {v}")

        for name in ("image_size", "batch_size", "epochs", "figure_rows"):
            pos_int(name)
        for name in ("pool_size", "val_every", "ckpt_every", "log_every", "num_workers", "seed", "skip_nonfinite", "collapse_patience",
                     "lr_warmup_steps", "lr_decay_steps"):
            pos_int(name, allow_zero=True)
        if self.t_b_max is not None:
            pos_int("t_b_max")  # <= T: checked with the model (darlkit.training.networks.check_run)
        for name in ("lr", "lr_d"):
            pos_float(name)
        for name in ("alpha", "beta", "polarity_weight", "polarity_margin", "collapse_min_dice",
                     "collapse_min_fraction", "collapse_max_fraction"):
            pos_float(name, allow_zero=True)
        if self.collapse_min_dice > 1.0:
            raise ValueError(f"TrainConfig.collapse_min_dice must be in [0, 1], got {self.collapse_min_dice}")
        if not self.collapse_min_fraction < self.collapse_max_fraction <= 1.0:
            raise ValueError(
                "TrainConfig.collapse_max_fraction must be in (collapse_min_fraction, 1], got "
                f"{self.collapse_max_fraction} with collapse_min_fraction={self.collapse_min_fraction}"
            )
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"TrainConfig.betas must be two floats in [0, 1), got {self.betas}")
        from darlkit.training.optim import LR_DECAYS

        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"TrainConfig.lr_decay must be one of {LR_DECAYS}, got {self.lr_decay!r}")
        pos_float("lr_min_ratio", allow_zero=True)
        if self.lr_min_ratio > 1.0:
            raise ValueError(f"TrainConfig.lr_min_ratio must be in [0, 1], got {self.lr_min_ratio}")
        from darlkit.model.inference import TTA_MODES

        if self.eval_tta not in TTA_MODES:
            raise ValueError(f"TrainConfig.eval_tta must be one of {TTA_MODES}, got {self.eval_tta!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"TrainConfig.amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.grad_clip is not None:
            pos_float("grad_clip")
        if self.ema_decay is not None:
            if not (0.0 < float(self.ema_decay) < 1.0):
                raise ValueError(f"TrainConfig.ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        if self.eval_ema and self.ema_decay is None:
            raise ValueError("TrainConfig.eval_ema=True needs TrainConfig.ema_decay to be set")
        if self.max_val_images is not None:
            pos_int("max_val_images")
        for name in ("collapse_restore", "calibrate_threshold"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TrainConfig.{name} must be a bool, got {type(getattr(self, name)).__name__}")

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """Build a configuration from a named preset.

        ``"paper"``: the paper's settings (the dataclass defaults). The networks each preset
        describes below are its ``ModelConfig.preset(name)`` (:data:`~darlkit.training.MODEL_PRESETS`).

        ``"tiny"``: a CPU configuration that trains in minutes: 64x64 crops (polyphase halves of
        128x128 images, as the paper halves 512 to 256), batch 4, Adam lr 2e-4 for all networks,
        a 4-level U-Net of base width 16 (multipliers 1, 2, 2, 4; one residual block per level;
        attention at 8x8; GroupNorm(8)), a generator of base width 16 with a 32-channel S-SPADE
        branch, discriminators of base width 32 (half the paper's; with 16 the angiogram
        discriminator let G draw bright instead of dark vessels for thousands of steps), a
        16-image pool, validation every 100 steps and the eager norm backend (faster than the
        compiled one at these sizes on a CPU). Two weights of the method differ, chosen from
        short CPU runs (see the training notes): the adversarial weight alpha is 1.0 (0.2 in the
        paper; with 0.2 the segmentation collapsed to empty masks within a few hundred steps) and
        ``t_b`` is drawn below 300 (all 2000 steps in the paper) so the B path sees less noise
        early on. One term is added: the polarity prior (``polarity_weight=1``, margin 0.05;
        ``darlkit.losses.polarity_loss``), which asks the synthesis path to draw every vessel
        pixel darker than both its background and the synthetic image's own surroundings;
        without it some training seeds settle on bright or relief-like synthetic vessels and the
        segmentation stays empty (seed 0: validation Dice 0.01-0.06 through 1200 steps; see
        ``benchmarks/results/seeds_*.md`` for the seed study). The learning rate is
        constant and validation uses the raw weights: a 50-step warmup with a cosine decay to
        0.1 x lr plus an EMA (``lr_warmup_steps``, ``lr_decay``, ``ema_decay``/``ema_warmup``,
        available as options) made training seeds 0 and 2 plateau lower (validation Dice 0.43
        and 0.40 at 800 steps against 0.46 and 0.53 by step 600 at a constant rate; see
        ``benchmarks/results/seeds_2026-12-02.md``). The
        preset expects XCAD-sized vessels in its crops: images rendered at 512 and
        cut to 128x128 windows (``write_synthetic_xcad(..., size=512, crop=128)``), or real
        256x256 crops with ``image_size=256``. Every loss term (L_diff,
        alpha * L_adv, beta * L_cyc; LSGAN discriminators with history pools), the schedule
        (T = 2000 linear), ``t_a < 200`` and the alternating G/D steps are the paper's.

        ``"small"``: real images on a CPU (issue 12, measured on CHASE_DB1 fundus photographs
        prepared by ``darlkit prepare`` with its defaults: full size, local contrast, 512 px
        training tiles, retina-shaped synthetic masks inside the field of view): ``tiny``'s
        networks and method settings (64x64 crops of the polyphase halves, batch 4, generator lr
        2e-4, alpha 1.0, ``t_b`` below 300, the polarity prior, 16-image pool, eager backend), so
        that a 30-minute budget gives thousands of steps rather than the few hundred of wider
        networks (an earlier guess with base widths 24/32 and 128 crops ran at ~6 s/step and
        reached validation Dice 0.01); a discriminator lr of 5e-5 (a quarter of the generator's:
        at 2e-4 the segmentation discriminator's loss fell to ~0.01 and the predicted masks
        emptied for hundreds of steps; seed 0, 30 min: test Dice 0.646 against 0.633 at 2e-4 and
        0.637 with an EMA of 0.995); validation every 150 steps and ``epochs`` 1000 so that a run
        is ended by ``--budget-min`` (or ``--steps``) rather than by the epoch count. After
        training, ``best.pt`` is calibrated on the validation split (``calibrate_threshold``:
        the threshold with the best mean validation Dice under flip test-time augmentation,
        ``eval_tta="flip"``, becomes the checkpoint's default for ``darlkit evaluate`` /
        ``segment``; +0.015 to +0.037 test Dice on CHASE_DB1). Two settings make the 30 minutes
        count: ``amp="auto"`` trains in bf16 where the CPU has native bf16 (AVX512-BF16 / AMX:
        1.42x faster steps, ~2850 instead of ~2000 in 30 minutes on one thread, and the runs were
        still improving at the end; float32 elsewhere) and ``collapse_restore`` with
        ``collapse_patience=2`` goes back to ``best.pt`` after two collapsed validations (300
        steps) instead of training on from an empty segmentation. Results (seeds 0, 1, 2, 30
        min, one thread each, two runs side by side): test Dice 0.668, 0.664 and 0.658 with bf16
        against 0.659, 0.663 and 0.643 in float32;
        ``benchmarks/results/real_chase_2026-12-02_30min_3seeds_auto_avx512.md``.

        Args:
            name: ``"paper"``, ``"tiny"`` or ``"small"``.
            **overrides: Fields to change after applying the preset.

        Returns:
            A validated :class:`TrainConfig`.

        Raises:
            ValueError: If ``name`` is not a known preset or an override is invalid.
            TypeError: If an override names an unknown field.
        """
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {name!r}")
        values: dict[str, Any] = {"preset_name": name}
        if name == "tiny":
            values.update(
                image_size=64,
                batch_size=4,
                lr=2e-4,
                lr_d=2e-4,
                alpha=1.0,
                t_b_max=300,
                pool_size=16,
                polarity_weight=1.0,
                val_every=100,
                ckpt_every=100,
                log_every=10,
                epochs=10,
            )
        elif name == "small":
            values.update(
                image_size=64, batch_size=4, lr=2e-4, lr_d=5e-5, alpha=1.0, t_b_max=300, pool_size=16,
                polarity_weight=1.0, val_every=150, ckpt_every=150, log_every=10, epochs=1000,
                eval_tta="flip", calibrate_threshold=True, collapse_patience=2, collapse_restore=True, amp="auto",
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        values.update(overrides)
        return cls(**values)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (tuples become lists) for checkpoints and JSON.

        Returns:
            A dict of ints, floats, strings, bools, ``None`` and lists.
        """
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys (e.g. from another darlkit version) warn and are ignored.

        The network fields of older checkpoints (:data:`LEGACY_MODEL_FIELDS`) are skipped
        without a warning: ``ModelConfig.from_checkpoint`` reads them.

        Args:
            data: A dict as written by :meth:`to_dict`.

        Returns:
            The configuration (fields missing from ``data`` take their defaults).

        Raises:
            TypeError: If ``data`` is not a dict.
        """
        if not isinstance(data, dict):
            raise TypeError(f"config must be a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - set(LEGACY_MODEL_FIELDS))
        if unknown:
            warnings.warn(
                f"TrainConfig: ignoring unknown field(s) {', '.join(unknown)} (written by another darlkit version?)",
                UserWarning,
                stacklevel=2,
            )
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with some fields changed.

        Args:
            **changes: Field values to change.

        Returns:
            The new configuration.
        """
        return dataclasses.replace(self, **changes)
