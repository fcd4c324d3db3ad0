"""The engine on a cluster: two Ray nodes on one machine (``ray.cluster_utils.Cluster``, how
Ray tests itself), joined through ``RAY_ADDRESS`` exactly as a real cluster would be."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sweep import TINY

from cartpole_core.cluster import _import_ray, engine_info, ensure_ray
from cartpole_core.sweep import SweepConfig, Trial, sweep

REPO = Path(__file__).resolve().parents[1]


def table(result) -> list[tuple]:
    """What a sweep measured, trial by trial (not where or how fast)."""
    return [
        (t.index, t.seed, t.status, t.scores and (t.scores.accepted, t.scores.accuracy, t.scores.mean))
        for t in result.trials
    ]


@pytest.fixture
def two_nodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:
    """A head with no CPUs for tasks and two worker nodes of one CPU each, all on loopback."""
    ray = _import_ray()  # before RAY_ADDRESS is set: the test cluster binds loopback only
    if ray.is_initialized():
        ray.shutdown()
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
    cluster.wait_for_nodes()
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    try:
        ensure_ray()
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_sweep_spreads_over_both_nodes_and_gives_the_one_node_table(two_nodes):
    cluster, workers = two_nodes
    config = SweepConfig(TINY, (("score_requirement", (20.0, 30.0)),), (0, 1))
    info = engine_info()
    assert info.kind == "Ray cluster" and info.nodes == 3 and info.cpus == 2
    both = sweep(config)
    assert all(t.status == "done" for t in both.trials), [t.error for t in both.trials]
    worker_ids = {w.node_id[:8] for w in workers}
    assert set(both.nodes_used) == worker_ids, "trials should run on both worker nodes, never the head"
    assert both.nodes == 3 and both.workers == 2

    cluster.remove_node(workers[1])
    cluster.wait_for_nodes()
    one = sweep(config)
    assert set(one.nodes_used) == {workers[0].node_id[:8]}
    assert table(one) == table(both)


def test_a_node_removed_mid_sweep_loses_no_trial(two_nodes):
    cluster, workers = two_nodes
    config = SweepConfig(TINY, (("score_requirement", (20.0, 25.0, 30.0)),), (0, 1))
    removed: list[str] = []

    def remove_second_node(trial: Trial) -> None:
        if not removed:
            cluster.remove_node(workers[1])
            removed.append(workers[1].node_id[:8])

    result = sweep(config, on_trial=remove_second_node)
    assert removed
    assert [t.index for t in result.trials] == list(range(6)), "every trial is reported"
    assert all(t.status in ("done", "failed") for t in result.trials)
    # Ray runs the tasks of a lost node again elsewhere (max_retries): all of them finish.
    assert all(t.status == "done" for t in result.trials), [t.error for t in result.trials]
    late = [t for t in result.trials if t.node == removed[0]]
    assert len(late) <= 2, "after the removal, trials run on the remaining node"


def test_commands_that_need_no_engine_never_import_ray(tmp_path):
    code = (
        "import sys; from cartpole_core.cli import main; "
        f"main(['generate', '--games', '200', '--quiet', '--out', {str(tmp_path / 'd.npz')!r}]); "
        "sys.exit(3 if 'ray' in sys.modules else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


_LISTENERS = """
def listeners():
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # LISTEN
                found.add(local)
    return found
"""


@pytest.mark.parametrize("ray_imported_first", [False, True])
def test_the_local_ray_listens_on_loopback_only(ray_imported_first):
    """An inner engine, not a service: no Ray server is reachable from another machine, even
    when something imported Ray before the engine was asked for (as pytest's collection does)."""
    code = (
        _LISTENERS
        + ("import ray\n" if ray_imported_first else "")
        + (
            "from cartpole_core.cluster import ensure_ray, run_tasks\n"
            "from cartpole_core.generate import ChunkJob, play_chunk\n"
            "before = listeners()\n"
            "ensure_ray(num_cpus=1)\n"
            "[out] = run_tasks(play_chunk, [ChunkJob('CartPole-v1', 5, 20, 0, ())])\n"
            "assert out.error is None, out.error\n"
            "new = listeners() - before\n"
            # 127.0.0.1, ::1 and ::ffff:127.0.0.1, as /proc/net writes them
            "loopback = ('0100007F', '00000000000000000000000001000000', '0000000000000000FFFF00000100007F')\n"
            "print(len(new), sorted(a for a in new if a.split(':')[0] not in loopback))\n"
        )
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    opened, exposed = done.stdout.split(" ", 1)
    assert int(opened) >= 3, "Ray's servers (GCS, raylet, object manager, worker) should be listening"
    assert exposed.strip() == "[]", f"Ray servers listening beyond loopback: {exposed}"


def test_an_unreachable_cluster_is_one_line_and_exit_2_at_once(monkeypatch, capsys):
    from cartpole_core.cli import main

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    started = time.monotonic()
    status = main(["sweep", "--vary", "epochs=1", "--seeds", "0", "--games", "50", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert f"Cannot reach the Ray cluster at RAY_ADDRESS=127.0.0.1:{port}" in err and "ray start --head" in err
    assert time.monotonic() - started < 30


def test_the_dashboards_jobs_run_on_the_worker_nodes(two_nodes):
    """With RAY_ADDRESS set, the dashboard's jobs (training, the ensemble) go to the cluster: the
    head has no CPU for tasks, so every job is placed on a worker node. (A CartPole generation
    is a quick job: it runs in the server.)"""
    from streamlit.testing.v1 import AppTest

    from cartpole_core.cluster import job_counts

    cluster, workers = two_nodes
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("pages/generate.py")
    at.run()
    at.number_input(key="gen_games").set_value(2000)
    next(b for b in at.button if "Play and keep" in b.label).click()
    at.run()
    at.switch_page("pages/train.py")
    at.run()
    at.text_input(key="train_hidden").set_value("16")
    at.number_input(key="train_epochs").set_value(1)
    next(b for b in at.button if b.label == "Train").click()
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["lab"].model is not None
    at.switch_page("pages/ensemble.py")
    at.run()
    at.number_input(key="ens_members").set_value(2)
    at.number_input(key="ens_games").set_value(3)
    next(b for b in at.button if "Train the members" in b.label).click()
    at.run()
    assert not at.exception, at.exception
    counts = job_counts()
    assert counts is not None and counts.cpus == 2
    # training, the ensemble's training and its evaluation: three jobs
    assert sum(counts.placed.values()) == 3, counts.placed
    assert set(counts.placed) <= {w.node_id[:8] for w in workers}, "a job ran on the head node"


def test_a_cluster_that_goes_away_is_one_line_and_the_next_job_runs_once_it_is_back():
    """Issue 21: the cluster at RAY_ADDRESS stops (its head killed, every process of it) while a
    visitor works: the next Train click says so in one line and keeps the network the visitor
    had; once a cluster answers at that address again, the next click trains there
    (``cluster_goes_away.py``, in a fresh interpreter: a server joins a cluster for its whole
    life, and this test process already ran local engines)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "cluster_goes_away.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), (done.stdout[-1500:], done.stderr[-3000:])
