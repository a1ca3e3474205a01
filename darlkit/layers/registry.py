"""A small name -> constructor registry for darlkit's layers (in the spirit of timm's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["register_layer", "create_layer", "list_layers"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_layer(*names: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class/function decorator that registers a layer constructor under one or more names.

    Args:
        *names: Lower-case names (the first is the canonical one, the rest are aliases).

    Returns:
        A decorator that registers its argument and returns it unchanged.

    Raises:
        ValueError: If no name is given, or a name is empty or already registered to a
            different constructor.

    Example:
        >>> @register_layer("my_norm")
        ... class MyNorm(nn.Module):
        ...     pass
    """
    if not names:
        raise ValueError("register_layer needs at least one name")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"layer names must be non-empty strings, got {name!r}")

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        for name in names:
            key = name.lower()
            if key in _REGISTRY and _REGISTRY[key] is not fn:
                raise ValueError(f"layer name {name!r} is already registered to {_REGISTRY[key]!r}")
        for name in names:
            _REGISTRY[name.lower()] = fn
        return fn

    return decorator


def list_layers() -> list[str]:
    """Names accepted by `create_layer`, sorted (aliases included).

    Returns:
        For example `["spade_resblock", "spadeblock", "sspade", "switchable_spade"]`.
    """
    return sorted(_REGISTRY)


def create_layer(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered layer by name.

    Args:
        name: A name from `list_layers()` (case-insensitive), e.g. `"sspade"` /
            `"switchable_spade"` (`SwitchableSPADE`) or `"spade_resblock"` (`SPADEResBlock`).
        **kwargs: Constructor arguments of that layer.

    Returns:
        The new module.

    Raises:
        TypeError: If `name` is not a string.
        ValueError: If `name` is unknown (the message lists the known names).

    Example:
        >>> layer = create_layer("sspade", num_features=64, label_nc=2)
        >>> type(layer).__name__
        'SwitchableSPADE'
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown layer name {name!r}; known layers: {', '.join(list_layers())}")
    return _REGISTRY[key](**kwargs)
