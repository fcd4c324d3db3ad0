"""One job on Ray with live progress (``cluster.run_job``): reports arrive in order, Stop
reaches the task and its partial result comes back, its errors come back unchanged."""

from __future__ import annotations

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


# Workers import functions by module name; this module is not importable there, so it travels by value.
import ray.cloudpickle  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
