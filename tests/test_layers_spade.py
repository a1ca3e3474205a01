"""Tests of darlkit.layers: SwitchableSPADE, prepare_segmap, SPADEResBlock and the registry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import shared_path
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from darlkit import layers as L
from darlkit.layers import (
    SPADEResBlock,
    SwitchableSPADE,
    create_layer,
    default_num_groups,
    list_layers,
    prepare_segmap,
    register_layer,
)

RELEASED = Path(__file__).resolve().parents[2] / "shared" / "released_state_dicts.txt"


def _randomize(module: nn.Module) -> nn.Module:
    """Give every parameter (affine included) non-trivial values, deterministically."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return module


def _one_hot(labels: torch.Tensor, n: int) -> torch.Tensor:
    return F.one_hot(labels.long(), n).permute(0, 3, 1, 2).float()


def _manual_modulation(layer: SwitchableSPADE, s: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
    """gamma, beta computed by hand from the layer's own conv weights."""
    s = F.interpolate(s, size=size, mode="nearest")
    pad = layer.kernel_size // 2
    conv = layer.mlp_shared[0]
    actv = torch.relu(F.conv2d(s, conv.weight, conv.bias, padding=pad))
    gamma = F.conv2d(actv, layer.mlp_gamma.weight, layer.mlp_gamma.bias, padding=pad)
    beta = F.conv2d(actv, layer.mlp_beta.weight, layer.mlp_beta.bias, padding=pad)
    return gamma, beta


# --------------------------------------------------------------------------------------------
# SwitchableSPADE: switch semantics
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", [None, "leaky_relu"])
def test_no_segmap_is_affine_instance_norm(activation):
    layer = _randomize(SwitchableSPADE(6, 2, hidden_channels=8, activation=activation, negative_slope=0.3))
    x = torch.randn(3, 6, 7, 5) * 3 + 1
    expected = F.instance_norm(x, weight=layer.param_norm.weight, bias=layer.param_norm.bias, eps=1e-5)
    if activation:
        expected = F.leaky_relu(expected, 0.3)
    out = layer(x)
    assert torch.equal(out, expected)
    # and it equals nn.InstanceNorm2d(affine=True) holding the same affine
    ref = nn.InstanceNorm2d(6, affine=True)
    ref.load_state_dict(layer.param_norm.state_dict())
    if activation is None:
        torch.testing.assert_close(out, ref(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kernel_size,hidden", [(3, 16), (1, 4), (5, 8)])
@pytest.mark.parametrize("activation", [None, "leaky_relu"])
def test_with_segmap_matches_hand_formula(kernel_size, hidden, activation):
    layer = _randomize(
        SwitchableSPADE(5, 3, hidden_channels=hidden, kernel_size=kernel_size, activation=activation)
    )
    x = torch.randn(2, 5, 8, 6) * 2 - 1
    labels = torch.randint(0, 3, (2, 16, 12))
    gamma, beta = _manual_modulation(layer, _one_hot(labels, 3), (8, 6))
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
    expected = (x - mean) / torch.sqrt(var + 1e-5) * (1 + gamma) + beta
    if activation:
        expected = F.leaky_relu(expected, 0.2)
    torch.testing.assert_close(layer(x, labels), expected, rtol=1e-5, atol=1e-5)


def test_group_norm_paths():
    layer = _randomize(SwitchableSPADE(8, 2, hidden_channels=4, param_free_norm="group", num_groups=4))
    x = torch.randn(2, 8, 5, 5)
    ref = nn.GroupNorm(4, 8)
    ref.load_state_dict(layer.param_norm.state_dict())
    torch.testing.assert_close(layer(x), ref(x), rtol=0, atol=1e-6)
    labels = torch.randint(0, 2, (2, 5, 5))
    gamma, beta = _manual_modulation(layer, _one_hot(labels, 2), (5, 5))
    expected = F.group_norm(x, 4, eps=1e-5) * (1 + gamma) + beta
    torch.testing.assert_close(layer(x, labels), expected, rtol=1e-5, atol=1e-5)


def test_default_num_groups_rule():
    assert [default_num_groups(c) for c in (256, 64, 48, 7, 34, 1)] == [32, 32, 24, 7, 17, 1]
    assert SwitchableSPADE(48, 2, param_free_norm="group").num_groups == 24


def test_batch_norm_paths_track_separate_running_stats():
    layer = _randomize(SwitchableSPADE(4, 2, hidden_channels=4, param_free_norm="batch"))
    ref = nn.BatchNorm2d(4)
    ref.load_state_dict(layer.param_norm.state_dict())
    x = torch.randn(3, 4, 5, 5) * 2 + 0.5
    # training mode, no segmap: identical to nn.BatchNorm2d, including the running stats update
    torch.testing.assert_close(layer(x), ref(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(layer.param_norm.running_mean, ref.running_mean)
    torch.testing.assert_close(layer.param_norm.running_var, ref.running_var)
    assert int(layer.param_norm.num_batches_tracked) == 1
    assert torch.equal(layer.param_free_norm.running_mean, torch.zeros(4))
    # with a segmap: parameter-free batch norm, only the masked path's stats move
    labels = torch.randint(0, 2, (3, 5, 5))
    before = layer.param_norm.running_mean.clone()
    gamma, beta = _manual_modulation(layer, _one_hot(labels, 2), (5, 5))
    expected = F.batch_norm(x, None, None, training=True, eps=1e-5) * (1 + gamma) + beta
    torch.testing.assert_close(layer(x, labels), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(layer.param_norm.running_mean, before)
    torch.testing.assert_close(layer.param_free_norm.running_mean, ref.running_mean)
    # eval mode uses the running statistics
    layer.eval()
    ref.eval()
    torch.testing.assert_close(layer(x), ref(x), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["instance", "group", "batch"])
@pytest.mark.parametrize("with_segmap", [False, True])
def test_gradcheck_float64(norm, with_segmap):
    layer = SwitchableSPADE(
        2, 2, hidden_channels=3, param_free_norm=norm, activation="leaky_relu", negative_slope=0.3
    )
    layer = _randomize(layer.double())
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in layer.parameters())
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    s = torch.rand(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)

    def fn(x, s, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x, s if with_segmap else None))

    assert torch.autograd.gradcheck(fn, (x, s, *params), eps=1e-6, atol=1e-5, check_undefined_grad=False)


@pytest.mark.parametrize("norm", ["instance", "group", "batch"])
def test_gradients_reach_the_active_branch_only(norm):
    layer = _randomize(SwitchableSPADE(3, 2, hidden_channels=4, param_free_norm=norm))
    x = torch.randn(2, 3, 4, 4)
    mlp = [p for n, p in layer.named_parameters() if n.startswith("mlp_")]
    affine = list(layer.param_norm.parameters())
    layer(x).square().sum().backward()
    assert all(p.grad is None for p in mlp)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in affine)
    layer.zero_grad(set_to_none=True)
    layer(x, torch.randint(0, 2, (2, 4, 4))).square().sum().backward()
    assert all(p.grad is None for p in affine)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mlp)


# --------------------------------------------------------------------------------------------
# segmap forms, sizes, batch broadcasting
# --------------------------------------------------------------------------------------------


def test_label_map_forms_match_one_hot():
    layer = _randomize(SwitchableSPADE(4, 3, hidden_channels=4))
    x = torch.randn(2, 4, 6, 6)
    labels = torch.randint(0, 3, (2, 9, 7))
    ref = layer(x, _one_hot(labels, 3))
    # equal up to float32 rounding: the label path and the one-hot path may take different conv
    # kernels (bitwise equal with AVX512 kernels, 1 ulp apart with AVX2 ones)
    for form in (labels, labels[:, None], labels.to(torch.uint8), labels.to(torch.int32)):
        torch.testing.assert_close(layer(x, form), ref, rtol=1e-6, atol=1e-5)
    binary = torch.rand(2, 9, 7) > 0.5
    layer2 = _randomize(SwitchableSPADE(4, 2, hidden_channels=4))
    torch.testing.assert_close(layer2(x, binary), layer2(x, _one_hot(binary.long(), 2)), rtol=1e-6, atol=1e-5)


def test_segmap_resized_with_nearest_from_another_size():
    layer = _randomize(SwitchableSPADE(4, 2, hidden_channels=4))
    x = torch.randn(1, 4, 6, 6)
    s = torch.rand(1, 2, 13, 9)
    pre = F.interpolate(s, size=(6, 6), mode="nearest")
    assert torch.equal(layer(x, s), layer(x, pre))
    # an exact 2x: nearest picks the top-left pixel of each 2x2 cell
    big = torch.rand(1, 2, 12, 12)
    assert torch.equal(layer(x, big), layer(x, big[:, :, ::2, ::2].contiguous()))
    # upsampling a smaller map works too
    small = torch.rand(1, 2, 3, 3)
    assert torch.equal(layer(x, small), layer(x, small.repeat_interleave(2, 2).repeat_interleave(2, 3)))


def test_batch_one_segmap_broadcasts():
    layer = _randomize(SwitchableSPADE(4, 2, hidden_channels=4))
    x = torch.randn(3, 4, 5, 5)
    labels = torch.randint(0, 2, (1, 5, 5))
    # float32 rounding only (batch-1 vs batch-3 conv kernels differ by an ulp on AVX2 CPUs)
    torch.testing.assert_close(layer(x, labels), layer(x, labels.expand(3, -1, -1)), rtol=1e-6, atol=1e-6)


@given(
    n=st.integers(1, 3),
    label_nc=st.integers(1, 4),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    out_h=st.integers(1, 9),
    out_w=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_prepare_segmap_is_one_hot_of_nearest_labels(n, label_nc, h, w, out_h, out_w, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, label_nc, (n, h, w), generator=g)
    out = prepare_segmap(labels, label_nc, (out_h, out_w))
    assert out.shape == (n, label_nc, out_h, out_w) and out.dtype == torch.float32
    assert torch.equal(out.sum(1), torch.ones(n, out_h, out_w))
    rows = torch.div(torch.arange(out_h) * h, out_h, rounding_mode="floor")
    cols = torch.div(torch.arange(out_w) * w, out_w, rounding_mode="floor")
    assert torch.equal(out.argmax(1), labels[:, rows][:, :, cols])


def test_prepare_segmap_options():
    labels = torch.tensor([[[0, 1], [1, 0]]])
    out = prepare_segmap(labels, 2, dtype=torch.float64)
    assert out.dtype == torch.float64
    assert torch.equal(out[0, 1], labels[0].double())
    soft = torch.rand(2, 3, 4, 4)
    assert torch.equal(prepare_segmap(soft, 3), soft)  # float maps are used as they are
    assert prepare_segmap(soft, 3, (8, 2), torch.bfloat16).shape == (2, 3, 8, 2)
    with pytest.raises(ValueError, match="batch size"):
        prepare_segmap(soft, 3, batch_size=4)
    assert prepare_segmap(soft[:1], 3, batch_size=4).shape[0] == 1
    # checks can be turned off for an already validated map
    bad = torch.full((1, 3, 2, 2), float("nan"))
    assert torch.isnan(prepare_segmap(bad, 3, check_values=False)).all()


@pytest.mark.parametrize(
    "segmap,label_nc,exc,pattern",
    [
        (torch.tensor([[[0, 2]]]), 2, ValueError, r"labels must lie in \[0, 2\).*\[0, 2\]"),
        (torch.tensor([[[-1, 0]]]), 2, ValueError, r"labels must lie in \[0, 2\)"),
        (torch.ones(1, 1, 2, 2, dtype=torch.bool), 1, ValueError, r"labels must lie in \[0, 1\)"),
        (torch.rand(1, 3, 4, 4), 2, ValueError, r"label_nc=2 channels, got 3"),
        (torch.rand(1, 1, 4, 4), 2, ValueError, r"integer dtype"),
        (torch.rand(2, 4, 4), 2, ValueError, r"\(N, label_nc=2, H, W\).*integer label map"),
        (torch.randint(0, 2, (1, 2, 4, 4)), 2, ValueError, r"\(N, H, W\) or \(N, 1, H, W\)"),
        (torch.randint(0, 2, (4, 4)), 2, ValueError, r"\(N, H, W\) or \(N, 1, H, W\)"),
        (torch.full((1, 2, 2, 2), float("nan")), 2, ValueError, r"finite"),
        (torch.tensor([[[float("inf")]]]).expand(1, 2, 1, 1), 2, ValueError, r"finite"),
        (torch.zeros(1, 2, 0, 3), 2, ValueError, r"empty"),
        (torch.zeros(1, 2, 2, 2, dtype=torch.complex64), 2, TypeError, r"real"),
        ([[0, 1]], 2, TypeError, r"torch.Tensor"),
        (torch.zeros(1, 2, 2), 0, ValueError, r"label_nc"),
    ],
)
def test_prepare_segmap_errors(segmap, label_nc, exc, pattern):
    with pytest.raises(exc, match=pattern):
        prepare_segmap(segmap, label_nc)


# --------------------------------------------------------------------------------------------
# memory format, autocast, compile
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["instance", "batch", "group"])
def test_channels_last_kept_and_equal(norm):
    layer = _randomize(SwitchableSPADE(4, 2, hidden_channels=4, param_free_norm=norm, activation="leaky_relu"))
    layer.eval()
    x = torch.randn(2, 4, 6, 5)
    xl = x.to(memory_format=torch.channels_last)
    labels = torch.randint(0, 2, (2, 6, 5))
    for seg in (None, labels):
        out, out_cl = layer(x, seg), layer(xl, seg)
        assert out_cl.is_contiguous(memory_format=torch.channels_last)
        assert out.is_contiguous()
        torch.testing.assert_close(out_cl, out, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_close_to_float32():
    layer = _randomize(SwitchableSPADE(8, 2, hidden_channels=16, activation="leaky_relu"))
    x = torch.randn(2, 8, 8, 8)
    labels = torch.randint(0, 2, (2, 8, 8))
    for seg in (None, labels):
        ref = layer(x, seg)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x, seg)
        assert out.shape == ref.shape and torch.isfinite(out).all()
        torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.15)
    # a module converted to bf16 runs without autocast too
    lb = layer.to(torch.bfloat16)
    out = lb(x.bfloat16(), labels)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), layer.float()(x, labels), rtol=0.05, atol=0.2)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    layer = _randomize(SwitchableSPADE(4, 2, hidden_channels=4, activation="leaky_relu", backend="eager"))
    x = torch.randn(2, 4, 6, 6)
    s = _one_hot(torch.randint(0, 2, (2, 6, 6)), 2)
    compiled = torch.compile(layer, fullgraph=True)  # no graph break: value checks skip while tracing
    for seg in (s, None):
        torch.testing.assert_close(compiled(x, seg), layer(x, seg), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# bad arguments and inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,exc,pattern",
    [
        (dict(param_free_norm="layer"), ValueError, r"param_free_norm must be one of \('instance', 'batch', 'group'\)"),
        (dict(activation="relu"), ValueError, r"activation must be None or one of \('leaky_relu',\)"),
        (dict(kernel_size=2), ValueError, r"kernel_size must be odd"),
        (dict(hidden_channels=0), ValueError, r"hidden_channels must be >= 1"),
        (dict(num_features=2.0), TypeError, r"num_features must be an int"),
        (dict(eps=0.0), ValueError, r"eps must be a positive"),
        (dict(negative_slope=float("nan")), ValueError, r"negative_slope"),
        (dict(num_groups=2), ValueError, r"num_groups is only accepted with param_free_norm='group'"),
        (dict(param_free_norm="group", num_groups=3), ValueError, r"num_groups \(3\) must divide num_features \(4\)"),
        (dict(backend=3), TypeError, r"backend must be a str"),
    ],
)
def test_constructor_errors(kwargs, exc, pattern):
    args = dict(num_features=4, label_nc=2)
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        SwitchableSPADE(**args)


