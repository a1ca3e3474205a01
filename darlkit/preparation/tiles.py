"""Training images cut into overlapping tiles inside the field of view (``darlkit prepare --train-tile``).

``XCADDataset`` reads a whole training file for every crop it takes, so a training step on
full-size fundus photographs (CHASE_DB1: 999 x 960) spends most of its time decoding PNGs for
crops of 64-128 px; and crops drawn uniformly over such an image often fall on the black
surround. ``tile_grid`` cuts an ``H x W`` image into ``tile`` x ``tile`` squares starting every
``tile // 2`` pixels (the last row and column of tiles flush with the border, so every pixel is
covered); ``write_tiles`` keeps the tiles of which at least ``min_coverage`` (half) lies inside
the image's field of view. Images whose shorter side is not larger than ``tile`` are left whole.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from darlkit.data.io import read_image

__all__ = ["tile_grid", "tile_coverages", "write_tiles", "MIN_TILE_COVERAGE"]

MIN_TILE_COVERAGE = 0.5
"""A tile is kept when at least this share of it is inside the field of view."""


def _starts(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    step = max(1, tile // 2)
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def tile_grid(h: int, w: int, tile: int) -> list[tuple[int, int]]:
    """Top-left corners ``(row, col)`` of the ``tile`` x ``tile`` tiles of an ``h x w`` image.

    Args:
        h: Image height (px).
        w: Image width (px).
        tile: Tile side (px, >= 2); a side not longer than ``tile`` gives one start, 0.

    Returns:
        The corners, row-major; neighbours overlap by ``tile - tile // 2`` pixels or more.
    """
    for name, v, low in (("h", h, 1), ("w", w, 1), ("tile", tile, 2)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
    return [(r, c) for r in _starts(h, tile) for c in _starts(w, tile)]


def tile_coverages(fov: np.ndarray, tile: int) -> list[tuple[int, int, float]]:
    """``(row, col, share inside the field of view)`` of every tile of ``tile_grid``.

    Args:
        fov: bool (H, W) field of view.
        tile: Tile side (px).

    Returns:
        One triple per tile, in ``tile_grid`` order.
    """
    f = np.asarray(fov, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"fov must be (H, W), got shape {f.shape}")
    integral = np.pad(f.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    out = []
    for r, c in tile_grid(f.shape[0], f.shape[1], tile):
        r1, c1 = min(r + tile, f.shape[0]), min(c + tile, f.shape[1])
        area = (r1 - r) * (c1 - c)
        inside = integral[r1, c1] - integral[r, c1] - integral[r1, c] + integral[r, c]
        out.append((r, c, float(inside / area)))
    return out


def write_tiles(
    root: Path,
    entries: list[dict[str, Any]],
    tile: int,
    fov_of: Callable[[int, dict[str, Any]], np.ndarray | None],
    save: Callable[[np.ndarray, Path], None],
) -> list[dict[str, Any]]:
    """Replace each written file larger than ``tile`` by its tiles at least half inside its field of view.

    Args:
        root: Folder the entries' ``"file"`` paths are relative to.
        entries: ``prepare.json`` file records (``{"file": ..., ...}``) of one folder.
        tile: Tile side (px).
        fov_of: ``fov_of(index, entry)``: the file's bool field of view, or ``None`` (all inside;
            also used when its shape is not the file's).
        save: Writes a [0, 1] float image as a PNG (8-bit values round-trip exactly).

    Returns:
        The new records: one per kept tile (``<stem>_y<row>_x<col>.png``, with ``"tile": [row,
        col]`` and ``"of"``: the whole file's record name), or the entry itself for a small file.
        The whole files that were cut are deleted.
    """
    out = []
    for i, e in enumerate(entries):
        path = root / e["file"]
        x = read_image(path)
        if min(x.shape) <= tile:
            out.append(e)
            continue
        fov = fov_of(i, e)
        inside = np.ones(x.shape, bool) if fov is None or fov.shape != x.shape else fov
        for r, c, share in tile_coverages(inside, tile):
            if share >= MIN_TILE_COVERAGE:
                name = path.parent / f"{path.stem}_y{r:04d}_x{c:04d}.png"
                save(x[r:r + tile, c:c + tile], name)
                out.append({**e, "file": str(Path(e["file"]).parent / name.name), "size": [tile, tile], "tile": [r, c], "of": e["file"]})
        path.unlink()
    return out
