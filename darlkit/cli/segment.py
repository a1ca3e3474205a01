"""``darlkit segment``: one-step vessel masks for images of any format and size.

``darlkit segment X.jpg Y.tif Z.dcm --checkpoint CK --out M`` reads every input with
``darlkit.data.io.read_image_frames`` (PNG, TIFF, JPEG, GIF, BMP, PNM; DICOM with
``darlkit[dicom]``; a folder or glob takes every image file in it) and writes ``M/NAME.png``
at the input's size (0 = background, 255 = vessel; ``--soft``: the [-1, 1] output as grey
levels). A multi-frame input (DICOM cine, multi-page TIFF, animated GIF) gives one mask per
frame, ``NAME_f000.png``, ``NAME_f001.png``, ...; ``--overlay`` adds ``NAME_overlay.png``
(``NAME_f000_overlay.png``): the image in grey with the vessels tinted red.

Images of any size are segmented in overlapping tiles (``--tile``, default twice the training
crop; ``--overlap``, default an eighth of the tile) as their polyphase sub-images
(``--polyphase auto``: always, see ``darlkit.model.segment_image``), so memory stays bounded;
``--scale S`` resamples the image by ``S`` first (to give the vessels the width the model was
trained at) and the output back to the input's size. Existing masks are never replaced
unless ``--overwrite`` is given (an input is never replaced). ``--prepared DATA`` first gives every
input the preparation of a ``darlkit prepare`` folder (``DATA/prepare.json``: channel, inversion,
size, local contrast; ``darlkit.preparation.prepare_like``), as a model trained on it expects.

The model runs as an :class:`~darlkit.model.InferenceSegmenter` (spectral norms folded,
``torch.inference_mode``, the input checked once per image): ``--precision auto`` picks bf16
where it is native and verified, ``--runtime onnx`` runs onnxruntime, ``--compile``
``torch.compile`` (see :mod:`darlkit.cli.segment_runtime`). Inputs are decoded in ``--workers``
DataLoader processes while the model runs, with a progress bar on a terminal.
"""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path
from typing import Any

from darlkit.cli import CLIError, add_command, argtypes

RUNTIMES: tuple[str, ...] = ("torch", "onnx")
"""Values of ``--runtime``."""

__all__ = ["add_parser", "run", "segment_files", "output_names", "overlay_image"]

CHANNELS: tuple[str, ...] = ("luma", "green", "red", "blue")
"""Values of ``--channel``."""

