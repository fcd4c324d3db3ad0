"""The machine line and the Markdown report (BENCHMARKS.md)."""

from __future__ import annotations

import datetime as dt
import os
import platform
from importlib import metadata
from typing import Any

from bench.core import Settings, StageResult, StageSpec, fmt_ratio, fmt_s, markdown_table

VERSIONED = ("numpy", "tensorflow", "keras", "gymnasium", "streamlit", "pygame-ce", "imageio", "pillow", "playwright")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    ram = _ram_bytes()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gb": round(ram / 2**30, 1) if ram else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in VERSIONED},
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _met(met: bool | None) -> str:
    return "" if met is None else ("✅ met" if met else "❌ **not met**")


def render(
    settings: Settings,
    machine: dict[str, Any],
    specs: list[StageSpec],
    results: dict[str, StageResult],
    started: dt.datetime,
    seconds: float,
    load_after: Any,
) -> str:
    v = machine["versions"]
    mode = "quick smoke run (reduced sizes: targets are indicative only)" if settings.quick else "full run"
    load = machine["load_average"]
    load_text = (
        f"load average {load[0]:.1f} at the start, {load_after[0]:.1f} at the end" if load and load_after else ""
    )
    lines = [
        "# Benchmarks",
        "",
        f"Written by `python -m bench{' --quick' if settings.quick else ''}` on {started:%Y-%m-%d %H:%M} "
        f"({mode}, {settings.reps} repetition(s) per measurement, median shown with the range in brackets; "
        f"the whole benchmark took {fmt_s(seconds)}).",
        "",
        f"**Machine:** {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['ram_gb']} GB RAM; {machine['os']}. "
        f"**Software:** Python {machine['python']}, numpy {v['numpy']}, TensorFlow {v['tensorflow']}, "
        f"Keras {v['keras']}, Gymnasium {v['gymnasium']}, Streamlit {v['streamlit']} "
        f"(pygame-ce {v['pygame-ce']}, imageio {v['imageio']}, Pillow {v['pillow']}, "
        f"Playwright {v['playwright']}).",
        "",
        "> One run on a shared machine (other jobs, such as test suites, were running at the same time"
        + (f"; {load_text}" if load_text else "")
        + "): figures are indicative and can move by tens of percent from run to run. The notebook's way "
        "(faithful re-implementations in `bench/reference.py`) and ours were timed in the same process, "
        "alternating which went first.",
        "",
        "## Summary",
        "",
    ]
    rows = []
    for spec in specs:
        res = results.get(spec.key)
        if res is None:
            continue
        title = f"{spec.number}. {spec.title}"
        if res.skipped and not res.rows:
            rows.append([title, f"skipped: {res.skipped}", "", "", "", "", ""])
        for i, row in enumerate(res.rows):
            rows.append(
                [title if i == 0 else "", row.measure, row.reference, row.ours, fmt_ratio(row.ratio), row.target]
                + [_met(row.met)]
            )
    lines.append(
        markdown_table(
            ["stage", "measure", "notebook's way", "ours", "ratio (notebook / ours)", "target", "met?"],
            rows,
        )
    )
    misses = [
        f"- {spec.number}. {spec.title}: {row.measure}: {row.ours} against {row.target}."
        + (f" Why: {row.why}" if row.why else "")
        for spec in specs
        if spec.key in results
        for row in results[spec.key].rows
        if row.met is False
    ]
    skipped = [
        f"- {spec.number}. {spec.title}: {results[spec.key].skipped}" for spec in specs if _skipped(results, spec)
    ]
    lines += ["", "## Targets not met", ""]
    lines += misses or ["None."]
    if skipped:
        lines += ["", "## Skipped", "", *skipped]
    lines += ["", "## Details", ""]
    for spec in specs:
        res = results.get(spec.key)
        if res is None:
            continue
        lines += [f"### {spec.number}. {spec.title}", ""]
        if res.skipped:
            lines += [f"Skipped: {res.skipped}.", ""]
        for note in res.notes:
            lines.append(f"- {note}")
        if res.notes:
            lines.append("")
        for block in res.details:
            lines += [block, ""]
        lines += [f"Stage wall time: {fmt_s(res.seconds)}.", ""]
    lines += [
        "## How to run",
        "",
        "`python -m bench` (about 50 minutes on 2 cores: 20 in the Ray stage, 12 in the peer race, which "
        "builds its own venv with Stable-Baselines3 and torch the first time and must run with nothing else "
        "busy) rewrites this file; "
        "`python -m bench --quick` is a smoke run with small sizes that prints its report instead; "
        "`--stages generation,gif` runs some stages only; `--reps N` sets the repetitions; `--help` for the "
        "rest. The benchmark is not part of the tests.",
        "",
    ]
    return "\n".join(lines)


def _skipped(results: dict[str, StageResult], spec: StageSpec) -> bool:
    res = results.get(spec.key)
    return bool(res and res.skipped)
