"""The one job path (``runner.py``), without Ray: the book's state machine on a fake clock,
and the waiting side on the in-process backend (reports in order, Stop and the partial
result, errors unchanged, the queue and Cancel, silence, healing)."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from cartpole_core.errors import UserError
from cartpole_core.progress import Progress, ProgressCallback, report
from cartpole_core.runner import MOVES, EngineLost, InProcess, JobBook, JobState, JobStateError, Waiting, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def p(step: int) -> Progress:
    return Progress(0.0, f"step {step}", {"step": step})


# ---------------------------------------------------------------- the book, alone


def test_a_job_goes_queued_running_ended_and_its_reports_come_in_order() -> None:
    book = JobBook(Clock())
    book.submit("a")
    assert book.take("a").state is JobState.QUEUED and book.take("a").ahead == 0
    assert book.start("a", "node-1234567890") is False
    assert not book.push("a", [p(1), p(2)])
    assert not book.push("a", [p(3)])
    seen = book.take("a")
    assert (seen.state, seen.ahead) == (JobState.RUNNING, -1)
    assert [r.metrics["step"] for r in seen.reports] == [1, 2, 3]
    assert book.take("a").reports == [], "each report is taken once"
    book.end("a")
    assert book.take("a").state is JobState.ENDED
    assert book.counts() == (0, 0, {"node-123": 1})
    book.forget("a")
    assert book.take("a").state is None


def test_each_lane_queues_only_behind_its_own_jobs() -> None:
    book = JobBook(Clock())
    for job, quick in (("cpu1", False), ("quick1", True), ("cpu2", False), ("quick2", True)):
        book.submit(job, quick)
    assert [book.take(j).ahead for j in ("cpu1", "cpu2", "quick1", "quick2")] == [0, 1, 0, 1]
    book.start("cpu1", "n")
    assert book.take("cpu2").ahead == 0, "next in line once the first started"
    assert book.counts()[:2] == (1, 3)


def test_stop_cancels_a_queued_job_and_stops_a_running_one() -> None:
    book = JobBook(Clock())
    book.submit("queued")
    book.submit("running")
    book.start("running", "n")
    book.stop("queued")
    book.stop("running")
    assert book.take("queued").state is JobState.CANCELLED
    assert book.start("queued", "n") is True, "a cancelled job never runs"
    assert book.take("running").state is JobState.STOPPING
    assert book.push("running", [p(1)]) is True, "the running job learns it should stop"
    book.end("running")
    book.stop("running")  # Stop after the end: nothing to do
    assert book.take("running").state is JobState.ENDED


def test_an_abandoned_job_is_forgotten_when_its_task_ends_and_sends_nothing() -> None:
    book = JobBook(Clock())
    book.submit("a")
    book.start("a", "n")
    book.abandon("a")
    assert book.push("a", [p(1)]) is True
    assert book.take("a").reports == [], "nobody reads an abandoned job's reports"
    book.end("a")
    assert book.take("a").state is None and book.counts()[:2] == (0, 0)


def test_a_job_abandoned_while_queued_is_forgotten_when_its_task_starts_or_after_an_hour() -> None:
    clock = Clock()
    book = JobBook(clock)
    book.submit("a")
    book.abandon("a")
    assert book.start("a", "n") is True and book.take("a").state is None
    book.submit("b")
    book.abandon("b")  # its task was cancelled by the engine: it never starts
    clock.now += 3601
    book.submit("c")
    assert book.take("b").state is None


def test_silence_is_the_time_since_the_last_sign_of_life() -> None:
    clock = Clock()
    book = JobBook(clock)
    book.submit("a")
    book.start("a", "n")
    clock.now += 30
    assert book.take("a").silent == 30
    book.push("a", [])  # a heartbeat
    clock.now += 1
    assert book.take("a").silent == 1


def test_a_retried_task_runs_again_and_moves_outside_the_machine_are_refused() -> None:
    book = JobBook(Clock())
    book.submit("a")
    book.start("a", "n")
    assert book.start("a", "n") is False, "the engine's retry after a lost worker runs"
    book.submit("b")
    book.stop("b")
    with pytest.raises(JobStateError, match="cancelled cannot become ended"):
        book.end("b")  # a cancelled job never ran, so it cannot end
    assert all(to in MOVES for targets in MOVES.values() for to in targets)
    assert not MOVES[JobState.ENDED] and not MOVES[JobState.CANCELLED], "final states"


# ---------------------------------------------------------------- the waiting side, in process


def count_to(n: int, pause: float, progress: ProgressCallback | None = None) -> dict:
    done = 0
    for i in range(n):
        time.sleep(pause)
        done = i + 1
        if report(progress, done / n, f"step {done}", step=done):
            break
    return {"done": done, "of": n}


class _Interrupted(BaseException):
    """A Streamlit Stop, as the waiting thread sees it."""


def test_in_process_reports_arrive_in_order_and_stop_hands_back_the_partial_result() -> None:
    backend = InProcess(slots=2)
    seen: list[float] = []
    assert wait_for(backend, count_to, (40, 0.005), lambda r: seen.append(r.metrics["step"])) == {"done": 40, "of": 40}
    assert seen == list(range(1, 41))
    result = wait_for(backend, count_to, (10_000, 0.002), lambda r: r.metrics["step"] >= 5)
    assert 5 <= result["done"] < 10_000
    assert backend.counts()[:2] == (0, 0), "the book forgot both"


def test_in_process_errors_come_back_unchanged() -> None:
    def refuse(progress: ProgressCallback | None = None) -> None:
        raise UserError("Nothing to learn from: generate a dataset first.")

    with pytest.raises(UserError, match="Nothing to learn from"):
        wait_for(InProcess(), refuse, ())


def test_an_interrupted_wait_hands_over_the_partial_result() -> None:
    kept: list[dict] = []

    def interrupt_at_fifth(r: Progress) -> bool:
        if r.metrics["step"] >= 5:
            raise _Interrupted
        return False

    with pytest.raises(_Interrupted):
        wait_for(InProcess(), count_to, (10_000, 0.002), interrupt_at_fifth, partial=kept.append)
    assert len(kept) == 1 and 5 <= kept[0]["done"] < 10_000, kept


def test_a_queued_job_knows_its_place_and_a_cancelled_one_never_runs() -> None:
    backend = InProcess(slots=1)
    release = threading.Event()
    ran: list[str] = []

    def hold(name: str, progress: ProgressCallback | None = None) -> str:
        ran.append(name)
        began = time.monotonic()
        while not release.is_set() or time.monotonic() - began < 0.3:
            if report(progress, 0.0, "holding"):
                break
            time.sleep(0.01)
        return name

    places: dict[str, list[int]] = {"second": [], "third": []}

    def visitor(name: str) -> None:
        def waiting(place: Waiting) -> None:
            places[name].append(place.ahead)
            if name == "third" and len(places[name]) >= 3:
                raise _Interrupted  # Cancel clicked while queued

        with contextlib.suppress(_Interrupted):
            wait_for(backend, hold, (name,), waiting=waiting)

    first = threading.Thread(target=wait_for, args=(backend, hold, ("first",)))
    first.start()
    while not ran:
        time.sleep(0.01)
    threads = [threading.Thread(target=visitor, args=(name,)) for name in ("second", "third")]
    threads[0].start()
    while not places["second"]:
        time.sleep(0.01)
    threads[1].start()
    threads[1].join(timeout=10)
    assert set(places["third"]) == {1}, places
    release.set()
    for t in (first, threads[0]):
        t.join(timeout=10)
    assert ran == ["first", "second"], "the cancelled job never ran"
    assert places["second"][0] == 0 and places["second"][-1] == -1 and places["second"].count(-1) == 1


def test_a_silent_job_is_reported_and_no_wait_lasts_for_ever(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job whose heartbeat stops (here: the book hears nothing from it) is given up after
    the silence limit, with one line saying so."""
    from cartpole_core import runner

    monkeypatch.setattr(runner, "HEARTBEAT_SECONDS", 3600.0)  # no heartbeat: a frozen worker
    release = threading.Event()

    def mute(progress: ProgressCallback | None = None) -> None:
        release.wait(30)

    began = time.monotonic()
    with pytest.raises(UserError, match="no sign of life for 1 s"):
        wait_for(InProcess(), mute, (), silence_seconds=1.0)
    release.set()
    assert time.monotonic() - began < 10


