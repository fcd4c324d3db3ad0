"""The engine for work beyond one process: Ray, local by default, any cluster with ``RAY_ADDRESS``.

This is the one place that gets Ray. :func:`run_tasks` runs a plain function over a list of
inputs as Ray tasks (one CPU each) and hands back each outcome as it finishes; sweeps
(``sweep.py``) and chunked generation (``generate.py``) use it and never touch Ray themselves,
so a page or a command never knows whether a local Ray or a cluster did the work.
:func:`run_job` runs one stage call as a job (``runner.py``: its states, ordered progress,
Stop, partial result, silence and healing) on :class:`RayBackend`, or a short one in this
process: every heavy job of the dashboard runs through it (``jobs.py``), so the web server
only draws pages. The engine heals: :func:`watch_engine` replaces a local Ray that lost a
process, and lets go of a cluster that stopped answering, before Ray would end this process.

- ``RAY_ADDRESS`` set: connect to that cluster (``ray start --head`` on one machine,
  ``ray start --address=…`` on the others, or KubeRay). The cluster's Python environment
  needs this project's dependencies; our own code is shipped with the job (``py_modules``).
- Otherwise: a local Ray starts once per process, sized to its container
  (:mod:`cartpole_core.container`: as many jobs at once as the CPUs and the memory allow, an
  object store sized from the memory), with no dashboard and every Ray server bound to the
  loopback interface (an inner engine, not a service).

A local engine minds its memory: while memory in use is above the guard share of the limit, a
new heavy job waits in the queue, its reason shown (``"waiting for memory: 2.4 of 2.7 GB in
use"``), instead of starting a worker the kernel may kill; a job whose worker was killed all
the same (for memory, most likely) is one plain line for the visitor, and the server serves on.

Ray is imported only when distributed work runs, so pages and commands that never need it
never load it (~0.6 s import, ~3 s start, ~700 MB for Ray's own processes and 2 workers).
Each worker process caps TensorFlow's and BLAS's threads to the one CPU a task holds, so
two workers on two cores do not fight over them. Inputs and outputs are plain dataclasses
and NumPy arrays (zero-copy from Ray's object store); networks travel as
:class:`~cartpole_core.network.Network` (a ``.keras`` file and NumPy layers).
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cartpole_core.container import Capacity, capacity, memory_hold, memory_in_use
from cartpole_core.errors import UserError
from cartpole_core.progress import ProgressCallback
from cartpole_core.runner import SILENCE_SECONDS, Backend, EngineLost, InProcess, JobBook, Waiting, wait_for, work

#: CPUs each task holds; workers cap their TensorFlow and BLAS threads to it.
TASK_CPUS = 1
#: On a cluster, a task or job whose worker died (a node removed) is run again this often.
TASK_RETRIES = 3
#: On a local Ray, a job whose worker died is not run again behind the visitor's back: it was
#: killed for memory, most likely, and would be again; the visitor is told in one line and
#: clicks again (through the memory guard). A dead engine is another matter: the job is sent to
#: a new one. On a cluster a lost worker is most likely a node that left: the job runs again
#: elsewhere, :data:`TASK_RETRIES` times.
JOB_RETRIES = 0

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
_log = logging.getLogger(__name__)
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
    """CPUs Ray can give tasks: on a local Ray, the jobs it runs at once (before it starts, the
    ones it will start with)."""
    warm: str = "cold"
    """The background warm-up (:func:`warm_engine`): ``cold`` (not asked), ``warming``,
    ``ready`` or ``failed``; ``healing`` while a dead engine is being replaced."""
    capacity: Capacity | None = None
    """What this server's container gives (CPUs, memory), which a local Ray is sized to."""

    def describe(self) -> str:
        """E.g. ``"local Ray, 2 jobs at once, ready"`` or ``"Ray cluster, 3 nodes, 24 CPUs"``."""
        if self.warm == "warming":
            return f"{self.kind}, warming up (a first job may wait a few seconds)"
        if self.warm == "healing":
            return f"{self.kind}, starting again after a fault (a job may wait a few seconds)"
        if self.kind == "Ray cluster":
            if not self.started:
                return "Ray cluster at $RAY_ADDRESS (joined with the first distributed job)"
            return f"Ray cluster, {self.nodes} node{'s' * (self.nodes != 1)}, {self.cpus} CPUs"
        text = f"local Ray, {self.cpus} job{'s' * (self.cpus != 1)} at once"
        if self.started and self.warm == "ready":
            return text + ", ready"
        return text if self.started else text + " (starts with the first distributed job)"


