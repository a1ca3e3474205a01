"""Multiply-accumulate counting ("exact" and "paper" conventions) and the paper's Table 12.

* ``count_macs(module, *args, convention="paper") -> MacReport``,
* ``register_mac_rule`` / ``unregister_mac_rule`` / ``get_mac_rule`` -- the paper
  convention's per-module-type rules (a layer may own its rule: ``SwitchableSPADE.paper_macs``),
* ``compute_table12`` / ``format_table12`` -- Table 12 (``darlkit flops``,
  ``benchmarks/table12.py``).
"""

from darlkit.flops.counter import (
    CONVENTIONS,
    PAPER_RULES_DOC,
    MacReport,
    count_macs,
    get_mac_rule,
    register_mac_rule,
    unregister_mac_rule,
)
from darlkit.flops.table12 import (
    PAPER_COMPONENT_GMACS,
    PAPER_TABLE12,
    Table12,
    Table12Row,
    compute_table12,
    format_table12,
)

__all__ = [
    "CONVENTIONS",
    "PAPER_RULES_DOC",
    "MacReport",
    "count_macs",
    "register_mac_rule",
    "unregister_mac_rule",
    "get_mac_rule",
    "PAPER_TABLE12",
    "PAPER_COMPONENT_GMACS",
    "Table12",
    "Table12Row",
    "compute_table12",
    "format_table12",
]
