"""Tests of darlkit.flops: hand-counted rules in both conventions, the registry, Table 12."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from darlkit.flops import (
    PAPER_COMPONENT_GMACS,
    PAPER_TABLE12,
    compute_table12,
    count_macs,
    format_table12,
    get_mac_rule,
    register_mac_rule,
    unregister_mac_rule,
)
from darlkit.layers import SwitchableSPADE
from darlkit.nets import PatchDiscriminator, SPADEGenerator


def paper(m, *a, **k):
    return count_macs(m, *a, convention="paper", **k).total


def exact(m, *a, **k):
    return count_macs(m, *a, convention="exact", **k).total


@pytest.mark.parametrize("bias", [True, False])
def test_conv2d(bias):
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=bias)
    x = torch.randn(2, 3, 5, 5)
    positions = 2 * 5 * 5
    assert paper(conv, x) == 9 * 3 * 4 * positions + (4 * positions if bias else 0)
    assert exact(conv, x) == 9 * 3 * 4 * positions  # bias additions are not MACs


def test_grouped_and_strided_conv():
    conv = nn.Conv2d(4, 8, 3, stride=2, groups=2, bias=False)
    x = torch.randn(1, 4, 9, 9)  # output 4x4
    assert paper(conv, x) == exact(conv, x) == 9 * 2 * 8 * 16


def test_conv_transpose_counts_output_grid_in_paper_convention():
    conv = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
    x = torch.randn(1, 4, 5, 5)  # output 10x10
    assert conv(x).shape[-2:] == (10, 10)
    assert paper(conv, x) == 9 * 4 * 2 * 100 + 2 * 100
    assert exact(conv, x) == 9 * 4 * 2 * 25  # true cost: every input pixel meets the kernel once


@pytest.mark.parametrize("affine", [False, True])
def test_norms(affine):
    x = torch.randn(2, 4, 5, 5)
    for norm in (nn.InstanceNorm2d(4, affine=affine), nn.BatchNorm2d(4, affine=affine), nn.GroupNorm(2, 4, affine=affine)):
        assert paper(norm, x) == (2 if affine else 1) * x.numel()
        assert exact(norm, x) == 0


def test_linear_activations_upsample_pool():
    lin = nn.Linear(6, 3)
    x = torch.randn(2, 5, 6)
    assert paper(lin, x) == 60 * 3 + 3  # bias counted once per output feature (ptflops 0.6.9)
    assert exact(lin, x) == 2 * 5 * 6 * 3
    y = torch.randn(2, 3, 4, 4)
    for act in (nn.ReLU(), nn.LeakyReLU(0.2), nn.ELU(), nn.ReLU6(), nn.PReLU()):
        assert paper(act, y) == y.numel()
    assert paper(nn.Upsample(scale_factor=2), y) == 3 * 8 * 8  # first sample of the output
    assert paper(nn.MaxPool2d(2), y) == paper(nn.AdaptiveAvgPool2d(1), y) == y.numel()
    assert paper(nn.Tanh(), y) == paper(nn.SiLU(), y) == 0


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False)

    def forward(self, x):
        return F.leaky_relu(self.conv(x), 0.2) + torch.einsum("nchw->nchw", x)


def test_functional_calls_count_zero_in_paper_convention():
    m = _Functional()
    x = torch.randn(1, 2, 3, 3)
    rep = count_macs(m, x)
    assert rep.total == 2 * 2 * 9
    assert rep.per_module == {"conv": 36} and rep.per_type == {"Conv2d": 36}
    assert rep.convention == "paper" and rep.gmacs == pytest.approx(36e-9)


def test_switchable_spade_rule_counts_the_released_norms():
    layer = SwitchableSPADE(4, label_nc=2, hidden_channels=3, backend="eager")
    x = torch.randn(1, 4, 8, 8)
    seg = torch.randint(0, 2, (1, 8, 8))
    mlp_shared = 9 * 2 * 3 * 64 + 3 * 64 + 3 * 64  # conv + bias + ReLU
    gamma_beta = 2 * (9 * 3 * 4 * 64 + 4 * 64)
    assert paper(layer, x, seg) == x.numel() + mlp_shared + gamma_beta
    assert paper(layer, x, segmap=seg) == x.numel() + mlp_shared + gamma_beta
    assert paper(layer, x) == 2 * x.numel()  # affine param_norm, no mask MLP
    assert exact(layer, x) == 0


class _CallsNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.param_norm = nn.InstanceNorm2d(2, affine=True)

    def forward(self, x):
        return self.param_norm(x)


def test_registry_and_exclusive_children():
    x = torch.randn(1, 2, 4, 4)
    m = _CallsNorm()
    assert get_mac_rule(_CallsNorm) is None
    assert paper(m, x) == 2 * 32  # only the child norm
    try:
        register_mac_rule(_CallsNorm, lambda mod, a, kw, out: 7, exclusive_children=("param_norm",))
        assert get_mac_rule(_CallsNorm) is not None
        assert paper(m, x) == 7  # the child's count is dropped while the parent runs
        register_mac_rule(_CallsNorm, lambda mod, a, kw, out: 7)
        assert paper(m, x) == 7 + 64
    finally:
        unregister_mac_rule(_CallsNorm)
    assert paper(m, x) == 64
    with pytest.raises(TypeError, match="module_type"):
        register_mac_rule(int, lambda *a: 0)
    with pytest.raises(ValueError, match="convention"):
        count_macs(m, x, convention="ptflops")
    with pytest.raises(TypeError, match="nn.Module"):
        count_macs(lambda t: t, x)


def test_counting_has_no_side_effects_on_spectral_norm_modes_and_backends():
    g = SPADEGenerator(base_channels=8, spade_hidden=8, backend="auto").train()
    u = g.G_middle_0.conv_0.weight_u.clone()
    x = torch.randn(1, 2, 16, 16)
    assert paper(g, x) > exact(g, x) > 0
    assert torch.equal(u, g.G_middle_0.conv_0.weight_u) and g.training and g.G_middle_0.training
    assert g.G_middle_0.norm_0.backend == "auto"  # counted with eager kernels, then restored


def test_patchgan_at_256_by_hand():
    d = PatchDiscriminator(init=None)
    x = torch.zeros(1, 1, 256, 256)
    # (kernel * cin * cout, output positions) per conv: 128^2, 64^2, 32^2, 31^2, 30^2
    convs = [(16 * 1 * 64, 128**2), (16 * 64 * 128, 64**2), (16 * 128 * 256, 32**2), (16 * 256 * 512, 31**2), (16 * 512, 30**2)]
    conv_macs = sum(k * p for k, p in convs)
    biases = 64 * 128**2 + 128 * 64**2 + 256 * 32**2 + 512 * 31**2 + 30**2
    norms = 128 * 64**2 + 256 * 32**2 + 512 * 31**2
    lrelu = 64 * 128**2 + norms
    assert exact(d, x) == conv_macs == 3_113_254_912
    assert paper(d, x) == conv_macs + biases + norms + lrelu
    assert round(paper(d, x) / 1e9, 3) == PAPER_COMPONENT_GMACS["patchgan"]


@pytest.mark.slow
def test_table12_paper_convention_reproduces_the_paper():
    (tab,) = compute_table12(256, ("paper",))
    comp = tab.components
    for key, value in PAPER_COMPONENT_GMACS.items():  # SPEC's three-decimal figures, exactly
        assert round(comp[key], 3) == value, key
    for row in tab.rows:
        for col, ref in PAPER_TABLE12[row.method].items():
            assert abs(getattr(row, col) - ref) / ref < 5e-4, (row.method, col)
            assert row.rel_error[col] == pytest.approx((getattr(row, col) - ref) / ref)
    assert tab.params == {
        "unet": 27_432_513,
        "generator": 7_936_513,
        "patchgan": 2_762_689,
        "ssvs_generator": 12_545_793,
    }
    text = format_table12([tab])
    assert "| DARL | 90.658" in text and "173.506" in text


def test_table12_small_size_both_conventions_and_cli(tmp_path, capsys):
    from darlkit.cli import main

    out = tmp_path / "t12.json"
    assert main(["flops", "--size", "64", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "paper convention" in printed and "exact convention" in printed and "Parameters" in printed
    data = json.loads(out.read_text())
    paper_tab, exact_tab = data["tables"]
    assert paper_tab["convention"] == "paper" and paper_tab["size"] == 64
    for p_row, e_row in zip(paper_tab["rows"], exact_tab["rows"]):
        # the paper convention counts more (norms, activations, 4x transposed convs)
        assert p_row["total"] > e_row["total"] > 0
        assert p_row["paper"] == {}  # the paper's values only apply at 256
        assert p_row["total"] == pytest.approx(
            p_row["a_path"] + p_row["b_path"] + p_row["cycle"] * p_row["cycle_mult"] + 2 * p_row["disc"]
        )
    assert main(["flops", "--size", "100"]) == 2


def test_switchable_spade_owns_its_paper_rule_and_a_registered_rule_overrides_it():
    assert get_mac_rule(SwitchableSPADE) is SwitchableSPADE.paper_macs
    layer = SwitchableSPADE(4, 2, hidden_channels=4)
    x = torch.randn(1, 4, 8, 8)
    assert layer.paper_macs((x,), {}, None) == 2 * x.numel()
    assert layer.paper_macs((x, torch.zeros(1, 2, 8, 8)), {}, None) == x.numel()
    own = count_macs(layer, x).total
    try:
        register_mac_rule(SwitchableSPADE, lambda mod, a, kw, out: 1000, exclusive_children=("param_norm",))
        assert count_macs(layer, x).total == own - 2 * x.numel() + 1000
    finally:
        unregister_mac_rule(SwitchableSPADE)
    assert count_macs(layer, x).total == own
