"""``SyntheticXCADSpec``: the options of ``write_synthetic_xcad`` as one validated value."""

from __future__ import annotations

import pytest
import torch

from darlkit.synthesis import SyntheticXCADSpec, write_synthetic_xcad


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_spec_and_keywords_write_the_same_bytes_and_keep_the_thread_count(tmp_path):
    torch.set_num_threads(2)
    try:
        spec = SyntheticXCADSpec(n_train=2, n_test=1, size=32, seed=4)
        a = write_synthetic_xcad(tmp_path / "a", spec, progress=False)
        assert torch.get_num_threads() == 2  # set to 1 for the work, restored afterwards
        b = write_synthetic_xcad(tmp_path / "b", n_train=2, n_test=1, size=32, seed=4, progress=False)
        c = write_synthetic_xcad(tmp_path / "c", SyntheticXCADSpec(n_train=9), n_train=2, n_test=1, size=32, seed=4,
                                 progress=False)  # keywords override the spec's fields
    finally:
        torch.set_num_threads(1)
    assert _files(a) == _files(b) == _files(c)
    assert len(_files(a)) == 3 * 2 + 2 * 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 33}, "size must be an even int >= 32"),
        ({"crop": 64, "size": 32}, "crop must be None"),
        ({"n_train": -1}, "n_train must be an int >= 0"),
        ({"n_train": 0, "n_test": 0}, "nothing to write"),
        ({"test_style": "zigzag"}, "test_style must be one of"),
    ],
)
def test_spec_validates_its_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticXCADSpec(**kwargs)


def test_unknown_option_and_bad_workers_are_named(tmp_path):
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['sise'\]"):
        write_synthetic_xcad(tmp_path / "x", sise=32)
    with pytest.raises(ValueError, match="workers must be an int >= 0"):
        write_synthetic_xcad(tmp_path / "x", n_train=1, n_test=1, size=32, workers=-1)
    assert not (tmp_path / "x").exists()


def test_window_is_none_for_whole_images():
    assert SyntheticXCADSpec(size=64, crop=64).window is None
    assert SyntheticXCADSpec(size=64, crop=32).window == 32 and SyntheticXCADSpec(size=64).window is None
