"""``torch.distributed`` plumbing of the trainer: process group, default device, DDP wrapping."""

from __future__ import annotations

import inspect
import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "process_group",
    "default_device",
    "wrap_ddp",
    "broadcast_flag",
    "unwrap",
    "GeneratorPaths",
    "DiscriminatorPair",
]


def process_group() -> tuple[bool, int, int]:
    """``(distributed, rank, world_size)`` of this process (``(False, 0, 1)`` without a group)."""
    distributed = dist.is_available() and dist.is_initialized()
    if not distributed:
        return False, 0, 1
    return True, dist.get_rank(), dist.get_world_size()


def default_device(distributed: bool) -> torch.device:
    """``cuda:LOCAL_RANK`` under an NCCL process group, else the CPU."""
    if distributed and dist.get_backend() == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """Wrap ``module`` in ``DistributedDataParallel``, re-syncing buffers from rank 0 every forward.

    Buffers (spectral-norm vectors) are broadcast at each forward; newer torch names the option
    ``forward_sync_buffers``, older ones ``broadcast_buffers``.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    sync = (
        {"forward_sync_buffers": True}
        if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
        else {"broadcast_buffers": True}
    )
    return DDP(module, device_ids=ids, **sync)


def broadcast_flag(value: bool, device: torch.device, distributed: bool) -> bool:
    """Rank 0's ``value`` on every process (``value`` itself without a process group)."""
    flag = torch.tensor([float(value)], device=device)
    if distributed:
        dist.broadcast(flag, src=0)
    return bool(flag.item())


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside any ``DistributedDataParallel`` / ``AveragedModel``-style ``.module`` wrappers."""
    while hasattr(module, "module") and isinstance(module.module, nn.Module):
        module = module.module
    return module


class GeneratorPaths(nn.Module):
    """Adapter: ``forward`` runs the three paths of DARL (what DDP wraps for the G step).

    Args:
        model: A ``darlkit.model.DARL``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, angiogram, background, mask, t_a, t_b, noise):  # noqa: D102
        return self.model.forward_paths(angiogram, background, mask, t_a=t_a, t_b=t_b, noise=noise)


class DiscriminatorPair(nn.Module):
    """Adapter: D_s and D_a on real/fake inputs in one forward (what DDP wraps for the D step).

    Args:
        disc_mask: The mask discriminator D_s.
        disc_image: The angiogram discriminator D_a.
    """

    def __init__(self, disc_mask: nn.Module, disc_image: nn.Module) -> None:
        super().__init__()
        self.disc_mask = disc_mask
        self.disc_image = disc_image

    def forward(self, real_mask, fake_mask, real_image, fake_image):  # noqa: D102
        return (
            self.disc_mask(real_mask),
            self.disc_mask(fake_mask),
            self.disc_image(real_image),
            self.disc_image(fake_image),
        )
