"""The fast inference path: a prepared one-step segmenter (torch fp32 / bf16, compiled, ONNX Runtime).

:class:`InferenceSegmenter` is built once per model and passed to
:func:`darlkit.model.segment_image` in place of the ``DARL`` model. Its networks are copies with
their spectral norms folded into plain weights (:func:`~darlkit.model.export.materialize_spectral_norm`),
every call runs under ``torch.inference_mode``, and it checks nothing itself: ``segment_image``
checks the image (shape, dtype, NaN / Inf) and ``t`` once per call at the API boundary, so the
tile loop has no host synchronisation. Precision and runtime:

* ``runtime="torch"``, ``precision="fp32"``: the same kernels as ``DARL.segment`` (equal to it to
  float32 rounding; exactly equal on the networks tested).
* ``precision="bf16"``: CPU/GPU bf16 autocast. Only faster on CPUs with native bf16 (AVX512-BF16 /
  AMX, :func:`native_bf16`); :func:`bf16_agreement` measures the Dice between its masks and the
  float32 masks, which ``darlkit segment --precision auto`` requires to be >= :data:`BF16_MIN_DICE`.
* ``channels_last`` (default on a CPU): the networks and their inputs in the channels-last memory
  format, which oneDNN's CPU convolutions run faster (paper networks, 512 x 512 on a 2-core
  AVX512 CPU: 1.19x the contiguous path in float32, 1.66x in bf16;
  ``benchmarks/results/inference_cpu_2026-12-02_channels_last_avx512bf16.md``); the same
  arithmetic up to float32 rounding (the convolutions sum in another order).
* ``compile=True``: ``torch.compile`` with Inductor freezing. The first call of every new input
  shape compiles (tens of seconds for the paper networks on a CPU); :attr:`InferenceSegmenter.warmup_s`
  records the first call's time so it is reported, not hidden.
* ``runtime="onnx"``: an ONNX file written by :func:`~darlkit.model.export_segmenter`, run by
  onnxruntime (``pip install 'darlkit[onnx]'``); ``t = 0`` only (the exported graph).
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from darlkit.model.export import OneStepSegmenter, OnnxSegmenter
from darlkit.polyphase import polyphase_merge, polyphase_split

__all__ = [
    "BF16_MIN_DICE",
    "PRECISIONS",
    "RUNTIMES",
    "InferenceSegmenter",
    "bf16_agreement",
    "native_bf16",
]

PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
"""Precisions of :class:`InferenceSegmenter`."""

RUNTIMES: tuple[str, ...] = ("torch", "onnx")
"""Runtimes of :class:`InferenceSegmenter` (``darlkit segment --runtime``)."""

BF16_MIN_DICE: float = 0.99
"""Smallest mean Dice between bf16 and float32 masks for bf16 to be chosen automatically."""


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 convolutions run natively (fast) on ``device``.

    Args:
        device: A CPU or CUDA device.

    Returns:
        For a CPU: oneDNN reports bf16 support (AVX512-BF16 or AMX; emulated bf16 on other CPUs
        is slower than float32). For CUDA: ``torch.cuda.is_bf16_supported()``. Otherwise ``False``.
    """
    device = torch.device(device)
    try:
        if device.type == "cpu":
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        if device.type == "cuda":
            return bool(torch.cuda.is_bf16_supported())
    except (AttributeError, RuntimeError):
        pass
    return False


