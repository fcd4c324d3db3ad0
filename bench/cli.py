"""``python -m bench``: run the stages, print and write the report."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench.core import ROOT, STAGE_MODULES, STAGES, Context, Row, Settings, StageResult, fmt_s, log
from bench.report import machine_info, render


def load_stages() -> None:
    for name in STAGE_MODULES:
        importlib.import_module(name)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time the notebook's way against cartpole_core, stage by stage, and write BENCHMARKS.md.",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, 1 repetition, report on stdout")
    p.add_argument("--reps", type=int, help="repetitions of each measurement (default 3; --quick: 1)")
    p.add_argument("--stages", help="comma-separated stage keys or numbers to run (default: all; see --list)")
    p.add_argument("--list", action="store_true", help="list the stages and exit")
    p.add_argument(
        "--out",
        help="Markdown file to write (default: BENCHMARKS.md at the repo root for a full run, "
        "nothing for --quick); '-' for stdout only",
    )
    p.add_argument("--json", help="also write the raw figures to this JSON file")
    p.add_argument("--switch-page", help="dashboard page to switch to (label or URL part; default: auto)")
    p.add_argument(
        "--streamlit-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument of `streamlit run` for the dashboard stage, e.g. --streamlit-arg=--server.runOnSave=false "
        "(repeatable)",
    )
    return p


def select(spec: str | None) -> list:
    if not spec:
        return list(STAGES)
    wanted = {part.strip() for part in spec.split(",") if part.strip()}
    chosen = [s for s in STAGES if s.key in wanted or str(s.number) in wanted]
    unknown = wanted - {s.key for s in chosen} - {str(s.number) for s in chosen}
    if unknown:
        raise SystemExit(f"unknown stage(s): {', '.join(sorted(unknown))} (see --list)")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load_stages()
    if args.list:
        for s in STAGES:
            print(f"{s.number}. {s.key:<12} {s.title}")
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    settings = Settings.quick_mode() if args.quick else Settings.full()
    if args.reps:
        settings = dataclasses.replace(settings, reps=max(1, args.reps))
    if args.switch_page:
        settings = dataclasses.replace(settings, switch_page=args.switch_page)
    if args.streamlit_arg:
        settings = dataclasses.replace(settings, streamlit_args=tuple(args.streamlit_arg))
    specs = select(args.stages)
    ctx = Context(settings)
    machine = machine_info()
    started_at = dt.datetime.now()
    started = time.perf_counter()
    for spec in specs:
        log(f"[{spec.number}] {spec.title}")
        t0 = time.perf_counter()
        try:
            result = spec.fn(ctx)
        except Exception as exc:  # one broken stage must not lose the others' figures
            traceback.print_exc(file=sys.stderr)
            result = StageResult(skipped=f"failed: {type(exc).__name__}: {str(exc)[:300]}")
            result.rows = [Row("(stage failed)", ours=f"{type(exc).__name__}: {str(exc)[:120]}")]
        result.seconds = time.perf_counter() - t0
        ctx.results[spec.key] = result
        log(f"[{spec.number}] done in {fmt_s(result.seconds)}")
    total = time.perf_counter() - started
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    text = render(settings, machine, specs, ctx.results, started_at, total, load_after)
    out = args.out if args.out is not None else (None if settings.quick else str(ROOT / "BENCHMARKS.md"))
    print(text)
    if out and out != "-":
        Path(out).write_text(text, encoding="utf-8")
        log(f"wrote {out}")
    if args.json:
        raw = {
            "settings": dataclasses.asdict(settings),
            "machine": machine,
            "started": started_at.isoformat(timespec="seconds"),
            "stages": {k: {"data": r.data, "skipped": r.skipped, "seconds": r.seconds} for k, r in ctx.results.items()},
        }
        Path(args.json).write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
        log(f"wrote {args.json}")
    return 0
