"""One job: a stage call run away from the caller, with its states, ordered progress, Stop and
partial result, whatever runs it.

A *job* is ``fn(*args, progress=...)``: a module-level function of plain data, like every stage
of ``cartpole_core`` and the dashboard's jobs (``jobs.py``). Three parts, so the path every
job takes is written once:

- :class:`JobBook`, the state machine of every job of one waiting process (below), with no
  engine in it: it is tested alone, run as a Ray actor by the Ray backend
  (``cluster.py``) and as a plain object by :class:`InProcess`.
- :func:`work`, what runs the job where it runs: it tells the book it started, forwards the
  stage's reports in batches, beats a heartbeat, and reads Stop back.
- :func:`wait_for`, what the caller runs: it holds a heavy job back while the engine is short
  of memory, sends the job to a :class:`Backend`, hands each report to ``progress`` in order,
  says where (and why) it waits in the queue, passes Stop on, hands
  over a stopped job's partial result, gives up on a job with no sign of life, and sends a job
  whose engine died once more to a new one (healing, in this one place).

A job's states::

    QUEUED --start--> RUNNING --stop--> STOPPING      (RUNNING --start--> RUNNING: the
                                                       engine's retry after a lost worker)
      |                  |                  |
      stop/abandon       end                end
      v                  v                  v
    CANCELLED          ENDED  <-------------+

``CANCELLED`` jobs never run (their task, when it starts, learns so and returns at once);
``ENDED`` means the function returned or raised (its result travels by the backend, not the
book). A job nobody waits for any more (*abandoned*: a closed tab) is forgotten by the book
as soon as its task ends.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from cartpole_core.errors import UserError
from cartpole_core.progress import Progress, ProgressCallback

_log = logging.getLogger(__name__)

#: A job sends its progress reports at most this often (seconds; a report with a payload at once).
PUSH_SECONDS = 0.2
#: A running job says it is alive at least this often, reports or not (seconds).
HEARTBEAT_SECONDS = 2.0
#: A running job silent this long (no report, no heartbeat: a frozen or lost worker) is stopped
#: and reported (seconds).
SILENCE_SECONDS = 60.0
#: After an interrupted wait, how long a running job's partial result is waited for (seconds).
PARTIAL_WAIT_SECONDS = 15.0
#: The book forgets a job nobody waits for after this long, even if its task never ended.
ABANDONED_KEPT_SECONDS = 3600.0
#: Longest a heavy job is held back for memory before it is given up, in one line (seconds).
HELD_SECONDS = 600.0


class JobState(Enum):
    """Where one job is (see the module's diagram)."""

    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    ENDED = "ended"
    CANCELLED = "cancelled"


#: Every legal move of the state machine.
MOVES: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.STOPPING, JobState.ENDED}),
    JobState.STOPPING: frozenset({JobState.ENDED}),
    JobState.ENDED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class JobStateError(RuntimeError):
    """A move the state machine does not have (a bug in a backend, never a user's doing)."""


@dataclass
class _Entry:
    state: JobState
    quick: bool
    seen: float
    """When the job last showed a sign of life (submitted, started, a report, a heartbeat)."""
    reports: list[Progress] = field(default_factory=list)
    abandoned: float | None = None
    """When nobody waited for it any more (None while someone does)."""


@dataclass(frozen=True)
class Waiting:
    """Where a queued job stands, for the waiting side's notice."""

    ahead: int
    """Jobs of its lane ahead of it; -1 once it left the queue (it started)."""
    reason: str = ""
    """Empty while it waits for a CPU; else why the engine holds it back before sending it, in
    one line (``"waiting for memory: 2.4 of 2.7 GB in use"``)."""


@dataclass(frozen=True)
class Snapshot:
    """What the waiting side learns at each poll."""

    reports: list[Progress]
    """The job's reports not taken yet, oldest first."""
    state: JobState | None
    """None once the book forgot the job."""
    ahead: int
    """While queued, how many jobs of its lane are ahead of it; -1 otherwise."""
    silent: float
    """Seconds since its last sign of life."""


