"""Every runnable example (and the Table 12 benchmark) runs in its smoke mode, so none can rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "extra", "expect", "writes"),
    [
        ("examples/compose_spade.py", [], "", None),
        ("examples/synth_masks.py", [], "", None),
        ("examples/train_xcad.py", ["--out", "run"], "best Dice", "run/last.pt"),
        ("examples/segment.py", ["--out", "masks"], "wrote 2 mask(s)", None),  # --smoke writes to a temp dir
    ],
)
def test_example_smoke(script: str, extra: list[str], expect: str, writes: str | None, tmp_path: Path) -> None:
    proc = _run([str(REPO / script), "--smoke", *extra], cwd=tmp_path)
    assert proc.stdout.strip(), f"{script} printed nothing"
    assert expect in proc.stdout, f"{script} did not print {expect!r}:\n{proc.stdout}"
    if writes is not None:
        assert (tmp_path / writes).exists(), f"{script} did not write {writes}"


def test_every_example_is_smoke_tested() -> None:
    tested = {"compose_spade.py", "synth_masks.py", "train_xcad.py", "segment.py"}
    present = {p.name for p in (REPO / "examples").glob("*.py")}
    assert present == tested, f"examples without a smoke test: {sorted(present - tested)}"


@pytest.mark.slow
def test_table12_benchmark_small_size(tmp_path: Path) -> None:
    out = tmp_path / "t12.json"
    proc = _run(
        [str(REPO / "benchmarks" / "table12.py"), "--size", "64", "--convention", "paper", "--json", str(out)],
        cwd=tmp_path,
    )
    assert "DARL" in proc.stdout and "SSVS" in proc.stdout
    data = json.loads(out.read_text())
    (table,) = data["tables"]
    assert table["size"] == 64 and table["convention"] == "paper"
    darl = next(r for r in table["rows"] if r["method"] == "DARL")
    # (B) runs the SPADE branches: more than (A); the cycle path repeats (A).
    assert darl["b_path"] > darl["a_path"] == darl["cycle"]
