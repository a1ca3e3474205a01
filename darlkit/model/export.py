"""Export the one-step DARL segmenter to ONNX, TorchScript or a ``torch.export`` program.

DARL segments in one network evaluation, ``G(concat(x, eps_theta(x, 0)))``, which makes it easy
to deploy outside Python training code. :class:`OneStepSegmenter` is that evaluation as a plain
tensor-to-tensor module (no Python-side checks, spectral norms folded into the weights), and
:func:`export_segmenter` writes it in one of :data:`EXPORT_FORMATS` and verifies the file against
the eager model. :class:`OnnxSegmenter` runs an exported ONNX file through onnxruntime with the
same ``segment`` interface as :class:`~darlkit.model.DARL`.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_TOLERANCE",
    "OneStepSegmenter",
    "OnnxSegmenter",
    "export_segmenter",
    "load_exported",
    "materialize_spectral_norm",
    "read_export_metadata",
    "verify_export",
]

METADATA_FILE = "darlkit_metadata.json"
"""Name of the JSON extra file holding the metadata of TorchScript and exported-program files."""

EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript", "exported-program")
"""Formats accepted by :func:`export_segmenter` (``darlkit export --format``)."""

EXPORT_TOLERANCE: dict[str, float] = {"onnx": 1e-4, "torchscript": 1e-5, "exported-program": 1e-5}
"""Base tolerance on ``max |exported - eager|`` of the float32 logits (in [-1, 1]) per format.

ONNX Runtime uses its own convolution kernels (differences of a few 1e-5 on the tiny networks);
TorchScript and exported programs run PyTorch's kernels. :func:`verify_export` widens the bound
to twice the eager float32 model's own error against float64 where that is larger."""


def materialize_spectral_norm(module: nn.Module) -> nn.Module:
    """Fold ``torch.nn.utils.spectral_norm`` into plain weights, in place.

    In eval mode a spectrally normalised layer recomputes ``weight = weight_orig / sigma`` from
    its stored power-iteration vectors at every forward; this computes it once (exactly as the
    eval forward does) and removes the hook, so inference and export see a plain convolution.

    Args:
        module: Any module (the DARL generator has spectral norms in its residual blocks).

    Returns:
        ``module`` itself, without spectral-norm hooks. Use it on a copy when the original must
        keep training.
    """
    from torch.nn.utils.spectral_norm import SpectralNorm

    for sub in module.modules():
        for hook in list(sub._forward_pre_hooks.values()):
            if isinstance(hook, SpectralNorm):
                torch.nn.utils.remove_spectral_norm(sub, name=hook.name)
    return module


def _copy(module: nn.Module) -> nn.Module:
    """A deep copy of a network that may hold spectral-norm weights computed with autograd.

    A spectrally normalised layer keeps the ``weight`` of its latest forward as a plain attribute;
    after a forward with gradients enabled it is a non-leaf tensor, which ``copy.deepcopy`` refuses.
    It is recomputed from ``weight_orig`` at every forward, so it is detached here first (in place
    of the attribute; nothing the module computes changes).
    """
    from torch.nn.utils.spectral_norm import SpectralNorm

    for sub in module.modules():
        for hook in sub._forward_pre_hooks.values():
            if isinstance(hook, SpectralNorm) and isinstance(getattr(sub, hook.name, None), torch.Tensor):
                setattr(sub, hook.name, getattr(sub, hook.name).detach())
    return copy.deepcopy(module)


