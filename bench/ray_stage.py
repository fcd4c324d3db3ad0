"""Stage 10: Ray — sweeps and parallel generation (issue 10's benchmark).

1. A sweep (settings × seeds at the notebook's defaults) run trial after trial in one
   process (``run_trial``) against ``sweep()`` on a local Ray with 2 CPUs, just started
   (cold: its workers import TensorFlow during the sweep) and again (warm); same table?
2. LunarLander-v3 games (an env without a vector env: Acrobot and MountainCar have ours and
   play in one piece): ``generate(..., parallel=False)`` against ``generate(...)`` on Ray
   (chunks of 500 games); the same scores?
3. Ray's start-up time and memory (the driver, Ray's own servers, the workers before and
   after they imported TensorFlow); that every Ray listens on loopback only; that no
   process outlives its part.
4. A simulated two-node cluster (``ray.cluster_utils.Cluster``: a head without CPUs and two
   1-CPU nodes) and a small sweep on it: which node ran which trial.

``ray.init`` runs once per process, so each part runs in a fresh process
(:mod:`bench.ray_child`), in its own session (so whatever it leaves running can be found
and stopped) and with its own Ray temp folder (``RAY_TMPDIR``), so it never joins another
Ray running on the machine. The benchmark's own process never imports Ray.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import procs
from bench.core import (
    Context,
    Row,
    StageResult,
    alternate,
    fmt_bytes,
    fmt_s,
    fmt_times,
    log,
    markdown_table,
    median,
    stage,
)
from bench.ray_child import MARK

#: Speed-up Ray must reach on 2 cores (in-process seconds / Ray seconds).
TARGET_SPEEDUP = 1.7
#: The env whose games are split into chunks (it has no vector env).
CHUNKED_ENV = "LunarLander-v3"
#: Its games are kept from this score up (random play: mean about -180), so the kept-games
#: check compares real rows.
CHUNKED_REQUIREMENT = -100.0
#: Longest any part may run (seconds) before it is stopped.
PART_TIMEOUT = 3600.0
#: How long Ray's processes get to end after their part's process ended (seconds).
EXIT_GRACE = 10.0


@dataclass(frozen=True)
class RaySizes:
    """Sizes of this stage (full or ``--quick``)."""

    sweep_games: int
    """Random games each trial generates (the notebook: 10,000)."""
    sweep_epochs: int
    sweep_eval_games: int
    """Games each trained network is evaluated on."""
    sweep_values: tuple[float, ...]
    """Values of ``score_requirement`` the sweep tries."""
    sweep_seeds: tuple[int, ...]
    chunked_games: int
    chunked_reps: int
    """Most repetitions of the chunked comparison (``settings.reps`` may lower it): 10,000
    games take minutes in one process, so the full run measures them once."""
    cluster_games: int
    cluster_epochs: int
    cluster_eval_games: int
    cluster_values: tuple[float, ...]
    cluster_seeds: tuple[int, ...]
    cpus: int = 2
    """CPUs of the local Ray (one trial or chunk each)."""

    @property
    def trials(self) -> int:
        return len(self.sweep_values) * len(self.sweep_seeds)

    def sweep_spec(self) -> dict[str, Any]:
        return {
            "games": self.sweep_games,
            "epochs": self.sweep_epochs,
            "eval_games": self.sweep_eval_games,
            "values": list(self.sweep_values),
            "seeds": list(self.sweep_seeds),
            "cpus": self.cpus,
            "warm": True,
        }

    def cluster_spec(self) -> dict[str, Any]:
        return {
            "games": self.cluster_games,
            "epochs": self.cluster_epochs,
            "eval_games": self.cluster_eval_games,
            "values": list(self.cluster_values),
            "seeds": list(self.cluster_seeds),
        }


FULL = RaySizes(
    sweep_games=10_000, sweep_epochs=4, sweep_eval_games=20, sweep_values=(40.0, 50.0, 60.0, 70.0),
    sweep_seeds=(0, 1), chunked_games=10_000, chunked_reps=1, cluster_games=2_000, cluster_epochs=1,
    cluster_eval_games=10, cluster_values=(40.0, 50.0, 60.0), cluster_seeds=(0, 1),
)  # fmt: skip
QUICK = RaySizes(
    sweep_games=1_000, sweep_epochs=1, sweep_eval_games=5, sweep_values=(40.0, 50.0), sweep_seeds=(0, 1),
    chunked_games=1_000, chunked_reps=1, cluster_games=500, cluster_epochs=1, cluster_eval_games=5,
    cluster_values=(40.0, 50.0), cluster_seeds=(0, 1),
)  # fmt: skip


# ---------------------------------------------------------------- running a part


def _child_env(ctx: Context, ray_tmp: str) -> dict[str, str]:
    """The environment of a part: a local Ray of its own (``RAY_ADDRESS`` removed), bound to
    loopback, with its files in ``ray_tmp``."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    paths = [str(ctx.root), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(
        PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)),
        TF_CPP_MIN_LOG_LEVEL="3",
        RAY_TMPDIR=ray_tmp,
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
    )
    return env


