"""Triton kernels of the fused normalization ops against the eager reference.

On CPU they run through Triton's interpreter on small shapes: ``darlkit.kernels.triton_norm``
builds its kernels at call time (``InterpretedFunction`` for CPU tensors), so the interpreter
does not depend on ``TRITON_INTERPRET`` being set before import; the variable is set per test
with ``monkeypatch`` (restored afterwards, so other test files in the same xdist worker are not
affected) because the dispatcher's ``backend="triton"`` requires it on CPU. CUDA cases run when
a GPU is present.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("triton")

from darlkit.kernels import instance_norm_act, resolve_backend, spade_norm  # noqa: E402
from darlkit.kernels import triton_norm  # noqa: E402
from darlkit.kernels.testing import check_inorm, check_spade, make_spade  # noqa: E402

TS = triton_norm.TritonSPADENormFunction.apply
TI = triton_norm.TritonInstanceNormActFunction.apply

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _interpret(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture
def small_tiles(monkeypatch):
    """Interpreter tiles of 16 elements: many chunks per plane and many channel blocks."""
    monkeypatch.setattr(triton_norm, "_INTERPRET_TILE", 16)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 7, 9), (1, 4, 33, 31), (16, 2, 3, 5)])
@pytest.mark.parametrize("slope", [None, 0.2])
def test_spade_matches_reference(shape, slope):
    check_spade(TS, shape, torch.float32, slope)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 7, 9), (16, 2, 3, 5)])
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_matches_reference(shape, affine):
    check_inorm(TI, shape, torch.float32, 0.2, affine=affine)


def test_one_pixel_plane_outputs_beta():
    x, gamma, beta, _ = make_spade((3, 2, 1, 1))
    torch.testing.assert_close(TS(x, gamma, beta, 1e-5, None), beta)
    b = torch.randn(2)
    y = TI(x, torch.randn(2), b, 1e-5, None)
    torch.testing.assert_close(y, b.view(1, 2, 1, 1).expand(3, 2, 1, 1))


def test_planes_split_across_programs(small_tiles):
    """Planes larger than one block: per-chunk statistics merged by the combine kernel."""
    cfg = triton_norm._config(torch.empty(1, 2, 20, 20), interpret=True)
    assert cfg.K > 1 and cfg.CHUNK < 400
    check_spade(TS, (1, 2, 20, 20), torch.float32, 0.2)
    check_inorm(TI, (1, 2, 20, 20), torch.float32, None)


def test_channels_last_kept_and_correct(small_tiles):
    y = check_spade(TS, (2, 5, 6, 7), torch.float32, 0.2, channels_last=True)
    assert y.is_contiguous(memory_format=torch.channels_last)
    y = check_inorm(TI, (2, 5, 6, 7), torch.float32, 0.2, channels_last=True)
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_zero_variance_and_large_offsets(small_tiles):
    y = check_spade(TS, (2, 3, 8, 8), torch.float32, 0.2, zero_var=True)
    assert torch.isfinite(y).all()
    # float32 inputs at 1e4: a naive E[x^2] - E[x]^2 would lose the unit variance entirely
    check_spade(TS, (1, 2, 24, 24), torch.float32, None, offset=1e4)
    check_inorm(TI, (1, 2, 24, 24), torch.float32, None, offset=1e4, zero_var=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision(dtype):
    check_spade(TS, (2, 3, 9, 7), dtype, 0.2)
    check_inorm(TI, (2, 3, 9, 7), dtype, 0.2)


def test_expanded_maps_and_partial_grads():
    x, _, _, dy = make_spade((2, 3, 5, 4))
    gamma = torch.randn(2, 3, 1, 1, requires_grad=True)
    beta = torch.randn(1, 3, 1, 1)
    y = TS(x.requires_grad_(), gamma.expand_as(x), beta.expand_as(x), 1e-5, 0.2)
    gx, gg = torch.autograd.grad(y, (x, gamma), dy)
    xr = x.detach().double().requires_grad_()
    gr = gamma.detach().double().requires_grad_()
    from darlkit.kernels import spade_norm_reference

    yr = spade_norm_reference(xr, gr, beta.double(), 1e-5, 0.2)
    gxr, ggr = torch.autograd.grad(yr, (xr, gr), dy.double())
    torch.testing.assert_close(y.double(), yr, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gx.double(), gxr, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gg.double(), ggr, rtol=1e-4, atol=1e-4)


@settings(max_examples=6, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 4),
    h=st.integers(1, 10),
    w=st.integers(1, 10),
    channels_last=st.booleans(),
)
def test_hypothesis_shapes(n, c, h, w, channels_last):
    check_spade(TS, (n, c, h, w), torch.float32, 0.2, channels_last=channels_last)


def test_dispatch_triton_backend_on_cpu():
    x, gamma, beta, _ = make_spade((1, 2, 4, 4))
    assert resolve_backend("triton", x) == "triton"
    assert resolve_backend("auto", x) == "eager"  # auto never picks the CPU interpreter
    y = spade_norm(x, gamma, beta, negative_slope=0.2, backend="triton")
    from darlkit.kernels import spade_norm_reference

    torch.testing.assert_close(y, spade_norm_reference(x, gamma, beta, 1e-5, 0.2), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="float32/bfloat16/float16"):
        spade_norm(x.double(), gamma.double(), beta.double(), backend="triton")
    with pytest.raises(ValueError, match="negative_slope < 0"):
        instance_norm_act(x, None, None, negative_slope=-0.5, backend="triton")


# --------------------------------------------------------------------------------------------
# CUDA (real Triton compilation)
# --------------------------------------------------------------------------------------------


@cuda
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 7, 9), (1, 64, 256, 256), (16, 8, 33, 31)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_spade(shape, dtype, channels_last):
    y = check_spade(TS, shape, dtype, 0.2, channels_last=channels_last, device="cuda")
    if channels_last and shape[1] > 1 and shape[2] * shape[3] > 1:
        assert y.is_contiguous(memory_format=torch.channels_last)


@cuda
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 64, 256, 256)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_instance_norm(shape, dtype, channels_last):
    check_inorm(TI, shape, dtype, 0.2, channels_last=channels_last, device="cuda")


@cuda
def test_cuda_large_offsets_and_zero_variance():
    check_spade(TS, (2, 8, 64, 64), torch.float32, None, offset=1e4, zero_var=True, device="cuda")


@cuda
def test_cuda_auto_picks_triton():
    x = torch.randn(1, 2, 4, 4, device="cuda")
    assert resolve_backend("auto", x) == "triton"


# --------------------------------------------------------------------------------------------
# Ahead-of-time compilation for a CUDA target (no GPU needed): catches code that Triton's
# interpreter accepts but its compiler rejects.
# --------------------------------------------------------------------------------------------

AOT_CASES = [
    ("stats", {"SINGLE": False, "BLOCK_C": 1, "BLOCK_P": 2048}, {"X": "*bf16"}),
    ("combine", {"BLOCK_R": 64, "BLOCK_K": 64}, {}),
    (
        "fwd_apply",
        {"SPADE": True, "HAS_W": True, "HAS_B": True, "HAS_ACT": True, "BLOCK_C": 1, "BLOCK_P": 2048},
        {"X": "*bf16", "G": "*bf16", "B": "*bf16", "Y": "*bf16"},
    ),
    ("bwd_reduce", {"SPADE": False, "HAS_ACT": True, "BLOCK_C": 64, "BLOCK_P": 32}, {"X": "*fp16"}),
    (
        "bwd_apply",
        {"SPADE": True, "WRITE_GB": True, "HAS_W": True, "HAS_ACT": True, "BLOCK_C": 1, "BLOCK_P": 1024},
        {},
    ),
]


_AOT_SCRIPT = r"""
import json, sys
from triton.backends.compiler import GPUTarget
from triton.compiler.compiler import ASTSource
import triton
from darlkit.kernels import triton_kernels