def cluster_address() -> str | None:
    """The cluster to join (``RAY_ADDRESS``), or None for a local Ray."""
    return os.environ.get("RAY_ADDRESS") or None


_imported: dict[str, Any] = {}
"""``ray`` once :func:`_import_ray` has returned it: while another thread is still importing
Ray, ``sys.modules["ray"]`` is a module half made (no ``is_initialized`` yet), so nothing but
this is read to learn whether Ray is there."""


def _ray_up() -> Any:
    """The ``ray`` module when this process imported it (whole) and Ray is started; else None.
    Never imports Ray, never waits for an import under way."""
    ray = _imported.get("ray")
    return ray if ray is not None and ray.is_initialized() else None


def _import_ray() -> Any:
    # Ray's C++ crash handler takes over SIGTERM from the web server's own handler once the
    # engine was restarted (healing): the server then dies at once on a SIGTERM, with no time
    # to stop its engine, whose agents are left running. Python's handlers are enough here.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    if cluster_address() is None:
        # Ray's own switch for a one-machine Ray: every server binds the loopback address
        # instead of the machine's network address. Ray's processes read it from their
        # environment when they start; this process read it when it first imported Ray,
        # perhaps before we were asked, so its copy is set too.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray._private.ray_constants as ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] not in ("0", "false")
    import ray

    _imported["ray"] = ray  # only now: the import has finished
    return ray


def ensure_ray(num_cpus: int | None = None) -> Any:
    """Ray, started (or joined) once per process; returns the ``ray`` module.

    ``num_cpus`` sets a local Ray's CPUs, the jobs it runs at once (default: what the container
    allows, :attr:`Capacity.jobs <cartpole_core.container.Capacity.jobs>`); it is ignored when
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
            where = cluster_address()
            raise UserError(
                f"Could not start Ray ({failure[0]}): "
                + (f"check that the cluster at RAY_ADDRESS={where} is up." if where else "see Ray's message above.")
            ) from failure[0]
    watch_engine()
    return ray


#: The local Ray's processes a job cannot run without (the others only report or watch).
ESSENTIAL_PROCESSES = ("gcs_server", "raylet")


def engine_alive(fresh: bool = False) -> bool:
    """False when the engine lost what jobs need: this process's local Ray lost its raylet or
    its GCS (killed, as an out-of-memory kill would), or the cluster at ``RAY_ADDRESS`` stopped
    answering (asked again only every :data:`CLUSTER_PROBE_SECONDS`, unless ``fresh``: before
    a job is sent, as Ray's calls to a dead cluster block for good). True while Ray is not
    started (nothing to lose yet)."""
    ray = _ray_up()
    if ray is None:
        return True
    address = cluster_address()
    if address is not None:
        return _cluster_answers(address, 0.0 if fresh else CLUSTER_PROBE_SECONDS)
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


#: How long a cluster's answer (or silence) is trusted before it is asked again (seconds).
CLUSTER_PROBE_SECONDS = 2.0
_probe: dict[str, tuple[float, bool]] = {}


def _cluster_answers(address: str, max_age: float) -> bool:
    """Whether the cluster's GCS port accepts a connection (an answer younger than ``max_age``
    seconds is reused; addresses that are not host:port are taken as answering)."""
    now = time.monotonic()
    asked = _probe.get(address)
    if asked is not None and now - asked[0] < max_age:
        return asked[1]
    try:
        _check_reachable(address, timeout_s=1.0)
        answers = True
    except Exception:  # noqa: BLE001 (a UserError: it does not answer)
        answers = False
    _probe[address] = (now, answers)
    return answers


def restart_engine() -> Any:
    """Replace a dead engine and return the ``ray`` module: what is left of this process's
    local Ray is stopped and a new one started (warmed again if it was warm); a lost cluster is
    let go and joined again (a :class:`UserError` in one line while it does not answer). A
    caller that finds the engine already replaced (another thread healed it) just uses it."""
    ray = _import_ray()
    with _lock:
        if ray.is_initialized() and not engine_alive():
            _log.warning("Replacing an engine that lost a process it needs.")
            _known["healing"] = True
            _hubs.clear()
            session = _session_dir(ray) if cluster_address() is None else None
            with contextlib.suppress(Exception):  # a Ray that lost its raylet or GCS still shuts down (1-7 s)
                ray.shutdown()
            if session:
                _end_leftovers(session)
            _probe.clear()
            rewarm, _warm["state"] = _warm["state"] != "cold", "cold"
        else:
            rewarm = False
    try:
        ray = ensure_ray()
    finally:
        _known["healing"] = False
    if rewarm:
        warm_engine()
    return ray


def _session_dir(ray: Any) -> str | None:
    """The local Ray's session folder (its logs, sockets), or None where that is unknown."""
    try:
        return str(ray._private.worker._global_node.get_session_dir_path())
    except AttributeError:
        return None