OVERLAY_COLOUR: tuple[int, int, int] = (255, 0, 0)
"""RGB colour blended (50 %) over vessel pixels in ``--overlay`` images."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``darlkit segment`` (see :func:`darlkit.cli.add_command`)."""
    p = add_command(subparsers, "segment", run,
        help="segment images (any format and size) in one step",
        description="Write a vessel mask PNG (input size, input stem) for each input image or frame.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (PNG, TIFF, JPEG, GIF, BMP, PNM, DICOM), folders or glob patterns")
    p.add_argument("--checkpoint", type=Path, required=True, help="last.pt / best.pt of a training run, or a model folder (DARL.save_pretrained)")
    p.add_argument("--out", type=argtypes.output_dir, required=True, help="output folder for the masks")
    p.add_argument("--channel", choices=CHANNELS, default=None,
                   help="colour images: channel to segment (default luma; green for fundus photographs)")
    p.add_argument("--prepared", type=Path, default=None, metavar="DATA",
                   help="a `darlkit prepare` folder: give the inputs its preparation first (channel, inversion, "
                        "size, local contrast; read from DATA/prepare.json), as the model was trained on it")
    p.add_argument("--scale", type=argtypes.positive_float, default=1.0,
                   help="resample by this factor before segmenting and back after (default 1)")
    p.add_argument("--overlay", action="store_true", help="also write NAME_overlay.png (vessels in red)")
    p.add_argument("--tile", type=argtypes.positive_int, default=None,
                   help="tile side in pixels (default: twice the training crop)")
    p.add_argument("--overlap", type=argtypes.non_negative_int, default=None,
                   help="minimum tile overlap in pixels (default: tile / 8)")
    p.add_argument("--tile-batch", type=argtypes.positive_int_or_auto, default="auto",
                   help="network inputs (tiles, or polyphase sub-images) per forward pass (default auto: "
                        "up to 16 small inputs within 512 MiB of activations)")
    p.add_argument("--t", type=argtypes.non_negative_int, default=0, help="diffusion step for segmentation (default 0)")
    p.add_argument("--tta", choices=argtypes.TTA_CHOICES, default=None,
                   help="test-time augmentation: none or flip (mean of the 4 flips' logits, 4x the work); "
                        "default: the checkpoint's (none unless its run config says flip)")
    p.add_argument("--threshold", type=argtypes.threshold, default=None,
                   help="vessel where output > threshold (default: the checkpoint's, 0 unless calibrated)")
    p.add_argument("--polyphase", choices=("auto", "on", "off"), default="auto",
                   help="segment as 4 polyphase sub-images (auto: always, as in training)")
    p.add_argument("--soft", action="store_true", help="write the [-1, 1] output as grey levels, not a binary mask")
    p.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    p.add_argument("--overwrite", action="store_true", help="replace existing masks in --out")
    p.add_argument("--device", type=argtypes.device, default="cpu", help="device (default cpu)")
    p.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="onnx: onnxruntime on a .onnx --checkpoint from `darlkit export`, or on the checkpoint "
                        "exported once into .darlkit-cache/ next to it (needs darlkit[onnx]; CPU, float32, --t 0); "
                        "torch: PyTorch (default, except for a .onnx --checkpoint)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto (default): bf16 where the device has native bf16 and its masks agree with float32 "
                        "(Dice >= 0.99 on the first input, checked once per checkpoint), else fp32")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks (pays only for many images of one size; the warm-up is reported)")
    p.add_argument("--workers", type=argtypes.non_negative_int, default=1,
                   help="processes decoding the inputs while the model runs (default 1; 0: decode in this process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none either when stderr is not a terminal)")
    return p


def output_names(stem: str, frames: int, *, overlay: bool = False) -> list[str]:
    """File names written for an input of stem ``stem`` with ``frames`` frames.

    Args:
        stem: The input's file name without its suffix.
        frames: Number of frames (>= 1).
        overlay: Include the overlay images.

    Returns:
        ``[NAME.png]`` (and ``NAME_overlay.png``) for one frame; ``NAME_f000.png``, ... (each
        followed by its ``NAME_f000_overlay.png``) for several.
    """
    bases = [stem] if frames == 1 else [f"{stem}_f{k:03d}" for k in range(frames)]
    names = []
    for base in bases:
        names.append(f"{base}.png")
        if overlay:
            names.append(f"{base}_overlay.png")
    return names


def overlay_image(image, mask):
    """The image in grey with the mask's pixels blended 50 % with :data:`OVERLAY_COLOUR`.

    Args:
        image: (H, W) float array in [0, 1].
        mask: (H, W) bool array (True = vessel).

    Returns:
        (H, W, 3) uint8 RGB array.
    """
    import numpy as np

    grey = np.repeat((np.clip(image, 0.0, 1.0) * 255.0).round()[..., None], 3, axis=2)
    tinted = 0.5 * grey + 0.5 * np.asarray(OVERLAY_COLOUR, dtype=np.float64)
    return np.where(mask[..., None], tinted.round(), grey).astype(np.uint8)


