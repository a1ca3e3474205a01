"""Pairing images with their labels (vessel masks, field-of-view masks) by a shared key.

The key of a file is its stem with the first matching known label/split suffix removed
(case-insensitive), so the usual public names pair without options:

- DRIVE: ``01_test.tif``, ``01_manual1.gif``, ``01_test_mask.gif`` -> key ``01``
  (also ``_training``, ``_training_mask``, ``_manual2``);
- CHASE_DB1: ``Image_01L.jpg``, ``Image_01L_1stHO.png``, ``Image_01L_2ndHO.png`` -> ``Image_01L``;
- STARE: ``im0001.ppm``, ``im0001.ah.ppm``, ``im0001.vk.ppm`` -> ``im0001``;
- HRF and others: ``NAME_mask``, ``NAME_fov``, ``NAME_roi``, ``NAME_gt``, ``NAME_label``,
  ``NAME_labels``, ``NAME_manual``, ``NAME_seg``, ``NAME_vessel``, ``NAME_vessels`` -> ``NAME``.

``KEY_SUFFIXES`` lists them, longest first. A ``pattern`` (``darlkit prepare --pair REGEX``)
overrides the rule: it is searched in the file name (with its suffix) and the key is its named
group ``key`` if it has one, else its first group, else the whole match; a file it does not
match is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["KEY_SUFFIXES", "pairing_key", "pair_files"]

KEY_SUFFIXES: tuple[str, ...] = tuple(sorted((
    "_test_mask", "_training_mask", "_manual1", "_manual2", "_1stho", "_2ndho", "_test", "_training",
    "_mask", "_fov", "_roi", "_gt", "_label", "_labels", "_manual", "_seg", "_vessel", "_vessels", ".ah", ".vk",
), key=len, reverse=True))
"""Stem endings removed to form a pairing key (lower-case; matched case-insensitively, longest first)."""


def pairing_key(path: str | Path, pattern: str | re.Pattern[str] | None = None) -> str:
    """The pairing key of a file (rule: module docstring).

    Args:
        path: The file (only its name is used).
        pattern: Optional regular expression overriding the suffix rule.

    Returns:
        The key.

    Raises:
        ValueError: If ``pattern`` does not match the file name (or gives an empty key).
    """
    name = Path(path).name
    if pattern is not None:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        m = rx.search(name)
        if m is None:
            raise ValueError(f"--pair pattern {rx.pattern!r} does not match {name}")
        key = m.group("key") if "key" in rx.groupindex else (m.group(1) if rx.groups else m.group(0))
        if not key:
            raise ValueError(f"--pair pattern {rx.pattern!r} gives an empty key for {name}")
        return key
    stem = Path(name).stem
    lower = stem.lower()
    for suffix in KEY_SUFFIXES:
        if lower.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _keyed(files: list[Path], pattern: str | None, what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        key = pairing_key(f, pattern)
        if key in out:
            raise ValueError(f"{what}: {out[key]} and {f} have the same pairing key {key!r} (use --pair REGEX)")
        out[key] = f
    return out


def pair_files(images: list[Path], labels: list[Path], *, pattern: str | None = None, what: str = "labels") -> list[tuple[Path, Path]]:
    """Pair every image with exactly one label file by key.

    Args:
        images: Image files.
        labels: Label files (masks or ROI masks).
        pattern: Optional ``--pair`` regular expression (see ``pairing_key``).
        what: Name of the label set in messages (e.g. ``"--test-masks"``).

    Returns:
        ``(image, label)`` pairs in the order of ``images``.

    Raises:
        ValueError: Listing every image without a label and every label without an image, or
            on two files of one set with the same key.
    """
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"--pair: invalid regular expression {pattern!r}: {exc}") from None
    img = _keyed(images, pattern, "images")
    lab = _keyed(labels, pattern, what)
    lonely_images = [str(p) for k, p in img.items() if k not in lab]
    lonely_labels = [str(p) for k, p in lab.items() if k not in img]
    if lonely_images or lonely_labels:
        parts = []
        if lonely_images:
            parts.append(f"images without {what}: {', '.join(lonely_images)}")
        if lonely_labels:
            parts.append(f"{what} without an image: {', '.join(lonely_labels)}")
        raise ValueError(f"unmatched files ({'; '.join(parts)}); names pair by key (see darlkit.data.pairing) or --pair REGEX")
    return [(p, lab[k]) for k, p in img.items()]
