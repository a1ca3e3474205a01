"""DICOM frames to [0, 1] through pydicom (the optional extra ``darlkit[dicom]``).

Rule, in order:

1. ``pixel_array`` of every frame (single-frame: F = 1; multi-frame / cine: F = NumberOfFrames);
   colour (SamplesPerPixel = 3, RGB after pydicom's colour conversion) is reduced to one value
   per pixel with ``channel`` (see ``darlkit.data.intensity.select_channel``).
2. Modality LUT (RescaleSlope / RescaleIntercept or a Modality LUT Sequence).
3. VOI: the first WindowCenter / WindowWidth pair when present (its VOILUTFunction: LINEAR,
   LINEAR_EXACT or SIGMOID; values outside the window saturate at 0 and 1); else a VOI LUT
   Sequence when present (its output divided by the LUT's maximum output ``2**bits - 1``); else
   the stored range: ``[0, 2**BitsStored - 1]`` (signed: ``[-2**(BitsStored-1), 2**(BitsStored-1) - 1]``)
   through the modality rescale, mapped linearly to [0, 1] (nothing saturates).
   ``scaling="range"`` skips this step and maps the data's own min..max to [0, 1].
4. MONOCHROME1 (higher value = darker) is inverted: ``1 - v``, so vessels look as in MONOCHROME2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from darlkit.data.intensity import check_channel, check_scaling, scale_to_unit, select_channel, window_to_unit

__all__ = ["read_dicom_frames", "DICOM_INSTALL_HINT", "MissingDependencyError"]

DICOM_INSTALL_HINT = "pip install 'darlkit[dicom]'"
"""How to install the DICOM reader's dependency (pydicom)."""


class MissingDependencyError(ImportError, ValueError):
    """An optional dependency is missing (an ``ImportError``; also a ``ValueError`` so the CLI
    reports it as one line)."""


def _import_pydicom():
    try:
        import pydicom
    except ImportError as exc:
        raise MissingDependencyError(f"reading DICOM files needs pydicom: {DICOM_INSTALL_HINT}") from exc
    try:  # pydicom >= 3
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pragma: no cover - pydicom 2
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    return pydicom, apply_modality_lut, apply_voi_lut


def is_dicom(path: Path) -> bool:
    """Whether ``path`` has a ``.dcm``/``.dicom`` suffix or the ``DICM`` marker at byte 128."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _first(value: object) -> float:
    try:
        return float(value[0])  # type: ignore[index]
    except TypeError:
        return float(value)  # type: ignore[arg-type]


def _stored_range(ds: object, slope: float, intercept: float) -> tuple[float, float]:
    bits = int(getattr(ds, "BitsStored", getattr(ds, "BitsAllocated", 8)))
    if int(getattr(ds, "PixelRepresentation", 0)) == 1:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        lo, hi = 0, 2**bits - 1
    a, b = lo * slope + intercept, hi * slope + intercept
    return min(a, b), max(a, b)


def read_dicom_frames(path: Path, *, channel: str = "luma", scaling: str = "auto") -> np.ndarray:
    """Read every frame of a DICOM file as float32 (F, H, W) in [0, 1] (rule: module docstring).

    Args:
        path: The DICOM file.
        channel: Colour reduction for RGB data (``"luma"``, ``"green"``, ``"red"``, ``"blue"``).
        scaling: ``"auto"`` (window / VOI LUT / stored range) or ``"range"`` (data min..max).

    Returns:
        float32 array (F, H, W) in [0, 1].

    Raises:
        MissingDependencyError: Without pydicom (the message says ``pip install 'darlkit[dicom]'``).
        ValueError: If the file is not DICOM, has no (decodable) pixel data, or an unsupported
            layout; the message names the file.
    """
    channel, scaling = check_channel(channel), check_scaling(scaling)
    pydicom, apply_modality_lut, apply_voi_lut = _import_pydicom()
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises InvalidDicomError, OSError, struct errors, ...
        raise ValueError(f"cannot read {path} as DICOM: {exc}") from exc
    if "PixelData" not in ds:
        raise ValueError(f"DICOM file {path} has no pixel data (expected an image)")
    try:
        raw = np.asarray(ds.pixel_array)
    except Exception as exc:  # missing decoder for a compressed transfer syntax, bad length, ...
        raise ValueError(f"cannot decode the pixel data of DICOM file {path}: {exc}") from exc
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1))
    if samples not in (1, 3):
        raise ValueError(f"DICOM file {path} has SamplesPerPixel={samples}; expected 1 (grey) or 3 (colour)")
    expected_dims = 2 + (frames > 1) + (samples == 3)
    if raw.ndim != expected_dims:
        raise ValueError(f"DICOM file {path}: pixel array of shape {raw.shape} does not match {frames} frame(s) x {samples} sample(s)")
    if frames == 1:
        raw = raw[None]
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if samples == 3:
        bits = int(getattr(ds, "BitsStored", 8))
        grey = select_channel(raw, channel)
        if scaling == "range":
            return scale_to_unit(grey, scaling="range", name=str(path))
        return (grey / (2**bits - 1)).astype(np.float32)
    values = np.asarray(apply_modality_lut(raw, ds), dtype=np.float64)
    if scaling == "range":
        out = scale_to_unit(values, scaling="range", name=str(path))
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        function = str(getattr(ds, "VOILUTFunction", "LINEAR") or "LINEAR").upper()
        out = window_to_unit(values, _first(ds.WindowCenter), _first(ds.WindowWidth), function)
    elif "VOILUTSequence" in ds:
        lut = ds.VOILUTSequence[0]
        lut_bits = int(lut.LUTDescriptor[2])
        out = (np.asarray(apply_voi_lut(values, ds), dtype=np.float64) / (2**lut_bits - 1)).astype(np.float32)
    else:
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        lo, hi = _stored_range(ds, slope, intercept)
        if values.min() < lo or values.max() > hi:
            raise ValueError(f"DICOM file {path}: pixel values [{values.min():g}, {values.max():g}] exceed the "
                             f"BitsStored range [{lo:g}, {hi:g}] (inconsistent header)")
        out = ((values - lo) / (hi - lo)).astype(np.float32)
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return np.ascontiguousarray(out, dtype=np.float32)
