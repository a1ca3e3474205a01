"""Paper-convention MAC rules for darlkit's fused layers.

darlkit's ``SwitchableSPADE`` evaluates its normalisation with functional (fused) kernels
instead of calling ``nn`` norm modules, so a module-hook counter would miss what the
released eager layer counted. Its rule restores that count:

* with a segmap: the parameter-free ``InstanceNorm2d`` (no affine) of the release counts
  ``numel(x)``;
* without a segmap: the affine ``param_norm`` counts ``2 * numel(x)``.

The layer's child modules (``mlp_shared`` conv + ReLU, ``mlp_gamma``, ``mlp_beta``) are
counted by their own rules, and its fused LeakyReLU counts nothing (the release used the
functional ``F.leaky_relu`` there). ``param_norm`` (and ``param_free_norm`` of the batch
variant) are declared exclusive children so that they are never counted twice.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from darlkit.flops.counter import register_mac_rule

__all__ = ["switchable_spade_macs"]


def switchable_spade_macs(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
    """Paper-convention MACs of one ``SwitchableSPADE`` call (its norm only).

    Args:
        module: The ``SwitchableSPADE`` layer.
        args: Positional call arguments ``(x, [segmap])``; ``x`` is (N, C, H, W).
        kwargs: Keyword call arguments (``segmap`` may be given here).
        out: The layer's output (unused).

    Returns:
        ``numel(x)`` when a segmap was given (or published by a ``SpadeifiedModel``),
        else ``2 * numel(x)``.
    """
    x = args[0]
    segmap = args[1] if len(args) > 1 else kwargs.get("segmap")
    if segmap is None:
        slot = getattr(module, "_segmap_slot", None)
        if slot is not None:
            segmap = slot.get()
    n = x.numel() if isinstance(x, torch.Tensor) else 0
    return n if segmap is not None else 2 * n


def _register() -> None:
    from darlkit.layers import SwitchableSPADE

    register_mac_rule(SwitchableSPADE, switchable_spade_macs, exclusive_children=("param_norm", "param_free_norm"))


_register()
