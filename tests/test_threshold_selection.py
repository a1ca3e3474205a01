"""The segmentation threshold chosen on the validation split (issue 13): hand-computed and on a real run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from darlkit.training import DARLTrainer, build_networks, evaluate_on_split
from darlkit.training.recipes import choose_threshold
from test_training_support import micro_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 32-px dataset whose val masks are ``image > 0`` and a 1-step checkpoint."""
    from darlkit.synthesis import write_synthetic_xcad
    from darlkit.training import write_validation_split

    root = tmp_path_factory.mktemp("thr") / "data"
    write_synthetic_xcad(root, n_train=4, n_test=2, size=32, seed=0, progress=False)
    write_validation_split(root, 2, size=32, data_seed=0)
    for img in sorted((root / "val" / "images").glob("*.png")):
        v = np.asarray(Image.open(img).convert("L"))
        Image.fromarray(np.where(v >= 128, 255, 0).astype(np.uint8)).save(root / "val" / "masks" / img.name)
    cfg = micro_config()
    trainer = DARLTrainer(*build_networks(cfg), cfg, out_dir=root.parent / "run", progress=False)
    trainer.save(root.parent / "run" / "last.pt")
    return root, root.parent / "run" / "last.pt"


def test_threshold_is_chosen_on_val_hand_computed(run, monkeypatch):
    root, ckpt = run
    import darlkit.training.inference as inference

    # A fake segmenter: 0.3 where the image is bright (the val masks), 0.2 elsewhere.
    monkeypatch.setattr(inference, "segment_image",
                        lambda model, image, **kw: torch.where(image > 0, 0.3, 0.2))
    chosen = choose_threshold(ckpt, root, "val")
    # every threshold in [0.2, 0.3) separates perfectly; the lowest grid point on ties is 0.2
    assert chosen["threshold"] == pytest.approx(0.2)
    assert chosen["dice"] == pytest.approx(1.0)
    # at the default threshold 0 every pixel is vessel: Dice = 2|M| / (|M| + H*W) per image
    expected = []
    for img in sorted((root / "val" / "images").glob("*.png")):
        m = float((np.asarray(Image.open(img).convert("L")) >= 128).sum())
        expected.append(2 * m / (m + 32 * 32))
    assert chosen["default_dice"] == pytest.approx(float(np.mean(expected)), abs=1e-6)


def test_chosen_threshold_reproduces_its_dice(run):
    root, ckpt = run
    chosen = choose_threshold(ckpt, root, "val")
    at = evaluate_on_split(ckpt, root, "val", threshold=chosen["threshold"], metrics=("dice",))
    assert at["clean"]["dice"]["mean"] == pytest.approx(chosen["dice"], abs=1e-9)
    assert chosen["dice"] >= chosen["default_dice"] - 1e-12
    assert -1.0 <= chosen["threshold"] <= 1.0
