"""Stage 12: the server as a demo link runs it (:mod:`bench.container`: the image's folder,
``./serve`` with a 64 MB ``/dev/shm``, the folder read-only, one CPU by affinity), one visitor
in headless Chromium through Home's whole notebook, Generate, Save as a run, Train and
Generations; seconds per step, errors, and the whole process tree's peak PSS.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

from bench.core import Context, Row, StageResult, fmt_bytes, log, stage

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # fmt: skip


class _Page:
    """One visitor's page, with the waits every click needs."""

    def __init__(self, page, timeout_s: float = 600) -> None:
        self.page, self.timeout_ms = page, timeout_s * 1000

    def settle(self) -> None:
        with contextlib.suppress(Exception):  # the script may start a moment after the click
            self.page.wait_for_selector('[data-testid="stApp"][data-test-script-state="running"]', timeout=2000)
        done = '[data-testid="stApp"][data-test-script-state="notRunning"]'
        self.page.wait_for_selector(done, timeout=self.timeout_ms)

    def nav(self, name: str) -> None:
        self.page.locator('[data-testid="stSidebarNav"] a', has_text=name).first.click()
        self.settle()

    def number(self, label: str, value: int) -> None:
        box = self.page.get_by_label(label, exact=True).first
        box.fill(str(value))
        box.press("Tab")
        self.page.wait_for_timeout(200)

    def timed_click(self, locator) -> float:
        t = time.perf_counter()
        locator.click()
        self.settle()
        return time.perf_counter() - t

    def problems(self) -> list[str]:
        found = self.page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
        return [found.nth(i).inner_text()[:200] for i in range(found.count())]

    def sidebar(self) -> str:
        return self.page.locator('[data-testid="stSidebar"]').inner_text()


def _journey(url: str) -> tuple[dict[str, float], list[str], str]:
    """Seconds per step, the errors seen, and the sidebar's server line."""
    from playwright.sync_api import sync_playwright

    steps: dict[str, float] = {}
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            visit = _Page(browser.new_page(viewport={"width": 1400, "height": 1200}))
            page = visit.page
            t = time.perf_counter()
            page.goto(url)
            visit.settle()
            steps["first page"] = time.perf_counter() - t
            steps["Home: the whole notebook"] = visit.timed_click(page.locator(".st-key-home_run button").first)
            errors += visit.problems()
            visit.nav("Generate data")
            visit.number("Games", 2_000)
            steps["Generate: 2,000 games"] = visit.timed_click(
                page.get_by_role("button", name="Play and keep the good games")
            )
            steps["Save as a run"] = visit.timed_click(page.locator(".st-key-gen_save_run button").first)
            errors += visit.problems()
            visit.nav("Train")
            page.get_by_label("Hidden layers", exact=True).fill("32")
            visit.number("Epochs", 2)
            steps["Train: 32 units, 2 epochs"] = visit.timed_click(page.get_by_role("button", name="Train").last)
            errors += visit.problems()
            visit.nav("Generations")
            visit.number("Most generations", 2)
            visit.number("Games per generation", 100)
            steps["Generations: 2 of 100 games"] = visit.timed_click(page.get_by_role("button", name="Run generations"))
            errors += visit.problems()
            line = next((s for s in visit.sidebar().splitlines() if s.startswith("Server:")), "")
        finally:
            browser.close()
    return steps, errors, line


@stage(12, "deploy", "Deploy: the server run as a container runs it (64 MB /dev/shm, read-only folder, 1 CPU)")
def deploy(ctx: Context) -> StageResult:
    from bench.container import image_folder, run_as_container, why_not
    from bench.server_stages import TREE_PSS_BUDGET, TreeSampler

    out = StageResult()
    if not os.path.exists(CHROMIUM):
        out.skipped = "Debian's chromium is not installed (make bench installs it)"
        return out
    if why := why_not():
        out.skipped = f"a container-like run cannot be made here: {why}"
        return out
    with tempfile.TemporaryDirectory() as scratch:
        folder = image_folder(Path(scratch) / "app", ctx.root)
        runs = Path(scratch) / "runs"
        runs.mkdir()
        log_path = Path(scratch) / "server.log"
        t = time.perf_counter()
        with run_as_container(folder, log_path, {"CARTPOLE_LAB_RUNS": str(runs)}) as (url, server):
            healthy = time.perf_counter() - t
            with TreeSampler(server.pid) as tree:
                steps, errors, line = _journey(url)
        saved = [p for p in runs.iterdir() if not p.name.startswith(".")]
        server_log = log_path.read_text(errors="replace")
    tracebacks = server_log.count("Traceback")
    for e in errors:
        log(f"  error on the page: {e}")
    out.rows.append(Row("server up (health check answers) after the start", ours=f"{healthy:.1f} s"))
    for name, seconds in steps.items():
        out.rows.append(Row(name, ours=f"{seconds:.1f} s"))
    out.rows += [
        Row("errors on the page, tracebacks in the server's log", ours=f"{len(errors)}, {tracebacks}", target="0, 0",
            met=not errors and not tracebacks),
        Row("the run saved in $CARTPOLE_LAB_RUNS", ours=f"{len(saved)} run(s)", target="1", met=len(saved) == 1),
        Row("the sidebar's server line", ours=line or "(none)", target="1 CPU",
            met=bool(re.search(r"\b1 CPU\b", line))),
        Row("the whole process tree's peak PSS (server, Ray, its workers), one visitor", ours=fmt_bytes(tree.peak),
            target=f"≤ {TREE_PSS_BUDGET / 1e9:.1f} GB", met=tree.peak <= TREE_PSS_BUDGET),
    ]  # fmt: skip
    out.notes.append(
        "No Docker daemon here: the image's folder is built from the checkout through `.dockerignore`, and the "
        "image's command `./serve` runs in a private mount namespace (`unshare -m`) with a 64 MB tmpfs on "
        "`/dev/shm` (Docker's default), the folder bind-mounted read-only and `taskset -c 0` (one CPU by "
        "affinity); runs go to a writable folder named by `CARTPOLE_LAB_RUNS`, as the image's volume. "
        "One headless Chromium visitor, on the same machine."
    )
    out.data = {"steps": steps, "errors": errors, "tree_pss": tree.samples, "healthy": healthy}
    return out