class JobBook:
    """The state of every job of one waiting process: queued or running, reports on the way
    from the task, Stop the other way, signs of life. Plain data and one method per event;
    ``clock`` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._jobs: dict[str, _Entry] = {}
        self._queue: list[str] = []
        """Queued jobs, oldest first (the engine's queue, as this process sees it)."""
        self._placed: dict[str, int] = {}
        """Jobs started so far per node (the node id's first 8 characters)."""

    def _move(self, job: str, to: JobState) -> _Entry:
        entry = self._jobs[job]
        if to not in MOVES[entry.state]:
            raise JobStateError(f"job {job[:8]}: {entry.state.value} cannot become {to.value}")
        entry.state = to
        if job in self._queue and to is not JobState.QUEUED:
            self._queue.remove(job)
        return entry

    def submit(self, job: str, quick: bool = False) -> None:
        """A job is about to be sent (called, and waited for, before its task exists)."""
        now = self._clock()
        self._jobs[job] = _Entry(JobState.QUEUED, quick, now)
        self._queue.append(job)
        for old in [j for j, e in self._jobs.items() if e.abandoned and now - e.abandoned > ABANDONED_KEPT_SECONDS]:
            self.forget(old)  # left long ago by a task that never ended (cancelled while queued)

    def start(self, job: str, node: str) -> bool:
        """The job's task began on ``node``; True when it must not run (cancelled or
        forgotten). A running job that starts again is the engine's retry after its worker
        was lost: it runs."""
        entry = self._jobs.get(job)
        if entry is not None and entry.state is JobState.RUNNING:
            entry.seen = self._clock()
            return False
        if entry is None or entry.state is not JobState.QUEUED:
            if entry is not None and entry.abandoned is not None:
                self.forget(job)
            return True
        self._move(job, JobState.RUNNING).seen = self._clock()
        self._placed[node[:8]] = self._placed.get(node[:8], 0) + 1
        return False

    def push(self, job: str, reports: list[Progress]) -> bool:
        """Reports from the running job (none: a heartbeat); True once it should stop."""
        entry = self._jobs.get(job)
        if entry is None:
            return True  # forgotten: nobody reads it
        entry.seen = self._clock()
        if entry.abandoned is None:
            entry.reports.extend(reports)
        return entry.state is not JobState.RUNNING

    def take(self, job: str) -> Snapshot:
        """The job's new reports and where it stands."""
        entry = self._jobs.get(job)
        if entry is None:
            return Snapshot([], None, -1, 0.0)
        reports, entry.reports = entry.reports, []
        ahead = -1
        if entry.state is JobState.QUEUED:
            lane = [j for j in self._queue if self._jobs[j].quick == entry.quick]
            ahead = lane.index(job)
        return Snapshot(reports, entry.state, ahead, self._clock() - entry.seen)

    def stop(self, job: str) -> None:
        """Ask the job to stop: a queued one never runs, a running one returns what it has at
        its next report. Nothing to do once it ended."""
        entry = self._jobs.get(job)
        if entry is None:
            return
        if entry.state is JobState.QUEUED:
            self._move(job, JobState.CANCELLED)
        elif entry.state is JobState.RUNNING:
            self._move(job, JobState.STOPPING)

    def abandon(self, job: str) -> None:
        """Nobody waits for the job any more: stop it and forget it once its task ends."""
        entry = self._jobs.get(job)
        if entry is None:
            return
        self.stop(job)
        entry.abandoned = self._clock()
        entry.reports.clear()
        if entry.state is JobState.ENDED:
            self.forget(job)

    def end(self, job: str) -> None:
        """The job's function returned or raised."""
        entry = self._jobs.get(job)
        if entry is None:
            return
        self._move(job, JobState.ENDED)
        if entry.abandoned is not None:
            self.forget(job)

    def forget(self, job: str) -> None:
        """Drop everything about the job (its waiter has its result, or gave up)."""
        self._jobs.pop(job, None)
        if job in self._queue:
            self._queue.remove(job)

    def counts(self) -> tuple[int, int, dict[str, int]]:
        """Jobs running, jobs queued, and jobs started so far per node."""
        running = sum(e.state in (JobState.RUNNING, JobState.STOPPING) for e in self._jobs.values())
        return running, len(self._queue), dict(self._placed)


# ------------------------------------------------------------------ where the job runs

Book = Callable[..., Any]
"""``book(method, *args)``: call a :class:`JobBook` method and wait for its answer."""


def work(fn: Callable[..., Any], args: tuple, book: Book, job: str, node: str) -> tuple[bool, Any]:
    """Run one job where it runs: ``(False, None)`` if it must not run (cancelled while
    queued), else ``(True, fn(*args, progress=...))`` with its reports sent to the book every
    :data:`PUSH_SECONDS` and a heartbeat every :data:`HEARTBEAT_SECONDS`; the callback
    returns True once Stop was asked. Its errors are raised unchanged."""
    if book("start", job, node):
        return False, None
    buffer: list[Progress] = []
    lock = threading.Lock()
    sent_at, stop = 0.0, False  # the first report goes at once
    running = threading.Event()
    running.set()

    def send(force: bool) -> None:
        nonlocal sent_at, stop
        with lock:
            if not force and time.monotonic() - sent_at < PUSH_SECONDS:
                return
            batch = buffer[:]
            buffer.clear()
            sent_at = time.monotonic()
            stop = bool(book("push", job, batch)) or stop

    def forward(p: Progress) -> bool:
        with lock:
            buffer.append(p)
        send(force=p.payload is not None)
        return stop

    def beat() -> None:
        while running.is_set():
            time.sleep(HEARTBEAT_SECONDS / 4)
            if running.is_set() and time.monotonic() - sent_at >= HEARTBEAT_SECONDS:
                with contextlib.suppress(Exception):  # the waiting side judges silence
                    send(force=True)

    threading.Thread(target=beat, name="cartpole-lab-heartbeat", daemon=True).start()
    try:
        return True, fn(*args, progress=forward)
    finally:
        running.clear()
        if buffer:
            send(force=True)  # under the lock: after any heartbeat's batch, never twice
        book("end", job)


# ------------------------------------------------------------------ backends


class EngineLost(Exception):
    """The engine a job was sent to died under it (its processes killed, the cluster gone)."""


class Backend(Protocol):
    """Somewhere jobs run: Ray (``cluster.RayBackend``) or this process (:class:`InProcess`)."""

    def book(self, method: str, *args: Any) -> Any:
        """Call a :class:`JobBook` method and wait for the answer; :class:`EngineLost` if the
        engine is gone."""

    def tell(self, method: str, *args: Any) -> None:
        """Call a :class:`JobBook` method without waiting (best effort)."""

    def submit(self, fn: Callable[..., Any], args: tuple, job: str, quick: bool) -> Any:
        """Start the job's task (it calls :func:`work`); returns a handle."""

    def wait(self, handle: Any, seconds: float) -> bool:
        """True once the task finished (waits at most ``seconds``)."""

    def result(self, handle: Any) -> tuple[bool, Any]:
        """A finished task's :func:`work` answer; the job's own error raised unchanged."""

    def cancel(self, handle: Any, force: bool) -> None:
        """Cancel the task (``force``: kill what runs it, for a job with no sign of life)."""

    def alive(self, fresh: bool = False) -> bool:
        """False when the engine lost what jobs need (then :meth:`heal` replaces it); ``fresh``:
        ask the engine now, not a recent answer (before a job is sent)."""

    def heal(self) -> None:
        """Replace a dead engine (raises :class:`UserError` when that is not possible now)."""

    def held(self) -> str | None:
        """None when a new heavy job may be sent now; else why it must wait, in one line (the
        engine is short of memory: sending it could get a worker killed)."""


class InProcess:
    """Jobs in threads of this process, at most ``slots`` at once, in order: the quick lane
    (jobs of well under a second gain nothing from another process, and so never wait behind
    the engine's long ones), and an engine for tests with no Ray. Its book is a plain
    :class:`JobBook` behind a lock. ``guard``: what :meth:`held` asks (none: never held)."""

    def __init__(self, slots: int = 2, guard: Callable[[], str | None] | None = None) -> None:
        self._guard = guard
        self._book = JobBook()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="cartpole-lab-job")

    def book(self, method: str, *args: Any) -> Any:
        with self._lock:
            return getattr(self._book, method)(*args)

    def tell(self, method: str, *args: Any) -> None:
        self.book(method, *args)

    def submit(self, fn: Callable[..., Any], args: tuple, job: str, quick: bool) -> Future:
        return self._pool.submit(work, fn, args, self.book, job, "this process")

    def wait(self, handle: Future, seconds: float) -> bool:
        return bool(futures_wait([handle], timeout=seconds).done)

    def result(self, handle: Future) -> tuple[bool, Any]:
        return handle.result()

    def cancel(self, handle: Future, force: bool) -> None:
        handle.cancel()  # a thread cannot be killed: a running job stops at its next report

    def alive(self, fresh: bool = False) -> bool:
        return True

    def heal(self) -> None:
        pass

    def held(self) -> str | None:
        return self._guard() if self._guard is not None else None

    def counts(self) -> tuple[int, int, dict[str, int]]:
        """Jobs running, jobs queued, and jobs started so far (see :meth:`JobBook.counts`)."""
        return self.book("counts")


