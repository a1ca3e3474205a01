"""Where overlapping tiles start on one side of an image (shared by tiled segmentation and its memory estimate)."""

from __future__ import annotations

import math

__all__ = ["tile_starts"]


def tile_starts(length: int, tile: int, overlap: int, align: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, length)``.

    Neighbours overlap by at least ``overlap``; starts are multiples of ``align`` except possibly
    the last (``length - tile``).

    Args:
        length: Side of the image (pixels).
        tile: Side of a tile (pixels).
        overlap: Smallest overlap of neighbouring tiles (pixels, < ``tile``).
        align: Starts are multiples of this (the network's size multiple).

    Returns:
        Sorted start offsets; ``[0]`` when one tile covers the side.
    """
    if length <= tile:
        return [0]
    last = length - tile
    n = max(2, math.ceil((length - overlap) / (tile - overlap)))
    while True:
        starts = sorted({min(last, round(k * last / (n - 1) / align) * align) for k in range(n - 1)} | {last})
        if all(b - a <= tile - overlap for a, b in zip(starts, starts[1:])):
            return starts
        n += 1