def test_unknown_backend_rejected_at_construction():
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'eager', 'compile', 'triton'\), got 'no-such-backend'"):
        SwitchableSPADE(4, 2, hidden_channels=4, backend="no-such-backend")


@pytest.mark.parametrize(
    "x,segmap,exc,pattern",
    [
        (torch.randn(4, 3, 3), None, ValueError, r"x must have shape \(N, C, H, W\)"),
        (torch.randn(1, 1, 4, 3, 3), None, ValueError, r"x must have shape \(N, C, H, W\)"),
        (torch.randn(1, 5, 3, 3), None, ValueError, r"num_features=4 channels, got 5"),
        (torch.ones(1, 4, 3, 3, dtype=torch.long), None, TypeError, r"floating-point"),
        (torch.randn(0, 4, 3, 3), None, ValueError, r"empty"),
        ("x", None, TypeError, r"x must be a torch.Tensor"),
        (torch.randn(2, 4, 3, 3), torch.rand(2, 3, 3, 3), ValueError, r"label_nc=2 channels, got 3"),
        (torch.randn(2, 4, 3, 3), torch.randint(0, 2, (3, 3, 3)), ValueError, r"batch size must be 1 or match x's batch size 2, got 3"),
        (torch.randn(2, 4, 3, 3), torch.full((2, 3, 3), 2), ValueError, r"\[0, 2\)"),
        (torch.randn(2, 4, 3, 3), torch.full((2, 2, 3, 3), float("nan")), ValueError, r"finite"),
    ],
)
def test_forward_errors(x, segmap, exc, pattern):
    layer = SwitchableSPADE(4, 2, hidden_channels=4)
    with pytest.raises(exc, match=pattern):
        layer(x, segmap)


