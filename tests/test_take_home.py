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

import pytest
from test_show_code import _fresh_python

import cartpole_core
from cartpole_core import wheel
from cartpole_core.recipes import NOTEBOOK_FILE, ONE_THREAD_ENV
from cartpole_core.storage import save_dataset
from pages.common import score_text

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


# ---------------------------------------------------------------- a visitor, from the page

#: Executes the notebook in this venv's own kernel (run with the venv's Python, in the notebook's
#: folder), with one more cell saying where the library was imported from; prints the outputs.
RUN_THE_NOTEBOOK = f"""
import json, nbclient, nbformat
book = nbformat.read({NOTEBOOK_FILE!r}, as_version=4)
book.cells.append(nbformat.v4.new_code_cell("import cartpole_core\\nprint('LIBRARY', cartpole_core.__file__)"))
nbclient.NotebookClient(book, timeout=1200, kernel_name="python3", resources={{"metadata": {{"path": "."}}}}).execute()
print("CELLS " + json.dumps([
    [c.source, "".join(o.get("text", "") for o in c.outputs if o.output_type == "stream")]
    for c in book.cells if c.cell_type == "code"
]))
"""


def _metric(page, label: str) -> str:
    """The value of the page's metric tile labelled exactly ``label``, as the page shows it."""
    import re

    tiles = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(f"^{re.escape(label)}$"))
    )
    return tiles.first.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _printed(out: str, prefix: str) -> str:
    """What the notebook printed after ``prefix`` on the line starting with it."""
    line = next((line for line in out.splitlines() if line.startswith(prefix)), None)
    assert line is not None, f"{prefix!r} not printed by the notebook:\n{out}"
    return line[len(prefix) :].strip()


@pytest.mark.slow
@pytest.mark.browser
def test_a_visitor_takes_the_session_home_and_gets_the_pages_numbers(tmp_path: Path, tmp_path_factory) -> None:
    """Random play -> generate -> train 2 epochs -> play in Chromium; Home's zip, unpacked into
    an empty folder with a fresh venv, runs in that venv's kernel and prints the pages' numbers."""
    import ast
    import statistics

    import test_browser  # skips this test where Chromium or Playwright is missing

    shown: dict[str, str] = {}
    with test_browser.serve(tmp_path_factory) as url, test_browser.playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=test_browser.CHROMIUM, args=test_browser.CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page.goto(url)
        test_browser.settle(page)
        test_browser.open_page(page, "Random play")
        test_browser.set_number(page, "Games", 5)
        test_browser.click_key(page, "random_play")
        for label in ("Mean score", "Median", "Best", "Worst"):
            shown[label] = _metric(page, label)
        test_browser.generate(page, 2000)
        for label in ("Games played", "Kept", "Average kept score", "Median kept score"):
            shown[label] = _metric(page, label)
        test_browser.train(page, "16", epochs=2)
        for label in ("Accuracy", "Loss"):
            shown[label] = _metric(page, label)
        test_browser.open_page(page, "Play & evaluate")
        test_browser.set_number(page, "Games", 5)
        test_browser.click_key(page, "play_run")
        test_browser.no_exception(page)
        for label in ("network mean", "random mean"):
            shown[label] = _metric(page, label)
        test_browser.open_page(page, "Home")
        test_browser.no_exception(page)
        with page.expect_download(timeout=120_000) as download:
            page.get_by_role("button", name="Download the notebook with the library (.zip)").click()
        zipped = tmp_path / download.value.suggested_filename
        download.value.save_as(zipped)
        browser.close()

    folder = tmp_path / "home"  # an empty folder, far from the checkout
    folder.mkdir()
    with zipfile.ZipFile(zipped) as archive:
        assert sorted(archive.namelist()) == sorted([NOTEBOOK_FILE, wheel.wheel_name()]), "each step made what it uses"
        archive.extractall(folder)
    bin_dir = _fresh_venv(folder / ".venv")
    env = _visitor_env(bin_dir, folder)
    subprocess.run(
        [bin_dir / "pip", "install", "--quiet", "ipykernel", "nbclient"], cwd=folder, env=env, check=True, timeout=600
    )
    done = subprocess.run(
        [bin_dir / "python", "-c", RUN_THE_NOTEBOOK], cwd=folder, env=env, capture_output=True, text=True, timeout=1800
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    cells = json.loads(_printed(done.stdout, "CELLS "))
    assert cells[0][0] == f"%pip install {wheel.wheel_name()}", "the first code cell installs the library"
    out = "\n".join(text for _, text in cells)
    library = Path(_printed(out, "LIBRARY"))
    assert library.is_relative_to(folder / ".venv") and "site-packages" in library.parts, library
    assert not library.is_relative_to(ROOT)

    # The numbers the pages showed, as the pages write them, from what the notebook printed.
    scores = ast.literal_eval(_printed(out, "scores:"))
    assert f"{statistics.mean(scores):.1f}" == shown["Mean score"]
    assert [f"{statistics.median(scores):g}", f"{max(scores):g}", f"{min(scores):g}"] == [
        shown["Median"], shown["Best"], shown["Worst"]
    ]  # fmt: skip
    games, kept = (int(part.split(":")[-1]) for part in _printed(out, "games played:").split("|"))
    assert [f"{games:,}", f"{kept:,}"] == [shown["Games played"], shown["Kept"]]
    mean_kept, median_kept = (float(part.split(":")[-1]) for part in _printed(out, "mean kept score:").split("|"))
    assert [f"{mean_kept:.1f}", score_text(median_kept)] == [shown["Average kept score"], shown["Median kept score"]]
    accuracy = ast.literal_eval(_printed(out, "accuracy per epoch:"))
    loss = ast.literal_eval(_printed(out, "loss per epoch:"))
    assert len(accuracy) == 2 and [f"{accuracy[-1]:.3f}", f"{loss[-1]:.4f}"] == [shown["Accuracy"], shown["Loss"]]
    network, randomly = (float(part.split(":")[-1]) for part in _printed(out, "network mean:").split("|"))
    assert [f"{network:.1f}", f"{randomly:.1f}"] == [shown["network mean"], shown["random mean"]]