def _prepare_out(out: Path) -> None:
    """Create ``--out`` (checked by ``argtypes.output_dir`` when parsed: a writable or creatable folder)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"--out: cannot create folder {out}: {exc.strerror or exc}") from None


def _check_outputs(files: list[Path], out: Path, overlay: bool, overwrite: bool) -> None:
    """Refuse shared output names, outputs that are inputs, and (without overwrite) existing masks."""
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise CLIError(f"{stems[path.stem]} and {path} share the output name {path.stem}.png; "
                           "segment them into different --out folders")
        stems[path.stem] = path
    inputs = {p.resolve() for p in files}
    existing: list[Path] = []
    for stem in stems:
        names = output_names(stem, 1, overlay=overlay)
        found = [out / n for n in names if (out / n).exists()]
        found += sorted(out.glob(f"{glob.escape(stem)}_f[0-9][0-9][0-9].png"))
        if overlay:
            found += sorted(out.glob(f"{glob.escape(stem)}_f[0-9][0-9][0-9]_overlay.png"))
        existing += found
    for entry in existing:
        if entry.resolve() in inputs:
            raise CLIError(f"{entry} is an input and would be replaced by its mask; choose another --out folder")
    if existing and not overwrite:
        shown = ", ".join(e.name for e in existing[:3]) + (f" (and {len(existing) - 3} more)" if len(existing) > 3 else "")
        raise CLIError(f"--out {out} already holds {shown}; pass --overwrite to replace them")


def _write_png(array, path: Path) -> Path:
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        Image.fromarray(array).save(tmp, format="PNG")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CLIError(f"--out: cannot write {path}: {exc.strerror or exc}") from None
    return path


def _segment_frame(segmenter, image_size, frame, options: dict[str, Any]):
    """One (H, W) frame in [0, 1] -> the (H, W) float32 output in [-1, 1] at the frame's size."""
    import torch

    x = torch.from_numpy(frame).to(options["device"]).reshape(1, 1, *frame.shape) * 2.0 - 1.0
    return _segment_tensor(segmenter, image_size, x, options)[0, 0].clamp_(-1, 1).cpu().numpy()


def _segment_tensor(segmenter, image_size, x, options: dict[str, Any]):
    """(1, 1, H, W) in [-1, 1] -> (1, 1, H, W) logits, with ``--scale``, tiling and polyphase."""
    import torch.nn.functional as F

    from darlkit.model import SegmentMemoryError, segment_image

    h, w = x.shape[-2:]
    scale = options["scale"]
    if scale != 1.0:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1.0).clamp_(-1, 1)
    try:
        pred = segment_image(
            segmenter, x, image_size=image_size, t=options["t"], polyphase=options["polyphase"],
            tile=options["tile"], overlap=options["overlap"], tile_batch=options["tile_batch"],
            tta=options["tta"],
        )
    except SegmentMemoryError as exc:
        raise CLIError(f"{options['name']}: {exc}") from None
    if scale != 1.0:
        pred = F.interpolate(pred, size=(h, w), mode="bilinear", align_corners=False, antialias=scale > 1.0)
    return pred


class _Frames:
    """Dataset of the inputs' decoded frames (``read_image_frames``), for DataLoader workers.

    A decoding error is returned as its message (re-raised as one line by the consumer), not
    raised in the worker, whose traceback would otherwise be printed."""

    def __init__(self, files: list[Path], channel: str, record: dict[str, Any] | None = None) -> None:
        self.files, self.channel, self.record = files, channel, record

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from darlkit.data.io import read_image_frames

        try:
            if self.record is None:
                return index, read_image_frames(self.files[index], channel=self.channel)
            return index, _prepared_frames(self.files[index], self.record)
        except (ValueError, TypeError, OSError, ImportError) as exc:
            return index, str(exc)


def _prepared_frames(path: Path, record: dict[str, Any]):
    """The frames of ``path`` prepared as ``record`` says, at the input's own size.

    With a prepare ``size`` the prepared frame is resampled back to the input's size here, and
    segmented at the prepared size again through the per-frame scale (see :func:`segment_files`),
    so masks keep the input's size."""
    import numpy as np

    from darlkit.preparation import prepare_like

    return np.stack(prepare_like(path, record, keep_size=True)).astype(np.float32)


def _decoded(files: list[Path], channel: str, workers: int, record: dict[str, Any] | None = None):
    """``(path, frames)`` in input order, decoded by ``workers`` DataLoader processes (0: here)."""
    from torch.utils.data import DataLoader

    data = _Frames(files, channel, record)
    if workers == 0 or len(files) < 2:
        items = (data[k] for k in range(len(files)))
    else:
        items = DataLoader(data, batch_size=None, num_workers=min(workers, len(files)), prefetch_factor=2)
    for index, frames in items:
        if isinstance(frames, str):
            raise CLIError(frames)
        yield files[index], frames.numpy() if hasattr(frames, "numpy") else frames


