"""API input checks of DARL, the diffusion schedule, steps and kernel backends (issue 17)."""

from __future__ import annotations

import warnings

import pytest
import torch

from darlkit.diffusion import GaussianDiffusion, check_timesteps, make_beta_schedule, sample_timesteps
from darlkit.layers import SwitchableSPADE, spadeify
from darlkit.model import DARL, check_mask
from darlkit.nets import DiffusionUNet, SPADEGenerator
from darlkit.training import ModelConfig


@pytest.fixture(scope="module")
def model() -> DARL:
    torch.manual_seed(0)
    unet = DiffusionUNet(base_channels=16, channel_mults=(1, 2), image_size=16, attn_resolutions=(), norm_groups=8)
    gen = SPADEGenerator(base_channels=8, spade_hidden=8, backend="eager")
    return DARL(unet, gen, GaussianDiffusion(timesteps=100), t_a_max=20).eval()


def _image(n=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1


def _mask01(n=2, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, size, size, generator=g) > 0.8).float()


# ---------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_are_cast_to_the_model_dtype(model, dtype):
    x = _image().to(dtype)
    with torch.no_grad():
        got = model.segment(x)
        want = model.segment(x.to(torch.float32))  # the cast is the only difference
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_forward_paths_casts_float64_inputs_and_noise(model):
    a, b, s = _image(), _image(seed=2), _mask01() * 2 - 1
    kw = dict(t_a=torch.tensor([3, 5]), t_b=torch.tensor([10, 60]))
    noise = torch.randn(a.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model.forward_paths(a, b, s, noise=noise, **kw)
        got = model.forward_paths(a.double(), b.double(), s.half(), noise=noise.double(), **kw)
    assert got.seg.dtype == torch.float32 and got.loss_cyc.dtype == torch.float32
    for name in ("seg", "synth", "cycle", "loss_diff", "loss_cyc"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), rtol=0, atol=0)


def test_integer_images_are_refused_with_a_scaling_hint(model):
    with pytest.raises(ValueError, match=r"x must be a floating-point tensor .* got dtype torch.uint8 .*127.5"):
        model.segment(torch.zeros(1, 1, 16, 16, dtype=torch.uint8))


# ---------------------------------------------------------------------- NaN / Inf / range
@pytest.mark.parametrize(
    "fill, message",
    [
        ({(0, 0, 1, 1): float("inf")}, r"x contains \+Inf \(1 value\)$"),
        ({(0, 0, 1, 1): float("-inf"), (1, 0, 2, 2): float("-inf")}, r"x contains -Inf \(2 values\)$"),
        ({(0, 0, 1, 1): float("nan"), (0, 0, 3, 3): float("inf")}, r"x contains NaN \(1 value\) and \+Inf \(1 value\)$"),
    ],
)
def test_non_finite_inputs_are_named(model, fill, message):
    x = _image()
    for idx, v in fill.items():
        x[idx] = v
    with pytest.raises(ValueError, match=message):
        model.segment(x)


def test_float64_values_beyond_float32_are_reported_as_inf(model):
    x = _image().double()
    x[0, 0, 0, 0] = 1e300
    with pytest.raises(ValueError, match=r"contains \+Inf"):
        model.segment(x)


