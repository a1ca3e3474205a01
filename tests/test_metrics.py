"""Per-image segmentation metrics against hand-computed masks and numpy; accumulator maths, DDP gather."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from darlkit.metrics import (
    METRIC_FUNCTIONS,
    SegmentationMetrics,
    confusion_counts,
    dice_score,
    iou_score,
    precision_score,
    recall_score,
    specificity_score,
)

# Hand case: 3x3 images, threshold 0 on scores in [-1, 1].
P1 = [[0.9, -0.5, 0.2], [-1.0, 0.3, -0.2], [0.0, 0.7, -0.9]]  # positives (0,0) (0,2) (1,1) (2,1); 0.0 is not > 0
G1 = [[1, 0, 0], [0, 1, 1], [0, 1, 0]]  # tp 3, fp 1, fn 1, tn 4
EMPTY = [[-1.0] * 3] * 3
FULL = [[1.0] * 3] * 3
ZERO = [[0] * 3] * 3
ONES = [[1] * 3] * 3
ONE_PIXEL = [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
ALL_BUT_ONE = [[1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, 1.0]]

CASES = [
    # pred, target, (tp, fp, fn, tn), iou, dice, precision, recall, specificity
    (P1, G1, (3, 1, 1, 4), 3 / 5, 6 / 8, 3 / 4, 3 / 4, 4 / 5),
    (EMPTY, ZERO, (0, 0, 0, 9), 1.0, 1.0, 1.0, 1.0, 1.0),  # both empty
    (EMPTY, ONE_PIXEL, (0, 0, 1, 8), 0.0, 0.0, 0.0, 0.0, 1.0),  # nothing predicted, vessel present
    (P1, ZERO, (0, 4, 0, 5), 0.0, 0.0, 0.0, 0.0, 5 / 9),  # vessel predicted, empty target
    (FULL, ONES, (9, 0, 0, 0), 1.0, 1.0, 1.0, 1.0, 1.0),  # all vessel: specificity undefined, exact -> 1
    (ALL_BUT_ONE, ONES, (8, 0, 1, 0), 8 / 9, 16 / 17, 1.0, 8 / 9, 0.0),  # all vessel target, not exact -> 0
]


def _batch():
    pred = torch.tensor([c[0] for c in CASES]).unsqueeze(1)  # (6, 1, 3, 3)
    target = torch.tensor([c[1] for c in CASES]).unsqueeze(1)
    return pred, target


def test_hand_computed_masks_including_empty_cases() -> None:
    pred, target = _batch()
    tp, fp, fn, tn = confusion_counts(pred, target)
    assert tp.dtype == torch.int64 and tp.shape == (6,)
    assert list(zip(tp.tolist(), fp.tolist(), fn.tolist(), tn.tolist())) == [c[2] for c in CASES]
    for k, fn_ in enumerate((iou_score, dice_score, precision_score, recall_score, specificity_score)):
        got = fn_(pred, target)
        assert got.dtype == torch.float64 and got.shape == (6,)
        assert got.tolist() == pytest.approx([c[3 + k] for c in CASES], abs=1e-15), fn_.__name__


def test_input_forms_give_the_same_values() -> None:
    pred, target = _batch()
    ref = iou_score(pred, target)
    assert torch.equal(iou_score(pred[:, 0], target[:, 0]), ref)  # (N, H, W)
    assert torch.equal(iou_score(pred > 0, target.bool()), ref)  # bool pred: threshold unused
    assert torch.equal(iou_score(pred > 0, target.bool(), threshold=5.0), ref)
    assert torch.equal(iou_score(pred, target.float()), ref)  # 0./1. float target
    assert torch.equal(iou_score(pred, target.to(torch.uint8)), ref)
    # threshold moves the decision: at 0.25, image 0 keeps (0,0), (1,1), (2,1) -> tp 3, fp 0, fn 1
    assert iou_score(pred, target, threshold=0.25)[0].item() == pytest.approx(3 / 4)
    assert precision_score(pred, target, threshold=0.25)[0].item() == 1.0
    # a uint8 0/255 prediction thresholded at 127
    assert torch.equal(iou_score((pred > 0).to(torch.uint8) * 255, target, threshold=127), ref)


@given(
    pred=hnp.arrays(np.float32, (3, 5, 4), elements=st.floats(-1, 1, width=32)),
    target=hnp.arrays(np.bool_, (3, 5, 4)),
    threshold=st.sampled_from([-0.5, 0.0, 0.3]),
)
def test_against_numpy_reference(pred: np.ndarray, target: np.ndarray, threshold: float) -> None:
    p = pred > threshold
    tp = (p & target).sum(axis=(1, 2))
    fp = (p & ~target).sum(axis=(1, 2))
    fn = (~p & target).sum(axis=(1, 2))
    tn = (~p & ~target).sum(axis=(1, 2))
    counts = confusion_counts(torch.from_numpy(pred), torch.from_numpy(target), threshold)
    for got, ref in zip(counts, (tp, fp, fn, tn)):
        np.testing.assert_array_equal(got.numpy(), ref)
    assert np.all(tp + fp + fn + tn == 20)
    iou = iou_score(torch.from_numpy(pred), torch.from_numpy(target), threshold).numpy()
    dice = dice_score(torch.from_numpy(pred), torch.from_numpy(target), threshold).numpy()
    defined = (tp + fp + fn) > 0
    np.testing.assert_allclose(iou[defined], (tp / np.maximum(tp + fp + fn, 1))[defined], rtol=1e-15)
    np.testing.assert_allclose(dice, 2 * iou / (1 + iou), rtol=1e-12)  # Dice = 2 IoU / (1 + IoU)
    assert np.all((iou >= 0) & (iou <= 1))


def test_metric_bad_inputs() -> None:
    pred, target = _batch()
    with pytest.raises(ValueError, match="target must be binary.*255"):
        iou_score(pred, target * 255)
    with pytest.raises(ValueError, match="target must be binary"):
        iou_score(pred, target - 1)
    with pytest.raises(ValueError, match="target must be binary"):
        iou_score(pred, target * 0.5)
    with pytest.raises(ValueError, match="target must be binary"):
        iou_score(pred, torch.full_like(pred, float("nan")))
    bad = pred.clone()
    bad[2, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="pred contains NaN"):
        dice_score(bad, target)
    with pytest.raises(ValueError, match="pred shape"):
        iou_score(pred[:, 0], target)
    with pytest.raises(ValueError, match=r"pred must have shape \(N, 1, H, W\)"):
        iou_score(pred.expand(6, 2, 3, 3), target.expand(6, 2, 3, 3))
    with pytest.raises(ValueError, match="pred must have shape"):
        iou_score(pred[0, 0], target[0, 0])
    with pytest.raises(ValueError, match="at least one image"):
        iou_score(pred[:0], target[:0])
    with pytest.raises(TypeError, match="pred must be a torch.Tensor"):
        iou_score(pred.numpy(), target)
    with pytest.raises(TypeError, match="threshold"):
        iou_score(pred, target, threshold="0")


# ---------------------------------------------------------------------------------------- accumulator


def _random_batches(seed: int, sizes=(3, 5, 2)):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for n in sizes:
        pred = torch.rand(n, 1, 16, 16, generator=gen) * 2 - 1
        target = (torch.rand(n, 1, 16, 16, generator=gen) > 0.8).long()
        out.append((pred, target))
    return out


def test_accumulator_mean_std_against_numpy() -> None:
    acc = SegmentationMetrics()
    batches = _random_batches(0)
    for pred, target in batches:
        batch = acc.update(pred, target)
        assert set(batch) == set(acc.metrics) and batch["iou"].shape == (pred.shape[0],)
    assert len(acc) == 10
    per = acc.per_image()
    agg = acc.aggregate()
    agg1 = acc.aggregate(ddof=1)
    for name in acc.metrics:
        ref = np.concatenate([METRIC_FUNCTIONS[name](p, t).numpy() for p, t in batches])
        np.testing.assert_array_equal(per[name].numpy(), ref)
        assert agg[name]["n"] == 10
        assert agg[name]["mean"] == pytest.approx(np.mean(ref), rel=1e-12)
        assert agg[name]["std"] == pytest.approx(np.std(ref), rel=1e-12)  # population, ddof = 0
        assert agg1[name]["std"] == pytest.approx(np.std(ref, ddof=1), rel=1e-12)
    acc.reset()
    assert len(acc) == 0
    empty = acc.aggregate()
    assert empty["iou"]["n"] == 0 and np.isnan(empty["iou"]["mean"]) and np.isnan(empty["iou"]["std"])


def test_format_table_and_str() -> None:
    acc = SegmentationMetrics(metrics=("iou", "dice", "precision"))
    # image 1: IoU 1/2, image 2: IoU 1/4 -> mean 0.375, population std 0.125
    pred = torch.tensor([[[1.0, 1.0, -1.0, -1.0]], [[1.0, 1.0, 1.0, 1.0]]]).unsqueeze(1)
    target = torch.tensor([[[1, 0, 0, 0]], [[1, 0, 0, 0]]]).unsqueeze(1)
    acc.update(pred, target)
    dice = [2 / 3, 2 / 5]
    text = acc.format_table()
    assert text.splitlines() == [
        "IoU 0.375 ± 0.125",
        f"Dice {np.mean(dice):.3f} ± {np.std(dice):.3f}",
        f"Precision {np.mean([0.5, 0.25]):.3f} ± {np.std([0.5, 0.25]):.3f}",
        "(n = 2)",
    ]
    assert str(acc) == text
    assert acc.format_table(digits=1).splitlines()[0] == "IoU 0.4 ± 0.1"


def test_merge_equals_single_accumulator_and_state_round_trip() -> None:
    batches = _random_batches(1, sizes=(4, 3, 6))
    whole = SegmentationMetrics()
    for p, t in batches:
        whole.update(p, t)
    a, b = SegmentationMetrics(), SegmentationMetrics()
    a.update(*batches[0])
    b.update(*batches[1])
    b.update(*batches[2])
    a.merge(b)
    assert a.aggregate() == whole.aggregate()
    for name in whole.metrics:
        assert torch.equal(a.per_image()[name], whole.per_image()[name])
    c = SegmentationMetrics()
    c.load_state_dict(json.loads(json.dumps(whole.state_dict())))
    assert c.aggregate() == whole.aggregate()
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(SegmentationMetrics(metrics=("iou",)))
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(SegmentationMetrics(threshold=0.5))
    assert a.all_gather() is a and len(a) == 13  # no process group: no-op


def test_accumulator_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        SegmentationMetrics(metrics=("iou", "hausdorff"))
    with pytest.raises(ValueError, match="repeat"):
        SegmentationMetrics(metrics=("iou", "iou"))
    with pytest.raises(ValueError, match="at least one"):
        SegmentationMetrics(metrics=())
    with pytest.raises(TypeError, match="single str"):
        SegmentationMetrics(metrics="iou")
    with pytest.raises(TypeError, match="threshold"):
        SegmentationMetrics(threshold=float("nan"))
    acc = SegmentationMetrics()
    with pytest.raises(ValueError, match="ddof"):
        acc.aggregate(ddof=-1)
    with pytest.raises(ValueError, match="digits"):
        acc.format_table(digits=-2)


def _gather_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        acc = SegmentationMetrics(metrics=("iou", "dice"))
        pred, target = _random_batches(10 + rank, sizes=(rank + 2,))[0]
        acc.update(pred, target)
        acc.all_gather()
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump({k: v.tolist() for k, v in acc.per_image().items()}, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_gather_under_two_process_gloo(tmp_path) -> None:
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    world = 2
    mp.spawn(_gather_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    expected = SegmentationMetrics(metrics=("iou", "dice"))
    for rank in range(world):
        expected.update(*_random_batches(10 + rank, sizes=(rank + 2,))[0])
    for rank in range(world):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert len(got["iou"]) == 2 + 3
        for name in ("iou", "dice"):
            assert got[name] == expected.per_image()[name].tolist()