def _end_leftovers(session: str) -> None:
    """Kill what a dead local Ray left running: its raylet's agents and workers outlive it
    (orphaned, they wait 60-90 s before they notice). They are found by their output, which
    goes to files in the engine's ``session`` folder; nothing else writes there. Linux only
    (``/proc``); elsewhere they end by themselves."""
    import signal

    proc = Path("/proc")
    if not proc.is_dir():
        return
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd).startswith(session) for fd in (entry / "fd").iterdir()):
                os.kill(int(entry.name), signal.SIGKILL)


#: How often the server's engine watchdog looks at the engine (seconds).
WATCH_SECONDS = 2.0
_watching: list[threading.Thread] = []


def watch_engine() -> None:
    """Start, once per process, a thread that heals the engine as soon as it dies, not only at
    the next job: Ray ends a process whose GCS stays unreachable for 60 s, and a web server
    must outlive its engine. A dead local Ray is replaced; a lost cluster is let go (the next
    job says it does not answer, or joins it again once it is back)."""
    with _lock:
        if _watching:
            return

        def watch() -> None:
            while True:
                time.sleep(WATCH_SECONDS)
                ray = _ray_up()
                if ray is None or engine_alive():
                    continue
                _log.warning(
                    "The engine stopped answering; %s.",
                    "replacing it" if cluster_address() is None else "letting it go",
                )
                with contextlib.suppress(Exception):  # a failed restart is retried next time
                    if cluster_address() is None:
                        restart_engine()
                    else:
                        with _lock:
                            _hubs.clear()
                            ray.shutdown()

        thread = threading.Thread(target=watch, name="cartpole-lab-engine-watch", daemon=True)
        _watching.append(thread)
        thread.start()


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """A :class:`UserError` at once when ``RAY_ADDRESS`` names a host:port that does not
    answer (Ray itself would retry for minutes). ``auto`` and ``ray://`` addresses are left
    to Ray."""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
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
        # Sized to the container, not the host (os.cpu_count() is the host's): as many CPUs as
        # jobs may run at once, an object store the memory (and /dev/shm) can hold; one larger
        # than /dev/shm (Docker's 64 MB) Ray keeps in a file under /tmp.
        args.update(
            address="local",  # our own Ray, even where another one left its address in /tmp/ray
            num_cpus=num_cpus or capacity().jobs,
            include_dashboard=False,
            object_store_memory=capacity().object_store_bytes,
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
    """Where heavy work runs, and what this server's container gives; never starts Ray, never
    waits for it (cheap enough for every page's sidebar, safe while Ray is still importing)."""
    address = cluster_address()
    kind = "Ray cluster" if address else "local Ray"
    ray = _ray_up()
    warm = _warm["state"]
    cap = capacity()
    if ray is None:
        return EngineInfo(kind, False, 0 if address else 1, 0 if address else cap.jobs, warm, cap)
    with _engine_steady() as steady:
        if not steady:  # being started or replaced: what was known, and whether it heals
            known = _known.get("info") or EngineInfo(kind, True, 0, 0, warm, cap)
            return replace(known, warm="healing" if _known.get("healing") else warm)
        try:
            nodes = [n for n in ray.nodes() if n.get("Alive")]
        except Exception:  # noqa: BLE001 (a Ray shut down meanwhile: what was known)
            return _known.get("info") or EngineInfo(kind, False, 0, 0, warm, cap)
    cpus = int(sum(n.get("Resources", {}).get("CPU", 0) for n in nodes))
    _known["info"] = EngineInfo(kind, True, len(nodes), cpus, warm, cap)
    return _known["info"]


_known: dict[str, Any] = {}
"""The last :class:`EngineInfo` read from Ray, and ``healing`` while a dead engine is replaced."""


@contextlib.contextmanager
def _engine_steady() -> Generator[bool, None, None]:
    """For a status line's calls to Ray: True (and the engine held still meanwhile) when the
    engine is up and nobody is starting or replacing it; False at once otherwise, so a page
    never waits on a dead engine (its calls could hang until Ray ends the process)."""
    if not _lock.acquire(blocking=False):
        yield False
        return
    try:
        yield engine_alive()
    finally:
        _lock.release()


#: Modules a job's worker needs (TensorFlow above all: ~5 s to import on 2 cores).
WARM_IMPORTS = ("cartpole_core.jobs", "cartpole_core.generate", "cartpole_core.evaluate", "cartpole_core.training")
#: Longest the warm-up may take before it is given up (seconds); jobs run either way.
WARM_TIMEOUT = 300.0
_warm: dict[str, str] = {"state": "cold"}


def _warm_worker(modules: tuple[str, ...]) -> int:
    """In a worker: import ``modules`` and TensorFlow, so the jobs it runs later start at once."""
    import importlib

    from cartpole_core.model import import_keras

    _lower_priority()  # first: the threads TensorFlow starts inherit it
    for name in modules:
        importlib.import_module(name)
    import_keras()
    _cap_threads()
    return os.getpid()


def warm_engine(after_seconds: float = 0.0) -> None:
    """Start the engine in the background, once per process, and return at once: a local Ray
    (or the connection to ``RAY_ADDRESS``) and, in as many workers as it has CPUs (at most
    2), everything a job imports, so a visitor's first click is as quick as the tenth. The
    dashboard's server calls it when it starts; jobs asked for meanwhile simply wait for Ray
    to be up. A failure shows as ``engine_info().warm == "failed"``; the first job tries
    again, saying why in one line if it fails too. ``after_seconds``: wait that long first
    (the server's first page is drawn before Ray's import and start compete with it)."""
    with _lock:
        if _warm["state"] != "cold":
            return
        _warm["state"] = "warming"

    def run() -> None:
        time.sleep(after_seconds)
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


#: Workers run at this niceness (0 normal, 19 lowest): the web server beside them on a local
#: Ray keeps drawing pages at once while they train.
WORKER_NICENESS = 10


def _lower_priority() -> None:
    """In a worker: every thread of this process to :data:`WORKER_NICENESS` (on Linux a nice
    value is per thread; threads started later inherit it). Elsewhere: nothing."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return
    for tid in tasks.iterdir():
        with contextlib.suppress(OSError, ValueError):  # a thread that just ended, a foreign name
            if os.getpriority(os.PRIO_PROCESS, int(tid.name)) < WORKER_NICENESS:
                os.setpriority(os.PRIO_PROCESS, int(tid.name), WORKER_NICENESS)


def _cap_threads() -> None:
    """In a worker: TensorFlow's and BLAS's threads to the task's CPUs (once per process;
    the environment variables above do it too, this also covers an already running worker),
    and every thread below the web server's priority."""
    from threadpoolctl import threadpool_limits

    _lower_priority()

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
    retries = JOB_RETRIES if cluster_address() is None else TASK_RETRIES  # as for jobs (above)
    task = ray.remote(num_cpus=TASK_CPUS, max_retries=retries, retry_exceptions=False)(_run_in_worker)
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
                    if isinstance(exc, ray.exceptions.OutOfMemoryError | ray.exceptions.WorkerCrashedError):
                        from cartpole_core.errors import UserError

                        exc = UserError(worker_lost_line())  # one plain line, not Ray's report
                    yield TaskOutcome(index, error=exc)
                else:
                    yield TaskOutcome(index, result=result, node=node)
    finally:
        for ref in pending:  # the caller stopped reading: nothing left running for nobody
            ray.cancel(ref, force=False)


