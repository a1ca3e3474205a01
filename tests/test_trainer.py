"""DARLTrainer: one iteration against a hand-written reference, resume bit-identity, EMA, AMP,
validation outputs."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from darlkit.losses import ImagePool
from darlkit.training import DARLTrainer, StepSampler, load_checkpoint
from darlkit.training.trainer import _mix_seed
from test_training_support import build_micro, micro_model, RandomTestSet, RandomTrainSet, micro_config


def _trainer(config, tmp_path=None, model_config=None, **kw):
    model, d_s, d_a = build_micro(config, model_config)
    return DARLTrainer(model, d_s, d_a, config, out_dir=tmp_path, progress=False, **kw)


def _all_tensors(trainer: DARLTrainer) -> dict[str, torch.Tensor]:
    out = {}
    for prefix, mod in (("m.", trainer.model), ("ds.", trainer.disc_mask), ("da.", trainer.disc_image)):
        for k, v in mod.state_dict().items():
            out[prefix + k] = v
    if trainer.ema is not None:
        for k, v in trainer.ema.state_dict().items():
            out["ema." + k] = v
    return out


def test_one_iteration_matches_reference_update():
    """train_step == the SPEC iteration written out by hand (G step, frozen D, pooled D step)."""
    cfg = micro_config(pool_size=0, lr=1e-3, lr_d=2e-3)
    trainer = _trainer(cfg)
    ref_model, ref_ds, ref_da = build_micro(cfg)
    data = RandomTrainSet(4, 32)
    batch = {k: torch.stack([data[i][k] for i in (0, 1)]) for k in ("angiogram", "background", "mask")}
    opt_g = torch.optim.Adam(ref_model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*ref_ds.parameters(), *ref_da.parameters()], lr=2e-3, betas=(0.5, 0.999))

    # The trainer's draws for step 0 (global batch = local batch in one process).
    g = torch.Generator().manual_seed(_mix_seed(cfg.seed, 0, 0x5EED))
    t_a = torch.randint(0, ref_model.t_a_max, (2,), generator=g)
    t_b = torch.randint(0, ref_model.num_timesteps, (2,), generator=g)
    noise = torch.randn((2, 1, 32, 32), generator=g)

    paths = ref_model.forward_paths(batch["angiogram"], batch["background"], batch["mask"], t_a=t_a, t_b=t_b, noise=noise)
    adv = F.mse_loss(ref_ds(paths.seg), torch.ones_like(ref_ds(paths.seg))) + F.mse_loss(
        ref_da(paths.synth), torch.ones_like(ref_da(paths.synth))
    )
    loss_g = F.mse_loss(paths.noise_pred, noise) + 0.2 * adv + 5.0 * F.l1_loss(paths.cycle, batch["mask"])
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    opt_d.zero_grad()  # the G step must not move the discriminators: drop their grads
    seg, synth = paths.seg.detach(), paths.synth.detach()
    loss_d = 0.5 * (F.mse_loss(ref_ds(batch["mask"]), torch.ones(1).expand_as(ref_ds(batch["mask"])))
                    + ref_ds(seg).pow(2).mean())
    loss_d = loss_d + 0.5 * ((ref_da(batch["angiogram"]) - 1).pow(2).mean() + ref_da(synth).pow(2).mean())
    loss_d.backward()
    opt_d.step()

    losses = trainer.train_step(batch)
    assert losses["loss_g"] == pytest.approx(float(loss_g), rel=1e-5)
    assert losses["loss_d"] == pytest.approx(float(loss_d), rel=1e-5)
    assert losses["loss_g"] == pytest.approx(
        losses["loss_diff"] + 0.2 * losses["loss_adv"] + 5.0 * losses["loss_cyc"], rel=1e-6
    )
    for mod, ref in ((trainer.model, ref_model), (trainer.disc_mask, ref_ds), (trainer.disc_image, ref_da)):
        for (k, v), (k2, v2) in zip(mod.state_dict().items(), ref.state_dict().items()):
            assert k == k2
            torch.testing.assert_close(v, v2, rtol=1e-5, atol=1e-6, msg=k)


def test_generator_step_leaves_discriminators_untouched():
    cfg = micro_config(pool_size=0)
    trainer = _trainer(cfg)
    before = {k: v.clone() for k, v in trainer.disc_mask.state_dict().items()}
    seen = {}
    original = trainer.opt_d.zero_grad

    def spy(set_to_none=True):
        seen["grads"] = [p.grad for p in trainer.d_params]
        return original(set_to_none=set_to_none)

    trainer.opt_d.zero_grad = spy
    data = RandomTrainSet(2, 32)
    trainer.train_step({k: torch.stack([data[i][k] for i in (0, 1)]) for k in ("angiogram", "background", "mask")})
    assert all(gr is None for gr in seen["grads"])  # no gradient reached D during the G step
    assert all(p.requires_grad for p in trainer.d_params)
    changed = [k for k, v in trainer.disc_mask.state_dict().items() if not torch.equal(v, before[k])]
    assert changed  # ... but the D step did move it


@pytest.mark.parametrize("ema", [None, 0.9])
def test_resume_is_bit_identical(tmp_path, ema):
    cfg = micro_config(ema_decay=ema, eval_ema=ema is not None, pool_size=3, ckpt_every=3)
    data = RandomTrainSet(6, 32)  # 3 steps per epoch: the run crosses epochs and fills/swaps the pool
    full = _trainer(cfg, tmp_path / "full")
    full.fit(data, steps=7)

    part = _trainer(cfg, tmp_path / "part")
    part.fit(data, steps=5)  # writes last.pt at steps 3 and 5
    torch.manual_seed(12345)  # a fresh process would start from another global RNG state
    resumed = _trainer(cfg, tmp_path / "part")
    resumed.fit(data, steps=7, resume=True)
    assert resumed.step == 7
    a, b = _all_tensors(full), _all_tensors(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert len(resumed.pool_mask) == len(full.pool_mask) == 3


def test_resume_mid_run_from_intermediate_checkpoint(tmp_path):
    cfg = micro_config(ckpt_every=2)
    data = RandomTrainSet(8, 32)
    full = _trainer(cfg, tmp_path / "a")
    full.fit(data, steps=4)
    run = _trainer(cfg, tmp_path / "b")
    run.fit(data, steps=2)
    ckpt = load_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["step"] == 2 and ckpt["config"]["image_size"] == 32
    again = _trainer(cfg, tmp_path / "b")
    again.fit(data, steps=4, resume=tmp_path / "b" / "last.pt")
    for k, v in _all_tensors(full).items():
        assert torch.equal(v, _all_tensors(again)[k]), k


def test_resume_refuses_other_architecture(tmp_path):
    cfg = micro_config()
    _trainer(cfg, tmp_path).fit(RandomTrainSet(4, 32), steps=1)
    other = _trainer(micro_config(), tmp_path, micro_model(generator__base_channels=16))
    with pytest.raises(ValueError, match=r"generator.base_channels \(checkpoint: 8, requested: 16\)"):
        other.load(tmp_path / "last.pt")


def test_step_sampler_shards_global_batches():
    single = StepSampler(10, 4, seed=3, start_step=0, stop_step=5)
    ranks = [StepSampler(10, 2, seed=3, start_step=0, stop_step=5, rank=r, world_size=2) for r in (0, 1)]
    for step in range(5):
        assert single.indices(step) == ranks[0].indices(step) + ranks[1].indices(step)
    epoch0 = single.indices(0) + single.indices(1)
    assert len(set(epoch0)) == 8 and set(epoch0) <= set(range(10))
    assert single.indices(2) != single.indices(0)  # a new permutation in epoch 1
    assert list(StepSampler(10, 4, 3, 3, 5)) == [single.indices(3), single.indices(4)]
    with pytest.raises(ValueError, match="fewer than one global batch"):
        StepSampler(3, 2, 0, 0, 1, world_size=2)


def test_ema_tracks_weights_and_is_used_for_eval(tmp_path):
    cfg = micro_config(ema_decay=0.5, eval_ema=True)
    trainer = _trainer(cfg)
    p0 = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit(RandomTrainSet(4, 32), steps=1)
    # After one update from n_averaged=0 the EMA equals the weights; the next is a 0.5 blend.
    prev_ema = [p.detach().clone() for p in trainer.ema.module.parameters()]
    for e, p in zip(prev_ema, trainer.model.parameters()):
        assert torch.equal(e, p.detach())
    trainer.fit(RandomTrainSet(4, 32), steps=2)
    for e_prev, e, p in zip(prev_ema, trainer.ema.module.parameters(), trainer.model.parameters()):
        torch.testing.assert_close(e, 0.5 * e_prev + 0.5 * p.detach())
    assert trainer.eval_model is trainer.ema.module
    assert any(not torch.equal(a, b) for a, b in zip(p0, trainer.model.parameters()))


def test_bf16_autocast_and_grad_clip_step_is_finite():
    cfg = micro_config(amp="bf16", grad_clip=0.5, channels_last=True)
    trainer = _trainer(cfg)
    data = RandomTrainSet(2, 32)
    losses = trainer.train_step({k: torch.stack([data[i][k] for i in (0, 1)]) for k in ("angiogram", "background", "mask")})
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_fp16_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="fp16"):
        _trainer(micro_config(amp="fp16"))


def test_validation_writes_metrics_best_checkpoint_and_figure(tmp_path):
    from PIL import Image

    cfg = micro_config(val_every=2, log_every=1, figure_rows=2)
    trainer = _trainer(cfg, tmp_path)
    result = trainer.fit(RandomTrainSet(4, 32), steps=4, val_data=RandomTestSet(3, 64))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert all(r["n"] == 3 and 0.0 <= r["dice_mean"] <= 1.0 for r in rows)
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("step,time,iou_mean,iou_std,dice_mean")
    assert len(csv_lines) == 3
    best = max(rows, key=lambda r: r["dice_mean"])
    assert result["best_step"] == best["step"]
    assert load_checkpoint(tmp_path / "best.pt")["step"] == best["step"]
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 4
    grid = Image.open(tmp_path / "figure.png")
    assert grid.size == (4 * 64 + 3 * 2, 2 * 64 + 2)  # 4 columns, 2 rows, 2-px separators
    # The 64-px test images are twice the 32-px crops: segmented as 4 polyphase sub-images.
    assert result["history"][-1]["n"] == 3


def test_validation_matches_metrics_of_model_segment():
    from darlkit.metrics import SegmentationMetrics
    from darlkit.polyphase import polyphase_merge, polyphase_split

    cfg = micro_config()
    trainer = _trainer(cfg)
    test = RandomTestSet(2, 64)
    got = trainer.validate(test)["metrics"]
    acc = SegmentationMetrics()
    trainer.model.eval()
    with torch.no_grad():
        for i in range(2):
            x = test[i]["image"][None]
            pred = polyphase_merge(trainer.model.segment(polyphase_split(x)))
            acc.update(pred, test[i]["mask"][None])
    want = acc.aggregate()
    for name in ("iou", "dice", "precision"):
        assert got[name]["mean"] == pytest.approx(want[name]["mean"], abs=1e-6)


def test_fit_rejects_bad_arguments(tmp_path):
    trainer = _trainer(micro_config())
    with pytest.raises(ValueError, match="steps"):
        trainer.fit(RandomTrainSet(4, 32), steps=-1)
    with pytest.raises(TypeError, match="train_data"):
        trainer.fit(object(), steps=1)
    with pytest.raises(ValueError, match="angiogram"):
        trainer.train_step({"image": torch.zeros(1, 1, 32, 32)})
    with pytest.raises(TypeError, match="config"):
        DARLTrainer(trainer.model, trainer.disc_mask, trainer.disc_image, config={"lr": 1})
    with pytest.raises(ValueError, match="out_dir"):
        trainer.fit(RandomTrainSet(4, 32), steps=1, resume=True)


def test_pool_is_checkpointed():
    pool = ImagePool(2, generator=torch.Generator().manual_seed(0))
    pool.query(torch.randn(3, 1, 4, 4))
    clone = ImagePool(2, generator=torch.Generator().manual_seed(99))
    clone.load_state_dict(pool.state_dict())
    x = torch.randn(4, 1, 4, 4)
    assert torch.equal(pool.query(x), clone.query(x))


def test_time_limit_stops_early_then_validates_and_saves(tmp_path):
    trainer = _trainer(micro_config(), tmp_path)
    result = trainer.fit(RandomTrainSet(4, 32), steps=50, val_data=RandomTestSet(1, 64), time_limit=1e-9)
    assert result["stopped_early"] and result["step"] == 1
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1 and result["history"][-1]["step"] == 1
    with pytest.raises(ValueError, match="time_limit"):
        trainer.fit(RandomTrainSet(4, 32), steps=2, time_limit=0)


def test_t_b_max_limits_the_b_path_steps():
    trainer = _trainer(micro_config(t_b_max=7))
    draws = [trainer._step_draws(step, (4, 1, 32, 32)) for step in range(20)]
    assert max(int(t_b.max()) for _, t_b, _ in draws) < 7
    assert max(int(t_a.max()) for t_a, _, _ in draws) < 200
    paper = _trainer(micro_config())
    assert max(int(paper._step_draws(s, (4, 1, 32, 32))[1].max()) for s in range(20)) >= 200


def test_load_trained_model_uses_ema_weights(tmp_path):
    from darlkit.training import load_trained_model

    cfg = micro_config(ema_decay=0.5, eval_ema=True)
    trainer = _trainer(cfg, tmp_path)
    trainer.fit(RandomTrainSet(4, 32), steps=3)
    ema_model, _ = load_trained_model(tmp_path / "last.pt")  # eval_ema -> EMA by default
    raw_model, _ = load_trained_model(tmp_path / "last.pt", use_ema=False)
    for (k, v), p in zip(ema_model.named_parameters(), trainer.ema.module.parameters()):
        assert torch.equal(v, p), k
    for (k, v), p in zip(raw_model.named_parameters(), trainer.model.parameters()):
        assert torch.equal(v, p), k
    assert any(not torch.equal(a, b) for a, b in zip(ema_model.parameters(), raw_model.parameters()))
    assert not ema_model.training


# ---------------------------------------------------------------- amp="auto"
@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_is_bf16_where_native_else_none(native, monkeypatch):
    import darlkit.model.runtime as runtime
    from darlkit.training import TrainConfig, resolve_amp

    monkeypatch.setattr(runtime, "native_bf16", lambda device="cpu": native)
    want = "bf16" if native else "none"
    assert resolve_amp("auto", "cpu") == want
    assert [resolve_amp(m, "cpu") for m in ("none", "bf16")] == ["none", "bf16"]  # explicit modes stay
    with pytest.raises(ValueError, match="amp must be one of"):
        resolve_amp("fp8", "cpu")
    cfg = micro_config(amp="auto")
    trainer = DARLTrainer(*build_micro(cfg), cfg, progress=False)
    assert trainer.amp == want and trainer.update.config.amp == want
    assert trainer.config.amp == "auto" and trainer.state_dict()["config"]["amp"] == "auto"  # resumes anywhere
    ctx = trainer.update.autocast()
    assert isinstance(ctx, torch.autocast) == native
    if native:
        assert ctx.fast_dtype == torch.bfloat16
    losses = trainer.train_step(next(iter(torch.utils.data.DataLoader(RandomTrainSet(4, 32), batch_size=2))))
    assert all(v == v for v in losses.values())
    assert TrainConfig.preset("small").amp == "auto"
