"""ROI-restricted metrics (hand-computed), exact AUC-ROC / AP (hand cases + brute force), the Dice sweep."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from darlkit.metrics import (
    ALL_METRICS,
    DiceThresholdSweep,
    SegmentationMetrics,
    auc_roc_score,
    average_precision_score,
    confusion_counts,
    dice_score,
    iou_score,
    specificity_score,
)


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)[None]


# ----------------------------------------------------------------------------- ROI, by hand
def test_roi_counts_and_scores_by_hand():
    pred = _t([[0.9, -0.5, 0.2], [0.7, 0.1, -0.9]])  # vessel where > 0: [[1,0,1],[1,1,0]]
    target = _t([[1, 0, 0], [1, 0, 1]])
    roi = _t([[1, 1, 0], [1, 0, 1]])  # drops (0,2) (a FP) and (1,1) (a FP)
    tp, fp, fn, tn = confusion_counts(pred, target)
    assert (tp.item(), fp.item(), fn.item(), tn.item()) == (2, 2, 1, 1)
    tp, fp, fn, tn = confusion_counts(pred, target, roi=roi)
    assert (tp.item(), fp.item(), fn.item(), tn.item()) == (2, 0, 1, 1)
    assert dice_score(pred, target, roi=roi).item() == pytest.approx(4 / 5)
    assert iou_score(pred, target, roi=roi).item() == pytest.approx(2 / 3)
    assert specificity_score(pred, target, roi=roi).item() == 1.0
    assert dice_score(pred, target).item() == pytest.approx(4 / 7)
    ones = torch.ones_like(roi, dtype=torch.bool)
    assert torch.equal(dice_score(pred, target, roi=ones), dice_score(pred, target))
    with pytest.raises(ValueError, match="roi must be binary"):
        dice_score(pred, target, roi=roi * 255)
    with pytest.raises(ValueError, match="roi shape"):
        dice_score(pred, target, roi=roi[..., :2])


def test_accumulator_with_roi_and_ranking_metrics():
    pred = _t([[0.9, -0.5, 0.2], [0.7, 0.1, -0.9]])
    target = _t([[1, 0, 0], [1, 0, 1]])
    roi = _t([[1, 1, 0], [1, 0, 1]])
    acc = SegmentationMetrics(metrics=ALL_METRICS)
    batch = acc.update(pred, target, roi)
    assert batch["dice"].item() == pytest.approx(0.8)
    # inside the ROI: scores 0.9, -0.5, 0.7, -0.9 with labels 1, 0, 1, 1: pos {0.9, 0.7, -0.9}, neg {-0.5}
    assert batch["auc_roc"].item() == pytest.approx(2 / 3)
    assert batch["average_precision"].item() == pytest.approx((1 + 1 + 3 / 4) / 3)
    assert acc.aggregate()["auc_roc"]["n"] == 1
    assert "AUC-ROC 0.667" in acc.format_table() and "AP 0.917" in acc.format_table()
    with pytest.raises(ValueError, match="auc_roc"):
        SegmentationMetrics(metrics=("auc",))


# ----------------------------------------------------------------------------- AUC / AP
def test_auc_and_ap_hand_cases_with_ties():
    scores = torch.tensor([[[0.1, 0.4, 0.35, 0.8]]])
    labels = torch.tensor([[[0, 0, 1, 1]]])
    assert auc_roc_score(scores, labels).item() == pytest.approx(0.75)
    assert average_precision_score(scores, labels).item() == pytest.approx(5 / 6)
    tied = torch.tensor([[[0.5, 0.5, 0.2, 0.9]]])
    lab = torch.tensor([[[1, 0, 0, 1]]])
    assert auc_roc_score(tied, lab).item() == pytest.approx(3.5 / 4)
    # thresholds 0.9: P=1, R=1/2; 0.5 (two tied pixels enter together): P=2/3, R=1; AP = 1/2 + 1/2 * 2/3
    assert average_precision_score(tied, lab).item() == pytest.approx(0.5 + 1 / 3)
    constant = torch.zeros(1, 1, 4)
    assert auc_roc_score(constant, lab).item() == 0.5 and average_precision_score(constant, lab).item() == 0.5
    assert math.isnan(auc_roc_score(scores, torch.ones(1, 1, 4)).item())
    assert math.isnan(average_precision_score(scores, torch.zeros(1, 1, 4)).item())
    with pytest.raises(ValueError, match="NaN"):
        auc_roc_score(torch.tensor([[[float("nan"), 0.0]]]), torch.tensor([[[1, 0]]]))


def _brute_auc(s, y):
    pos, neg = s[y], s[~y]
    total = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return total / (len(pos) * len(neg))


def _brute_ap(s, y):
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        chosen = s >= t
        tp = (chosen & y).sum()
        recall = tp / y.sum()
        ap += (recall - prev_recall) * tp / chosen.sum()
        prev_recall = recall
    return ap


@pytest.mark.parametrize("seed", range(6))
def test_auc_and_ap_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, h, w = 3, 5, 7
    scores = np.round(rng.normal(size=(n, 1, h, w)), 1)  # rounding makes many ties
    target = rng.random((n, 1, h, w)) < 0.3 + 0.4 * (scores > 0)
    roi = rng.random((n, 1, h, w)) < 0.8
    auc = auc_roc_score(torch.from_numpy(scores), torch.from_numpy(target), roi=torch.from_numpy(roi))
    ap = average_precision_score(torch.from_numpy(scores), torch.from_numpy(target), roi=torch.from_numpy(roi))
    for i in range(n):
        s, y = scores[i][roi[i]], target[i][roi[i]]
        assert auc[i].item() == pytest.approx(_brute_auc(s, y), abs=1e-12)
        assert ap[i].item() == pytest.approx(_brute_ap(s, y), abs=1e-12)


# ----------------------------------------------------------------------------- best-threshold Dice
def test_dice_sweep_matches_dice_score_on_the_grid_and_picks_the_best():
    rng = np.random.default_rng(3)
    grid = [-0.5, -0.2, 0.0, 0.3, 0.6]
    sweep = DiceThresholdSweep(grid)
    batches = []
    for _ in range(3):
        p = torch.from_numpy(rng.uniform(-1, 1, (2, 1, 6, 6)))
        t = (p + torch.from_numpy(rng.normal(0, 0.5, (2, 1, 6, 6)))) > 0.3
        r = torch.from_numpy(rng.random((2, 1, 6, 6)) < 0.9)
        sweep.update(p, t, r)
        batches.append((p, t, r))
    means = [torch.cat([dice_score(p, t, th, roi=r) for p, t, r in batches]).mean().item() for th in grid]
    np.testing.assert_allclose(sweep.mean_dice().numpy(), means, atol=1e-12)
    best = sweep.best()
    k = int(np.argmax(means))
    assert best["threshold"] == grid[k] and best["mean"] == pytest.approx(means[k]) and best["n"] == 6


def test_dice_sweep_by_hand_ties_and_errors():
    pred = torch.tensor([[[0.125, 0.5, 0.75, -0.25]]])
    target = torch.tensor([[[0, 1, 1, 0]]])
    sweep = DiceThresholdSweep([0.0, 0.125, 0.25, 0.625])
    sweep.update(pred, target)
    # t=0: {0.125, 0.5, 0.75}: tp 2, fp 1 -> 4/5; t=0.125 (strict >) and 0.25: {0.5, 0.75}: 1; t=0.625: 2/3
    np.testing.assert_allclose(sweep.mean_dice().numpy(), [0.8, 1.0, 1.0, 2 / 3])
    assert sweep.best() == {"threshold": 0.125, "mean": 1.0, "std": 0.0, "n": 1}  # lowest of the tied best
    # the comparison happens in pred's dtype, as in dice_score: float32(0.1) is not > 0.1
    p32 = torch.tensor([[[0.1, 0.3]]], dtype=torch.float32)
    s32 = DiceThresholdSweep([0.1])
    s32.update(p32, torch.tensor([[[0, 1]]]))
    assert s32.mean_dice().item() == dice_score(p32, torch.tensor([[[0, 1]]]), 0.1).item() == 1.0
    assert math.isnan(DiceThresholdSweep().best()["mean"])
    with pytest.raises(ValueError, match="increasing"):
        DiceThresholdSweep([0.2, 0.1])
    with pytest.raises(ValueError, match="non-empty"):
        DiceThresholdSweep([])