# ---------------------------------------------------------------- one job with live progress

#: A worker process runs at most this many jobs, then Ray starts a fresh one (memory stays flat).
JOB_MAX_CALLS = 20
#: Longest a call to a job's book may take before the engine counts as lost (seconds): a book
#: on a dead engine may never answer.
HUB_TIMEOUT_SECONDS = 20.0


_tasks: dict[int, Any] = {}
"""The job's Ray remote function, by its retries (a local Ray's or a cluster's; Ray exports it
again to a new engine by itself)."""
_hubs: dict[str, Any] = {}
"""The book of this process's Ray session (a handle must be kept, or Ray ends the actor);
emptied when Ray starts again."""


def _hub() -> Any:
    """This process's :class:`~cartpole_core.runner.JobBook` as a Ray actor holding no CPU (an
    actor is a process of its own: one per job would cost about a second), started with the
    first job, again after the engine or the actor was lost."""
    ray = ensure_ray()
    with _lock:
        if "hub" not in _hubs:
            _hubs["hub"] = ray.remote(num_cpus=0)(JobBook).remote()
        return _hubs["hub"]


def _run_job_in_worker(fn: Callable[..., Any], args: tuple, hub: Any, job: str) -> tuple[bool, Any]:
    """What a job's Ray task runs: :func:`~cartpole_core.runner.work` with the hub as its book,
    in a worker whose threads are capped to its CPU."""
    import ray

    _cap_threads()

    def book(method: str, *book_args: Any) -> Any:
        return ray.get(getattr(hub, method).remote(*book_args))

    try:
        return work(fn, args, book, job, ray.get_runtime_context().get_node_id())
    finally:
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


