"""darlkit's import structure: no cycles, no lower layer importing a higher one, small modules.

Layers, lowest first (a module may import darlkit modules of strictly lower rank, and modules of
its own unit; units of equal rank do not import each other):

=====  ==========================================  =============================================
rank   units                                       role
=====  ==========================================  =============================================
0      ``_validation``, ``_platform``, ``_version``  private helpers, no darlkit imports
1      ``polyphase``, ``kernels``, ``metrics``,     self-contained building blocks (tensor ops,
       ``losses``                                  fused norms, segmentation metrics, GAN losses)
2      ``data``                                    XCAD reading, [-1, 1] <-> uint8 conversion
                                                   (uses ``polyphase``)
3      ``synthesis``, ``layers``                   fractal vessels / angiogram rendering and the
                                                   synthetic dataset writer (uses ``data``);
                                                   SPADE layers (use ``kernels``)
4      ``diffusion``, ``preparation``              beta schedules, ``GaussianDiffusion``;
                                                   ``darlkit prepare`` (uses ``data`` and
                                                   ``synthesis``) (peers)
5      ``nets``                                    the networks (use ``layers``)
6      ``model``, ``flops``                        ``DARL`` and its files / loading; MAC
                                                   counting of the networks (peers)
7      ``training``                                trainer, checkpoints, run configuration
8      ``darlkit`` (``__init__``)                  re-exports every subpackage
9      ``cli``                                     the command line: parses and calls the library
10     ``__main__``                                ``python -m darlkit``
=====  ==========================================  =============================================

Every ``import`` statement counts, at module level or inside a function (a lazy import still
couples the two modules); ``if TYPE_CHECKING:`` blocks do not. ``from darlkit import X``
imports the submodule ``darlkit.X`` when there is one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "darlkit"
MAX_LINES = 450

RANKS = {
    "_validation": 0, "_platform": 0, "_version": 0,
    "polyphase": 1, "kernels": 1, "metrics": 1, "losses": 1, "baselines": 1,
    "data": 2,
    "synthesis": 3, "layers": 3,
    "diffusion": 4, "preparation": 4,
    "nets": 5,
    "model": 6, "flops": 6,
    "training": 7,
    "__init__": 8,
    "cli": 9,
    "__main__": 10,
}

def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The darlkit modules that ``path`` imports (resolved to existing module names)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "darlkit")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "darlkit":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in modules}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_every_unit_has_a_rank():
    units = {_unit(m) for m in _modules()}
    assert units <= set(RANKS), f"place these in RANKS (and the docstring's table): {sorted(units - set(RANKS))}"


def test_no_module_imports_a_higher_or_peer_layer():
    bad = []
    for module, targets in _graph().items():
        for target in targets:
            a, b = _unit(module), _unit(target)
            if a != b and RANKS[b] >= RANKS[a]:
                bad.append(f"{module} (rank {RANKS[a]}) imports {target} (rank {RANKS[b]})")
    assert not bad, "\n".join(sorted(bad))


def _find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    return cycles


def test_no_import_cycles():
    cycles = _find_cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_cycles():
    assert _find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_checker_sees_lazy_and_from_package_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from darlkit.cli import main\n"
        "def f():\n    from darlkit import kernels\n    import darlkit.model.darl\n"
        "from darlkit.training import DARLTrainer\n"
    )
    assert _imports(src, _modules()) == {"darlkit.kernels", "darlkit.model.darl", "darlkit.training"}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_module_is_over_the_line_limit(path):
    name = str(path.relative_to(PACKAGE.parent))
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines (at most {MAX_LINES}: split it by idea)"


def test_no_cli_command_imports_another_command():
    from darlkit.cli import COMMANDS

    commands = {f"darlkit.cli.{name}" for name in COMMANDS}
    graph = _graph()
    crossing = {c: sorted(graph[c] & (commands - {c})) for c in sorted(commands) if graph[c] & (commands - {c})}
    assert not crossing, f"command modules import other commands (share code via darlkit.cli.options): {crossing}"