def test_image_outside_the_range_warns(model):
    with pytest.warns(UserWarning, match=r"x has values in \[0, 255\], outside DARL's intensity range \[-1, 1\]"):
        with torch.no_grad():
            model.segment(torch.zeros(1, 1, 16, 16).index_fill_(3, torch.tensor([0]), 255.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            model.segment(_image() * 1.4)  # within the tolerance (0.5): silent
    with pytest.warns(UserWarning, match="angiogram has values"):
        model.forward_paths(_image() * 200, _image(), _mask01())


# ---------------------------------------------------------------------- masks
def test_zero_one_masks_equal_minus_one_one_masks(model):
    a, b, m01 = _image(), _image(seed=2), _mask01()
    kw = dict(t_a=torch.tensor([3, 5]), t_b=torch.tensor([10, 60]), noise=torch.randn(a.shape))
    with torch.no_grad():
        ref = model.forward_paths(a, b, m01 * 2 - 1, **kw)
        for mask in (m01, m01.bool(), m01.to(torch.uint8)):
            got = model.forward_paths(a, b, mask, **kw)
            torch.testing.assert_close(got.loss_cyc, ref.loss_cyc, rtol=0, atol=0)
            torch.testing.assert_close(got.synth, ref.synth, rtol=0, atol=0)


@pytest.mark.parametrize(
    "values, message",
    [
        ((0.0, 255.0), r"got other values such as 255"),
        ((-1.0, 0.5), r"got other values such as 0.5"),
        ((-1.0, 0.0, 1.0), r"got a mix of -1, 0 and 1"),
    ],
)
def test_masks_outside_both_sets_are_refused(values, message):
    ref = torch.zeros(1, 1, 4, 4)
    mask = torch.tensor(values).repeat(16)[:16].reshape(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"mask values must be in \{-1, 1\} or \{0, 1\}.*" + message):
        check_mask(mask, ref)
    nan = torch.ones(1, 1, 4, 4)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"mask contains NaN \(1 value\)"):
        check_mask(nan, ref)


# ---------------------------------------------------------------------- steps
def test_step_errors_quote_the_right_range(model):
    a, b, s = _image(), _image(seed=2), _mask01()
    with pytest.raises(ValueError, match=r"t_a must lie in \[0, t_a_max=20\), got min 3 and max 150"):
        model.forward_paths(a, b, s, t_a=torch.tensor([3, 150]))  # beyond T too: still t_a_max's range
    with pytest.raises(ValueError, match=r"t_a must lie in \[0, t_a_max=20\), got 20$"):
        model.forward_paths(a, b, s, t_a=20)
    with pytest.raises(ValueError, match=r"t_b must lie in \[0, 100\), got min -1 and max 4"):
        model.forward_paths(a, b, s, t_b=torch.tensor([-1, 4]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 100\), got 100"):
        model.segment(a, t=100)
    with pytest.raises(TypeError, match=r"t_b must be an int64 or int32 tensor"):
        model.forward_paths(a, b, s, t_b=torch.tensor([1.0, 2.0]))


def test_check_timesteps_broadcasts_a_single_step_and_refuses_other_shapes():
    for single in (torch.tensor(4), torch.tensor([4], dtype=torch.int32), 4):
        got = check_timesteps(single, 3, 10)
        assert got.dtype == torch.int64 and got.tolist() == [4, 4, 4]
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        check_timesteps(torch.tensor([1, 2]), 3, 10)
    with pytest.raises(ValueError, match="upper must be an int >= 1"):
        check_timesteps(0, 3, 0)


def test_one_step_draw_everywhere(model):
    """The model's own t_a/t_b draws and GaussianDiffusion's are sample_timesteps' draws."""
    want = sample_timesteps(6, 20, generator=torch.Generator().manual_seed(5))
    assert torch.equal(want, torch.randint(0, 20, (6,), generator=torch.Generator().manual_seed(5)))
    got = model.diffusion.sample_timesteps(6, 20, generator=torch.Generator().manual_seed(5))
    assert torch.equal(got, want)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        paths = model.forward_paths(_image(), _image(seed=2), _mask01(), generator=g)
    g2 = torch.Generator().manual_seed(7)
    assert torch.equal(paths.t_a, sample_timesteps(2, 20, generator=g2))
    assert torch.equal(paths.t_b, sample_timesteps(2, 100, generator=g2))


# ---------------------------------------------------------------------- schedules
def test_decreasing_linear_schedules_are_refused():
    for name in ("linear", "quad", "warmup10", "sigmoid"):
        with pytest.raises(ValueError, match=rf"linear_start must be <= linear_end for the '{name}' schedule"):
            make_beta_schedule(name, 10, linear_start=0.02, linear_end=1e-4)
    with pytest.raises(ValueError, match=r"linear_start=0.01 > linear_end=1e-06"):
        GaussianDiffusion(linear_start=1e-2, linear_end=1e-6)
    assert GaussianDiffusion("cosine", timesteps=10, linear_start=0.02, linear_end=1e-4).num_timesteps == 10
    assert make_beta_schedule("linear", 5, 1e-3, 1e-3).tolist() == [1e-3] * 5  # equal ends: constant


def test_a_beta_of_one_before_the_last_step_is_refused():
    with pytest.raises(ValueError, match=r"betas must be < 1 before the last step .* beta\[0\] = 1.0"):
        GaussianDiffusion("const", timesteps=10, linear_end=1.0)
    with pytest.raises(ValueError, match=r"beta\[1\] = 1.0"):
        GaussianDiffusion(betas=[0.1, 1.0, 0.2])
    assert GaussianDiffusion("jsd", timesteps=10).betas[-1] == 1.0  # only the last may be 1


# ---------------------------------------------------------------------- backends
def test_unknown_backend_is_refused_at_construction():
    msg = r"backend must be one of \('auto', 'eager', 'compile', 'triton'\), got 'cuda'"
    with pytest.raises(ValueError, match=msg):
        SPADEGenerator(base_channels=8, spade_hidden=8, backend="cuda")
    with pytest.raises(ValueError, match=msg):
        SwitchableSPADE(4, 2, hidden_channels=4, backend="cuda")
    with pytest.raises(ValueError, match=msg):
        spadeify(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)), label_nc=2, backend="cuda")
    with pytest.raises(ValueError, match=r"ModelConfig generator: backend must be one of"):
        ModelConfig.preset("tiny", {"generator.backend": "cuda"})
    with pytest.raises(TypeError, match="backend must be a str"):
        SwitchableSPADE(4, 2, hidden_channels=4, backend=3)
