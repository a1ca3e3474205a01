"""Beta schedules and GaussianDiffusion: float64 accuracy, forward/posterior maths, sampling."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given
from hypothesis import strategies as st

from darlkit.diffusion import BETA_SCHEDULES, SCHEDULE_BUFFERS, GaussianDiffusion, make_beta_schedule

# ---------------------------------------------------------------------------------------- helpers


def _reference_buffers(betas: np.ndarray) -> dict[str, np.ndarray]:
    """Float64 schedule quantities, written out step by step in plain python."""
    T = len(betas)
    acp = np.empty(T)
    prod = 1.0
    for i, b in enumerate(betas.tolist()):
        prod = prod * (1.0 - b)
        acp[i] = prod
    prev = np.concatenate([[1.0], acp[:-1]])
    alphas = 1.0 - betas
    with np.errstate(divide="ignore", invalid="ignore"):
        var = betas * (1.0 - prev) / (1.0 - acp)
        return {
            "betas": betas,
            "alphas_cumprod": acp,
            "alphas_cumprod_prev": prev,
            "sqrt_alphas_cumprod": np.sqrt(acp),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - acp),
            "log_one_minus_alphas_cumprod": np.log(1.0 - acp),
            "sqrt_recip_alphas_cumprod": 1.0 / np.sqrt(acp),
            "sqrt_recipm1_alphas_cumprod": np.sqrt((1.0 - acp) / acp),
            "posterior_variance": var,
            "posterior_log_variance_clipped": np.log(np.clip(var, 1e-20, None)),
            "posterior_mean_coef1": betas * np.sqrt(prev) / (1.0 - acp),
            "posterior_mean_coef2": (1.0 - prev) * np.sqrt(alphas) / (1.0 - acp),
        }


def _f32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64)).float()


SMALL = dict(schedule="linear", timesteps=50, linear_start=1e-4, linear_end=2e-2)

# ---------------------------------------------------------------------------------------- schedules


@given(
    name=st.sampled_from(BETA_SCHEDULES),
    timesteps=st.integers(1, 3000),
    start=st.floats(1e-7, 5e-3),
    end=st.floats(5e-3, 0.2),
)
def test_schedule_properties(name: str, timesteps: int, start: float, end: float) -> None:
    betas = make_beta_schedule(name, timesteps, linear_start=start, linear_end=end)
    assert isinstance(betas, np.ndarray) and betas.dtype == np.float64 and betas.shape == (timesteps,)
    assert np.all(betas > 0) and np.all(betas <= 1)
    acp = np.cumprod(1.0 - betas)
    assert np.all(np.diff(acp) < 0), "alphas_cumprod must be strictly decreasing"
    assert acp[0] <= 1.0
    if name == "jsd":
        assert acp[-1] == 0.0 and np.all(acp[:-1] > 0)  # last beta is exactly 1
    else:
        assert np.all(acp > 0)


@given(name=st.sampled_from(BETA_SCHEDULES), timesteps=st.integers(1, 2500))
def test_buffers_are_float32_casts_of_float64_values(name: str, timesteps: int) -> None:
    diff = GaussianDiffusion(name, timesteps, linear_start=1e-5, linear_end=2e-2)
    betas = make_beta_schedule(name, timesteps, linear_start=1e-5, linear_end=2e-2)
    ref = _reference_buffers(betas)
    # alphas_cumprod against a hand-written float64 product
    np.testing.assert_allclose(np.cumprod(1.0 - betas), ref["alphas_cumprod"], rtol=1e-14, atol=0)
    for key in SCHEDULE_BUFFERS:
        buf = getattr(diff, key)
        assert buf.dtype == torch.float32 and buf.shape == (timesteps,)
        expected = _f32(ref[key])
        # exactly the float32 rounding of the float64 value
        np.testing.assert_array_equal(buf.numpy(), expected.numpy(), err_msg=key)
    assert diff.num_timesteps == timesteps


@given(timesteps=st.integers(1, 4000))
def test_linear_matches_numpy_linspace(timesteps: int) -> None:
    betas = make_beta_schedule("linear", timesteps, 1e-6, 1e-2)
    np.testing.assert_allclose(betas, np.linspace(1e-6, 1e-2, timesteps), rtol=0, atol=1e-15)


def test_named_schedules_against_formulas() -> None:
    T = 1000
    quad = make_beta_schedule("quad", T, 1e-4, 2e-2)
    np.testing.assert_allclose(quad, np.linspace(1e-2, 2e-2**0.5, T) ** 2, rtol=1e-14)
    np.testing.assert_array_equal(make_beta_schedule("scaled_linear", T, 1e-4, 2e-2), quad)

    w10 = make_beta_schedule("warmup10", T, 1e-4, 2e-2)
    np.testing.assert_allclose(w10[:100], np.linspace(1e-4, 2e-2, 100), atol=1e-15)
    assert np.all(w10[100:] == 2e-2)
    w50 = make_beta_schedule("warmup50", T, 1e-4, 2e-2)
    np.testing.assert_allclose(w50[:500], np.linspace(1e-4, 2e-2, 500), atol=1e-15)
    assert np.all(w50[500:] == 2e-2)
    assert np.all(make_beta_schedule("const", T, 1e-4, 2e-2) == 2e-2)

    jsd = make_beta_schedule("jsd", T)
    np.testing.assert_allclose(jsd, 1.0 / np.arange(T, 0, -1), rtol=1e-15)
    # prod_{k<=t} (1 - 1/(T-k)) telescopes to (T - 1 - t) / T
    np.testing.assert_allclose(np.cumprod(1 - jsd), (T - 1 - np.arange(T)) / T, atol=1e-13)

    s = 8e-3
    cos = make_beta_schedule("cosine", T, cosine_s=s)
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * math.pi / 2) ** 2
    acp = np.cumprod(1 - cos)
    unclipped = cos < 0.999
    assert cos.max() == pytest.approx(0.999) and unclipped[:-1].all()
    np.testing.assert_allclose(acp[:-1], (f[1:] / f[0])[:-1], rtol=1e-10)

    sig = make_beta_schedule("sigmoid", T, 1e-4, 2e-2)
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-np.linspace(-6, 6, T))) * (2e-2 - 1e-4) + 1e-4, rtol=1e-14)
    assert np.all(np.diff(sig) > 0)


def test_every_documented_name_is_accepted_and_vice_versa() -> None:
    doc = make_beta_schedule.__doc__
    for name in BETA_SCHEDULES:
        assert f'``"{name}"``' in doc
        make_beta_schedule(name, 10)
    with pytest.raises(ValueError) as err:
        make_beta_schedule("cosine_v2", 10)
    for name in BETA_SCHEDULES:
        assert name in str(err.value)


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(name="linear", timesteps=0), ValueError),
        (dict(name="linear", timesteps=-5), ValueError),
        (dict(name="linear", timesteps=10.0), TypeError),
        (dict(name="linear", timesteps=True), TypeError),
        (dict(name=3, timesteps=10), TypeError),
        (dict(name="linear", timesteps=10, linear_start=0.0), ValueError),
        (dict(name="linear", timesteps=10, linear_end=1.5), ValueError),
        (dict(name="linear", timesteps=10, linear_end=float("nan")), ValueError),
        (dict(name="cosine", timesteps=10, cosine_s=-0.1), ValueError),
        (dict(name="cosine", timesteps=10, cosine_s=float("inf")), ValueError),
    ],
)
def test_schedule_bad_inputs(kwargs: dict, exc: type) -> None:
    with pytest.raises(exc):
        make_beta_schedule(**kwargs)


# ---------------------------------------------------------------------------------------- module


def test_darl_defaults_and_checkpoint_keys() -> None:
    diff = GaussianDiffusion()
    assert diff.num_timesteps == 2000 and diff.schedule == "linear"
    assert list(diff.state_dict().keys()) == list(SCHEDULE_BUFFERS)
    assert diff.betas[0].item() == np.float32(1e-6) and diff.betas[-1].item() == np.float32(1e-2)
    # alpha_bar_T = prod(1 - beta) in float64, stored float32
    expected = np.prod(1.0 - np.linspace(1e-6, 1e-2, 2000))
    assert diff.alphas_cumprod[-1].item() == pytest.approx(expected, rel=1e-6)
    # a state dict with the released key names loads strictly, and survives torch.save
    buf = io.BytesIO()
    torch.save({k: v.clone() for k, v in diff.state_dict().items()}, buf)
    buf.seek(0)
    other = GaussianDiffusion("cosine", 2000)
    other.load_state_dict(torch.load(buf, weights_only=True))
    for key in SCHEDULE_BUFFERS:
        assert torch.equal(getattr(other, key), getattr(diff, key))


def test_betas_override() -> None:
    betas = make_beta_schedule("linear", 2000, 1e-6, 1e-2)
    diff = GaussianDiffusion("cosine", 7, betas=betas)
    assert diff.num_timesteps == 2000 and diff.schedule == "custom"
    ref = GaussianDiffusion()
    for key in SCHEDULE_BUFFERS:
        assert torch.equal(getattr(diff, key), getattr(ref, key))
    small = GaussianDiffusion(betas=torch.tensor([0.1, 0.2, 0.3]))
    assert small.num_timesteps == 3
    assert small.alphas_cumprod.tolist() == pytest.approx([0.9, 0.72, 0.504], rel=1e-6)
    for bad in ([], [[0.1, 0.2]], [0.0, 0.1], [0.1, 1.2], [0.1, float("nan")]):
        with pytest.raises(ValueError, match="betas"):
            GaussianDiffusion(betas=bad)
    with pytest.raises(TypeError, match="betas"):
        GaussianDiffusion(betas=["a", "b"])


def test_buffers_keep_float32_under_dtype_casts_and_follow_devices() -> None:
    diff = GaussianDiffusion(**SMALL)
    before = {k: v.clone() for k, v in diff.state_dict().items()}
    parent = nn.Module()
    parent.lin = nn.Linear(2, 2)
    parent.diffusion = diff
    for cast in (lambda m: m.to(torch.bfloat16), lambda m: m.half(), lambda m: m.double(), lambda m: m.float()):
        cast(parent)
        for key in SCHEDULE_BUFFERS:
            assert getattr(diff, key).dtype == torch.float32
            assert torch.equal(getattr(diff, key), before[key])
    assert parent.lin.weight.dtype == torch.float32  # the last cast was .float()
    parent.to(torch.bfloat16)
    assert parent.lin.weight.dtype == torch.bfloat16
    meta = GaussianDiffusion(**SMALL).to("meta")
    assert meta.betas.device.type == "meta" and meta.betas.dtype == torch.float32


def test_q_sample_monte_carlo_moments() -> None:
    diff = GaussianDiffusion()
    m = 40000
    t = torch.tensor([0, 10, 500, 1999])
    x0 = torch.full((4, m), 0.7, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1234)
    xt = diff.q_sample(x0, t, generator=gen)
    acp = np.cumprod(1 - np.linspace(1e-6, 1e-2, 2000))[t.numpy()]
    mean_ref = np.sqrt(acp) * 0.7
    var_ref = 1 - acp
    mean = xt.mean(dim=1).numpy()
    var = xt.var(dim=1).numpy()
    # 5 standard errors of the sample mean and variance of a Gaussian
    assert np.all(np.abs(mean - mean_ref) <= 5 * np.sqrt(var_ref / m))
    assert np.all(np.abs(var - var_ref) <= 5 * var_ref * np.sqrt(2.0 / m))


def test_q_sample_formula_and_inverse() -> None:
    diff = GaussianDiffusion()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 1, 8, 8, generator=gen, dtype=torch.float64) * 2 - 1
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 1, 199, 1000, 1998, 1999])
    xt = diff.q_sample(x0, t, noise)
    acp = torch.from_numpy(np.cumprod(1 - np.linspace(1e-6, 1e-2, 2000)))[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(xt, acp.sqrt() * x0 + (1 - acp).sqrt() * noise, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(diff.predict_start_from_noise(xt, t, noise), x0, rtol=0, atol=1e-4)
    # float32 path
    x32, n32 = x0.float(), noise.float()
    rec = diff.predict_start_from_noise(diff.q_sample(x32, t, n32), t, n32)
    torch.testing.assert_close(rec, x32, rtol=0, atol=2e-3)
    # python int t broadcasts to the batch, int32 tensors equal int64 ones
    torch.testing.assert_close(diff.q_sample(x0, 5, noise), diff.q_sample(x0, torch.full((6,), 5), noise))
    torch.testing.assert_close(diff.q_sample(x0, t.int(), noise), xt)


def test_q_posterior_matches_bayes_rule() -> None:
    diff = GaussianDiffusion()
    gen = torch.Generator().manual_seed(3)
    t = torch.tensor([0, 1, 2, 50, 777, 1999])
    x0 = torch.rand(6, 1, 4, 4, generator=gen, dtype=torch.float64) * 2 - 1
    xt = diff.q_sample(x0, t, generator=gen)
    mean, var, log_var = diff.q_posterior(x0, xt, t)
    assert var.shape == (6, 1, 1, 1) and log_var.shape == (6, 1, 1, 1)
    c1 = diff.posterior_mean_coef1[t].double().view(-1, 1, 1, 1)
    c2 = diff.posterior_mean_coef2[t].double().view(-1, 1, 1, 1)
    torch.testing.assert_close(mean, c1 * x0 + c2 * xt)
    # independent: product of q(x_{t-1} | x_0) = N(sqrt(a_prev) x0, 1 - a_prev) and
    # q(x_t | x_{t-1}) = N(sqrt(1 - beta) x_{t-1}, beta), in float64
    betas = np.linspace(1e-6, 1e-2, 2000)
    acp = np.cumprod(1 - betas)
    for i, step in enumerate(t.tolist()):
        if step == 0:  # x_{-1} is x_0 itself: zero variance, mean x0
            exp_mean, exp_var = x0[i], 0.0
        else:
            a_prev, beta = acp[step - 1], betas[step]
            precision = 1 / (1 - a_prev) + (1 - beta) / beta
            exp_var = 1 / precision
            exp_mean = exp_var * (math.sqrt(a_prev) * x0[i] / (1 - a_prev) + math.sqrt(1 - beta) * xt[i] / beta)
        torch.testing.assert_close(mean[i], exp_mean, rtol=1e-5, atol=1e-6)
        assert var[i].item() == pytest.approx(exp_var, rel=1e-5, abs=1e-30)
        assert log_var[i].item() == pytest.approx(math.log(max(exp_var, 1e-20)), rel=1e-6)


def _oracle(diff: GaussianDiffusion, x_star: float):
    """The exact eps-predictor for data concentrated at the constant x_star."""

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = diff.alphas_cumprod[t].to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
        return (x_t - a.sqrt() * x_star) / (1 - a).sqrt()

    return model_fn


def test_p_mean_variance_with_true_noise_is_the_posterior() -> None:
    diff = GaussianDiffusion(**SMALL)
    gen = torch.Generator().manual_seed(5)
    x0 = torch.rand(3, 1, 4, 4, generator=gen) * 1.8 - 0.9
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.tensor([0, 20, 49])
    xt = diff.q_sample(x0, t, noise)
    seen = []

    def model_fn(x, tt):
        seen.append(tt)
        return noise

    got = diff.p_mean_variance(model_fn, xt, t)
    ref = diff.q_posterior(x0, xt, t)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert seen[0].dtype == torch.int64 and seen[0].tolist() == [0, 20, 49]


def test_p_sample_noise_only_after_t0_and_deterministic() -> None:
    diff = GaussianDiffusion(**SMALL)
    x = torch.randn(2, 1, 4, 4)
    fn = lambda x_t, t: 0.1 * x_t  # noqa: E731
    mean0, _, _ = diff.p_mean_variance(fn, x, 0)
    out0 = diff.p_sample(fn, x, 0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out0, mean0, rtol=0, atol=0)
    t = torch.tensor([0, 30])
    a = diff.p_sample(fn, x, t, generator=torch.Generator().manual_seed(7))
    b = diff.p_sample(fn, x, t, generator=torch.Generator().manual_seed(7))
    mean, _, log_var = diff.p_mean_variance(fn, x, t)
    assert torch.equal(a, b)
    torch.testing.assert_close(a[0], mean[0], rtol=0, atol=0)
    z = (a[1] - mean[1]) / torch.exp(0.5 * log_var[1])
    torch.testing.assert_close(z, torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(7))[1])


def test_p_sample_loop_runs_deterministic_and_recovers_point_mass() -> None:
    diff = GaussianDiffusion(**SMALL)
    calls = []

    def toy(x_t, t):
        calls.append(int(t[0]))
        return 0.1 * x_t

    a = diff.p_sample_loop(toy, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    b = diff.p_sample_loop(toy, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0), progress=True)
    c = diff.p_sample_loop(toy, (2, 1, 4, 4), generator=torch.Generator().manual_seed(1))
    assert calls[:50] == list(range(49, -1, -1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (2, 1, 4, 4) and a.abs().max() <= 1.0  # last step returns the clipped x0 estimate
    # with the exact noise predictor of a point mass at 0.5, the chain ends at 0.5
    out = diff.p_sample_loop(_oracle(diff, 0.5), (3, 1, 4, 4), generator=torch.Generator().manual_seed(2),
                             dtype=torch.float64)
    torch.testing.assert_close(out, torch.full_like(out, 0.5), rtol=0, atol=1e-5)
    start = torch.randn(1, 1, 2, 2)
    torch.testing.assert_close(diff.p_sample_loop(_oracle(diff, -0.25), (1, 1, 2, 2), noise=start),
                               torch.full((1, 1, 2, 2), -0.25), rtol=0, atol=1e-4)


def test_training_loss_values_and_gradients() -> None:
    diff = GaussianDiffusion(**SMALL)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=gen) * 2 - 1
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.tensor([0, 5, 10, 49])
    zero = diff.training_loss(lambda x, tt: torch.zeros_like(x), x0, t, noise)
    torch.testing.assert_close(zero, noise.pow(2).mean())
    assert diff.training_loss(lambda x, tt: noise, x0, t, noise).item() == 0.0
    net = nn.Conv2d(1, 1, 3, padding=1)
    loss = diff.training_loss(lambda x, tt: net(x), x0, t, noise)
    loss.backward()
    assert loss.ndim == 0 and net.weight.grad is not None and net.weight.grad.abs().sum() > 0
    l1 = diff.training_loss(lambda x, tt: 0.5 * x, x0, generator=torch.Generator().manual_seed(9))
    l2 = diff.training_loss(lambda x, tt: 0.5 * x, x0, generator=torch.Generator().manual_seed(9))
    assert l1.item() == l2.item()


def test_sample_timesteps() -> None:
    diff = GaussianDiffusion()
    t = diff.sample_timesteps(20000, max_t=200, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.int64 and t.shape == (20000,)
    assert t.min().item() == 0 and t.max().item() == 199
    counts = torch.bincount(t, minlength=200).double()
    chi2 = ((counts - 100.0) ** 2 / 100.0).sum().item()
    assert chi2 < 300  # 199 degrees of freedom: p < 1e-5 above this
    full = diff.sample_timesteps(5000, generator=torch.Generator().manual_seed(1))
    assert full.max().item() < 2000 and full.max().item() > 1900
    for bad in (0, 2001, -1, 2.0):
        with pytest.raises(ValueError, match="max_t"):
            diff.sample_timesteps(4, max_t=bad)
    with pytest.raises(ValueError, match="batch"):
        diff.sample_timesteps(0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_compute_in_their_dtype(dtype: torch.dtype) -> None:
    diff = GaussianDiffusion()
    before = {k: v.clone() for k, v in diff.state_dict().items()}
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    noise = torch.randn(x0.shape)
    t = torch.tensor([3, 1500])
    ref = diff.q_sample(x0, t, noise)
    out = diff.q_sample(x0.to(dtype), t, noise.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
    mean, var, log_var = diff.q_posterior(x0.to(dtype), out, t)
    assert mean.dtype == var.dtype == log_var.dtype == dtype
    assert diff.predict_start_from_noise(out, t, noise.to(dtype)).dtype == dtype
    assert diff.training_loss(lambda x, tt: x, x0.to(dtype), t, noise.to(dtype)).dtype == dtype
    assert diff.p_sample(lambda x, tt: x, out, t).dtype == dtype
    for key in SCHEDULE_BUFFERS:
        buf = getattr(diff, key)
        assert buf.dtype == torch.float32 and torch.equal(buf, before[key])


def test_bad_inputs_raise_clear_errors() -> None:
    diff = GaussianDiffusion(**SMALL)
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(TypeError, match="t must be an int64 or int32"):
        diff.q_sample(x, torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="t must be an int64 or int32"):
        diff.q_sample(x, torch.tensor([1, 2], dtype=torch.int16))
    with pytest.raises(TypeError, match="t must be a python int"):
        diff.q_sample(x, 1.0)
    with pytest.raises(TypeError, match="t must be a python int"):
        diff.q_sample(x, True)
    with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
        diff.q_sample(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
        diff.q_sample(x, torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match=r"\[0, 50\)"):
        diff.q_sample(x, torch.tensor([0, 50]))
    with pytest.raises(ValueError, match=r"\[0, 50\)"):
        diff.q_sample(x, -1)
    with pytest.raises(TypeError, match="x0 must be a floating-point"):
        diff.q_sample(torch.zeros(2, 4, dtype=torch.int64), 1)
    with pytest.raises(TypeError, match="x0 must be a torch.Tensor"):
        diff.q_sample(np.zeros((2, 4)), 1)
    with pytest.raises(ValueError, match="noise shape"):
        diff.q_sample(x, 1, torch.zeros(2, 1, 4, 5))
    with pytest.raises(TypeError, match="noise dtype"):
        diff.q_sample(x, 1, torch.zeros(2, 1, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="x_t shape"):
        diff.q_posterior(x, torch.zeros(2, 1, 4, 3), 1)
    with pytest.raises(ValueError, match="model_fn output"):
        diff.p_sample(lambda a, b: a[:, :, :2], x, 1)
    with pytest.raises(TypeError, match="model_fn must be callable"):
        diff.training_loss("not a model", x, 1)
    with pytest.raises(ValueError, match="shape"):
        diff.p_sample_loop(lambda a, b: a, (2, 0, 4))
    with pytest.raises(ValueError, match="noise shape"):
        diff.p_sample_loop(lambda a, b: a, (2, 1, 4, 4), noise=torch.zeros(1, 1, 4, 4))
    with pytest.raises(TypeError, match="dtype"):
        diff.p_sample_loop(lambda a, b: a, (2, 1), dtype=torch.int64)
    with pytest.raises(ValueError, match="unknown beta schedule"):
        GaussianDiffusion("exponential")
    with pytest.raises(ValueError, match="timesteps"):
        GaussianDiffusion(timesteps=0)
