"""The trainer's collaborators: injected optimisers/schedulers, callbacks, run files, batches."""

from __future__ import annotations

import functools

import pytest
import torch

from darlkit.training import (
    Callback,
    DARLTrainer,
    RunFiles,
    StepSampler,
    ValidationHistory,
    load_checkpoint,
    step_batches,
)
from test_training_support import build_micro, RandomTestSet, RandomTrainSet, micro_config

HALVE = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)


def _trainer(cfg, out_dir=None, **kw):
    return DARLTrainer(*build_micro(cfg), cfg, out_dir=out_dir, progress=False, **kw)


def _weights(trainer):
    nets = (("m", trainer.model), ("ds", trainer.disc_mask), ("da", trainer.disc_image))
    return {f"{p}.{k}": v.clone() for p, m in nets for k, v in m.state_dict().items()}


def test_default_optimisers_are_the_papers_adam():
    cfg = micro_config(lr=3e-4, lr_d=7e-4, betas=(0.4, 0.98))
    t = _trainer(cfg)
    for opt, lr in ((t.opt_g, 3e-4), (t.opt_d, 7e-4)):
        assert type(opt) is torch.optim.Adam
        assert opt.param_groups[0]["lr"] == lr and opt.param_groups[0]["betas"] == (0.4, 0.98)
    assert t.update.sched_g is None and t.update.sched_d is None


def test_injected_instance_and_factory_are_used():
    cfg = micro_config()
    model, d_s, d_a = build_micro(cfg)
    frozen = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    t = DARLTrainer(model, d_s, d_a, cfg, progress=False, optimizer_g=frozen,
                    optimizer_d=functools.partial(torch.optim.SGD, lr=0.1))
    assert t.opt_g is frozen and type(t.opt_d) is torch.optim.SGD and t.opt_d.param_groups[0]["lr"] == 0.1
    before = _weights(t)
    data = RandomTrainSet(2, 32)
    t.train_step({k: torch.stack([data[i][k] for i in (0, 1)]) for k in ("angiogram", "background", "mask")})
    after = _weights(t)
    # lr=0 SGD leaves the model's parameters; the discriminators' SGD moves theirs.
    g_names = {f"m.{n}" for n, _ in model.named_parameters()}
    assert all(torch.equal(before[k], after[k]) for k in g_names)
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith("ds."))


def test_bad_optimiser_and_scheduler_arguments_are_named():
    cfg = micro_config()
    model, d_s, d_a = build_micro(cfg)
    with pytest.raises(ValueError, match="optimizer_g steps"):
        DARLTrainer(model, d_s, d_a, cfg, progress=False, optimizer_g=torch.optim.SGD(d_s.parameters(), lr=1))
    with pytest.raises(ValueError, match="optimizer_d .*missing"):
        DARLTrainer(model, d_s, d_a, cfg, progress=False, optimizer_d=torch.optim.SGD(d_s.parameters(), lr=1))
    with pytest.raises(TypeError, match="optimizer_d factory must return"):
        DARLTrainer(model, d_s, d_a, cfg, progress=False, optimizer_d=lambda params: None)
    with pytest.raises(TypeError, match="optimizer_g must be"):
        DARLTrainer(model, d_s, d_a, cfg, progress=False, optimizer_g="adam")
    with pytest.raises(TypeError, match="scheduler_g"):
        DARLTrainer(model, d_s, d_a, cfg, progress=False, scheduler_g=3)
    with pytest.raises(TypeError, match="scheduler_d factory must return"):
        DARLTrainer(model, d_s, d_a, cfg, progress=False, scheduler_d=lambda opt: object())
    with pytest.raises(TypeError, match="callbacks"):
        DARLTrainer(model, d_s, d_a, cfg, progress=False, callbacks=[print])


def test_schedulers_step_once_per_step_and_resume_bit_identically(tmp_path):
    cfg = micro_config(lr=1e-3, lr_d=2e-3, pool_size=3)
    data = RandomTrainSet(6, 32)
    full = _trainer(cfg, tmp_path / "full", scheduler_g=HALVE, scheduler_d=HALVE)
    full.fit(data, steps=5)
    assert full.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**5)
    assert full.opt_d.param_groups[0]["lr"] == pytest.approx(2e-3 * 0.5**5)

    _trainer(cfg, tmp_path / "part", scheduler_g=HALVE, scheduler_d=HALVE).fit(data, steps=3)
    assert load_checkpoint(tmp_path / "part" / "last.pt")["sched_g"]["last_epoch"] == 3
    resumed = _trainer(cfg, tmp_path / "part", scheduler_g=HALVE, scheduler_d=HALVE)
    resumed.fit(data, steps=5, resume=True)
    assert resumed.opt_g.param_groups[0]["lr"] == full.opt_g.param_groups[0]["lr"]
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_optimisers_or_schedulers(tmp_path):
    cfg = micro_config()
    _trainer(cfg, tmp_path).fit(RandomTrainSet(4, 32), steps=1)
    with pytest.raises(ValueError, match=r"optimisers are \['Adam', 'Adam'\].*\['SGD', 'Adam'\]"):
        _trainer(cfg, tmp_path, optimizer_g=functools.partial(torch.optim.SGD, lr=0.1)).load(tmp_path / "last.pt")
    with pytest.raises(ValueError, match="has LR scheduler sched_d, the checkpoint has none"):
        _trainer(cfg, tmp_path, scheduler_d=HALVE).load(tmp_path / "last.pt")


