"""Networks that record their constructor arguments and save/load themselves as model folders.

A class that derives from :class:`ConfigMixin` gets, with no code of its own:

* ``net.config``: the arguments its ``__init__`` was called with (defaults filled in), as plain
  JSON data (tuples become lists);
* ``Class.from_config(config)``: a new instance built from such a dict (unknown keys are
  dropped with a warning, missing keys take the constructor's defaults);
* ``net.save_pretrained(folder)``: ``config.json`` (the class name, darlkit's version and the
  config) + ``model.safetensors`` (the state dict; no pickle), and
  ``Class.from_pretrained(folder)``, which rebuilds the network (without spending time on a
  weight initialisation that the loaded weights replace) and loads the weights strictly.

Every subclass is registered by its class name, so a config naming ``"DiffusionUNet"`` can be
rebuilt by :func:`network_from_config`. A class whose constructor takes other networks (like
``DARL``) overrides :attr:`ConfigMixin.config` and :meth:`ConfigMixin.from_config`.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = [
    "ConfigMixin",
    "network_config",
    "network_from_config",
    "read_config",
    "load_weights",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
]

CONFIG_NAME = "config.json"
"""File name of a model folder's configuration."""

WEIGHTS_NAME = "model.safetensors"
"""File name of a model folder's weights."""

_REGISTRY: dict[str, type[ConfigMixin]] = {}
_META = ("_class_name", "_darlkit_version")


def _plain(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, where) for k, v in value.items()}
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return value.item()
    raise TypeError(f"{where} is a {type(value).__name__}, which a JSON config cannot hold")


class ConfigMixin:
    """Mixin for ``nn.Module`` networks: ``config``, ``from_config``, ``save_pretrained``, ``from_pretrained``.

    Put it before ``nn.Module`` in the bases (``class Net(ConfigMixin, nn.Module)``); the
    subclass's ``__init__`` is wrapped to record its bound arguments after it has run.
    """

    _config: dict[str, Any]
    _record_init: ClassVar[bool] = True
    """Record ``__init__``'s arguments (off for classes that override :attr:`config`)."""
    _skip_init_arg: ClassVar[str | None] = "init"
    """Constructor argument that ``from_pretrained`` sets to ``None`` to skip the weight
    initialisation (``None``: the class has no such argument)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls
        init = cls.__dict__.get("__init__")
        if init is None or not cls.__dict__.get("_record_init", cls._record_init):
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            bound = signature.bind(self, *args, **kw)
            bound.apply_defaults()
            self._config = {k: v for k, v in list(bound.arguments.items())[1:]}

        cls.__init__ = recording_init  # type: ignore[method-assign]

    # ------------------------------------------------------------------ config
    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments of this network as plain JSON data (a new dict).

        Raises:
            TypeError: If an argument cannot be written as JSON (e.g. a module was passed).
        """
        name = type(self).__name__
        return {k: _plain(v, f"{name} argument {k!r}") for k, v in self._config.items()}

    @classmethod
    def _split_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The keys of ``config`` that ``__init__`` accepts; warns about (and drops) the others."""
        if not isinstance(config, Mapping):
            raise TypeError(f"{cls.__name__} config must be a dict, got {type(config).__name__}")
        named = config.get("_class_name", cls.__name__)
        if named != cls.__name__:
            raise ValueError(f"the config describes a {named}, not a {cls.__name__}")
        params = inspect.signature(cls.__init__).parameters
        known = {k: v for k, v in config.items() if k in params and k != "self"}
        unknown = sorted(k for k in config if k not in known and k not in _META)
        if unknown:
            warnings.warn(
                f"{cls.__name__} config has unknown key(s) {unknown}; they are ignored "
                "(written by another darlkit version?)",
                UserWarning,
                stacklevel=3,
            )
        return known

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, skip_init: bool = False) -> ConfigMixin:
        """Build a network from a dict like :attr:`config`.

        Args:
            config: Constructor arguments (unknown keys warn and are ignored; missing keys take
                the defaults; ``_class_name``, if present, must name this class).
            skip_init: Build without the weight initialisation (for weights loaded next).

        Returns:
            The new network (on the CPU, in training mode).

        Raises:
            TypeError: If ``config`` is not a dict.
            ValueError: If ``config`` names another class or holds invalid values.
        """
        kwargs = cls._split_config(config)
        arg = cls._skip_init_arg
        if not (skip_init and arg is not None):
            return cls(**kwargs)
        net = cls(**{**kwargs, arg: None})
        # Record the scheme the weights were made with, not the skipped one.
        default = inspect.signature(cls.__init__).parameters[arg].default
        net._config[arg] = kwargs.get(arg, default)
        return net

    # ------------------------------------------------------------------ model folders
    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (the state dict) into ``folder``.

        Args:
            folder: Destination folder (created if needed; the two files are replaced).

        Returns:
            The folder.

        Raises:
            TypeError: If the configuration cannot be written as JSON.
        """
        from safetensors.torch import save_file

        from darlkit._version import __version__

        folder = Path(folder)
        meta = {"_class_name": type(self).__name__, "_darlkit_version": __version__}
        text = json.dumps({**meta, **self.config}, indent=2) + "\n"
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}  # type: ignore[attr-defined]
        folder.mkdir(parents=True, exist_ok=True)
        for name, write in ((WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"format": "pt"})),
                            (CONFIG_NAME, lambda p: p.write_text(text, encoding="utf-8"))):
            tmp = folder / f".{name}.tmp"
            write(tmp)
            os.replace(tmp, folder / name)
        return folder

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
    ) -> ConfigMixin:
        """Rebuild a network saved by :meth:`save_pretrained` (in eval mode).

        Args:
            folder: A folder with ``config.json`` and ``model.safetensors``.
            map_location: Device to put the network on.

        Returns:
            The network, with exactly the saved weights and buffers.

        Raises:
            FileNotFoundError: If the folder or one of its two files is missing.
            ValueError: If the files are unreadable or do not match each other.
        """
        config = read_config(folder)
        net = cls.from_config(config, skip_init=True)
        load_weights(net, folder)
        return net.to(map_location).eval()


