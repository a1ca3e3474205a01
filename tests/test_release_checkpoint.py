"""Loading the authors' released checkpoint layout (``released_state_dicts.txt``).

The release's files are not available here, so the tests write state dicts in exactly that
key layout (names and shapes read from the txt file) with random tensors, load them with
``load_released_checkpoint`` and check that (1) every tensor landed in the right place and
(2) the loaded model computes the same function as an independent functional reference of
the released architecture, written directly on the release's key names (SPEC "Loading the
authors' released checkpoint").
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import shared_path
import torch
import torch.nn.functional as F

from darlkit.diffusion import GaussianDiffusion
from darlkit.model import DARL, load_model, load_released_checkpoint, map_released_keys
from darlkit.nets import DiffusionUNet, SPADEGenerator

RELEASED_TXT = Path(__file__).resolve().parents[2] / "shared" / "released_state_dicts.txt"


def released_layout() -> dict[str, dict[str, tuple[int, ...]]]:
    shared_path(RELEASED_TXT, "the released checkpoint's key list")
    out: dict[str, dict[str, tuple[int, ...]]] = {}
    sec = None
    for line in RELEASED_TXT.read_text().splitlines():
        if line.startswith("["):
            sec = line.strip("[]")
            out[sec] = {}
            continue
        if sec is None or not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        out[sec][key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return out


def random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random tensors with sane scales: weights ~ 1/sqrt(fan_in), norm weights ~ 1."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if key.endswith("weight_u") or key.endswith("weight_v"):
            continue  # filled in below from weight_orig
        if len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            t = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        elif key.endswith("weight") and ("block.0" in key or "norm" in key):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        elif "." not in key or key.endswith("inv_freq"):
            t = torch.rand(shape, generator=g) * 0.5 + 0.01  # schedule buffers, frequencies
        else:
            t = 0.1 * torch.randn(shape, generator=g)
        sd[key] = t
    for key in shapes:
        if key.endswith("weight_v"):
            base = key[: -len("weight_v")]
            w = sd[base + "weight_orig"].flatten(1)
            v = F.normalize(torch.randn(w.shape[1], generator=g), dim=0)
            sd[key] = v
            sd[base + "weight_u"] = F.normalize(w @ v, dim=0)  # sigma = |W v| > 0
    return {k: sd[k] for k in shapes}


# ------------------------------------------------------------------ functional reference


def ref_unet(sd: dict[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The released U-Net, written on its key names (attention where ``attn`` keys exist)."""
    p = "denoise_fn."
    swish = lambda h: h * torch.sigmoid(h)  # noqa: E731
    phase = t.float()[:, None] * sd[p + "time_mlp.0.inv_freq"][None]
    e = torch.cat([phase.sin(), phase.cos()], dim=1)
    e = F.linear(swish(F.linear(e, sd[p + "time_mlp.1.weight"], sd[p + "time_mlp.1.bias"])), sd[p + "time_mlp.3.weight"], sd[p + "time_mlp.3.bias"])

    def block(k, h):
        h = swish(F.group_norm(h, 32, sd[k + ".block.0.weight"], sd[k + ".block.0.bias"]))
        return F.conv2d(h, sd[k + ".block.3.weight"], sd[k + ".block.3.bias"], padding=1)

    def layer(k, h):
        r = k + ".res_block"
        y = block(r + ".block1", h) + F.linear(swish(e), sd[r + ".mlp.1.weight"], sd[r + ".mlp.1.bias"])[:, :, None, None]
        y = block(r + ".block2", y)
        y = y + (F.conv2d(h, sd[r + ".res_conv.weight"], sd[r + ".res_conv.bias"]) if r + ".res_conv.weight" in sd else h)
        if k + ".attn.qkv.weight" in sd:
            a = k + ".attn"
            n, c, hh, ww = y.shape
            q, kk, v = F.conv2d(F.group_norm(y, 32, sd[a + ".norm.weight"], sd[a + ".norm.bias"]), sd[a + ".qkv.weight"]).chunk(3, 1)
            w = torch.einsum("nci,ncj->nij", q.flatten(2), kk.flatten(2)) / math.sqrt(c)
            o = torch.einsum("nij,ncj->nci", w.softmax(-1), v.flatten(2)).reshape(n, c, hh, ww)
            y = F.conv2d(o, sd[a + ".out.weight"], sd[a + ".out.bias"]) + y
        return y

    def count(group):
        return 1 + max(int(k[len(p + group) + 1 :].split(".")[0]) for k in sd if k.startswith(p + group + "."))

    h = F.conv2d(x, sd[p + "downs.0.weight"], sd[p + "downs.0.bias"], padding=1)
    feats = [h]
    for i in range(1, count("downs")):
        k = f"{p}downs.{i}"
        if k + ".conv.weight" in sd:
            h = F.conv2d(h, sd[k + ".conv.weight"], sd[k + ".conv.bias"], stride=2, padding=1)
        else:
            h = layer(k, h)
        feats.append(h)
    h = layer(p + "mid.0", h)
    h = layer(p + "mid.1", h)
    for i in range(count("ups")):
        k = f"{p}ups.{i}"
        if k + ".conv.weight" in sd:
            h = F.conv2d(F.interpolate(h, scale_factor=2, mode="nearest"), sd[k + ".conv.weight"], sd[k + ".conv.bias"], padding=1)
        else:
            h = layer(k, torch.cat([h, feats.pop()], dim=1))
    h = swish(F.group_norm(h, 32, sd[p + "final_conv.block.0.weight"], sd[p + "final_conv.block.0.bias"]))
    return F.conv2d(h, sd[p + "final_conv.block.3.weight"], sd[p + "final_conv.block.3.bias"], padding=1)


