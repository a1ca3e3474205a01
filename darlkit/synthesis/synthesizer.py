"""``FractalVesselSynthesizer``: an endless, seed-deterministic supply of synthetic vessel masks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from darlkit.synthesis._seeding import as_seed_sequence, child_rng
from darlkit.synthesis.ssvs import ssvs_rectangles, warp_ssvs_masks
from darlkit.synthesis.tree import TreeParams, grow_vessel_tree, render_capsules

__all__ = ["FractalVesselSynthesizer", "VesselMaskStream", "STYLES"]

STYLES: tuple[str, ...] = ("ssvs", "tree")
"""Mask styles of ``FractalVesselSynthesizer``: the released rectangle fractals and curved trees."""
_OUTPUTS = ("float", "uint8")


class FractalVesselSynthesizer(Dataset):
    """Synthetic vessel masks, deterministic per index given the seed.

    Styles:

    - ``"ssvs"``: the rectangle fractals of the SSVS release used for XCAD's ``trainA`` (7 or 15
      axis-aligned rectangles, root thickness 15-19 px at 512, a random piecewise-affine warp and,
      with probability 0.5, a rotation with mirrored borders; anti-aliased grey edges).
    - ``"tree"``: curved, tapering vessel trees with Murray's-law bifurcations, about 4.5-6.5% vessel
      pixels and diameters from ~3 px up to ~20 px at 512 (see ``TreeParams``), anti-aliased edges.

    Mask ``i`` depends only on ``(seed, i)`` (numpy ``SeedSequence`` child ``i`` of the seed, PCG64),
    never on global RNG state, the batch it is drawn in, or the process that draws it; so
    ``synth[i]`` can serve as a map-style ``Dataset`` (``len`` = ``length``; any non-negative index
    works) and ``stream()`` gives an endless ``IterableDataset`` for a ``DataLoader`` with workers.
    Results are identical on any machine with the same numpy/torch versions up to float rounding
    of ``grid_sample``/``sqrt`` in the last bit (which may flip a rare edge pixel by one grey level).

    Args:
        size: Mask side in pixels (even, >= 32). All lengths scale with ``size / 512``.
        style: ``"ssvs"`` or ``"tree"``.
        seed: Non-negative int, a numpy ``SeedSequence``, or ``None`` for fresh entropy (kept in
            ``self.seed_sequence.entropy`` so the run can be repeated).
        output: ``"float"`` -> float32 in [0, 1]; ``"uint8"`` -> uint8 in [0, 255] (255 inside a
            vessel, 0 outside, grey levels on the anti-aliased edge, as in the released PNGs).
        length: ``len(self)``, the epoch length of the map-style view (default 1621, the size of
            XCAD's ``trainA``).
        tree_params: Shape parameters of the ``"tree"`` style (default ``TreeParams()``).

    Raises:
        ValueError: On an unknown style or output, or a size that is odd or < 32.
        TypeError: On a seed of the wrong type.

    Example:
        >>> synth = FractalVesselSynthesizer(size=64, style="tree", seed=0)
        >>> synth.sample(2).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(
        self,
        size: int = 512,
        style: str = "ssvs",
        seed: int | np.random.SeedSequence | None = None,
        *,
        output: str = "float",
        length: int = 1621,
        tree_params: TreeParams | None = None,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32 or size % 2:
            raise ValueError(f"size must be an even int >= 32, got {size!r}")
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        if tree_params is not None and not isinstance(tree_params, TreeParams):
            raise TypeError(f"tree_params must be a TreeParams, got {type(tree_params).__name__}")
        self.size = int(size)
        self.style = style
        self.output = output
        self.length = int(length)
        self.tree_params = tree_params if tree_params is not None else TreeParams()
        self.tree_params.validate()
        self.seed_sequence = as_seed_sequence(seed)
        self._cursor = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        """Mask ``index`` as a (1, size, size) tensor (dtype per ``output``)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if index < 0:
            raise IndexError(f"index must be >= 0 (the supply is endless, negative indices are undefined), got {index}")
        return self.masks([int(index)])[0]

    def masks(self, indices: Sequence[int]) -> torch.Tensor:
        """Generate the masks of the given indices in one batch.

        Args:
            indices: Non-negative mask indices.

        Returns:
            (len(indices), 1, size, size): float32 in [0, 1] or uint8 in [0, 255] per ``output``.
        """
        idx = [int(i) for i in indices]
        if any(i < 0 for i in idx):
            raise ValueError(f"indices must be >= 0, got {min(idx)}")
        if not idx:
            dtype = torch.uint8 if self.output == "uint8" else torch.float32
            return torch.zeros(0, 1, self.size, self.size, dtype=dtype)
        rngs = [child_rng(self.seed_sequence, i) for i in idx]
        if self.style == "ssvs":
            rects = [ssvs_rectangles(rng, self.size) for rng in rngs]
            out = warp_ssvs_masks(rects, rngs, self.size)
        else:
            segs = [grow_vessel_tree(rng, self.size, self.tree_params) for rng in rngs]
            out = render_capsules(segs, self.size)
        if self.output == "uint8":
            return out.mul_(255.0).round_().to(torch.uint8)
        return out

    def sample(self, n: int) -> torch.Tensor:
        """The next ``n`` masks of the stream (indices continue from the previous call).

        The first call returns masks ``0 .. n - 1``, the next ``n .. 2n - 1``, and so on, so
        ``sample`` and indexing give the same masks. ``reset()`` rewinds.

        Args:
            n: Number of masks (>= 0).

        Returns:
            (n, 1, size, size) tensor: float32 in [0, 1] or uint8 in [0, 255] per ``output``.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        out = self.masks(range(self._cursor, self._cursor + int(n)))
        self._cursor += int(n)
        return out

    def reset(self, position: int = 0) -> None:
        """Set the index the next ``sample`` call starts from."""
        if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or position < 0:
            raise ValueError(f"position must be a non-negative int, got {position!r}")
        self._cursor = int(position)

    def stream(self, start: int = 0, batch_size: int = 1) -> VesselMaskStream:
        """An endless ``IterableDataset`` view (mask ``start``, ``start + 1``, ...).

        Args:
            start: First index.
            batch_size: Masks generated per internal batch (items are still single masks).

        Returns:
            A ``VesselMaskStream`` over this synthesizer.
        """
        return VesselMaskStream(self, start=start, batch_size=batch_size)

    def __repr__(self) -> str:
        return f"FractalVesselSynthesizer(size={self.size}, style={self.style!r}, output={self.output!r}, entropy={self.seed_sequence.entropy})"


class VesselMaskStream(IterableDataset):
    """Endless stream of (1, size, size) masks from a ``FractalVesselSynthesizer``.

    Every worker of a ``DataLoader`` yields its own blocks of ``batch_size`` consecutive indices:
    worker ``w`` of ``W`` yields global blocks ``w, w + W, w + 2W, ...`` (block ``b`` = indices
    ``start + b * batch_size ...``). The loader takes whole batches from its workers in turn, so
    with a ``DataLoader`` whose ``batch_size`` equals this stream's ``batch_size`` the masks arrive
    in index order ``start, start + 1, ...`` for any number of workers, identical to
    ``synthesizer.masks(range(start, ...))``.

    Args:
        synthesizer: The mask source.
        start: First index.
        batch_size: Masks generated per internal batch (>= 1).
    """

    def __init__(self, synthesizer: FractalVesselSynthesizer, start: int = 0, batch_size: int = 1) -> None:
        if not isinstance(synthesizer, FractalVesselSynthesizer):
            raise TypeError(f"synthesizer must be a FractalVesselSynthesizer, got {type(synthesizer).__name__}")
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
            raise ValueError(f"start must be a non-negative int, got {start!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.synthesizer = synthesizer
        self.start = int(start)
        self.batch_size = int(batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        block = 0
        while True:
            # Block b of this worker covers the global blocks b * workers + worker.
            first = self.start + (block * workers + worker) * self.batch_size
            yield from self.synthesizer.masks(range(first, first + self.batch_size))
            block += 1