def _stop_leftovers(session: int) -> int:
    """Wait up to :data:`EXIT_GRACE` s for the processes of a part's session to end (Ray's
    die with the process that started them), then stop those still running; returns how
    many had to be stopped."""
    deadline = time.monotonic() + EXIT_GRACE
    while procs.session_members(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    return procs.stop(procs.session_members(session))


def run_part(ctx: Context, part: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one part of :mod:`bench.ray_child` in a fresh process and return its figures,
    with ``wall`` (seconds from spawn to exit) and ``leftovers`` (processes it left running,
    now stopped) added."""
    cmd = [sys.executable, "-m", "bench.ray_child", part, json.dumps(spec)]
    with tempfile.TemporaryDirectory(prefix="rb") as ray_tmp:  # short: Ray's socket paths live under it
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=ctx.root, env=_child_env(ctx, ray_tmp), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=PART_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)  # its own process group (a new session)
            stdout, stderr = proc.communicate()
        finally:
            leftovers = _stop_leftovers(proc.pid)
        wall = time.perf_counter() - started
    lines = [line for line in stdout.decode(errors="replace").splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        tail = stderr.decode(errors="replace").strip()[-800:]
        raise RuntimeError(f"bench.ray_child {part} exited {proc.returncode}: {tail}")
    data = json.loads(lines[-1][len(MARK) :])
    data.update(wall=wall, leftovers=leftovers)
    return data


# ---------------------------------------------------------------- measuring


def measure_sweeps(ctx: Context, sizes: RaySizes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(in-process runs, Ray runs), ``settings.reps`` of each, alternating which goes first."""
    spec = sizes.sweep_spec()

    def in_process(rep: int) -> dict[str, Any]:
        data = run_part(ctx, "sweep-inprocess", spec)
        log(f"    in-process: {fmt_s(data['seconds'])} for {len(data['trials'])} trials")
        return data

    def on_ray(rep: int) -> dict[str, Any]:
        data = run_part(ctx, "sweep-ray", spec)
        log(
            f"    Ray: start-up {fmt_s(data['import_ray_seconds'] + data['start_seconds'])}, "
            f"cold sweep {fmt_s(data['cold']['seconds'])}, warm sweep {fmt_s(data['warm']['seconds'])}"
        )
        return data

    _, inproc, _, ray = alternate(ctx.settings.reps, in_process, on_ray, label=f"sweep of {sizes.trials} trials")
    return inproc, ray


def measure_chunked(ctx: Context, sizes: RaySizes) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """(one-process runs, Ray runs, whether every run gave the very same scores array)."""
    reps = min(ctx.settings.reps, sizes.chunked_reps)
    with tempfile.TemporaryDirectory() as folder:

        def run(rep: int, ray: bool) -> dict[str, Any]:
            spec = {
                "env_id": CHUNKED_ENV,
                "games": sizes.chunked_games,
                "score_requirement": CHUNKED_REQUIREMENT,
                "ray": ray,
                "cpus": sizes.cpus,
                "scores_path": os.path.join(folder, f"{'ray' if ray else 'one'}-{rep}.npy"),
            }
            data = run_part(ctx, "generate", spec)
            data["scores"] = np.load(spec["scores_path"])
            log(f"    {'Ray' if ray else 'one process'}: {fmt_s(data['seconds'])} for the games")
            return data

        label = f"{sizes.chunked_games:,} {CHUNKED_ENV} games"
        _, one, _, ray = alternate(reps, lambda rep: run(rep, False), lambda rep: run(rep, True), label=label)
    first = one[0]["scores"]
    same = all(np.array_equal(first, r.pop("scores")) for r in one + ray)
    return one, ray, same


# ---------------------------------------------------------------- reporting


def _trial_key(row: dict[str, Any]) -> tuple[int, int]:
    return row["index"], row["seed"]


def _table(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """A sweep's table as compared: (trial, seed, accepted, mean) per trial, in order."""
    return [(r["index"], r["seed"], r["accepted"], r["mean"]) for r in sorted(rows, key=_trial_key)]


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' * (n != 1)}"


def _value(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())


def report_sweeps(out: StageResult, sizes: RaySizes, inproc: list[dict[str, Any]], ray: list[dict[str, Any]]) -> None:
    n = sizes.trials
    in_s = [r["seconds"] for r in inproc]
    cold_s = [r["cold"]["seconds"] for r in ray]
    warm_s = [r["warm"]["seconds"] for r in ray]
    start_s = [r["import_ray_seconds"] + r["start_seconds"] for r in ray]
    per_in = median(t["seconds"] for r in inproc for t in r["trials"])
    per_worker = median(t["seconds"] for r in ray for t in r["warm"]["trials"])
    ideal = sizes.cpus * per_in / per_worker
    ratio = median(in_s) / median(cold_s)
    why = (
        f"a trial takes {fmt_s(per_in)} in one process, where TensorFlow trains on every core, and "
        f"{fmt_s(per_worker)} in a worker with 1 CPU (median), so {sizes.cpus} workers can be at most "
        f"≈ {ideal:.2f}× faster; the cold sweep also waits for the workers' TensorFlow import "
        f"(cold − warm: {fmt_s(median(cold_s) - median(warm_s))})."
    )
    label = (
        f"sweep of {n} trials ({len(sizes.sweep_values)} score requirements × {len(sizes.sweep_seeds)} seeds, "
        f"{sizes.sweep_games:,} games, {_plural(sizes.sweep_epochs, 'epoch')}, "
        f"{sizes.sweep_eval_games} evaluation games)"
    )
    out.rows += [
        Row(f"{label}: wall time; Ray just started (cold)", fmt_times(in_s), fmt_times(cold_s), ratio,
            f"≥ {TARGET_SPEEDUP:g}× faster on {sizes.cpus} cores", ratio >= TARGET_SPEEDUP, why),
        Row("… the same sweep again on that Ray (warm: workers hold TensorFlow)", fmt_times(in_s),
            fmt_times(warm_s), median(in_s) / median(warm_s), "(for information)"),
        Row("… Ray's start-up + the cold sweep", fmt_times(in_s),
            fmt_times([a + b for a, b in zip(start_s, cold_s, strict=True)]),
            median(in_s) / median([a + b for a, b in zip(start_s, cold_s, strict=True)]), "(for information)"),
        Row("median time per trial (in one process: TensorFlow on every core; Ray: 1 CPU per worker, warm)",
            fmt_s(per_in), fmt_s(per_worker), per_in / per_worker, f"(ideal speed-up ≈ {ideal:.2f}×)"),
    ]  # fmt: skip
    report_tables(out, inproc, ray)
    last_in, last_ray = inproc[-1], ray[-1]
    out.details.append(_sweep_details(last_in, last_ray))
    out.notes.append(
        f"Sweep: in one process, `run_trial` on each of the {n} jobs one after another (a fresh process per "
        "repetition; TensorFlow is imported with `cartpole_core.sweep`, before the timing starts, and trains "
        f"with its default threads, i.e. every core). On Ray: a fresh process starts a local Ray with "
        f"{sizes.cpus} CPUs (`ensure_ray({sizes.cpus})`, timed apart), then times `sweep()` twice: cold and "
        "warm. Cold includes the workers' warm-up: Ray's first tasks start new workers (the ones it prestarts "
        "with `ray.init` lack the job's runtime environment, so they are replaced), and each imports "
        "TensorFlow (a few seconds) before its first trial. Warm: the same workers again. Each task holds "
        "1 CPU, so its TensorFlow uses 1 thread."
    )


def report_tables(out: StageResult, inproc: list[dict[str, Any]], ray: list[dict[str, Any]]) -> None:
    """Do in-process and Ray give the same table (accepted games and evaluation mean per trial)?"""
    ours = _table(inproc[-1]["trials"])
    theirs = _table(ray[-1]["cold"]["trials"])
    n = len(ours)
    accepted_same = sum(a[2] == b[2] for a, b in zip(ours, theirs, strict=True))
    mean_same = sum(a[3] == b[3] for a, b in zip(ours, theirs, strict=True))
    largest = max(abs(a[3] - b[3]) for a, b in zip(ours, theirs, strict=True))
    ray_tables = [_table(r[k]["trials"]) for r in ray for k in ("cold", "warm")]
    in_tables = [_table(r["trials"]) for r in inproc]
    ray_stable = all(t == ray_tables[0] for t in ray_tables)
    in_stable = all(t == in_tables[0] for t in in_tables)
    out.rows += [
        Row("same table: games kept per trial, in one process vs on Ray", ours=f"{accepted_same} of {n} equal",
            target="all equal", met=accepted_same == n,
            why="generation is seeded per trial, so the kept games must not depend on where the trial runs."),
        Row("same table: evaluation mean per trial, in one process vs on Ray",
            ours=f"{mean_same} of {n} equal (largest difference {largest:.1f})", target="(reported)",
            why=""),
        Row("Ray's tables identical from run to run (cold, warm, every repetition)",
            ours="yes" if ray_stable else "**no**", target="identical", met=ray_stable),
    ]  # fmt: skip
    out.notes.append(
        "The evaluation means in one process and on Ray can differ: in one process TensorFlow trains with "
        "every core, in a worker with 1 thread, and a different split of the sums rounds differently, so "
        "the trained weights and then the games they play drift apart. The kept games cannot."
        + ("" if len(in_tables) < 2 else " In-process tables were identical from run to run." if in_stable
           else " In-process tables differed from run to run (TensorFlow's multi-threaded sums vary).")
    )  # fmt: skip


def _sweep_details(inproc: dict[str, Any], ray: dict[str, Any]) -> str:
    rows = []
    by_key = {_trial_key(t): t for t in ray["cold"]["trials"]}
    warm = {_trial_key(t): t for t in ray["warm"]["trials"]}
    for a in sorted(inproc["trials"], key=_trial_key):
        b, w = by_key[_trial_key(a)], warm[_trial_key(a)]
        rows.append(
            [
                _value(a["settings"]),
                str(a["seed"]),
                f"{a['accepted']} / {b['accepted']}",
                f"{a['accuracy']:.4f} / {b['accuracy']:.4f}",
                f"{a['mean']:.1f} / {b['mean']:.1f}" + ("" if a["mean"] == b["mean"] else " ≠"),
                f"{fmt_s(a['seconds'])} / {fmt_s(b['seconds'])} / {fmt_s(w['seconds'])}",
            ]
        )
    return "Sweep, last repetition (in one process / on Ray, cold; times also warm):\n\n" + markdown_table(
        ["setting", "seed", "games kept", "final accuracy", "evaluation mean", "trial time (one / cold / warm)"],
        rows,
    )


def report_chunked(
    out: StageResult, sizes: RaySizes, one: list[dict[str, Any]], ray: list[dict[str, Any]], same_scores: bool
) -> None:
    one_s = [r["seconds"] for r in one]
    ray_s = [r["seconds"] for r in ray]
    start_s = [r["start_seconds"] for r in ray]
    chunks = ray[0]["chunks"]
    ratio = median(one_s) / median(ray_s)
    same_rows = len({r["digest"] for r in one + ray}) == 1
    on_ray = all(r["on_ray"] for r in ray)
    rounds = math.ceil(chunks / sizes.cpus)
    ideal = chunks / rounds
    out.rows += [
        Row(f"{sizes.chunked_games:,} {CHUNKED_ENV} games ({chunks} chunks of ≤ 500): wall time",
            fmt_times(one_s), fmt_times(ray_s), ratio, f"≥ {TARGET_SPEEDUP:g}× faster on {sizes.cpus} cores",
            ratio >= TARGET_SPEEDUP and on_ray,
            f"{chunks} chunks on {sizes.cpus} workers take {_plural(rounds, 'round')}, so at best {ideal:.2f}×; both "
            "processes also share the 2 cores with everything else running" + ("." if on_ray else
            "; the chunks did not run on Ray.")),
        Row("… Ray's start-up + the games", fmt_times(one_s), fmt_times([a + b for a, b in zip(start_s, ray_s,
            strict=True)]), median(one_s) / median([a + b for a, b in zip(start_s, ray_s, strict=True)]),
            "(for information)"),
        Row("same scores array (and the same kept games' rows) in one process and on Ray",
            ours=("identical" if same_scores else "**scores differ**") + ("" if same_rows else ", **rows differ**"),
            target="identical", met=same_scores and same_rows),
    ]  # fmt: skip
    out.notes.append(
        f"{CHUNKED_ENV}: `generate(GenerationConfig('{CHUNKED_ENV}', games={sizes.chunked_games:,}, seed=0, "
        f"score_requirement={CHUNKED_REQUIREMENT:g}), parallel=False)` plays its {chunks} chunks one after "
        "another in a fresh process; on Ray, a fresh process starts a local Ray (timed apart) and calls "
        "`generate` with its default (`parallel=None`: chunks as Ray tasks). Scores compared element by "
        f"element, kept rows by SHA-256; {_plural(len(one), 'run')} each. Games kept: {one[0]['accepted']:,} of "
        f"{one[0]['games']:,} (mean score {one[0]['score_mean']:.1f})."
    )


def _memory_line(snapshot: dict[str, Any], kind: str) -> str:
    k = snapshot[kind]
    return f"{fmt_bytes(k['pss'])} PSS ({fmt_bytes(k['rss'])} RSS, {k['count']} process(es))"


def report_engine(out: StageResult, inproc: list[dict[str, Any]], ray: list[dict[str, Any]], parts: list) -> None:
    """Start-up, memory, loopback and left-over processes."""
    starts = [r["import_ray_seconds"] + r["start_seconds"] for r in ray]
    last = ray[-1]
    started, after = last["memory_started"], last["memory_after_sweep"]
    total_after = sum(after[k]["pss"] for k in ("driver", "ray", "worker"))
    sockets = [tuple(s) for p in parts for s in p.get("sockets", [])]
    outside = [s for s in sockets if not procs.is_loopback(s[0])]
    leftovers = sum(p["leftovers"] for p in parts)
    out.rows += [
        Row("Ray's start-up in a fresh process (`import ray` + `ensure_ray(2)`)", ours=fmt_times(starts)),
        Row("Ray's own processes (gcs_server, raylet, agents…) after start-up", ours=_memory_line(started, "ray")),
        Row("… its workers after start-up (prestarted, idle, no TensorFlow)",
            ours=_memory_line(started, "worker")),
        Row("… its workers after the sweep (TensorFlow imported, networks trained)",
            ours=_memory_line(after, "worker")),
        Row("driver process after the sweep (imports TensorFlow with `cartpole_core.sweep`)",
            ours=_memory_line(after, "driver")),
        Row("memory (PSS) after the sweep: the one process vs driver + Ray's processes",
            fmt_bytes(inproc[-1]["memory"]["driver"]["pss"]), fmt_bytes(total_after)),
        Row("TCP sockets listened on by every Ray of this stage", ours=f"{len(sockets)}, "
            f"{len(outside)} not on loopback", target="all on loopback", met=not outside and bool(sockets),
            why="" if not outside else "listening outside loopback: " + ", ".join(f"{a}:{p} ({n})"
            for a, p, n in outside[:5])),
        Row("processes left running after a part ended (all stopped by the benchmark)", ours=str(leftovers),
            target="0", met=leftovers == 0),
    ]  # fmt: skip
    out.details.append(_memory_details(started, after))
    out.notes.append(
        "Memory: `/proc/PID/status` VmRSS and `/proc/PID/smaps_rollup` Pss of the Ray process's tree "
        "(last repetition; the driver is the part's process; the one process running the sweep itself peaked "
        f"at {fmt_bytes(inproc[-1]['peak_rss'])} RSS). RSS counts shared pages (Python, NumPy, "
        "TensorFlow libraries) in every process, so RSS overstates a sum; PSS divides each shared page "
        "among its sharers and adds up. "
        "Start-up includes `import ray` (the driver had already imported TensorFlow). Each part ran in its "
        "own session and its own `RAY_TMPDIR`; after it ended, its session was searched for survivors."
    )


def _memory_details(started: dict[str, Any], after: dict[str, Any]) -> str:
    def cell(entry: dict[str, int] | None) -> str:
        if not entry:
            return "—"
        return f"{fmt_bytes(entry['pss'])} ({fmt_bytes(entry['rss'])}, ×{entry['count']})"

    rows = []
    for kind in ("driver", "ray", "worker"):
        for name in sorted(set(started[kind]["names"]) | set(after[kind]["names"])):
            rows.append([kind, name, cell(started[kind]["names"].get(name)), cell(after[kind]["names"].get(name))])
    return (
        "Memory by process name on the local Ray with 2 CPUs (last repetition): PSS (RSS, × processes of "
        "that name):\n\n" + markdown_table(["kind", "process", "after start-up", "after the cold sweep"], rows)
    )


def report_cluster(out: StageResult, sizes: RaySizes, cluster: dict[str, Any]) -> None:
    per_node = cluster["per_node"]
    n = len(cluster["trials"])
    spread = per_node.get("node 1", 0) > 0 and per_node.get("node 2", 0) > 0 and per_node.get("head", 0) == 0
    counts = ", ".join(f"{name}: {count}" for name, count in per_node.items())
    out.rows += [
        Row("simulated two-node cluster (head without CPUs + 2 nodes × 1 CPU): start-up",
            ours=fmt_s(cluster["cluster_seconds"])),
        Row(f"sweep of {n} trials on it: trials per node", ours=counts,
            target="both nodes ran trials, the head none", met=spread and per_node.get("?", 0) == 0),
        Row("… its wall time", ours=fmt_s(cluster["seconds"])),
    ]  # fmt: skip
    out.notes.append(
        "Cluster: `ray.cluster_utils.Cluster` in a fresh process (with `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` "
        "before Ray's import, so every node binds loopback), a head with `num_cpus=0` and two nodes with "
        "`num_cpus=1`; `RAY_ADDRESS` set to its address, so `cartpole_core` joins it as it would join a real "
        f"cluster (our code shipped as `py_modules`). The sweep: score requirement "
        f"{', '.join(f'{v:g}' for v in sizes.cluster_values)} × seeds "
        f"{', '.join(map(str, sizes.cluster_seeds))}, {sizes.cluster_games:,} games, "
        f"{_plural(sizes.cluster_epochs, 'epoch')}; the engine saw {cluster['nodes']} nodes and "
        f"{cluster['cpus']} CPUs; joining took "
        f"{fmt_s(cluster['join_seconds'])}. Then `ray.shutdown()`, `cluster.shutdown()`, `RAY_ADDRESS` unset."
    )


# ---------------------------------------------------------------- the stage


@stage(10, "ray", "Ray: sweeps and parallel generation")
def ray_stage(ctx: Context) -> StageResult:
    sizes = QUICK if ctx.settings.quick else FULL
    out = StageResult()
    log(f"  sweep: {sizes.trials} trials, {ctx.settings.reps} repetition(s) each way")
    inproc, ray = measure_sweeps(ctx, sizes)
    log(f"  {CHUNKED_ENV}: {sizes.chunked_games:,} games each way")
    one, ray_gen, same_scores = measure_chunked(ctx, sizes)
    log("  two-node cluster")
    cluster = run_part(ctx, "cluster", sizes.cluster_spec())
    log(f"    trials per node: {cluster['per_node']}")
    report_sweeps(out, sizes, inproc, ray)
    report_chunked(out, sizes, one, ray_gen, same_scores)
    report_engine(out, inproc, ray, [*inproc, *ray, *one, *ray_gen, cluster])
    report_cluster(out, sizes, cluster)
    out.data = {
        "sizes": sizes.__dict__,
        "sweep_in_process": inproc,
        "sweep_ray": ray,
        "chunked_one_process": one,
        "chunked_ray": ray_gen,
        "cluster": cluster,
    }
    return out