class InferenceSegmenter:
    """A prepared one-step segmenter with ``DARL.segment``'s interface (no argument checks).

    Pass it to :func:`darlkit.model.segment_image` / :func:`~darlkit.model.segment_tiled` as the
    model; they check the input once per call. Inputs of any H x W are padded by reflection to
    the network multiple (as ``DARL.segment`` does) and the output is cropped back.

    Args:
        model: A :class:`~darlkit.model.DARL` model (not changed; its networks are copied).
            ``None`` only with ``onnx``.
        precision: ``"fp32"`` or ``"bf16"`` (autocast; torch runtime only).
        compile: ``torch.compile`` the networks with Inductor freezing (torch runtime only).
        channels_last: Run the networks in the channels-last memory format (torch runtime only);
            ``None`` (default): on a CPU, where oneDNN's convolutions are faster that way.
        onnx: Path of an ONNX file written by ``export_segmenter``: run that with onnxruntime
            instead of the torch networks.
        threads: onnxruntime intra-op threads (``None``: its default).

    Attributes:
        runtime: ``"torch"`` or ``"onnx"``.
        precision: ``"fp32"`` or ``"bf16"``.
        channels_last: Whether the torch networks run channels-last (``False`` for ONNX).
        size_multiple: The network multiple inputs are padded to.
        num_timesteps: T of the model (``None`` for an ONNX file: only ``t = 0``).
        memory_reference: The ``DARL`` model the memory estimate of ``segment_tiled`` uses
            (``None`` for an ONNX file: no estimate).
        warmup_s: Seconds of the first call (compilation with ``compile``; ``None`` before it).

    Raises:
        TypeError: If ``model`` is not a DARL model.
        ValueError: On an unknown precision or an impossible combination.
        ImportError: For ``onnx`` without onnxruntime (``pip install 'darlkit[onnx]'``).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        precision: str = "fp32",
        compile: bool = False,
        channels_last: bool | None = None,
        onnx: str | os.PathLike[str] | None = None,
        threads: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if onnx is not None and (precision != "fp32" or compile or channels_last):
            raise ValueError("an ONNX segmenter runs in float32 without compile or channels_last "
                             "(precision='fp32', compile=False, channels_last=None)")
        if onnx is None and model is None:
            raise ValueError("InferenceSegmenter needs a DARL model or an onnx file")
        self.precision = precision
        self.runtime = "onnx" if onnx is not None else "torch"
        self.memory_reference = model
        self.warmup_s: float | None = None
        self._diffusion = None
        self._seg: OneStepSegmenter | None = None
        self.channels_last = False
        if onnx is not None:
            self._onnx = OnnxSegmenter(Path(onnx), threads=threads)
            self.size_multiple = self._onnx.size_multiple
            self._min_side = self._onnx.min_side
            self.num_timesteps = None if model is None else int(model.num_timesteps)
            self._core = self._onnx.segment
            return
        self._seg = OneStepSegmenter(model)
        device = next(model.parameters()).device
        self.channels_last = device.type == "cpu" if channels_last is None else bool(channels_last)
        self._seg.to(device)
        if self.channels_last:
            self._seg.to(memory_format=torch.channels_last)
        self._diffusion = model.diffusion
        self.size_multiple = self._seg.size_multiple
        self._min_side = int(model._segment_min_side)
        self.num_timesteps = int(model.num_timesteps)
        self._core = self._compiled(self._seg) if compile else self._seg

    def with_precision(self, precision: str) -> InferenceSegmenter:
        """A segmenter sharing these networks (no copy of the weights) at another precision.

        Args:
            precision: ``"fp32"`` or ``"bf16"``.

        Returns:
            The new segmenter (torch runtime; compiled if this one is).

        Raises:
            ValueError: On an unknown precision or an ONNX segmenter.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if self.runtime != "torch":
            raise ValueError("an ONNX segmenter runs in float32 only")
        other = copy.copy(self)
        other.precision, other.warmup_s = precision, None
        return other

    @staticmethod
    def _compiled(seg: nn.Module):
        # Freezing for this compile only: the process-wide Inductor config stays as it was
        # (setting it globally made later training-time compiles fail).
        return torch.compile(seg, dynamic=False, options={"freezing": True})

    @property
    def _segment_min_side(self) -> int:
        """Smallest network-input side (G keeps 2 x 2 pixels at its deepest level)."""
        return self._min_side

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _net(self, x: torch.Tensor, t: int, noise: torch.Tensor | None, generator) -> torch.Tensor:
        """The network on padded (split) inputs: logits of ``G(concat(x_t, eps_theta(x_t, t)))``."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            noise = None if noise is None else noise.contiguous(memory_format=torch.channels_last)
        if t == 0:
            return self._core(x).float()
        if self._seg is None:
            raise ValueError(f"an ONNX segmenter segments at t = 0 only, got t={t}")
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        steps = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
        x_t = self._diffusion.q_sample(x, steps, noise)
        return self._seg.generator(torch.cat([x_t, self._seg.unet(x_t, steps)], dim=1)).float()

    def segment(
        self,
        x: torch.Tensor,
        t: int = 0,
        polyphase: bool = False,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One-step segmentation of a checked batch (``DARL.segment``'s semantics, no checks).

        Args:
            x: Angiograms (N, 1, H, W), float32 in [-1, 1], finite (not checked here).
            t: Diffusion step, an int in [0, T) (0 only for ONNX).
            polyphase: Segment as the four polyphase sub-images.
            noise: Noise for ``t > 0`` of ``x``'s shape or of the network input's.
            generator: Random generator of the noise when ``noise`` is ``None``.

        Returns:
            Vessel logits (N, 1, H, W), float32 in [-1, 1]; vessel where > 0.
        """
        from darlkit.model.inference import pad_to_multiple

        h, w = x.shape[-2:]
        k = 2 if polyphase else 1

        def to_net(y: torch.Tensor) -> torch.Tensor:
            y = pad_to_multiple(y, self.size_multiple * k, min_size=self._min_side * k)
            return polyphase_split(y) if polyphase else y

        x_net = to_net(x)
        if noise is not None and noise.shape != x_net.shape:
            noise = to_net(noise)
        start = time.perf_counter() if self.warmup_s is None else None
        with torch.inference_mode(), self._autocast(x.device):
            out = self._net(x_net, int(t), noise, generator)
        if start is not None:
            self.warmup_s = time.perf_counter() - start
        out = polyphase_merge(out) if polyphase else out
        return out[..., :h, :w].clone(memory_format=torch.contiguous_format)  # a normal tensor (callers may update it in place)

    __call__ = segment


def bf16_agreement(
    fp32: InferenceSegmenter,
    bf16: InferenceSegmenter,
    images: list[torch.Tensor],
    segment: Callable[[InferenceSegmenter, torch.Tensor], torch.Tensor],
) -> float:
    """Mean Dice between the bf16 and the float32 masks of a check set.

    Args:
        fp32: The float32 segmenter (the reference).
        bf16: The bf16 segmenter of the same model.
        images: Check images, each (N, 1, H, W) float32 in [-1, 1].
        segment: ``segment(segmenter, image) -> logits`` (N, 1, H, W): how the caller segments
            (tiling, polyphase, scale), so the check measures what will be used.

    Returns:
        The mean over all images of the Dice between the ``bf16 > 0`` and ``fp32 > 0`` masks, in
        [0, 1] (1.0 for an image where both masks are empty).

    Raises:
        ValueError: If ``images`` is empty.
    """
    from darlkit.metrics import dice_score

    if not images:
        raise ValueError("images must hold at least one check image")
    scores = [dice_score(segment(bf16, x), (segment(fp32, x) > 0).float()) for x in images]
    return float(torch.cat(scores).mean())
