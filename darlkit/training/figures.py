"""The run's example figure: angiogram | prediction | truth | synthetic angiogram (paper Fig. 4)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["save_figure"]


def _to_uint8(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    x = x.detach().float().cpu()
    if x.dim() == 3:
        x = x[0]
    return ((x.clamp(lo, hi) - lo) / (hi - lo) * 255.0).round().to(torch.uint8)


def save_figure(
    examples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    synth: torch.Tensor | None,
    path: str | os.PathLike[str],
) -> Path | None:
    """Write a grid like the paper's Fig. 4: angiogram | prediction | truth | synthetic angiogram.

    Args:
        examples: (image in [-1, 1], prediction in [-1, 1], truth in {0, 1}) triples, each
            (1, H, W); one row per triple.
        synth: A synthetic angiogram (1, h, w) in [-1, 1] from the last training step, resized
            (nearest) into the last column of every row; ``None`` leaves it black.
        path: Destination PNG.

    Returns:
        The written path, or ``None`` when there are no examples.
    """
    from PIL import Image

    if not examples:
        return None
    h, w = examples[0][0].shape[-2:]
    rows = []
    for image, pred, truth in examples:
        if image.shape[-2:] != (h, w):
            continue
        tiles = [_to_uint8(image, -1, 1), _to_uint8(pred, -1, 1), _to_uint8(truth, 0, 1)]
        if synth is not None:
            s = F.interpolate(synth.float().reshape(1, 1, *synth.shape[-2:]), size=(h, w), mode="nearest")[0]
            tiles.append(_to_uint8(s, -1, 1))
        else:
            tiles.append(torch.zeros(h, w, dtype=torch.uint8))
        sep = torch.full((h, 2), 255, dtype=torch.uint8)
        row = torch.cat([t if i == 0 else torch.cat([sep, t], 1) for i, t in enumerate(tiles)], 1)
        rows.append(row)
    sep_row = torch.full((2, rows[0].shape[1]), 255, dtype=torch.uint8)
    grid = torch.cat([r if i == 0 else torch.cat([sep_row, r], 0) for i, r in enumerate(rows)], 0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(grid.numpy(), mode="L").save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
