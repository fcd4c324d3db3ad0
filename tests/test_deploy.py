"""The app as a demo link runs it: the Docker image's recipe, and the server run as a container
runs it, through the very command the image runs (``./serve``).

There is no Docker daemon on the test machines, so the container is made of what Linux gives
directly: the image's folder is built from this checkout through ``.dockerignore`` (as
``docker build``'s context and ``COPY . .`` would), then ``./serve`` runs in a private mount
namespace (``unshare -m``) with Docker's default 64 MB ``/dev/shm``, that folder bind-mounted
read-only, and one CPU by affinity (``taskset -c 0``). Chromium then drives a visitor's journey.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the recipe itself


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def test_the_image_runs_serve_as_a_user_with_a_health_check_and_the_pinned_requirements() -> None:
    steps = dockerfile()
    first = [args for word, args in steps if word == "FROM"]
    assert first == ["python:3.11-slim"], first
    assert ("CMD", '["./serve"]') in steps, "the image must start the server through ./serve, as the tests do"
    assert any(word == "RUN" and "pip install -r requirements.txt" in args for word, args in steps)
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1] not in ("0", "root"), "the server must not run as root"
    health = " ".join(args for word, args in steps if word == "HEALTHCHECK")
    assert "/_stcore/health" in health and "PORT" in health, health
    assert any(word == "ENV" and "CARTPOLE_LAB_RUNS=/runs" in args for word, args in steps)
    assert ("VOLUME", "/runs") in steps
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        requirement = line.split("#")[0].strip()
        assert not requirement or "==" in requirement, f"not pinned: {requirement}"


@pytest.mark.skipif(shutil.which("hadolint") is None and not (Path(sys.executable).parent / "hadolint").exists(),
                    reason="hadolint is not installed (requirements-dev.txt brings it)")  # fmt: skip
def test_the_dockerfile_passes_hadolint() -> None:
    tool = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run([tool, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_serve_takes_the_port_from_PORT_and_listens_everywhere_by_default(tmp_path: Path) -> None:
    """``./serve`` with a stand-in Python that prints its arguments: the port from ``$PORT``
    (Hugging Face's 7860), 8501 without it; every interface unless ``ADDRESS`` says otherwise."""
    echo = tmp_path / "python"
    echo.write_text('#!/bin/sh\necho "$@"\n')
    echo.chmod(0o755)
    base = {"PATH": os.environ["PATH"], "PYTHON": str(echo)}
    with_port = subprocess.run([str(ROOT / "serve")], env={**base, "PORT": "7860"}, capture_output=True, text=True)
    default = subprocess.run([str(ROOT / "serve")], env=base, capture_output=True, text=True)
    assert "-m streamlit run app.py" in with_port.stdout
    assert "--server.port 7860" in with_port.stdout and "--server.address 0.0.0.0" in with_port.stdout
    assert "--server.port 8501" in default.stdout


# ---------------------------------------------------------------- the image's folder


def _pattern(rule: str) -> re.Pattern[str]:
    """A ``.dockerignore`` rule as a regular expression over a path relative to the context
    (Go's filepath.Match, plus ``**`` for any number of folders)."""
    out, i = "", 0
    while i < len(rule):
        if rule.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif rule.startswith("**", i):
            out, i = out + ".*", i + 2
        elif rule[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif rule[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(rule[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether ``docker build`` leaves ``relative`` out: the last rule that matches the path
    or one of its folders decides (``!`` rules bring a path back)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for keep, pattern in rules:
        if any(pattern.match(p) for p in prefixes):
            ignored = not keep
    return ignored


def image_folder(into: Path) -> Path:
    """What ``COPY . .`` puts in the image: this checkout less what ``.dockerignore`` leaves out."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keep = line.startswith("!")
            rules.append((keep, _pattern(line.lstrip("!").strip("/"))))
    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and not dockerignored(relative, rules):
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return into


def test_the_image_holds_the_app_and_leaves_out_the_venv_tests_and_runs(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "app")
    for needed in ("app.py", "serve", "requirements.txt", ".streamlit/config.toml", "cartpole_core/__init__.py"):
        assert (folder / needed).is_file(), needed
    assert list(folder.glob("pages/*.py")) and list(folder.glob("pages/*.js"))
    for left_out in (".venv", ".git", "tests", "bench", "runs", "logs"):
        assert not (folder / left_out).exists(), left_out
    assert not list(folder.rglob("__pycache__"))


# ---------------------------------------------------------------- run as a container runs it


def _namespaces_available() -> str:
    """Why a container-like run cannot be made here, or "" when it can."""
    if sys.platform != "linux":
        return "needs Linux (mount namespaces)"
    if not all(shutil.which(tool) for tool in ("unshare", "taskset", "mount")):
        return "needs unshare, taskset and mount (util-linux)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
        capture_output=True,
        text=True,
    )
    if probe.returncode:
        return f"mount namespaces are not available here ({probe.stderr.strip() or 'unshare failed'}; run as root)"
    return ""


WHY_NOT = _namespaces_available()
container = pytest.mark.skipif(bool(WHY_NOT), reason=f"container-like run skipped: {WHY_NOT}")

#: The container's shell: Docker's 64 MB /dev/shm, the image's folder read-only, one CPU.
CONTAINER = (
    'mount -t tmpfs -o size=64m tmpfs /dev/shm && mount --bind "$APP" "$APP" && '
    'mount -o remount,bind,ro "$APP" && cd "$APP" && exec taskset -c 0 ./serve'
)


@contextlib.contextmanager
def container_server(folder: Path, log: Path, runs: Path | None) -> Iterator[str]:
    """``./serve`` of ``folder`` as a container runs it, on a free loopback port; yields its URL."""
    from test_browser import free_port

    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CARTPOLE_LAB_", "RAY_", "PYTEST_")) and key != "PYTHONPATH"
    }
    env.update(APP=str(folder), PORT=str(port), ADDRESS="127.0.0.1", PYTHON=sys.executable)
    if runs is not None:
        env["CARTPOLE_LAB_RUNS"] = str(runs)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", CONTAINER],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"the server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_folder(tmp_path_factory.mktemp("image") / "app")


def sidebar_text(page) -> str:
    return page.locator('[data-testid="stSidebar"]').inner_text()


def server_errors(log: Path) -> list[str]:
    """Lines of the server's log that tell of a failure (a traceback, a write refused)."""
    text = log.read_text(errors="replace")
    return [line for line in text.splitlines() if "Traceback" in line or "Read-only file system" in line]


@pytest.mark.browser
@pytest.mark.slow
@container
def test_a_visitors_journey_on_a_server_run_as_a_container(image: Path, tmp_path: Path, browser) -> None:
    """Home's whole notebook, Generate and Save as a run, Train, Generations: no error on the
    page or in the server's log, the run saved in ``$CARTPOLE_LAB_RUNS``, the sidebar says the
    server has 1 CPU, and nothing was written into the app's folder."""
    from test_browser import click_key, generate, no_exception, open_page, set_number, settle, shows, train

    runs = tmp_path / "runs"
    runs.mkdir()
    before = sorted(p.relative_to(image).as_posix() for p in image.rglob("*"))
    log = tmp_path / "server.log"
    with container_server(image, log, runs) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        settle(page)
        assert re.search(r"\b1 CPU\b", sidebar_text(page)), sidebar_text(page)

        click_key(page, "home_run")
        settle(page, timeout_s=300)
        no_exception(page)
        assert "notebook network" in sidebar_text(page), sidebar_text(page)

        generate(page, 2_000)
        no_exception(page)
        click_key(page, "gen_save_run")
        assert shows(page, "Saved as run")
        assert [p.name for p in runs.iterdir() if not p.name.startswith(".")], "the run is not in CARTPOLE_LAB_RUNS"

        train(page, "32", 2)

        open_page(page, "Generations")
        set_number(page, "Most generations", 2)
        set_number(page, "Games per generation", 100)
        page.get_by_role("button", name="Run generations").click()
        settle(page, timeout_s=300)
        no_exception(page)
        assert page.locator('[data-testid="stMetric"]').count() > 0
        assert re.search(r"\b1 CPU\b", sidebar_text(page)), sidebar_text(page)
        page.close()
    assert not server_errors(log), server_errors(log)
    assert sorted(p.relative_to(image).as_posix() for p in image.rglob("*")) == before


@pytest.mark.browser
@container
def test_without_a_runs_folder_save_names_the_variable_and_nothing_is_lost(image: Path, tmp_path: Path, browser):
    """No ``$CARTPOLE_LAB_RUNS`` on a read-only app folder: Save as a run says in one line what
    the operator sets, the session keeps its dataset, and the Runs page says saving is off."""
    from test_browser import click_key, generate, no_exception, open_page

    with container_server(image, tmp_path / "server.log", runs=None) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        generate(page, 1_000)
        click_key(page, "gen_save_run")
        no_exception(page)
        error = page.locator('[data-testid="stAlertContentError"]').first
        error.wait_for(timeout=30_000)
        assert "CARTPOLE_LAB_RUNS" in error.inner_text(), error.inner_text()
        assert "Dataset: none yet" not in sidebar_text(page), "the session lost its dataset"
        open_page(page, "Runs")
        no_exception(page)
        assert "CARTPOLE_LAB_RUNS" in page.locator('[data-testid="stMain"]').inner_text()
        page.close()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from test_browser import CHROMIUM, CHROMIUM_FLAGS, playwright_api

    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()
