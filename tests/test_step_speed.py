"""The faster training step computes what the previous one did: paper_adam's fused / foreach Adam
against the per-tensor loop it replaced, and the loss dict of one host copy."""

from __future__ import annotations

import functools

import pytest
import torch
from test_training_support import micro_config

from darlkit.training import DARLTrainer, build_networks, paper_adam
from darlkit.training.step import LOSS_TERMS

STEPS = 4
# The fused kernel evaluates Adam's update in another order than the per-tensor loop (float32
# rounding, ~1e-7 relative per step); over 4 steps at the paper's lr the losses stay within this.
LOSS_RTOL = 1e-5


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


def test_paper_adam_is_fused_on_cpu_and_foreach_elsewhere():
    opt = paper_adam(1e-3, (0.5, 0.999))([torch.nn.Parameter(torch.zeros(3))])
    assert opt.defaults["fused"] is True and opt.defaults["lr"] == 1e-3 and opt.defaults["betas"] == (0.5, 0.999)
    meta = paper_adam(1e-3, (0.5, 0.999))([torch.nn.Parameter(torch.zeros(3, device="meta"))])
    assert meta.defaults["foreach"] is True and not meta.defaults["fused"]


def test_losses_of_n_steps_equal_the_per_tensor_adam_within_rounding():
    loop = functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999), foreach=False)  # the previous default
    old_trainer, old = _run(loop)
    new_trainer, new = _run()
    assert new_trainer.update.opt_g.defaults["fused"] is True
    for a, b in zip(old, new):
        assert a.keys() == b.keys() == set(LOSS_TERMS)
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=LOSS_RTOL, abs=1e-7), k
    assert old[0] == new[0]  # the first step's losses precede any optimiser update: identical
    assert old[-1] != old[0]  # the weights did move
    # Parameters are not compared element-wise: a bias followed by a normalisation has a zero
    # gradient up to rounding noise, which Adam scales to steps of +-lr whatever the kernel, so such
    # elements differ by O(lr) between any two implementations without changing any output. Each
    # element moves by at most lr per step under both (|Adam step| <= lr for beta1^2 < beta2):
    for p, q in zip(old_trainer.model.parameters(), new_trainer.model.parameters()):
        assert (q - p).abs().max().item() <= 2 * STEPS * 2e-4 + 1e-6


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
