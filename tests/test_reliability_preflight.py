"""Pre-flight dataset check: every file decoded, sized and paired, one error for all (issue 17)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from darlkit.data.io import read_grayscale_png
from darlkit.training import DatasetCheckError, check_dataset_files
from test_training_support import make_xcad


@pytest.fixture
def data(tmp_path):
    return make_xcad(tmp_path / "data", n_train=3, n_test=2, size=64)


def test_a_good_dataset_passes_and_every_file_is_decoded(data):
    report = check_dataset_files(data, min_train_side=64)
    assert report.files == 3 * 3 + 2 * 2
    assert report.folders == ["train/trainA", "train/trainB", "train/trainC", "test/images", "test/masks"]
    assert set(report.sizes.values()) == {(64, 64)}


def test_the_real_xcad_sample_passes(xcad_sample):
    report = check_dataset_files(xcad_sample)
    assert report.files == 10 and all(len(s) == 2 for s in report.sizes.values())


def test_one_error_lists_every_bad_file(data):
    trainb = sorted((data / "train" / "trainB").glob("*.png"))
    trainb[0].write_bytes(trainb[0].read_bytes()[:200])  # truncated PNG
    (data / "train" / "trainC" / "notes.png").write_text("this is text, not a PNG")
    (data / "train" / "trainA" / "readme.txt").write_text("stray file")
    masks = sorted((data / "test" / "masks").glob("*.png"))
    wrong = np.zeros((32, 48), np.uint8)
    wrong[3:9, 5] = 255
    Image.fromarray(wrong).save(masks[0])  # a valid mask of the wrong size
    masks[1].rename(masks[1].with_name("orphan.png"))  # image without mask + mask without image
    (data / "val" / "images").mkdir(parents=True)  # a val split without masks/
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(data / "val" / "images" / "v.png")
    big = sorted((data / "train" / "trainA").glob("*.png"))[1]
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(big)

    with pytest.raises(DatasetCheckError) as info:
        check_dataset_files(data, min_train_side=64)
    err = info.value
    text = str(err)
    assert "\n" not in text and text.startswith(f"pre-flight check of {data} found {len(err.problems)} problem(s)")
    expected = [
        rf"{re.escape(str(trainb[0]))}",  # the truncated one
        rf"{re.escape(str(data / 'train' / 'trainC' / 'notes.png'))}",
        rf"{re.escape(str(data / 'train' / 'trainA' / 'readme.txt'))}: unexpected entry",
        rf"{re.escape(str(masks[0]))}: mask is 48x32 but image .* is 64x64",
        rf"{re.escape(str(data / 'test' / 'images' / masks[1].name))}: no mask",
        rf"{re.escape(str(data / 'test' / 'masks' / 'orphan.png'))}: mask without an image",
        rf"{re.escape(str(data / 'val' / 'masks'))}: missing folder",
        rf"{re.escape(str(big))}: 20x20 is smaller than the 64x64",
    ]
    for pattern in expected:
        assert any(re.search(pattern, p) for p in err.problems), (pattern, err.problems)
    assert len(err.problems) == len(expected)


def test_rois_are_paired_and_sized(data):
    roi = data / "test" / "roi"
    roi.mkdir()
    images = sorted((data / "test" / "images").glob("*.png"))
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(roi / images[0].name)
    Image.fromarray(np.full((60, 64), 255, np.uint8)).save(roi / images[1].name)
    with pytest.raises(DatasetCheckError, match=r"ROI is 64x60 but image"):
        check_dataset_files(data)


def test_readers_are_parameters(data):
    seen = []

    def reader(path):
        seen.append(path.parent.name)
        return read_grayscale_png(path)

    def strict_mask(path):
        arr = read_grayscale_png(path)
        if not np.isin(arr, (0, 255)).all():
            raise ValueError(f"mask {path} has values other than 0 and 255")
        return arr

    check_dataset_files(data, read_image=reader, splits=("train",))
    assert sorted(set(seen)) == ["trainB", "trainC"]
    mask = sorted((data / "train" / "trainA").glob("*.png"))[0]
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(mask)
    with pytest.raises(DatasetCheckError, match="has values other than 0 and 255"):
        check_dataset_files(data, read_train_mask=strict_mask)


def test_bad_arguments(tmp_path, data):
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        check_dataset_files(tmp_path / "missing")
    with pytest.raises(ValueError, match="splits must be a subset"):
        check_dataset_files(data, splits=("train", "valid"))
