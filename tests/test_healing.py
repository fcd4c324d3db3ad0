"""The engine heals (issue 21): a local Ray whose raylet or GCS is killed, as an out-of-memory
kill would, is replaced by the next job, and a job waiting when it dies runs again on the new
one; no error reaches the caller."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from cartpole_core.cluster import engine_alive, ensure_ray, run_job
from cartpole_core.generate import GenerationConfig, generate
from cartpole_core.progress import ProgressCallback, report


def count_to(n: int, pause: float, progress: ProgressCallback | None = None) -> dict:
    """A stand-in job: n steps of ``pause`` seconds, each reported."""
    for i in range(n):
        time.sleep(pause)
        report(progress, (i + 1) / n, f"step {i + 1}")
    return {"done": n, "of": n}


def kill(kind: str) -> None:
    """SIGKILL this process's local Ray's ``kind`` process (``raylet`` or ``gcs_server``)."""
    ray = ensure_ray()
    [info] = ray._private.worker._global_node.all_processes[kind]
    os.kill(info.process.pid, signal.SIGKILL)
    info.process.wait(timeout=10)


@pytest.mark.parametrize("kind", ["raylet", "gcs_server"])
def test_the_next_job_runs_after_the_engine_lost_a_process(kind: str) -> None:
    ensure_ray(num_cpus=2)
    config = GenerationConfig(games=300, seed=2)
    before = run_job(generate, config)
    kill(kind)
    assert not engine_alive()
    after = run_job(generate, config)  # no error: a new engine ran it
    assert engine_alive()
    np.testing.assert_array_equal(before.scores, after.scores)
    assert run_job(count_to, 3, 0.01) == {"done": 3, "of": 3}, "CPU jobs run on the new engine too"


def test_a_job_waiting_when_the_engine_dies_runs_again() -> None:
    ensure_ray(num_cpus=2)
    assert run_job(count_to, 1, 0.01)["done"] == 1  # a worker up
    results: list[dict] = []
    waiter = threading.Thread(target=lambda: results.append(run_job(count_to, 30, 0.1)))
    waiter.start()
    time.sleep(1.5)  # it runs
    kill("raylet")
    waiter.join(timeout=120)
    assert not waiter.is_alive(), "no wait without end"
    assert results == [{"done": 30, "of": 30}]


# The stand-in job travels to the workers by value (they cannot import this test module).
import sys  # noqa: E402

import ray  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_a_process_outlives_its_engines_dead_gcs() -> None:
    """Ray ends a process whose GCS stays unreachable for 60 s (seen: "Failed to connect to GCS
    within 60 seconds ... The program will terminate"); a web server must outlive its engine.
    The engine's watchdog replaces it first, with nobody clicking meanwhile."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import os, signal, time\n"
        "from cartpole_core import cluster\n"
        "from cartpole_core.generate import GenerationConfig, generate\n"
        "ray = cluster.ensure_ray(num_cpus=1)\n"
        "[info] = ray._private.worker._global_node.all_processes['gcs_server']\n"
        "os.kill(info.process.pid, signal.SIGKILL)\n"
        "time.sleep(75)\n"
        "print(cluster.run_job(generate, GenerationConfig(games=100, seed=1)).scores.size)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip() == "100"
