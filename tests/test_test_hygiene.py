"""The suite's own rules: missing shared data fails in CI, hypothesis draws the same examples everywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import conftest

TESTS = Path(__file__).resolve().parent


def test_missing_shared_data_skips_locally_and_fails_in_ci(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="sample not found"):
        conftest.shared_path(tmp_path / "none", "sample")
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        conftest.shared_path(tmp_path / "none", "sample")
    assert conftest.shared_path(tmp_path, "sample") == tmp_path


def test_no_test_skips_on_missing_shared_data_by_itself():
    """``../shared`` data is reached through ``conftest.shared_path`` (fails with CI=true), never a bare skipif."""
    offenders = []
    for path in sorted(p for p in TESTS.glob("test_*.py") if p.name != Path(__file__).name):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "skipif(not " in line and (".is_dir()" in line or ".exists()" in line or ".is_file()" in line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "use conftest.shared_path instead:\n" + "\n".join(offenders)


def test_hypothesis_profile_is_derandomized_unless_asked_otherwise():
    hypothesis = pytest.importorskip("hypothesis")
    if "HYPOTHESIS_PROFILE" in __import__("os").environ:
        pytest.skip("a profile was chosen explicitly")
    assert hypothesis.settings().derandomize is True


def test_example_smoke_tests_live_in_one_file():
    runs_examples = sorted(p.name for p in TESTS.glob("test_*.py") if "examples" in p.name)
    assert runs_examples == ["test_examples.py"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", __file__, "-q"]))