def test_a_job_whose_engine_dies_is_sent_once_more_and_twice_is_one_clear_line() -> None:
    class Flaky(InProcess):
        """An engine that dies under the first ``deaths`` jobs, then heals."""

        def __init__(self, deaths: int) -> None:
            super().__init__()
            self.deaths, self.heals = deaths, 0

        def book(self, method: str, *args):
            if method == "take" and self.deaths:
                self.deaths -= 1
                raise EngineLost()
            return super().book(method, *args)

        def heal(self) -> None:
            self.heals += 1

    once = Flaky(deaths=1)
    assert wait_for(once, count_to, (3, 0.001)) == {"done": 3, "of": 3}
    with pytest.raises(UserError, match="stopped twice"):
        wait_for(Flaky(deaths=2), count_to, (3, 0.001))


# ---------------------------------------------------------------- the memory guard


def short_of_memory(tmp_path, used_mb: int, limit_mb: int = 1000):
    """A container (fake cgroup v2 files) with ``used_mb`` of ``limit_mb`` in use; returns its
    capacity and a function that sets the memory in use."""
    from cartpole_core.container import MB, Sources, detect

    (tmp_path / "cg").mkdir()
    (tmp_path / "cgroup").write_text("0::/\n")
    (tmp_path / "mountinfo").write_text(f"30 25 0:40 / {tmp_path / 'cg'} rw - cgroup2 cgroup2 rw\n")
    (tmp_path / "cg" / "memory.max").write_text(f"{limit_mb * MB}\n")
    (tmp_path / "cg" / "memory.stat").write_text("inactive_file 0\n")

    def use(mb: int) -> None:
        (tmp_path / "cg" / "memory.current").write_text(f"{mb * MB}\n")

    use(used_mb)
    sources = Sources(tmp_path / "cgroup", tmp_path / "mountinfo", tmp_path / "meminfo", tmp_path, affinity=1)
    return detect(sources, {}), use