# ------------------------------------------------------------------ the waiting side


def wait_for(
    backend: Backend,
    fn: Callable[..., Any],
    args: tuple,
    progress: ProgressCallback | None = None,
    waiting: Callable[[Waiting], None] | None = None,
    partial: Callable[[Any], None] | None = None,
    quick: bool = False,
    poll_seconds: float = 0.1,
    silence_seconds: float = SILENCE_SECONDS,
) -> Any:
    """Run ``fn(*args, progress=...)`` on ``backend`` and return its result, as if it had run here.

    - Its reports reach ``progress`` here, in order; when ``progress`` returns True the job is
      asked to stop, and the result it then returns (partial) is handed back.
    - A heavy (not ``quick``) job is sent only once the backend no longer holds it back
      (:meth:`Backend.held`: the engine short of memory); meanwhile it stands in the queue, for
      at most :data:`HELD_SECONDS` (then a :class:`UserError` says why).
    - While it is queued, ``waiting(Waiting(ahead, reason))`` is called every poll with the
      number of jobs of its lane ahead of it (and, while it is held back, why), and once with
      ``ahead == -1`` when it starts.
    - Its own errors are raised here unchanged (a :class:`UserError` stays one).
    - If waiting is interrupted (a Streamlit Stop or Cancel, a closed tab), the job is asked to
      stop; with ``partial`` given, a running job's result (what it learned so far) is awaited
      for up to :data:`PARTIAL_WAIT_SECONDS` and handed to ``partial`` before the
      interruption goes on. A queued job is cancelled: it never runs.
    - A running job silent for ``silence_seconds`` (no report, no heartbeat) is cancelled and
      reported as a :class:`UserError`: no wait without end.
    - Healing: a dead engine is replaced before the job is sent, and a job whose engine dies
      while it waits is sent once more to a new one (a job is a function of its arguments: the
      second run gives the same).
    """
    attempt = 0
    while True:
        if not backend.alive(fresh=True):
            backend.heal()
        try:
            return _attempt(backend, fn, args, progress, waiting, partial, quick, poll_seconds, silence_seconds)
        except EngineLost as lost:
            _log.warning("A job's engine was lost (%s); %s.", lost, "sending it again" if not attempt else "giving up")
            attempt += 1
            if attempt > 1:
                raise UserError(
                    "The engine that runs the jobs stopped twice during this one: nothing you had is lost; "
                    "try again in a minute."
                ) from None


