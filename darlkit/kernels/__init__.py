"""Fused normalization kernels: SPADE modulation and affine instance norm (+ LeakyReLU).

Public entry points dispatch on ``backend``:

- ``"eager"``: the reference composite of PyTorch ops (:mod:`darlkit.kernels.reference`).
- ``"auto"``: the fastest correct backend available for the input's device.
"""

from darlkit.kernels.dispatch import BACKENDS, instance_norm_act, spade_norm
from darlkit.kernels.reference import instance_norm_act_reference, spade_norm_reference

__all__ = [
    "BACKENDS",
    "spade_norm",
    "instance_norm_act",
    "spade_norm_reference",
    "instance_norm_act_reference",
]
