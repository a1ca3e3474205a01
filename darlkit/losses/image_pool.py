"""History pool of generated images for discriminator updates (Shrivastava et al., 2017).

DARL, like CycleGAN, feeds its discriminators fakes drawn through a 50-image history
pool, so a discriminator also sees older generator outputs.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

__all__ = ["ImagePool"]


class ImagePool:
    """Buffer of up to ``pool_size`` previously generated images.

    ``query(images)`` processes the batch one image at a time, in order:

    - while the pool holds fewer than ``pool_size`` images, the image is stored (a detached
      copy) and returned itself;
    - once full, with probability 0.5 a uniformly chosen stored image is returned and the
      incoming image takes its place; otherwise the incoming image is returned itself.

    Random decisions use ``generator`` (a CPU ``torch.Generator``) when given, else torch's
    global RNG. Each full-pool decision draws one ``torch.rand`` value and, when swapping,
    one ``torch.randint`` index. Stored images keep the device and dtype of the images they
    came from; every image of a pool must have the same per-image shape and dtype.

    With ``pool_size=0`` the pool is a pass-through: ``query`` returns ``images.detach()``
    (no copy, no random draws).

    Args:
        pool_size: Capacity (DARL/CycleGAN: 50); 0 disables the pool.
        generator: Optional CPU generator for reproducible swaps. Its state is part of
            ``state_dict()``.

    Example:
        >>> pool = ImagePool(50, generator=torch.Generator().manual_seed(0))
        >>> fake_for_d = pool.query(fake)  # fake: (N, 1, H, W); result detached, same shape
    """

    def __init__(self, pool_size: int = 50, generator: torch.Generator | None = None) -> None:
        if isinstance(pool_size, bool) or not isinstance(pool_size, numbers.Integral) or pool_size < 0:
            raise ValueError(f"pool_size must be an int >= 0, got {pool_size!r}")
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
            if generator.device.type != "cpu":
                raise ValueError(f"generator must be a CPU generator, got device {generator.device}")
        self.pool_size = int(pool_size)
        self.generator = generator
        self._images: list[torch.Tensor] = []

    def __len__(self) -> int:
        """Number of images currently stored (0 ... pool_size)."""
        return len(self._images)

    def __repr__(self) -> str:
        return f"ImagePool(pool_size={self.pool_size}, stored={len(self)})"

    def _check_images(self, images: object) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dim() < 1 or images.shape[0] < 1:
            raise ValueError(f"images must be a non-empty batch of shape (N, ...), got {tuple(images.shape)}")
        if self._images:
            ref = self._images[0]
            if tuple(images.shape[1:]) != tuple(ref.shape):
                raise ValueError(
                    f"images per-image shape {tuple(images.shape[1:])} must match the pool's {tuple(ref.shape)}"
                )
            if images.dtype != ref.dtype:
                raise TypeError(f"images dtype {images.dtype} must match the pool's {ref.dtype}")
        return images

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch for the discriminator, updating the pool.

        Args:
            images: Generated images of shape (N, ...), e.g. (N, 1, H, W).

        Returns:
            Detached tensor of the same shape, dtype and device as ``images``.
        """
        images = self._check_images(images).detach()
        if self.pool_size == 0:
            return images
        out: list[torch.Tensor] = []
        for image in images:
            if len(self._images) < self.pool_size:
                self._images.append(image.clone())
                out.append(image)
            elif float(torch.rand((), generator=self.generator)) > 0.5:
                idx = int(torch.randint(0, self.pool_size, (), generator=self.generator))
                old = self._images[idx]
                self._images[idx] = image.clone()
                out.append(old.to(image.device))
            else:
                out.append(image)
        return torch.stack(out, dim=0)

    def reset(self) -> None:
        """Empty the pool (the generator state is left as it is)."""
        self._images = []

    def state_dict(self) -> dict[str, Any]:
        """Snapshot for checkpoints.

        Returns:
            Dict with ``"pool_size"`` (int), ``"images"`` (list of stored tensors, each of
            the per-image shape, cloned) and ``"generator_state"`` (the generator's uint8
            state tensor, or None without a generator).
        """
        return {
            "pool_size": self.pool_size,
            "images": [img.clone() for img in self._images],
            "generator_state": None if self.generator is None else self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot from ``state_dict()``.

        After loading, ``query`` produces exactly what the saved pool would have produced
        (when both pools use their own generator, whose state is restored too; a pool on
        the global RNG relies on the caller restoring torch's RNG state).

        Args:
            state: A dict from ``state_dict()``.

        Raises:
            ValueError: If keys are missing, ``pool_size`` differs from this pool's, there
                are more images than ``pool_size``, or the images differ in shape/dtype.
        """
        if not isinstance(state, dict) or not {"pool_size", "images"} <= set(state):
            raise ValueError("state must be a dict with keys 'pool_size' and 'images' (from ImagePool.state_dict())")
        if int(state["pool_size"]) != self.pool_size:
            raise ValueError(f"state pool_size {state['pool_size']} does not match this pool's {self.pool_size}")
        images = list(state["images"])
        if len(images) > self.pool_size:
            raise ValueError(f"state holds {len(images)} images, more than pool_size {self.pool_size}")
        for i, img in enumerate(images):
            if not isinstance(img, torch.Tensor):
                raise ValueError(f"state['images'][{i}] must be a tensor, got {type(img).__name__}")
            if img.shape != images[0].shape or img.dtype != images[0].dtype:
                raise ValueError("state['images'] must all have the same shape and dtype")
        gen_state = state.get("generator_state")
        if gen_state is not None and self.generator is not None:
            self.generator.set_state(gen_state)
        self._images = [img.clone() for img in images]
