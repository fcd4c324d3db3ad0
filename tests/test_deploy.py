"""The app as a demo link runs it: the Docker image's recipe, and the server run as a container
runs it, through the very command the image runs (``./serve``).

There is no Docker daemon on the test machines, so the container is made of what Linux gives
directly (:mod:`bench.container`, shared with the benchmark's deploy stage): the image's folder
built through ``.dockerignore``, ``./serve`` in a private mount namespace with Docker's default
64 MB ``/dev/shm``, that folder read-only, one CPU by affinity. Chromium drives a visitor's journey.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.container import image_folder, run_as_container, why_not

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
    assert ("CMD", '["sh", "./serve"]') in steps, "the image must start the server through ./serve, as the tests do"
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


def test_the_image_holds_the_app_and_leaves_out_the_venv_tests_and_runs(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "app")
    for needed in ("app.py", "serve", "requirements.txt", ".streamlit/config.toml", "cartpole_core/__init__.py"):
        assert (folder / needed).is_file(), needed
    assert list(folder.glob("pages/*.py")) and list(folder.glob("pages/*.js"))
    for left_out in (".venv", ".git", "tests", "bench", "runs", "logs"):
        assert not (folder / left_out).exists(), left_out
    assert not list(folder.rglob("__pycache__"))


# ---------------------------------------------------------------- run as a container runs it


WHY_NOT = why_not()
container = pytest.mark.skipif(bool(WHY_NOT), reason=f"container-like run skipped: {WHY_NOT}")


@contextlib.contextmanager
def container_server(folder: Path, log: Path, runs: Path | None) -> Iterator[str]:
    """``./serve`` of ``folder`` as a container runs it (:func:`bench.container.run_as_container`)."""
    env = {"CARTPOLE_LAB_RUNS": str(runs)} if runs is not None else {}
    try:
        with run_as_container(folder, log, env) as (url, _):
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


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
    server has 1 processor, and nothing was written into the app's folder."""
    from test_browser import click_key, generate, no_exception, open_page, set_number, settle, shows, train

    runs = tmp_path / "runs"
    runs.mkdir()
    before = sorted(p.relative_to(image).as_posix() for p in image.rglob("*"))
    log = tmp_path / "server.log"
    with container_server(image, log, runs) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        settle(page)
        assert re.search(r"\b1 processor\b", sidebar_text(page)), sidebar_text(page)

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
        assert re.search(r"\b1 processor\b", sidebar_text(page)), sidebar_text(page)
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
