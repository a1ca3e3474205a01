"""Fused normalization kernels: SPADE modulation and affine instance norm (+ LeakyReLU).

Public entry points dispatch on ``backend`` (see ``resolve_backend``):

- ``"eager"``: the reference composite of PyTorch ops (``darlkit.kernels.reference``), the
  ground truth of the tests.
- ``"compile"``: a hand-written forward/backward compiled with ``torch.compile`` (CPU default).
- ``"triton"``: Triton kernels with fused forward and backward (CUDA default; CPU only through
  ``TRITON_INTERPRET=1``).
- ``"auto"``: the fastest correct backend for the input's device, eager as a fallback.
"""

from darlkit.kernels.composite import (
    InstanceNormActFunction,
    SPADENormFunction,
    compile_available,
    compile_unavailable_reason,
)
from darlkit.kernels.dispatch import (
    AUTO_COMPILE_MIN_NUMEL,
    BACKENDS,
    check_backend,
    instance_norm_act,
    resolve_backend,
    spade_norm,
)
from darlkit.kernels.modules import FusedInstanceNormAct, FusedSPADENorm
from darlkit.kernels.reference import instance_norm_act_reference, spade_norm_reference

__all__ = [
    "BACKENDS",
    "AUTO_COMPILE_MIN_NUMEL",
    "check_backend",
    "resolve_backend",
    "compile_available",
    "compile_unavailable_reason",
    "spade_norm",
    "instance_norm_act",
    "spade_norm_reference",
    "instance_norm_act_reference",
    "FusedSPADENorm",
    "FusedInstanceNormAct",
    "SPADENormFunction",
    "InstanceNormActFunction",
]