def test_a_heavy_job_waits_for_memory_with_its_reason_and_starts_once_memory_falls(tmp_path) -> None:
    from cartpole_core.container import memory_hold

    cap, use = short_of_memory(tmp_path, used_mb=950)
    backend = InProcess(slots=1, guard=lambda: memory_hold(cap))
    places: list[Waiting] = []
    steps: list[int] = []
    results: list[dict] = []

    def visitor() -> None:
        results.append(wait_for(backend, count_to, (3, 0.01), lambda r: steps.append(r.metrics["step"]), places.append))

    thread = threading.Thread(target=visitor)
    thread.start()
    deadline = time.monotonic() + 10
    while len(places) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert places and set(places) == {Waiting(0, "waiting for memory: 950 of 1000 MB in use")}, places
    assert not steps and backend.counts()[:2] == (0, 1), "held in the queue, never sent"
    assert wait_for(backend, count_to, (2, 0.001), quick=True) == {"done": 2, "of": 2}, "quick jobs are not held"
    use(800)  # below 85 % of the limit
    thread.join(timeout=10)
    assert results == [{"done": 3, "of": 3}] and steps == [1, 2, 3]
    held = [bool(p.reason) for p in places]
    assert held == sorted(held, reverse=True), "the memory reason only before it is sent"
    assert backend.counts()[:2] == (0, 0)


def test_a_job_cancelled_while_held_for_memory_never_runs(tmp_path) -> None:
    from cartpole_core.container import memory_hold

    cap, use = short_of_memory(tmp_path, used_mb=990)
    backend = InProcess(slots=1, guard=lambda: memory_hold(cap))
    steps: list[int] = []

    def cancel_at_third(place: Waiting) -> None:
        if place.reason and len(steps) == 0 and time.monotonic() - began > 0.2:
            raise _Interrupted

    began = time.monotonic()
    with pytest.raises(_Interrupted):
        wait_for(backend, count_to, (3, 0.01), lambda r: steps.append(r.metrics["step"]), cancel_at_third)
    use(100)
    time.sleep(0.2)
    assert not steps and backend.counts()[:2] == (0, 0), "never ran, and forgotten"


def test_a_job_held_for_memory_too_long_is_given_up_in_one_line(tmp_path, monkeypatch) -> None:
    from cartpole_core import runner
    from cartpole_core.container import memory_hold

    monkeypatch.setattr(runner, "HELD_SECONDS", 1.0)
    cap, _ = short_of_memory(tmp_path, used_mb=990)
    backend = InProcess(slots=1, guard=lambda: memory_hold(cap))
    with pytest.raises(UserError) as caught:
        wait_for(backend, count_to, (3, 0.01))
    line = str(caught.value)
    assert line.startswith("The server stayed short of memory for 1 s (waiting for memory: 990 of 1000 MB in use)")
    assert backend.counts()[:2] == (0, 0), "never ran, and forgotten"