def _attempt(
    backend: Backend,
    fn: Callable[..., Any],
    args: tuple,
    progress: ProgressCallback | None,
    waiting: Callable[[Waiting], None] | None,
    partial: Callable[[Any], None] | None,
    quick: bool,
    poll_seconds: float,
    silence_seconds: float,
) -> Any:
    """One try of :func:`wait_for`; :class:`EngineLost` if the engine dies meanwhile."""
    job = uuid.uuid4().hex
    backend.book("submit", job, quick)  # before the task exists: its start must come after
    handle: Any = None
    stop_asked = finished = returned = was_queued = lost = False
    try:
        held_since = time.monotonic()
        while not quick and (reason := backend.held()) is not None:  # in the queue, not yet sent
            if time.monotonic() - held_since > HELD_SECONDS:
                spell = f"{HELD_SECONDS / 60:.0f} minutes" if HELD_SECONDS >= 120 else f"{HELD_SECONDS:.0f} s"
                raise UserError(
                    f"The server stayed short of memory for {spell} ({reason}), so the job did not start: "
                    "nothing you had is lost; try again later."
                )
            try:
                ahead = backend.book("take", job).ahead
            except EngineLost:
                lost = True
                raise
            if waiting is not None:
                waiting(Waiting(max(ahead, 0), reason))
                was_queued = True
            time.sleep(poll_seconds)
        handle = backend.submit(fn, args, job, quick)
        while not finished:
            try:
                finished = backend.wait(handle, poll_seconds)
                if not finished and not backend.alive():
                    raise EngineLost("the engine died while the job waited")
                seen = backend.book("take", job)
            except EngineLost:
                lost = True  # nothing to tidy on a dead engine
                raise
            if waiting is not None and not finished and (seen.ahead >= 0 or was_queued):
                waiting(Waiting(seen.ahead))  # -1 once: it left the queue
                was_queued = seen.ahead >= 0
            for p in seen.reports:
                if progress is not None and progress(p) and not stop_asked:
                    stop_asked = True
                    backend.tell("stop", job)
            if not finished and seen.state in (JobState.RUNNING, JobState.STOPPING) and seen.silent > silence_seconds:
                backend.cancel(handle, force=True)
                backend.tell("abandon", job)
                finished = returned = True  # nothing to hand over: the finally below has nothing to do
                raise UserError(
                    f"The job gave no sign of life for {silence_seconds:.0f} s (its worker froze or ran out of "
                    "memory) and was stopped: nothing you had is lost; try again."
                )
        ran, result = backend.result(handle)
        returned = True
        if not ran:
            raise EngineLost("the job book had forgotten the job")  # a new engine's empty book: send it again
        return result
    finally:
        if handle is None:  # never sent (interrupted while held back, or the engine lost)
            if not lost:
                backend.tell("forget", job)
        elif lost or returned:
            if returned and not lost:
                backend.tell("forget", job)
        elif finished:
            backend.tell("forget", job)
            if partial is not None:  # interrupted while reading its last reports
                with contextlib.suppress(Exception):
                    partial(backend.result(handle)[1])
        elif partial is not None and _stop_and_wait(backend, job, handle):
            backend.tell("forget", job)
            with contextlib.suppress(Exception):  # it failed while stopping: nothing to keep
                partial(backend.result(handle)[1])
        else:  # nobody waits any more: it stops at its next report (the book keeps telling it so)
            with contextlib.suppress(Exception):
                backend.tell("abandon", job)
                backend.cancel(handle, force=False)


def _stop_and_wait(backend: Backend, job: str, handle: Any) -> bool:
    """Ask a running job to stop and wait for it to return; False if it was still queued
    (it never runs: cancelled) or did not return in :data:`PARTIAL_WAIT_SECONDS`."""
    try:
        if backend.book("take", job).state is JobState.QUEUED:
            return False
        backend.tell("stop", job)
        return backend.wait(handle, PARTIAL_WAIT_SECONDS)
    except Exception:  # noqa: BLE001 (the engine went: nothing to wait for)
        return False
