"""A server under a real memory limit (run by ``test_cluster.py`` in a fresh interpreter, inside
a cgroup v1 memory cgroup the test made and limited): the engine finds the limit; a job holding
most of the memory makes the next heavy job wait with its reason, which starts once the memory
is given back; a job that outgrows the limit has its worker killed by the kernel, which is one
plain line, and the next job runs. Prints ``ok`` when every check held.

Arguments: the cgroup folder to join, and a file whose creation releases the first job.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CGROUP, RELEASE = Path(sys.argv[1]), Path(sys.argv[2])
(CGROUP / "cgroup.procs").write_text(str(os.getpid()))  # first: Ray's processes inherit the cgroup
os.environ["CARTPOLE_LAB_JOBS"] = "2"  # so only the memory guard can hold the second job back

from cartpole_core.cluster import ensure_ray, job_counts, run_job  # noqa: E402
from cartpole_core.container import capacity, memory_in_use  # noqa: E402
from cartpole_core.errors import UserError  # noqa: E402
from cartpole_core.progress import report  # noqa: E402

BLOCK_MB = 16


def fill(until_share: float, release: str, progress=None) -> int:
    """In a worker: take memory (touched, 16 MB at a time) until ``until_share`` of the limit is
    in use, then hold it until the file ``release`` exists (no file named: return at once)."""
    import numpy as np

    blocks = []
    while memory_in_use(capacity()).share < until_share:
        blocks.append(np.ones(BLOCK_MB << 20, dtype=np.uint8))
        report(progress, 0.0, "filling", held=len(blocks) * BLOCK_MB)
    report(progress, 0.0, "holding", held=len(blocks) * BLOCK_MB)
    while release and not Path(release).exists():
        time.sleep(0.05)
    return len(blocks) * BLOCK_MB


def count_to(n: int, progress=None) -> int:
    for i in range(n):
        report(progress, (i + 1) / n, f"step {i + 1}")
    return n


def main() -> None:
    cap = capacity()
    assert cap.memory_from == "cgroup v1 limit" and cap.memory_cgroup == CGROUP, cap
    print("found:", cap.describe(), "guard", cap.memory_guard, flush=True)
    ensure_ray()

    holding = threading.Event()
    first: list[int] = []

    def hold(p) -> bool:
        if p.message == "holding":
            holding.set()
        return False

    filler = threading.Thread(target=lambda: first.append(run_job(fill, 0.9, str(RELEASE), progress=hold)))
    filler.start()
    assert holding.wait(120), "the first job never held its memory"
    print("first job holds:", memory_in_use().describe(), flush=True)

    places, second = [], []
    waiter = threading.Thread(target=lambda: second.append(run_job(count_to, 3, waiting=places.append)))
    waiter.start()
    deadline = time.monotonic() + 30
    while not any(p.reason for p in places) and time.monotonic() < deadline:
        time.sleep(0.05)
    reasons = {p.reason for p in places if p.reason}
    assert reasons and all(r.startswith("waiting for memory: ") for r in reasons), places
    counts = job_counts()
    assert counts is not None and (counts.running, counts.queued) == (1, 1), counts
    print("second job:", sorted(reasons)[0], flush=True)
    RELEASE.touch()
    filler.join(120)
    waiter.join(120)
    assert second == [3], "the second job ran once the memory was given back"

    try:
        run_job(fill, 5.0, "")  # more than the limit: the kernel kills its worker
    except UserError as exc:
        line = str(exc)
    else:
        raise AssertionError("a job beyond the memory limit finished")
    assert "\n" not in line and line.startswith("The worker running this job was stopped, most likely for lack"), line
    print("killed:", line, flush=True)
    assert run_job(count_to, 2) == 2, "the next job runs"
    print("ok", flush=True)


if __name__ == "__main__":
    main()
