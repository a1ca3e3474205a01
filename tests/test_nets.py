"""Tests of darlkit.nets: parameter counts, key layouts, block semantics, shapes, init."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import shared_path
import torch
import torch.nn.functional as F
from torch import nn

from darlkit.nets import (
    DiffusionUNet,
    PatchDiscriminator,
    SelfAttention2d,
    SinusoidalTimeEmbedding,
    SPADEGenerator,
    SSVSGenerator,
    TimeResidualBlock,
    init_weights,
)

RELEASED_TXT = Path(__file__).resolve().parents[2] / "shared" / "released_state_dicts.txt"


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def small_unet(**kw) -> DiffusionUNet:
    args = dict(base_channels=32, channel_mults=(1, 2), image_size=32, attn_resolutions=(16,))
    args.update(kw)
    return DiffusionUNet(**args)


def small_gen(**kw) -> SPADEGenerator:
    args = dict(base_channels=16, spade_hidden=16, backend="eager")
    args.update(kw)
    return SPADEGenerator(**args)


def released_shapes(section: str, prefix: str = "") -> dict[str, tuple[int, ...]]:
    shared_path(RELEASED_TXT, "the released checkpoint's key list")
    out, sec = {}, None
    for line in RELEASED_TXT.read_text().splitlines():
        if line.startswith("["):
            sec = line.strip("[]")
            continue
        if not line.strip() or line.startswith("#") or sec != section:
            continue
        key, shape = line.split("\t")
        if key.startswith(prefix):
            out[key[len(prefix) :]] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return out


# ---------------------------------------------------------------- parameter counts, keys


def test_paper_parameter_counts():
    assert n_params(DiffusionUNet(init=None)) == 27_432_513
    assert n_params(SPADEGenerator(init=None)) == 7_936_513
    assert n_params(PatchDiscriminator(init=None)) == 2_762_689
    # SSVS ResNet generator: stem 7x7 + 2 down + 10 blocks + 2 transposed + 7x7 head.
    expected = (
        (49 * 64 + 64)
        + (9 * 64 * 128 + 128)
        + (9 * 128 * 256 + 256)
        + 10 * 2 * (9 * 256 * 256 + 256)
        + (9 * 256 * 128 + 128)
        + (9 * 128 * 64 + 64)
        + (49 * 64 + 1)
    )
    assert n_params(SSVSGenerator(init=None)) == expected


def test_state_dict_keys_equal_release():
    unet = {k: tuple(v.shape) for k, v in DiffusionUNet(init=None).state_dict().items()}
    gen = {k: tuple(v.shape) for k, v in SPADEGenerator(init=None).state_dict().items()}
    disc = {k: tuple(v.shape) for k, v in PatchDiscriminator(init=None).state_dict().items()}
    assert unet == released_shapes("G", "denoise_fn.")
    assert gen == released_shapes("G", "segment_fn.")
    assert disc == released_shapes("D")


def test_unet_attention_placement_follows_image_size():
    net = DiffusionUNet(init=None)
    with_attn = [i for i, m in enumerate(net.downs) if getattr(m, "attn", None) is not None]
    assert with_attn == [13, 14]  # level 4 = 16x16 for a 256 input
    assert [i for i, m in enumerate(net.ups) if getattr(m, "attn", None) is not None] == [4, 5, 6]
    net128 = DiffusionUNet(init=None, image_size=128)  # 16x16 is now level 3
    assert [i for i, m in enumerate(net128.downs) if getattr(m, "attn", None) is not None] == [10, 11]
    assert net128.mid[0].attn is not None and net128.mid[1].attn is None


# ---------------------------------------------------------------- blocks against formulas


def test_time_embedding_formula():
    emb = SinusoidalTimeEmbedding(64)
    t = torch.tensor([0, 1, 7, 1999])
    k = torch.arange(32, dtype=torch.float64)
    f = torch.exp(-math.log(10000.0) * 2 * k / 64)
    ref = torch.cat([torch.sin(t[:, None] * f), torch.cos(t[:, None] * f)], dim=1)
    torch.testing.assert_close(emb(t).double(), ref, atol=2e-4, rtol=0)
    assert emb(t).shape == (4, 64)
    with pytest.raises(ValueError, match="dim"):
        SinusoidalTimeEmbedding(7)


def test_attention_matches_reference_einsum():
    torch.manual_seed(1)
    att = SelfAttention2d(64, norm_groups=32)
    for p in att.parameters():
        nn.init.normal_(p, 0, 0.2)
    x = torch.randn(2, 64, 5, 6)
    n = F.group_norm(x, 32, att.norm.weight, att.norm.bias)
    q, k, v = F.conv2d(n, att.qkv.weight).chunk(3, dim=1)
    w = torch.einsum("bci,bcj->bij", q.flatten(2), k.flatten(2)) / math.sqrt(64)
    o = torch.einsum("bij,bcj->bci", w.softmax(-1), v.flatten(2)).reshape(2, 64, 5, 6)
    ref = F.conv2d(o, att.out.weight, att.out.bias) + x
    torch.testing.assert_close(att(x), ref, atol=1e-5, rtol=1e-5)


def test_time_residual_block_formula():
    torch.manual_seed(2)
    blk = TimeResidualBlock(32, 64, time_dim=16, norm_groups=8)
    x, temb = torch.randn(2, 32, 6, 6), torch.randn(2, 16)
    silu = F.silu
    h = F.conv2d(silu(F.group_norm(x, 8, *_wb(blk.block1.block[0]))), *_wb(blk.block1.block[3]), padding=1)
    h = h + F.linear(silu(temb), *_wb(blk.mlp[1]))[:, :, None, None]
    h = F.conv2d(silu(F.group_norm(h, 8, *_wb(blk.block2.block[0]))), *_wb(blk.block2.block[3]), padding=1)
    ref = h + F.conv2d(x, *_wb(blk.res_conv))
    torch.testing.assert_close(blk(x, temb), ref, atol=1e-5, rtol=1e-5)
    assert isinstance(TimeResidualBlock(32, 32, 16, 8).res_conv, nn.Identity)


def _wb(m):
    return m.weight, m.bias


# ---------------------------------------------------------------- shapes, ranges, validation


def test_unet_shapes_and_time_forms():
    net = small_unet()
    x = torch.randn(3, 1, 32, 64)
    out = net(x, torch.tensor([0, 5, 99]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    # a python int / 0-d tensor means the same step for every image
    torch.testing.assert_close(net(x, 5), net(x, torch.tensor([5, 5, 5])))
    torch.testing.assert_close(net(x, torch.tensor(5)), net(x, 5))
    # the step matters
    assert not torch.allclose(net(x, 0), net(x, 50))


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.randn(1, 1, 31, 32), "multiples of 2"),
        (torch.randn(1, 2, 32, 32), "1 channel"),
        (torch.zeros(1, 1, 32, 32, dtype=torch.int64), "floating-point"),
        (torch.full((1, 1, 32, 32), float("nan")), "NaN"),
        (torch.randn(1, 32, 32), r"\(N, C, H, W\)"),
    ],
)
def test_unet_rejects_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        small_unet()(x, 0)


def test_unet_rejects_bad_steps():
    net = small_unet()
    with pytest.raises(ValueError, match="one step per image"):
        net(torch.randn(2, 1, 32, 32), torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="t must be"):
        net(torch.randn(1, 1, 32, 32), "0")


def test_generator_modes_shapes_and_range():
    g = small_gen().eval()  # eval: spectral norm reuses its stored vectors, calls are comparable
    x = torch.randn(2, 2, 16, 24) * 3
    mask = (torch.rand(2, 1, 16, 24) > 0.5).float()
    onehot = torch.cat([1 - mask, mask], 1)
    a, b = g(x), g(x, onehot)
    assert a.shape == b.shape == (2, 1, 16, 24)
    assert a.abs().max() <= 1 and b.abs().max() <= 1
    assert not torch.allclose(a, b)  # the mask switches the norms
    # an integer label map is the same condition as its one-hot float map
    torch.testing.assert_close(g(x, mask.long()[:, 0]), b)
    with pytest.raises(ValueError, match="multiples of 4"):
        g(torch.randn(1, 2, 18, 16))
    with pytest.raises(ValueError, match="2 channel"):
        g(torch.randn(1, 1, 16, 16))


def test_generator_head_activation_is_functional():
    # The release applies F.leaky_relu before conv_img (no module): Table 12 depends on it.
    g = small_gen()
    assert not any(isinstance(m, nn.LeakyReLU) for m in g.modules())
    assert sum(isinstance(m, nn.ReLU) for m in g.model) == 3


def test_discriminator_output_grid():
    d = PatchDiscriminator(base_channels=8)
    assert d(torch.randn(2, 1, 64, 64)).shape == (2, 1, 6, 6)
    assert PatchDiscriminator(init=None)(torch.randn(1, 1, 256, 256)).shape == (1, 1, 30, 30)
    with pytest.raises(ValueError, match="shape"):
        d(torch.randn(2, 3, 64, 64))


def test_ssvs_generator_shapes_and_range():
    g = SSVSGenerator(base_channels=8, num_blocks=2)
    y = g(torch.randn(2, 1, 32, 32) * 4)
    assert y.shape == (2, 1, 32, 32) and y.abs().max() <= 1
    kinds = [type(m) for m in g.model]
    assert kinds.count(nn.ConvTranspose2d) == 2 and kinds[-1] is nn.Tanh
    assert all(not m.affine for m in g.modules() if isinstance(m, nn.InstanceNorm2d))


# ---------------------------------------------------------------- initialisation


def test_init_weights_normal_and_zero_bias():
    torch.manual_seed(3)
    d = PatchDiscriminator()  # normal(0, 0.02) by default
    w = torch.cat([m.weight.flatten() for m in d.modules() if isinstance(m, nn.Conv2d)])
    assert abs(w.std().item() - 0.02) < 1e-3 and abs(w.mean().item()) < 1e-3
    assert all((m.bias == 0).all() for m in d.modules() if isinstance(m, nn.Conv2d))


def test_init_weights_orthogonal_unet():
    net = small_unet()  # orthogonal, gain 1 by default
    w = net.downs[1].res_block.block1.block[3].weight.flatten(1)  # (32, 288): orthonormal rows
    torch.testing.assert_close(w @ w.T, torch.eye(32), atol=1e-4, rtol=0)
    lin = net.time_mlp[1].weight  # (128, 32): orthonormal columns
    torch.testing.assert_close(lin.T @ lin, torch.eye(32), atol=1e-4, rtol=0)
    assert (net.time_mlp[1].bias == 0).all()
    gn = net.downs[1].res_block.block1.block[0]
    assert (gn.weight == 1).all() and (gn.bias == 0).all()


def test_init_weights_reaches_spectral_norm_weight_orig():
    g = small_gen(init=None)
    before = g.G_middle_0.conv_0.weight_orig.detach().clone()
    init_weights(g, "normal", 0.02)
    after = g.G_middle_0.conv_0.weight_orig
    assert not torch.equal(before, after)
    assert abs(after.std().item() - 0.02) < 4e-3
    with pytest.raises(ValueError, match="scheme"):
        init_weights(g, "uniform")


@pytest.mark.parametrize(
    ("cls", "kwargs", "exc", "match"),
    [
        ("PatchDiscriminator", {"base_channels": 0}, ValueError, "base_channels must be >= 1"),
        ("SSVSGenerator", {"num_blocks": -1}, ValueError, "num_blocks must be >= 0"),
        ("SPADEGenerator", {"label_nc": 2.0}, TypeError, "label_nc must be an int"),
        ("DiffusionUNet", {"image_size": True}, TypeError, "image_size must be an int"),
    ],
)
def test_constructor_arguments_are_checked(cls: str, kwargs: dict, exc: type, match: str) -> None:
    import darlkit.nets

    with pytest.raises(exc, match=match):
        getattr(darlkit.nets, cls)(**kwargs)