class OneStepSegmenter(nn.Module):
    """DARL's one-step segmentation at ``t = 0`` as a pure tensor function.

    ``forward(x) = G(concat(x, eps_theta(x, 0)))``: the same numbers as ``DARL.segment(x)``
    (polyphase off), without the Python-side argument checks, so it traces, exports and
    compiles as one graph. The networks are deep-copied, put in eval mode and their spectral
    norms folded (:func:`materialize_spectral_norm`); the source model is not changed.

    Args:
        model: A :class:`~darlkit.model.DARL` model.

    Attributes:
        size_multiple: H and W of the input must be multiples of this.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for name in ("unet", "generator", "size_multiple"):
            if not hasattr(model, name):
                raise TypeError(f"model must be a DARL model (with .{name}), got {type(model).__name__}")
        self.unet = materialize_spectral_norm(_copy(model.unet)).eval()
        self.generator = materialize_spectral_norm(_copy(model.generator)).eval()
        self.size_multiple = int(model.size_multiple)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment a batch.

        Args:
            x: Angiograms (N, 1, H, W), float32 in [-1, 1]; H, W multiples of ``size_multiple``.

        Returns:
            Vessel logits (N, 1, H, W) in [-1, 1]; vessel where > 0.
        """
        t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return self.generator(torch.cat([x, self.unet(x, t)], dim=1))


def _check_format(fmt: str) -> str:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    return fmt


def _example(segmenter: OneStepSegmenter, size: tuple[int, int] | None) -> torch.Tensor:
    m = segmenter.size_multiple
    h, w = size if size is not None else (4 * m, 4 * m)
    if h <= 0 or w <= 0 or h % m or w % m:
        raise ValueError(f"size must be positive multiples of {m} for this model, got {(h, w)}")
    gen = torch.Generator().manual_seed(0)
    # A batch of 2: torch.export specialises a dimension traced at size 1.
    return torch.rand((2, 1, h, w), generator=gen) * 2 - 1


