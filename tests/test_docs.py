"""The documentation site builds with ``--strict`` and documents every public symbol."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import darlkit

REPO = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    # Only the tests that read the built site need mkdocs; the others run without it.
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _subpackage_of(name: str) -> str:
    for sub in ("polyphase", "layers", "diffusion", "losses", "metrics", "nets", "model", "flops",
                "data", "synthesis", "preparation", "kernels", "training", "baselines"):
        module = importlib.import_module(f"darlkit.{sub}")
        if name in getattr(module, "__all__", ()):
            return sub
    raise AssertionError(f"{name} is in darlkit.__all__ but in no subpackage's __all__")


def test_every_public_symbol_is_in_the_api_reference(site: Path) -> None:
    missing = []
    for name in darlkit.__all__:
        if name == "__version__":
            continue
        sub = _subpackage_of(name)
        html = (site / "api" / sub / "index.html").read_text(encoding="utf-8")
        if f'id="darlkit.{sub}.{name}"' not in html:
            missing.append(f"darlkit.{sub}.{name}")
    assert not missing, f"not in the API reference: {missing}"


def test_every_public_symbol_has_a_docstring() -> None:
    undocumented = []
    for name in darlkit.__all__:
        obj = getattr(darlkit, name)
        if callable(obj) and not (getattr(obj, "__doc__", None) or "").strip():
            undocumented.append(name)
    assert not undocumented, f"public symbols without a docstring: {undocumented}"


def test_readme_and_docs_give_the_same_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = {}
    for marker in ("main-command", "test-command"):
        match = re.search(rf"<!-- {marker} -->\s*```bash\n(.+?)\n```", readme)
        assert match, f"README.md has no {marker} block"
        commands[marker] = match.group(1).strip()
    assert "darlkit quickstart" in commands["main-command"]
    assert "pytest" in commands["test-command"]
    home = (REPO / "docs" / "index.md").read_text(encoding="utf-8")
    getting_started = (REPO / "docs" / "getting-started.md").read_text(encoding="utf-8")
    for command in commands.values():
        assert command in home, f"docs/index.md does not show: {command}"
    assert commands["main-command"] in getting_started


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "test-command" in ci and "README.md" in ci
