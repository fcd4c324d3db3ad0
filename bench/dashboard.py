"""Stage 6: the Streamlit dashboard driven by headless Chromium (Playwright, sync API).

Per repetition: a fresh ``streamlit run app.py`` on a free port, timed from spawn to
``/_stcore/health`` answering, then from there to the first page *ready*; then a click on
a sidebar link to a page that does not need TensorFlow, timed to that page being ready.

*Ready* means: Streamlit's ``stApp`` reports ``data-test-script-state="notRunning"``, the
status widget shows no running icon, the main area holds at least one element and none is
stale (left over from the previous run). For a page switch, the script must also have
been seen running after the click (a MutationObserver records it, so a quick run is not
missed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core import Context, Row, StageResult, fmt_bytes, fmt_s, fmt_times, log, markdown_table, median, stage

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NAV_LINKS = '[data-testid="stSidebarNavLink"], [data-testid="stSidebarNav"] a, [data-testid="stTopNavLink"]'
#: Words in a page's source that mean it loads TensorFlow (directly or through the app's helper).
TF_MARKERS = (
    "tensorflow",
    "keras",
    "cartpole_core.model",
    "cartpole_core.training",
    "cartpole_core.ensemble",
    "ModelPolicy",
    "build_model",
)

_READY_JS = """(needRun) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (needRun && !window.__benchSawRunning) return false;
  if (document.querySelector('[data-testid="stStatusWidgetRunningIcon"], '
      + '[data-testid="stStatusWidgetRunningManIcon"]')) return false;
  const main = document.querySelector('[data-testid="stMain"]') || app;
  if (!main.querySelector('[data-testid="stElementContainer"]')) return false;
  if (main.querySelector('[data-stale="true"]')) return false;
  return true;
}"""

_WATCH_JS = """() => {
  window.__benchSawRunning = false;
  if (window.__benchObserver) window.__benchObserver.disconnect();
  const obs = new MutationObserver((records) => {
    for (const r of records) {
      // oldValue too: a quick run may be over before this callback sees the attribute
      if (r.oldValue === 'running' || r.target.getAttribute('data-test-script-state') === 'running') {
        window.__benchSawRunning = true;
      }
    }
  });
  obs.observe(document.body, {
    attributes: true, subtree: true, attributeOldValue: true, attributeFilter: ['data-test-script-state'],
  });
  window.__benchObserver = obs;
}"""

#: Installed before the first page loads: milestones in ms since navigation start.
_TIMELINE_JS = """
window.__benchT = {};
(() => {
  const mark = (k) => { if (!(k in window.__benchT)) window.__benchT[k] = performance.now(); };
  const check = (records) => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app) return;
    mark('app');
    const state = app.getAttribute('data-test-script-state');
    if (state === 'running' || records.some((r) => r.oldValue === 'running')) mark('running');
    if (state === 'notRunning' && 'running' in window.__benchT) mark('finished');
  };
  new MutationObserver(check).observe(document, {
    subtree: true, childList: true, attributes: true, attributeOldValue: true,
    attributeFilter: ['data-test-script-state'],
  });
})();
"""

_LINKS_JS = """(selector) => {
  const seen = new Set();
  const out = [];
  for (const a of document.querySelectorAll(selector)) {
    const href = a.href || (a.querySelector('a') || {}).href;
    if (!href || seen.has(href)) continue;
    seen.add(href);
    const lines = (a.innerText || '').split('\\n').map((t) => t.trim()).filter((t) => t);
    out.push({href: href, text: lines.length ? lines[lines.length - 1] : ''});
  }
  return out;
}"""


@dataclass
class Session:
    server_up: float = 0.0
    first_page: float = 0.0
    switch_cold: float | None = None
    switch_warm: float | None = None
    switch_page: str = ""
    other_pages: dict[str, float | None] = field(default_factory=dict)
    timeline: dict[str, float] = field(default_factory=dict)
    """First page milestones in seconds since navigation started (browser clock)."""
    server_rss: int = 0
    exceptions: list[str] = field(default_factory=list)
    tf_line_after_switch: str = ""
    first_click: float | None = None
    """Seconds from the first "Play and keep the good games" click (on Generate, right after the
    first page of a fresh server) to its result shown."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def page_sources(root: Path) -> dict[str, str]:
    """Page file stem (normalised) -> source text, for the files in ``pages/``."""
    return {_norm(p.stem): p.read_text(errors="replace") for p in sorted((root / "pages").glob("*.py"))}