def test_extra_repr():
    r = repr(SwitchableSPADE(16, 2, hidden_channels=32, param_free_norm="group", num_groups=4, activation="leaky_relu", negative_slope=0.1, backend="eager"))
    for part in ("num_features=16", "label_nc=2", "hidden_channels=32", "kernel_size=3", "param_free_norm='group'",
                 "num_groups=4", "eps=1e-05", "activation='leaky_relu'", "negative_slope=0.1", "backend='eager'"):
        assert part in r
    assert "negative_slope" not in repr(SwitchableSPADE(16, 2))
    r = repr(SPADEResBlock(8, 4, 2))
    assert "in_channels=8, out_channels=4, label_nc=2, spectral_norm=True, learned_shortcut=True" in r


# --------------------------------------------------------------------------------------------
# SPADEResBlock
# --------------------------------------------------------------------------------------------


def _released_block(prefix: str) -> dict[str, tuple[int, ...]]:
    shared_path(RELEASED, "the released checkpoint's key list")
    out = {}
    for line in RELEASED.read_text().splitlines():
        m = re.match(r"^segment_fn\." + re.escape(prefix) + r"\.(\S+)\t\(([\d, ]*)\)$", line)
        if m:
            out[m.group(1)] = tuple(int(v) for v in m.group(2).split(",") if v.strip())
    assert out, f"no keys for {prefix} in {RELEASED}"
    return out


