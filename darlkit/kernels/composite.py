"""Fused composite backend: hand-written forward/backward in PyTorch ops, run through ``torch.compile``.

Each op is a ``torch.autograd.Function`` whose forward saves only the input, the per-plane
statistics (``mean``, ``rstd``: float32, shape (N, C, 1, 1)), the modulation input and, when an
activation is fused, the output (its sign gives the LeakyReLU mask). The backward recomputes
``x_hat = (x - mean) * rstd`` instead of storing it, so forward + backward reads each large tensor
the minimum number of times once Inductor fuses the pointwise work into the two reductions.

The forward and backward bodies are plain functions (``_spade_fwd`` ...) so that they can run
uncompiled too (float64 ``gradcheck`` of the hand-written backward, and the fallback when
``torch.compile`` is unavailable). Compiled versions are created once per process and cached at
module level. They are compiled with ``dynamic=True`` on detached inputs (one shape-generic
kernel serves every (N, C, H, W), in training and evaluation, so a network's many norm shapes do
not each cost a compile), through one entry point per activation case, and without
``fullgraph``: dtypes and memory formats still specialise, and should a body ever exceed
dynamo's recompile limit, the remaining variants run the same body uncompiled (correct, just
slower) instead of failing.
"""

from __future__ import annotations

import threading
from typing import Callable

import torch

__all__ = ["SPADENormFunction", "InstanceNormActFunction", "compile_available", "compile_unavailable_reason"]


# ----------------------------------------------------------------------------------------------
# Plain bodies (all math in float32 or wider; results cast back to the output dtype)
# ----------------------------------------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _stats(xf: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    # var_mean lowers to a Welford reduction under Inductor and to a two-pass kernel in eager:
    # both are numerically stable for large offsets (no E[x^2] - E[x]^2).
    var, mean = torch.var_mean(xf, dim=(2, 3), correction=0, keepdim=True)
    return mean, torch.rsqrt(var + eps)


def _leaky(z: torch.Tensor, slope: float | None) -> torch.Tensor:
    return z if slope is None else torch.where(z > 0, z, z * slope)


def _leaky_grad(dy: torch.Tensor, y: torch.Tensor | None, slope: float | None) -> torch.Tensor:
    # For slope >= 0, sign(y) == sign(z) where z is the pre-activation, so y gives the mask.
    return dy if slope is None or y is None else torch.where(y > 0, dy, dy * slope)