def needs_tensorflow(source: str) -> bool:
    return any(marker in source for marker in TF_MARKERS)


def choose_switch_target(links: list[dict[str, str]], current: str, sources: dict[str, str], wanted: str | None):
    """(link, reason): the page to switch to. ``wanted`` (a label or URL part) wins; else the
    first linked page whose source file mentions none of :data:`TF_MARKERS`."""
    others = [link for link in links if link["href"].rstrip("/") != current.rstrip("/")]
    if wanted:
        for link in others:
            if _norm(wanted) in _norm(link["text"]) or _norm(wanted) in _norm(link["href"]):
                return link, f"chosen with --switch-page {wanted!r}"
    for link in others:
        stem = _norm(link["href"].rstrip("/").rsplit("/", 1)[-1])
        source = sources.get(stem)
        if source is not None and not needs_tensorflow(source):
            return link, f"its source `pages/{stem}.py` mentions no TensorFlow/Keras module or loader"
    if others:
        return others[0], "no page could be confirmed TensorFlow-free from its source; took the first other page"
    return None, "the app shows no navigation links"


def _wait_health(port: int, proc: subprocess.Popen, timeout: float) -> None:
    url = f"http://127.0.0.1:{port}/_stcore/health"
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def _wait_ready(page: Any, need_run: bool, timeout: float) -> float:
    """Seconds until the page is ready (polled every 20 ms)."""
    start = time.perf_counter()
    page.wait_for_function(_READY_JS, arg=need_run, polling=20, timeout=timeout * 1000)
    return time.perf_counter() - start


def _switch(page: Any, link: dict[str, str], timeout: float) -> float:
    page.evaluate(_WATCH_JS)
    locator = page.locator(f'a[href="{link["href"]}"]').first
    if not locator.count():
        path = link["href"].split("//", 1)[-1].split("/", 1)[-1]
        locator = page.locator(f'a[href$="{path}"]').first
    start = time.perf_counter()
    locator.click()
    _wait_ready(page, True, timeout)
    return time.perf_counter() - start


def _first_click(page: Any, timeout: float) -> float | None:
    """On a fresh server, right after its first page: open Generate, click "Play and keep the
    good games" and time it until its result shows; then back to the first page. None when
    the app has no such page or button."""
    nav = page.locator('[data-testid="stSidebarNav"] a')
    link = nav.filter(has_text="Generate").first
    if not link.count():
        return None
    page.evaluate(_WATCH_JS)
    link.click()
    _wait_ready(page, True, timeout)
    button = page.get_by_role("button", name="Play and keep the good games")
    if not button.count():
        return None
    start = time.perf_counter()
    button.first.click()
    page.get_by_text("Acceptance rate").first.wait_for(timeout=timeout * 1000)
    seconds = time.perf_counter() - start
    page.evaluate(_WATCH_JS)
    nav.first.click()
    _wait_ready(page, True, timeout)
    return seconds


def _exceptions(page: Any) -> list[str]:
    return [t.strip()[:200] for t in page.locator('[data-testid="stException"]').all_inner_texts()]


def _tf_line(page: Any) -> str:
    texts = page.locator('[data-testid="stSidebar"]').all_inner_texts()
    for line in "\n".join(texts).splitlines():
        if "TensorFlow" in line:
            return line.strip()
    return ""


