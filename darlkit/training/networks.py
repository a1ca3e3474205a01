"""The model half of a run: :class:`ModelConfig` (the networks' own settings), its presets, and building the networks.

A run is ``(TrainConfig, ModelConfig)``: :class:`~darlkit.training.TrainConfig` holds the
training settings (optimisers, loss weights, crops, schedule of validations, ...) and
:class:`ModelConfig` the constructor arguments of the four parts of the method, as the networks
record them themselves (:attr:`darlkit.nets.ConfigMixin.config`):

* ``unet``: :class:`~darlkit.nets.DiffusionUNet` (the diffusion module epsilon_theta);
* ``generator``: :class:`~darlkit.nets.SPADEGenerator` (the generation module G);
* ``discriminator``: :class:`~darlkit.nets.PatchDiscriminator` (both D_s and D_a);
* ``diffusion``: :class:`~darlkit.diffusion.GaussianDiffusion` (schedule and T);

plus ``t_a_max`` (``DARL``'s range of the path-A step). The settable keys of each part are its
constructor's arguments (:func:`settable`), so a new network argument is a new setting with no
table to edit; the arguments that DARL's wiring fixes are not settable (:data:`WIRED`).
The U-Net's ``image_size`` (where attention is placed) is the training crop side
``TrainConfig.image_size``.

Checkpoints written before the model had a configuration of its own hold its settings as flat
``TrainConfig`` fields; :data:`~darlkit.training.LEGACY_MODEL_FIELDS` is the one table that maps them into a
``ModelConfig`` (:meth:`ModelConfig.from_checkpoint`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from darlkit.training.config import LEGACY_MODEL_FIELDS, PRESETS, TrainConfig

__all__ = [
    "ModelConfig",
    "MODEL_PRESETS",
    "WIRED",
    "settable",
    "check_run",
    "build_networks",
]

PARTS: tuple[str, ...] = ("unet", "generator", "discriminator", "diffusion")

WIRED: dict[str, tuple[str, ...]] = {
    "unet": ("in_channels", "out_channels", "image_size"),
    "generator": ("in_channels", "out_channels", "label_nc"),
    "discriminator": ("in_channels",),
    "diffusion": ("betas",),
}
"""Constructor arguments a :class:`ModelConfig` does not set: one-channel images, the
generator's 2-channel input and segmap, explicit betas, and the U-Net's ``image_size`` (the
training crop side ``TrainConfig.image_size``)."""

# ----------------------------------------------------------------------------------------------
# Presets: the networks of each TrainConfig preset ("paper" = the constructors' defaults).
# Keys are "part.argument"; a preset lists only what differs from the paper.
# ----------------------------------------------------------------------------------------------
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "tiny": {
        "unet.base_channels": 16, "unet.channel_mults": (1, 2, 2, 4), "unet.num_res_blocks": 1,
        "unet.attn_resolutions": (8,), "unet.norm_groups": 8,
        "generator.base_channels": 16, "generator.spade_hidden": 32, "generator.backend": "eager",
        "discriminator.base_channels": 32,
    },
    "small": {  # measured on CHASE_DB1 (issue 12): the tiny networks, for step speed on a CPU
        "unet.base_channels": 16, "unet.channel_mults": (1, 2, 2, 4), "unet.num_res_blocks": 1,
        "unet.attn_resolutions": (8,), "unet.norm_groups": 8,
        "generator.base_channels": 16, "generator.spade_hidden": 32, "generator.backend": "eager",
        "discriminator.base_channels": 32,
    },
}
"""Network settings of each preset name (``TrainConfig.preset`` holds the training half)."""



def _classes() -> dict[str, type]:
    from darlkit.diffusion import GaussianDiffusion
    from darlkit.nets import DiffusionUNet, PatchDiscriminator, SPADEGenerator

    return {"unet": DiffusionUNet, "generator": SPADEGenerator, "discriminator": PatchDiscriminator,
            "diffusion": GaussianDiffusion}


def settable(part: str) -> dict[str, inspect.Parameter]:
    """The settable arguments of a model part: its constructor's, less :data:`WIRED`.

    Args:
        part: ``"unet"``, ``"generator"``, ``"discriminator"`` or ``"diffusion"``.

    Returns:
        ``{argument: inspect.Parameter}`` in signature order (the defaults are the paper's).

    Raises:
        ValueError: If ``part`` is not one of the four.
    """
    if part not in PARTS:
        raise ValueError(f"model part must be one of {PARTS}, got {part!r}")
    params = inspect.signature(_classes()[part].__init__).parameters
    return {k: p for k, p in params.items() if k != "self" and k not in WIRED[part]}


_INT = inspect.Parameter("value", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=0)
"""The parameter an int setting without a constructor of its own (``t_a_max``) is checked as."""
_ARTICLE = {"int": "an int", "float": "a float", "bool": "a bool", "str": "a str"}


def _coerce(key: str, param: inspect.Parameter, value: Any) -> Any:
    """``value`` as the type of ``param``'s default (tuples for sequences), or a TypeError naming ``key``."""
    default, optional = param.default, "None" in str(param.annotation)
    if value is None and optional:
        return None
    if isinstance(default, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise TypeError(f"ModelConfig {key} must be a list of ints, got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", _INT, v) for i, v in enumerate(value))
    kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}[type(default)]
    if not isinstance(value, kinds) or (isinstance(value, bool) and type(default) is not bool):
        raise TypeError(f"ModelConfig {key} must be {_ARTICLE[type(default).__name__]}, got {value!r}")
    return float(value) if type(default) is float else value


