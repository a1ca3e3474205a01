"""Triton device code of the fused norms: the kernel bodies (forward and backward) and their builder.

The host side (tile choice, launches) and the ``torch.autograd.Function`` wrappers are in
:mod:`darlkit.kernels.triton_norm`.

Both ops share one kernel family; ``SPADE`` (a constexpr) selects per-pixel modulation maps
(``gamma``/``beta`` of shape (N, C, H, W), scale ``1 + gamma``) or per-channel affine parameters
(``weight``/``bias`` of shape (C,)).

Layout. Each (N, C, H, W) tensor is addressed as ``n * s_n + c * s_c + p * s_p`` with the pixel
index ``p = h * W + w``, which covers contiguous (NCHW, ``s_p = 1``) and channels_last (NHWC,
``s_c = 1``) tensors alike, as well as expanded (stride-0) modulation maps. Programs work on
``[BLOCK_C, BLOCK_P]`` tiles; the host picks a tall-in-pixels tile for NCHW and a wide-in-channels
tile for NHWC so loads stay coalesced. Outputs are allocated with ``torch.empty_like(x)`` and so
keep the input's memory format.

Large planes. A plane is split into ``K`` chunks of ``CHUNK`` pixels so that a call with few
planes (e.g. (1, 64, 256, 256)) still launches enough programs:

- forward: ``_stats_kernel`` writes per-chunk (mean, M2) with a two-pass (mean, then centered sum
  of squares) loop over its chunk; ``_combine_kernel`` merges chunks with Chan's parallel formula
  (numerically stable, no ``E[x^2] - E[x]^2``); ``_fwd_apply_kernel`` is the elementwise output.
  With one chunk per plane the stats kernel writes ``mean``/``rstd`` directly.
- backward: ``_bwd_reduce_kernel`` writes per-chunk ``sum(g * s)`` and ``sum(g * s * x_hat)``
  (``g`` = upstream gradient through the LeakyReLU, ``s`` = ``1 + gamma`` or 1), summed over
  chunks on the host; ``_bwd_apply_kernel`` writes ``dx`` (and ``dgamma``/``dbeta`` for SPADE).

Statistics and all arithmetic are float32 for float32/bfloat16/float16 inputs. ``x_hat`` is
recomputed in the backward from the saved ``mean``/``rstd``; the LeakyReLU mask comes from the
saved output (``y > 0``, valid for ``negative_slope >= 0``).

Only builtins of ``triton.language`` are called from the kernels (``tl.full`` rather than
``tl.zeros``, ``tl.reduce(..., tl.standard._sum_combine)`` -- exactly what ``tl.sum`` does --
rather than ``tl.sum``): the ``@triton.jit`` helpers of ``triton.language.standard`` are fixed
as compiled or interpreted when triton is first imported, and the interpreter cannot call
compiled ones, so this keeps the interpreter usable whatever ``TRITON_INTERPRET`` was at import.

The kernels are built lazily: ``triton.jit`` for CUDA tensors, Triton's interpreter for CPU
tensors when ``TRITON_INTERPRET=1`` is set (used by the CPU test suite). Building them at call
time rather than import time keeps importing this module harmless whatever the environment.
"""

# Annotations stay unevaluated strings ("tl.constexpr"): Triton (JIT and interpreter) reads
# them from the source, and the module still imports when triton is missing.
from __future__ import annotations

import functools
import os
from types import SimpleNamespace

import torch

try:  # triton is optional
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only where triton is missing
    triton = None
    tl = None
    HAS_TRITON = False

__all__ = ["HAS_TRITON", "TRITON_DTYPES", "triton_usable", "build_kernels"]

TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
"""Input dtypes the Triton kernels accept."""


