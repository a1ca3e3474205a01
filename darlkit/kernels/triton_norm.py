"""Triton SPADE modulation and affine instance norm + LeakyReLU: host side and autograd Functions.

Liger-Kernel's layout: this module launches the kernels of :mod:`darlkit.kernels.triton_kernels`
(tile and chunk choice per memory format and device, the per-chunk reductions, the output
buffers) and wraps forward and backward in :class:`TritonSPADENormFunction` and
:class:`TritonInstanceNormActFunction`; the thin ``nn.Module`` wrappers are in
:mod:`darlkit.kernels.modules`, and :mod:`darlkit.kernels.dispatch` selects this backend.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import torch

from darlkit.kernels.triton_kernels import HAS_TRITON, TRITON_DTYPES, build_kernels, triton, triton_usable

__all__ = [
    "HAS_TRITON",
    "TRITON_DTYPES",
    "triton_usable",
    "TritonSPADENormFunction",
    "TritonInstanceNormActFunction",
]

def _next_pow2(v: int) -> int:
    return 1 << max(0, (int(v) - 1).bit_length())


def _flat_strides(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """(n, c, pixel) strides of a 4-D tensor whose H and W flatten; copies otherwise."""
    _, _, h, w = t.shape
    sn, sc, sh, sw = t.stride()
    if h == 1:
        return t, (sn, sc, sw)
    if w == 1 or sh == w * sw:
        return t, (sn, sc, sw if w > 1 else sh)
    t = t.contiguous()
    sn, sc, _, sw = t.stride()
    return t, (sn, sc, sw)


_CUDA_TILE = 2048
"""Elements per [BLOCK_C, BLOCK_P] tile on CUDA and in the (slow, CPU) interpreter."""
_INTERPRET_TILE = 256


class _Config(SimpleNamespace):
    pass


def _config(x: torch.Tensor, interpret: bool) -> _Config:
    n, c, h, w = x.shape
    hw = h * w
    channels_last = c > 1 and x.stride(1) == 1 and hw > 1
    tile = _INTERPRET_TILE if interpret else _CUDA_TILE
    if channels_last:
        block_c = min(_next_pow2(c), 64)
        block_p = max(1, min(_next_pow2(hw), tile // block_c))
    else:
        block_p = min(_next_pow2(hw), tile)
        block_c = max(1, min(_next_pow2(c), tile // block_p))
    n_cb = triton.cdiv(c, block_c)
    n_pb = triton.cdiv(hw, block_p)
    # Reduction chunks: enough programs to fill the device, at least 4 tiles per chunk.
    target = 64 if interpret else 8 * _sm_count(x.device)
    want = max(1, min(triton.cdiv(target, n * n_cb), triton.cdiv(n_pb, 4)))
    chunk = triton.cdiv(n_pb, want) * block_p
    k = triton.cdiv(hw, chunk)
    if k > 1024:  # combine kernel loads all chunks of a plane at once
        chunk = triton.cdiv(hw, 1024 * block_p) * block_p
        k = triton.cdiv(hw, chunk)
    num_warps = 1 if interpret else (8 if block_c * block_p >= 2048 else 4)
    return _Config(
        N=n, C=c, HW=hw, BLOCK_C=block_c, BLOCK_P=block_p, n_cb=n_cb, n_pb=n_pb,
        CHUNK=chunk, K=k, num_warps=num_warps,
    )  # fmt: skip


@functools.lru_cache(maxsize=8)
def _sm_count_cached(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 16
    return _sm_count_cached(device.index if device.index is not None else torch.cuda.current_device())


def _launch_kw(cfg: _Config) -> dict:
    return {"num_warps": cfg.num_warps}


def _forward(x, g, b, eps, slope, spade: bool, out_dtype: torch.dtype):
    interpret = x.device.type == "cpu"
    kern = build_kernels(interpret)
    x, (sxn, sxc, sxp) = _flat_strides(x)
    cfg = _config(x, interpret)
    nc = cfg.N * cfg.C
    mean = torch.empty(nc, device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    single = cfg.K == 1
    if single:
        pmean = pm2 = mean  # unused
    else:
        pmean = torch.empty(nc * cfg.K, device=x.device, dtype=torch.float32)
        pm2 = torch.empty_like(pmean)
    kern.stats[(cfg.N, cfg.n_cb, cfg.K)](
        x, pmean, pm2, mean, rstd, cfg.C, cfg.HW, cfg.CHUNK, cfg.K, float(eps),
        sxn, sxc, sxp, SINGLE=single, BLOCK_C=cfg.BLOCK_C, BLOCK_P=cfg.BLOCK_P, **_launch_kw(cfg),
    )  # fmt: skip
    if not single:
        block_r = max(1, min(64, 4096 // _next_pow2(cfg.K)))
        kern.combine[(triton.cdiv(nc, block_r),)](
            pmean, pm2, mean, rstd, nc, cfg.HW, cfg.CHUNK, cfg.K, float(eps),
            BLOCK_R=block_r, BLOCK_K=_next_pow2(cfg.K), num_warps=1 if interpret else 4,
        )  # fmt: skip
    y = torch.empty_like(x, dtype=out_dtype)
    _, (syn, syc, syp) = _flat_strides(y)
    if spade:
        g, gs = _flat_strides(g)
        b, bs = _flat_strides(b)
    else:
        gs = bs = (0, 0, 0)
    dummy = mean
    kern.fwd_apply[(cfg.N, cfg.n_cb, cfg.n_pb)](
        x, g if g is not None else dummy, b if b is not None else dummy, y, mean, rstd,
        cfg.C, cfg.HW, float(slope if slope is not None else 0.0),
        sxn, sxc, sxp, *gs, *bs, syn, syc, syp,
        SPADE=spade, HAS_W=g is not None, HAS_B=b is not None, HAS_ACT=slope is not None,
        BLOCK_C=cfg.BLOCK_C, BLOCK_P=cfg.BLOCK_P, **_launch_kw(cfg),
    )  # fmt: skip
    return y, mean, rstd


def _backward(dy, x, g, y, mean, rstd, slope, spade: bool, need_g: bool):
    """Returns dx, and (dgamma, dbeta) maps for SPADE or (sum(g*xhat), sum(g)) per plane."""
    interpret = x.device.type == "cpu"
    kern = build_kernels(interpret)
    x, xs = _flat_strides(x)
    dy, ds = _flat_strides(dy)
    cfg = _config(x, interpret)
    nc = cfg.N * cfg.C
    has_act = slope is not None
    dummy = mean
    if has_act:
        y, ys = _flat_strides(y)
    else:
        y, ys = dummy, (0, 0, 0)
    if spade:
        g, gs = _flat_strides(g)
    else:
        gs = (0, 0, 0)
    pa = torch.empty(nc * cfg.K, device=x.device, dtype=torch.float32)
    pb = torch.empty_like(pa)
    slope_f = float(slope if slope is not None else 0.0)
    kern.bwd_reduce[(cfg.N, cfg.n_cb, cfg.K)](
        dy, x, g if spade else dummy, y, mean, rstd, pa, pb,
        cfg.C, cfg.HW, cfg.CHUNK, cfg.K, slope_f,
        *ds, *xs, *gs, *ys,
        SPADE=spade, HAS_ACT=has_act, BLOCK_C=cfg.BLOCK_C, BLOCK_P=cfg.BLOCK_P, **_launch_kw(cfg),
    )  # fmt: skip
    sum_a = pa.view(nc, cfg.K).sum(1)  # sum(g * s) per plane
    sum_b = pb.view(nc, cfg.K).sum(1)  # sum(g * s * xhat) per plane
    if spade:
        ca = sum_a / cfg.HW
        cb = sum_b / cfg.HW
        w_ptr = g
        has_w = True
    else:
        # here s == 1: sum_a = sum(g), sum_b = sum(g * xhat); dxhat = g * w
        if g is not None:
            wrep = g.to(torch.float32).repeat(cfg.N)
            ca = sum_a * wrep / cfg.HW
            cb = sum_b * wrep / cfg.HW
        else:
            ca = sum_a / cfg.HW
            cb = sum_b / cfg.HW
        w_ptr = g if g is not None else dummy
        has_w = g is not None
    dx = torch.empty_like(x)
    _, dxs = _flat_strides(dx)
    if spade and need_g:
        dg = torch.empty_like(x, dtype=g.dtype)
        db = torch.empty_like(x, dtype=g.dtype)
        _, dgs = _flat_strides(dg)
        _, dbs = _flat_strides(db)
    else:
        dg = db = dummy
        dgs = dbs = (0, 0, 0)
    kern.bwd_apply[(cfg.N, cfg.n_cb, cfg.n_pb)](
        dy, x, w_ptr, y, mean, rstd, ca.contiguous(), cb.contiguous(), dx, dg, db,
        cfg.C, cfg.HW, slope_f,
        *ds, *xs, *gs, *ys, *dxs, *dgs, *dbs,
        SPADE=spade, WRITE_GB=spade and need_g, HAS_W=has_w, HAS_ACT=has_act,
        BLOCK_C=cfg.BLOCK_C, BLOCK_P=cfg.BLOCK_P, **_launch_kw(cfg),
    )  # fmt: skip
    if spade:
        return dx, (dg if need_g else None), (db if need_g else None)
    return dx, sum_b.view(cfg.N, cfg.C), sum_a.view(cfg.N, cfg.C)


class TritonSPADENormFunction(torch.autograd.Function):
    """Autograd function of the SPADE modulation on the Triton kernels.

    ``apply(x, gamma, beta, eps, negative_slope)``; ``x``, ``gamma``, ``beta`` of shape
    (N, C, H, W) (float32/bfloat16/float16; maps may be expanded views), ``negative_slope`` is
    ``None`` or >= 0. Returns a tensor of the promoted dtype in ``x``'s memory format.
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, eps, negative_slope):  # type: ignore[override]
        out_dtype = torch.promote_types(torch.promote_types(x.dtype, gamma.dtype), beta.dtype)
        y, mean, rstd = _forward(x, gamma, beta, eps, negative_slope, True, out_dtype)
        ctx.save_for_backward(x, gamma, mean, rstd, y if negative_slope is not None else None)
        ctx.negative_slope = negative_slope
        ctx.beta_dtype = beta.dtype
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        x, gamma, mean, rstd, y = ctx.saved_tensors
        need = ctx.needs_input_grad
        # SPADE path: the "scale" pointer carries gamma; dgamma/dbeta are written in gamma's dtype
        dx, dg, db = _backward(
            dy, x, gamma, y, mean, rstd, ctx.negative_slope, True, need[1] or need[2]
        )
        return (
            dx if need[0] else None,
            dg if need[1] else None,
            (db.to(ctx.beta_dtype) if db is not None else None) if need[2] else None,
            None,
            None,
        )


class TritonInstanceNormActFunction(torch.autograd.Function):
    """Autograd function of the affine instance norm + LeakyReLU on the Triton kernels.

    ``apply(x, weight, bias, eps, negative_slope)``; ``x`` of shape (N, C, H, W)
    (float32/bfloat16/float16), ``weight``/``bias`` of shape (C,) or ``None``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, negative_slope):  # type: ignore[override]
        y, mean, rstd = _forward(x, weight, bias, eps, negative_slope, False, x.dtype)
        ctx.save_for_backward(x, weight, mean, rstd, y if negative_slope is not None else None)
        ctx.negative_slope = negative_slope
        ctx.bias_dtype = None if bias is None else bias.dtype
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        x, weight, mean, rstd, y = ctx.saved_tensors
        need = ctx.needs_input_grad
        dx, sgx, sg = _backward(dy, x, weight, y, mean, rstd, ctx.negative_slope, False, False)
        return (
            dx if need[0] else None,
            sgx.sum(0).to(weight.dtype) if need[1] else None,
            sg.sum(0).to(ctx.bias_dtype) if need[2] else None,
            None,
            None,
        )
