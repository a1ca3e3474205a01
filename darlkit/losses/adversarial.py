"""Least-squares GAN (LSGAN) losses and the L1 cycle loss of DARL.

DARL's generator objective is ``L_diff + alpha * L_adv^G + beta * L_cyc`` (alpha = 0.2,
beta = 5.0) with ``L_adv^G = mse(D_s(s_hat), 1) + mse(D_a(x_hat^a), 1)`` and
``L_cyc = mean |s_rec - s^f|``; each discriminator minimises
``0.5 * (mse(D(real), 1) + mse(D(fake), 0))``.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn as nn

__all__ = ["lsgan_loss", "LSGANLoss", "lsgan_generator_loss", "lsgan_discriminator_loss", "cycle_loss"]


def _check_pred(pred: object, name: str) -> torch.Tensor:
    if not isinstance(pred, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(pred).__name__}")
    if not pred.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {pred.dtype}")
    if pred.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(pred.shape)}")
    return pred


def _check_flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _mse_to(pred: torch.Tensor, target: float) -> torch.Tensor:
    return (pred - target).pow(2).mean()


def lsgan_loss(pred: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """LSGAN loss ``mean((pred - target) ** 2)`` with target 1 (real) or 0 (fake).

    Args:
        pred: Discriminator output of any shape, e.g. a PatchGAN map (N, 1, h, w); floating.
        target_is_real: ``True`` for target 1, ``False`` for target 0.

    Returns:
        Scalar tensor in pred's dtype.
    """
    pred = _check_pred(pred, "pred")
    return _mse_to(pred, 1.0 if _check_flag(target_is_real, "target_is_real") else 0.0)


class LSGANLoss(nn.Module):
    """Module form of ``lsgan_loss`` with configurable labels.

    Args:
        real_label: Target value for real samples (default 1.0).
        fake_label: Target value for fake samples (default 0.0).

    Example:
        >>> crit = LSGANLoss()
        >>> loss = crit(torch.zeros(2, 1, 4, 4), target_is_real=True)  # == 1.0
    """

    def __init__(self, real_label: float = 1.0, fake_label: float = 0.0) -> None:
        super().__init__()
        for name, value in (("real_label", real_label), ("fake_label", fake_label)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        self.real_label = float(real_label)
        self.fake_label = float(fake_label)

    def extra_repr(self) -> str:
        """The two labels, shown in ``repr(module)``."""
        return f"real_label={self.real_label}, fake_label={self.fake_label}"

    def forward(self, pred: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """Compute ``mean((pred - label) ** 2)``.

        Args:
            pred: Discriminator output of any shape; floating.
            target_is_real: Use ``real_label`` when True, ``fake_label`` when False.

        Returns:
            Scalar tensor in pred's dtype.
        """
        pred = _check_pred(pred, "pred")
        label = self.real_label if _check_flag(target_is_real, "target_is_real") else self.fake_label
        return _mse_to(pred, label)


def lsgan_generator_loss(*fake_preds: torch.Tensor) -> torch.Tensor:
    """Generator adversarial loss: ``sum_i mean((fake_preds[i] - 1) ** 2)``.

    In DARL the terms are D_s(s_hat) and D_a(x_hat^a).

    Args:
        *fake_preds: One or more discriminator outputs on generated samples (any shapes).

    Returns:
        Scalar tensor.

    Raises:
        ValueError: If no prediction is given.
    """
    if not fake_preds:
        raise ValueError("lsgan_generator_loss needs at least one discriminator output")
    total = None
    for i, pred in enumerate(fake_preds):
        term = _mse_to(_check_pred(pred, f"fake_preds[{i}]"), 1.0)
        total = term if total is None else total + term
    return total


def lsgan_discriminator_loss(pred_real: torch.Tensor, pred_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss ``0.5 * (mean((pred_real - 1) ** 2) + mean(pred_fake ** 2))``.

    Args:
        pred_real: Discriminator output on real samples (any shape).
        pred_fake: Discriminator output on (detached, pooled) fake samples (any shape).

    Returns:
        Scalar tensor.
    """
    pred_real = _check_pred(pred_real, "pred_real")
    pred_fake = _check_pred(pred_fake, "pred_fake")
    return 0.5 * (_mse_to(pred_real, 1.0) + _mse_to(pred_fake, 0.0))


def cycle_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cycle-consistency loss ``mean |reconstruction - target|`` (L1).

    In DARL: ``reconstruction = s_rec`` and ``target = s^f`` (fractal mask in [-1, 1]).

    Args:
        reconstruction: Floating tensor of any shape.
        target: Tensor of the same shape (cast to reconstruction's dtype).

    Returns:
        Scalar tensor.

    Raises:
        ValueError: If the shapes differ.
    """
    reconstruction = _check_pred(reconstruction, "reconstruction")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if tuple(target.shape) != tuple(reconstruction.shape):
        raise ValueError(
            f"target shape {tuple(target.shape)} must equal reconstruction shape {tuple(reconstruction.shape)}"
        )
    return (reconstruction - target.to(reconstruction.dtype)).abs().mean()