def _interpret_requested() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def triton_usable(device: torch.device) -> bool:
    """Whether the Triton kernels can run for tensors on ``device``.

    Args:
        device: Device of the input tensor.

    Returns:
        ``True`` on CUDA when triton is installed, and on CPU when triton is installed and the
        ``TRITON_INTERPRET=1`` environment variable selects Triton's (slow) interpreter.
    """
    if not HAS_TRITON:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and _interpret_requested()


# ----------------------------------------------------------------------------------------------
# Kernel bodies (plain functions, turned into Triton kernels by _kernels())
# ----------------------------------------------------------------------------------------------


def _stats_kernel(
    X, PMEAN, PM2, MEAN, RSTD,
    C, HW, CHUNK, K, eps,
    sxn, sxc, sxp,
    SINGLE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0)
    cb = tl.program_id(1)
    k = tl.program_id(2)
    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    p_start = k * CHUNK
    p_end = tl.minimum(p_start + CHUNK, HW)
    cnt = (p_end - p_start).to(tl.float32)
    base = X + n.to(tl.int64) * sxn + c.to(tl.int64)[:, None] * sxc
    acc = tl.full([BLOCK_C, BLOCK_P], 0.0, tl.float32)
    for off in range(0, CHUNK, BLOCK_P):
        p = p_start + off + tl.arange(0, BLOCK_P)
        m = cmask[:, None] & (p < p_end)[None, :]
        xv = tl.load(base + p.to(tl.int64)[None, :] * sxp, mask=m, other=0.0).to(tl.float32)
        acc += xv
    cmean = tl.reduce(acc, 1, tl.standard._sum_combine) / cnt
    acc2 = tl.full([BLOCK_C, BLOCK_P], 0.0, tl.float32)
    for off in range(0, CHUNK, BLOCK_P):
        p = p_start + off + tl.arange(0, BLOCK_P)
        m = cmask[:, None] & (p < p_end)[None, :]
        xv = tl.load(base + p.to(tl.int64)[None, :] * sxp, mask=m, other=0.0).to(tl.float32)
        d = tl.where(m, xv - cmean[:, None], 0.0)
        acc2 += d * d
    m2 = tl.reduce(acc2, 1, tl.standard._sum_combine)
    plane = n * C + c
    if SINGLE:
        tl.store(MEAN + plane, cmean, mask=cmask)
        tl.store(RSTD + plane, 1.0 / tl.sqrt(m2 / cnt + eps), mask=cmask)
    else:
        tl.store(PMEAN + plane * K + k, cmean, mask=cmask)
        tl.store(PM2 + plane * K + k, m2, mask=cmask)


