"""`pip install .` builds a wheel that installs and imports on its own (not from the checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import darlkit

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("layers", "diffusion", "losses", "metrics", "nets", "model", "flops", "data", "synthesis", "preparation",
               "kernels", "training", "cli")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--quiet", "--wheel-dir", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("darlkit-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_contents_and_metadata(wheel: Path) -> None:
    assert wheel.name.startswith(f"darlkit-{darlkit.__version__}-")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for sub in SUBPACKAGES:
            assert f"darlkit/{sub}/__init__.py" in names, f"wheel lacks darlkit/{sub}"
        assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    requires = {line.split(":", 1)[1].strip().split(";")[0].split(">")[0].split("=")[0].strip().lower()
                for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line}
    assert requires == {"torch", "numpy", "einops", "pillow", "tqdm", "safetensors"}
    assert "darlkit = darlkit.cli:main" in entry_points


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_imports(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # An isolated venv (no --system-site-packages: that would expose the *base* interpreter's
    # packages, not this environment's). torch & co. come from the running environment through a
    # .pth file appended after the venv's own site-packages, so nothing is downloaded and the
    # wheel's darlkit, installed into the venv itself, wins over any checkout or editable install.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(venv_site, "zz_test_parent_env.pth").write_text("\n".join(sorted(here)) + "\n")
    proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    code = "import darlkit, sys; print(darlkit.__version__); print(darlkit.__file__)"
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a checkout on PYTHONPATH would win
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env=clean_env)
    assert proc.returncode == 0, proc.stderr
    version, location = proc.stdout.split()
    assert version == darlkit.__version__
    assert str(venv) in location, f"imported from {location}, not from the installed wheel"
    proc = subprocess.run([str(venv / "bin" / "darlkit"), "--version"], capture_output=True, text=True, timeout=300,
                          env=clean_env)
    assert proc.returncode == 0 and darlkit.__version__ in proc.stdout
