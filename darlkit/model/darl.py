"""The DARL model: diffusion module + generation module, with one-step segmentation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from darlkit._validation import check_int
from darlkit.nets.config import ConfigMixin, network_config, network_from_config
from darlkit.diffusion.timesteps import check_timesteps, sample_timesteps
from darlkit.model.inputs import check_image, check_mask
from darlkit.model.inference import pad_to_multiple
from darlkit.model.paths import DARLPaths, mask_to_onehot
from darlkit.polyphase import polyphase_merge, polyphase_split

__all__ = ["DARL", "DARLPaths", "mask_to_onehot"]


class DARL(ConfigMixin, nn.Module):
    """Diffusion Adversarial Representation Learning: epsilon_theta + G + a diffusion schedule.

    Segmentation is one step: ``s_hat = G(concat(x_t, eps_theta(x_t, t)))`` (no mask,
    no reverse diffusion); synthesis is the same generator conditioned on a vessel mask
    through its switchable SPADE layers. The discriminators are not part of this module
    (the trainer owns them).

    Inputs (``segment``, ``synthesize``, ``forward_paths``): images are (N, 1, H, W) floats in
    [-1, 1]; float16, bfloat16 and float64 inputs are cast to the dtype of the model's
    parameters (float32 unless the model was cast) and the outputs have that dtype. NaN and
    Inf values are refused (the error names which, and how many); values outside [-1, 1] by
    more than :data:`~darlkit.model.IMAGE_RANGE_TOLERANCE` (0.5) raise a ``UserWarning`` (typically a 0..255
    image). Masks hold vessel = 1 and background = -1 or 0 (float, bool or integer); a
    {0, 1} mask is mapped to {-1, 1}, any other value is an error. Steps are checked by
    :func:`darlkit.diffusion.check_timesteps`: ``t`` and ``t_b`` in [0, T), ``t_a`` in
    [0, t_a_max).

    Submodule names (``unet``, ``generator``, ``diffusion``) define the state-dict layout;
    the release's keys map onto it by the prefixes ``denoise_fn.`` -> ``unet.``,
    ``segment_fn.`` -> ``generator.`` and top-level schedule buffers -> ``diffusion.``
    (see ``load_released_checkpoint``).

    A DARL whose U-Net and generator record their configuration (the darlkit networks do) is
    saved as a model folder with :meth:`save_pretrained` (``config.json`` + ``model.safetensors``)
    and rebuilt bit-identically by :meth:`from_pretrained`; :attr:`config` nests the networks'
    configs and the diffusion schedule.

    Args:
        unet: The diffusion module epsilon_theta(x, t) (default: ``DiffusionUNet()``,
            the paper's); must map (N, 1, H, W) and steps (N,) to (N, 1, H, W).
        generator: The generation module G(x, segmap=None) (default: ``SPADEGenerator()``);
            must take 2 input channels and a 2-channel one-hot segmap.
        diffusion: The forward process (default: ``GaussianDiffusion()``, linear 1e-6..1e-2,
            T = 2000); needs ``q_sample(x0, t, noise)`` and ``num_timesteps``.
        t_a_max: t_a is drawn from U{0, ..., t_a_max - 1} (200), 1 <= t_a_max <= T.

    Raises:
        ValueError: If ``t_a_max`` is outside [1, T].
    """

    def __init__(
        self,
        unet: nn.Module | None = None,
        generator: nn.Module | None = None,
        diffusion: nn.Module | None = None,
        t_a_max: int = 200,
    ) -> None:
        super().__init__()
        if unet is None:
            from darlkit.nets import DiffusionUNet

            unet = DiffusionUNet()
        if generator is None:
            from darlkit.nets import SPADEGenerator

            generator = SPADEGenerator()
        if diffusion is None:
            from darlkit.diffusion import GaussianDiffusion

            diffusion = GaussianDiffusion()
        for name, mod in (("unet", unet), ("generator", generator), ("diffusion", diffusion)):
            if not isinstance(mod, nn.Module):
                raise TypeError(f"{name} must be an nn.Module, got {type(mod).__name__}")
        self.unet = unet
        self.generator = generator
        self.diffusion = diffusion
        T = int(diffusion.num_timesteps)
        if check_int("t_a_max", t_a_max) > T:
            raise ValueError(f"t_a_max must be an int in [1, {T}], got {t_a_max!r}")
        self.t_a_max = t_a_max

    # ------------------------------------------------------------------ config
    _record_init = False  # the config is built from the submodules (see ``config``)
    _skip_init_arg = None

    @property
    def config(self) -> dict[str, Any]:
        """``{"unet": {...}, "generator": {...}, "diffusion": {...}, "t_a_max": int}`` as JSON data.

        The network entries are :func:`~darlkit.nets.network_config` dicts (with
        ``_class_name``); ``diffusion`` is ``{"_class_name": "GaussianDiffusion", "schedule",
        "timesteps"}`` (``schedule`` is ``"custom"`` for explicit betas, which only a model
        folder's weights can restore).

        Raises:
            TypeError: If a submodule does not record its configuration.
        """
        from darlkit.diffusion import GaussianDiffusion

        if not isinstance(self.diffusion, GaussianDiffusion):
            raise TypeError(f"diffusion is a {type(self.diffusion).__name__}; only GaussianDiffusion can be saved")
        return {
            "unet": network_config(self.unet, "unet"),
            "generator": network_config(self.generator, "generator"),
            "diffusion": {
                "_class_name": "GaussianDiffusion",
                "schedule": self.diffusion.schedule,
                "timesteps": self.num_timesteps,
            },
            "t_a_max": self.t_a_max,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, skip_init: bool = False) -> DARL:
        """Build a DARL from a dict like :attr:`config` (networks rebuilt by their class names).

        Args:
            config: The nested configuration (unknown keys warn and are ignored).
            skip_init: Build the networks without weight initialisation (for loaded weights).

        Returns:
            The new model.

        Raises:
            ValueError: If an entry is missing or invalid, or a ``"custom"`` schedule is asked
                for without ``skip_init`` (its betas live in the weights).
        """
        from darlkit.diffusion import GaussianDiffusion

        known = cls._split_config(config)
        missing = sorted({"unet", "generator", "diffusion"} - set(known))
        if missing:
            raise ValueError(f"DARL config lacks {missing}")
        diff = dict(known["diffusion"])
        schedule, timesteps = diff.get("schedule", "linear"), diff.get("timesteps", 2000)
        if schedule == "custom":
            if not skip_init:
                raise ValueError("a DARL config with a 'custom' beta schedule can only be loaded with its weights")
            diffusion = GaussianDiffusion(betas=[0.5] * int(timesteps))  # replaced by the loaded buffers
        else:
            diffusion = GaussianDiffusion(schedule=schedule, timesteps=timesteps)
        return cls(
            unet=network_from_config(known["unet"], skip_init=skip_init),
            generator=network_from_config(known["generator"], skip_init=skip_init),
            diffusion=diffusion,
            t_a_max=known.get("t_a_max", 200),
        )

    # ------------------------------------------------------------------ helpers
    @property
    def num_timesteps(self) -> int:
        """T, the number of diffusion steps."""
        return int(self.diffusion.num_timesteps)

    @property
    def size_multiple(self) -> int:
        """Image height and width must be multiples of this (32 for the paper networks)."""
        m = 1
        for net in (self.unet, self.generator):
            k = getattr(net, "size_multiple", 1)
            m = math.lcm(m, k)
        return m

    def _input_dtype(self) -> torch.dtype:
        """The floating dtype inputs are cast to: that of the model's parameters (float32)."""
        for p in self.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    def _check_image(self, x: object, name: str) -> torch.Tensor:
        """Validate an image input; returns it in the model's dtype (see :func:`check_image`)."""
        return check_image(x, name, size_multiple=self.size_multiple, dtype=self._input_dtype())

    def _check_mask(self, mask: object, ref: torch.Tensor) -> torch.Tensor:
        """Validate a vessel mask of ``ref``'s shape; returns it in {-1, 1} (see :func:`check_mask`)."""
        return check_mask(mask, ref)

    def _steps(
        self, t: torch.Tensor | int, n: int, device: torch.device, name: str, upper: int | None = None
    ) -> torch.Tensor:
        """Steps as int64 (n,) on ``device`` in [0, upper) (default T) via ``check_timesteps``."""
        if upper is None:
            return check_timesteps(t, n, self.num_timesteps, name=name, device=device)
        return check_timesteps(t, n, upper, name=name, bound_name=f"{name}_max", device=device)

    def _randn(self, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)

    def _g_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([x_t, self.unet(x_t, t)], dim=1)

    # ------------------------------------------------------------------ public API
    def segment(
        self,
        x: torch.Tensor,
        t: int | torch.Tensor = 0,
        polyphase: bool = False,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One-step segmentation ``G(concat(x_t, eps_theta(x_t, t)))`` without a mask, any H x W.

        At ``t = 0`` the image is used as it is (as the release does). For ``t > 0`` it is
        first noised, ``x_t = q_sample(x, t, noise)`` (paper Fig. 3). An image whose sides are
        not multiples of ``size_multiple`` (``2 * size_multiple`` with ``polyphase``), or
        shorter than twice G's multiple (twice that with ``polyphase``; G's deepest feature
        maps then keep 2 x 2 pixels for instance norm), is padded at the bottom and right by
        reflection (``darlkit.model.pad_to_multiple``; a 1-px side is replicated) and the
        output is cropped back; other sizes run unpadded. The
        whole image is one forward pass (memory grows with its area; for large images use
        ``darlkit.model.segment_tiled``).

        Args:
            x: Angiograms (N, 1, H, W), float in [-1, 1]; any H, W >= 1.
            t: Diffusion step, an int or an int64 tensor (N,), in [0, T).
            polyphase: Segment the (padded) image as its four polyphase sub-images (one
                batch of 4N) and interleave the outputs back (the release's 512 -> 4 x 256 rule).
            noise: Noise for ``t > 0``: of the shape of ``x`` (padded and split like it) or of
                the network input (``x`` padded, then split with ``polyphase``); drawn from
                ``generator`` in the network input's shape when ``None``.
            generator: Random generator for the noise.

        Returns:
            Vessel logits (N, 1, H, W) in [-1, 1] (tanh); vessel where > 0.

        Raises:
            TypeError: On a non-tensor input or a non-integer ``t``.
            ValueError: On a wrong shape, channels, dtype, NaN values, ``t`` range or noise shape.
        """
        h, w = (x.shape[-2], x.shape[-1]) if isinstance(x, torch.Tensor) and x.dim() == 4 else (0, 0)
        pad = self._segment_padder(x, polyphase)
        x_net = pad(x)
        x_net = self._check_image(x_net, "x")
        steps = self._steps(t, x.shape[0], x.device, "t")
        if polyphase:
            steps = steps.repeat_interleave(4)
        if bool((steps > 0).any()):
            noise = self._randn(x_net, generator) if noise is None else self._segment_noise(noise, x, x_net, pad)
            x_t = self.diffusion.q_sample(x_net, steps, noise)
            x_t = torch.where((steps > 0).view(-1, 1, 1, 1), x_t, x_net)
        else:
            x_t = x_net
        out = self.generator(self._g_input(x_t, steps))
        return (polyphase_merge(out) if polyphase else out)[..., :h, :w]

    def _segment_padder(self, x: object, polyphase: bool):
        """The map from an input of ``segment`` to the network input: pad (and split)."""
        k = 2 if polyphase else 1
        m, low = self.size_multiple * k, self._segment_min_side * k
        valid = isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] == 1 and min(x.shape) > 0

        def pad(y: torch.Tensor) -> torch.Tensor:
            y = pad_to_multiple(y, m, min_size=low) if valid else y
            return polyphase_split(y) if polyphase and valid else y

        return pad

    @property
    def _segment_min_side(self) -> int:
        """Smallest network-input side for ``segment``: G's deepest feature maps keep 2 x 2
        pixels (instance norm needs more than one)."""
        return 2 * int(getattr(self.generator, "size_multiple", 1))

    @staticmethod
    def _segment_noise(noise: object, x: torch.Tensor, x_net: torch.Tensor, pad) -> torch.Tensor:
        if not isinstance(noise, torch.Tensor):
            raise TypeError(f"noise must be a torch.Tensor, got {type(noise).__name__}")
        if noise.shape == x_net.shape:
            return noise
        if noise.shape == x.shape:
            return pad(noise)
        raise ValueError(
            f"noise must have the shape of x {tuple(x.shape)} or of the network input {tuple(x_net.shape)}, "
            f"got {tuple(noise.shape)}"
        )

    def forward(self, x: torch.Tensor, t: int | torch.Tensor = 0) -> torch.Tensor:
        """Same as ``segment(x, t)``.

        Args:
            x: Angiograms (N, 1, H, W) in [-1, 1].
            t: Diffusion step (0).

        Returns:
            Vessel logits (N, 1, H, W) in [-1, 1].
        """
        return self.segment(x, t)

    def synthesize(
        self,
        background: torch.Tensor,
        mask: torch.Tensor,
        t: int | torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Synthesise an angiogram from a background image and a vessel mask (B path).

        ``x_t = q_sample(background, t, noise)``;
        ``x_hat = G(concat(x_t, eps_theta(x_t, t)); onehot(mask))``.

        Args:
            background: Background images x^b (N, 1, H, W) in [-1, 1].
            mask: Vessel masks (N, 1, H, W) in [-1, 1], vessel where > 0.
            t: Diffusion step(s), int or int64 tensor (N,), in [0, T).
            noise: Noise of ``background``'s shape (drawn from ``generator`` when None).
            generator: Random generator for the noise.

        Returns:
            Synthetic angiograms (N, 1, H, W) in [-1, 1].
        """
        background = self._check_image(background, "background")
        mask = self._check_mask(mask, background)
        steps = self._steps(t, background.shape[0], background.device, "t")
        if noise is None:
            noise = self._randn(background, generator)
        x_t = self.diffusion.q_sample(background, steps, noise)
        return self.generator(self._g_input(x_t, steps), mask_to_onehot(mask))

    def forward_paths(
        self,
        angiogram: torch.Tensor,
        background: torch.Tensor,
        mask: torch.Tensor,
        *,
        t_a: torch.Tensor | int | None = None,
        t_b: torch.Tensor | int | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> DARLPaths:
        """Run the A, B and cycle paths of one training iteration (SPEC "Training").

        * A: ``x^a_t = q(x^a, t_a, eps)``; ``seg = G(x^a_t, eps_theta(x^a_t, t_a))``.
        * B: ``x^b_t = q(x^b, t_b, eps)``; ``synth = G(x^b_t, eps_theta(x^b_t, t_b); onehot(s^f))``.
        * Cycle: ``x_hat_t = q(synth, t_a, eps)``; ``cycle = G(x_hat_t, eps_theta(x_hat_t, t_a))``.
        * ``loss_diff = MSE(eps, eps_theta(x^b_t, t_b))``, ``loss_cyc = mean |cycle - s^f|``.

        The same ``eps`` tensor serves all three q_samples. eps_theta runs once on the A
        and B inputs together (one batch of 2N) and once on the cycle input; G runs three
        times (the A and cycle calls have no mask, the B call has one). Gradients flow to
        every parameter of ``unet`` and ``generator`` through all paths (also through
        ``synth`` into the cycle path).

        Args:
            angiogram: Real angiograms x^a (N, 1, H, W) in [-1, 1].
            background: Background images x^b (N, 1, H, W) in [-1, 1].
            mask: Fractal vessel masks s^f (N, 1, H, W) in {-1, 1} or {0, 1} (vessel = 1; a
                {0, 1} mask is mapped to {-1, 1}, the target of L_cyc).
            t_a: Steps of the A and cycle paths (int or int64 (N,)) in [0, t_a_max); drawn from
                U{0..t_a_max-1} when None.
            t_b: Steps of the B path in [0, T); drawn from U{0..T-1} when None.
            noise: Gaussian noise (N, 1, H, W), cast to the inputs' dtype; drawn when None.
            generator: Random generator for the drawn steps and noise (its device must
                match the inputs').

        Returns:
            A ``DARLPaths``.

        Raises:
            TypeError, ValueError: On bad inputs (shape, channels, dtype, size, NaN or Inf,
                mask values, steps out of range).
        """
        angiogram = self._check_image(angiogram, "angiogram")
        background = self._check_image(background, "background")
        if tuple(background.shape) != tuple(angiogram.shape):
            raise ValueError(
                f"background must have the angiogram's shape {tuple(angiogram.shape)}, got {tuple(background.shape)}"
            )
        mask = self._check_mask(mask, angiogram)
        n, device = angiogram.shape[0], angiogram.device
        if t_a is None:
            t_a = sample_timesteps(n, self.t_a_max, generator=generator, device=device)
        else:
            t_a = self._steps(t_a, n, device, "t_a", upper=self.t_a_max)
        if t_b is None:
            t_b = sample_timesteps(n, self.num_timesteps, generator=generator, device=device)
        else:
            t_b = self._steps(t_b, n, device, "t_b")
        if noise is None:
            noise = self._randn(angiogram, generator)
        elif not isinstance(noise, torch.Tensor) or tuple(noise.shape) != tuple(angiogram.shape):
            got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
            raise ValueError(f"noise must be a tensor of shape {tuple(angiogram.shape)}, got {got}")
        elif not noise.is_floating_point():
            raise ValueError(f"noise must be a floating-point tensor, got dtype {noise.dtype}")
        else:
            noise = noise.to(angiogram.dtype)

        q = self.diffusion.q_sample
        x_a_t = q(angiogram, t_a, noise)
        x_b_t = q(background, t_b, noise)
        eps_ab = self.unet(torch.cat([x_a_t, x_b_t]), torch.cat([t_a, t_b]))
        eps_a, eps_b = eps_ab[:n], eps_ab[n:]
        seg = self.generator(torch.cat([x_a_t, eps_a], dim=1))
        synth = self.generator(torch.cat([x_b_t, eps_b], dim=1), mask_to_onehot(mask))
        x_hat_t = q(synth, t_a, noise.to(synth.dtype))  # synth is bf16/fp16 under autocast
        cycle = self.generator(self._g_input(x_hat_t, t_a))
        return DARLPaths(
            seg=seg,
            synth=synth,
            cycle=cycle,
            noise=noise,
            noise_pred=eps_b,
            t_a=t_a,
            t_b=t_b,
            loss_diff=F.mse_loss(eps_b, noise),
            loss_cyc=F.l1_loss(cycle, mask),
        )
