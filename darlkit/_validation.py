"""Argument checks shared by darlkit's constructors (private)."""

from __future__ import annotations

import numbers
from typing import Any


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``int(value)`` if it is an integer (not a bool; numpy integers pass) ``>= minimum``.

    Raises:
        TypeError: If ``value`` is not an int, naming ``name``.
        ValueError: If ``value < minimum``, naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_ints(minimum: int = 1, **values: Any) -> None:
    """``check_int`` for several keyword arguments with the same lower bound."""
    for name, value in values.items():
        check_int(name, value, minimum)
