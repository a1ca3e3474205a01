"""What DARL's training paths return (``DARLPaths``) and the one-hot segmap of a mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DARLPaths", "mask_to_onehot"]


def mask_to_onehot(mask: torch.Tensor) -> torch.Tensor:
    """Turn a mask in [-1, 1] into the 2-channel (background, vessel) one-hot segmap of G.

    Args:
        mask: (N, 1, H, W) float; vessel where > 0.

    Returns:
        (N, 2, H, W) float of ``mask``'s dtype: channel 0 = 1 on background, channel 1 = 1
        on vessel pixels.
    """
    vessel = (mask > 0).to(mask.dtype)
    return torch.cat([1 - vessel, vessel], dim=1)


@dataclass
class DARLPaths:
    """Outputs of one pass through DARL's A, B and cycle paths (SPEC "Training").

    Shapes are those of the inputs, (N, 1, H, W); images and masks are in [-1, 1].

    Attributes:
        seg: A path: s_hat = G(x^a_{t_a}, eps_theta(x^a_{t_a}, t_a)), mask logits (no mask given).
        synth: B path: x_hat^a = G(x^b_{t_b}, eps_theta(x^b_{t_b}, t_b); s^f), synthetic angiogram.
        cycle: Cycle path: s_rec, the segmentation of q_sample(x_hat^a, t_a, noise).
        noise: The Gaussian noise used by all three q_samples.
        noise_pred: eps_theta(x^b_{t_b}, t_b), the B path's noise prediction.
        t_a: Steps of the A and cycle paths, int64 (N,).
        t_b: Steps of the B path, int64 (N,).
        loss_diff: Scalar MSE(noise, noise_pred) (L_diff).
        loss_cyc: Scalar mean L1(cycle, mask) (L_cyc).
    """

    seg: torch.Tensor
    synth: torch.Tensor
    cycle: torch.Tensor
    noise: torch.Tensor
    noise_pred: torch.Tensor
    t_a: torch.Tensor
    t_b: torch.Tensor
    loss_diff: torch.Tensor
    loss_cyc: torch.Tensor
