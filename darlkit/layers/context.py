"""``SegmapContext``: how a wrapper hands one segmap to many ``SwitchableSPADE`` layers.

A ``SwitchableSPADE`` called without a segmap reads the segmap of its bound context (if any):
``SpadeifiedModel`` binds all the layers of the network it wraps to one context and sets the
segmap of each call in it, so the network's own ``forward`` never has to pass a mask along. A
segmap given to a layer explicitly always wins. Any code can do the same::

    ctx = SegmapContext()
    for layer in spade_layers:
        layer.bind_segmap_context(ctx)
    with ctx.use(segmap):
        out = network(x)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

__all__ = ["SegmapContext"]


class SegmapContext:
    """A per-thread segmap slot (each thread sees only the segmaps it set; calls may nest).

    Copies (``copy.deepcopy``, pickling) start empty; ``deepcopy``'s memo keeps a copied
    wrapper and its copied layers sharing one new context.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self) -> torch.Tensor | None:
        """The segmap set by this thread, or ``None``."""
        return getattr(self._local, "value", None)

    def set(self, value: torch.Tensor | None) -> torch.Tensor | None:
        """Set this thread's segmap (``None``: none) and return the previous one.

        Args:
            value: A prepared segmap (N or 1, label_nc, H, W), or ``None``.
        """
        previous = self.get()
        self._local.value = value
        return previous

    @contextlib.contextmanager
    def use(self, value: torch.Tensor | None) -> Iterator[None]:
        """Set ``value`` for the ``with`` block and restore the previous segmap afterwards (also on error)."""
        previous = self.set(value)
        try:
            yield
        finally:
            self.set(previous)

    def __deepcopy__(self, memo: dict) -> SegmapContext:
        return SegmapContext()

    def __reduce__(self):
        return (SegmapContext, ())