def ref_generator(sd: dict[str, torch.Tensor], x: torch.Tensor, seg: torch.Tensor | None) -> torch.Tensor:
    """The released SPADE generator in eval mode (spectral norm with the stored u, v)."""
    p = "segment_fn."

    def sn(k):
        w = sd[k + ".weight_orig"]
        sigma = torch.dot(sd[k + ".weight_u"], w.flatten(1) @ sd[k + ".weight_v"])
        return w / sigma

    def spade(k, h):
        if seg is None:
            return F.instance_norm(h, weight=sd[k + ".param_norm.weight"], bias=sd[k + ".param_norm.bias"], eps=1e-5)
        s = F.interpolate(seg, size=h.shape[-2:], mode="nearest")
        a = F.relu(F.conv2d(s, sd[k + ".mlp_shared.0.weight"], sd[k + ".mlp_shared.0.bias"], padding=1))
        gamma = F.conv2d(a, sd[k + ".mlp_gamma.weight"], sd[k + ".mlp_gamma.bias"], padding=1)
        beta = F.conv2d(a, sd[k + ".mlp_beta.weight"], sd[k + ".mlp_beta.bias"], padding=1)
        return F.instance_norm(h, eps=1e-5) * (1 + gamma) + beta

    def resblock(k, h):
        k = p + k
        xs = F.conv2d(spade(k + ".norm_s", h), sn(k + ".conv_s")) if k + ".conv_s.weight_orig" in sd else h
        dx = F.conv2d(F.leaky_relu(spade(k + ".norm_0", h), 0.2), sn(k + ".conv_0"), sd[k + ".conv_0.bias"], padding=1)
        dx = F.conv2d(F.leaky_relu(spade(k + ".norm_1", dx), 0.2), sn(k + ".conv_1"), sd[k + ".conv_1.bias"], padding=1)
        return xs + dx

    h = F.conv2d(F.pad(x, (3, 3, 3, 3), mode="reflect"), sd[p + "model.1.weight"], sd[p + "model.1.bias"])
    h = F.relu(F.instance_norm(h))
    h = F.relu(F.instance_norm(F.conv2d(h, sd[p + "model.4.weight"], sd[p + "model.4.bias"], stride=2, padding=1)))
    h = F.relu(F.instance_norm(F.conv2d(h, sd[p + "model.7.weight"], sd[p + "model.7.bias"], stride=2, padding=1)))
    h = resblock("G_middle_1", resblock("G_middle_0", h))
    h = resblock("up_0", F.interpolate(h, scale_factor=2, mode="nearest"))
    h = resblock("up_1", F.interpolate(h, scale_factor=2, mode="nearest"))
    h = F.pad(F.leaky_relu(h, 0.2), (3, 3, 3, 3), mode="reflect")
    return torch.tanh(F.conv2d(h, sd[p + "conv_img.1.weight"], sd[p + "conv_img.1.bias"]))


