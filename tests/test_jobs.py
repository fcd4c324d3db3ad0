"""One job on Ray with live progress (``cluster.run_job``): reports arrive in order, Stop
reaches the task and its partial result comes back, its errors come back unchanged."""

from __future__ import annotations

import contextlib
import sys
import time

import pytest

from cartpole_core.cluster import run_job
from cartpole_core.errors import UserError
from cartpole_core.progress import ProgressCallback, report


@pytest.fixture(scope="module")
def local_ray():
    from cartpole_core.cluster import ensure_ray

    ensure_ray(num_cpus=2)


def count_to(n: int, pause: float, progress: ProgressCallback | None = None) -> dict:
    """A stand-in stage: n steps, each reported; stops early when asked, keeping what was done."""
    done = 0
    for i in range(n):
        time.sleep(pause)
        done = i + 1
        if report(progress, done / n, f"step {done} of {n}", step=done):
            break
    return {"done": done, "of": n}


def count_into(path: str, progress: ProgressCallback | None = None) -> None:
    """Counts into a file until asked to stop (or cancelled)."""
    for i in range(100_000):
        time.sleep(0.01)
        with open(path, "w") as f:
            f.write(str(i))
        if report(progress, 0.0, "counting", step=i):
            return


def refuse(progress: ProgressCallback | None = None) -> None:
    report(progress, 0.0, "checking")
    raise UserError("Nothing to learn from: generate a dataset first.")


def test_reports_arrive_in_order_and_the_result_comes_back(local_ray):
    seen = []
    result = run_job(count_to, 30, 0.01, progress=lambda p: seen.append(p.metrics["step"]) and False)
    assert result == {"done": 30, "of": 30}
    assert seen == list(range(1, 31)), "every report, in order, none lost at the end"


def test_stop_reaches_the_task_and_its_partial_result_comes_back(local_ray):
    seen = []

    def stop_at_fifth(p) -> bool:
        seen.append(p.metrics["step"])
        return p.metrics["step"] >= 5

    started = time.monotonic()
    result = run_job(count_to, 1000, 0.02, progress=stop_at_fifth)
    assert 5 <= result["done"] < 1000, result
    assert time.monotonic() - started < 15, "stopped long before its 20 s"
    assert seen == list(range(1, result["done"] + 1))


def test_the_jobs_own_error_comes_back_unchanged(local_ray):
    with pytest.raises(UserError, match="generate a dataset first"):
        run_job(refuse, progress=lambda p: False)


class _Interrupted(BaseException):
    """Like Streamlit's StopException on a Stop click or a closed tab: not an Exception."""


def test_an_interrupted_wait_stops_the_job(local_ray, tmp_path):
    path = tmp_path / "count.txt"

    def interrupt_at_tenth(p) -> bool:
        if p.metrics["step"] >= 10:
            raise _Interrupted
        return False

    with pytest.raises(_Interrupted):
        run_job(count_into, str(path), progress=interrupt_at_tenth)
    time.sleep(1.0)
    before = path.read_text()
    time.sleep(1.0)
    assert path.read_text() == before, "the task still runs after the page stopped waiting"


def test_an_interrupted_wait_hands_over_the_partial_result(local_ray):
    kept = []

    def interrupt_at_fifth(p) -> bool:
        if p.metrics["step"] >= 5:
            raise _Interrupted
        return False

    with pytest.raises(_Interrupted):
        run_job(count_to, 1000, 0.02, progress=interrupt_at_fifth, partial=kept.append)
    assert len(kept) == 1 and 5 <= kept[0]["done"] < 1000, kept


