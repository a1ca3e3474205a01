"""Fused normalization ops: dispatch, validation, the hand-written backward and the compile backend.

Ground truth is the eager reference (``darlkit.kernels.reference``) evaluated in float64 on the
same input values; fused results are compared with per-dtype tolerances. The hand-written
backward bodies run uncompiled (``compiled=False``) for the many-shape and float64 gradcheck
tests; ``torch.compile`` itself is exercised on a few small cases only (each compile costs
seconds on a 2-core CI machine).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from darlkit import kernels
from darlkit.kernels import (
    BACKENDS,
    FusedInstanceNormAct,
    FusedSPADENorm,
    InstanceNormActFunction,
    SPADENormFunction,
    instance_norm_act,
    instance_norm_act_reference,
    resolve_backend,
    spade_norm,
    spade_norm_reference,
)
from darlkit.kernels import dispatch
from darlkit.kernels.testing import assert_close, check_inorm, check_spade, make_spade, reference_grads

def spade_body(x, gamma, beta, eps, slope):
    return SPADENormFunction.apply(x, gamma, beta, eps, slope, False)


def inorm_body(x, w, b, eps, slope):
    return InstanceNormActFunction.apply(x, w, b, eps, slope, False)


# --------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------


def test_reference_one_pixel_planes_give_act_of_beta():
    x = torch.randn(3, 4, 1, 1, requires_grad=True)
    beta = torch.randn(3, 4, 1, 1)
    y = spade_norm_reference(x, torch.randn(3, 4, 1, 1), beta, 1e-5, 0.2)
    torch.testing.assert_close(y, torch.nn.functional.leaky_relu(beta, 0.2))
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert torch.count_nonzero(gx) == 0
    b = torch.randn(4)
    y2 = instance_norm_act_reference(x, torch.randn(4), b, 1e-5, None)
    torch.testing.assert_close(y2, b.view(1, 4, 1, 1).expand(3, 4, 1, 1))


def test_reference_matches_formula():
    x, gamma, beta, _ = make_spade((2, 3, 5, 4), torch.float64)
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    z = (x - mean) / torch.sqrt(var + 1e-5) * (1 + gamma) + beta
    torch.testing.assert_close(spade_norm_reference(x, gamma, beta, 1e-5, 0.2), torch.where(z > 0, z, 0.2 * z))


# --------------------------------------------------------------------------------------------
# Hand-written backward (uncompiled bodies of the compile backend)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("slope", [None, 0.2])
def test_spade_function_gradcheck_float64(slope):
    x, gamma, beta, _ = make_spade((2, 3, 3, 4), torch.float64)
    inputs = tuple(t.requires_grad_() for t in (x, gamma, beta))
    assert torch.autograd.gradcheck(lambda a, b, c: spade_body(a, b, c, 1e-5, slope), inputs)


@pytest.mark.parametrize("slope", [None, 0.2])
def test_instance_norm_function_gradcheck_float64(slope):
    x = torch.randn(2, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(3, dtype=torch.float64) + 0.5).requires_grad_()
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, ww, bb: inorm_body(a, ww, bb, 1e-5, slope), (x, w, b))


SHAPES = [(1, 1, 1, 1), (2, 3, 7, 9), (1, 4, 33, 31), (16, 2, 3, 5), (1, 2, 64, 80)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("slope", [None, 0.2])
def test_spade_body_matches_reference(shape, slope):
    check_spade(spade_body, shape, torch.float32, slope)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_body_matches_reference(shape, affine):
    check_inorm(inorm_body, shape, torch.float32, 0.2, affine=affine)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_bodies_low_precision(dtype):
    check_spade(spade_body, (2, 3, 9, 7), dtype, 0.2)
    check_inorm(inorm_body, (2, 3, 9, 7), dtype, 0.2)


def test_bodies_zero_variance_and_large_offsets():
    y = check_spade(spade_body, (2, 3, 8, 8), torch.float32, 0.2, zero_var=True)
    assert torch.isfinite(y).all()
    # no activation here: a 1e-3 error of x_hat (float32 inputs at 1e4) may flip the LeakyReLU
    # mask of pre-activations within 1e-3 of 0, a legitimate factor-5 gradient difference
    check_spade(spade_body, (2, 3, 16, 16), torch.float32, None, offset=1e4)
    check_inorm(inorm_body, (2, 3, 16, 16), torch.float32, None, offset=1e4, zero_var=True)


def test_bodies_channels_last_kept():
    y = check_spade(spade_body, (2, 5, 6, 7), torch.float32, 0.2, channels_last=True)
    assert y.is_contiguous(memory_format=torch.channels_last)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 5),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    act=st.booleans(),
    channels_last=st.booleans(),
)
def test_bodies_hypothesis_shapes(n, c, h, w, act, channels_last):
    slope = 0.2 if act else None
    check_spade(spade_body, (n, c, h, w), torch.float32, slope, channels_last=channels_last)
    check_inorm(inorm_body, (n, c, h, w), torch.float32, slope, channels_last=channels_last)


def test_functions_skip_unneeded_grads():
    x, gamma, beta, dy = make_spade((1, 2, 4, 4))
    x.requires_grad_()
    y = spade_body(x, gamma, beta, 1e-5, 0.2)
    (gx,) = torch.autograd.grad(y, x, dy)
    y_ref, (gx_ref, _, _) = reference_grads(spade_norm_reference, (x, gamma, beta), dy, 1e-5, 0.2)
    assert_close(gx, gx_ref, torch.float32, "dx")


# --------------------------------------------------------------------------------------------
# Compile backend (few, small cases: each new graph compiles for seconds)
# --------------------------------------------------------------------------------------------

def needs_compile() -> None:
    if not kernels.compile_available():  # probed lazily: the probe itself compiles
        pytest.skip(f"torch.compile does not work on this machine ({kernels.compile_unavailable_reason()})")


@pytest.mark.slow
def test_compile_backend_spade_matches_reference():
    needs_compile()
    def run(*a):
        return spade_norm(a[0], a[1], a[2], eps=a[3], negative_slope=a[4], backend="compile")

    # one graph only (each compile costs seconds on CI); channels_last through the compile
    # backend is covered by tests/test_kernels_integration.py (SPADEResBlock)
    y = check_spade(run, (2, 3, 7, 9), torch.float32, 0.2)
    assert y.is_contiguous()


@pytest.mark.slow
def test_compile_backend_instance_norm_matches_reference():
    needs_compile()
    def run(x, w, b, eps, slope):
        return instance_norm_act(x, w, b, eps=eps, negative_slope=slope, backend="compile")

    check_inorm(run, (2, 3, 7, 9), torch.float32, 0.2, zero_var=True)


# --------------------------------------------------------------------------------------------
# Dispatch and validation
# --------------------------------------------------------------------------------------------


def test_backends_documented():
    assert BACKENDS == ("auto", "eager", "compile", "triton")


def test_auto_resolution_on_cpu(monkeypatch):
    small = torch.randn(1, 2, 4, 4)
    assert resolve_backend("auto", small) == "eager"
    big = torch.empty(1, 1, 256, 256)
    monkeypatch.setattr(kernels.composite, "compile_available", lambda: True)
    assert resolve_backend("auto", big, negative_slope=0.2) == "compile"
    assert resolve_backend("auto", big, negative_slope=-0.1) == "eager"
    monkeypatch.setattr(kernels.composite, "compile_available", lambda: False)
    assert resolve_backend("auto", big) == "eager"
    with pytest.raises(ValueError, match="probe compile failed"):
        resolve_backend("compile", big)
    monkeypatch.setattr(kernels.composite, "compile_available", lambda: True)
    monkeypatch.setattr(dispatch, "_is_compiling", lambda: True)
    assert resolve_backend("auto", big) == "eager"


def test_a_failed_compile_probe_says_why(monkeypatch):
    # a fresh probe cache, restored afterwards (monkeypatch.setattr on the module's dicts)
    monkeypatch.setattr(kernels.composite, "_PROBE", {})
    monkeypatch.setattr(kernels.composite, "_PROBE_ERROR", {})
    assert kernels.compile_unavailable_reason() is None  # not probed yet

    def broken(*args, **kwargs):
        raise RuntimeError("InductorError: no working C++ compiler\n(long log)")

    monkeypatch.setattr(torch, "compile", broken)
    assert kernels.compile_available() is False
    assert kernels.compile_unavailable_reason() == "RuntimeError: InductorError: no working C++ compiler"


def test_auto_inside_outer_compile_traces_plain_ops():
    x, gamma, beta, _ = make_spade((1, 2, 4, 4))
    fn = torch.compile(lambda a, g, b: spade_norm(a, g, b, negative_slope=0.2), backend="eager")
    torch.testing.assert_close(fn(x, gamma, beta), spade_norm_reference(x, gamma, beta, 1e-5, 0.2))


def test_explicit_compile_backend_inside_outer_compile():
    """Under an enclosing torch.compile the autograd.Function runs its uncompiled bodies."""
    x, gamma, beta, dy = make_spade((1, 2, 4, 4))
    x.requires_grad_()

    def f(a):
        return spade_norm(a, gamma, beta, negative_slope=0.2, backend="compile")

    y = torch.compile(f, backend="eager")(x)
    (gx,) = torch.autograd.grad(y, x, dy)
    y_ref, (gx_ref, _, _) = reference_grads(spade_norm_reference, (x, gamma, beta), dy, 1e-5, 0.2)
    assert_close(y, y_ref, torch.float32, "y")
    assert_close(gx, gx_ref, torch.float32, "dx", scale=1e3)


def test_triton_backend_needs_cuda_or_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="triton"):
        spade_norm(x, x, x, backend="triton")
    with pytest.raises(ValueError, match="triton"):
        resolve_backend("triton", x.double())


def test_eager_backend_is_reference():
    x, gamma, beta, _ = make_spade((2, 3, 5, 5))
    torch.testing.assert_close(
        spade_norm(x, gamma, beta, negative_slope=0.2, backend="eager"),
        spade_norm_reference(x, gamma, beta, 1e-5, 0.2),
    )


def test_broadcast_maps_get_reduced_gradients():
    x, _, _, dy = make_spade((2, 3, 4, 5))
    gamma = torch.randn(2, 3, 1, 1, requires_grad=True)
    beta = torch.randn(1, 3, 1, 1, requires_grad=True)
    y = spade_norm(x, gamma, beta, negative_slope=0.2, backend="eager")
    g_ref = torch.autograd.grad(y, (gamma, beta), dy)
    y2 = SPADENormFunction.apply(x, gamma.expand_as(x), beta.expand_as(x), 1e-5, 0.2, False)
    g2 = torch.autograd.grad(y2, (gamma, beta), dy)
    for a, b in zip(g2, g_ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"backend": "cuda"}, ValueError, "backend must be one of"),
        ({"eps": -1.0}, ValueError, "eps"),
        ({"eps": float("nan")}, ValueError, "eps"),
        ({"negative_slope": "0.2"}, ValueError, "negative_slope"),
    ],
)
def test_spade_norm_rejects_bad_options(kwargs, exc, match):
    x = torch.randn(1, 2, 3, 3)
    with pytest.raises(exc, match=match):
        spade_norm(x, x, x, **kwargs)


def test_bad_tensors_raise():
    x = torch.randn(1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\)"):
        spade_norm(x[0], x[0], x[0])
    with pytest.raises(TypeError, match="x must be a floating"):
        spade_norm(x.long(), x, x)
    with pytest.raises(ValueError, match="gamma must have shape"):
        spade_norm(x, torch.randn(1, 3, 3, 3), x)
    with pytest.raises(TypeError, match="beta must be a torch.Tensor"):
        spade_norm(x, x, 1.0)
    with pytest.raises(ValueError, match=r"weight must have shape \(C,\)"):
        instance_norm_act(x, torch.ones(3), None)
    with pytest.raises(TypeError, match="bias must be a floating"):
        instance_norm_act(x, None, torch.ones(2, dtype=torch.long))
    with pytest.raises(ValueError, match="x must not be empty"):
        instance_norm_act(torch.empty(0, 2, 3, 3), None, None)


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


def test_fused_modules_match_reference_and_train():
    x, gamma, beta, _ = make_spade((2, 3, 6, 6))
    mod = FusedSPADENorm(negative_slope=0.2, backend="eager")
    torch.testing.assert_close(mod(x, gamma, beta), spade_norm_reference(x, gamma, beta, 1e-5, 0.2))
    assert "negative_slope=0.2" in repr(mod)
    inorm = FusedInstanceNormAct(3, negative_slope=0.2)
    assert inorm.weight.shape == (3,) and torch.all(inorm.weight == 1) and torch.all(inorm.bias == 0)
    y = inorm(x)
    torch.testing.assert_close(y, torch.nn.functional.leaky_relu(torch.nn.functional.instance_norm(x), 0.2))
    y.square().sum().backward()
    assert inorm.weight.grad is not None and torch.isfinite(inorm.weight.grad).all()
    assert FusedInstanceNormAct(3, affine=False).weight is None
    with pytest.raises(ValueError, match="num_features"):
        FusedInstanceNormAct(0)
    with pytest.raises(ValueError, match="backend"):
        FusedSPADENorm(backend="fast")


def test_auto_uses_eager_under_a_dispatch_mode() -> None:
    """Compiled kernels cannot run inside FlopCounterMode/fake-tensor modes: "auto" avoids them."""
    from torch.utils.flop_counter import FlopCounterMode

    from darlkit.kernels import AUTO_COMPILE_MIN_NUMEL, resolve_backend

    side = int(AUTO_COMPILE_MIN_NUMEL**0.5) + 1
    x = torch.randn(1, 1, side, side)
    with FlopCounterMode(display=False):
        assert resolve_backend("auto", x, x, x) == "eager"


@pytest.mark.slow
def test_compile_backend_survives_the_recompile_limit() -> None:
    """More variants than dynamo's recompile limit must not fail (they run uncompiled, correctly)."""
    import torch._dynamo

    from darlkit.kernels import compile_available, instance_norm_act, instance_norm_act_reference

    if not compile_available():
        pytest.skip(f"torch.compile does not work here ({kernels.compile_unavailable_reason()})")
    torch._dynamo.reset()
    with torch._dynamo.config.patch(recompile_limit=2):
        for channels, slope, channels_last in [(3, None, False), (5, 0.2, True), (7, 0.1, False), (4, 0.2, True)]:
            x = torch.randn(2, channels, 6, 5)
            if channels_last:
                x = x.to(memory_format=torch.channels_last)
            w, b = torch.randn(channels), torch.randn(channels)
            got = instance_norm_act(x, w, b, negative_slope=slope, backend="compile")
            want = instance_norm_act_reference(x, w, b, negative_slope=slope)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


