"""Paper Table 12: training complexity (GMACs of one iteration) of SSVS and DARL.

Per iteration at batch 1 (SSVS: its default batch 2), one method's row is:

* DARL: (A) = eps_theta + G without a mask; (B) = eps_theta + G with the 2-channel one-hot
  mask; cycle = (A) once; discriminator = one PatchGAN on one real and one fake image
  (2 forwards), for each of the two discriminators (x 2).
* SSVS: every path is one ResNet-generator forward at batch 2; the cycle path runs twice;
  the discriminator column is two PatchGAN forwards, x 2.

``total = A + B + cycle x n_cycle + discriminator x 2``.

Two conventions are reported (see ``count_macs``). The paper convention reproduces
the paper's figures (module-hook rules of ptflops 0.6.9: it also counts norms,
activations, biases and upsampling per element, counts a stride-2 transposed convolution
on its output grid, 4x its cost, and skips functional calls such as attention's matrix
products). The exact convention counts only convolutions and matrix products at their true
cost: lower at 256x256, most of all for SSVS, whose transposed convolutions the paper
convention over-counts; at larger sizes DARL's attention products can make it higher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import torch

from darlkit._platform import device_name
from darlkit._validation import check_int
from darlkit.flops.counter import CONVENTIONS, count_macs

__all__ = [
    "PAPER_TABLE12",
    "PAPER_COMPONENT_GMACS",
    "Table12Row",
    "Table12",
    "compute_table12",
    "format_table12",
    "table12_json",
]

PAPER_TABLE12: dict[str, dict[str, float]] = {
    "SSVS": {"a_path": 121.80, "b_path": 121.80, "cycle": 121.80, "disc": 6.24, "total": 499.68},
    "DARL": {"a_path": 90.66, "b_path": 173.51, "cycle": 90.66, "disc": 6.24, "total": 367.31},
}
"""Paper Table 12 (GFLOPs as printed; the paper's "FLOPs" are MACs). Keys: method ->
column -> value; ``cycle`` and ``disc`` are per-pass values (multipliers in the rows).
"""

PAPER_COMPONENT_GMACS: dict[str, float] = {
    "darl_a": 90.658,
    "darl_b": 173.506,
    "patchgan": 3.119,
    "ssvs_generator": 60.902,
}
"""The paper-convention component counts at 256x256, batch 1, to three decimals (SPEC)."""

_COLUMNS = ("a_path", "b_path", "cycle", "disc", "total")
_MULT = {"SSVS": {"cycle": 2, "disc": 2}, "DARL": {"cycle": 1, "disc": 2}}


@dataclass
class Table12Row:
    """One method's row, in GMACs.

    Attributes:
        method: ``"SSVS"`` or ``"DARL"``.
        a_path: (A) path.
        b_path: (B) path.
        cycle: One cycle pass (multiplied by ``cycle_mult`` in the total).
        cycle_mult: Cycle passes per iteration (SSVS 2, DARL 1).
        disc: One discriminator's cost per iteration (multiplied by ``disc_mult``).
        disc_mult: Number of discriminators (2).
        total: ``a_path + b_path + cycle * cycle_mult + disc * disc_mult``.
        paper: The paper's printed values per column (256x256 only, else empty).
        rel_error: ``(value - paper) / paper`` per column (empty when no paper value).
    """

    method: str
    a_path: float
    b_path: float
    cycle: float
    cycle_mult: int
    disc: float
    disc_mult: int
    total: float
    paper: dict[str, float] = field(default_factory=dict)
    rel_error: dict[str, float] = field(default_factory=dict)


@dataclass
class Table12:
    """Table 12 in one convention.

    Attributes:
        convention: ``"paper"`` or ``"exact"``.
        size: Image side (256 in the paper).
        rows: The SSVS and DARL rows.
        components: GMACs per network call at batch 1: ``unet``, ``generator_nomask``,
            ``generator_mask``, ``patchgan``, ``ssvs_generator``, ``darl_a``, ``darl_b``.
        params: Parameter counts per network.
    """

    convention: str
    size: int
    rows: list[Table12Row]
    components: dict[str, float]
    params: dict[str, int]


def _build_networks():
    from darlkit.nets import DiffusionUNet, PatchDiscriminator, SPADEGenerator, SSVSGenerator

    # Weights do not change MAC counts: skip the (slow) orthogonal initialisation. The eager
    # kernel backend keeps FlopCounterMode (a dispatch mode) away from torch.compile.
    return {
        "unet": DiffusionUNet(init=None),
        "generator": SPADEGenerator(init=None, backend="eager"),  # counts do not depend on the backend
        "patchgan": PatchDiscriminator(init=None),
        "ssvs_generator": SSVSGenerator(init=None),
    }


def compute_table12(
    size: int = 256,
    conventions: Sequence[str] = CONVENTIONS,
    *,
    ssvs_batch: int = 2,
    networks: dict | None = None,
) -> list[Table12]:
    """Count the paper networks' MACs and assemble Table 12.

    Args:
        size: Image side (multiple of 32); the paper's values apply at 256.
        conventions: Conventions to compute (``"paper"``, ``"exact"``).
        ssvs_batch: SSVS training batch (2, its default): its path figures are that many
            generator forwards.
        networks: Optional prebuilt networks (keys ``unet``, ``generator``, ``patchgan``,
            ``ssvs_generator``); default: the paper configurations.

    Returns:
        One ``Table12`` per convention, in the given order.

    Raises:
        ValueError: On an unknown convention, a size that is not a positive multiple of
            32, or ``ssvs_batch < 1``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 32 or size % 32:
        raise ValueError(f"size must be a positive multiple of 32, got {size!r}")
    check_int("ssvs_batch", ssvs_batch)
    for c in conventions:
        if c not in CONVENTIONS:
            raise ValueError(f"conventions must be drawn from {CONVENTIONS}, got {c!r}")
    nets = networks or _build_networks()
    x1 = torch.zeros(1, 1, size, size)
    x2 = torch.zeros(1, 2, size, size)
    onehot = torch.zeros(1, 2, size, size)
    onehot[:, 0] = 1.0
    t = torch.zeros(1, dtype=torch.int64)
    params = {k: sum(p.numel() for p in v.parameters()) for k, v in nets.items()}

    tables = []
    for conv in conventions:
        g = lambda m, *a: count_macs(m, *a, convention=conv).total / 1e9  # noqa: E731
        comp = {
            "unet": g(nets["unet"], x1, t),
            "generator_nomask": g(nets["generator"], x2),
            "generator_mask": g(nets["generator"], x2, onehot),
            "patchgan": g(nets["patchgan"], x1),
            "ssvs_generator": g(nets["ssvs_generator"], x1),
        }
        comp["darl_a"] = comp["unet"] + comp["generator_nomask"]
        comp["darl_b"] = comp["unet"] + comp["generator_mask"]
        disc = 2 * comp["patchgan"]
        ssvs_path = ssvs_batch * comp["ssvs_generator"]
        values = {
            "SSVS": dict(a_path=ssvs_path, b_path=ssvs_path, cycle=ssvs_path, disc=disc),
            "DARL": dict(a_path=comp["darl_a"], b_path=comp["darl_b"], cycle=comp["darl_a"], disc=disc),
        }
        rows = []
        for method, v in values.items():
            m = _MULT[method]
            total = v["a_path"] + v["b_path"] + v["cycle"] * m["cycle"] + v["disc"] * m["disc"]
            row = Table12Row(method, v["a_path"], v["b_path"], v["cycle"], m["cycle"], v["disc"], m["disc"], total)
            if size == 256 and conv == "paper":
                row.paper = dict(PAPER_TABLE12[method])
                row.rel_error = {c: (getattr(row, c) - row.paper[c]) / row.paper[c] for c in _COLUMNS}
            rows.append(row)
        tables.append(Table12(conv, size, rows, comp, params))
    return tables


def format_table12(tables: Sequence[Table12]) -> str:
    """Render tables as plain text (GMACs; paper value and relative error per cell).

    Args:
        tables: Output of ``compute_table12``.

    Returns:
        A multi-line string.
    """
    out = []
    for tab in tables:
        out.append(f"Table 12 ({tab.convention} convention), {tab.size}x{tab.size}, GMACs per training iteration")
        out.append(f"| Method | (A) path | (B) path | Cycle path | Discriminator | Total |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for r in tab.rows:
            def cell(col: str, mult: int | None = None) -> str:
                s = f"{getattr(r, col):.3f}" + (f" x {mult}" if mult is not None else "")
                if r.paper:
                    s += f" (paper {r.paper[col]:.2f}, {100 * r.rel_error[col]:+.3f}%)"
                return s

            out.append(
                f"| {r.method} | {cell('a_path')} | {cell('b_path')} | {cell('cycle', r.cycle_mult)} | "
                f"{cell('disc', r.disc_mult)} | {cell('total')} |"
            )
        comp = ", ".join(f"{k} {v:.3f}" for k, v in tab.components.items())
        out.append(f"Per call (batch 1): {comp}")
        if tab.convention == "paper" and tab.size == 256:
            ref = ", ".join(
                f"{k} {tab.components[k]:.3f} vs {v:.3f}" for k, v in PAPER_COMPONENT_GMACS.items()
            )
            out.append(f"SPEC three-decimal figures: {ref}")
        out.append("")
    if tables:
        params = ", ".join(f"{k} {v:,}" for k, v in tables[0].params.items())
        out.append(f"Parameters: {params}")
    names = {t.convention for t in tables}
    if {"paper", "exact"} <= names:
        out.append(
            "How the conventions differ: the paper convention (the paper's counter, ptflops 0.6.9 "
            "module rules) also counts norms, activations, bias additions and upsampling per "
            "element, counts a stride-2 transposed convolution on its output grid (4x its true "
            "cost) and skips functional calls such as the attention matrix products; the exact "
            "convention counts only convolutions and matrix products at their true cost "
            "(FlopCounterMode, halved). So the paper convention is higher for SSVS (transposed "
            "convolutions) and slightly higher for DARL at 256x256, while at larger sizes the "
            "attention products (quadratic in the pixels of the attention level) can make the "
            "exact count the larger one."
        )
    return "\n".join(out)


def table12_json(tables: Sequence[Table12]) -> dict:
    """The tables as JSON data, with the device, torch version and date of the count.

    Args:
        tables: Results of :func:`compute_table12`.

    Returns:
        ``{"device", "torch", "date", "tables": [...]}``.
    """
    return {
        "device": device_name() + " (counts do not depend on the device)",
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tables": [asdict(t) for t in tables],
    }
