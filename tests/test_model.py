"""Tests of darlkit.model.DARL: paths, one-step segmentation, polyphase, gradients, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from darlkit.diffusion import GaussianDiffusion
from darlkit.model import DARL, DARLPaths, mask_to_onehot
from darlkit.nets import DiffusionUNet, PatchDiscriminator, SPADEGenerator
from darlkit.polyphase import polyphase_merge, polyphase_split


def small_darl(t_a_max: int = 20, timesteps: int = 100) -> DARL:
    unet = DiffusionUNet(base_channels=32, channel_mults=(1, 2), image_size=32, attn_resolutions=(16,))
    gen = SPADEGenerator(base_channels=16, spade_hidden=16, backend="eager")
    return DARL(unet, gen, GaussianDiffusion(timesteps=timesteps), t_a_max=t_a_max)


@pytest.fixture(scope="module")
def model() -> DARL:
    torch.manual_seed(0)
    return small_darl()


def batch(n: int = 2, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 1, size, size, generator=g) * 2 - 1
    b = torch.rand(n, 1, size, size, generator=g) * 2 - 1
    s = torch.where(torch.rand(n, 1, size, size, generator=g) > 0.8, 1.0, -1.0)
    return a, b, s


def test_mask_to_onehot():
    m = torch.tensor([[[[-1.0, 0.0, 0.3, 1.0]]]])
    oh = mask_to_onehot(m)
    assert oh.shape == (1, 2, 1, 4)
    torch.testing.assert_close(oh[0, :, 0], torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]))


def test_forward_paths_match_manual_recomputation(model):
    model.eval()  # spectral norm: no power iteration, so repeated calls are comparable
    a, b, s = batch()
    noise = torch.randn_like(a)
    t_a, t_b = torch.tensor([3, 11]), torch.tensor([40, 97])
    with torch.no_grad():
        p = model.forward_paths(a, b, s, t_a=t_a, t_b=t_b, noise=noise)
        q = model.diffusion.q_sample
        xa, xb = q(a, t_a, noise), q(b, t_b, noise)
        # eps_theta runs the A and B inputs as one batch of 2N (same arithmetic as here)
        eps_a, eps_b = model.unet(torch.cat([xa, xb]), torch.cat([t_a, t_b])).chunk(2)
        seg = model.generator(torch.cat([xa, eps_a], 1))
        synth = model.generator(torch.cat([xb, eps_b], 1), mask_to_onehot(s))
        xc = q(synth, t_a, noise)
        cyc = model.generator(torch.cat([xc, model.unet(xc, t_a)], 1))
    assert isinstance(p, DARLPaths)
    tol = dict(atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(p.seg, seg, **tol)
    torch.testing.assert_close(p.synth, synth, **tol)
    torch.testing.assert_close(p.cycle, cyc, **tol)
    torch.testing.assert_close(p.noise_pred, eps_b, **tol)
    assert p.noise is noise and torch.equal(p.t_a, t_a) and torch.equal(p.t_b, t_b)
    torch.testing.assert_close(p.loss_diff, F.mse_loss(eps_b, noise), **tol)
    torch.testing.assert_close(p.loss_cyc, (cyc - s).abs().mean(), **tol)
    for out in (p.seg, p.synth, p.cycle):
        assert out.shape == a.shape and out.abs().max() <= 1


def test_forward_paths_draws_steps_in_range_and_is_seedable(model):
    model.eval()
    a, b, s = batch(n=8, seed=1)
    with torch.no_grad():
        p1 = model.forward_paths(a, b, s, generator=torch.Generator().manual_seed(5))
        p2 = model.forward_paths(a, b, s, generator=torch.Generator().manual_seed(5))
    assert p1.t_a.dtype == torch.int64 and p1.t_a.shape == (8,)
    assert 0 <= int(p1.t_a.min()) and int(p1.t_a.max()) < model.t_a_max
    assert 0 <= int(p1.t_b.min()) and int(p1.t_b.max()) < model.num_timesteps
    assert torch.equal(p1.t_a, p2.t_a) and torch.equal(p1.noise, p2.noise)
    torch.testing.assert_close(p1.seg, p2.seg)


def test_segment_is_one_step_at_t0(model):
    model.eval()
    x = batch()[0]
    with torch.no_grad():
        ref = model.generator(torch.cat([x, model.unet(x, torch.zeros(2, dtype=torch.long))], 1))
        torch.testing.assert_close(model.segment(x), ref)
        torch.testing.assert_close(model(x), ref)


def test_segment_at_t_noises_with_q_sample(model):
    model.eval()
    x = batch()[0]
    noise = torch.randn_like(x)
    t = torch.tensor([7, 0])
    with torch.no_grad():
        out = model.segment(x, t=t, noise=noise)
        xt = model.diffusion.q_sample(x, t, noise)
        xt[1] = x[1]  # t = 0 keeps the clean image
        ref = model.generator(torch.cat([xt, model.unet(xt, t)], 1))
    torch.testing.assert_close(out, ref)


def test_segment_polyphase_equals_four_separate_calls():
    # float64: a batch of 8 and batches of 1 then agree to rounding far below the tolerance
    model = small_darl().double().eval()
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        out = model.segment(x, polyphase=True)
        subs = polyphase_split(x)  # (8, 1, 16, 16), image-major
        parts = [model.segment(subs[i : i + 1]) for i in range(8)]
        ref = polyphase_merge(torch.cat(parts))
        # interleaving by hand for image 0
        manual = torch.empty(1, 1, 32, 32, dtype=torch.float64)
        for k, (i, j) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            manual[..., i::2, j::2] = parts[k]
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(out[:1], manual, atol=1e-10, rtol=1e-9)


def test_synthesize_matches_b_path(model):
    model.eval()
    a, b, s = batch()
    noise, t = torch.randn_like(b), torch.tensor([10, 50])
    with torch.no_grad():
        p = model.forward_paths(a, b, s, t_a=torch.tensor([1, 2]), t_b=t, noise=noise)
        out = model.synthesize(b, s, t, noise=noise)
    # synthesize runs eps_theta on N images, forward_paths on 2N: float rounding only
    torch.testing.assert_close(out, p.synth, atol=2e-3, rtol=1e-2)
    assert (out - p.synth).abs().mean() < 1e-4


def test_gradients_reach_all_trainable_parameters_and_not_frozen_discriminators():
    torch.manual_seed(0)
    model = small_darl()
    model.train()
    d_s, d_a = PatchDiscriminator(base_channels=8), PatchDiscriminator(base_channels=8)
    a, b, s = batch(size=32)
    # Protocol (documented in DARL.forward_paths/trainer): freeze D for the generator step.
    for d in (d_s, d_a):
        d.requires_grad_(False)
    p = model.forward_paths(a, b, s)
    adv = F.mse_loss(d_s(p.seg), torch.ones(1).expand_as(d_s(p.seg))) + F.mse_loss(
        d_a(p.synth), torch.ones(1).expand_as(d_a(p.synth))
    )
    loss = p.loss_diff + 0.2 * adv + 5.0 * p.loss_cyc
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=1e-3)
    opt.zero_grad()
    loss.backward()
    missing = [n for n, q in model.named_parameters() if q.grad is None or not torch.isfinite(q.grad).all()]
    assert missing == []
    zero = [n for n, q in model.named_parameters() if q.grad.abs().sum() == 0]
    assert zero == []
    assert all(q.grad is None for d in (d_s, d_a) for q in d.parameters())
    # Both SPADE paths of G are trained: the mask MLP (B path) and param_norm (A/cycle paths).
    assert model.generator.up_0.norm_0.mlp_gamma.weight.grad.abs().sum() > 0
    assert model.generator.up_0.norm_0.param_norm.weight.grad.abs().sum() > 0


def test_bad_inputs_raise(model):
    a, b, s = batch()
    with pytest.raises(ValueError, match="positive multiples of"):  # 0-px side: nothing to pad
        model.segment(torch.zeros(1, 1, 0, 16))
    with pytest.raises(ValueError, match="noise must have the shape of x"):
        model.segment(torch.zeros(1, 1, 18, 16), t=3, noise=torch.zeros(1, 1, 5, 5))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        model.segment(torch.zeros(1, 2, 16, 16))
    with pytest.raises(ValueError, match="floating-point"):
        model.segment(torch.zeros(1, 1, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NaN"):
        model.segment(torch.full((1, 1, 16, 16), float("nan")))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 100\)"):
        model.segment(a, t=100)
    with pytest.raises(ValueError, match="t_a must lie"):
        model.forward_paths(a, b, s, t_a=torch.tensor([25, 1]))
    with pytest.raises(ValueError, match="mask must have shape"):
        model.forward_paths(a, b, s[:, :, :8])
    with pytest.raises(ValueError, match="background must have"):
        model.forward_paths(a, b[:1], s)
    with pytest.raises(ValueError, match="noise must be"):
        model.forward_paths(a, b, s, noise=torch.zeros(3))
    with pytest.raises(ValueError, match="t_a_max"):
        DARL(model.unet, model.generator, model.diffusion, t_a_max=0)


def test_size_multiple_of_paper_model_is_32():
    m = DARL.__new__(DARL)  # avoid building the full networks: only the property matters
    torch.nn.Module.__init__(m)
    m.unet = DiffusionUNet(base_channels=32, channel_mults=(1, 1, 2, 2, 4, 4), init=None)
    m.generator = SPADEGenerator(base_channels=8, spade_hidden=8, init=None, backend="eager")
    assert m.size_multiple == 32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_paths_match_cpu():
    import copy

    torch.manual_seed(0)
    cpu = small_darl().eval()
    gpu = copy.deepcopy(cpu).cuda()
    a, b, s = batch(size=32)
    noise = torch.randn_like(a)
    t_a, t_b = torch.tensor([3, 11]), torch.tensor([40, 97])
    with torch.no_grad():
        pc = cpu.forward_paths(a, b, s, t_a=t_a, t_b=t_b, noise=noise)
        pg = gpu.forward_paths(a.cuda(), b.cuda(), s.cuda(), t_a=t_a.cuda(), t_b=t_b.cuda(), noise=noise.cuda())
        torch.testing.assert_close(gpu.segment(a.cuda(), polyphase=True).cpu(), cpu.segment(a, polyphase=True), atol=2e-3, rtol=1e-2)
    for name in ("seg", "synth", "cycle", "noise_pred"):
        torch.testing.assert_close(getattr(pg, name).cpu(), getattr(pc, name), atol=2e-3, rtol=1e-2)
