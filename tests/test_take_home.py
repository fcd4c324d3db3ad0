"""Take it home from the link: a visitor with nothing but the page runs what it shows.

The library is offered as a wheel built from the running app (:mod:`cartpole_core.wheel`);
pip installs it into a fresh virtual environment and accepts its RECORD. The session's
notebook, downloaded from Home in Chromium (a zip: the notebook, the wheel, the files it
reads), runs in a fresh venv's kernel outside the checkout: its first cell installs the
library, and it prints the numbers the pages showed. The ``cartpole-lab`` command pins
TensorFlow to one thread before TensorFlow starts, as the dashboard's workers train.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from test_show_code import _fresh_python

import cartpole_core
from cartpole_core import wheel
from cartpole_core.recipes import ONE_THREAD_ENV
from cartpole_core.storage import save_dataset

ROOT = Path(__file__).resolve().parents[1]


def _fresh_venv(folder: Path) -> Path:
    """A new virtual environment in ``folder`` (with pip); its ``bin`` folder."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    return folder / "bin"


def _visitor_env(bin_dir: Path, home: Path) -> dict[str, str]:
    """A visitor's environment: the venv first on PATH, no checkout on the path, no thread
    counts set; the machine's pip settings (its index and wheel folders) kept."""
    pip = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    return {**pip, "PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_the_wheel_holds_the_library_with_the_servers_versions() -> None:
    data = wheel.wheel_bytes()
    assert wheel.wheel_bytes() is data, "built once per process"
    assert wheel.wheel_bytes.__wrapped__() == data, "the same bytes on every build"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert wheel.wheel_name() == f"cartpole_lab-{project['version']}-py3-none-any.whl"
    assert project["version"] == cartpole_core.__version__

    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    dist_info = f"cartpole_lab-{project['version']}.dist-info"
    package = sorted(p.name for p in (ROOT / "cartpole_core").glob("*.py"))
    assert sorted(n.removeprefix("cartpole_core/") for n in names if n.startswith("cartpole_core/")) == package
    assert names[-1] == f"{dist_info}/RECORD", "RECORD last"
    assert all(info.date_time == wheel.ZIP_TIME for info in archive.infolist())
    for name in package:
        assert archive.read(f"cartpole_core/{name}") == (ROOT / "cartpole_core" / name).read_bytes()

    # RECORD: every other file with its sha256 (URL-safe base64, no padding) and size.
    rows = [line.split(",") for line in archive.read(f"{dist_info}/RECORD").decode().splitlines()]
    assert {row[0] for row in rows} == set(names)
    for path, digest, size in rows:
        if path.endswith("/RECORD"):
            assert (digest, size) == ("", "")
            continue
        content = archive.read(path)
        expected = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        assert (digest, int(size)) == (f"sha256={expected}", len(content)), path

    # METADATA pins every dependency to what this server runs, extras kept.
    meta = archive.read(f"{dist_info}/METADATA").decode().splitlines()
    pins = [line.removeprefix("Requires-Dist: ") for line in meta if line.startswith("Requires-Dist: ")]
    assert len(pins) == len(project["dependencies"])
    assert f"tensorflow=={importlib.metadata.version('tensorflow')}" in pins
    assert f"gymnasium[classic-control,box2d]=={importlib.metadata.version('gymnasium')}" in pins
    assert all("==" in pin for pin in pins), pins
    assert f"Requires-Python: {project['requires-python']}" in meta
    assert "cartpole-lab = cartpole_core.cli:console" in archive.read(f"{dist_info}/entry_points.txt").decode()


def test_pip_installs_the_wheel_into_a_fresh_venv(tmp_path: Path) -> None:
    (tmp_path / wheel.wheel_name()).write_bytes(wheel.wheel_bytes())
    bin_dir = _fresh_venv(tmp_path / "venv")
    env = _visitor_env(bin_dir, tmp_path)
    done = subprocess.run(
        [bin_dir / "pip", "install", "--no-deps", "--no-index", wheel.wheel_name()],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "RECORD" not in done.stdout + done.stderr, "pip accepts RECORD"
    site = subprocess.run(
        [bin_dir / "python", "-c", "import importlib.metadata as m, json; d = m.distribution('cartpole-lab'); "
         "print(json.dumps([d.version, str(d.locate_file('cartpole_core/cli.py')), "
         "[e.value for e in d.entry_points if e.name == 'cartpole-lab']]))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    version, cli_file, scripts = json.loads(site.stdout)
    assert version == cartpole_core.__version__ and scripts == ["cartpole_core.cli:console"]
    assert Path(cli_file).read_bytes() == (ROOT / "cartpole_core" / "cli.py").read_bytes()
    assert "site-packages" in cli_file and str(ROOT) not in cli_file
    assert (bin_dir / "cartpole-lab").exists(), "the command is on the venv's PATH"

    # The installed RECORD (pip writes it from the wheel's): every file there, hash for hash.
    check = (
        "import base64, hashlib, importlib.metadata as m\n"
        "files = [f for f in m.distribution('cartpole-lab').files if f.hash]\n"
        "bad = [str(f) for f in files if base64.urlsafe_b64encode(hashlib.sha256(f.locate().read_bytes())"
        ".digest()).rstrip(b'=').decode() != f.hash.value]\n"
        "print(len(files), bad)\n"
    )
    listed = subprocess.run(
        [bin_dir / "python", "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    count, bad = listed.stdout.split(" ", 1)
    assert int(count) >= len(list((ROOT / "cartpole_core").glob("*.py"))) and bad.strip() == "[]", listed.stdout


def test_the_command_line_pins_tensorflow_before_it_starts(tmp_path: Path, small_generation) -> None:
    """Run with no thread count in the environment (TensorFlow would take every core), the
    ``train`` command has set the workers' one thread by the time TensorFlow is imported."""
    save_dataset(small_generation.dataset, tmp_path / "dataset.npz")
    names = sorted(ONE_THREAD_ENV)
    probe = f"""
import json, os, sys
seen = {{}}

class Watch:  # notes the thread settings when TensorFlow is first imported
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" and not seen:
            seen.update({{k: os.environ.get(k) for k in {names!r}}})
        return None

sys.meta_path.insert(0, Watch())
from cartpole_core.cli import main
status = main(["train", "--data", "dataset.npz", "--epochs", "1", "--hidden", "8", "--quiet", "--json"])
print("SEEN " + json.dumps([status, seen, {{k: os.environ.get(k) for k in {names!r}}}]))
"""
    out = _fresh_python(["-c", probe], tmp_path)
    status, seen, after = json.loads(next(line for line in out.splitlines() if line.startswith("SEEN "))[5:])
    assert status == 0
    assert seen == ONE_THREAD_ENV, "TensorFlow started with the workers' thread counts"
    assert after == dict.fromkeys(names), "the environment is given back after the command"