def _combine_kernel(
    PMEAN, PM2, MEAN, RSTD,
    NC, HW, CHUNK, K, eps,
    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    kk = tl.arange(0, BLOCK_K)
    rmask = r < NC
    m = rmask[:, None] & (kk < K)[None, :]
    idx = r[:, None] * K + kk[None, :]
    pmean = tl.load(PMEAN + idx, mask=m, other=0.0)
    pm2 = tl.load(PM2 + idx, mask=m, other=0.0)
    cnt = tl.minimum(HW - kk * CHUNK, CHUNK).to(tl.float32)
    cnt = tl.where(kk < K, cnt, 0.0)
    mean = tl.reduce(pmean * cnt[None, :], 1, tl.standard._sum_combine) / HW
    d = pmean - mean[:, None]
    m2 = tl.reduce(pm2 + cnt[None, :] * d * d, 1, tl.standard._sum_combine)
    tl.store(MEAN + r, mean, mask=rmask)
    tl.store(RSTD + r, 1.0 / tl.sqrt(m2 / HW + eps), mask=rmask)


def _fwd_apply_kernel(
    X, G, B, Y, MEAN, RSTD,
    C, HW, slope,
    sxn, sxc, sxp, sgn, sgc, sgp, sbn, sbc, sbp, syn, syc, syp,
    SPADE: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
    HAS_ACT: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    cmask = c < C
    m = cmask[:, None] & (p < HW)[None, :]
    n64 = n.to(tl.int64)
    c64 = c.to(tl.int64)[:, None]
    p64 = p.to(tl.int64)[None, :]
    mean = tl.load(MEAN + n * C + c, mask=cmask, other=0.0)
    rstd = tl.load(RSTD + n * C + c, mask=cmask, other=0.0)
    xv = tl.load(X + n64 * sxn + c64 * sxc + p64 * sxp, mask=m, other=0.0).to(tl.float32)
    z = (xv - mean[:, None]) * rstd[:, None]
    if SPADE:
        gv = tl.load(G + n64 * sgn + c64 * sgc + p64 * sgp, mask=m, other=0.0).to(tl.float32)
        bv = tl.load(B + n64 * sbn + c64 * sbc + p64 * sbp, mask=m, other=0.0).to(tl.float32)
        z = z * (1.0 + gv) + bv
    else:
        if HAS_W:
            wv = tl.load(G + c, mask=cmask, other=0.0).to(tl.float32)
            z = z * wv[:, None]
        if HAS_B:
            bv = tl.load(B + c, mask=cmask, other=0.0).to(tl.float32)
            z = z + bv[:, None]
    if HAS_ACT:
        z = tl.where(z > 0, z, z * slope)
    tl.store(Y + n64 * syn + c64 * syc + p64 * syp, z.to(Y.dtype.element_ty), mask=m)


def _bwd_reduce_kernel(
    DY, X, G, Y, MEAN, RSTD, PA, PB,
    C, HW, CHUNK, K, slope,
    sdn, sdc, sdp, sxn, sxc, sxp, sgn, sgc, sgp, syn, syc, syp,
    SPADE: tl.constexpr, HAS_ACT: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    k = tl.program_id(2)
    cmask = c < C
    n64 = n.to(tl.int64)
    c64 = c.to(tl.int64)[:, None]
    mean = tl.load(MEAN + n * C + c, mask=cmask, other=0.0)
    rstd = tl.load(RSTD + n * C + c, mask=cmask, other=0.0)
    p_start = k * CHUNK
    p_end = tl.minimum(p_start + CHUNK, HW)
    acc_a = tl.full([BLOCK_C, BLOCK_P], 0.0, tl.float32)
    acc_b = tl.full([BLOCK_C, BLOCK_P], 0.0, tl.float32)
    for off in range(0, CHUNK, BLOCK_P):
        p = p_start + off + tl.arange(0, BLOCK_P)
        m = cmask[:, None] & (p < p_end)[None, :]
        p64 = p.to(tl.int64)[None, :]
        g = tl.load(DY + n64 * sdn + c64 * sdc + p64 * sdp, mask=m, other=0.0).to(tl.float32)
        if HAS_ACT:
            yv = tl.load(Y + n64 * syn + c64 * syc + p64 * syp, mask=m, other=0.0).to(tl.float32)
            g = tl.where(yv > 0, g, g * slope)
        if SPADE:
            gv = tl.load(G + n64 * sgn + c64 * sgc + p64 * sgp, mask=m, other=0.0).to(tl.float32)
            g = g * (1.0 + gv)
        xv = tl.load(X + n64 * sxn + c64 * sxc + p64 * sxp, mask=m, other=0.0).to(tl.float32)
        xhat = tl.where(m, (xv - mean[:, None]) * rstd[:, None], 0.0)
        acc_a += g
        acc_b += g * xhat
    plane = n * C + c
    tl.store(PA + plane * K + k, tl.reduce(acc_a, 1, tl.standard._sum_combine), mask=cmask)
    tl.store(PB + plane * K + k, tl.reduce(acc_b, 1, tl.standard._sum_combine), mask=cmask)


def _bwd_apply_kernel(
    DY, X, G, Y, MEAN, RSTD, CA, CB, DX, DG, DB,
    C, HW, slope,
    sdn, sdc, sdp, sxn, sxc, sxp, sgn, sgc, sgp, syn, syc, syp,
    sxgn, sxgc, sxgp, sgon, sgoc, sgop, sbon, sboc, sbop,
    SPADE: tl.constexpr, WRITE_GB: tl.constexpr, HAS_W: tl.constexpr,
    HAS_ACT: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    # CA, CB: per-plane mean(dxhat) and mean(dxhat * xhat) (already scaled by the weight for
    # instance norm). DX/DG/DB are written with their own strides (sx?*, sgo*, sbo*).
    n = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    cmask = c < C
    m = cmask[:, None] & (p < HW)[None, :]
    n64 = n.to(tl.int64)
    c64 = c.to(tl.int64)[:, None]
    p64 = p.to(tl.int64)[None, :]
    plane = n * C + c
    mean = tl.load(MEAN + plane, mask=cmask, other=0.0)
    rstd = tl.load(RSTD + plane, mask=cmask, other=0.0)
    ca = tl.load(CA + plane, mask=cmask, other=0.0)
    cb = tl.load(CB + plane, mask=cmask, other=0.0)
    g = tl.load(DY + n64 * sdn + c64 * sdc + p64 * sdp, mask=m, other=0.0).to(tl.float32)
    if HAS_ACT:
        yv = tl.load(Y + n64 * syn + c64 * syc + p64 * syp, mask=m, other=0.0).to(tl.float32)
        g = tl.where(yv > 0, g, g * slope)
    xv = tl.load(X + n64 * sxn + c64 * sxc + p64 * sxp, mask=m, other=0.0).to(tl.float32)
    xhat = (xv - mean[:, None]) * rstd[:, None]
    if SPADE:
        gv = tl.load(G + n64 * sgn + c64 * sgc + p64 * sgp, mask=m, other=0.0).to(tl.float32)
        dxhat = g * (1.0 + gv)
        if WRITE_GB:
            tl.store(DG + n64 * sgon + c64 * sgoc + p64 * sgop, (g * xhat).to(DG.dtype.element_ty), mask=m)
            tl.store(DB + n64 * sbon + c64 * sboc + p64 * sbop, g.to(DB.dtype.element_ty), mask=m)
    else:
        if HAS_W:
            wv = tl.load(G + c, mask=cmask, other=0.0).to(tl.float32)
            dxhat = g * wv[:, None]
        else:
            dxhat = g
    dx = rstd[:, None] * (dxhat - ca[:, None] - xhat * cb[:, None])
    tl.store(DX + n64 * sxgn + c64 * sxgc + p64 * sxgp, dx.to(DX.dtype.element_ty), mask=m)


_BODIES = {
    "stats": _stats_kernel,
    "combine": _combine_kernel,
    "fwd_apply": _fwd_apply_kernel,
    "bwd_reduce": _bwd_reduce_kernel,
    "bwd_apply": _bwd_apply_kernel,
}


@functools.lru_cache(maxsize=2)
def build_kernels(interpret: bool) -> SimpleNamespace:
    """The five kernels, wrapped as Triton kernels: interpreted (CPU) or JIT-compiled (CUDA).

    Args:
        interpret: ``True``: Triton's interpreter (CPU tensors); ``False``: ``triton.jit`` (CUDA).

    Returns:
        A namespace with the kernels ``stats``, ``combine``, ``fwd_apply``, ``bwd_reduce`` and
        ``bwd_apply`` (cached per mode).

    Raises:
        RuntimeError: If triton is not installed.
    """
    if not HAS_TRITON:  # pragma: no cover
        raise RuntimeError("triton is not installed: pip install 'darlkit[triton]'")
    if interpret:
        from triton.runtime.interpreter import InterpretedFunction

        wrap = InterpretedFunction
    else:
        from triton.runtime.jit import JITFunction

        wrap = JITFunction
    return SimpleNamespace(**{name: wrap(fn) for name, fn in _BODIES.items()})
