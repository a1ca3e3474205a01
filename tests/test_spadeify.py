"""Tests of darlkit.layers.spadeify (module darlkit.layers.conversion) / SpadeifiedModel."""

from __future__ import annotations

import copy
import pickle
import threading

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from darlkit.layers import SPADEResBlock, SpadeifiedModel, SwitchableSPADE, spadeify


class ResnetBlock(nn.Module):
    def __init__(self, ch: int, norm) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), norm(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), norm(ch),
        )

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """A tiny pix2pix/CycleGAN-style ResNet generator."""

    def __init__(self, in_ch=2, out_ch=1, ngf=4, n_blocks=2, norm=lambda c: nn.InstanceNorm2d(c, affine=True)):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7), norm(ngf), nn.ReLU(True)]
        layers += [nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1), norm(2 * ngf), nn.ReLU(True)]
        layers += [ResnetBlock(2 * ngf, norm) for _ in range(n_blocks)]
        layers += [nn.ConvTranspose2d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1), norm(ngf), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class TinyUNet(nn.Module):
    def __init__(self, ch=8, norm=lambda c: nn.GroupNorm(4, c)):
        super().__init__()
        self.inc = nn.Conv2d(1, ch, 3, padding=1)
        self.down = nn.ModuleDict({"conv": nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1), "norm": norm(2 * ch)})
        self.up = nn.ModuleList([nn.Conv2d(3 * ch, ch, 3, padding=1), norm(ch)])
        self.out = nn.Conv2d(ch, 1, 1)
        self.norm_in = norm(ch)

    def forward(self, x, scale: float = 1.0):
        h0 = F.silu(self.norm_in(self.inc(x)))
        h1 = F.silu(self.down["norm"](self.down["conv"](h0)))
        h = torch.cat([F.interpolate(h1, scale_factor=2.0), h0], 1)
        return self.out(F.silu(self.up[1](self.up[0](h)))) * scale