@contextlib.contextmanager
def _replaced_under_us() -> Generator[None, None, None]:
    """Ray ends a call whose engine is shut down under it (the watchdog replacing a dead one)
    with ``SystemExit``: for a job that is an engine lost, not the end of the web server."""
    try:
        yield
    except SystemExit:
        raise EngineLost("the engine was replaced during the call") from None


class RayBackend:
    """Jobs as Ray tasks holding one CPU each, on the local Ray or the cluster at
    ``RAY_ADDRESS``; their book is one Ray actor per waiting process. Healing: a local Ray
    that lost its raylet or GCS is replaced, a lost book (its node removed) is started again,
    an unreachable cluster is one clear line (:class:`UserError`) until it is back."""

    def book(self, method: str, *args: Any) -> Any:
        ray = ensure_ray()
        try:
            with _replaced_under_us():
                return ray.get(getattr(_hub(), method).remote(*args), timeout=HUB_TIMEOUT_SECONDS)
        except ray.exceptions.RayError as exc:  # a timeout, a lost or unreachable book
            with _lock:
                _hubs.clear()  # the next call starts a new one (on a new engine if this one died)
            raise EngineLost(f"the job book did not answer {method}: {type(exc).__name__}: {str(exc)[:600]}") from None

    def tell(self, method: str, *args: Any) -> None:
        with contextlib.suppress(Exception):  # best effort: a lost book has nothing to tell
            getattr(_hub(), method).remote(*args)

    def submit(self, fn: Callable[..., Any], args: tuple, job: str, quick: bool) -> Any:
        ray = ensure_ray()
        retries = JOB_RETRIES if cluster_address() is None else TASK_RETRIES
        with _lock:
            if retries not in _tasks:  # one remote function: exported to the GCS once per engine
                _tasks[retries] = ray.remote(
                    num_cpus=TASK_CPUS, max_retries=retries, retry_exceptions=False, max_calls=JOB_MAX_CALLS
                )(_run_job_in_worker)
        return _tasks[retries].remote(fn, args, _hub(), job)

    def held(self) -> str | None:
        if cluster_address() is not None:
            return None  # a cluster's nodes are not this container: Ray places jobs by its own resources
        reason = memory_hold(capacity())
        if reason is None:
            return None
        # Only a job that ends gives memory back: with none of this engine's jobs running, the
        # memory is the sessions' or idle workers' (which the job reuses) and waiting cannot help.
        try:
            running = self.book("counts")[0]
        except EngineLost:
            return None
        return reason if running else None

    def wait(self, handle: Any, seconds: float) -> bool:
        with _replaced_under_us():
            return bool(_import_ray().wait([handle], timeout=seconds)[0])

    def result(self, handle: Any) -> tuple[bool, Any]:
        ray = _import_ray()
        try:
            with _replaced_under_us():
                return ray.get(handle)
        except ray.exceptions.RayTaskError as exc:  # the job raised: hand over its own error
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, BaseException) else exc) from None
        except ray.exceptions.RayError as exc:  # its worker lost, perhaps with the engine
            if not engine_alive():
                raise EngineLost(f"the job's task was lost with the engine ({type(exc).__name__})") from None
            if isinstance(exc, ray.exceptions.OutOfMemoryError | ray.exceptions.WorkerCrashedError):
                _log.warning("A job's worker was killed (%s).", type(exc).__name__)
                raise UserError(worker_lost_line()) from None
            raise

    def cancel(self, handle: Any, force: bool) -> None:
        with contextlib.suppress(Exception):
            _import_ray().cancel(handle, force=force)

    def alive(self, fresh: bool = False) -> bool:
        return engine_alive(fresh)

    def heal(self) -> None:
        restart_engine()


