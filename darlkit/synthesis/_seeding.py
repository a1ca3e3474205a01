"""Explicit, machine-independent seeding for the synthesizers (no global RNG state)."""

from __future__ import annotations

import numpy as np

SeedLike = "int | np.random.SeedSequence | None"


def as_seed_sequence(seed: int | np.random.SeedSequence | None, name: str = "seed") -> np.random.SeedSequence:
    """Turn ``seed`` into a ``numpy.random.SeedSequence``.

    ``None`` draws fresh OS entropy (the drawn entropy is kept in the sequence, so a run can be
    repeated from ``sequence.entropy``).
    """
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative int, a numpy SeedSequence or None, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed}")
    return np.random.SeedSequence(int(seed))


def child_sequence(base: np.random.SeedSequence, *keys: int) -> np.random.SeedSequence:
    """The child of ``base`` at spawn key ``keys`` (the same as ``base.spawn`` would give at that index).

    Deterministic and independent of how many children were spawned before, so item ``i`` of a
    stream can be generated in any process, in any order.
    """
    return np.random.SeedSequence(
        entropy=base.entropy,
        spawn_key=tuple(base.spawn_key) + tuple(int(k) for k in keys),
        pool_size=base.pool_size,
    )


def child_rng(base: np.random.SeedSequence, *keys: int) -> np.random.Generator:
    """A ``numpy.random.Generator`` (PCG64) seeded by ``child_sequence(base, *keys)``."""
    return np.random.Generator(np.random.PCG64(child_sequence(base, *keys)))
