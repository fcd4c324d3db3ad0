"""Stages 8 and 9: what a shared server lives through.

8. memory: 20 networks trained one after another in one process (as a long-lived server
   would), resident memory after each; the growth from the 2nd to the 20th is reported.
9. load: N simultaneous visitors (headless Chromium, loopback only, bounded in count and
   time) each go Generate -> Train -> Play with small budgets; completions, errors, p50/p95
   seconds per step and the server's peak RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
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


async def _visitor(browser: Any, url: str, i: int, timeout_s: float) -> dict[str, Any]:
    """One visitor: Generate -> Train -> Play with small budgets; seconds per step."""
    page = await (await browser.new_context()).new_page()
    steps: dict[str, float] = {}
    error = ""

    async def settle() -> None:
        with contextlib.suppress(Exception):  # a busy server may start the script a moment after the click
            await page.wait_for_selector('[data-testid="stApp"][data-test-script-state="running"]', timeout=2000)
        await page.wait_for_selector(
            '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_s * 1000
        )

    async def nav(name: str) -> None:
        await page.locator('[data-testid="stSidebarNav"] a', has_text=name).first.click()
        await settle()

    async def number(label: str, value: int) -> None:
        box = page.get_by_label(label, exact=True).first
        await box.fill(str(value))
        await box.press("Tab")
        await page.wait_for_timeout(200)

    try:
        t = time.perf_counter()
        await page.goto(url)
        await settle()
        steps["open"] = time.perf_counter() - t
        await nav("Generate data")
        await number("Games", 2000)
        await number("Seed", i)
        t = time.perf_counter()
        await page.get_by_role("button", name="Play and keep the good games").click()
        await settle()
        await page.get_by_text("Acceptance rate").first.wait_for(timeout=timeout_s * 1000)
        steps["generate"] = time.perf_counter() - t
        await nav("Train")
        await page.get_by_label("Hidden layers", exact=True).fill("32,32")
        await number("Epochs", 1)
        t = time.perf_counter()
        await page.get_by_role("button", name="Train").last.click()
        await settle()
        await page.get_by_text("Per epoch").first.wait_for(timeout=timeout_s * 1000)
        steps["train"] = time.perf_counter() - t
        await nav("Play & evaluate")
        await number("Games", 10)
        t = time.perf_counter()
        await page.locator(".st-key-play_run button").first.click()
        await settle()
        await page.get_by_text("network mean").first.wait_for(timeout=timeout_s * 1000)
        steps["play"] = time.perf_counter() - t
        problems = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
        if await problems.count():
            error = "error on the page: " + (await problems.first.inner_text())[:200]
        elif await page.get_by_text("network mean").count() != 1:
            error = "no result on the Play page"
    except Exception as exc:  # a visitor's failure is a result of the test, not a crash of it
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    finally:
        await page.context.close()
    return {"visitor": i, "steps": steps, "error": error}


async def _drive(url: str, visitors: int, timeout_s: float) -> list[dict[str, Any]]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        try:
            return await asyncio.wait_for(
                asyncio.gather(*[_visitor(browser, url, i, timeout_s) for i in range(visitors)]), timeout_s
            )
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
    visitors = 3 if ctx.settings.quick else 10
    port = _free_port()
    with tempfile.TemporaryDirectory() as runs:
        env = dict(os.environ, CARTPOLE_LAB_RUNS=runs)
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
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
            started = time.perf_counter()
            results = asyncio.run(_drive(url, visitors, timeout_s=600))
            wall = time.perf_counter() - started
            peak = _peak_rss(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    costs = _job_costs(ctx)
    done = [r for r in results if not r["error"] and len(r["steps"]) == 4]
    errors = [r for r in results if r["error"]]
    for r in errors:
        log(f"  visitor {r['visitor']}: {r['error']}")
    rows = []
    for step in ("open", "generate", "train", "play"):
        values = [r["steps"][step] for r in results if step in r["steps"]]
        rows.append([step, f"{median(values):.2f} s", f"{_percentile(values, 0.95):.2f} s", str(len(values))])
    out.rows += [
        Row(f"{visitors} simultaneous visitors completed the flow", ours=f"{len(done)} of {visitors}",
            target=f"{visitors} of {visitors}, 0 errors", met=len(done) == visitors and not errors),
        Row("web server's peak RSS (TensorFlow and training in Ray's workers)", ours=fmt_bytes(peak),
            target="< 400 MB", met=peak < 400 * 2**20),
        Row("wall time of the whole load", ours=f"{wall:.1f} s"),
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
    out.details.append(markdown_table(["step", "p50", "p95", "visitors"], rows))
    out.notes.append(
        f"{visitors} headless Chromium pages on one loopback server, all started at once; each generates "
        "2,000 games (its own seed), trains a 32-32 network for 1 epoch and plays 10 games. Each step's "
        "work is a Ray job (a local Ray with the machine's cores), so p95 includes waiting in Ray's queue."
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
    out.data = {"visitors": results, "server_peak_rss": peak, "wall": wall, "jobs": costs}
    return out


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