name, consts, ptr_types = json.loads(sys.argv[1])
fn = getattr(triton_kernels.build_kernels(False), name)
sig = {}
for arg in fn.arg_names:
    if arg in consts:
        sig[arg] = "constexpr"
    elif arg[0].isupper() and arg not in ("C", "HW", "CHUNK", "K", "NC"):  # pointers
        sig[arg] = ptr_types.get(arg, "*fp32")
    elif arg in ("eps", "slope"):
        sig[arg] = "fp32"
    else:
        sig[arg] = "i32"
try:
    compiled = triton.compile(
        ASTSource(fn, sig, constexprs=consts), target=GPUTarget("cuda", 90, 32), options={"num_warps": 8}
    )
except (FileNotFoundError, RuntimeError) as exc:
    if "ptxas" in str(exc).lower():
        print(json.dumps({"skip": f"no ptxas: {exc}"}))
        sys.exit(0)
    raise
print(json.dumps({"ptx": compiled.asm["ptx"], "fn": fn.__name__}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name, consts, ptr_types", AOT_CASES, ids=[c[0] for c in AOT_CASES])
def test_kernels_compile_for_cuda_target(name, consts, ptr_types):
    # A fresh interpreter without TRITON_INTERPRET: with it set at import time, triton.jit turns
    # its own helpers (tl.standard's combine functions) into interpreted functions that the
    # compiler cannot lower, whatever this test does afterwards.
    try:
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler.compiler import ASTSource  # noqa: F401
    except ImportError as exc:  # pragma: no cover - other triton layouts
        pytest.skip(f"triton AOT API not available: {exc}")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", _AOT_SCRIPT, json.dumps([name, consts, ptr_types])],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in result:  # pragma: no cover - no bundled ptxas
        pytest.skip(result["skip"])
    ptx = result["ptx"]
    assert f".entry _{name}_kernel" in ptx or f".entry {result['fn']}" in ptx
    assert "ld.global" in ptx and "st.global" in ptx
