"""Shared pytest fixtures and settings for the darlkit test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
XCAD_SAMPLE = SHARED / "data" / "xcad-sample"

# Keep CPU tests reproducible and light on a 2-core machine (pytest-xdist runs 2 workers).
torch.set_num_threads(int(os.environ.get("DARLKIT_TEST_THREADS", "1")))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

try:
    from hypothesis import settings

    # The same examples locally and in CI: a failure seen in one place reproduces in the other.
    # HYPOTHESIS_PROFILE=explore draws fresh random examples (to hunt for new failures).
    settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True)
    settings.register_profile("explore", max_examples=200, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    pass


def shared_path(path: Path, what: str) -> Path:
    """``path`` under ``../shared`` if it exists; else skip the test, or fail it in CI (``CI=true``).

    Args:
        path: A file or folder below ``SHARED``.
        what: What it is, for the message.

    Returns:
        ``path``.
    """
    if not path.exists():
        message = f"{what} not found at {path}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: the shared test data must be present)")
        pytest.skip(message)
    return path


@pytest.fixture
def xcad_sample() -> Path:
    """Path of the 10-PNG XCAD sample in ``../shared/data/xcad-sample`` (skipped if absent, failed in CI)."""
    return shared_path(XCAD_SAMPLE, "XCAD sample")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
