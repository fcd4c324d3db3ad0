"""Stages 8 and 9: what a shared server lives through.

8. memory: 20 networks trained one after another in one process (as a long-lived server
   would), resident memory after each; the growth from the 2nd to the 20th is reported.
9. load: N visitors (headless Chromium at the lowest priority, loopback only, bounded in count
   and time) arrive while another trains, and each goes Generate -> Train -> Play with small
   budgets; completions, errors, p50/p95 seconds per step in the browser and on the server
   (:mod:`bench.stamped_server`), and the server's peak RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from typing import Any

from bench.core import Context, Row, StageResult, fmt_bytes, log, markdown_table, median, stage

MEMORY_CHILD = textwrap.dedent(
    """
    import gc, json, sys
    import keras
    from cartpole_core.generate import GenerationConfig, generate
    from cartpole_core.model import ModelConfig, build_model
    from cartpole_core.training import TRAINERS, TrainingConfig, train

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

    def plain_model():
        layers = [keras.Input(shape=(4,))]
        for units in (128, 256, 512, 256, 128):
            layers += [keras.layers.Dense(units, activation="relu"), keras.layers.Dropout(0.2)]
        model = keras.Sequential(layers + [keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        return model

    mode, n = sys.argv[1], int(sys.argv[2])
    data = generate(GenerationConfig(games=3000, seed=0)).dataset
    x, y = data.observations, data.one_hot_actions()
    shapes = [(128, 256, 512, 256, 128), (64, 64)]
    sizes = []
    for i in range(n):
        if mode == "plain":
            model = plain_model()
            model.fit(x, y, batch_size=64, epochs=1, verbose=0)
        else:
            config = ModelConfig(hidden=shapes[i % 2], learning_rate=(1e-3, 3e-3)[i // 2 % 2])
            model = build_model(data.obs_dim, data.n_actions, config, seed=i)
            train(model, data, TrainingConfig(epochs=1, seed=i))
        del model
        gc.collect()  # as the dashboard does after each heavy job
        sizes.append(rss())
    print(json.dumps({"rss": sizes, "rows": len(data), "trainers": TRAINERS.created}))
    """
)


@stage(8, "memory", "Memory: 20 networks trained one after another in one process")
def memory(ctx: Context) -> StageResult:
    out = StageResult()
    n = 6 if ctx.settings.quick else 20
    env = dict(os.environ, PYTHONPATH=str(ctx.root), TF_CPP_MIN_LOG_LEVEL="3")
    runs: dict[str, dict[str, Any]] = {}
    for mode in ("plain", "ours"):
        proc = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, mode, str(n)], cwd=ctx.root, env=env, capture_output=True,
            timeout=1800,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.decode(errors="replace")[-800:])
        runs[mode] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        rss = runs[mode]["rss"]
        log(f"  {mode}: RSS after network 1: {fmt_bytes(rss[0])}, 2: {fmt_bytes(rss[1])}, {n}: {fmt_bytes(rss[-1])}")

    def per_network(mode: str) -> float:
        rss = runs[mode]["rss"]
        return (rss[-1] - rss[1]) / max(1, n - 2)

    plain, ours = runs["plain"]["rss"], runs["ours"]["rss"]
    growth_plain, growth_ours = per_network("plain"), per_network("ours")
    out.rows += [
        Row(f"RSS after the 2nd and the {n}th network", f"{fmt_bytes(plain[1])} → {fmt_bytes(plain[-1])}",
            f"{fmt_bytes(ours[1])} → {fmt_bytes(ours[-1])}"),
        Row("growth per further network", fmt_bytes(growth_plain), fmt_bytes(growth_ours),
            growth_plain / max(growth_ours, 1e5), "≤ 1 MB (flat)", growth_ours <= 1e6),
    ]  # fmt: skip
    out.details.append(
        markdown_table(
            ["network", "plain `fit`", "ours (`train`)"],
            [[str(i + 1), fmt_bytes(a), fmt_bytes(b)] for i, (a, b) in enumerate(zip(plain, ours, strict=True))],
        )
    )
    out.notes += [
        f"Both series train {n} networks for one epoch on {runs['ours']['rows']:,} rows, one after another in one "
        "Python process, drop each and run `gc.collect()`, as the dashboard does after each heavy job (without "
        "it the dropped models wait in reference cycles for Python's next full collection: a saw-tooth). Neither "
        "calls `keras.backend.clear_session()` (which would disturb other sessions of a shared server). The "
        "first network pays for TensorFlow's own start-up; the ratio "
        "column is plain ÷ ours (ours floored at 0.1 MB).",
        "Plain: the notebook's network built with default Keras names and fitted itself (`model.fit`). Ours: "
        "`build_model` + `train`, alternating the notebook's network and a 64-64 one and two learning rates, "
        f"so the trainer pool serves two architectures; trainers built: {runs['ours']['trainers']}.",
        "Why plain grows: each new model's first `fit` traces a training step that TensorFlow never frees, "
        "and Keras numbers each new optimiser's variables (adam_1/…, adam_2/…), for each of which "
        "TensorFlow's eager runtime keeps ~34 KB. Ours fits a pooled trainer per architecture (traced once) "
        "and names the optimiser `adam`.",
    ]
    out.data = {"rss_bytes": {mode: r["rss"] for mode, r in runs.items()}, "trainers": runs["ours"]["trainers"]}
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


#: Visitors of the full run: a class of 30, as a teacher's demo link serves it.
VISITORS = 30
#: The whole process tree's memory a class may take (PSS: the server, Ray and its workers):
#: under Streamlit Community Cloud's 2.7 GB cap, with room to spare.
TREE_PSS_BUDGET = 2.5e9


class TreeSampler:
    """While in its ``with`` block, the PSS of a process and everything below it, sampled
    every ``every_s`` seconds in a thread: ``peak`` (bytes) and ``samples`` (seconds, bytes)."""

    def __init__(self, root: int, every_s: float = 1.0) -> None:
        self.root, self.every_s = root, every_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-tree-pss", daemon=True)

    @property
    def peak(self) -> int:
        return max((pss for _, pss in self.samples), default=0)

    def _run(self) -> None:
        from bench.container import tree_pss

        start = time.monotonic()
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - start, tree_pss(self.root)))
            self._stop.wait(self.every_s)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


#: The niceness of the visitors' headless browsers' autogroup (Linux shares the CPU between
#: sessions first): at 0 their renderers took ~1.8 of the 2 cores and left the server ~0.2;
#: at 19 a page could not load in 30 s while two trainings ran; 5 gives them about a quarter.
BROWSER_NICENESS = 5

#: Seconds between two visitors' arrivals, after the background trainer's training began.
ARRIVAL_SECONDS = 3.0

#: The background trainer's budget: the notebook's network on 10,000 games for this many
#: epochs (the demo server's most), about as long as the measured visitors take.
TRAINER_EPOCHS = 50


class _Visit:
    """One headless visitor's page and its helpers (clicks wait for the script to finish)."""

    def __init__(self, page: Any, timeout_s: float) -> None:
        self.page, self.timeout_s = page, timeout_s
        # Thirty browsers share the server's 2 cores: a field can take minutes to be drawn, so
        # every action waits as long as a step may (Playwright's own default is 30 s).
        page.set_default_timeout(timeout_s * 1000)

    async def settle(self) -> None:
        with contextlib.suppress(Exception):  # a busy server may start the script a moment after the click
            await self.page.wait_for_selector('[data-testid="stApp"][data-test-script-state="running"]', timeout=2000)
        await self.page.wait_for_selector(
            '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=self.timeout_s * 1000
        )

    async def nav(self, name: str) -> None:
        await self.page.locator('[data-testid="stSidebarNav"] a', has_text=name).first.click()
        await self.settle()

    async def number(self, label: str, value: int) -> None:
        box = self.page.get_by_label(label, exact=True).first
        await box.fill(str(value))
        await box.press("Tab")
        await self.page.wait_for_timeout(200)

    def watch_queue(self) -> asyncio.Task:
        """Before a click: a watch for the queue's notice ("N job(s) ahead of yours", "next in
        line"), which shows only while the job waits for a CPU."""
        notice = self.page.get_by_text(re.compile(r"job\(s\) ahead of yours|is next in line")).first
        return asyncio.ensure_future(notice.wait_for(state="visible", timeout=self.timeout_s * 1000))

    async def seen(self, watch: asyncio.Task) -> bool:
        """Whether the queue's notice showed while the step ran (the watch is then ended)."""
        await asyncio.sleep(0)
        shown = watch.done() and not watch.cancelled() and watch.exception() is None
        watch.cancel()
        with contextlib.suppress(BaseException):
            await watch
        return shown

    async def generate(self, games: int, seed: int) -> float:
        """Seconds from the click to the result."""
        await self.nav("Generate data")
        await self.number("Games", games)
        await self.number("Seed", seed)
        t = time.perf_counter()
        await self.page.get_by_role("button", name="Play and keep the good games").click()
        await self.settle()
        await self.page.get_by_text("Acceptance rate").first.wait_for(timeout=self.timeout_s * 1000)
        return time.perf_counter() - t


async def _trainer(browser: Any, url: str, timeout_s: float, training: asyncio.Event, done: asyncio.Event) -> str:
    """The background visitor: starts a long training of the notebook's network, holds one of
    Ray's CPUs while the measured visitors come, and leaves when they are done. Returns an error
    or ""."""
    visit = _Visit(await (await browser.new_context()).new_page(), timeout_s)
    try:
        await visit.page.goto(url)
        await visit.settle()
        await visit.generate(10_000, 1000)
        await visit.nav("Train")
        await visit.number("Epochs", TRAINER_EPOCHS)
        await visit.page.get_by_role("button", name="Train").last.click()
        await visit.page.get_by_text("epoch 1/").first.wait_for(timeout=timeout_s * 1000)  # it is training
        return ""
    except Exception as exc:
        return f"background trainer: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    finally:
        training.set()  # (also when it failed: the measured visitors still come)
        await done.wait()
        await visit.page.context.close()


async def _visitor(browser: Any, url: str, i: int, timeout_s: float, training: asyncio.Event) -> dict[str, Any]:
    """One measured visitor, arriving ``i`` × :data:`ARRIVAL_SECONDS` after the background
    trainer's training began: Generate -> Train -> Play with small budgets; seconds per step in
    the browser."""
    await training.wait()
    await asyncio.sleep(i * ARRIVAL_SECONDS)
    visit = _Visit(await (await browser.new_context()).new_page(), timeout_s)
    page = visit.page
    page.set_default_navigation_timeout(timeout_s * 1000)
    steps: dict[str, float] = {}
    saw_queue: dict[str, bool] = {}
    error = ""
    try:
        t = time.perf_counter()
        await page.goto(url)
        await visit.settle()
        steps["open"] = time.perf_counter() - t
        steps["generate"] = await visit.generate(2000, i)
        await visit.nav("Train")
        await page.get_by_label("Hidden layers", exact=True).fill("32,32")
        await visit.number("Epochs", 1)
        t = time.perf_counter()
        queue = visit.watch_queue()
        await page.get_by_role("button", name="Train").last.click()
        await visit.settle()
        await page.get_by_text("Per epoch").first.wait_for(timeout=timeout_s * 1000)
        steps["train"] = time.perf_counter() - t
        saw_queue["train"] = await visit.seen(queue)
        await visit.nav("Play & evaluate")
        await visit.number("Games", 10)
        t = time.perf_counter()
        queue = visit.watch_queue()
        await page.locator(".st-key-play_run button").first.click()
        await visit.settle()
        await page.get_by_text("network mean").first.wait_for(timeout=timeout_s * 1000)
        steps["play"] = time.perf_counter() - t
        saw_queue["play"] = await visit.seen(queue)
        problems = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
        if await problems.count():
            error = "error on the page: " + (await problems.first.inner_text())[:200]
        elif await page.locator('[data-testid="stMetric"]', has_text="network mean").count() != 1:
            error = "no result on the Play page"
    except Exception as exc:  # a visitor's failure is a result of the test, not a crash of it
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    finally:
        await page.context.close()
    return {"visitor": i, "steps": steps, "saw_queue": saw_queue, "error": error}


async def _drive(url: str, visitors: int, timeout_s: float, chromium: str) -> tuple[list[dict[str, Any]], str]:
    """The measured visitors' results, and the background trainer's error (or "")."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        training, done = asyncio.Event(), asyncio.Event()

        async def measured() -> list[dict[str, Any]]:
            try:
                return await asyncio.gather(*[_visitor(browser, url, i, timeout_s, training) for i in range(visitors)])
            finally:
                done.set()

        try:
            trainer, results = await asyncio.wait_for(
                asyncio.gather(_trainer(browser, url, timeout_s, training, done), measured()),
                2 * timeout_s + visitors * ARRIVAL_SECONDS,
            )
            return results, trainer
        finally:
            await browser.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


@stage(9, "load", "Load: simultaneous visitors, generate -> train -> play")
def load(ctx: Context) -> StageResult:
    out = StageResult()
    if not os.path.exists("/usr/bin/chromium"):
        out.skipped = "Debian's chromium is not installed (make bench installs it)"
        return out
    visitors = 3 if ctx.settings.quick else VISITORS
    port = _free_port()
    with tempfile.TemporaryDirectory() as runs:
        env = dict(os.environ, CARTPOLE_LAB_RUNS=runs)
        stamps = os.path.join(runs, "script-runs.jsonl")
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.stamped_server", stamps, "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1"],
            cwd=ctx.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                        break
                except OSError:
                    time.sleep(0.3)
            # The visitors' browsers stand in for machines of their own: at the lowest priority, they
            # take only the CPU the server and its engine leave (children inherit the niceness).
            chromium = os.path.join(runs, "chromium-niced")
            with open(chromium, "w") as wrapper:
                wrapper.write(  # Playwright starts the browser in a session (an autogroup) of its own
                    f"#!/bin/sh\necho {BROWSER_NICENESS} > /proc/self/autogroup 2>/dev/null\n"
                    f'exec nice -n {BROWSER_NICENESS} /usr/bin/chromium "$@"\n'
                )
            os.chmod(chromium, 0o755)
            started = time.perf_counter()
            with TreeSampler(server.pid) as tree:
                results, trainer_error = asyncio.run(_drive(url, visitors, timeout_s=600, chromium=chromium))
            wall = time.perf_counter() - started
            peak = _peak_rss(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
        server_side = _server_steps(stamps)
    costs = _job_costs(ctx)
    done = [r for r in results if not r["error"] and len(r["steps"]) == 4]
    errors = [r for r in results if r["error"]]
    for r in errors:
        log(f"  visitor {r['visitor']}: {r['error']}")
    if trainer_error:
        log(f"  {trainer_error}")
    rows = []
    for step in ("open", "generate", "train", "play"):
        values = [r["steps"][step] for r in results if step in r["steps"]]
        there = server_side["seconds"].get(step, [])
        rows.append([step, f"{median(values):.2f} s", f"{_percentile(values, 0.95):.2f} s",
                     f"{median(there):.2f} s" if there else "", f"{_percentile(there, 0.95):.2f} s" if there else "",
                     str(len(values))])  # fmt: skip
    generate_browser = [r["steps"]["generate"] for r in results if "generate" in r["steps"]]
    generate_server = server_side["seconds"].get("generate", [])
    p95_server = _percentile(generate_server, 0.95)
    own = [t for step in ("generate", "train", "play") for t in server_side["own"].get(step, [])]
    p95_own = _percentile(own, 0.95)
    waits = server_side["waits"]
    waited = [w for w in waits if w >= QUEUED_AFTER_S]
    saw = sum(seen for r in results for seen in r["saw_queue"].values())
    out.rows += [
        Row(f"{visitors} simultaneous visitors completed the flow", ours=f"{len(done)} of {visitors}",
            target=f"{visitors} of {visitors}, 0 errors", met=len(done) == visitors and not errors),
        Row("the background trainer trained throughout", ours=trainer_error or "yes", met=not trainer_error),
        Row("the whole process tree's peak PSS (server, Ray, its workers), sampled each second",
            ours=fmt_bytes(tree.peak), target=f"≤ {TREE_PSS_BUDGET / 1e9:.1f} GB", met=tree.peak <= TREE_PSS_BUDGET),
        Row("web server's peak RSS (TensorFlow and training in Ray's workers)", ours=fmt_bytes(peak),
            target="< 400 MB", met=peak < 400 * 2**20),
        Row("wall time of the whole load", ours=f"{wall:.1f} s"),
        Row(f"server's p95 per step, its own work ({len(own)} generate, train and play runs: the script, less "
            "the Ray job it waits for)", ours=f"{p95_own:.2f} s", target="< 1 s", met=bool(own) and p95_own < 1.0),
        Row(f"generate step's p95 on the server, {server_side['beside_training']} of {len(generate_server)} "
            "while another visitor trained (the trainer's own included)", ours=f"{p95_server:.2f} s", target="< 5 s",
            met=len(generate_server) >= visitors and p95_server < 5.0),
        Row(f"the measured visitors' heavy jobs that waited {QUEUED_AFTER_S:g} s or more for a CPU (server), and "
            "their train and play steps whose page showed the visitor's place in the queue (browsers)",
            ours=f"{len(waited)} of {len(waits)} jobs waited (longest {max(waits, default=0):.1f} s); "
            f"{saw} steps showed it", target="shown to those who wait", met=saw >= len(waited)),
        Row("generate step's p95 in the visitors' browsers (on the server's 2 cores)",
            ours=f"{_percentile(generate_browser, 0.95):.2f} s"),
    ]  # fmt: skip
    for name, t in costs["timing"].items():
        here, there = median(t["in_process"]), median(t["ray_job"])
        out.rows.append(
            Row(f"warm training job, {name} network, 1 epoch (median of 5)", reference=f"{here:.2f} s in-process",
                ours=f"{there:.2f} s on Ray ({there - here:+.2f} s)", target="≤ +1 s", met=there - here <= 1.0)
        )  # fmt: skip
    growth = {}
    for mode, seen in costs["memory"].items():
        largest = [max(s.values()) for s in seen if s]
        growth[mode] = (largest[-1] - largest[1]) / max(1, len(largest) - 2)
        log(f"  workers' private memory, {mode}: {fmt_bytes(largest[0])} → {fmt_bytes(largest[-1])}")
    out.rows.append(
        Row("largest worker's private memory, per job over 20 training jobs", reference=(
            f"{growth['no pool'] / 2**20:+.1f} MB without the trainer pool"), ours=f"{growth['pool'] / 2**20:+.2f} MB",
            target="≤ +1 MB (flat)", met=growth["pool"] <= 2**20)
    )  # fmt: skip
    out.details.append(
        markdown_table(["step", "browser p50", "browser p95", "server p50", "server p95", "visitors"], rows)
    )
    out.notes.append(
        f"{visitors} headless Chromium pages on one loopback server, arriving {ARRIVAL_SECONDS:g} s apart after "
        f"a background visitor began training the notebook's network ({TRAINER_EPOCHS} epochs on 10,000 games, "
        "one of Ray's CPUs), so they generate while others train; "
        "each generates 2,000 games (its own seed), trains a 32-32 network for 1 epoch and plays 10 games. "
        "Training and playing are Ray jobs (a local Ray with "
        "the machine's cores), so their times include waiting in Ray's queue; generating runs in the quick lane."
    )
    out.notes.append(
        "Browser: from the click to the result on the page, as the headless visitor saw it. Server: the click's "
        "script run, from the server starting it to its last element sent (`bench/stamped_server.py`). The "
        f"{visitors} browsers stand in for the visitors' own machines but share the server's 2 cores: at the "
        f"same priority their renderers took most of the CPU (sampled: ~1.8 of 2 cores, the server ~0.2), so "
        f"they run at niceness {BROWSER_NICENESS} (their autogroup's: Linux shares the CPU between sessions "
        "first, and Playwright starts the browser in a session of its own); the browser figure therefore "
        "includes slow rendering on a busy machine, and the server figure is what the target is judged on."
    )
    out.notes.append(
        "Jobs: a fresh process (`bench/jobs_child.py`) on a local Ray with the machine's cores, 2,000 games "
        f"({costs['rows']:,} rows). Warm: TensorFlow imported and the trainer traced both in-process and in the "
        "worker before timing; in-process TensorFlow uses every core, a worker one; alternating, 5 each. "
        "Memory: 20 training jobs of the notebook's network one after another; after each, `RssAnon` (private "
        "memory; `VmRSS` also counts the object store's shared pages each job's dataset maps) of every Ray "
        "worker; per job = (last − second) / 18 for the largest. 'Without the trainer pool': a pool that "
        f"keeps nothing, so each job traces a fresh trainer. Workers are replaced after {costs['max_calls']} jobs."
    )
    out.data = {"visitors": results, "server_peak_rss": peak, "tree_pss": tree.samples, "wall": wall, "jobs": costs}
    return out


#: Which job a step's script run holds (``run_job``'s function name).
_STEP_OF_JOB = {"generate": "generate", "train_job": "train", "play_job": "play"}
#: The jobs that run on Ray's workers (the server only waits for them); generating runs in
#: the server's quick lane and counts as the server's own work.
_RAY_JOBS = {"train_job", "play_job"}
#: A job that waited this long for a CPU (seconds, on the server) has shown its visitor the
#: place in the queue (``pages.server.ray_job`` shows it after 1 s).
QUEUED_AFTER_S = 2.0


def _server_steps(stamps: str) -> dict[str, Any]:
    """Seconds of each step's script run on the server (from :mod:`bench.stamped_server`'s log),
    and how many generate runs overlapped another session's training job."""
    runs = []
    with contextlib.suppress(OSError), open(stamps) as log:
        runs = [json.loads(line) for line in log if line.strip()]
    seconds: dict[str, list[float]] = {}
    trainings = [(r["session"], j) for r in runs for j in r["jobs"] if j["fn"] == "train_job"]
    own: dict[str, list[float]] = {}
    beside = 0
    for run in runs:
        steps = {_STEP_OF_JOB[j["fn"]] for j in run["jobs"] if j["fn"] in _STEP_OF_JOB}
        on_ray = sum(j["end"] - j["start"] for j in run["jobs"] if j["fn"] in _RAY_JOBS)
        for step in steps:
            seconds.setdefault(step, []).append(run["end"] - run["start"])
            own.setdefault(step, []).append(run["end"] - run["start"] - on_ray)
        if "generate" in steps:
            beside += any(
                session != run["session"] and j["start"] < run["end"] and j["end"] > run["start"]
                for session, j in trainings
            )
    # The background trainer's jobs are nobody's measured steps: its session is the one whose
    # training started first (the measured visitors arrive after it began).
    first = min(trainings, key=lambda t: t[1]["start"], default=(None, None))[0]
    waits = [j["queued_until"] - j["start"] for r in runs if r["session"] != first
             for j in r["jobs"] if j["fn"] in _RAY_JOBS]  # fmt: skip
    return {"seconds": seconds, "own": own, "beside_training": beside, "waits": waits}


def _job_costs(ctx: Context) -> dict[str, Any]:
    """A warm training job on Ray against in-process, and workers' memory over 20 jobs
    (:mod:`bench.jobs_child`, in a fresh process)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.jobs_child"], cwd=ctx.root, capture_output=True, text=True, timeout=1800,
        env=dict(os.environ, PYTHONPATH=str(ctx.root)),
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bench.jobs_child failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
