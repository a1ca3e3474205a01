"""The faster training step computes what the previous one did: paper_adam's foreach Adam against
the per-tensor loop it replaced (bit-identical losses), and the loss dict of one host copy."""

from __future__ import annotations

import functools

import pytest
import torch
from test_training_support import micro_config

from darlkit.training import DARLTrainer, build_networks, paper_adam
from darlkit.training.step import LOSS_TERMS

STEPS = 4


def _batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    return {
        "angiogram": torch.rand(2, 1, 32, 32, generator=g) * 2 - 1,
        "background": torch.rand(2, 1, 32, 32, generator=g) * 2 - 1,
        "mask": torch.where(torch.rand(2, 1, 32, 32, generator=g) > 0.8, 1.0, -1.0),
    }


def _run(optimizer=None, **overrides):
    cfg = micro_config(lr=2e-4, lr_d=2e-4, **overrides)  # larger than the paper's: the weights move
    model, d_s, d_a = build_networks(cfg)
    trainer = DARLTrainer(model, d_s, d_a, cfg, progress=False, optimizer_g=optimizer, optimizer_d=optimizer)
    losses = [trainer.train_step(_batch(k)) for k in range(STEPS)]
    return trainer, losses


def test_paper_adam_is_the_foreach_adam_with_the_given_settings():
    opt = paper_adam(1e-3, (0.5, 0.999))([torch.nn.Parameter(torch.zeros(3))])
    assert opt.defaults["foreach"] is True and not opt.defaults["fused"]
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["betas"] == (0.5, 0.999)


def test_foreach_adam_equals_the_per_tensor_loop_elementwise():
    """On a plain model the two Adams give the same weights (PyTorch's fused kernel only to rounding)."""
    def fit(make):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        opt = make(list(net.parameters()))
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(64, 8, generator=g), torch.randn(64, 1, generator=g)
        for _ in range(20):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
        return [p.detach().clone() for p in net.parameters()]

    start = fit(lambda params: torch.optim.SGD(params, lr=0.0))  # no update: the initial weights
    loop = fit(lambda params: torch.optim.Adam(params, lr=1e-2, betas=(0.5, 0.999), foreach=False))
    ours = fit(paper_adam(1e-2, (0.5, 0.999)))
    fused = fit(lambda params: torch.optim.Adam(params, lr=1e-2, betas=(0.5, 0.999), fused=True))
    for a, b, c, p0 in zip(loop, ours, fused, start):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
        torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-6)
        assert (a - p0).abs().max() > 1e-2  # the weights moved (20 steps of up to lr each)


def test_losses_of_n_steps_equal_the_per_tensor_adam_exactly():
    loop = functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999), foreach=False)  # the previous default
    old_trainer, old = _run(loop)
    new_trainer, new = _run()
    assert new_trainer.update.opt_g.defaults["foreach"] is True
    assert all(a.keys() == set(LOSS_TERMS) for a in old)
    assert old == new  # every loss term of every step, bit for bit
    assert old[-1] != old[0]  # the weights did move
    for p, q in zip(old_trainer.model.parameters(), new_trainer.model.parameters()):
        assert torch.equal(p, q)


def test_loss_dict_holds_python_floats_and_the_polarity_term():
    _, losses = _run(polarity_weight=0.5)
    assert all(type(v) is float for v in losses[0].values())
    assert set(losses[0]) == set(LOSS_TERMS) | {"loss_pol"}


@pytest.mark.slow
def test_train_step_benchmark_interleaves_rounds_and_reports_ratios():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"
    spec = importlib.util.spec_from_file_location("train_step_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = {r["variant"]: r for r in bench.run(["eager", "eager_loop_adam"], "tiny", 32, warmup=1, repeats=2)}
    assert set(rows) == {"eager", "eager_loop_adam"} and not any("error" in r for r in rows.values())
    assert all(len(r["runs"]) == 2 and r["median_s"] > 0 for r in rows.values())
    assert rows["eager"]["speedup_vs_eager"] == 1.0
    assert rows["eager_loop_adam"]["speedup_vs_eager"] == rows["eager"]["median_s"] / rows["eager_loop_adam"]["median_s"]
