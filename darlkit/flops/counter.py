"""Multiply-accumulate (MAC) counting of a module call, in two conventions.

* ``"exact"``: the MACs of convolutions and matrix products (conv, transposed conv, mm,
  addmm, bmm, baddbmm, scaled-dot-product attention, ...) as
  ``torch.utils.flop_counter.FlopCounterMode`` counts them, halved (that mode reports
  2 x MACs). Norms, activations and element-wise ops count nothing.
* ``"paper"``: module-hook rules that reproduce the numbers of DARL's paper (Table 12) to the
  last printed digit. These are the rules of the ptflops package's "pytorch" backend at
  version 0.6.9, rewritten from their description (see ``PAPER_RULES_DOC``): a module
  contributes only if a rule is registered for its type; functional calls count nothing.
  Unlike the real cost, a stride-2 transposed convolution is counted on its output grid
  (4x its true cost), and norms and activations are counted per element.

Rules are looked up along the module type's MRO, so a subclass of ``nn.Conv2d`` is counted
as a convolution (ptflops matched exact types; darlkit's networks contain no such
subclasses, so the totals agree). A module class can own its rule: a ``paper_macs(self, args,
kwargs, out) -> int`` method (and ``paper_mac_exclusive_children``, the children it replaces),
as darlkit's ``SwitchableSPADE`` has for its fused kernels; ``register_mac_rule`` adds or
overrides rules from outside (a registered rule of the same class wins).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = [
    "CONVENTIONS",
    "MacReport",
    "MacRule",
    "count_macs",
    "register_mac_rule",
    "unregister_mac_rule",
    "get_mac_rule",
    "PAPER_RULES_DOC",
]

CONVENTIONS: tuple[str, ...] = ("paper", "exact")
"""Accepted values of ``convention``."""

MacRule = Callable[[nn.Module, tuple, dict, Any], int]
"""Signature of a rule: ``fn(module, args, kwargs, output) -> int`` (MACs of one call)."""

PAPER_RULES_DOC = """\
Paper convention (per module call, batch included, all counts are MACs):
- Conv1d/2d/3d: prod(kernel) * in_channels * out_channels / groups per output position,
  + out_channels per output position with a bias.
- ConvTranspose1d/2d/3d: the same formula with the OUTPUT grid as positions.
- BatchNorm*, InstanceNorm*, GroupNorm: input elements, x2 when affine.
- ReLU, LeakyReLU, ELU, PReLU, ReLU6: output elements.
- Linear: input elements * out_features, + out_features with a bias.
- Upsample: number of elements of the first sample of the output.
- Pooling modules: input elements.
- Everything else: 0 (functional calls, additions, concatenations, custom modules).
"""
"""The paper convention's counting rules, as text."""


# --------------------------------------------------------------------------------------
# Paper-convention rules


def _first_tensor(args: tuple) -> torch.Tensor:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a
    raise ValueError("the module was called without a tensor argument")