def _spade_fwd(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float, slope: float | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out_dtype = torch.promote_types(torch.promote_types(x.dtype, gamma.dtype), beta.dtype)
    cd = _compute_dtype(out_dtype)
    xf = x.to(cd)
    mean, rstd = _stats(xf, eps)
    z = (xf - mean) * rstd * (1 + gamma.to(cd)) + beta.to(cd)
    return _leaky(z, slope).to(out_dtype), mean, rstd


def _spade_bwd(
    dy: torch.Tensor,
    x: torch.Tensor,
    gamma: torch.Tensor,
    y: torch.Tensor | None,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    slope: float | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cd = mean.dtype
    xhat = (x.to(cd) - mean) * rstd
    g = _leaky_grad(dy.to(cd), y, slope)
    dxhat = g * (1 + gamma.to(cd))
    m1 = dxhat.mean(dim=(2, 3), keepdim=True)
    m2 = (dxhat * xhat).mean(dim=(2, 3), keepdim=True)
    dx = rstd * (dxhat - m1 - xhat * m2)
    return dx.to(x.dtype), (g * xhat).to(gamma.dtype), g.to(gamma.dtype)


def _inorm_fwd(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    slope: float | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cd = _compute_dtype(x.dtype)
    xf = x.to(cd)
    mean, rstd = _stats(xf, eps)
    z = (xf - mean) * rstd
    if weight is not None:
        z = z * weight.to(cd).view(1, -1, 1, 1)
    if bias is not None:
        z = z + bias.to(cd).view(1, -1, 1, 1)
    return _leaky(z, slope).to(x.dtype), mean, rstd


def _inorm_bwd(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor | None,
    y: torch.Tensor | None,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    slope: float | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cd = mean.dtype
    xhat = (x.to(cd) - mean) * rstd
    g = _leaky_grad(dy.to(cd), y, slope)
    sum_g = g.sum(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    sum_gx = (g * xhat).sum(dim=(2, 3), keepdim=True)
    hw = x.shape[2] * x.shape[3]
    w = weight.to(cd).view(1, -1, 1, 1) if weight is not None else None
    a = sum_g / hw
    b = sum_gx / hw
    if w is not None:
        a = a * w
        b = b * w
        dx = rstd * (g * w - a - xhat * b)
    else:
        dx = rstd * (g - a - xhat * b)
    return dx.to(x.dtype), sum_gx.sum(dim=(0, 2, 3)), sum_g.sum(dim=(0, 2, 3))


# ----------------------------------------------------------------------------------------------
# Compilation cache and probe
# ----------------------------------------------------------------------------------------------

_BODIES: dict[str, Callable] = {
    "spade_fwd": _spade_fwd,
    "spade_bwd": _spade_bwd,
    "inorm_fwd": _inorm_fwd,
    "inorm_bwd": _inorm_bwd,
}


# torch.compile caches compiled variants per code object, under one recompile limit. The bodies
# specialise on whether an activation is fused (``slope`` None or a float, ``y`` None or saved),
# so each body is compiled through two entry points of its own, one per case: the variants of a
# training run (dtypes, memory formats, grad modes) then stay well under the limit.
def _spade_fwd_act(x, gamma, beta, eps, slope):
    return _spade_fwd(x, gamma, beta, eps, slope)


def _spade_fwd_plain(x, gamma, beta, eps, slope):
    return _spade_fwd(x, gamma, beta, eps, None)


def _spade_bwd_act(dy, x, gamma, y, mean, rstd, slope):
    return _spade_bwd(dy, x, gamma, y, mean, rstd, slope)


def _spade_bwd_plain(dy, x, gamma, y, mean, rstd, slope):
    return _spade_bwd(dy, x, gamma, None, mean, rstd, None)


def _inorm_fwd_act(x, weight, bias, eps, slope):
    return _inorm_fwd(x, weight, bias, eps, slope)


def _inorm_fwd_plain(x, weight, bias, eps, slope):
    return _inorm_fwd(x, weight, bias, eps, None)


def _inorm_bwd_act(dy, x, weight, y, mean, rstd, slope):
    return _inorm_bwd(dy, x, weight, y, mean, rstd, slope)


def _inorm_bwd_plain(dy, x, weight, y, mean, rstd, slope):
    return _inorm_bwd(dy, x, weight, None, mean, rstd, None)


_ENTRY_POINTS: dict[tuple[str, bool], Callable] = {
    ("spade_fwd", True): _spade_fwd_act,
    ("spade_fwd", False): _spade_fwd_plain,
    ("spade_bwd", True): _spade_bwd_act,
    ("spade_bwd", False): _spade_bwd_plain,
    ("inorm_fwd", True): _inorm_fwd_act,
    ("inorm_fwd", False): _inorm_fwd_plain,
    ("inorm_bwd", True): _inorm_bwd_act,
    ("inorm_bwd", False): _inorm_bwd_plain,
}
_COMPILED: dict[tuple[str, bool], Callable] = {}
_LOCK = threading.Lock()
_PROBE: dict[str, bool] = {}
_PROBE_ERROR: dict[str, str] = {}


def _plain_args(compiled: bool, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """Detach the inputs of a compiled body (its gradients are the hand-written backward's).

    Dynamo treats ``nn.Parameter`` shapes as static and guards on ``requires_grad``; plain
    detached tensors keep one shape-generic graph for every channel count, in training and
    evaluation alike.
    """
    if not compiled:
        return tensors
    return tuple(None if t is None else t.detach() for t in tensors)


def _get(name: str, compiled: bool, act: bool) -> Callable:
    """The body ``name`` (plain), or its compiled entry point for ``act`` (activation fused or not)."""
    if not compiled:
        return _BODIES[name]
    key = (name, act)
    fn = _COMPILED.get(key)
    if fn is None:
        with _LOCK:
            fn = _COMPILED.get(key)
            if fn is None:
                fn = torch.compile(_ENTRY_POINTS[key], dynamic=True)
                _COMPILED[key] = fn
    return fn


def _in_trace() -> bool:
    """True while an enclosing trace records the call: Dynamo (``torch.compile``) or
    ``torch.jit.trace`` (TorchScript and ONNX export). Such a trace cannot contain a
    ``torch.compile``'d callable ("using FX to torch.jit.trace a dynamo-optimized function")."""
    if torch.jit.is_tracing():
        return True
    try:
        return bool(torch.compiler.is_compiling())
    except AttributeError:  # pragma: no cover - very old torch
        return False


def compile_available() -> bool:
    """Whether ``torch.compile`` works on this machine for CPU tensors (probed once, cached).

    The probe compiles and runs a tiny instance-norm forward on a (1, 1, 2, 2) tensor. It fails,
    for example, when no C++ compiler is installed for Inductor's CPU code generation.

    A call during ``torch.jit.trace`` (TorchScript or ONNX export), or while Dynamo traces,
    returns ``False`` without probing or caching: compiling there is refused by PyTorch ("using FX
    to torch.jit.trace a dynamo-optimized function"), and caching that refusal made every later
    compile in the process fall back to eager (found by the skip reasons of the test suite).

    Returns:
        ``True`` when the probe compiled and matched the uncompiled result.
    """
    ok = _PROBE.get("cpu")
    if ok is None and _in_trace():
        return False
    if ok is None:
        with _LOCK:
            ok = _PROBE.get("cpu")
            if ok is None:
                try:
                    probe = torch.compile(_stats, dynamic=False, fullgraph=True)
                    x = torch.arange(4.0).view(1, 1, 2, 2)
                    mean, rstd = probe(x, 1e-5)
                    ok = bool(abs(float(mean) - 1.5) < 1e-6 and abs(float(rstd) - 1.25**-0.5) < 1e-4)
                except Exception as exc:  # noqa: BLE001 - any failure means "do not use compile"
                    ok = False
                    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
                    _PROBE_ERROR["cpu"] = f"{type(exc).__name__}: {first_line}"
                else:
                    if not ok:
                        _PROBE_ERROR["cpu"] = f"the compiled probe gave mean {float(mean)}, rstd {float(rstd)}"
                _PROBE["cpu"] = ok
    return ok


def compile_unavailable_reason() -> str | None:
    """Why :func:`compile_available` is ``False`` (the probe's error, one line), else ``None``.

    Returns:
        ``None`` when compile works (or was not probed yet); otherwise the exception type and
        first message line of the failed probe, or the mismatching probe values.
    """
    return _PROBE_ERROR.get("cpu") if _PROBE.get("cpu") is False else None


# ----------------------------------------------------------------------------------------------
# autograd.Functions
# ----------------------------------------------------------------------------------------------


class SPADENormFunction(torch.autograd.Function):
    """Autograd function of the fused SPADE modulation (composite backend).

    ``apply(x, gamma, beta, eps, negative_slope, compiled)`` with ``x``, ``gamma``, ``beta`` of
    shape (N, C, H, W) (same shape; the dispatcher expands broadcastable maps). ``compiled``
    selects the ``torch.compile``'d bodies (``True``) or the plain ones (``False``: float64
    ``gradcheck`` and fallback). ``negative_slope`` must be ``None`` or >= 0.
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, eps, negative_slope, compiled):  # type: ignore[override]
        fwd = _get("spade_fwd", compiled, negative_slope is not None)
        y, mean, rstd = fwd(*_plain_args(compiled, x, gamma, beta), eps, negative_slope)
        ctx.save_for_backward(x, gamma, mean, rstd, y if negative_slope is not None else None)
        ctx.negative_slope = negative_slope
        ctx.compiled = compiled
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        x, gamma, mean, rstd, y = ctx.saved_tensors
        bwd = _get("spade_bwd", ctx.compiled, ctx.negative_slope is not None)
        dx, dgamma, dbeta = bwd(*_plain_args(ctx.compiled, dy, x, gamma, y, mean, rstd), ctx.negative_slope)
        need = ctx.needs_input_grad
        return (
            dx if need[0] else None,
            dgamma if need[1] else None,
            dbeta if need[2] else None,
            None,
            None,
            None,
        )


class InstanceNormActFunction(torch.autograd.Function):
    """Autograd function of the fused affine instance norm + LeakyReLU (composite backend).

    ``apply(x, weight, bias, eps, negative_slope, compiled)`` with ``x`` of shape (N, C, H, W)
    and ``weight``/``bias`` of shape (C,) or ``None``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, negative_slope, compiled):  # type: ignore[override]
        fwd = _get("inorm_fwd", compiled, negative_slope is not None)
        y, mean, rstd = fwd(*_plain_args(compiled, x, weight, bias), eps, negative_slope)
        ctx.save_for_backward(x, weight, mean, rstd, y if negative_slope is not None else None)
        ctx.negative_slope = negative_slope
        ctx.compiled = compiled
        ctx.bias_dtype = None if bias is None else bias.dtype
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        x, weight, mean, rstd, y = ctx.saved_tensors
        bwd = _get("inorm_bwd", ctx.compiled, ctx.negative_slope is not None)
        dx, dw, db = bwd(*_plain_args(ctx.compiled, dy, x, weight, y, mean, rstd), ctx.negative_slope)
        need = ctx.needs_input_grad
        return (
            dx if need[0] else None,
            dw.to(weight.dtype) if need[1] else None,
            db.to(ctx.bias_dtype) if need[2] else None,
            None,
            None,
            None,
        )