def _parse(key: str, param: inspect.Parameter, text: str) -> Any:
    """A ``--net`` value string as the setting's type: ``24``, ``0.5``, ``true``, ``eager``, ``1,2,4``, ``none``."""
    default = param.default
    if text.lower() == "none" and "None" in str(param.annotation):
        return None
    try:
        if isinstance(default, tuple):
            return tuple(int(v) for v in text.strip("()[] ").split(",") if v.strip())
        if isinstance(default, bool):
            return {"true": True, "1": True, "false": False, "0": False}[text.lower()]
        return type(default)(text)
    except (KeyError, ValueError):
        kind = "comma-separated ints" if isinstance(default, tuple) else _ARTICLE[type(default).__name__]
        raise ValueError(f"ModelConfig {key} must be {kind}, got {text!r}") from None


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` (``"part.argument"`` or ``"t_a_max"``) in a nested model-config dict."""
    part, _, arg = str(key).partition(".")
    if key == "t_a_max":
        data["t_a_max"] = value
    elif part in PARTS and arg:
        data[part][arg] = value
    else:
        raise TypeError(f"unknown model setting {key!r} (expected 'part.argument' with part one of "
                        f"{', '.join(PARTS)}, or 't_a_max')")


@dataclasses.dataclass
class ModelConfig:
    """The constructor arguments of DARL's networks: the model half of a run.

    Every part holds all of its settable arguments (missing ones take the paper's defaults),
    checked against the constructor's signature and types, and then validated by building the
    networks on the ``meta`` device (no memory, no initialisation), so an invalid value fails
    here with the network's own message.

    Attributes:
        unet: ``DiffusionUNet`` arguments (``base_channels``, ``channel_mults``, ...).
        generator: ``SPADEGenerator`` arguments (``base_channels``, ``spade_hidden``, ``backend``, ...).
        discriminator: ``PatchDiscriminator`` arguments of both D_s and D_a.
        diffusion: ``GaussianDiffusion`` arguments (``schedule``, ``timesteps``, ...).
        t_a_max: Path-A steps are drawn from ``{0, ..., t_a_max - 1}`` (200, at most T).

    Raises:
        TypeError: If a part is not a dict, names an unknown argument, or a value has the wrong type.
        ValueError: If a value is out of range (the network's message) or a wired argument is set.
    """

    unet: dict[str, Any] = dataclasses.field(default_factory=dict)
    generator: dict[str, Any] = dataclasses.field(default_factory=dict)
    discriminator: dict[str, Any] = dataclasses.field(default_factory=dict)
    diffusion: dict[str, Any] = dataclasses.field(default_factory=dict)
    t_a_max: int = 200

    def __post_init__(self) -> None:
        for part in PARTS:
            given = getattr(self, part)
            if not isinstance(given, Mapping):
                raise TypeError(f"ModelConfig.{part} must be a dict, got {type(given).__name__}")
            params = settable(part)
            wired = sorted(set(given) & set(WIRED[part]))
            if wired:
                raise ValueError(f"ModelConfig {part}.{wired[0]} is fixed by DARL"
                                 + (" (the training crop side TrainConfig.image_size)" if wired[0] == "image_size" else ""))
            unknown = sorted(set(given) - set(params))
            if unknown:
                raise TypeError(f"ModelConfig {part} has no setting {unknown[0]!r} (settable: {', '.join(params)})")
            full = {k: (given[k] if k in given else p.default) for k, p in params.items()}
            setattr(self, part, {k: _coerce(f"{part}.{k}", params[k], v) for k, v in full.items()})
        self.t_a_max = _coerce("t_a_max", _INT, self.t_a_max)
        self.build(image_size=2 ** (len(self.unet["channel_mults"]) + 1), meta=True)

    # ------------------------------------------------------------------ presets and changes
    @classmethod
    def preset(cls, name: str, overrides: Mapping[str, Any] | None = None) -> ModelConfig:
        """The networks of preset ``name`` (:data:`MODEL_PRESETS`), with dotted-key overrides.

        Args:
            name: ``"paper"``, ``"tiny"`` or ``"small"`` (as ``TrainConfig.preset``).
            overrides: ``{"unet.base_channels": 24, "t_a_max": 100, ...}``.

        Returns:
            The validated configuration.

        Raises:
            ValueError: If ``name`` is unknown or an override is invalid.
        """
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {name!r}")
        return cls._with({}, {**MODEL_PRESETS[name], **dict(overrides or {})})

    def replace(self, overrides: Mapping[str, Any]) -> ModelConfig:
        """A validated copy with some settings changed.

        Args:
            overrides: ``{"part.argument": value}`` or ``{"t_a_max": value}``.

        Returns:
            The new configuration.

        Raises:
            TypeError: If a key names no setting or a value has the wrong type.
            ValueError: If a value is invalid.
        """
        return ModelConfig._with(self.to_dict(), overrides)

    @classmethod
    def _with(cls, data: dict[str, Any], overrides: Mapping[str, Any]) -> ModelConfig:
        data = {**{part: {} for part in PARTS}, **data}
        for key, value in overrides.items():
            _set(data, key, value)
        return cls(**data)

    def parse_overrides(self, items: list[str]) -> dict[str, Any]:
        """``["unet.base_channels=24", "unet.channel_mults=1,2,4"]`` as typed dotted-key overrides.

        Args:
            items: ``KEY=VALUE`` strings (the ``--net`` option of ``darlkit train``).

        Returns:
            ``{key: value}`` with each value of the setting's type.

        Raises:
            ValueError: If an item is not ``KEY=VALUE``, names no setting, or its value does not parse.
        """
        out: dict[str, Any] = {}
        for item in items:
            key, sep, text = item.partition("=")
            part, _, arg = key.strip().partition(".")
            if key.strip() == "t_a_max" and sep:
                out["t_a_max"] = _parse("t_a_max", _INT, text.strip())
                continue
            params = settable(part) if part in PARTS else {}
            if not sep or arg not in params:
                names = ", ".join(sorted(self.flat()))
                raise ValueError(f"model setting {item!r} is not KEY=VALUE with KEY one of {names}")
            out[key.strip()] = _parse(key.strip(), params[arg], text.strip())
        return out

    # ------------------------------------------------------------------ views
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data ``{"unet": {...}, ..., "t_a_max": int}`` (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def flat(self) -> dict[str, Any]:
        """``{"part.argument": value, ..., "t_a_max": int}`` (tuples kept)."""
        out = {f"{part}.{k}": v for part in PARTS for k, v in getattr(self, part).items()}
        return {**out, "t_a_max": self.t_a_max}

    def darl_config(self, image_size: int) -> dict[str, Any]:
        """The ``DARL.config`` of these networks at training crop side ``image_size``."""
        names = {"unet": "DiffusionUNet", "generator": "SPADEGenerator", "diffusion": "GaussianDiffusion"}
        data = self.to_dict()
        out: dict[str, Any] = {p: {"_class_name": c, **data[p]} for p, c in names.items()}
        out["unet"]["image_size"] = int(image_size)
        return {**out, "t_a_max": self.t_a_max}

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; also reads a ``DARL.config`` (+ ``"discriminator"``).

        ``_class_name`` / ``_darlkit_version`` entries and wired arguments (e.g. the U-Net's
        ``image_size``) are dropped; unknown keys (another darlkit version) warn and are ignored.

        Args:
            data: The nested dict.

        Returns:
            The validated configuration.

        Raises:
            TypeError: If ``data`` or a part is not a dict.
            ValueError: If a part names another network class than darlkit's.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"model config must be a dict, got {type(data).__name__}")
        classes, out, unknown = _classes(), {}, [k for k in data if k not in (*PARTS, "t_a_max")]
        for part in PARTS:
            section = dict(data.get(part) or {})
            named = section.pop("_class_name", classes[part].__name__)
            if named != classes[part].__name__:
                raise ValueError(f"model config {part} is a {named}; ModelConfig describes darlkit's "
                                 f"{classes[part].__name__} (build custom networks yourself)")
            section.pop("_darlkit_version", None)
            params = settable(part)
            unknown += [f"{part}.{k}" for k in section if k not in params and k not in WIRED[part]]
            out[part] = {k: v for k, v in section.items() if k in params}
        if unknown:
            warnings.warn(f"ModelConfig: ignoring unknown key(s) {', '.join(sorted(unknown))} "
                          "(written by another darlkit version?)", UserWarning, stacklevel=2)
        return cls(**out, t_a_max=data.get("t_a_max", 200))

    @classmethod
    def from_checkpoint(cls, state: Mapping[str, Any]) -> ModelConfig:
        """The model configuration of a training checkpoint dict, whatever its darlkit version.

        Current checkpoints hold ``"model_config"`` (``DARL.config``) and
        ``"discriminator_config"``; older ones hold the settings as flat fields of
        ``"config"``, mapped by :data:`~darlkit.training.LEGACY_MODEL_FIELDS` (both forms may be mixed).

        Args:
            state: The checkpoint dict.

        Returns:
            The validated configuration.
        """
        run = state.get("config") or {}
        data: dict[str, Any] = {part: {} for part in PARTS}
        for key, value in run.items():
            if key in LEGACY_MODEL_FIELDS:
                _set(data, LEGACY_MODEL_FIELDS[key], value)
        if state.get("model_config"):
            data.update({k: v for k, v in state["model_config"].items() if k != "discriminator"})
        if state.get("discriminator_config"):
            data["discriminator"] = state["discriminator_config"]
        return cls.from_dict(data)

    @classmethod
    def of_networks(cls, model: nn.Module, disc: nn.Module) -> ModelConfig | None:
        """The configuration of built networks (``None`` if one does not record its config or is custom)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return cls.from_dict({**model.config, "discriminator": disc.config})  # type: ignore[operator]
        except (AttributeError, TypeError, ValueError):
            return None

    # ------------------------------------------------------------------ building
    def build(self, image_size: int, *, meta: bool = False) -> tuple[nn.Module, nn.Module, nn.Module]:
        """Build ``(DARL, D_s, D_a)`` at training crop side ``image_size`` (see :func:`build_networks`).

        Args:
            image_size: The training crop side (the U-Net's ``image_size``).
            meta: Build the networks on the ``meta`` device without initialisation (a check of
                the settings that costs no memory).

        Returns:
            The model and the two discriminators (the diffusion schedule always on the CPU).
        """
        from darlkit.diffusion import GaussianDiffusion
        from darlkit.model import DARL
        from darlkit.nets import DiffusionUNet, PatchDiscriminator, SPADEGenerator

        def make(part: str, build: Any) -> Any:
            try:
                return build()
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"ModelConfig {part}: {exc}") from None

        diffusion = make("diffusion", lambda: GaussianDiffusion(**self.diffusion))
        no_init = {"init": None} if meta else {}
        with torch.device("meta") if meta else contextlib.nullcontext():
            unet = make("unet", lambda: DiffusionUNet(image_size=int(image_size), **{**self.unet, **no_init}))
            generator = make("generator", lambda: SPADEGenerator(**{**self.generator, **no_init}))
            model = make("t_a_max", lambda: DARL(unet, generator, diffusion, t_a_max=self.t_a_max))
            discs = [make("discriminator", lambda: PatchDiscriminator(in_channels=1, **{**self.discriminator, **no_init}))
                     for _ in range(2)]
        return model, discs[0], discs[1]


def check_run(config: TrainConfig, model: ModelConfig) -> None:
    """Check that a training configuration and a model configuration fit together.

    Raises:
        ValueError: If the crop side is not divisible by the networks' downsampling factor or
            ``t_b_max`` exceeds T.
    """
    levels = len(model.unet["channel_mults"])
    down = max(2 ** (levels - 1), 4)
    if config.image_size % down:
        raise ValueError(f"TrainConfig.image_size must be divisible by {down} (the U-Net downsamples "
                         f"{levels - 1} times and the generator twice), got {config.image_size}")
    steps = model.diffusion["timesteps"]
    if config.t_b_max is not None and config.t_b_max > steps:
        raise ValueError(f"TrainConfig.t_b_max must be <= the diffusion steps T={steps} or None, got {config.t_b_max}")


def build_networks(
    config: TrainConfig, model: ModelConfig | None = None, *, seed: int | None = None
) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Create the DARL model and its two PatchGAN discriminators of a run.

    Networks are initialised under ``torch.manual_seed(seed)`` (default ``config.seed``) in a
    forked RNG scope, so the global RNG state is left as it was and equal seeds give equal
    weights.

    Args:
        config: The training configuration (crop side, seed).
        model: The networks (default: the preset's, ``ModelConfig.preset(config.preset_name)``).
        seed: Initialisation seed (default: ``config.seed``).

    Returns:
        ``(model, disc_mask, disc_image)``: a ``darlkit.model.DARL`` (diffusion U-Net
        epsilon_theta + SPADE generator G + Gaussian diffusion), the mask discriminator D_s and
        the angiogram discriminator D_a, all on the CPU in float32.

    Raises:
        TypeError: If ``config`` is not a :class:`TrainConfig` or ``model`` not a :class:`ModelConfig`.
        ValueError: If the two do not fit together (:func:`check_run`).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    model = ModelConfig.preset(config.preset_name) if model is None else model
    if not isinstance(model, ModelConfig):
        raise TypeError(f"model must be a ModelConfig, got {type(model).__name__}")
    check_run(config, model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed if seed is None else int(seed))
        return model.build(config.image_size)
