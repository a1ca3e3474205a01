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

try:
    from hypothesis import settings

    settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True)
    settings.register_profile("dev", max_examples=30, deadline=None)
    settings.load_profile("ci" if os.environ.get("CI") else "dev")
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    pass


@pytest.fixture
def xcad_sample() -> Path:
    """Path of the 10-PNG XCAD sample in ``../shared/data/xcad-sample`` (skips if absent)."""
    if not XCAD_SAMPLE.is_dir():
        pytest.skip(f"XCAD sample not found at {XCAD_SAMPLE}")
    return XCAD_SAMPLE


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