@pytest.mark.parametrize("prefix,cin,cout", [("up_0", 256, 128), ("G_middle_0", 256, 256), ("up_1", 128, 64)])
def test_resblock_keys_and_shapes_match_release(prefix, cin, cout):
    expected = _released_block(prefix)
    block = SPADEResBlock(cin, cout, label_nc=2)
    got = {k: tuple(v.shape) for k, v in block.state_dict().items()}
    assert list(got) == list(expected)  # same names, same order
    assert got == expected
    # parameter count: every released tensor but the spectral-norm power-iteration vectors
    n_params = sum(torch.Size(s).numel() for k, s in expected.items() if not k.endswith(("weight_u", "weight_v")))
    assert sum(p.numel() for p in block.parameters()) == n_params
    # and a state dict shaped like the release loads strictly
    block.load_state_dict({k: torch.randn(s) for k, s in expected.items()}, strict=True)


def test_resblock_up0_parameter_count_sum():
    expected = _released_block("up_0")
    total = sum(torch.Size(s).numel() for s in expected.values())
    block = SPADEResBlock(256, 128, 2)
    assert sum(t.numel() for t in block.state_dict().values()) == total
    # by hand: conv_0 128*256*9+128, conv_1 128*128*9+128, conv_s 128*256,
    # norm_0/norm_s 2*256 + (128*2*9+128) + 2*(256*128*9+256), norm_1 2*128 + 2432 + 2*(128*128*9+128)
    assert sum(p.numel() for p in block.parameters()) == 295_040 + 147_584 + 32_768 + 2 * 593_280 + 297_856