def test_the_compile_probe_is_not_run_or_cached_inside_jit_trace(monkeypatch):
    monkeypatch.setattr(kernels.composite, "_PROBE", {})
    monkeypatch.setattr(kernels.composite, "_PROBE_ERROR", {})
    seen = []

    def fn(x):
        seen.append(kernels.compile_available())
        return x * 2

    torch.jit.trace(fn, torch.ones(2), check_trace=False)
    assert seen == [False] and kernels.composite._PROBE == {}  # refused while tracing, nothing cached


def test_compile_backend_under_jit_trace_traces_the_plain_bodies(monkeypatch):
    # TorchScript / ONNX export trace the networks: a compiled kernel inside torch.jit.trace is
    # refused by PyTorch, so the dispatcher must give the tracer the plain (eager) bodies
    monkeypatch.setattr(kernels.composite, "compile_available", lambda: True)
    big = torch.randn(1, 1, 256, 256)
    assert resolve_backend("auto", big, negative_slope=0.2) == "compile"
    seen = []

    def fn(x):
        seen.append(resolve_backend("auto", x, negative_slope=0.2))
        return kernels.instance_norm_act(x, None, None, backend="compile", negative_slope=0.2)

    traced = torch.jit.trace(fn, big, check_trace=False)
    assert seen == ["eager"]
    ref = kernels.instance_norm_act_reference(big, None, None, negative_slope=0.2)
    torch.testing.assert_close(traced(big), ref, atol=1e-5, rtol=1e-5)
