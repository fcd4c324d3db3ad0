"""The engine for work beyond one process: Ray, local by default, any cluster with ``RAY_ADDRESS``.

This is the one place that gets Ray. :func:`run_tasks` runs a plain function over a list of
inputs as Ray tasks (one CPU each) and hands back each outcome as it finishes; sweeps
(``sweep.py``) and chunked generation (``generate.py``) use it and never touch Ray themselves,
so a page or a command never knows whether a local Ray or a cluster did the work.
:func:`run_job` runs one stage call as a Ray task with its progress reports streamed back
(through one small actor per process) and Stop sent the other way: every heavy job of the
dashboard runs through it (``jobs.py``), so the web server only draws pages.

- ``RAY_ADDRESS`` set: connect to that cluster (``ray start --head`` on one machine,
  ``ray start --address=…`` on the others, or KubeRay). The cluster's Python environment
  needs this project's dependencies; our own code is shipped with the job (``py_modules``).
- Otherwise: a local Ray starts once per process, with the machine's cores, no dashboard,
  and every Ray server bound to the loopback interface (an inner engine, not a service).

Ray is imported only when distributed work runs, so pages and commands that never need it
never load it (~0.6 s import, ~3 s start, ~700 MB for Ray's own processes and 2 workers).
Each worker process caps TensorFlow's and BLAS's threads to the one CPU a task holds, so
two workers on two cores do not fight over them. Inputs and outputs are plain dataclasses
and NumPy arrays (zero-copy from Ray's object store); networks travel as
:class:`~cartpole_core.model.Network` (a ``.keras`` file and NumPy layers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cartpole_core.progress import Progress, ProgressCallback

#: CPUs each task holds; workers cap their TensorFlow and BLAS threads to it.
TASK_CPUS = 1
#: A task whose worker died (a node removed, a process killed) is run again this often.
TASK_RETRIES = 3
#: Shared memory for task inputs and results on a local Ray (bytes).
LOCAL_OBJECT_STORE = 1 << 30

_THREAD_CAPS = {
    name: str(TASK_CPUS)
    for name in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_NUM_INTEROP_THREADS",
    )
}

_lock = threading.Lock()
_keeper: threading.Thread | None = None


@dataclass(frozen=True)
class EngineInfo:
    """Where heavy work runs, for a status line."""

    kind: str
    """``"local Ray"`` or ``"Ray cluster"``."""
    started: bool
    """False until the first distributed job starts (or joins) Ray."""
    nodes: int
    """Live nodes (1 for a local Ray; 0 when not started and unknown)."""
    cpus: int
    """CPUs Ray can give tasks (the machine's cores before a local start)."""
    warm: str = "cold"
    """The background warm-up (:func:`warm_engine`): ``cold`` (not asked), ``warming``,
    ``ready`` or ``failed``."""

    def describe(self) -> str:
        """E.g. ``"local Ray, 2 CPUs"`` or ``"Ray cluster, 3 nodes, 24 CPUs"``."""
        if self.warm == "warming":
            return f"{self.kind}, warming up (a first job may wait a few seconds)"
        if self.kind == "Ray cluster":
            if not self.started:
                return "Ray cluster at $RAY_ADDRESS (joined with the first distributed job)"
            return f"Ray cluster, {self.nodes} node{'s' * (self.nodes != 1)}, {self.cpus} CPUs"
        text = f"local Ray, {self.cpus} CPU{'s' * (self.cpus != 1)}"
        if self.started and self.warm == "ready":
            return text + ", ready"
        return text if self.started else text + " (starts with the first distributed job)"


def cluster_address() -> str | None:
    """The cluster to join (``RAY_ADDRESS``), or None for a local Ray."""
    return os.environ.get("RAY_ADDRESS") or None


def _import_ray() -> Any:
    if cluster_address() is None:
        # Ray's own switch for a one-machine Ray: every server binds the loopback address
        # instead of the machine's network address. Ray's processes read it from their
        # environment when they start; this process read it when it first imported Ray,
        # perhaps before we were asked, so its copy is set too.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray._private.ray_constants as ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] not in ("0", "false")
    import ray

    return ray


def ensure_ray(num_cpus: int | None = None) -> Any:
    """Ray, started (or joined) once per process; returns the ``ray`` module.

    ``num_cpus`` sets a local Ray's CPUs (default: the machine's cores); it is ignored when
    joining a cluster or when Ray is already running in this process.

    Ray's processes die with the thread that started them (Linux's parent-death signal), and
    a Streamlit script runs in a short-lived thread, so Ray is started from a thread of ours
    that lives as long as the process.
    """
    global _keeper
    ray = _import_ray()
    with _lock:
        if ray.is_initialized():
            return ray
        _hubs.clear()  # actors of an earlier Ray session are gone with it
        _check_reachable(cluster_address())
        started = threading.Event()
        failure: list[BaseException] = []

        def keep_ray() -> None:
            # Ray's start-up notes (no SIGTERM handler off the main thread, token
            # authentication on) are not for our users: only errors are shown.
            logging.getLogger("ray").setLevel(logging.ERROR)
            try:
                ray.init(**_init_args(num_cpus))
            except BaseException as exc:  # handed to the caller below
                failure.append(exc)
                started.set()
                return
            started.set()
            threading.Event().wait()  # hold the thread (and so Ray's processes) for the process's life

        _keeper = threading.Thread(target=keep_ray, name="cartpole-lab-ray", daemon=True)
        _keeper.start()
        started.wait()
        if failure:
            from cartpole_core.errors import UserError

            where = cluster_address()
            raise UserError(
                f"Could not start Ray ({failure[0]}): "
                + (f"check that the cluster at RAY_ADDRESS={where} is up." if where else "see Ray's message above.")
            ) from failure[0]
    return ray


#: The local Ray's processes a job cannot run without (the others only report or watch).
ESSENTIAL_PROCESSES = ("gcs_server", "raylet")


def engine_alive() -> bool:
    """False when this process's local Ray lost a process it needs (killed, as an
    out-of-memory kill would): its raylet or its GCS. True for a cluster (``RAY_ADDRESS``: not
    ours to check) and while Ray is not started."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized() or cluster_address() is not None:
        return True
    try:
        node = ray._private.worker._global_node  # the processes ray.init started for us
        processes = node.all_processes if node is not None else {}
    except AttributeError:  # another Ray version's internals: assume it is fine
        return True
    return all(
        info.process is None or info.process.poll() is None
        for kind in ESSENTIAL_PROCESSES
        for info in processes.get(kind, ())
    )


def restart_engine() -> Any:
    """Stop what is left of this process's Ray and start a new one (the hub and the warm-up
    with it); returns the ``ray`` module."""
    ray = _import_ray()
    with _lock:
        _hubs.clear()
        with contextlib.suppress(Exception):  # a Ray that lost its raylet still shuts down (~1 s)
            ray.shutdown()
        _warm["state"] = "cold"
    return ensure_ray()


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """A :class:`UserError` at once when ``RAY_ADDRESS`` names a host:port that does not
    answer (Ray itself would retry for minutes). ``auto`` and ``ray://`` addresses are left
    to Ray."""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    from cartpole_core.errors import UserError

    if not host or not port.isdigit():
        raise UserError(
            f"RAY_ADDRESS={address!r} is not host:port: write e.g. 10.0.0.5:6379, or unset it for a local Ray."
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(
            f"Cannot reach the Ray cluster at RAY_ADDRESS={address} ({exc.strerror or exc}): start it with "
            "'ray start --head' there, or unset RAY_ADDRESS to use a local Ray."
        ) from None


def _init_args(num_cpus: int | None) -> dict[str, Any]:
    import cartpole_core

    package = Path(cartpole_core.__file__).resolve().parent
    args: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False, "configure_logging": False}
    env_vars = dict(_THREAD_CAPS)
    address = cluster_address()
    if address is None:
        args.update(
            address="local",  # our own Ray, even where another one left its address in /tmp/ray
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE,
            resources={QUICK_RESOURCE: QUICK_SLOTS},
        )
        # Local workers import our package from this checkout or install.
        paths = [str(package.parent), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env_vars["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        args["runtime_env"] = {"env_vars": env_vars}
    else:
        args["address"] = address
        args["runtime_env"] = {"env_vars": env_vars, "py_modules": [str(package)]}
    return args


def engine_info() -> EngineInfo:
    """Where heavy work runs; never starts Ray (cheap enough for every page's sidebar)."""
    address = cluster_address()
    kind = "Ray cluster" if address else "local Ray"
    ray = sys.modules.get("ray")
    warm = _warm["state"]
    if ray is None or not ray.is_initialized():
        return EngineInfo(kind, False, 0 if address else 1, 0 if address else os.cpu_count() or 1, warm)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = int(sum(n.get("Resources", {}).get("CPU", 0) for n in nodes))
    return EngineInfo(kind, True, len(nodes), cpus, warm)


#: Modules a job's worker needs (TensorFlow above all: ~5 s to import on 2 cores).
WARM_IMPORTS = ("cartpole_core.jobs", "cartpole_core.generate", "cartpole_core.evaluate", "cartpole_core.training")
#: Longest the warm-up may take before it is given up (seconds); jobs run either way.
WARM_TIMEOUT = 300.0
_warm: dict[str, str] = {"state": "cold"}


def _warm_worker(modules: tuple[str, ...]) -> int:
    """In a worker: import ``modules`` and TensorFlow, so the jobs it runs later start at once."""
    import importlib

    from cartpole_core.model import import_keras

    for name in modules:
        importlib.import_module(name)
    import_keras()
    _cap_threads()
    return os.getpid()


def warm_engine() -> None:
    """Start the engine in the background, once per process, and return at once: a local Ray
    (or the connection to ``RAY_ADDRESS``) and, in as many workers as it has CPUs (at most
    2), everything a job imports, so a visitor's first click is as quick as the tenth. The
    dashboard's server calls it when it starts; jobs asked for meanwhile simply wait for Ray
    to be up. A failure shows as ``engine_info().warm == "failed"``; the first job tries
    again, saying why in one line if it fails too."""
    with _lock:
        if _warm["state"] != "cold":
            return
        _warm["state"] = "warming"

    def run() -> None:
        try:
            ray = ensure_ray()
            cpus = int(ray.cluster_resources().get("CPU", 1))
            task = ray.remote(num_cpus=TASK_CPUS, max_retries=0)(_warm_worker)
            refs = [task.remote(WARM_IMPORTS) for _ in range(max(1, min(cpus, 2)))]
            ray.get(refs, timeout=WARM_TIMEOUT)
        except Exception:  # noqa: BLE001 (a warm-up that fails costs only its time)
            _warm["state"] = "failed"  # the first job tries again and says why if it fails too
        else:
            _warm["state"] = "ready"

    threading.Thread(target=run, name="cartpole-lab-warm", daemon=True).start()


def _cap_threads() -> None:
    """In a worker: TensorFlow's and BLAS's threads to the task's CPUs (once per process;
    the environment variables above do it too, this also covers an already running worker)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(TASK_CPUS)
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        try:
            tf.config.threading.set_intra_op_parallelism_threads(TASK_CPUS)
            tf.config.threading.set_inter_op_parallelism_threads(TASK_CPUS)
        except RuntimeError:
            pass  # already running: it started with TF_NUM_*_THREADS from the runtime env


def _run_in_worker(fn: Callable[[Any], Any], item: Any) -> tuple[Any, str]:
    """What a Ray task runs: ``fn(item)`` and the id of the node that ran it."""
    import ray

    _cap_threads()
    return fn(item), ray.get_runtime_context().get_node_id()


@dataclass(frozen=True)
class TaskOutcome:
    """One finished task: its input's position, and its result or why it failed."""

    index: int
    """Position of the input in the list given to :func:`run_tasks`."""
    result: Any = None
    error: BaseException | None = None
    """The task's exception (a user's mistake, a bug, a node lost beyond the retries)."""
    node: str = ""
    """Id of the Ray node that ran it (empty when it failed)."""
    cancelled: bool = False
    """True when the task was cancelled before it finished (a Stop)."""


def run_tasks(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    should_stop: Callable[[], bool] | None = None,
    poll_seconds: float = 0.25,
) -> Generator[TaskOutcome, None, None]:
    """Run ``fn(item)`` for every item as a Ray task and yield outcomes as they finish.

    ``fn`` must be a module-level function (workers import it by name) taking and returning
    plain data. A task that raises is yielded with its error, and the others go on. When
    ``should_stop()`` turns True (checked every ``poll_seconds``), or the caller stops
    reading (a closed generator, a Streamlit Stop), tasks not yet finished are cancelled and
    yielded as cancelled (only when stopped by ``should_stop``).
    """
    ray = ensure_ray()
    task = ray.remote(num_cpus=TASK_CPUS, max_retries=TASK_RETRIES, retry_exceptions=False)(_run_in_worker)
    fn_ref = ray.put(fn)
    pending = {task.remote(fn_ref, item): i for i, item in enumerate(items)}
    try:
        while pending:
            if should_stop is not None and should_stop():
                for ref, index in list(pending.items()):
                    ray.cancel(ref, force=False)
                    del pending[ref]
                    yield TaskOutcome(index, cancelled=True)
                return
            done, _ = ray.wait(list(pending), num_returns=1, timeout=poll_seconds)
            for ref in done:
                index = pending.pop(ref)
                try:
                    result, node = ray.get(ref)
                except ray.exceptions.TaskCancelledError:
                    yield TaskOutcome(index, cancelled=True)
                except ray.exceptions.RayTaskError as exc:  # the task raised: hand over its own error
                    cause = getattr(exc, "cause", None)
                    yield TaskOutcome(index, error=cause if isinstance(cause, BaseException) else exc)
                except ray.exceptions.RayError as exc:  # a worker or node lost beyond the retries
                    yield TaskOutcome(index, error=exc)
                else:
                    yield TaskOutcome(index, result=result, node=node)
    finally:
        for ref in pending:  # the caller stopped reading: nothing left running for nobody
            ray.cancel(ref, force=False)


# ---------------------------------------------------------------- one job with live progress

#: A job's task sends its progress reports at most this often (seconds).
JOB_PUSH_SECONDS = 0.2
#: A worker process runs at most this many jobs, then Ray starts a fresh one (memory stays flat).
JOB_MAX_CALLS = 20
#: After an interrupted wait, how long :func:`run_job` waits for the stopped task's partial result.
PARTIAL_WAIT_SECONDS = 15.0
#: The hub forgets a job nobody waits for after this long, even if its task never said it ended.
ABANDONED_KEPT_SECONDS = 3600.0
#: The quick lane: a local Ray's resource that short jobs (a CartPole generation, random play)
#: hold instead of a CPU, so they never wait behind trainings and sweeps; at most
#: :data:`QUICK_SLOTS` run at once, beside the CPU jobs (each takes well under a second).
QUICK_RESOURCE = "cartpole_lab_quick"
QUICK_SLOTS = 2


class _Hub:
    """Every job of one waiting process: which are queued or running, their progress reports
    on the way from the task, and Stop the other way. One Ray actor per waiting process,
    holding no CPU (an actor is a process of its own: starting one per job would cost about
    a second)."""

    def __init__(self) -> None:
        self.queued: list[str] = []
        """Jobs submitted and not started yet, oldest first (Ray's queue, as this process sees it)."""
        self.running: set[str] = set()
        self.placed: dict[str, int] = {}
        """Jobs started per node (the node id's first 8 characters)."""
        self.reports: dict[str, list[Progress]] = {}
        self.stops: set[str] = set()
        self.abandoned: dict[str, float] = {}
        """Jobs nobody waits for any more -> when they were left."""
        self.quick: set[str] = set()
        """Jobs of the quick lane (they queue only behind each other)."""

    def submit(self, job: str, quick: bool = False) -> None:
        """A job is about to be sent to Ray (called, and waited for, before its task exists)."""
        self.queued.append(job)
        if quick:
            self.quick.add(job)
        # A job left while queued and then cancelled by Ray never calls start or ended:
        # forget those left long ago.
        now = time.monotonic()
        for old in [j for j, left in self.abandoned.items() if now - left > ABANDONED_KEPT_SECONDS]:
            self.forget(old)

    def start(self, job: str, node: str) -> bool:
        """The job's task began on ``node``; True when it should not run at all (cancelled
        while queued)."""
        if job in self.queued:
            self.queued.remove(job)
        if job in self.abandoned:
            self.forget(job)
            return True
        self.running.add(job)
        self.placed[node[:8]] = self.placed.get(node[:8], 0) + 1
        return False

    def push(self, job: str, reports: list[Progress]) -> bool:
        """Add a job's reports; True once Stop was asked for it."""
        if job not in self.abandoned:
            self.reports.setdefault(job, []).extend(reports)
        return job in self.stops

    def take(self, job: str) -> tuple[list[Progress], int]:
        """The job's reports not taken yet (oldest first) and, while it is queued, how many
        jobs are ahead of it (-1 once it runs)."""
        lane = [j for j in self.queued if (j in self.quick) == (job in self.quick)]
        ahead = lane.index(job) if job in lane else -1
        return self.reports.pop(job, []), ahead

    def ask_stop(self, job: str, abandoned: bool = False) -> None:
        """Stop the job; ``abandoned``: nobody waits for it any more (its task forgets it)."""
        self.stops.add(job)
        if abandoned:
            self.abandoned[job] = time.monotonic()
            self.reports.pop(job, None)
            if job in self.queued:
                self.queued.remove(job)

    def forget(self, job: str) -> None:
        self.quick.discard(job)
        self.reports.pop(job, None)
        self.stops.discard(job)
        self.abandoned.pop(job, None)
        self.running.discard(job)
        if job in self.queued:  # its task failed before it started
            self.queued.remove(job)

    def ended(self, job: str) -> None:
        """The job's task ended: forget it if nobody waits for it."""
        self.running.discard(job)
        if job in self.abandoned:
            self.forget(job)

    def counts(self) -> tuple[int, int, dict[str, int]]:
        """Jobs running, jobs queued, and jobs started so far per node."""
        return len(self.running), len(self.queued), dict(self.placed)


_hubs: dict[str, Any] = {}
"""The hub of this process's Ray session (a handle must be kept, or Ray ends the actor);
emptied when Ray starts again."""


def _hub() -> Any:
    """This process's hub actor, started with its first job (again if Ray was restarted)."""
    ray = ensure_ray()
    with _lock:
        if "hub" not in _hubs:
            _hubs["hub"] = ray.remote(num_cpus=0)(_Hub).remote()
        return _hubs["hub"]


def _run_job_in_worker(fn: Callable[..., Any], args: tuple, hub: Any, job: str) -> tuple[Any, str]:
    """What a job's Ray task runs: ``fn(*args, progress=...)``, its reports sent to ``hub``
    every :data:`JOB_PUSH_SECONDS` and Stop read back at the same time."""

    import ray

    if ray.get(hub.start.remote(job, ray.get_runtime_context().get_node_id())):
        return None, ""  # cancelled while it waited in the queue: nobody wants it
    _cap_threads()
    buffer: list[Progress] = []
    sent_at, stop = 0.0, False

    def forward(p: Progress) -> bool:
        nonlocal sent_at, stop
        buffer.append(p)
        if time.monotonic() - sent_at >= JOB_PUSH_SECONDS or p.payload is not None:
            stop = bool(ray.get(hub.push.remote(job, buffer[:])))
            buffer.clear()
            sent_at = time.monotonic()
        return stop

    try:
        return fn(*args, progress=forward), ray.get_runtime_context().get_node_id()
    finally:
        if buffer:
            ray.get(hub.push.remote(job, buffer))
        hub.ended.remote(job)
        threading.Thread(target=_tidy, name="cartpole-lab-tidy", daemon=True).start()


def _tidy() -> None:
    """In a worker, after a job: free what it left in reference cycles and hand the freed
    heap back to the system (glibc keeps it otherwise, and a worker's memory would creep up
    ~2 MB a job). Runs in a thread once the task has returned, so nobody waits for it (~0.2 s)."""
    import ctypes
    import gc

    time.sleep(0.05)  # let the task's result be sent first
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass(frozen=True)
class JobCounts:
    """How busy the engine is, for a status line."""

    running: int
    """This process's jobs running now."""
    queued: int
    """This process's jobs waiting for a CPU."""
    cpus: int
    """CPUs Ray can give tasks, over every node."""
    cpus_busy: int
    """CPUs held by tasks now (anyone's: other app replicas, sweeps)."""
    placed: dict[str, int]
    """This process's jobs started so far, per node (the node id's first 8 characters)."""


def job_counts() -> JobCounts | None:
    """This process's jobs and the cluster's CPUs, or None before the first job (never starts Ray)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    with _lock:
        hub = next(iter(_hubs.values()), None)
    try:
        running, queued, placed = ray.get(hub.counts.remote(), timeout=5) if hub is not None else (0, 0, {})
        cpus = int(ray.cluster_resources().get("CPU", 0))
        free = float(ray.available_resources().get("CPU", 0.0))
    except Exception:  # a lost hub (its node gone) or a busy cluster: no figures this time
        return None
    return JobCounts(running, queued, cpus, max(0, round(cpus - free)), placed)


def run_job(
    fn: Callable[..., Any],
    *args: Any,
    progress: ProgressCallback | None = None,
    waiting: Callable[[int], None] | None = None,
    partial: Callable[[Any], None] | None = None,
    poll_seconds: float = 0.1,
    quick: bool = False,
) -> Any:
    """Run ``fn(*args, progress=...)`` as one Ray task and return its result, as if it had run here.

    ``quick`` puts a short job in the quick lane (:data:`QUICK_RESOURCE`): it holds no CPU,
    so it never queues behind long jobs.

    ``fn`` is a module-level function of plain data (settings, NumPy arrays, a
    :class:`~cartpole_core.model.Network`) taking a ``progress`` callback, like every stage of
    ``cartpole_core``. The task waits in Ray's queue for a CPU; meanwhile ``waiting(ahead)``
    is called every poll with the number of this process's jobs queued ahead of it (and once
    with -1 when it starts). Its
    reports reach ``progress`` here, in order, every :data:`JOB_PUSH_SECONDS` or so (a
    report with a ``payload`` at once); when ``progress`` returns True, the task is asked to
    stop (its callback returns True from then on) and the result it returns, partial, is
    handed back. Its own errors are raised here unchanged (a :class:`UserError` stays one).

    If waiting is interrupted (a Streamlit Stop or Cancel, a closed tab), the task is asked
    to stop; with ``partial`` given, its result (what it learned so far) is awaited for up to
    :data:`PARTIAL_WAIT_SECONDS` and handed to ``partial`` before the interruption goes on.
    A task still queued is cancelled. Worker processes are replaced after
    :data:`JOB_MAX_CALLS` jobs, so memory a job leaves behind in one does not pile up.

    The engine heals: a local Ray that lost its raylet or GCS (an out-of-memory kill) is
    replaced before the job is sent, and a job whose engine dies while it waits is sent once
    more to a new one (jobs are functions of their arguments: the second run gives the same).
    """
    ray = ensure_ray()
    if not engine_alive():  # killed since the last job (an out-of-memory kill): start afresh
        ray = restart_engine()
    try:
        return _run_job_once(ray, fn, args, progress, waiting, partial, poll_seconds, quick)
    except _EngineLost:  # it died under this job: once more, on a new engine
        return _run_job_once(restart_engine(), fn, args, progress, waiting, partial, poll_seconds, quick)
    except Exception as exc:  # the task itself lost to the engine's death (a worker crashed with it)
        if type(exc).__module__.split(".")[0] != "ray" or engine_alive():
            raise
        return _run_job_once(restart_engine(), fn, args, progress, waiting, partial, poll_seconds, quick)


class _EngineLost(Exception):
    """The local Ray lost its raylet or GCS while a job waited (see :func:`engine_alive`)."""


#: Longest a call to the hub may take before the engine is checked (seconds): a hub on a
#: dead engine may never answer.
HUB_TIMEOUT_SECONDS = 20.0


def _run_job_once(
    ray: Any,
    fn: Callable[..., Any],
    args: tuple,
    progress: ProgressCallback | None,
    waiting: Callable[[int], None] | None,
    partial: Callable[[Any], None] | None,
    poll_seconds: float,
    quick: bool,
) -> Any:
    """One attempt of :func:`run_job`; raises :class:`_EngineLost` if the engine dies meanwhile."""
    import uuid

    hub, job = _hub(), uuid.uuid4().hex
    # The quick lane where the engine has one (a local Ray; a cluster started without the
    # resource runs every job on a CPU).
    quick = quick and ray.cluster_resources().get(QUICK_RESOURCE, 0) >= 1
    lane: dict[str, Any] = {"num_cpus": 0, "resources": {QUICK_RESOURCE: 1}} if quick else {"num_cpus": TASK_CPUS}
    task = ray.remote(max_retries=TASK_RETRIES, retry_exceptions=False, max_calls=JOB_MAX_CALLS, **lane)(
        _run_job_in_worker
    )
    try:  # waited for: the task's own start (another caller) must come after it
        ray.get(hub.submit.remote(job, quick))
    except ray.exceptions.RayActorError:  # the hub was lost (its node removed): a new one
        with _lock:
            _hubs.clear()
        hub = _hub()
        ray.get(hub.submit.remote(job, quick))
    ref = task.remote(fn, args, hub, job)
    stop_asked = finished = returned = was_queued = lost = False
    try:
        while not finished:
            finished = bool(ray.wait([ref], timeout=poll_seconds)[0])
            if not finished and not engine_alive():  # two process polls: cheap enough every time
                lost = True
                raise _EngineLost()
            try:
                reports, ahead = ray.get(hub.take.remote(job), timeout=HUB_TIMEOUT_SECONDS)
            except ray.exceptions.RayError:  # a timeout, a lost or unavailable hub
                if engine_alive():
                    raise
                lost = True  # it died during the call
                raise _EngineLost() from None
            if waiting is not None and not finished and (ahead >= 0 or was_queued):
                waiting(ahead)  # -1 once: it left the queue
                was_queued = ahead >= 0
            for p in reports:
                if progress is not None and progress(p) and not stop_asked:
                    stop_asked = True
                    hub.ask_stop.remote(job)
        result = _job_result(ray, ref)
        returned = True
        return result
    finally:
        if lost:
            pass  # nothing to tidy on a dead engine: restart_engine starts a new one
        elif finished:
            hub.forget.remote(job)
            if not returned and partial is not None:  # interrupted while reading its last reports
                with contextlib.suppress(Exception):
                    partial(_job_result(ray, ref))
        elif partial is not None and _stop_and_wait(ray, hub, job, ref):
            hub.forget.remote(job)
            with contextlib.suppress(Exception):  # the job failed while stopping: nothing to keep
                partial(_job_result(ray, ref))
        else:  # nobody waits any more: the task stops at its next report (the hub keeps telling it so)
            hub.ask_stop.remote(job, abandoned=True)
            ray.cancel(ref, force=False)


def _job_result(ray: Any, ref: Any) -> Any:
    """A finished job's result, or its own error raised."""
    try:
        result, _node = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # the job raised: hand over its own error
        cause = getattr(exc, "cause", None)
        raise (cause if isinstance(cause, BaseException) else exc) from None
    return result


def _stop_and_wait(ray: Any, hub: Any, job: str, ref: Any) -> bool:
    """Ask a running job to stop and wait for it to return; False if it was still queued
    (it never runs: cancelled) or did not return in :data:`PARTIAL_WAIT_SECONDS`."""
    _, ahead = ray.get(hub.take.remote(job))
    if ahead >= 0:
        return False
    hub.ask_stop.remote(job)
    return bool(ray.wait([ref], timeout=PARTIAL_WAIT_SECONDS)[0])
