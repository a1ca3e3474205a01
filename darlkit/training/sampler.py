"""Resumable data order and per-step random draws: seed mixing, :class:`StepSampler`, batch collation.

Every random choice of a training step (which items, which timesteps, which noise) is a pure
function of ``(seed, step, rank)``, computed from generators seeded by :func:`_mix_seed`. This is
what makes an interrupted run resume bit-identically and a multi-process run equal one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["StepSampler", "collate", "step_draws", "step_batches"]

_MIX = 0x9E3779B97F4A7C15


def _mix_seed(*values: int) -> int:
    """Deterministic 63-bit seed from integers (SplitMix64-style finaliser)."""
    h = 0x243F6A8885A308D3
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * _MIX & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
        h = h * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & 0x7FFFFFFFFFFFFFFF


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of dataset items (dicts of tensors) into a batch dict.

    Args:
        items: Dicts with equal keys; tensor values of equal shapes (e.g. (1, H, W)).

    Returns:
        A dict whose tensor values are stacked along a new batch dim ((N, 1, H, W)) and whose
        other values are lists.
    """
    out: dict[str, Any] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        out[key] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out


def step_draws(
    seed: int,
    step: int,
    shape: tuple[int, ...],
    *,
    t_a_max: int,
    t_b_max: int,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The timesteps and noise of one training step for one process (on the CPU).

    The draws are made for the global batch (``shape[0] * world_size`` items) from a generator
    seeded with ``(seed, step)``; process ``rank`` takes its contiguous slice, so the union over
    the ranks equals the draws of one process with the global batch.

    Args:
        seed: The run's seed.
        step: Training step (0-based).
        shape: This process's batch shape (N, C, H, W).
        t_a_max: Path A timesteps are drawn from ``U{0..t_a_max-1}``.
        t_b_max: Path B timesteps are drawn from ``U{0..t_b_max-1}``.
        rank: This process's rank.
        world_size: Number of processes.

    Returns:
        ``(t_a, t_b, noise)``: int64 tensors of shape (N,) and a float32 standard-normal tensor
        of ``shape``.
    """
    g = torch.Generator().manual_seed(_mix_seed(seed, step, 0x5EED))
    n = shape[0]
    gb = n * world_size
    t_a = torch.randint(0, t_a_max, (gb,), generator=g)
    t_b = torch.randint(0, t_b_max, (gb,), generator=g)
    noise = torch.randn((gb, *shape[1:]), generator=g)
    sl = slice(rank * n, (rank + 1) * n)
    return t_a[sl], t_b[sl], noise[sl]


class StepSampler(torch.utils.data.Sampler):
    """Batch sampler whose batches are a pure function of ``(seed, step, rank)``.

    Epoch ``e`` is a random permutation of the dataset drawn from a generator seeded with
    ``(seed, e)``; it is cut into global batches of ``batch_size * world_size`` indices (the
    incomplete tail is dropped), and process ``rank`` takes the ``rank``-th contiguous block of
    ``batch_size`` indices of each global batch. So the union of the ranks' batches at a step is
    exactly the batch a single process with the global batch size sees (what makes multi-process
    training equal to one process), and a resumed run continues mid-epoch with the same order.
    This plays the role of ``DistributedSampler`` for the trainer.

    Args:
        num_items: Dataset length.
        batch_size: Per-process batch size.
        seed: Data-order seed.
        start_step: First step to yield.
        stop_step: One past the last step to yield.
        rank: This process's rank.
        world_size: Number of processes.

    Raises:
        ValueError: If the dataset is smaller than one global batch.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        start_step: int,
        stop_step: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        self.global_batch = self.batch_size * int(world_size)
        if self.num_items < self.global_batch:
            raise ValueError(
                f"the training set has {self.num_items} items, fewer than one global batch "
                f"({self.batch_size} x {world_size} processes)"
            )
        self.seed = int(seed)
        self.start_step = int(start_step)
        self.stop_step = int(stop_step)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.steps_per_epoch = self.num_items // self.global_batch
        self._perm_cache: tuple[int, list[int]] | None = None

    def with_range(self, start_step: int, stop_step: int) -> StepSampler:
        """The same order (dataset, batch, seed, rank) over steps ``start_step .. stop_step - 1``."""
        return StepSampler(
            self.num_items, self.batch_size, self.seed, start_step, stop_step, self.rank, self.world_size
        )

    def epoch_of(self, step: int) -> int:
        """Epoch that contains ``step``."""
        return step // self.steps_per_epoch

    def indices(self, step: int) -> list[int]:
        """This rank's dataset indices at ``step``."""
        epoch, j = divmod(step, self.steps_per_epoch)
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            g = torch.Generator().manual_seed(_mix_seed(self.seed, epoch, 0xDA7A))
            self._perm_cache = (epoch, torch.randperm(self.num_items, generator=g).tolist())
        perm = self._perm_cache[1]
        start = j * self.global_batch + self.rank * self.batch_size
        return perm[start : start + self.batch_size]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.stop_step):
            yield self.indices(step)

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step)


def step_batches(dataset: Dataset, sampler: StepSampler, *, num_workers: int = 0) -> Iterator[dict[str, Any]]:
    """The collated batches of ``sampler``'s steps, one ``DataLoader`` per epoch.

    A dataset with ``set_epoch(e)`` is told each epoch before its first batch is drawn.

    Args:
        dataset: Items (dicts of tensors); ``len(dataset)`` must be ``sampler.num_items``.
        sampler: The steps to draw (``start_step .. stop_step - 1``) and their order.
        num_workers: ``DataLoader`` worker processes.

    Yields:
        One batch dict per step (see :func:`collate`).
    """
    step = sampler.start_step
    while step < sampler.stop_step:
        epoch = sampler.epoch_of(step)
        epoch_end = min(sampler.stop_step, (epoch + 1) * sampler.steps_per_epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        part = sampler.with_range(step, epoch_end)
        yield from DataLoader(dataset, batch_sampler=part, num_workers=num_workers, collate_fn=collate)
        step = epoch_end