def _stop_server(proc: subprocess.Popen, launch_result: str) -> int:
    """SIGTERM the server (through its launcher), wait, and return its peak RSS in bytes
    (0 if unknown). If it does not stop within 30 s, kill it by its pid."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        try:
            with open(launch_result) as f:
                os.kill(int(json.load(f)["pid"]), signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass
        proc.kill()
        proc.wait()
    try:
        with open(launch_result) as f:
            return int(json.load(f).get("peak_rss_bytes", 0))
    except (OSError, ValueError):
        return 0


def one_session(
    root: Path,
    chromium: str,
    timeout: float,
    wanted: str | None,
    visit_all: bool,
    extra_args: tuple[str, ...] = (),
) -> Session:
    from playwright.sync_api import sync_playwright

    result = Session()
    port = free_port()
    sources = page_sources(root)
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as tmp:
        server_log = open(os.path.join(tmp, "server.log"), "wb")  # noqa: SIM115 (closed below)
        launch_result = os.path.join(tmp, "launch.json")
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        proc: subprocess.Popen | None = None
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.add_init_script(_TIMELINE_JS)
            cmd = [
                sys.executable,
                "-m",
                "bench.launch",
                launch_result,
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--browser.gatherUsageStats",
                "false",
                *extra_args,
            ]
            spawned = time.perf_counter()
            proc = subprocess.Popen(
                cmd, cwd=root, stdout=server_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            try:
                _wait_health(port, proc, timeout)
            except (RuntimeError, TimeoutError) as exc:
                server_log.flush()
                with open(server_log.name, errors="replace") as f:
                    raise RuntimeError(f"{exc}; server log: {f.read()[-600:]}") from exc
            result.server_up = time.perf_counter() - spawned
            start = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="commit", timeout=timeout * 1000)
            _wait_ready(page, False, timeout)
            result.first_page = time.perf_counter() - start
            marks = page.evaluate(
                "() => ({...window.__benchT, dom: performance.getEntriesByType('navigation')[0]"
                "?.domContentLoadedEventEnd, load: performance.getEntriesByType('navigation')[0]?.loadEventEnd})"
            )
            result.timeline = {k: float(v) / 1000 for k, v in marks.items() if v}
            result.exceptions += _exceptions(page)
            home = page.url
            result.first_click = _first_click(page, timeout)
            result.exceptions += _exceptions(page)
            view_more = page.locator('[data-testid="stSidebarNavViewButton"]')
            if view_more.count():
                view_more.first.click()
            links = page.evaluate(_LINKS_JS, NAV_LINKS)
            target, reason = choose_switch_target(links, home, sources, wanted)
            if target is None:
                result.switch_page = reason
                return result
            result.switch_page = f"{target['text'] or target['href']} ({reason})"
            result.switch_cold = _switch(page, target, timeout)
            result.tf_line_after_switch = _tf_line(page)
            result.exceptions += _exceptions(page)
            home_link = next((link for link in links if link["href"].rstrip("/") == home.rstrip("/")), None)
            if visit_all:
                for link in links:
                    if link["href"] in (target["href"], home):
                        continue
                    try:
                        result.other_pages[link["text"] or link["href"]] = _switch(page, link, timeout)
                        result.exceptions += _exceptions(page)
                    except Exception as exc:  # a page that never settles: note it, go on
                        log(f"  page {link['text']!r} did not settle: {type(exc).__name__}")
                        result.other_pages[link["text"] or link["href"]] = None
            if home_link is not None:
                _switch(page, home_link, timeout)
            result.switch_warm = _switch(page, target, timeout)
        finally:
            browser.close()
            if proc is not None:
                result.server_rss = _stop_server(proc, launch_result)
            server_log.close()
    return result


_APPTEST_SCRIPT = """
import json, sys, time
sys.path.insert(0, {root!r})
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({app!r}, default_timeout={timeout})
sys.stderr.write("@@bench-first-run@@\\n"); sys.stderr.flush()
t = time.perf_counter(); at.run(); first = time.perf_counter() - t
sys.stderr.write("@@bench-second-run@@\\n"); sys.stderr.flush()
t = time.perf_counter(); at.run(); second = time.perf_counter() - t
print(json.dumps({{"first": first, "second": second, "exceptions": [str(e.value)[:200] for e in at.exception]}}))
"""


def first_run_cost(root: Path, timeout: float) -> dict[str, Any] | None:
    """The app's first page run without server or browser (Streamlit's AppTest, in a fresh
    process with ``-X importtime``): first and second run seconds and the biggest imports
    the first run made. None when it could not run."""
    script = _APPTEST_SCRIPT.format(root=str(root), app=str(root / "app.py"), timeout=timeout)
    try:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", script],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            stdin=subprocess.DEVNULL,
        )
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return None
    imports: list[tuple[str, float, list[tuple[str, float]]]] = []
    children: list[tuple[str, float]] = []
    inside = False
    for line in proc.stderr.splitlines():
        if "@@bench-first-run@@" in line:
            inside = True
        elif "@@bench-second-run@@" in line:
            break
        elif inside and line.startswith("import time:") and line.count("|") == 2:
            _self, cumulative, name = line[len("import time:") :].split("|", 2)
            if not cumulative.strip().isdigit():
                continue
            depth = (len(name) - len(name.lstrip(" ")) - 1) // 2  # importtime indents 2 spaces a level
            if depth == 0:
                imports.append((name.strip(), int(cumulative) / 1e6, sorted(children, key=lambda x: -x[1])[:3]))
                children = []
            elif depth == 1:
                children.append((name.strip(), int(cumulative) / 1e6))
    data["imports_total"] = sum(t for _, t, _ in imports)
    data["top_imports"] = sorted(imports, key=lambda x: -x[1])[:8]
    return data


def _skip(reason: str) -> StageResult:
    out = StageResult(skipped=reason)
    out.rows = [
        Row("first page ready after the server is up", target="≤ 5 s", ours=f"skipped: {reason}"),
        Row("switch to a page without TensorFlow", target="≤ 1 s", ours="skipped"),
    ]
    return out


@stage(6, "dashboard", "The dashboard in headless Chromium")
def dashboard(ctx: Context) -> StageResult:
    s = ctx.settings
    if not (ctx.root / "app.py").exists():
        return _skip("app.py does not exist yet")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return _skip("Playwright is not installed (pip install -r requirements-dev.txt)")
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not chromium:
        return _skip("Chromium is missing (`make browser`, or apt-get install -y chromium)")
    sessions: list[Session] = []
    no_watch: list[Session] = []  # diagnostic: the same with Streamlit's file watcher off
    diagnose = not s.streamlit_args
    for rep in range(s.reps):
        sess = one_session(
            ctx.root, chromium, s.dashboard_timeout, s.switch_page, visit_all=rep == 0, extra_args=s.streamlit_args
        )
        log(
            f"  dashboard rep {rep + 1}/{s.reps}: server up {fmt_s(sess.server_up)}, first page "
            f"{fmt_s(sess.first_page)}, switch {fmt_s(sess.switch_cold or 0)} / warm {fmt_s(sess.switch_warm or 0)}"
        )
        sessions.append(sess)
        if diagnose:
            alt = one_session(
                ctx.root, chromium, s.dashboard_timeout, s.switch_page, False, ("--server.fileWatcherType", "none")
            )
            log(
                f"  dashboard rep {rep + 1}/{s.reps}, file watcher off: first page {fmt_s(alt.first_page)}, "
                f"switch {fmt_s(alt.switch_cold or 0)}"
            )
            no_watch.append(alt)
    out = StageResult()
    first = [x.first_page for x in sessions]
    up = [x.server_up for x in sessions]
    out.rows += [
        Row("`streamlit run` to `/_stcore/health` answering", ours=fmt_times(up)),
        Row(
            "first page ready after the server is up",
            ours=fmt_times(first),
            target="≤ 5 s",
            met=median(first) <= 5,
        ),
        Row("`streamlit run` to first page ready", ours=fmt_times([a + b for a, b in zip(up, first, strict=True)])),
    ]
    clicks = [x.first_click for x in sessions if x.first_click is not None]
    if clicks:
        out.rows.append(
            Row(
                'first "Play and keep the good games" click on a fresh server, right after its first page',
                ours=fmt_times(clicks),
                target="≤ 2 s",
                met=median(clicks) <= 2,
            )
        )
        out.data["first_click"] = clicks
    cold = [x.switch_cold for x in sessions if x.switch_cold is not None]
    warm = [x.switch_warm for x in sessions if x.switch_warm is not None]
    if cold:
        out.rows += [
            Row(
                "switch to a page without TensorFlow (first visit)",
                ours=fmt_times(cold),
                target="≤ 1 s",
                met=median(cold) <= 1,
            ),
            Row("… the same page again (after visiting the others)", ours=fmt_times(warm) if warm else "—"),
        ]
    else:
        out.rows.append(Row("switch to a page without TensorFlow", ours="not measured", target="≤ 1 s"))
    if no_watch:
        nw_first = [x.first_page for x in no_watch]
        nw_cold = [x.switch_cold for x in no_watch if x.switch_cold is not None]
        out.rows.append(
            Row(
                "first page ready, `--server.fileWatcherType none` (diagnostic)",
                ours=fmt_times(nw_first),
                target="(for information)",
            )
        )
        if nw_cold:
            out.rows.append(
                Row(
                    "switch (first visit), `--server.fileWatcherType none` (diagnostic)",
                    ours=fmt_times(nw_cold),
                    target="(for information)",
                )
            )
        out.notes.append(
            "Diagnostic sessions: after each timed session, one more with Streamlit's file watcher off "
            "(`--server.fileWatcherType none`), everything else equal, to show what watching the source files costs."
        )
        out.data["file_watcher_off"] = {"first_page": nw_first, "switch_cold": nw_cold}
    rss = max(x.server_rss for x in sessions)
    if rss:
        out.rows.append(Row("server peak RSS (largest of the sessions)", ours=fmt_bytes(rss)))
    milestones = [
        ("dom", "HTML and Streamlit's JavaScript loaded (DOMContentLoaded)"),
        ("app", "Streamlit's app shell shown (`stApp` present)"),
        ("running", "the page script started running on the server"),
        ("finished", "the page script finished"),
    ]
    timeline_rows = [
        [label, fmt_times([x.timeline[key] for x in sessions if key in x.timeline])]
        for key, label in milestones
        if any(key in x.timeline for x in sessions)
    ]
    if timeline_rows:
        timeline_rows.append(["ready (as timed above)", fmt_times(first)])
        out.details.append(
            "First page, where the time goes (browser clock, seconds since navigation started; the script's "
            "start and end are seen through `stApp`'s `data-test-script-state`):\n\n"
            + markdown_table(["milestone", "seconds"], timeline_rows)
        )
    cost = first_run_cost(ctx.root, s.dashboard_timeout)
    if cost is not None:
        tops = ", ".join(
            f"`{name}` {fmt_s(t)}" + (" (" + ", ".join(f"`{c}` {fmt_s(ct)}" for c, ct in kids) + ")" if kids else "")
            for name, t, kids in cost["top_imports"][:5]
            if t >= 0.01
        )
        out.details.append(
            "The first page's script alone, without server or browser (Streamlit's `AppTest`, fresh process, "
            "one run):\n\n"
            + markdown_table(
                ["measure", "seconds"],
                [
                    ["first run (cold: imports, first-time set-up)", fmt_s(cost["first"])],
                    [
                        "… of which imports made during the run (`-X importtime`, which slows them)",
                        fmt_s(cost["imports_total"]),
                    ],
                    ["second run (warm)", fmt_s(cost["second"])],
                ],
            )
            + (f"\n\nBiggest imports of the first run: {tops}." if tops else "")
        )
        out.data["apptest"] = cost
    visited = sessions[0].other_pages
    if visited:
        out.details.append(
            "First visit of every other page (first session, in sidebar order, after the timed switch; a page "
            "that loads TensorFlow pays for it here; Generate was opened once before, for the first click):\n\n"
            + markdown_table(
                ["page", "switch time"],
                [[name, fmt_s(t) if t is not None else "did not settle"] for name, t in visited.items()],
            )
        )
    out.notes += [
        f"{s.reps} session(s), each a fresh `streamlit run app.py --server.headless true"
        + "".join(f" {a}" for a in s.streamlit_args)
        + "` on a free port and a "
        "fresh headless Chromium (launched before the server, not timed). Ready = `stApp` script state "
        "`notRunning`, no running icon in the status widget, at least one element in the main area and none "
        "stale; a switch also waits until the script was seen running after the click. Polled every 20 ms.",
        f"Switch target: {sessions[0].switch_page}.",
    ]
    if sessions[0].tf_line_after_switch:
        out.notes.append(f"Sidebar after the switch says: “{sessions[0].tf_line_after_switch}”.")
    errors = sorted({e for x in sessions for e in x.exceptions})
    if errors:
        out.notes.append("**Pages showed exceptions:** " + "; ".join(errors[:5]))
    out.data = {
        "server_up": up,
        "first_page": first,
        "switch_cold": cold,
        "switch_warm": warm,
        "server_rss": [x.server_rss for x in sessions],
        "other_pages": visited,
    }
    return out
