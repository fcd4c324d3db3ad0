"""``python -m bench.ray_child PART SPEC_JSON``: one part of the Ray stage, in a fresh process.

``ray.init`` runs once per process, so every part that needs its own Ray (a cold start, a
simulated cluster) runs in a process of its own, started by :mod:`bench.ray_stage`. The
part prints one line ``RAYBENCH-RESULT {json}`` with its figures (seconds, bytes) on
stdout and stops every Ray process it started before it exits.

Parts (``SPEC_JSON`` holds their sizes):

- ``sweep-inprocess``: every trial of a sweep with :func:`run_trial`, one after another here.
- ``sweep-ray``: Ray's start-up, then the same sweep with :func:`sweep` on a local Ray just
  started (cold: workers have not imported TensorFlow), then again (warm), with memory.
- ``generate``: random games with :func:`generate`, in this process or on a local Ray.
- ``cluster``: a simulated two-node cluster (``ray.cluster_utils.Cluster``) and a sweep on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Any

from bench import procs

MARK = "RAYBENCH-RESULT "
#: Ray's own processes that Ray titles ``ray::…`` although they are not task workers.
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def emit(data: dict[str, Any]) -> None:
    """Hand the part's figures to the stage (the one line it reads)."""
    sys.stdout.write(MARK + json.dumps(data) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- processes


def _short_name(pid: int) -> str:
    """``raylet``, ``gcs_server``, ``log_monitor.py``, ``default_worker.py``, ``ray::IDLE`` …:
    a Ray title as it is, else the script a Python runs, else the program's file name."""
    parts = procs.cmdline(pid).split()
    if not parts:
        return "?"
    if parts[0].startswith("ray::"):
        return parts[0]
    program = os.path.basename(parts[0])
    if program.startswith("python"):
        script = next((p for p in parts[1:] if not p.startswith("-")), program)
        return os.path.basename(script)
    return program


def _kind(pid: int, driver: int) -> str:
    """``driver`` (this process), ``worker`` (a Ray task worker) or ``ray`` (Ray's own servers)."""
    if pid == driver:
        return "driver"
    name = _short_name(pid)
    if name == "default_worker.py" or (name.startswith("ray::") and name not in RAY_AGENTS):
        return "worker"
    return "ray"


def snapshot() -> dict[str, Any]:
    """Memory of this process and of every process below it (Ray's), by kind; bytes."""
    driver = os.getpid()
    kinds: dict[str, dict[str, Any]] = {
        k: {"count": 0, "rss": 0, "pss": 0, "names": {}} for k in ("driver", "ray", "worker")
    }
    for pid in procs.descendants(driver):
        rss, pss = procs.memory(pid)
        if rss == 0:
            continue  # ended meanwhile
        k = kinds[_kind(pid, driver)]
        k["count"] += 1
        k["rss"] += rss
        k["pss"] += pss
        entry = k["names"].setdefault(_short_name(pid), {"count": 0, "rss": 0, "pss": 0})
        entry["count"] += 1
        entry["rss"] += rss
        entry["pss"] += pss
    return kinds


def sockets() -> list[tuple[str, int, str]]:
    """(address, port, process name) of every TCP socket listened on by this process tree."""
    return [(a, port, _short_name(pid)) for a, port, pid in procs.listening_sockets(procs.descendants(os.getpid()))]


# ---------------------------------------------------------------- sweeps


def _sweep_config(spec: dict[str, Any]) -> Any:
    from cartpole_core.generate import GenerationConfig
    from cartpole_core.pipeline import NotebookConfig
    from cartpole_core.sweep import SweepConfig
    from cartpole_core.training import TrainingConfig

    base = NotebookConfig(
        generation=GenerationConfig(games=spec["games"]),
        training=TrainingConfig(epochs=spec["epochs"]),
        evaluation_games=spec["eval_games"],
    )
    values = tuple(float(v) for v in spec["values"])
    return SweepConfig(base=base, vary=(("score_requirement", values),), seeds=tuple(spec["seeds"])).validate()


def _trial_row(index: int, seed: int, settings: dict[str, Any], scores: Any, node: str = "") -> dict[str, Any]:
    return {
        "index": index,
        "seed": seed,
        "settings": settings,
        "accepted": scores.accepted,
        "accuracy": scores.accuracy,
        "mean": scores.mean,
        "seconds": scores.seconds,
        "node": node,
    }


def _sweep_rows(result: Any) -> list[dict[str, Any]]:
    rows = []
    for t in result.trials:
        if t.scores is None:
            raise RuntimeError(f"trial {t.index} {t.status}: {t.error}")
        rows.append(_trial_row(t.index, t.seed, t.settings, t.scores, t.node))
    return rows


def part_sweep_inprocess(spec: dict[str, Any]) -> dict[str, Any]:
    """Every trial with ``run_trial``, one after another in this process (TensorFlow with
    its default threads, i.e. every core)."""
    started = time.perf_counter()
    from cartpole_core.sweep import run_trial

    import_seconds = time.perf_counter() - started
    jobs = _sweep_config(spec).jobs()
    rows = []
    started = time.perf_counter()
    for job in jobs:
        rows.append(_trial_row(job.index, job.seed, job.settings, run_trial(job)))
    seconds = time.perf_counter() - started
    return {
        "import_seconds": import_seconds,
        "seconds": seconds,
        "trials": rows,
        "peak_rss": procs.peak_rss(os.getpid()),
        "memory": snapshot(),
    }


def part_sweep_ray(spec: dict[str, Any]) -> dict[str, Any]:
    """Ray's start-up and memory, then the sweep on it cold and (``spec["warm"]``) warm."""
    started = time.perf_counter()
    from cartpole_core.cluster import engine_info, ensure_ray
    from cartpole_core.sweep import sweep

    import_library = time.perf_counter() - started  # cartpole_core.sweep imports TensorFlow (via improve)
    started = time.perf_counter()
    import ray

    import_ray = time.perf_counter() - started
    started = time.perf_counter()
    ensure_ray(spec["cpus"])
    start_seconds = time.perf_counter() - started
    memory_started = snapshot()
    config = _sweep_config(spec)
    try:
        cold = sweep(config)
        memory_cold = snapshot()
        warm = sweep(config) if spec.get("warm") else None
        listening = sockets()
        info = engine_info()
    finally:
        ray.shutdown()
    return {
        "import_library_seconds": import_library,
        "import_ray_seconds": import_ray,
        "start_seconds": start_seconds,
        "cpus": info.cpus,
        "nodes": info.nodes,
        "memory_started": memory_started,
        "memory_after_sweep": memory_cold,
        "cold": {"seconds": cold.seconds, "trials": _sweep_rows(cold)},
        "warm": None if warm is None else {"seconds": warm.seconds, "trials": _sweep_rows(warm)},
        "sockets": listening,
    }


# ---------------------------------------------------------------- generation


def _digest(result: Any) -> str:
    """SHA-256 of the kept games' rows (observations, actions, game ids)."""
    ds = result.dataset
    h = hashlib.sha256()
    for array in (ds.observations, ds.actions, ds.game_ids):
        h.update(array.tobytes())
    return h.hexdigest()


def part_generate(spec: dict[str, Any]) -> dict[str, Any]:
    """``generate`` in this process (``spec["ray"]`` false: ``parallel=False``) or on a local
    Ray started first (the default ``parallel=None``); the scores go to ``spec["scores_path"]``."""
    import numpy as np

    from cartpole_core.generate import GenerationConfig, chunk_jobs, generate

    config = GenerationConfig(
        env_id=spec["env_id"], games=spec["games"], score_requirement=spec["score_requirement"], seed=0
    )
    start_seconds = None
    ray = None
    if spec["ray"]:
        from cartpole_core.cluster import ensure_ray

        started = time.perf_counter()
        ray = ensure_ray(spec["cpus"])
        start_seconds = time.perf_counter() - started
    try:
        started = time.perf_counter()
        result = generate(config, parallel=None if spec["ray"] else False)
        seconds = time.perf_counter() - started
        on_ray = ray is not None and ray.is_initialized()
        listening = sockets()
    finally:
        if ray is not None:
            ray.shutdown()
    np.save(spec["scores_path"], result.scores)
    return {
        "seconds": seconds,
        "start_seconds": start_seconds,
        "chunks": len(chunk_jobs(config, 0)),
        "on_ray": on_ray,
        "games": result.games,
        "accepted": result.accepted,
        "score_mean": float(result.scores.mean()),
        "digest": _digest(result),
        "sockets": listening,
    }


# ---------------------------------------------------------------- two-node cluster


def _leave_ray() -> None:
    """Disconnect from (or stop) this process's Ray, if it got that far."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def part_cluster(spec: dict[str, Any]) -> dict[str, Any]:
    """A head with no CPUs and two 1-CPU worker nodes in this machine, joined through
    ``RAY_ADDRESS`` as a real cluster would be, and a small sweep on it."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only; read at Ray's import
    from ray.cluster_utils import Cluster

    from cartpole_core.cluster import engine_info, ensure_ray
    from cartpole_core.sweep import sweep

    started = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        cluster_seconds = time.perf_counter() - started
        names = {cluster.head_node.node_id: "head"}
        names.update({node.node_id: f"node {i + 1}" for i, node in enumerate(workers)})
        os.environ["RAY_ADDRESS"] = cluster.address
        try:
            started = time.perf_counter()
            ensure_ray()
            join_seconds = time.perf_counter() - started
            result = sweep(_sweep_config(spec))
            info = engine_info()
            listening = sockets()
            memory = snapshot()
        finally:
            _leave_ray()
            del os.environ["RAY_ADDRESS"]
    finally:
        cluster.shutdown()
    per_node = {name: 0 for name in names.values()}
    for t in result.trials:
        name = next((n for node_id, n in names.items() if t.node and node_id.startswith(t.node)), "?")
        per_node[name] = per_node.get(name, 0) + 1
    return {
        "cluster_seconds": cluster_seconds,
        "join_seconds": join_seconds,
        "seconds": result.seconds,
        "nodes": info.nodes,
        "cpus": info.cpus,
        "per_node": per_node,
        "trials": _sweep_rows(result),
        "sockets": listening,
        "memory": memory,
    }


PARTS = {
    "sweep-inprocess": part_sweep_inprocess,
    "sweep-ray": part_sweep_ray,
    "generate": part_generate,
    "cluster": part_cluster,
}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in PARTS:
        sys.stderr.write(f"usage: python -m bench.ray_child {{{','.join(PARTS)}}} SPEC_JSON\n")
        return 2
    emit(PARTS[argv[0]](json.loads(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
