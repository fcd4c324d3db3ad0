"""The engine on a cluster: two Ray nodes on one machine (``ray.cluster_utils.Cluster``, how
Ray tests itself), joined through ``RAY_ADDRESS`` exactly as a real cluster would be."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
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


# ---------------------------------------------------------------- sized to its container


def test_a_local_ray_is_sized_to_the_container_and_a_cluster_keeps_its_own(tmp_path, monkeypatch):
    from test_runner import short_of_memory

    from cartpole_core import cluster
    from cartpole_core.container import MB

    cap, _ = short_of_memory(tmp_path, used_mb=100, limit_mb=2765)  # one CPU, Streamlit Cloud's 2.7 GB
    monkeypatch.setattr(cluster, "capacity", lambda: cap)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    args = cluster._init_args(None)
    assert (args["num_cpus"], args["object_store_memory"] // MB) == (1, 276), "not the host's cores, not 1 GB"
    assert cluster._init_args(3)["num_cpus"] == 3, "a caller's own figure is kept"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    args = cluster._init_args(None)
    assert "num_cpus" not in args and "object_store_memory" not in args, "a cluster keeps its own sizes"


def test_a_server_as_a_container_runs_it_starts_its_engine_on_a_64_mb_dev_shm():
    """A private mount namespace with Docker's 64 MB /dev/shm and one CPU by affinity: the
    engine says 1 CPU, its object store (larger than /dev/shm, which cannot hold Ray's smallest)
    goes to /tmp, and a local Ray starts and runs a job there."""
    code = (
        "from cartpole_core.container import capacity\n"
        "from cartpole_core.cluster import engine_info, ensure_ray, run_job, run_tasks\n"
        "from cartpole_core.generate import ChunkJob, GenerationConfig, generate, play_chunk\n"
        "cap = capacity()\n"
        "ensure_ray()\n"
        "[out] = run_tasks(play_chunk, [ChunkJob('CartPole-v1', 5, 20, 0, ())])\n"
        "assert out.error is None, out.error\n"
        "assert run_job(generate, GenerationConfig(games=50, seed=1)).dataset.n_games >= 0\n"
        "print(cap.describe(), cap.object_store_in_shm, engine_info().cpus)\n"
    )
    script = 'mount -t tmpfs -o size=64m tmpfs /dev/shm && exec taskset -c 0 "$0" -c "$1"'
    try:
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("unshare is not available here: no private mount namespace to try a container's /dev/shm")
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here (unshare -m: {probe.stderr.decode().strip()[:200]})")
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, sys.executable, code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("1 CPU, ") and done.stdout.split()[-2:] == ["False", "1"], done.stdout


_RACE = """
import threading
from cartpole_core import cluster

errors, calls = [], 0
started = threading.Event()

def start():
    try:
        cluster.ensure_ray(num_cpus=1)  # imports Ray (~0.6 s), then starts it
    finally:
        started.set()

threading.Thread(target=start).start()
while not started.is_set():
    for call in (cluster.engine_info, cluster.job_counts, cluster.engine_alive):
        try:
            call()
            calls += 1
        except Exception as exc:
            errors.append(f"{call.__name__}: {type(exc).__name__}: {exc}")
assert cluster.engine_info().started
print(calls, len(errors), sorted(set(errors))[:3])
"""


def test_a_servers_first_seconds_no_status_line_sees_ray_half_imported():
    """Issue 29: while the warm-up imports Ray, ``sys.modules["ray"]`` is a module half made;
    a sidebar asking then got ``AttributeError: partially initialized module 'ray' has no
    attribute 'is_initialized'``. The status calls, made again and again while another thread
    imports and starts Ray, never raise (the code before the fix raised in ~40 % of them)."""
    done = subprocess.run([sys.executable, "-c", _RACE], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    calls, errors, first = done.stdout.split(" ", 2)
    assert int(calls) > 1000, "the status calls ran all along the import and start"
    assert int(errors) == 0, first


# ---------------------------------------------------------------- the memory guard


def report_pid_and_wait(seconds: float, progress=None) -> str:
    """A stand-in job: says which process runs it, then holds its worker for ``seconds``."""
    import os

    from cartpole_core.progress import report

    report(progress, 0.0, "running", pid=os.getpid())
    time.sleep(seconds)
    return "finished"


def count_to(n: int, pause: float, progress=None) -> dict:
    from cartpole_core.progress import report

    for i in range(n):
        time.sleep(pause)
        report(progress, (i + 1) / n, f"step {i + 1}", step=i + 1)
    return {"done": n, "of": n}


def test_on_the_local_ray_a_heavy_job_waits_for_memory_and_starts_once_it_falls(tmp_path, monkeypatch):
    import threading

    from test_runner import short_of_memory

    from cartpole_core import cluster
    from cartpole_core.cluster import job_counts, run_job

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ensure_ray(num_cpus=2)
    cap, use = short_of_memory(tmp_path, used_mb=2480, limit_mb=2765)
    monkeypatch.setattr(cluster, "capacity", lambda: cap)
    # With nothing of the engine's running, waiting could not free memory: a job starts at once.
    assert run_job(count_to, 2, 0.01) == {"done": 2, "of": 2}
    first, places, results = [], [], []  # a job runs: one that ends may give memory back
    running = threading.Thread(target=lambda: first.append(run_job(count_to, 150, 0.1)))
    running.start()
    deadline = time.monotonic() + 60
    while not ((c := job_counts()) and c.running == 1) and time.monotonic() < deadline:
        time.sleep(0.1)
    visitor = threading.Thread(target=lambda: results.append(run_job(count_to, 3, 0.01, waiting=places.append)))
    visitor.start()
    deadline = time.monotonic() + 30
    while len(places) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert places and {p.reason for p in places} == {"waiting for memory: 2.4 of 2.7 GB in use"}, places
    counts = job_counts()
    assert counts is not None and (counts.running, counts.queued) == (1, 1), counts
    use(1500)
    visitor.join(timeout=60)
    assert results == [{"done": 3, "of": 3}]
    running.join(timeout=60)
    assert first == [{"done": 150, "of": 150}]


def test_a_worker_killed_mid_job_is_one_plain_line_and_the_next_job_runs(monkeypatch):
    """As the kernel's out-of-memory killer does: SIGKILL the worker running a job. The visitor
    reads one plain line (no retry behind their back, no traceback), and the next job runs."""
    import os
    import signal

    from cartpole_core.cluster import engine_alive, run_job
    from cartpole_core.errors import UserError

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ensure_ray(num_cpus=2)
    killed: list[int] = []

    def kill_its_worker(p) -> bool:
        pid = p.metrics.get("pid")
        if pid and not killed:
            adj = int(Path(f"/proc/{pid}/oom_score_adj").read_text())
            assert adj > int(Path("/proc/self/oom_score_adj").read_text()), "the kernel should pick a worker first"
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        return False

    began = time.monotonic()
    with pytest.raises(UserError) as caught:
        run_job(report_pid_and_wait, 120.0, progress=kill_its_worker)
    line = str(caught.value)
    assert killed and time.monotonic() - began < 60
    assert "\n" not in line and line.startswith(
        "The worker running this job was stopped, most likely for lack of memory ("
    ), line
    assert line.endswith(
        "nothing you had is lost; try again in a minute, or with less (fewer games, a smaller network)."
    )
    assert engine_alive()
    assert run_job(count_to, 3, 0.01) == {"done": 3, "of": 3}, "the server and its engine serve on"


# Workers import functions by module name; this module is not importable there, so it travels by value.
import ray.cloudpickle  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_under_a_real_memory_limit_a_job_waits_for_memory_and_a_worker_killed_for_it_is_one_line():
    """A real cgroup v1 memory limit (1.5 GB) on a child of this process's cgroup, and a server
    in it (``memory_limit.py``): the engine finds the limit, holds a new job while another
    holds the memory, and a job that outgrows the limit, killed by the kernel, is one line."""
    import os
    import signal

    from cartpole_core.container import MB, Sources, _cgroup_folders

    own = _cgroup_folders(Sources(), "memory")
    if not own or not (own[0] / "memory.limit_in_bytes").is_file():
        pytest.skip("no cgroup v1 memory hierarchy here to set a real limit in")
    child = own[0] / f"cartpole-lab-test-{os.getpid()}"
    try:
        child.mkdir()
        (child / "memory.limit_in_bytes").write_text(str(1536 * MB))
    except OSError as exc:
        with contextlib.suppress(OSError):
            child.rmdir()
        pytest.skip(f"cannot make a memory cgroup with a limit here ({exc.strerror}): needs root and cgroup v1")
    release = Path(tempfile.mkdtemp()) / "release"
    try:
        done = subprocess.run(
            [sys.executable, str(REPO / "tests" / "memory_limit.py"), str(child), str(release)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert done.returncode == 0 and done.stdout.strip().endswith("ok"), (done.stdout[-2000:], done.stderr[-3000:])
        assert "found: 1 CPU" in done.stdout or "found: 2 CPUs, 1.5 GB" in done.stdout, done.stdout
    finally:
        deadline = time.monotonic() + 30  # what the server left (Ray's processes) ends with it
        while (left := (child / "cgroup.procs").read_text().split()) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in left:  # every process in this cgroup was started by this test
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        while (child / "cgroup.procs").read_text().split() and time.monotonic() < deadline + 10:
            time.sleep(0.2)
        child.rmdir()
