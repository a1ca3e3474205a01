"""Test helpers: compare a fused normalization op (output and every gradient) with the reference.

The ground truth is the eager reference evaluated in float64 on the same input values (so the
check measures the fused op's own error, not the rounding of an eager low-precision run), with
per-dtype tolerances in ``TOL``. Used by the test suite on CPU (compile backend, Triton
interpreter) and CUDA.
"""

from __future__ import annotations

import torch

from darlkit.kernels.reference import instance_norm_act_reference, spade_norm_reference

__all__ = ["TOL", "assert_close", "make_spade", "dx_scale", "reference_grads", "check_spade", "check_inorm"]

TOL = {  # (rtol, atol as a fraction of the reference's max magnitude)
    torch.float64: (1e-9, 1e-9),
    torch.float32: (1e-4, 2e-5),
    torch.bfloat16: (2e-2, 1e-2),
    torch.float16: (4e-3, 2e-3),
}
"""Per-dtype ``(rtol, atol)``; ``atol`` is a fraction of the reference's largest magnitude."""


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    dtype: torch.dtype,
    what: str,
    offset: float = 0.0,
    scale: float = 1.0,
) -> None:
    """Compare with ``dtype``'s tolerance; ``offset`` widens ``atol`` by the rounding of inputs
    near ``offset`` (a float32 ``x`` at 1e4 is only known to ~1e-3, in any implementation), and
    ``scale`` is the magnitude of the terms that cancel in ``expected`` (for ``dx``)."""
    rtol, atol = TOL[dtype]
    expected = expected.detach().to(torch.float64)
    scale = max(float(expected.abs().max()), 1.0, scale)
    atol = atol * scale + 8 * abs(offset) * torch.finfo(dtype).eps * scale
    torch.testing.assert_close(
        actual.detach().to(torch.float64), expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}"
    )


def make_spade(
    shape, dtype=torch.float32, offset=0.0, scale=1.0, channels_last=False, zero_var=False, device="cpu"
):
    """Random ``x``, ``gamma``, ``beta``, ``dy`` of ``shape`` (drawn in float64, cast to ``dtype``).

    ``x`` is ``randn * scale + offset``; ``zero_var`` makes channel 0 constant (zero variance);
    ``channels_last`` converts all four tensors to that memory format.
    """
    x = torch.randn(shape, dtype=torch.float64) * scale + offset
    if zero_var:
        x[:, 0] = offset + 3.0
    gamma = torch.randn(shape, dtype=torch.float64) * 0.5
    beta = torch.randn(shape, dtype=torch.float64)
    dy = torch.randn(shape, dtype=torch.float64)
    ts = [t.to(device=device, dtype=dtype) for t in (x, gamma, beta, dy)]
    if channels_last:
        ts = [t.contiguous(memory_format=torch.channels_last) for t in ts]
    return ts


def dx_scale(x: torch.Tensor, dy: torch.Tensor, s: torch.Tensor | float = 1.0) -> float:
    """``max(rstd) * max|dy * s|``: size of the terms whose difference is ``dx``."""
    x = x.detach().to(torch.float64)
    rstd = torch.rsqrt(x.var(dim=(2, 3), unbiased=False) + 1e-5).max()
    return float(rstd * (dy.to(torch.float64) * s).abs().max())


def reference_grads(fn, inputs, dy, *rest):
    """Output and gradients of ``fn`` in float64 on the values of ``inputs``.

    Inputs are made contiguous: eager CPU ``instance_norm``'s backward in torch 2.13 returns a
    wrong ``dx`` for some channels_last gradients of ambiguous-stride shapes such as
    (1, 2, 1, 2) (it differs from the contiguous result and from finite differences).
    """
    ref_in = [t.detach().to(torch.float64).contiguous().requires_grad_() for t in inputs]
    out = fn(*ref_in, *rest)
    grads = torch.autograd.grad(out, ref_in, dy.to(torch.float64).contiguous())
    return out, grads


def check_spade(apply, shape, dtype, slope, **make_kw):
    """Check ``apply(x, gamma, beta, eps, slope)`` (output and all gradients) against the reference.

    Returns the output of ``apply``. ``make_kw`` goes to ``make_spade``.
    """
    x, gamma, beta, dy = make_spade(shape, dtype, **make_kw)
    inputs = [t.clone().requires_grad_() for t in (x, gamma, beta)]
    y = apply(*inputs, 1e-5, slope)
    grads = torch.autograd.grad(y, inputs, dy)
    y_ref, grads_ref = reference_grads(spade_norm_reference, (x, gamma, beta), dy, 1e-5, slope)
    assert y.shape == x.shape and y.dtype == dtype
    off = make_kw.get("offset", 0.0)
    assert_close(y, y_ref, dtype, "y", off)
    sc = dx_scale(x, dy, 1 + gamma.to(torch.float64))
    for name, g, gr in zip(("dx", "dgamma", "dbeta"), grads, grads_ref):
        assert g.dtype == dtype
        assert_close(g, gr, dtype, name, off, sc if name == "dx" else 1.0)
    return y


def check_inorm(apply, shape, dtype, slope, affine=True, **make_kw):
    """Check ``apply(x, weight, bias, eps, slope)`` (output and all gradients) against the reference.

    ``weight``/``bias`` are float32 parameters of shape (C,) (``None`` when not ``affine``).
    Returns the output of ``apply``.
    """
    x, _, _, dy = make_spade(shape, dtype, **make_kw)
    c = shape[1]
    w = (torch.rand(c, dtype=torch.float64) + 0.5).to(x.device) if affine else None
    b = torch.randn(c, dtype=torch.float64).to(x.device) if affine else None
    inputs = [x.clone().requires_grad_()]
    if affine:
        inputs += [w.float().requires_grad_(), b.float().requires_grad_()]
        y = apply(inputs[0], inputs[1], inputs[2], 1e-5, slope)
        ref_fn = instance_norm_act_reference
        ref_inputs = (x, w, b)
    else:
        y = apply(inputs[0], None, None, 1e-5, slope)
        ref_fn = lambda xx, eps, s: instance_norm_act_reference(xx, None, None, eps, s)  # noqa: E731
        ref_inputs = (x,)
    grads = torch.autograd.grad(y, inputs, dy)
    y_ref, grads_ref = reference_grads(ref_fn, ref_inputs, dy, 1e-5, slope)
    assert y.shape == x.shape and y.dtype == dtype
    off = make_kw.get("offset", 0.0)
    assert_close(y, y_ref, dtype, "y", off)
    sc = dx_scale(x, dy, w.abs().max() if affine else 1.0)
    for name, g, gr in zip(("dx", "dweight", "dbias"), grads, grads_ref):
        # dweight/dbias are float32 parameters: compare at float32 accuracy
        dt = dtype if name == "dx" else torch.float32
        assert_close(g, gr, dt, name, off, sc if name == "dx" else 1.0)
    return y