def export_segmenter(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    format: str = "onnx",
    size: tuple[int, int] | None = None,
    verify: bool = True,
    opset: int = 17,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write the one-step segmenter of a DARL model to a file and check it against eager.

    The exported graph takes any batch size and any H x W that are multiples of
    ``model.size_multiple`` (dynamic axes / dynamic shapes); inputs in [-1, 1], float32.

    Args:
        model: A :class:`~darlkit.model.DARL` model (not changed).
        path: Output file (``.onnx``, ``.pt`` for TorchScript, ``.pt2`` for an exported program
            are the usual suffixes; any name is accepted).
        format: One of :data:`EXPORT_FORMATS`.
        size: (H, W) of the example input used for tracing and verification (default
            4 x ``size_multiple`` square).
        verify: Reload the file and compare it with the eager model on the example input and on
            an input of another size and batch; raise when the difference exceeds the allowed
            one (:func:`verify_export`).
        opset: ONNX opset version (ONNX only).
        metadata: Extra metadata entries, strings (e.g. ``{"image_size": "256"}``, the training
            crop ``darlkit segment --runtime onnx`` sets its default tile from, or the
            checkpoint's calibrated ``threshold`` and ``tta``, which ``darlkit export`` writes).
            ``size_multiple`` and ``segment_min_side`` are always written. ONNX: the model's
            ``metadata_props``; TorchScript and exported programs: the extra file
            :data:`METADATA_FILE`. Read back with :func:`read_export_metadata`.

    Returns:
        A report: ``{"format", "path", "max_abs_diff", "eager_fp32_error", "allowed"}`` (see
        :func:`verify_export`; the last three are ``None`` without ``verify``).

    Raises:
        ValueError: On an unknown format, a bad size, or a verification failure.
        ImportError: When ONNX export is asked for without ``onnx`` (``pip install 'darlkit[onnx]'``).
    """
    fmt = _check_format(format)
    segmenter = OneStepSegmenter(model).cpu()
    x = _example(segmenter, size)
    path = Path(path)
    meta = {"size_multiple": str(segmenter.size_multiple),
            "segment_min_side": str(int(getattr(model, "_segment_min_side", 1))),
            **{str(k): str(v) for k, v in (metadata or {}).items()}}
    extra = {METADATA_FILE: json.dumps(meta, sort_keys=True)}
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError as exc:
            raise ImportError("ONNX export needs onnx: pip install 'darlkit[onnx]'") from exc
        axes = {0: "batch", 2: "height", 3: "width"}
        with torch.no_grad():
            torch.onnx.export(segmenter, (x,), str(path), dynamo=False, opset_version=opset,
                              input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": axes, "logits": axes})
        proto = onnx.load(str(path))
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(path))
    elif fmt == "torchscript":
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(segmenter, (x,), check_trace=False), str(path), _extra_files=extra)
    else:
        dim = torch.export.Dim
        m = segmenter.size_multiple
        shapes = ({0: dim("batch", max=4096), 2: m * dim("h_blocks", max=4096), 3: m * dim("w_blocks", max=4096)},)
        program = torch.export.export(segmenter, (x,), dynamic_shapes=shapes)
        torch.export.save(program, str(path), extra_files=extra)
    report: dict[str, Any] = {"format": fmt, "path": str(path), "max_abs_diff": None,
                              "eager_fp32_error": None, "allowed": None}
    if verify:
        m = segmenter.size_multiple
        gen = torch.Generator().manual_seed(1)
        other = torch.rand((3, 1, x.shape[-2] + m, x.shape[-1] + 2 * m), generator=gen) * 2 - 1
        report.update(verify_export(path, segmenter, [x, other], format=fmt))
    return report


def load_exported(path: str | os.PathLike[str], *, format: str) -> Any:
    """Load an exported segmenter as a callable ``f(x: Tensor) -> Tensor``.

    Args:
        path: File written by :func:`export_segmenter`.
        format: Its format (one of :data:`EXPORT_FORMATS`).

    Returns:
        A callable taking (N, 1, H, W) float32 in [-1, 1] and returning logits of that shape.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: On an unknown format or a file that does not load as that format.
    """
    fmt = _check_format(format)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model not found: {path}")
    try:
        if fmt == "onnx":
            return OnnxSegmenter(path)
        if fmt == "torchscript":
            return torch.jit.load(str(path), map_location="cpu")
        return torch.export.load(str(path)).module()
    except (ImportError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - every loader has its own error types
        raise ValueError(f"{path} does not load as a {fmt} file: {type(exc).__name__}: {exc}") from None


def read_export_metadata(path: str | os.PathLike[str], *, format: str | None = None) -> dict[str, str]:
    """The metadata :func:`export_segmenter` wrote into an exported file.

    Args:
        path: An exported file.
        format: Its format (one of :data:`EXPORT_FORMATS`; ``None``: ``onnx`` for a ``.onnx``
            suffix, ``exported-program`` for ``.pt2``, else ``torchscript``).

    Returns:
        ``{key: value}`` strings (``size_multiple``, ``segment_min_side`` and what the caller
        added, e.g. ``image_size``, ``threshold``, ``tta``); ``{}`` for a file written without
        them (another exporter, or darlkit before TorchScript / exported-program metadata).

    Raises:
        FileNotFoundError: If the file does not exist.
        ImportError: For ONNX without ``onnx`` or ``onnxruntime`` (``pip install 'darlkit[onnx]'``).
        ValueError: If the file does not load as that format.
    """
    path = Path(path)
    if format is None:
        format = {".onnx": "onnx", ".pt2": "exported-program"}.get(path.suffix.lower(), "torchscript")
    fmt = _check_format(format)
    if not path.is_file():
        raise FileNotFoundError(f"exported model not found: {path}")
    try:
        if fmt == "onnx":
            try:
                import onnx
            except ImportError:
                return dict(OnnxSegmenter(path).metadata)
            proto = onnx.load(str(path), load_external_data=False)
            return {p.key: p.value for p in proto.metadata_props}
        extra = {METADATA_FILE: ""}
        if fmt == "torchscript":
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        else:
            torch.export.load(str(path), extra_files=extra)
    except (ImportError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - every loader has its own error types
        raise ValueError(f"{path} does not load as a {fmt} file: {type(exc).__name__}: {exc}") from None
    text = extra[METADATA_FILE]
    if not text:
        return {}
    try:
        meta = json.loads(text)
    except ValueError:
        raise ValueError(f"{path}: its {METADATA_FILE} is not JSON") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its {METADATA_FILE} is not a JSON object")
    return {str(k): str(v) for k, v in meta.items()}


def verify_export(
    path: str | os.PathLike[str],
    reference: nn.Module,
    inputs: list[torch.Tensor],
    *,
    format: str,
) -> dict[str, float]:
    """Compare an exported file with the eager model; raise when it is off by more than allowed.

    The allowed difference is ``max(EXPORT_TOLERANCE[format], 2 * e32)``, where ``e32`` is the
    eager float32 model's own error against the same model run in float64 on the same inputs: an
    export cannot be asked to agree with float32 eager more closely than float32 eager agrees with
    exact arithmetic (randomly initialised paper-size networks have ``e32`` of a few 1e-4).

    Args:
        path: Exported file.
        reference: The eager module (a :class:`OneStepSegmenter` or a DARL model).
        inputs: Float32 batches (N, 1, H, W) in [-1, 1].
        format: The file's format.

    Returns:
        ``{"max_abs_diff": max |exported - eager|, "eager_fp32_error": e32, "allowed": bound}``
        over all inputs.

    Raises:
        ValueError: If ``max_abs_diff`` exceeds the allowed difference.
    """
    fn = load_exported(path, format=format)
    exact = copy.deepcopy(reference).double()
    worst = e32 = 0.0
    with torch.no_grad():
        for x in inputs:
            want = reference(x).float()
            e32 = max(e32, float((want.double() - exact(x.double())).abs().max()))
            worst = max(worst, float((fn(x).float() - want).abs().max()))
    allowed = max(EXPORT_TOLERANCE[format], 2.0 * e32)
    if not worst <= allowed:
        raise ValueError(
            f"exported {format} model differs from eager by {worst:.3g} > {allowed:.3g} "
            f"(float32 eager's own error: {e32:.3g}) ({path})"
        )
    return {"max_abs_diff": worst, "eager_fp32_error": e32, "allowed": allowed}


class OnnxSegmenter:
    """Run an exported ONNX segmenter with onnxruntime, with ``DARL.segment``'s interface.

    Args:
        path: ONNX file written by :func:`export_segmenter`.
        threads: onnxruntime intra-op threads (``None``: its default).

    Attributes:
        size_multiple: H and W must be multiples of this (read from the model's metadata when
            present, else inferred as 1; ``darlkit.model`` tiling pads inputs to it).
        min_side: Smallest network-input side (metadata ``segment_min_side``, else 1).
        metadata: The file's metadata (``size_multiple``, ``segment_min_side``, ``image_size``
            where ``darlkit export`` wrote it).

    Raises:
        ImportError: Without onnxruntime (``pip install 'darlkit[onnx]'``).
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError("running ONNX models needs onnxruntime: pip install 'darlkit[onnx]'") from exc
        opts = ort.SessionOptions()
        # No busy-waiting of the thread pool between runs: on a shared CPU (or between tiles,
        # while PyTorch blends) spinning threads would take the cores the next step needs.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = meta
        self.size_multiple = int(meta.get("size_multiple", 1))
        self.min_side = int(meta.get("segment_min_side", 1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`segment` at ``t = 0``.

        Args:
            x: (N, 1, H, W) float in [-1, 1].

        Returns:
            Logits (N, 1, H, W) float32 in [-1, 1].
        """
        return self.segment(x)

    def segment(self, x: torch.Tensor, t: int = 0, polyphase: bool = False) -> torch.Tensor:
        """One-step segmentation through onnxruntime.

        Args:
            x: Angiograms (N, 1, H, W), float in [-1, 1].
            t: Must be 0 (the exported graph is the ``t = 0`` segmenter).
            polyphase: Segment the four polyphase sub-images (H, W even multiples).

        Returns:
            Vessel logits (N, 1, H, W) float32 in [-1, 1] on ``x``'s device.

        Raises:
            ValueError: On ``t != 0`` or a bad input shape.
        """
        if t != 0:
            raise ValueError(f"t must be 0 for an exported segmenter, got {t!r}")
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"x must be a tensor of shape (N, 1, H, W), got {getattr(x, 'shape', type(x).__name__)}")
        if polyphase:
            from darlkit.polyphase import polyphase_merge, polyphase_split

            return polyphase_merge(self.segment(polyphase_split(x)))
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = self.session.run(None, {self.input_name: arr})[0]
        return torch.from_numpy(out).to(x.device)