def ref_patchgan(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    h = F.leaky_relu(F.conv2d(x, sd["model.0.weight"], sd["model.0.bias"], stride=2, padding=1), 0.2)
    for i, stride in ((2, 2), (5, 2), (8, 1)):
        h = F.conv2d(h, sd[f"model.{i}.weight"], sd[f"model.{i}.bias"], stride=stride, padding=1)
        h = F.leaky_relu(F.instance_norm(h), 0.2)
    return F.conv2d(h, sd["model.11.weight"], sd["model.11.bias"], padding=1)


# ------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    layout = released_layout()
    g_sd = random_state(layout["G"], seed=1)
    ds_sd, da_sd = random_state(layout["D"], seed=2), random_state(layout["D"], seed=3)
    root = tmp_path_factory.mktemp("release")
    torch.save(g_sd, root / "XCAD_G.pth")
    torch.save(ds_sd, root / "XCAD_Ds.pth")
    torch.save(da_sd, root / "XCAD_Da.pth")
    loaded = load_released_checkpoint(root / "XCAD")  # the default paper networks
    return g_sd, ds_sd, da_sd, loaded, root


@pytest.mark.slow
def test_every_released_tensor_lands_in_place(released):
    g_sd, ds_sd, da_sd, (model, d_s, d_a), _ = released
    ours = model.state_dict()
    mapped = map_released_keys(g_sd)
    assert set(mapped) == set(ours)
    for key, value in mapped.items():
        assert torch.equal(ours[key], value), key
    # a few by name, to pin the mapping itself
    assert torch.equal(model.unet.downs[13].attn.qkv.weight, g_sd["denoise_fn.downs.13.attn.qkv.weight"])
    assert torch.equal(model.generator.up_0.conv_s.weight_orig, g_sd["segment_fn.up_0.conv_s.weight_orig"])
    assert torch.equal(model.diffusion.alphas_cumprod, g_sd["alphas_cumprod"])
    assert torch.equal(model.unet.time_mlp[0].inv_freq, g_sd["denoise_fn.time_mlp.0.inv_freq"])
    for disc, sd in ((d_s, ds_sd), (d_a, da_sd)):
        assert all(torch.equal(disc.state_dict()[k], v) for k, v in sd.items())
    assert not model.training and not d_s.training
    via = load_model(released[4] / "XCAD")  # the one loader takes a release prefix too
    assert not via.training and all(torch.equal(v, ours[k]) for k, v in via.state_dict().items())


@pytest.mark.slow
def test_loaded_model_computes_the_released_function(released):
    g_sd, ds_sd, _, _, root = released
    # eager kernels: the "auto" backend would spend most of this test compiling on CPU
    paper_eager = DARL(DiffusionUNet(init=None), SPADEGenerator(init=None, backend="eager"))
    model, d_s, _ = load_released_checkpoint(root / "XCAD", model=paper_eager)
    torch.manual_seed(4)
    x = torch.rand(2, 1, 32, 32) * 2 - 1  # attention (16x16 at 256) sits at 2x2 here
    mask = torch.where(torch.rand(2, 1, 32, 32) > 0.85, 1.0, -1.0)
    onehot = torch.cat([(mask <= 0).float(), (mask > 0).float()], 1)
    t = torch.tensor([0, 0])
    with torch.no_grad():
        eps_ref = ref_unet(g_sd, x, t)
        torch.testing.assert_close(model.unet(x, t), eps_ref, atol=1e-4, rtol=1e-4)
        g_in = torch.cat([x, eps_ref], 1)
        torch.testing.assert_close(model.generator(g_in), ref_generator(g_sd, g_in, None), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model.generator(g_in, onehot), ref_generator(g_sd, g_in, onehot), atol=1e-4, rtol=1e-4)
        # the release's segmentation: eps = U-Net(x, 0); mask = G(cat([x, eps]))
        torch.testing.assert_close(model.segment(x), ref_generator(g_sd, g_in, None), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(d_s(x), ref_patchgan(ds_sd, x), atol=1e-5, rtol=1e-5)
    # the U-Net at a nonzero step also matches
    t5 = torch.tensor([5, 1999])
    with torch.no_grad():
        torch.testing.assert_close(model.unet(x, t5), ref_unet(g_sd, x, t5), atol=1e-4, rtol=1e-4)


# ---- errors (on a small model, written in the release's key names)


def small_model() -> DARL:
    unet = DiffusionUNet(base_channels=32, channel_mults=(1, 2), image_size=32, init=None)
    gen = SPADEGenerator(base_channels=8, spade_hidden=8, backend="eager", init=None)
    return DARL(unet, gen, GaussianDiffusion(timesteps=50), t_a_max=10)


def as_released(model: DARL) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in model.state_dict().items():
        for ours, theirs in (("unet.", "denoise_fn."), ("generator.", "segment_fn."), ("diffusion.", "")):
            if k.startswith(ours):
                out[theirs + k[len(ours) :]] = v.clone()
    return out


def test_round_trip_into_a_given_model_and_missing_discriminators(tmp_path):
    src = small_model()
    torch.save(as_released(src), tmp_path / "m_G.pth")
    dst, d_s, d_a = load_released_checkpoint(tmp_path / "m", model=small_model())
    assert d_s is None and d_a is None
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere_G.pth"):
        load_released_checkpoint(tmp_path / "nothere")
    with pytest.raises(FileNotFoundError, match="nothere_G.pth"):
        load_model(tmp_path / "nothere")


def test_bad_keys_and_shapes_are_all_listed(tmp_path):
    sd = as_released(small_model())
    sd.pop("denoise_fn.final_conv.block.3.bias")
    sd.pop("segment_fn.conv_img.1.bias")
    sd["segment_fn.extra.weight"] = torch.zeros(1)
    sd["denoise_fn.downs.0.weight"] = torch.zeros(3, 1, 3, 3)
    torch.save(sd, tmp_path / "bad_G.pth")
    with pytest.raises(ValueError) as err:
        load_released_checkpoint(tmp_path / "bad", model=small_model())
    msg = str(err.value)
    for needle in (
        "bad_G.pth",
        "missing keys",
        "denoise_fn.final_conv.block.3.bias",
        "segment_fn.conv_img.1.bias",
        "unexpected keys",
        "segment_fn.extra.weight",
        "shape mismatches",
        "denoise_fn.downs.0.weight: checkpoint (3, 1, 3, 3)",
    ):
        assert needle in msg, needle
    torch.save({"weird.prefix.w": torch.zeros(1)}, tmp_path / "odd_G.pth")
    with pytest.raises(ValueError, match="unknown key.*weird.prefix.w"):
        load_released_checkpoint(tmp_path / "odd", model=small_model())
    torch.save({"not": "tensors"}, tmp_path / "junk_G.pth")
    with pytest.raises(ValueError, match="dict of tensors"):
        load_released_checkpoint(tmp_path / "junk", model=small_model())