def test_resblock_structure():
    block = SPADEResBlock(8, 4, 2, hidden_channels=16)
    assert block.conv_0.in_channels == 8 and block.conv_0.out_channels == 4  # fmiddle = min
    assert block.conv_1.in_channels == 4 and block.conv_1.out_channels == 4
    assert block.conv_s.kernel_size == (1, 1) and block.conv_s.bias is None
    assert block.norm_0.activation == "leaky_relu" and block.norm_1.activation == "leaky_relu"
    assert block.norm_s.activation is None and block.norm_1.num_features == 4
    same = SPADEResBlock(4, 4, 2, spectral_norm=False)
    assert not hasattr(same, "conv_s") and not hasattr(same, "norm_s")
    assert "weight_orig" not in dict(same.conv_0.named_parameters())
    up = SPADEResBlock(4, 8, 2)
    assert up.conv_0.out_channels == 4 and up.conv_1.out_channels == 8


@pytest.mark.parametrize("cin,cout", [(6, 3), (3, 6), (4, 4)])
@pytest.mark.parametrize("with_segmap", [False, True])
def test_resblock_matches_spec_formula(cin, cout, with_segmap):
    block = _randomize(SPADEResBlock(cin, cout, 2, hidden_channels=8)).eval()
    x = torch.randn(2, cin, 6, 6)
    labels = torch.randint(0, 2, (2, 12, 12)) if with_segmap else None

    def plain(norm: SwitchableSPADE, h):  # the same norm without the fused activation
        ref = SwitchableSPADE(norm.num_features, 2, hidden_channels=8, activation=None)
        ref.load_state_dict(norm.state_dict())
        return ref(h, labels)

    shortcut = block.conv_s(plain(block.norm_s, x)) if cin != cout else x
    dx = block.conv_0(F.leaky_relu(plain(block.norm_0, x), 0.2))
    dx = block.conv_1(F.leaky_relu(plain(block.norm_1, dx), 0.2))
    torch.testing.assert_close(block(x, labels), shortcut + dx, rtol=1e-5, atol=1e-5)