def test_checkpoint_without_optimiser_names_or_schedulers_loads(tmp_path):
    # Checkpoints written before optimisers were injectable have none of these keys.
    cfg = micro_config()
    src = _trainer(cfg, tmp_path)
    src.fit(RandomTrainSet(4, 32), steps=2)
    state = load_checkpoint(tmp_path / "last.pt")
    for key in ("optimizers", "sched_g", "sched_d"):
        del state[key]
    dst = _trainer(cfg)
    dst.load_state_dict(state)
    assert dst.step == 2
    a, b = _weights(src), _weights(dst)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert dst.opt_g.state_dict()["state"].keys() == src.opt_g.state_dict()["state"].keys()


class _Recorder(Callback):
    def __init__(self, stop_at=None):
        self.events, self.stop_at = [], stop_at

    def on_fit_start(self, trainer, steps):
        self.events.append(("start", trainer.step, steps))

    def on_step_end(self, trainer, losses):
        self.events.append(("step", trainer.step, sorted(losses)))
        if trainer.step == self.stop_at:
            trainer.request_stop("enough")

    def on_validation_end(self, trainer, record, improved):
        self.events.append(("val", record["step"], improved))

    def on_fit_end(self, trainer, result):
        self.events.append(("end", result["step"], result["stop_reason"]))

    def on_exception(self, trainer, error):
        self.events.append(("error", type(error).__name__))


def test_callbacks_see_every_step_validation_and_end(tmp_path):
    rec = _Recorder()
    t = _trainer(micro_config(val_every=2), tmp_path, callbacks=[rec])
    result = t.fit(RandomTrainSet(4, 32), steps=3, val_data=RandomTestSet(1, 64))
    kinds = [e[0] for e in rec.events]
    assert kinds == ["start", "step", "step", "val", "step", "val", "end"]
    assert rec.events[0] == ("start", 0, 3)
    assert [e[1] for e in rec.events if e[0] == "step"] == [1, 2, 3]
    assert rec.events[1][2] == ["loss_adv", "loss_cyc", "loss_d", "loss_da", "loss_diff", "loss_ds", "loss_g"]
    assert [e[1] for e in rec.events if e[0] == "val"] == [2, 3]
    assert rec.events[-1] == ("end", 3, None) and result["stopped_early"] is False


def test_request_stop_ends_fit_validates_and_saves(tmp_path):
    rec = _Recorder(stop_at=2)
    t = _trainer(micro_config(), tmp_path, callbacks=[rec])
    result = t.fit(RandomTrainSet(4, 32), steps=10, val_data=RandomTestSet(1, 64))
    assert result["step"] == 2 and result["stopped_early"] and result["stop_reason"] == "enough"
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    assert [e[0] for e in rec.events] == ["start", "step", "step", "val", "end"]


def test_on_exception_sees_the_error_before_it_propagates():
    class Broken(RandomTrainSet):
        def __getitem__(self, i):
            return {"image": torch.zeros(1, 32, 32)}

    rec = _Recorder()
    with pytest.raises(ValueError, match="angiogram"):
        _trainer(micro_config(), callbacks=[rec]).fit(Broken(4, 32), steps=2)
    assert rec.events[-1] == ("error", "ValueError")


def test_step_batches_follow_the_step_sampler_across_epochs():
    class Indexed(torch.utils.data.Dataset):
        def __init__(self):
            self.epochs = []

        def __len__(self):
            return 7

        def __getitem__(self, i):
            return {"i": torch.tensor(i)}

        def set_epoch(self, e):
            self.epochs.append(e)

    data = Indexed()
    ref = StepSampler(7, 2, 5, 0, 0)  # 3 steps per epoch
    got = [b["i"].tolist() for b in step_batches(data, ref.with_range(2, 8))]
    assert got == [ref.indices(s) for s in range(2, 8)]
    assert data.epochs == [0, 1, 2]
    ranks = [list(step_batches(data, StepSampler(7, 1, 5, 0, 3, rank=r, world_size=2))) for r in (0, 1)]
    whole = [ref.indices(s) for s in range(3)]
    for s in range(3):
        assert [ranks[0][s]["i"].item(), ranks[1][s]["i"].item()] == whole[s]


def test_run_files_and_validation_history(tmp_path):
    files = RunFiles.in_folder(tmp_path / "run")
    assert files.checkpoint("last").name == "last.pt" and files.checkpoint("best").name == "best.pt"
    with pytest.raises(ValueError, match="kind"):
        files.checkpoint("latest")
    assert not files.root.exists()
    files.prepare({"seed": 1})
    assert files.config.read_text() == '{\n  "seed": 1\n}\n'

    hist = ValidationHistory()
    stats = lambda d: {"dice": {"mean": d, "std": 0.0, "n": 2}}  # noqa: E731
    assert hist.add(1, stats(0.5), 0.1234)[1] is True
    record, improved = hist.add(2, stats(float("nan")), 0.2)
    assert not improved and record["dice_mean"] != record["dice_mean"]  # NaN recorded, never the best
    assert {k: v for k, v in record.items() if k != "dice_mean"} == {"step": 2, "time": 0.2, "dice_std": 0.0, "n": 2}
    assert hist.add(3, stats(0.4), 0.3)[1] is False and hist.add(4, stats(0.6), 0.4)[1] is True
    assert (hist.best_dice, hist.best_step, hist.last_step) == (0.6, 4, 4)