def _progress(total: int, enabled: bool):
    """A tqdm bar over the inputs on stderr; ``None`` when disabled or stderr is not a terminal."""
    import sys

    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="image", desc="darlkit segment", file=sys.stderr)


def segment_files(
    files: list[Path],
    checkpoint: Path,
    out: Path,
    *,
    t: int = 0,
    threshold: float | None = None,
    polyphase: str = "auto",
    soft: bool = False,
    use_ema: bool | None = None,
    device: str = "cpu",
    channel: str | None = None,
    scale: float = 1.0,
    overlay: bool = False,
    tile: int | None = None,
    overlap: int | None = None,
    tile_batch: int | str = "auto",
    tta: str | None = None,
    runtime: str | None = None,
    precision: str = "auto",
    compile: bool = False,
    workers: int = 0,
    progress: bool = False,
    report: Any = None,
    prepared: Path | None = None,
) -> list[Path]:
    """Segment image files with a trained checkpoint and write one mask per frame.

    The caller has checked ``out`` (:func:`run` refuses existing masks unless ``--overwrite``).
    The inputs are decoded in ``workers`` DataLoader processes while the model runs; the model is
    an :class:`~darlkit.model.InferenceSegmenter` (spectral norms folded, inference mode; input
    checks once per image) chosen by :func:`~darlkit.cli.segment_runtime.prepare_segmenter`.

    Args:
        files: Input image paths (any format ``read_image_frames`` reads).
        checkpoint: Training checkpoint, model folder, or ``.onnx`` file (``runtime="onnx"``).
        out: Output folder (exists).
        t: Diffusion step (0: the clean image; ONNX: 0 only).
        threshold: Vessel where the output is above this (``None``: the checkpoint's default,
            ``darlkit.training.inference_defaults``).
        polyphase: ``"auto"``, ``"on"`` or ``"off"``.
        soft: Write grey levels instead of a binary mask.
        use_ema: Use EMA weights (``None``: the run's default).
        device: Torch device name.
        channel: Colour channel of colour inputs (``luma``, ``green``, ``red``, ``blue``; ``None``:
            the ``prepared`` folder's, else ``luma``).
        scale: Resampling factor applied before segmentation (and undone after), > 0.
        overlay: Also write the overlay images.
        tile: Tile side (default twice the training crop).
        overlap: Minimum tile overlap (default tile / 8).
        tile_batch: Network inputs (tiles, or polyphase sub-images) per forward pass, or ``"auto"``
            (:func:`darlkit.model.memory.auto_tile_batch`).
        tta: Test-time augmentation: ``"none"`` or ``"flip"`` (``darlkit.model.segment_image``;
            ``None``: the checkpoint's default).
        runtime: ``"torch"``, ``"onnx"`` or ``None`` (onnx for a ``.onnx`` checkpoint, else torch).
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (``auto``: bf16 where native and verified).
        compile: ``torch.compile`` the networks (torch runtime).
        workers: Decoding processes (0: decode in this process).
        progress: Show a tqdm bar on stderr (only when it is a terminal).
        report: Called with each line about the runtime (precision chosen, export, compile
            warm-up); ``None``: not reported.
        prepared: A ``darlkit prepare`` folder whose preparation (``prepare.json``: channel,
            inversion, size, local contrast) the inputs get first
            (:func:`darlkit.preparation.prepare_like`); ``channel`` must then be the recorded one
            and ``scale`` 1 when the record resamples (``size``). Overlays show the prepared image.

    Returns:
        The written paths (masks, and overlays after their masks).

    Raises:
        CLIError: On a user error (bad combination of options, unreadable input, memory).
    """
    import numpy as np

    from darlkit.cli.segment_runtime import prepare_segmenter

    record = None
    if prepared is not None:
        from darlkit.preparation import read_prepare_record

        try:
            record = read_prepare_record(prepared)
        except ValueError as exc:
            raise CLIError(f"--prepared: {exc}") from None
        if channel is not None and channel != record["channel"]:
            raise CLIError(f"--channel {channel} differs from the prepared folder's channel {record['channel']} (leave it out)")
        if record["size"] is not None and scale != 1.0:
            raise CLIError(f"--scale cannot be combined with --prepared {prepared}, which resamples to size {record['size']}")
    channel = channel or (record["channel"] if record else "luma")
    if threshold is None or tta is None:
        from darlkit.training import inference_defaults

        try:
            defaults = inference_defaults(checkpoint)
        except ValueError as exc:
            raise CLIError(f"--checkpoint: {exc}") from None
        threshold = defaults["threshold"] if threshold is None else threshold
        tta = defaults["tta"] if tta is None else tta
    options = dict(
        device=device, scale=float(scale), t=t, polyphase={"auto": "auto", "on": True, "off": False}[polyphase],
        tile=tile, overlap=overlap, tile_batch=tile_batch, tta=tta, name=str(files[0]) if files else "",
    )
    stream = _decoded(files, channel, workers, record)
    first = next(stream, None)

    def check(image_size: int):
        import torch

        path, frames = first
        x = torch.from_numpy(frames[0]).to(device).reshape(1, 1, *frames[0].shape) * 2.0 - 1.0
        return path.name, x, lambda seg, image: _segment_tensor(seg, image_size, image, options)

    prepared = prepare_segmenter(checkpoint, runtime=runtime, precision=precision, compile=compile,
                                 device=device, use_ema=use_ema, check=check, t=t)
    if prepared.image_size is None and tile is None:
        raise CLIError(f"--tile is needed: {checkpoint} does not record the model's training crop (image_size)")
    for line in prepared.notes:
        if report is not None:
            report(line)
    bar = _progress(len(files), progress)
    written = []
    for path, frames in _chain(first, stream):
        names = iter(output_names(path.stem, frames.shape[0], overlay=overlay))
        for k, frame in enumerate(frames):
            options["name"] = path if frames.shape[0] == 1 else f"{path} frame {k}"
            if record is not None and record["size"] is not None:  # segment at the prepared size
                options["scale"] = record["size"] / min(frame.shape)
            pred = _segment_frame(prepared.segmenter, prepared.image_size, frame, options)
            mask = pred > threshold
            grey = ((pred + 1.0) * 127.5).round() if soft else np.where(mask, 255.0, 0.0)
            written.append(_write_png(grey.astype(np.uint8), out / next(names)))
            if overlay:
                written.append(_write_png(overlay_image(frame, mask), out / next(names)))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if compile and report is not None and prepared.segmenter.warmup_s is not None:
        report(f"torch.compile warm-up (first call, compilation included): {prepared.segmenter.warmup_s:.1f} s")
    return written