def _conv_rule(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
    x = _first_tensor(args)
    batch = x.shape[0]
    per_position = math.prod(m.kernel_size) * m.in_channels * (m.out_channels // m.groups)
    positions = batch * math.prod(out.shape[2:])
    bias = m.out_channels * positions if m.bias is not None else 0
    return per_position * positions + bias


def _norm_rule(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
    n = _first_tensor(args).numel()
    return 2 * n if getattr(m, "affine", False) else n


def _act_rule(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
    return out.numel()


def _linear_rule(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
    x = _first_tensor(args)
    bias = out.shape[-1] if m.bias is not None else 0
    return x.numel() * out.shape[-1] + bias


def _upsample_rule(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
    return out[0].numel()


def _pool_rule(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
    return _first_tensor(args).numel()


@dataclass
class _RuleEntry:
    fn: MacRule
    exclusive_children: tuple[str, ...] = ()


_PAPER_RULES: dict[type, _RuleEntry] = {}


def register_mac_rule(
    module_type: type, fn: MacRule, *, convention: str = "paper", exclusive_children: tuple[str, ...] = ()
) -> None:
    """Register (or replace) the paper-convention rule of a module type.

    Args:
        module_type: A subclass of ``nn.Module``; the rule also applies to its subclasses
            that have no rule of their own.
        fn: ``fn(module, args, kwargs, output) -> int``: MACs of one call (``args`` and
            ``kwargs`` as passed to ``forward``).
        convention: Only ``"paper"`` has rules (``"exact"`` counts operators, not modules).
        exclusive_children: Names of child modules whose own counts are dropped while
            this module runs (for rules that already count what those children compute).

    Raises:
        TypeError: If ``module_type`` is not an ``nn.Module`` subclass or ``fn`` is not callable.
        ValueError: If ``convention`` is not ``"paper"``.
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if convention != "paper":
        raise ValueError(f"convention must be 'paper' (the only rule-based one), got {convention!r}")
    _PAPER_RULES[module_type] = _RuleEntry(fn, tuple(exclusive_children))


def unregister_mac_rule(module_type: type) -> None:
    """Remove the paper-convention rule of exactly ``module_type`` (no-op if absent).

    Args:
        module_type: The module type whose rule to remove.
    """
    _PAPER_RULES.pop(module_type, None)


def get_mac_rule(module_type: type) -> MacRule | None:
    """The paper-convention rule that applies to ``module_type`` (MRO lookup), or ``None``.

    Args:
        module_type: A module type.

    Returns:
        The rule function, or ``None`` if the type counts 0.
    """
    entry = _lookup(module_type)
    return entry.fn if entry is not None else None


def _lookup(module_type: type) -> _RuleEntry | None:
    for t in module_type.__mro__:
        entry = _PAPER_RULES.get(t)
        if entry is not None:
            return entry
        if "paper_macs" in vars(t):  # the layer owns its rule (e.g. darlkit's SwitchableSPADE)
            return _RuleEntry(vars(t)["paper_macs"], tuple(getattr(t, "paper_mac_exclusive_children", ())))
    return None


for _t in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
    register_mac_rule(_t, _conv_rule)
for _t in (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
):
    register_mac_rule(_t, _norm_rule)
for _t in (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.PReLU, nn.ReLU6):
    register_mac_rule(_t, _act_rule)
register_mac_rule(nn.Linear, _linear_rule)
register_mac_rule(nn.Upsample, _upsample_rule)
for _t in (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
):
    register_mac_rule(_t, _pool_rule)


# --------------------------------------------------------------------------------------
# Reports


@dataclass
class MacReport:
    """MACs of one module call.

    Attributes:
        total: Total multiply-accumulates (int).
        convention: ``"paper"`` or ``"exact"``.
        per_module: MACs per qualified module name (``""`` = the root module), summed over
            every call of that module. For ``"paper"``: modules that have a rule; for
            ``"exact"``: every module in the hierarchy, inclusive of its children (as
            ``FlopCounterMode`` reports them), so these do not sum to ``total``.
        per_type: ``"paper"`` only: MACs per module type name.
    """

    total: int
    convention: str
    per_module: dict[str, int] = field(default_factory=dict)
    per_type: dict[str, int] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        """``total / 1e9``."""
        return self.total / 1e9

    def __str__(self) -> str:
        lines = [f"{self.total:,} MACs = {self.total / 1e9:.3f} GMACs ({self.convention} convention)"]
        rows = self.per_type if self.per_type else self.per_module
        for name, v in sorted(rows.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {name or '<root>'}: {v:,}")
        return "\n".join(lines)


@contextlib.contextmanager
def _eager_kernels(module: nn.Module) -> Iterator[None]:
    # MACs do not depend on the kernel backend; darlkit layers with a ``backend`` attribute
    # (S-SPADE) run eager while counting, so FlopCounterMode (a dispatch mode) never meets
    # torch.compile and no compile time is spent.
    changed = []
    for m in module.modules():
        backend = getattr(m, "backend", None)
        if isinstance(backend, str) and backend != "eager" and m.__class__.__module__.startswith("darlkit."):
            changed.append((m, backend))
            m.backend = "eager"
    try:
        yield
    finally:
        for m, backend in changed:
            m.backend = backend


@contextlib.contextmanager
def _eval_mode(module: nn.Module, enabled: bool) -> Iterator[None]:
    # Counting must not update state (spectral-norm power iteration, BN running stats).
    modes = [(m, m.training) for m in module.modules()]
    if enabled:
        module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.train(mode)


def _count_paper(module: nn.Module, args: tuple, kwargs: dict) -> MacReport:
    names = {m: n for n, m in module.named_modules(remove_duplicate=False)}
    per_module: dict[str, int] = {}
    per_type: dict[str, int] = {}
    excluded_depth: dict[int, int] = {}  # id(child) -> active exclusion count
    handles = []

    def make_hooks(m: nn.Module, entry: _RuleEntry):
        name = names[m]
        children = [getattr(m, c, None) for c in entry.exclusive_children]
        children = [c for c in children if isinstance(c, nn.Module)]

        def pre(mod, a, kw):
            for c in children:
                for sub in c.modules():
                    excluded_depth[id(sub)] = excluded_depth.get(id(sub), 0) + 1

        def post(mod, a, kw, out):
            for c in children:
                for sub in c.modules():
                    excluded_depth[id(sub)] -= 1
            if excluded_depth.get(id(mod), 0) > 0:
                return
            macs = int(entry.fn(mod, a, kw, out))
            per_module[name] = per_module.get(name, 0) + macs
            tname = type(mod).__name__
            per_type[tname] = per_type.get(tname, 0) + macs

        return pre, post

    try:
        for m in module.modules():
            entry = _lookup(type(m))
            if entry is None:
                continue
            pre, post = make_hooks(m, entry)
            handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(m.register_forward_hook(post, with_kwargs=True))
        module(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return MacReport(sum(per_module.values()), "paper", per_module, per_type)


def _count_exact(module: nn.Module, args: tuple, kwargs: dict) -> MacReport:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        module(*args, **kwargs)
    counts = fc.get_flop_counts()
    total = sum(counts.get("Global", {}).values()) // 2
    root = type(module).__name__
    per_module = {}
    for key, ops in counts.items():
        if key == "Global":
            continue
        name = key[len(root) + 1 :] if key.startswith(root + ".") else ("" if key == root else key)
        per_module[name] = sum(ops.values()) // 2
    return MacReport(int(total), "exact", per_module)


def count_macs(module: nn.Module, *args: Any, convention: str = "paper", eval_mode: bool = True, **kwargs: Any) -> MacReport:
    """Count the multiply-accumulates of ``module(*args, **kwargs)``.

    The call runs once under ``torch.no_grad()``; by default the module is switched to
    eval mode for it (so spectral-norm vectors and running statistics are not updated)
    and its previous modes are restored afterwards. darlkit layers with a kernel
    ``backend`` (S-SPADE) run their eager kernels during the call (counts do not depend on
    the backend; ``FlopCounterMode`` cannot trace ``torch.compile``d kernels).

    Args:
        module: The module to call.
        *args: Positional arguments of the call (e.g. an input of shape (1, C, 256, 256)).
        convention: ``"paper"`` (module-hook rules of the paper's counter) or ``"exact"``
            (convolutions and matrix products only, from ``FlopCounterMode``, halved).
        eval_mode: Run the call in eval mode (True).
        **kwargs: Keyword arguments of the call.

    Returns:
        A ``MacReport`` with the total and a per-module breakdown.

    Raises:
        TypeError: If ``module`` is not an ``nn.Module``.
        ValueError: If ``convention`` is unknown.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> count_macs(nn.Conv2d(1, 8, 3, padding=1), torch.zeros(1, 1, 4, 4)).total
        1280
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    with torch.no_grad(), _eval_mode(module, eval_mode), _eager_kernels(module):
        if convention == "paper":
            return _count_paper(module, args, kwargs)
        return _count_exact(module, args, kwargs)
