"""The dashboard's Streamlit server with each script run timed on the server's side (stage 9).

``python -m bench.stamped_server LOG streamlit-args...`` starts ``streamlit run`` as usual and
appends one JSON line to ``LOG`` per script run: its start and end (``time.time()``, seconds),
and the jobs it ran (``run_job``'s function names, with their own start, the last moment the job was
seen in the queue, and end). A step's
server time is its script run: from the moment the server starts the click's rerun to the
moment the last element is sent; the visitor's browser and network come on top.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

_here = threading.local()


def _install(log_path: str) -> None:
    from streamlit.runtime.scriptrunner import script_runner

    from cartpole_core import cluster

    lock = threading.Lock()
    run_script, run_job = script_runner.ScriptRunner._run_script, cluster.run_job

    def timed_run_script(self: Any, rerun_data: Any) -> None:
        _here.jobs = []
        start = time.time()
        try:
            run_script(self, rerun_data)
        finally:
            line = {"session": self._session_id, "start": start, "end": time.time(), "jobs": _here.jobs}
            with lock, open(log_path, "a") as log:
                log.write(json.dumps(line) + "\n")

    def timed_run_job(fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.time()
        queued = [start]  # the last moment the job was seen in the queue: its wait ends there
        told = kwargs.get("waiting")

        def waiting(place: Any) -> None:  # the job's place in the queue (< 0 once it started)
            if place.ahead >= 0:
                queued[0] = time.time()
            if told is not None:
                told(place)

        kwargs["waiting"] = waiting
        try:
            return run_job(fn, *args, **kwargs)
        finally:
            getattr(_here, "jobs", []).append(
                {"fn": fn.__name__, "start": start, "queued_until": queued[0], "end": time.time()}
            )

    script_runner.ScriptRunner._run_script = timed_run_script
    cluster.run_job = timed_run_job


if __name__ == "__main__":
    _install(sys.argv[1])
    from streamlit.web.cli import main

    sys.argv = ["streamlit", "run", *sys.argv[2:]]
    main()