def _chain(first, rest):
    """``first`` (unless ``None``), then the items of ``rest``."""
    if first is not None:
        yield first
        yield from rest


def run(args: argparse.Namespace) -> int:
    """Execute ``darlkit segment``; returns exit status 0 (:func:`darlkit.cli.main` reports errors)."""
    from darlkit.data.io import list_image_files

    files = list_image_files(list(args.images))
    if not (args.checkpoint.is_file() or args.checkpoint.is_dir()):
        raise CLIError(f"--checkpoint: file not found (nor a model folder): {args.checkpoint}")
    _prepare_out(args.out)
    _check_outputs(files, args.out, args.overlay, args.overwrite)
    written = segment_files(
        files, args.checkpoint, args.out, t=args.t, threshold=args.threshold, polyphase=args.polyphase,
        soft=args.soft, use_ema=True if args.ema else None, device=args.device, channel=args.channel,
        scale=args.scale, overlay=args.overlay, tile=args.tile, overlap=args.overlap, tile_batch=args.tile_batch,
        tta=args.tta, runtime=args.runtime, precision=args.precision, compile=args.compile, workers=args.workers,
        progress=not args.no_progress, report=lambda line: print(f"darlkit segment: {line}", flush=True),
        prepared=args.prepared,
    )
    masks = sum(1 for p in written if not p.name.endswith("_overlay.png"))
    extra = f" and {len(written) - masks} overlay(s)" if args.overlay else ""
    print(f"darlkit segment: wrote {masks} mask(s){extra} for {len(files)} input(s) to {args.out}")
    return 0