def _randomize_norms(model: nn.Module) -> nn.Module:
    """Non-trivial affine values and running statistics, as in a trained model."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d, nn.GroupNorm)):
                if m.affine:
                    m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                    m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
                if getattr(m, "running_mean", None) is not None:
                    m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                    m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                    m.num_batches_tracked.fill_(7)
    return model


NORMS = {
    "instance_affine": lambda c: nn.InstanceNorm2d(c, affine=True),
    "instance_plain": lambda c: nn.InstanceNorm2d(c),
    "group": lambda c: nn.GroupNorm(2, c),
    "group_plain": lambda c: nn.GroupNorm(4, c, affine=False, eps=1e-3),
    "batch": lambda c: nn.BatchNorm2d(c, momentum=0.3),
    "batch_plain": lambda c: nn.BatchNorm2d(c, affine=False),
}


def _check_preserved(original: nn.Module, wrapper: SpadeifiedModel) -> None:
    """Non-norm tensors bit-identical under the same key; norm affine/buffers moved to param_norm."""
    before = original.state_dict()
    after = wrapper.model.state_dict()
    replaced = set(wrapper.spade_layers)
    for key, value in before.items():
        owner, _, leaf = key.rpartition(".")
        if owner in replaced:
            assert torch.equal(after[f"{owner}.param_norm.{leaf}"], value), key
            if leaf.startswith(("running_", "num_batches")):
                assert torch.equal(after[f"{owner}.param_free_norm.{leaf}"], value), key
        else:
            assert torch.equal(after[key], value), key
            assert after[key].dtype == value.dtype
    new_keys = {k for k in after if k.rpartition(".")[0].split(".param_")[0].split(".mlp_")[0] not in replaced}
    assert new_keys == set(before) - {k for k in before if k.rpartition(".")[0] in replaced}


@pytest.mark.parametrize("norm", list(NORMS))
@pytest.mark.parametrize("arch", ["resnet", "unet"])
def test_weights_kept_and_no_mask_output_equals_original(norm, arch):
    model = ResnetGenerator(norm=NORMS[norm]) if arch == "resnet" else TinyUNet(norm=NORMS[norm])
    model = _randomize_norms(model).eval()
    in_ch = 2 if arch == "resnet" else 1
    x = torch.randn(2, in_ch, 16, 16)
    with torch.no_grad():
        ref = model(x)
    state = copy.deepcopy(model.state_dict())
    wrapper = spadeify(model, label_nc=2, hidden_channels=8)
    n_norms = sum(isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d, nn.GroupNorm)) for m in model.modules())
    assert len(wrapper.spade_layers) == n_norms > 0
    assert not any(isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d, nn.GroupNorm)) and not any(
        m is sp.param_norm or m is getattr(sp, "param_free_norm", None) for sp in wrapper.spade_layers.values())
        for m in wrapper.model.modules())
    _check_preserved(model, wrapper)
    # the original (inplace=False) is untouched
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not any(isinstance(m, SwitchableSPADE) for m in model.modules())
    with torch.no_grad():
        out = wrapper(x)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        masked = wrapper(x, segmap=torch.randint(0, 2, (2, 16, 16)))
    assert masked.shape == ref.shape and not torch.allclose(masked, ref, atol=1e-3)
    # extra args and kwargs reach the model
    if arch == "unet":
        with torch.no_grad():
            torch.testing.assert_close(wrapper(x, scale=2.0), 2 * ref, rtol=1e-5, atol=1e-5)


def test_conversion_details():
    model = TinyUNet(norm=lambda c: nn.BatchNorm2d(c, eps=1e-3, momentum=None)).double()
    model.down["norm"].weight.requires_grad_(False)
    model.up[1].eval()
    wrapper = spadeify(model, label_nc=3, hidden_channels=5, kernel_size=1)
    layer = wrapper.model.down["norm"]
    assert isinstance(layer, SwitchableSPADE) and layer.norm_type == "batch"
    assert layer.eps == 1e-3 and layer.param_norm.momentum is None and layer.param_free_norm.momentum is None
    assert layer.hidden_channels == 5 and layer.kernel_size == 1 and layer.label_nc == 3
    assert layer.mlp_gamma.weight.dtype == torch.float64
    assert not layer.param_norm.weight.requires_grad and layer.param_norm.bias.requires_grad
    assert wrapper.model.norm_in.training and not wrapper.model.up[1].training
    g = spadeify(TinyUNet(norm=lambda c: nn.GroupNorm(2, c, eps=1e-4)), 2).model.norm_in
    assert g.norm_type == "group" and g.num_groups == 2 and g.eps == 1e-4
    i = spadeify(ResnetGenerator(norm=lambda c: nn.InstanceNorm2d(c)), 2).model.model[2]
    assert i.norm_type == "instance" and torch.equal(i.param_norm.weight, torch.ones(4))
    assert torch.equal(i.param_norm.bias, torch.zeros(4))


def test_masked_call_equals_explicit_layer_calls():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.InstanceNorm2d(4, affine=True), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.GroupNorm(2, 4))
    wrapper = spadeify(model, label_nc=2, hidden_channels=4)
    net = wrapper.model
    x = torch.randn(2, 1, 8, 8)
    labels = torch.randint(0, 2, (2, 8, 8))
    h = net[0](x)
    h = net[2](net[1](h, labels))
    expected = net[4](net[3](h), labels)
    torch.testing.assert_close(wrapper(x, segmap=labels), expected, rtol=0, atol=0)
    # a batch-1 mask is broadcast; a float one-hot gives the same result as the label map
    torch.testing.assert_close(wrapper(x, segmap=labels[:1]), wrapper(x, segmap=labels[:1].expand(2, -1, -1)))
    one_hot = F.one_hot(labels, 2).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(wrapper(x, segmap=one_hot), wrapper(x, segmap=labels), rtol=1e-6, atol=1e-5)


def test_segmap_withdrawn_after_call_and_on_exception():
    class Failing(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.InstanceNorm2d(2)

        def forward(self, x, fail=False):
            y = self.norm(x)
            if fail:
                raise RuntimeError("boom")
            return y

    wrapper = spadeify(Failing(), 2, hidden_channels=4)
    x = torch.randn(1, 2, 4, 4)
    plain = wrapper(x)
    masked = wrapper(x, segmap=torch.ones(1, 4, 4, dtype=torch.long))
    assert not torch.allclose(plain, masked)
    assert torch.equal(wrapper(x), plain)
    with pytest.raises(RuntimeError, match="boom"):
        wrapper(x, segmap=torch.ones(1, 4, 4, dtype=torch.long), fail=True)
    assert wrapper.segmap_context.get() is None
    assert torch.equal(wrapper(x), plain)
    # the layer on its own (outside a wrapper call) is the affine path
    assert torch.equal(wrapper.model.norm(x), plain)


def test_concurrent_threads_keep_their_own_segmap():
    wrapper = spadeify(ResnetGenerator(), 2, hidden_channels=4).eval()
    x = torch.randn(1, 2, 16, 16)
    masks = [None] + [torch.randint(0, 2, (1, 16, 16), generator=torch.Generator().manual_seed(i)) for i in range(3)]
    with torch.no_grad():
        expected = [wrapper(x, segmap=m) for m in masks]
    results: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(masks))}
    barrier = threading.Barrier(len(masks))

    def work(i):
        barrier.wait()
        with torch.no_grad():
            for _ in range(5):
                results[i].append(wrapper(x, segmap=masks[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(masks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, outs in results.items():
        assert len(outs) == 5 and all(torch.equal(o, expected[i]) for o in outs)


def test_wrapper_validates_segmap():
    wrapper = spadeify(ResnetGenerator(), 2, hidden_channels=4)
    x = torch.randn(2, 2, 16, 16)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        wrapper(x, segmap=torch.full((2, 16, 16), 3))
    with pytest.raises(ValueError, match="label_nc=2 channels, got 3"):
        wrapper(x, segmap=torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="finite"):
        wrapper(x, segmap=torch.full((2, 2, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="batch size must be 1 or match x's batch size 2, got 3"):
        wrapper(x, segmap=torch.randint(0, 2, (3, 16, 16)))
    assert wrapper.segmap_context.get() is None


def test_selection_and_errors():
    model = TinyUNet(norm=lambda c: nn.GroupNorm(2, c))
    model.norm_in = nn.InstanceNorm2d(8, affine=True)
    only_group = spadeify(model, 2, norm_types="group")
    assert set(only_group.spade_layers) == {"down.norm", "up.1"}
    assert isinstance(only_group.model.norm_in, nn.InstanceNorm2d)
    filtered = spadeify(model, 2, filter_fn=lambda name, m: name.startswith("up"))
    assert set(filtered.spade_layers) == {"up.1"}
    with pytest.raises(ValueError, match="no norm layer"):
        spadeify(model, 2, norm_types=("batch",))
    with pytest.raises(ValueError, match=r"norm_types must be a non-empty subset of \('instance', 'batch', 'group'\)"):
        spadeify(model, 2, norm_types=("layer",))
    with pytest.raises(ValueError, match="label_nc"):
        spadeify(model, 0)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        spadeify(model, 2, kernel_size=4)
    with pytest.raises(TypeError, match="nn.Module"):
        spadeify(lambda x: x, 2)
    with pytest.raises(TypeError, match="filter_fn must be callable"):
        spadeify(model, 2, filter_fn=3)
    with pytest.raises(TypeError, match="already a SpadeifiedModel"):
        spadeify(only_group, 2)
    # unsupported norm: nothing is changed, even in place
    model.up[1] = nn.InstanceNorm2d(8, track_running_stats=True)
    with pytest.raises(ValueError, match=r"'up.1'.*track_running_stats=True"):
        spadeify(model, 2, inplace=True)
    assert not any(isinstance(m, SwitchableSPADE) for m in model.modules())


def test_inplace_and_shared_norm():
    shared = nn.InstanceNorm2d(3, affine=True)
    model = nn.Sequential(nn.Conv2d(3, 3, 1), shared, nn.Conv2d(3, 3, 1), shared)
    wrapper = spadeify(model, 2, hidden_channels=4, inplace=True)
    assert wrapper.model is model and isinstance(model[1], SwitchableSPADE)
    assert model[1] is model[3]
    assert len(list(wrapper.model.modules())) == len({id(m) for m in wrapper.model.modules()})
    root = spadeify(nn.GroupNorm(1, 3), 2, hidden_channels=4)
    assert isinstance(root.model, SwitchableSPADE) and set(root.spade_layers) == {""}
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(root(x), F.group_norm(x, 1), rtol=0, atol=1e-6)


def test_gradients_follow_the_switch():
    wrapper = spadeify(ResnetGenerator(), 2, hidden_channels=4)
    x = torch.randn(1, 2, 16, 16)
    mlp = [p for n, p in wrapper.named_parameters() if ".mlp_" in n]
    affine = [p for n, p in wrapper.named_parameters() if ".param_norm." in n]
    convs = [p for n, p in wrapper.named_parameters() if ".mlp_" not in n and ".param_norm." not in n]
    wrapper(x).sum().backward()
    assert all(p.grad is None for p in mlp) and all(p.grad is not None for p in affine + convs)
    wrapper.zero_grad(set_to_none=True)
    wrapper(x, segmap=torch.randint(0, 2, (1, 16, 16))).sum().backward()
    assert all(p.grad is None for p in affine) and all(p.grad is not None for p in mlp + convs)


def test_copies_state_dict_and_pickle():
    wrapper = spadeify(ResnetGenerator(), 2, hidden_channels=4).eval()
    x = torch.randn(1, 2, 16, 16)
    mask = torch.randint(0, 2, (1, 16, 16))
    with torch.no_grad():
        ref_plain, ref_masked = wrapper(x), wrapper(x, segmap=mask)
        for clone in (copy.deepcopy(wrapper), pickle.loads(pickle.dumps(wrapper))):
            layers = list(clone.spade_layers.values())
            assert all(layer.segmap_context is clone.segmap_context for layer in layers)
            assert clone.segmap_context is not wrapper.segmap_context
            assert torch.equal(clone(x, segmap=mask), ref_masked) and torch.equal(clone(x), ref_plain)
        fresh = spadeify(ResnetGenerator(), 2, hidden_channels=4).eval()
        fresh.load_state_dict(wrapper.state_dict(), strict=True)
        assert torch.equal(fresh(x, segmap=mask), ref_masked)
    assert all(k.startswith("model.") for k in wrapper.state_dict())


def test_wrapping_hand_written_spade_model():
    class Gen(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = SPADEResBlock(4, 2, label_nc=2, hidden_channels=4)
            self.norm = SwitchableSPADE(2, 2, hidden_channels=4)

        def forward(self, x):
            return self.norm(self.block(x))

    gen = Gen().eval()
    wrapper = SpadeifiedModel(gen, label_nc=2)
    assert len(wrapper.spade_layers) == 4
    x = torch.randn(2, 4, 6, 6)
    mask = torch.randint(0, 2, (2, 12, 12))
    with torch.no_grad():
        expected = gen.norm(gen.block(x, mask), mask)
        torch.testing.assert_close(wrapper(x, segmap=mask), expected, rtol=0, atol=0)
        torch.testing.assert_close(wrapper(x), gen.norm(gen.block(x)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="already bound"):
        SpadeifiedModel(gen, label_nc=2)
    with pytest.raises(ValueError, match="label_nc=2, expected 3"):
        SpadeifiedModel(Gen(), label_nc=3)
    with pytest.raises(ValueError, match="at least one SwitchableSPADE"):
        SpadeifiedModel(nn.Conv2d(1, 1, 1), label_nc=2)
    assert "label_nc=2, spade_layers=4" in repr(wrapper)


@given(
    kind=st.sampled_from(["instance", "group", "batch"]),
    affine=st.booleans(),
    groups=st.sampled_from([1, 2, 4]),
    ch=st.sampled_from([4, 8]),
    hidden=st.integers(1, 6),
    kernel=st.sampled_from([1, 3]),
    seed=st.integers(0, 1000),
)
def test_spadeify_property(kind, affine, groups, ch, hidden, kernel, seed):
    torch.manual_seed(seed)
    norm = {
        "instance": lambda c: nn.InstanceNorm2d(c, affine=affine),
        "group": lambda c: nn.GroupNorm(groups, c, affine=affine),
        "batch": lambda c: nn.BatchNorm2d(c, affine=affine),
    }[kind]
    model = _randomize_norms(ResnetGenerator(ngf=ch, n_blocks=1, norm=norm)).eval()
    x = torch.randn(1, 2, 8, 8)
    wrapper = spadeify(model, 2, hidden_channels=hidden, kernel_size=kernel)
    _check_preserved(model, wrapper)
    assert all(layer.norm_type == kind for layer in wrapper.spade_layers.values())
    with torch.no_grad():
        torch.testing.assert_close(wrapper(x), model(x), rtol=1e-5, atol=1e-5)
        assert wrapper(x, segmap=torch.randint(0, 2, (1, 3, 5))).shape == (1, 1, 8, 8)


def test_compose_spade_example_smoke(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "compose_spade.py"
    spec = importlib.util.spec_from_file_location("compose_spade_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke", "--size", "16"]) == 0
    out = capsys.readouterr().out
    assert "9 SwitchableSPADE layers" in out and out.rstrip().endswith("OK")


def test_segmap_context_feeds_bound_layers_and_an_explicit_segmap_wins():
    from darlkit.layers import SegmapContext

    layer = SwitchableSPADE(4, 2, hidden_channels=4).eval()
    ctx = SegmapContext()
    layer.bind_segmap_context(ctx)
    x = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 2, 8, 8)
    mask[:, 1, :, :4] = 1
    mask[:, 0, :, 4:] = 1
    with torch.no_grad():
        plain, explicit = layer(x), layer(x, mask)
        with ctx.use(mask):
            assert torch.equal(layer(x), explicit)
            assert torch.equal(layer(x, torch.flip(mask, dims=[1])), layer(x, torch.flip(mask, dims=[1])))
            with ctx.use(None):  # nested: no mask inside
                assert torch.equal(layer(x), plain)
            assert ctx.get() is mask
    assert ctx.get() is None
    with pytest.raises(ValueError, match="already bound to another SegmapContext"):
        layer.bind_segmap_context(SegmapContext())
    with pytest.raises(TypeError, match="SegmapContext or None"):
        layer.bind_segmap_context(object())
    layer.bind_segmap_context(None)
    with ctx.use(mask), torch.no_grad():
        assert torch.equal(layer(x), plain)  # unbound: the context is not read
