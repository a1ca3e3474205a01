"""The DARL model: diffusion module + generation module, with one-step segmentation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from darlkit.model.inference import pad_to_multiple
from darlkit.polyphase import polyphase_merge, polyphase_split

__all__ = ["DARL", "DARLPaths", "mask_to_onehot"]


def mask_to_onehot(mask: torch.Tensor) -> torch.Tensor:
    """Turn a mask in [-1, 1] into the 2-channel (background, vessel) one-hot segmap of G.

    Args:
        mask: (N, 1, H, W) float; vessel where > 0.

    Returns:
        (N, 2, H, W) float of ``mask``'s dtype: channel 0 = 1 on background, channel 1 = 1
        on vessel pixels.
    """
    vessel = (mask > 0).to(mask.dtype)
    return torch.cat([1 - vessel, vessel], dim=1)


@dataclass
class DARLPaths:
    """Outputs of one pass through DARL's A, B and cycle paths (SPEC "Training").

    Shapes are those of the inputs, (N, 1, H, W); images and masks are in [-1, 1].

    Attributes:
        seg: A path: s_hat = G(x^a_{t_a}, eps_theta(x^a_{t_a}, t_a)), mask logits (no mask given).
        synth: B path: x_hat^a = G(x^b_{t_b}, eps_theta(x^b_{t_b}, t_b); s^f), synthetic angiogram.
        cycle: Cycle path: s_rec, the segmentation of q_sample(x_hat^a, t_a, noise).
        noise: The Gaussian noise used by all three q_samples.
        noise_pred: eps_theta(x^b_{t_b}, t_b), the B path's noise prediction.
        t_a: Steps of the A and cycle paths, int64 (N,).
        t_b: Steps of the B path, int64 (N,).
        loss_diff: Scalar MSE(noise, noise_pred) (L_diff).
        loss_cyc: Scalar mean L1(cycle, mask) (L_cyc).
    """

    seg: torch.Tensor
    synth: torch.Tensor
    cycle: torch.Tensor
    noise: torch.Tensor
    noise_pred: torch.Tensor
    t_a: torch.Tensor
    t_b: torch.Tensor
    loss_diff: torch.Tensor
    loss_cyc: torch.Tensor


class DARL(nn.Module):
    """Diffusion Adversarial Representation Learning: epsilon_theta + G + a diffusion schedule.

    Segmentation is one step: ``s_hat = G(concat(x_t, eps_theta(x_t, t)))`` (no mask,
    no reverse diffusion); synthesis is the same generator conditioned on a vessel mask
    through its switchable SPADE layers. The discriminators are not part of this module
    (the trainer owns them).

    Submodule names (``unet``, ``generator``, ``diffusion``) define the state-dict layout;
    the release's keys map onto it by the prefixes ``denoise_fn.`` -> ``unet.``,
    ``segment_fn.`` -> ``generator.`` and top-level schedule buffers -> ``diffusion.``
    (see ``load_released_checkpoint``).

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
        if isinstance(t_a_max, bool) or not isinstance(t_a_max, int) or not 1 <= t_a_max <= T:
            raise ValueError(f"t_a_max must be an int in [1, {T}], got {t_a_max!r}")
        self.t_a_max = t_a_max

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
            m = m * k // _gcd(m, k)
        return m

    def _check_image(self, x: object, name: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"{name} must have shape (N, 1, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        m = self.size_multiple
        h, w = x.shape[-2:]
        if h == 0 or w == 0 or h % m or w % m:
            raise ValueError(f"{name} height and width must be positive multiples of {m}, got {(h, w)}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} must have a non-empty batch, got shape {tuple(x.shape)}")
        if torch.isnan(x).any():
            raise ValueError(f"{name} contains NaN")
        return x

    def _steps(self, t: torch.Tensor | int, n: int, device: torch.device, name: str) -> torch.Tensor:
        T = self.num_timesteps
        if isinstance(t, torch.Tensor):
            if t.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"{name} must be an integer tensor, got dtype {t.dtype}")
            t = t.reshape(-1).to(device=device, dtype=torch.int64)
            if t.numel() == 1 and n != 1:
                t = t.expand(n).clone()
            if t.numel() != n:
                raise ValueError(f"{name} must have one step per image ({n}), got {t.numel()}")
        else:
            if isinstance(t, bool) or not isinstance(t, int):
                raise TypeError(f"{name} must be an int or an integer tensor, got {type(t).__name__}")
            t = torch.full((n,), t, dtype=torch.int64, device=device)
        if int(t.min()) < 0 or int(t.max()) >= T:
            raise ValueError(f"{name} must lie in [0, {T}), got min {int(t.min())} and max {int(t.max())}")
        return t

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

    def _check_mask(self, mask: object, ref: torch.Tensor) -> torch.Tensor:
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
        if tuple(mask.shape) != tuple(ref.shape):
            raise ValueError(f"mask must have shape {tuple(ref.shape)} (N, 1, H, W), got {tuple(mask.shape)}")
        if not mask.is_floating_point():
            raise ValueError(f"mask must be a floating-point tensor in [-1, 1], got dtype {mask.dtype}")
        if torch.isnan(mask).any():
            raise ValueError("mask contains NaN")
        return mask

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
            mask: Fractal vessel masks s^f (N, 1, H, W) in [-1, 1] (vessel where > 0).
            t_a: Steps of the A and cycle paths (int or int64 (N,)); drawn from
                U{0..t_a_max-1} when None.
            t_b: Steps of the B path; drawn from U{0..T-1} when None.
            noise: Gaussian noise (N, 1, H, W); drawn when None.
            generator: Random generator for the drawn steps and noise (its device must
                match the inputs').

        Returns:
            A ``DARLPaths``.

        Raises:
            TypeError, ValueError: On bad inputs (shape, channels, dtype, size, NaN, steps).
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
            t_a = torch.randint(0, self.t_a_max, (n,), generator=generator, device=device, dtype=torch.int64)
        else:
            t_a = self._steps(t_a, n, device, "t_a")
            if int(t_a.max()) >= self.t_a_max:
                raise ValueError(f"t_a must lie in [0, t_a_max={self.t_a_max}), got max {int(t_a.max())}")
        if t_b is None:
            t_b = torch.randint(0, self.num_timesteps, (n,), generator=generator, device=device, dtype=torch.int64)
        else:
            t_b = self._steps(t_b, n, device, "t_b")
        if noise is None:
            noise = self._randn(angiogram, generator)
        elif not isinstance(noise, torch.Tensor) or tuple(noise.shape) != tuple(angiogram.shape):
            got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
            raise ValueError(f"noise must be a tensor of shape {tuple(angiogram.shape)}, got {got}")

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

    @classmethod
    def from_released(cls, prefix: str, map_location: str | torch.device = "cpu") -> "DARL":
        """Build the paper's DARL and load the authors' released ``<prefix>_G.pth``.

        Args:
            prefix: Path prefix of the release files (``<prefix>_G.pth``).
            map_location: Where to load the tensors.

        Returns:
            A DARL model in eval mode computing the release's function.

        Raises:
            FileNotFoundError: If ``<prefix>_G.pth`` does not exist.
            ValueError: On unknown or missing keys or shape mismatches (all listed).
        """
        from darlkit.model.released import load_released_checkpoint

        return load_released_checkpoint(prefix, map_location=map_location).model


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a
