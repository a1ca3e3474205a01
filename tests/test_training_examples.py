"""The training and segmentation examples run end to end at toy sizes (--smoke)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script, expect", [("train_xcad.py", "best Dice"), ("segment.py", "wrote 2 mask(s)")])
def test_example_smoke(script, expect, tmp_path, monkeypatch, capsys):
    argv = [str(EXAMPLES / script), "--smoke"]
    if script == "train_xcad.py":
        argv += ["--out", str(tmp_path / "run")]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")  # in-process: no second torch import
    assert expect in capsys.readouterr().out
    if script == "train_xcad.py":
        assert (tmp_path / "run" / "last.pt").is_file()
