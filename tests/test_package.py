"""The library installs into someone else's environment: a wheel (and an editable install)
in a fresh venv, with its declared dependencies, and the ``cartpole-lab`` command (issue 11).

Slow (about a minute: the dependencies are copied from pip's cache, fetched from the
package index only when missing); the versions are held to ``requirements.txt``'s pins.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{argv}: {done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the wheel built from this checkout installed, dependencies and all."""
    root = tmp_path_factory.mktemp("package")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root / "dist", REPO, cwd=root)
    [wheel] = (root / "dist").glob("cartpole_lab-*.whl")
    venv.create(root / "venv", with_pip=True)
    # Same versions as a deploy: requirements.txt's pins as constraints (extras are not allowed there).
    pins = [re.sub(r"\[.*?\]|#.*", "", line).strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    (root / "constraints.txt").write_text("\n".join(p for p in pins if p) + "\n")
    pip = root / "venv" / "bin" / "pip"
    run(pip, "install", "-q", wheel, "-c", root / "constraints.txt", cwd=root)
    return root


def test_the_wheel_installs_the_cartpole_lab_command(fresh_venv: Path):
    command = fresh_venv / "venv" / "bin" / "cartpole-lab"
    helped = run(command, "--help", cwd=fresh_venv).stdout
    assert helped.startswith("usage: cartpole-lab")
    for sub in ("generate", "train", "evaluate", "run", "improve", "sweep"):
        assert sub in helped
    out = run(command, "generate", "--games", "300", "--json", "--quiet", cwd=fresh_venv).stdout
    data = json.loads(out)
    assert data["games"] == 300 and data["accepted"] > 0
    # the library itself, imported from the install (not from this checkout)
    python = fresh_venv / "venv" / "bin" / "python"
    where = run(python, "-c", "import cartpole_core; print(cartpole_core.__file__)", cwd=fresh_venv).stdout
    assert "site-packages" in where and str(REPO) not in where


def test_an_editable_install_runs_this_checkout(fresh_venv: Path):
    pip = fresh_venv / "venv" / "bin" / "pip"
    run(pip, "install", "-q", "--no-deps", "-e", REPO, cwd=fresh_venv)
    python = fresh_venv / "venv" / "bin" / "python"
    where = run(python, "-c", "import cartpole_core; print(cartpole_core.__file__)", cwd=fresh_venv).stdout
    assert where.strip() == str(REPO / "cartpole_core" / "__init__.py")
    helped = run(fresh_venv / "venv" / "bin" / "cartpole-lab", "--version", cwd=fresh_venv).stdout
    assert "cartpole_core" in helped