def worker_lost_line() -> str:
    """What a visitor reads when the worker running their job was killed (by the kernel or by
    Ray for lack of memory, most likely; on a cluster, perhaps with its node): one line, with
    the memory in use on a local engine."""
    why = " or its machine left the cluster" if cluster_address() else f" ({memory_in_use().describe()})"
    return (
        f"The worker running this job was stopped, most likely for lack of memory{why}: nothing you had "
        "is lost; try again in a minute, or with less (fewer games, a smaller network)."
    )


_ray_backend = RayBackend()
#: The quick lane: short jobs in threads of this process, as many at once as the container's
#: CPUs allow (at most 2).
QUICK_SLOTS = capacity().quick_slots
_quick_backend = InProcess(QUICK_SLOTS)


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
    """This process's jobs and the cluster's CPUs, or None before the first job (never starts Ray,
    never waits for its import)."""
    ray = _ray_up()
    if ray is None:
        return None
    with _engine_steady() as steady:
        if not steady:
            return None
        hub = next(iter(_hubs.values()), None)
        try:
            running, queued, placed = ray.get(hub.counts.remote(), timeout=5) if hub is not None else (0, 0, {})
            cpus = int(ray.cluster_resources().get("CPU", 0))
            free = float(ray.available_resources().get("CPU", 0.0))
        except Exception:  # a lost hub (its node gone) or a busy cluster: no figures this time
            return None
    quick_running, quick_queued, _ = _quick_backend.counts()
    return JobCounts(running + quick_running, queued + quick_queued, cpus, max(0, round(cpus - free)), placed)


def run_job(
    fn: Callable[..., Any],
    *args: Any,
    progress: ProgressCallback | None = None,
    waiting: Callable[[Waiting], None] | None = None,
    partial: Callable[[Any], None] | None = None,
    poll_seconds: float = 0.1,
    quick: bool = False,
    silence_seconds: float = SILENCE_SECONDS,
) -> Any:
    """Run ``fn(*args, progress=...)`` as one job and return its result, as if it had run here
    (:func:`cartpole_core.runner.wait_for` says what happens to its reports, Stop, a partial
    result, silence and a dead engine).

    ``fn`` is a module-level function of plain data (settings, NumPy arrays, a
    :class:`~cartpole_core.network.Network`) taking a ``progress`` callback, like every stage of
    ``cartpole_core``. It runs as a Ray task holding one CPU, in Ray's queue; worker processes
    are replaced after :data:`JOB_MAX_CALLS` jobs, so memory a job leaves behind does not pile
    up; while memory is short, a new one waits before it is sent (``waiting`` hears why).
    ``quick``: a job of well under a second (a CartPole generation, random play) runs in
    this process instead, at most :data:`QUICK_SLOTS` at once, so it never waits behind the
    engine's long jobs and needs no engine at all.
    """
    backend: Backend = _quick_backend if quick else _ray_backend
    return wait_for(backend, fn, args, progress, waiting, partial, quick, poll_seconds, silence_seconds)
