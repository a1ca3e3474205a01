"""SwitchableSPADE / SPADEResBlock give the same outputs and gradients on every kernel backend."""

from __future__ import annotations

import copy

import pytest
import torch

from darlkit.kernels import compile_available
from darlkit.layers import SPADEResBlock, SwitchableSPADE


def _grads(module, x, segmap, dy):
    x = x.detach().clone().requires_grad_()
    y = module(x, segmap)
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(y, [x, *params], dy, allow_unused=True)
    return y, grads


def _assert_same(module, backend, x, segmap, rtol=1e-4, atol=1e-4):
    ref = copy.deepcopy(module)
    ref.apply(lambda m: setattr(m, "backend", "eager") if hasattr(m, "backend") else None)
    fused = copy.deepcopy(module)
    fused.apply(lambda m: setattr(m, "backend", backend) if hasattr(m, "backend") else None)
    torch.manual_seed(1)
    y_ref = ref(x, segmap)
    dy = torch.randn_like(y_ref)
    y_ref, g_ref = _grads(ref, x, segmap, dy)
    y, g = _grads(fused, x, segmap, dy)
    torch.testing.assert_close(y, y_ref, rtol=rtol, atol=atol)
    assert y.is_contiguous(memory_format=torch.channels_last) == y_ref.is_contiguous(
        memory_format=torch.channels_last
    )
    names = ["x"] + [n for n, p in module.named_parameters() if p.requires_grad]
    for name, a, b in zip(names, g, g_ref):
        if b is None:
            assert a is None, name
            continue
        scale = max(1.0, float(b.abs().max()))
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol * scale, msg=lambda m: f"{name}: {m}")


def _layer():
    return SwitchableSPADE(8, label_nc=2, hidden_channels=16, activation="leaky_relu")


def _inputs(channels_last=False):
    x = torch.randn(2, 8, 12, 10)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    segmap = torch.randint(0, 2, (2, 24, 20))
    return x, segmap


def _need_compile():
    if not compile_available():
        from darlkit.kernels import compile_unavailable_reason

        pytest.skip(f"torch.compile does not work on this machine ({compile_unavailable_reason()})")


@pytest.mark.slow
def test_switchable_spade_compile_matches_eager_unmasked():
    _need_compile()
    x, _ = _inputs()
    _assert_same(_layer(), "compile", x, None)


@pytest.mark.slow
def test_spade_resblock_compile_matches_eager_channels_last():
    # the masked path: both S-SPADE layers of the block run the compiled spade_norm
    _need_compile()
    block = SPADEResBlock(8, 4, label_nc=2, spectral_norm=False, hidden_channels=16)
    x, segmap = _inputs(channels_last=True)
    _assert_same(block, "compile", x, segmap)


@pytest.mark.parametrize("masked", [True, False])
def test_switchable_spade_triton_interpreter_matches_eager(masked, monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x, segmap = _inputs()
    _assert_same(_layer(), "triton", x, segmap if masked else None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_spade_resblock_triton_cuda_matches_eager():
    pytest.importorskip("triton")
    block = SPADEResBlock(16, 8, label_nc=2, spectral_norm=False, hidden_channels=16).cuda()
    x = torch.randn(2, 16, 32, 32, device="cuda")
    segmap = torch.randint(0, 2, (2, 64, 64), device="cuda")
    _assert_same(block, "triton", x, segmap)
