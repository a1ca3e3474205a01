"""One DARL iteration: the generator step, then the discriminator step (SPEC "Training").

:class:`DARLStep` owns what an iteration updates (the networks, their optimisers, LR
schedulers, AMP gradient scalers, the discriminators' image pools and the EMA) and its
resumable state; :class:`~darlkit.training.DARLTrainer` runs it in a loop around data,
validation and the run folder.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from darlkit.training.config import TrainConfig
from darlkit.training.distributed import DiscriminatorPair, GeneratorPaths, unwrap, wrap_ddp
from darlkit.training.ema import make_ema, update_ema
from darlkit.training.nonfinite import check_finite_losses, non_finite_forward
from darlkit.training.optim import (
    OptimizerSpec, SchedulerSpec, build_optimizer, build_scheduler, config_scheduler, paper_adam,
)
from darlkit.training.sampler import _mix_seed, step_draws

__all__ = ["DARLStep"]

LOSS_TERMS = ("loss_g", "loss_diff", "loss_adv", "loss_cyc", "loss_d", "loss_ds", "loss_da")


def _config_or_none(model: nn.Module) -> dict[str, Any] | None:
    try:
        return model.config
    except (AttributeError, TypeError):
        return None


def _seeded(*values: int) -> torch.Generator:
    return torch.Generator().manual_seed(_mix_seed(*values))


class DARLStep:
    """The alternating update of DARL (diffusion module + generator vs two PatchGAN discriminators).

    1. Generator step. With ``t_a ~ U{0..t_a_max-1}``, ``t_b ~ U{0..T-1}`` and one noise
       tensor eps, the model runs path A (segmentation ŝ of the noisy angiogram), path B
       (synthetic angiogram x̂^a from the noisy background and the fractal mask) and the cycle
       (segmentation of the noisy x̂^a). The loss
       ``L^G = L_diff + alpha * (mse(D_s(ŝ), 1) + mse(D_a(x̂^a), 1)) + beta * L_cyc``
       is minimised by ``optimizer_g`` (default: the paper's Adam) over the U-Net and generator;
       the discriminators do not receive gradients (``requires_grad`` off) and are not stepped.
       With ``config.polarity_weight > 0`` the term ``polarity_weight * polarity_loss(x̂^a,
       x^b, s^f)`` (synthetic vessels darker than their background and their surroundings; not
       in the paper) is added.
    2. Discriminator step. Fakes go through 50-image history pools; each discriminator gets
       ``0.5 * (mse(D(real), 1) + mse(D(fake), 0))`` with real = fractal mask, fake = ŝ for D_s
       and real = angiogram, fake = x̂^a for D_a; ``optimizer_d`` (default: one Adam) steps both.

    The draws of step k (t_a, t_b, eps) come from a generator seeded with ``(config.seed, k)``
    (:func:`~darlkit.training.step_draws`); each pool has its own seeded generator.

    Args:
        model: A ``darlkit.model.DARL``; moved to ``device`` (channels-last if configured).
        disc_mask: Mask discriminator D_s: (N, 1, H, W) in [-1, 1] -> patch logits.
        disc_image: Angiogram discriminator D_a: (N, 1, H, W) in [-1, 1] -> patch logits.
        config: The run's :class:`~darlkit.training.TrainConfig`.
        device: Training device.
        rank: This process's rank (its slice of the global-batch draws, its pool seeds).
        world_size: Number of processes; with ``distributed`` the two players are wrapped in
            ``DistributedDataParallel``.
        distributed: Whether a process group is initialised.
        optimizer_g: An optimiser over exactly the model's trainable parameters, a factory
            ``params -> Optimizer``, or ``None`` for ``Adam(lr=config.lr, betas=config.betas)``.
        optimizer_d: The same for both discriminators' parameters (default
            ``Adam(lr=config.lr_d, betas=config.betas)``).
        scheduler_g: Factory ``optimizer -> LRScheduler`` stepped after every generator step
            (``None``: the config's ``lr_warmup_steps`` / ``lr_decay`` schedule, see
            :func:`~darlkit.training.optim.config_scheduler`; constant when it sets none).
        scheduler_d: The same for the discriminator step.

    Raises:
        TypeError: If an optimiser or scheduler argument has the wrong type.
        ValueError: If an optimiser instance does not step exactly its player's parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        disc_mask: nn.Module,
        disc_image: nn.Module,
        config: TrainConfig,
        *,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        distributed: bool = False,
        optimizer_g: OptimizerSpec = None,
        optimizer_d: OptimizerSpec = None,
        scheduler_g: SchedulerSpec = None,
        scheduler_d: SchedulerSpec = None,
    ) -> None:
        from darlkit.losses import ImagePool

        self.config = config
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.distributed = bool(distributed)
        fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=fmt)
        self.disc_mask = disc_mask.to(device, memory_format=fmt)
        self.disc_image = disc_image.to(device, memory_format=fmt)
        if config.compile:
            for mod in (self.model.unet, self.model.generator, self.disc_mask, self.disc_image):
                mod.compile()

        self.g_params = [p for p in self.model.parameters() if p.requires_grad]
        self.d_params = [p for m in (self.disc_mask, self.disc_image) for p in m.parameters()]
        betas = tuple(config.betas)
        self.opt_g = build_optimizer(optimizer_g, self.g_params, default=paper_adam(config.lr, betas),
                                     name="optimizer_g")
        self.opt_d = build_optimizer(optimizer_d, self.d_params, default=paper_adam(config.lr_d, betas),
                                     name="optimizer_d")
        from_config = config_scheduler(config)  # the config's warmup/decay unless a scheduler is injected
        self.sched_g = build_scheduler(scheduler_g or from_config, self.opt_g, name="scheduler_g")
        self.sched_d = build_scheduler(scheduler_d or from_config, self.opt_d, name="scheduler_d")
        use_scaler = config.amp == "fp16"
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=use_scaler)
        # The pools draw from their own generators (state checkpointed with the pool).
        self.pool_mask = ImagePool(config.pool_size, generator=_seeded(config.seed, rank, 0x5001))
        self.pool_image = ImagePool(config.pool_size, generator=_seeded(config.seed, rank, 0x5002))
        self.ema = make_ema(self.model, config.ema_decay, warmup=config.ema_warmup)

        g_step: nn.Module = GeneratorPaths(self.model)
        d_step: nn.Module = DiscriminatorPair(self.disc_mask, self.disc_image)
        self._g_step = wrap_ddp(g_step, device) if distributed else g_step
        self._d_step = wrap_ddp(d_step, device) if distributed else d_step
        self.last_synth: torch.Tensor | None = None
        """The first synthetic angiogram x̂^a (1, H, W) of the latest step (``None`` before one)."""

    # ------------------------------------------------------------------ helpers
    def autocast(self) -> contextlib.AbstractContextManager:
        """The configured ``torch.autocast`` context (a no-op with ``amp="none"``)."""
        if self.config.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as float32 on the training device (channels-last for 4-d tensors if configured)."""
        x = x.to(self.device, dtype=torch.float32, non_blocking=True)
        if self.config.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def draws(self, step: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """t_a (N,), t_b (N,) and eps ``shape`` for this rank at ``step``, on the training device."""
        cfg, model = self.config, unwrap(self.model)  # t_a_max and T are the model's
        t_a, t_b, noise = step_draws(
            cfg.seed, step, shape, t_a_max=model.t_a_max, t_b_max=cfg.t_b_max or model.num_timesteps,
            rank=self.rank, world_size=self.world_size,
        )
        return t_a.to(self.device), t_b.to(self.device), self.to_device(noise)

    def _set_disc_grad(self, flag: bool) -> None:
        for p in self.d_params:
            p.requires_grad_(flag)

    def _update(self, loss: torch.Tensor, params: list[nn.Parameter], opt: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler, sched) -> None:
        """Backward, optional gradient clipping, optimiser and scheduler step of one player."""
        scaler.scale(loss).backward()
        if self.config.grad_clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        scaler.step(opt)
        scaler.update()
        if sched is not None:
            sched.step()

    # ------------------------------------------------------------------ one iteration
    def __call__(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """Run one generator step and one discriminator step on ``batch``.

        Args:
            batch: Dict with ``"angiogram"``, ``"background"`` and ``"mask"``, each
                (N, 1, H, W) in [-1, 1] (mask in {-1, 1}); N is this process's batch.
            step: The step's index (selects its random draws).

        Returns:
            The loss terms as floats: ``loss_g``, ``loss_diff``, ``loss_adv``, ``loss_cyc``,
            ``loss_d``, ``loss_ds``, ``loss_da``, and ``loss_pol`` (the unweighted polarity prior)
            when ``config.polarity_weight`` is not 0.

        Raises:
            ValueError: If a key is missing.
            NonFiniteLoss: If a player's loss is NaN or Inf; raised before that player's
                optimiser step (see :mod:`~darlkit.training.nonfinite`).
        """
        from darlkit.losses import lsgan_discriminator_loss, lsgan_generator_loss, polarity_loss

        cfg = self.config
        try:
            angio = self.to_device(batch["angiogram"])
            background = self.to_device(batch["background"])
            mask = self.to_device(batch["mask"])
        except KeyError as exc:
            raise ValueError(f"a training batch needs the key {exc} (angiogram, background, mask)") from None
        for mod in (self.model, self.disc_mask, self.disc_image):
            mod.train()
        t_a, t_b, noise = self.draws(step, tuple(angio.shape))

        # ---- generator step (discriminators frozen)
        self._set_disc_grad(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast():
            try:
                paths = self._g_step(angio, background, mask, t_a, t_b, noise)
                loss_adv = lsgan_generator_loss(self.disc_mask(paths.seg), self.disc_image(paths.synth))
            except ValueError as exc:  # a network's NaN check met activations of non-finite weights
                # (the inputs are checked only here, off the hot path: three host syncs per step)
                inputs_finite = all(bool(torch.isfinite(x).all()) for x in (angio, background, mask))
                bad = non_finite_forward("generator", exc) if inputs_finite else None
                if bad is None:
                    raise
                raise bad from exc
        loss_diff = paths.loss_diff.float()
        loss_cyc = paths.loss_cyc.float()
        loss_g = loss_diff + cfg.alpha * loss_adv.float() + cfg.beta * loss_cyc
        loss_pol = None
        if cfg.polarity_weight:
            loss_pol = polarity_loss(paths.synth, background, mask, cfg.polarity_margin)
            loss_g = loss_g + cfg.polarity_weight * loss_pol
        check_finite_losses("generator", sync=self.distributed, loss_g=loss_g, loss_diff=loss_diff,
                            loss_adv=loss_adv, loss_cyc=loss_cyc)
        self._update(loss_g, self.g_params, self.opt_g, self.scaler_g, self.sched_g)
        self._set_disc_grad(True)
        if self.ema is not None:
            update_ema(self.ema, self.model)

        # ---- discriminator step
        seg = paths.seg.detach().float()
        synth = paths.synth.detach().float()
        fake_mask = self.pool_mask.query(seg)
        fake_image = self.pool_image.query(synth)
        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast():
            pr_s, pf_s, pr_a, pf_a = self._d_step(mask, fake_mask, angio, fake_image)
            loss_ds = lsgan_discriminator_loss(pr_s.float(), pf_s.float())
            loss_da = lsgan_discriminator_loss(pr_a.float(), pf_a.float())
        loss_d = loss_ds + loss_da
        check_finite_losses("discriminator", sync=self.distributed, loss_d=loss_d, loss_ds=loss_ds, loss_da=loss_da)
        self._update(loss_d, self.d_params, self.opt_d, self.scaler_d, self.sched_d)

        self.last_synth = synth[0]
        terms = [loss_g, loss_diff, loss_adv, loss_cyc, loss_d, loss_ds, loss_da]
        names = list(LOSS_TERMS)
        if loss_pol is not None:
            terms.append(loss_pol)
            names.append("loss_pol")
        # One device-to-host copy for all terms instead of one per term.
        values = torch.stack([v.detach().float().reshape(()) for v in terms]).tolist()
        return dict(zip(names, values))

    # ------------------------------------------------------------------ resumable state
    def state_dict(self) -> dict[str, Any]:
        """The networks, optimisers, schedulers, scalers, EMA and pools (tensors and plain data).

        Returns:
            A dict with keys ``model_config`` (``DARL.config``, what ``darlkit.model.load_model``
            rebuilds the model from; ``None`` for networks that do not record it), ``model``,
            ``disc_mask``, ``disc_image``, ``opt_g``, ``opt_d``, ``optimizers`` (their class
            names), ``sched_g``, ``sched_d``, ``scaler_g``, ``scaler_d``, ``ema``, ``pool_mask``,
            ``pool_image`` (``None`` for absent parts).
        """
        return {
            "model_config": _config_or_none(unwrap(self.model)),
            "model": unwrap(self.model).state_dict(),
            "disc_mask": unwrap(self.disc_mask).state_dict(),
            "disc_image": unwrap(self.disc_image).state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "optimizers": [type(self.opt_g).__name__, type(self.opt_d).__name__],
            "sched_g": self.sched_g.state_dict() if self.sched_g is not None else None,
            "sched_d": self.sched_d.state_dict() if self.sched_d is not None else None,
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "pool_mask": self.pool_mask.state_dict(),
            "pool_image": self.pool_image.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (checkpoints without scheduler or optimiser
        names, written before optimisers could be injected, load as Adam without schedulers).

        Args:
            state: The dict (e.g. a whole training checkpoint).

        Raises:
            ValueError: If the checkpoint's optimiser classes, schedulers or EMA do not match.
        """
        ours = [type(self.opt_g).__name__, type(self.opt_d).__name__]
        theirs = list(state.get("optimizers", ["Adam", "Adam"]))
        if theirs != ours:
            raise ValueError(f"the checkpoint's optimisers are {theirs}, the trainer's are {ours}")
        for name, sched in (("sched_g", self.sched_g), ("sched_d", self.sched_d)):
            if (sched is None) != (state.get(name) is None):
                raise ValueError(
                    f"the trainer {'has' if sched is not None else 'has no'} LR scheduler {name}, "
                    f"the checkpoint {'has none' if sched is not None else 'has one'}"
                )
        if self.ema is not None and state.get("ema") is None:
            raise ValueError("the trainer uses an EMA but the checkpoint has none")
        unwrap(self.model).load_state_dict(state["model"])
        unwrap(self.disc_mask).load_state_dict(state["disc_mask"])
        unwrap(self.disc_image).load_state_dict(state["disc_image"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        for name, sched in (("sched_g", self.sched_g), ("sched_d", self.sched_d)):
            if sched is not None:
                sched.load_state_dict(state[name])
        self.scaler_g.load_state_dict(state["scaler_g"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.pool_mask.load_state_dict(state["pool_mask"])
        self.pool_image.load_state_dict(state["pool_image"])