def test_a_queued_job_knows_its_place_and_leaves_the_queue_when_cancelled(local_ray, tmp_path):
    """Two CPUs: two long jobs run, a third waits with 0 ahead, a fourth with 1 ahead; the
    fourth's visitor cancels, so it never runs, and the third then starts."""
    import threading

    from cartpole_core.cluster import job_counts

    paths = [tmp_path / f"count{i}.txt" for i in range(4)]
    places: dict[int, list[int]] = {2: [], 3: []}
    stop_all = threading.Event()

    def visitor(i: int) -> None:
        def waiting(place) -> None:
            places.setdefault(i, []).append(place.ahead)
            if i == 3 and len(places[3]) >= 5:
                raise _Interrupted  # Cancel clicked while queued

        def progress(p) -> bool:
            return stop_all.is_set()

        with contextlib.suppress(_Interrupted):
            run_job(count_into, str(paths[i]), progress=progress, waiting=waiting)

    def wait_for(condition) -> None:
        deadline = time.monotonic() + 30
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(4)]
    threads[0].start()
    threads[1].start()
    wait_for(lambda: paths[0].exists() and paths[1].exists())  # both CPUs busy
    threads[2].start()
    wait_for(lambda: bool(places[2]))
    threads[3].start()
    wait_for(lambda: len(places[3]) >= 5)
    counts = job_counts()
    assert counts is not None and counts.running == 2 and counts.cpus == 2, counts
    assert places[2] and set(places[2]) == {0}, places
    assert places[3] and set(places[3]) <= {1}, places
    stop_all.set()
    for t in threads:
        t.join(timeout=30)
    assert paths[2].exists(), "the third job ran once a CPU was free"
    assert places[2][-1] == -1 and places[2].count(-1) == 1, "told once that it left the queue"
    assert not paths[3].exists(), "the cancelled job never ran"
    time.sleep(0.5)
    after = job_counts()
    assert after is not None and (after.running, after.queued) == (0, 0), after


def test_jobs_give_what_the_stage_gives_in_process(local_ray, small_dataset, tiny_config):
    """Training as a Ray job returns the network the same training makes here."""
    import numpy as np

    from cartpole_core.jobs import train_job
    from cartpole_core.training import TrainingConfig

    config = TrainingConfig(epochs=1, seed=3)
    here = train_job(small_dataset, tiny_config, config, 3)
    there = run_job(train_job, small_dataset, tiny_config, config, 3, progress=lambda p: False)
    assert there.network.gradient_steps == here.network.gradient_steps > 0
    for (k1, b1, a1), (k2, b2, a2) in zip(here.network.layers, there.network.layers, strict=True):
        np.testing.assert_allclose(k1, k2, atol=1e-5)
        np.testing.assert_allclose(b1, b2, atol=1e-5)
        assert a1 == a2
    assert there.training.final_accuracy == pytest.approx(here.training.final_accuracy, abs=1e-4)


# Workers import functions by module name; this module is not importable there, so it travels by value.
import ray.cloudpickle  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_a_quick_job_never_waits_behind_long_ones(local_ray, tmp_path):
    """Issue 21's quick lane: both CPUs held by long jobs, a CartPole generation (a job of well
    under a second) still runs at once, beside them, and gives what it gives in process; a
    CPU job sent at the same time waits."""
    import threading

    import numpy as np

    from cartpole_core.generate import GenerationConfig, generate
    from cartpole_core.jobs import is_quick

    config = GenerationConfig(games=2_000, seed=5)
    assert is_quick(generate, (config,))
    assert not is_quick(generate, (GenerationConfig.for_env("LunarLander-v3", games=50),))
    assert not is_quick(count_to, (3, 0.1))

    paths = [tmp_path / f"long{i}.txt" for i in range(2)]
    stop_all = threading.Event()
    cpu_places: list[int] = []

    def long_job(i: int) -> None:
        run_job(count_into, str(paths[i]), progress=lambda p: stop_all.is_set())

    def cpu_job() -> None:
        run_job(count_to, 2, 0.01, waiting=lambda place: cpu_places.append(place.ahead))

    threads = [threading.Thread(target=long_job, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while not all(p.exists() for p in paths) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(p.exists() for p in paths), "both CPUs busy"
    waiter = threading.Thread(target=cpu_job)
    waiter.start()
    began = time.monotonic()
    places: list[int] = []
    result = run_job(generate, config, waiting=lambda place: places.append(place.ahead), quick=True)
    seconds = time.monotonic() - began
    stop_all.set()
    for t in [*threads, waiter]:
        t.join(timeout=60)
    assert seconds < 20, f"the quick job took {seconds:.1f} s"  # a fresh worker's start included
    assert cpu_places and cpu_places[0] == 0, "the CPU job sent beside it had to queue for a CPU"
    assert not [p for p in places if p > 0], places
    alone = generate(config)
    np.testing.assert_array_equal(result.scores, alone.scores)
