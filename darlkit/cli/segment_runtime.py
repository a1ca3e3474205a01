"""The segmenter ``darlkit segment`` runs: runtime (torch / ONNX Runtime), precision, cache.

``--runtime torch`` runs an :class:`~darlkit.model.InferenceSegmenter` of the checkpoint's
model; ``--runtime onnx`` runs an ONNX file through onnxruntime: a ``.onnx`` file given as
``--checkpoint`` (written by ``darlkit export``), or the checkpoint exported on the fly, verified
against eager (``darlkit.model.export_segmenter``) and kept in the cache folder
``.darlkit-cache/`` next to the checkpoint, so later runs reuse it. ONNX Runtime is the fastest
path measured on a CPU (``benchmarks/results/inference_cpu_2026-12-02.md``) but not the default:
the first run's export, and the session, raised the peak memory of a 1000 x 1000 paper-network
segmentation from under 1.5 GB to 3.9 GB (``tests/test_inference_memory.py``).

``--precision auto`` (the default; torch runtime) picks bf16 on a device with native bf16
(:func:`~darlkit.model.native_bf16`) when the Dice between its masks and the float32 masks on the
check set (the first frame of the first input, segmented as every input will be) is at least
:data:`~darlkit.model.BF16_MIN_DICE`, and float32 otherwise. The measured Dice is cached next to
the checkpoint as well (keyed by the checkpoint's size and modification time, the EMA choice and
the torch and darlkit versions), so the check runs once per checkpoint; an unwritable folder only
means the check runs again next time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from darlkit.cli import CLIError

__all__ = ["PreparedSegmenter", "prepare_segmenter", "cache_file"]

CACHE_DIR = ".darlkit-cache"
"""Folder (next to the checkpoint) of exported ONNX files and precision checks."""


@dataclass
class PreparedSegmenter:
    """What ``darlkit segment`` runs and what it reports.

    Attributes:
        segmenter: The :class:`~darlkit.model.InferenceSegmenter`.
        image_size: Training crop side of the model (the default tile is twice that), or
            ``None`` when unknown (an ONNX file without the metadata).
        num_timesteps: T (``None`` for an ONNX file: only ``t = 0``).
        notes: Lines to print (runtime, precision and why, export / cache use).
    """

    segmenter: Any
    image_size: int | None
    num_timesteps: int | None
    notes: list[str] = field(default_factory=list)


def cache_file(checkpoint: Path, use_ema: bool | None, suffix: str) -> Path:
    """The cache file of a checkpoint: ``<folder>/.darlkit-cache/<name>-<key><suffix>``.

    Args:
        checkpoint: A checkpoint file or model folder.
        use_ema: The EMA choice (part of the key).
        suffix: ``".onnx"`` or ``".json"``.

    Returns:
        The path (not created). The key hashes the checkpoint's resolved path, size and
        modification time (of ``model.safetensors`` for a model folder), ``use_ema`` and the
        torch and darlkit versions, so a changed checkpoint or library never reuses a stale entry.
    """
    import torch

    from darlkit._version import __version__

    checkpoint = Path(checkpoint)
    target = checkpoint / "model.safetensors" if checkpoint.is_dir() else checkpoint
    st = target.stat() if target.exists() else checkpoint.stat()
    raw = f"{checkpoint.resolve()}|{st.st_size}|{st.st_mtime_ns}|{use_ema}|{torch.__version__}|{__version__}"
    key = hashlib.sha256(raw.encode()).hexdigest()[:16]
    return checkpoint.resolve().parent / CACHE_DIR / f"{checkpoint.name}-{key}{suffix}"


def _write_cache(path: Path, write: Callable[[Path], Any]) -> bool:
    """Write a cache entry atomically; ``False`` (nothing written) when the folder is not writable."""
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def _onnx_segmenter(checkpoint: Path, model, config, use_ema, notes: list[str]):
    """An InferenceSegmenter of the cached (or freshly exported and verified) ONNX file."""
    from darlkit.model import InferenceSegmenter
    from darlkit.model.export import export_segmenter

    path = cache_file(checkpoint, use_ema, ".onnx")
    if not path.is_file():
        meta = {"image_size": str(config.image_size)}
        report: dict[str, Any] = {}
        if not _write_cache(path, lambda tmp: report.update(export_segmenter(model, tmp, format="onnx", metadata=meta))):
            raise CLIError(f"--runtime onnx: cannot write the export cache {path.parent}; "
                           f"export with `darlkit export {checkpoint} --out FILE.onnx` and pass that as --checkpoint")
        notes.append(f"runtime: onnxruntime, exported to {path} (max |onnx - eager| = {report['max_abs_diff']:.1e}); "
                     "precision: fp32")
    return InferenceSegmenter(model, onnx=path)


def _choose_precision(checkpoint: Path, fp32, image_size: int, use_ema, device: str, check, notes: list[str]) -> str:
    """``"bf16"`` when native and verified on the check set (cached), else ``"fp32"``.

    ``fp32`` is the float32 ``InferenceSegmenter``; the bf16 one shares its networks."""
    from darlkit.model import BF16_MIN_DICE, bf16_agreement, native_bf16

    if not native_bf16(device):
        notes.append(f"precision: fp32 (no native bf16 on {device})")
        return "fp32"
    path = cache_file(checkpoint, use_ema, ".json")
    dice = where = None
    try:
        entry = json.loads(path.read_text())
        dice, where = float(entry["bf16_mask_dice"]), f"{entry['check']}, cached"
    except (OSError, ValueError, KeyError, TypeError):
        name, image, segment = check(image_size)
        dice, where = bf16_agreement(fp32, fp32.with_precision("bf16"), [image], segment), str(name)
        _write_cache(path, lambda tmp: tmp.write_text(json.dumps({"bf16_mask_dice": dice, "check": where})))
    chosen = "bf16" if dice >= BF16_MIN_DICE else "fp32"
    notes.append(f"precision: {chosen} (bf16 vs fp32 mask Dice {dice:.4f} on {where}; bf16 needs >= {BF16_MIN_DICE})")
    return chosen


def prepare_segmenter(
    checkpoint: Path,
    *,
    runtime: str | None = None,
    precision: str = "auto",
    compile: bool = False,
    device: str = "cpu",
    use_ema: bool | None = None,
    check: Callable[[int], tuple[str, Any, Callable]] | None = None,
    t: int = 0,
) -> PreparedSegmenter:
    """Load a checkpoint (or ONNX file) as the segmenter ``darlkit segment`` runs.

    Args:
        checkpoint: ``last.pt`` / ``best.pt``, a model folder, or a ``.onnx`` file from
            ``darlkit export``.
        runtime: ``"torch"``, ``"onnx"`` or ``None`` (``onnx`` for a ``.onnx`` file, else ``torch``).
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (see the module docstring).
        compile: ``torch.compile`` the networks (torch runtime).
        device: Torch device (``cpu`` for ONNX).
        use_ema: EMA weights of a training checkpoint (``None``: the run's default).
        check: For ``precision="auto"``: ``check(image_size)`` returns ``(name, image, segment)``, the check image
            (1, 1, H, W) in [-1, 1] and ``segment(segmenter, image) -> logits``; called only when
            the check is not cached.
        t: The diffusion step that will be used (checked here, before any export or check).

    Returns:
        A :class:`PreparedSegmenter`.

    Raises:
        CLIError: On an impossible combination (ONNX with bf16, compile, a GPU or a non-ONNX file).
    """
    from darlkit.model import InferenceSegmenter
    from darlkit.training import load_trained_model

    is_onnx_file = checkpoint.is_file() and checkpoint.suffix.lower() == ".onnx"
    notes: list[str] = []
    runtime = runtime or ("onnx" if is_onnx_file else "torch")
    if runtime == "onnx":
        if precision == "bf16" or compile:
            raise CLIError("--runtime onnx runs float32 without --compile (drop --precision bf16 / --compile)")
        if device != "cpu":
            raise CLIError(f"--runtime onnx runs on the CPU (onnxruntime's CPU provider), got --device {device}")
        if t != 0:
            raise CLIError(f"--t must be 0 with --runtime onnx (the exported graph segments at t = 0), got {t}")
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise CLIError("--runtime onnx needs onnxruntime: pip install 'darlkit[onnx]'") from None
        cached = checkpoint if is_onnx_file else cache_file(checkpoint, use_ema, ".onnx")
        if cached.is_file():  # an ONNX file, or a cached export: the checkpoint is not loaded
            seg = InferenceSegmenter(onnx=cached)
            size = seg._onnx.metadata.get("image_size")
            notes.append(f"runtime: onnxruntime, {'' if is_onnx_file else 'cached export '}{cached}; precision: fp32")
            return PreparedSegmenter(seg, int(size) if size else None, None, notes)
    elif is_onnx_file:
        raise CLIError(f"--checkpoint {checkpoint} is an ONNX file: segment it with --runtime onnx")
    model, config = load_trained_model(checkpoint, device=device, use_ema=use_ema)
    if t >= model.num_timesteps:
        raise CLIError(f"--t must be < {model.num_timesteps} (the diffusion steps of this model), got {t}")
    if runtime == "onnx":
        seg = _onnx_segmenter(checkpoint, model, config, use_ema, notes)
        return PreparedSegmenter(seg, config.image_size, model.num_timesteps, notes)
    # one copy of the networks (spectral norms folded, channels-last on a CPU) for the check and the
    # run; with --compile the run gets its own compiled copy (its warm-up is then the compilation)
    seg = InferenceSegmenter(model, precision="fp32")
    if precision == "auto":
        precision = _choose_precision(checkpoint, seg, config.image_size, use_ema, device, check, notes)
    else:
        notes.append(f"precision: {precision} (--precision)")
    seg = InferenceSegmenter(model, precision=precision, compile=True) if compile else seg.with_precision(precision)
    notes.insert(0, "runtime: torch" + (", channels-last" if seg.channels_last else "")
                 + (" (torch.compile, freezing)" if compile else ""))
    return PreparedSegmenter(seg, config.image_size, model.num_timesteps, notes)