def test_resblock_channels_last_and_bad_input():
    block = _randomize(SPADEResBlock(4, 2, 2, hidden_channels=4)).eval()
    x = torch.randn(2, 4, 5, 5)
    labels = torch.randint(0, 2, (1, 10, 10))
    out = block(x.to(memory_format=torch.channels_last), labels)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, block(x, labels), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"in_channels=4"):
        block(torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        block(x, torch.full((2, 5, 5), 5))
    with pytest.raises(ValueError, match="batch size"):
        block(x, torch.randint(0, 2, (3, 5, 5)))
    with pytest.raises(TypeError, match="spectral_norm must be a bool"):
        SPADEResBlock(4, 2, 2, spectral_norm=1)


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


def test_registry():
    names = list_layers()
    assert {"sspade", "switchable_spade", "spade_resblock"} <= set(names)
    assert names == sorted(names)
    layer = create_layer("SSPADE", num_features=4, label_nc=2, hidden_channels=4)
    assert isinstance(layer, SwitchableSPADE) and layer.num_features == 4
    assert isinstance(create_layer("switchable_spade", num_features=4, label_nc=2), SwitchableSPADE)
    block = create_layer("spade_resblock", in_channels=4, out_channels=2, label_nc=2)
    assert isinstance(block, SPADEResBlock) and block.out_channels == 2
    with pytest.raises(ValueError, match=r"unknown layer name 'spade_x'; known layers: .*spade_resblock.*sspade.*switchable_spade"):
        create_layer("spade_x")
    with pytest.raises(TypeError):
        create_layer(3)
    with pytest.raises(ValueError, match="already registered"):
        register_layer("sspade")(nn.Identity)


def test_public_exports():
    import darlkit

    for name in L.__all__:
        assert hasattr(L, name) and getattr(darlkit, name) is getattr(L, name)
    assert {"SwitchableSPADE", "SPADEResBlock", "spadeify", "SpadeifiedModel", "prepare_segmap",
            "create_layer", "list_layers"} <= set(L.__all__)
