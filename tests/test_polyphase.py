"""polyphase_split / polyphase_merge: exact phases, round trips, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from darlkit import POLYPHASE_OFFSETS, polyphase_merge, polyphase_split


def test_phases_are_strided_views_in_documented_order() -> None:
    x = torch.arange(2 * 3 * 8 * 6, dtype=torch.float32).reshape(2, 3, 8, 6)
    parts = polyphase_split(x)
    assert parts.shape == (8, 3, 4, 3)
    for n in range(2):
        for k, (i, j) in enumerate(POLYPHASE_OFFSETS):
            assert torch.equal(parts[n * 4 + k], x[n, :, i::2, j::2])


@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    factor=st.integers(1, 3),
)
def test_merge_inverts_split(n: int, c: int, h: int, w: int, factor: int) -> None:
    x = torch.randn(n, c, h * factor, w * factor)
    parts = polyphase_split(x, factor)
    assert parts.shape == (n * factor**2, c, h, w)
    assert torch.equal(polyphase_merge(parts, factor), x)
    assert torch.equal(polyphase_split(polyphase_merge(parts, factor), factor), parts)


def test_integer_and_channels_last_inputs() -> None:
    x = torch.randint(0, 255, (1, 2, 4, 4), dtype=torch.uint8)
    assert torch.equal(polyphase_merge(polyphase_split(x)), x)
    y = torch.randn(2, 3, 6, 8).to(memory_format=torch.channels_last)
    assert torch.equal(polyphase_merge(polyphase_split(y)), y)


@pytest.mark.parametrize(
    ("fn", "arg", "match"),
    [
        (polyphase_split, torch.zeros(1, 5, 4), r"\(N, C, H, W\)"),
        (polyphase_split, torch.zeros(1, 1, 5, 4), "divisible"),
        (polyphase_merge, torch.zeros(3, 1, 2, 2), "multiple"),
        (polyphase_merge, torch.zeros(4, 2, 2), r"\(N, C, H, W\)"),
    ],
)
def test_bad_inputs_raise(fn, arg, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fn(arg)


def test_bad_types_raise() -> None:
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        polyphase_split([[1, 2], [3, 4]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="factor"):
        polyphase_split(torch.zeros(1, 1, 4, 4), factor=0)
