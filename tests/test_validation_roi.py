"""Training-time validation scores inside the field of view when the items carry one."""

from __future__ import annotations

import torch

from darlkit.metrics import dice_score
from darlkit.training.validation import run_validation


def test_validation_dice_is_computed_inside_the_roi():
    truth = torch.zeros(1, 8, 8)
    truth[0, 2:6, 2:6] = 1
    image = torch.zeros(1, 8, 8)
    pred = torch.full((1, 1, 8, 8), -1.0)
    pred[0, 0, 2:6, 2:4] = 1.0  # half of the vessel ...
    pred[0, 0, 7, :] = 1.0  # ... and a false rim outside the field of view
    roi = torch.ones(1, 8, 8)
    roi[0, 7, :] = 0
    items = [{"image": image, "mask": truth, "roi": roi}, {"image": image, "mask": truth}]
    result = run_validation(torch.nn.Identity(), items, segment=lambda m, x: pred, to_device=lambda x: x,
                            threshold=0.0, max_images=None, figure_rows=0)
    inside = dice_score(pred, truth.unsqueeze(0), roi=roi.unsqueeze(0) > 0).item()
    whole = dice_score(pred, truth.unsqueeze(0)).item()
    assert inside == 2 * 8 / (8 + 16) and whole == 2 * 8 / (16 + 16)
    assert result["metrics"]["dice"]["mean"] == (inside + whole) / 2