def read_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``config.json`` of a model folder.

    Raises:
        FileNotFoundError: If the folder or its ``config.json`` does not exist.
        ValueError: If ``config.json`` is not a JSON object.
    """
    path = Path(folder) / CONFIG_NAME
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    if not path.is_file():
        raise FileNotFoundError(f"model folder {folder} has no {CONFIG_NAME}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


def load_weights(module: nn.Module, folder: str | os.PathLike[str]) -> None:
    """Load a model folder's ``model.safetensors`` into ``module`` (strictly, every key and shape).

    Raises:
        FileNotFoundError: If the weights file does not exist.
        ValueError: If it is unreadable or its keys/shapes differ from the module's.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"model folder {folder} has no {WEIGHTS_NAME}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{path} does not match {CONFIG_NAME}: {first}") from None


def network_config(net: nn.Module, name: str = "network") -> dict[str, Any]:
    """``{"_class_name": <class>, **net.config}`` of a :class:`ConfigMixin` network.

    Args:
        net: The network.
        name: What to call it in the error message (e.g. ``"unet"``).

    Returns:
        Plain JSON data that :func:`network_from_config` turns back into such a network.

    Raises:
        TypeError: If ``net`` does not record its configuration.
    """
    if not isinstance(net, ConfigMixin):
        raise TypeError(
            f"{name} is a {type(net).__name__}, which does not record its configuration "
            "(derive it from darlkit.nets.ConfigMixin to save it)"
        )
    return {"_class_name": type(net).__name__, **net.config}


def network_from_config(config: Mapping[str, Any], *, skip_init: bool = False) -> nn.Module:
    """Build the network a config names by its ``_class_name`` (any :class:`ConfigMixin` class).

    Args:
        config: A dict with ``_class_name`` and the constructor arguments.
        skip_init: Build without the weight initialisation.

    Returns:
        The new network.

    Raises:
        ValueError: If ``_class_name`` is missing or names no known network class (import the
            module that defines a custom network before loading it).
    """
    name = config.get("_class_name") if isinstance(config, Mapping) else None
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"config names network class {name!r}, not one of the known classes ({known})")
    return _REGISTRY[name].from_config(config, skip_init=skip_init)
