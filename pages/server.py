"""What every visitor of one server shares: the limits of a shared demo, and the way to
Ray, where every heavy job runs and waits for a CPU (:func:`ray_job`). Everything else
lives in each browser session.

Limits come from environment variables ``CARTPOLE_LAB_MAX_<NAME>`` (for example
``CARTPOLE_LAB_MAX_GAMES=20000``) or a ``[limits]`` table in ``.streamlit/secrets.toml``
(``games = 20000``); the defaults keep a 2-core machine responsive for a
handful of visitors. The command line has its own, much higher limits.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import streamlit as st

from cartpole_core.progress import ProgressCallback
from cartpole_core.runner import Waiting

if TYPE_CHECKING:
    from cartpole_core.cluster import EngineInfo
    from cartpole_core.container import Capacity

#: Name -> (default, meaning). Shown in the README; each can be overridden by
#: CARTPOLE_LAB_MAX_<NAME upper-cased>.
LIMIT_DEFAULTS: dict[str, tuple[int, str]] = {
    "games": (100_000, "random games one generation may play"),
    "eval_games": (1_000, "games one evaluation may play"),
    "epochs": (50, "training epochs"),
    "members": (10, "ensemble members"),
    "generations": (30, "generations in one run"),
    "games_per_generation": (1_000, "games each generation plays"),
    "gif_frames": (300, "frames in one GIF"),
    "upload_mb": (50, "size of one uploaded file, in MB"),
    "runs_kept": (200, "saved runs the server holds (beyond it anyone's older than RUN_DAYS make room, oldest first)"),
    "run_days": (7, "days a saved run is sure to stay (a full server removes older ones to make room)"),
    "runs_per_visitor": (20, "saved runs each visitor keeps (their own oldest go first)"),
    "sweep_trials": (40, "trials in one sweep (values × seeds)"),
}


def _secret_limits() -> dict[str, Any]:
    """The ``[limits]`` table of ``.streamlit/secrets.toml`` (empty without one)."""
    if not st.secrets.load_if_toml_exists():
        return {}
    table = st.secrets.get("limits", {})
    return {str(k).lower(): v for k, v in table.items()} if isinstance(table, Mapping) else {}


def _read_limits() -> dict[str, int]:
    """Each limit from ``CARTPOLE_LAB_MAX_<NAME>``, else ``[limits] <name>`` in the secrets,
    else its default. A value that is not a whole number ≥ 1 keeps the default and says so
    on the server's stderr (visitors never see it)."""
    secrets = _secret_limits()
    limits = {}
    for name, (default, _) in LIMIT_DEFAULTS.items():
        variable = f"CARTPOLE_LAB_MAX_{name.upper()}"
        raw, where = os.environ.get(variable), variable
        if raw is None and name in secrets:
            raw, where = secrets[name], f"[limits] {name} in secrets.toml"
        value = default
        if raw is not None:
            text = str(raw).strip() if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
            if text.isdigit() and int(text) >= 1:
                value = int(text)
            else:  # 2.5, true, -3, "lots": say so, keep the default
                print(f"CartPole Lab: {where}={raw!r} is not a whole number ≥ 1; using {default}.", file=sys.stderr)
        limits[name] = value
    return limits


LIMITS = _read_limits()


def server_line() -> str:
    """How busy the shared server is, for the sidebar (counts only, nobody's data)."""
    from cartpole_core.cluster import job_counts

    counts = job_counts()
    if counts is None:
        return "Jobs: none yet on this server"
    return (
        f"Processors busy: {counts.cpus_busy} of {counts.cpus}; this server's jobs: "
        f"{counts.running} running, {counts.queued} waiting"
    )


def _processors(n: int) -> str:
    return f"{n} processor{'s' * (n != 1)}"


def capacity_line(capacity: Capacity) -> str:
    """What this server has, in a visitor's words: ``"This server: 1 processor, 2.7 GB of
    memory"`` (the library's ``describe()`` says ``"1 CPU, 2.7 GB"``)."""
    size = capacity.memory_bytes
    memory = f"{size / 2**30:.1f} GB" if size >= 2**30 else f"{size / 2**20:.0f} MB"
    return f"This server: {_processors(capacity.cpus)}, {memory} of memory"


def engine_line(info: EngineInfo, head: str = "Heavy work (training, playing games): ") -> str:
    """Where heavy work runs and whether it is ready, in a visitor's words (the library's
    ``describe()`` names the engine for the operator): ``"Heavy work (training, playing
    games): 2 jobs at once, ready"``."""
    if info.warm == "warming":
        return head + "getting ready (a first job may wait a few seconds)"
    if info.warm == "healing":
        return head + "starting again after a fault (a job may wait a few seconds)"
    if info.kind == "Ray cluster":
        if not info.started:
            return head + "on a cluster of machines, joined with the first job"
        return head + f"on a cluster of {info.nodes} machine{'s' * (info.nodes != 1)}, {_processors(info.cpus)}"
    text = head + f"{info.cpus} job{'s' * (info.cpus != 1)} at once"
    if info.started and info.warm == "ready":
        return text + ", ready"
    return text if info.started else text + " (it starts with the first one)"


def ray_job(
    label: str,
    fn: Callable[..., Any],
    *args: Any,
    progress: ProgressCallback | None = None,
    partial: Callable[[Any], None] | None = None,
) -> Any:
    """``fn(*args, progress=...)`` as a job (:func:`cartpole_core.cluster.run_job`, on Ray): its
    reports reach ``progress`` here, its result comes back. Short jobs
    (:func:`cartpole_core.jobs.is_quick`) take the quick lane and never wait behind long ones.
    While it waits for a CPU (or, the server short of memory, for memory) the visitor sees its
    place in the queue, why it waits, and a Cancel button;
    cancelling, leaving the page or closing the tab stops the script, and with it the job
    (``partial`` gets what a running job learned until then)."""
    from cartpole_core.cluster import run_job
    from cartpole_core.jobs import is_quick

    notice, cancel = st.empty(), st.empty()
    queued = [False, False]  # [a notice is shown, Cancel was drawn]
    submitted = time.monotonic()

    def waiting(place: Waiting) -> None:
        ahead = place.ahead
        if ahead < 0:  # it started: no more queue, no more Cancel (Stop is the page's)
            if queued[0]:
                queued[0] = False
                notice.empty()
                cancel.empty()
            return
        if not ahead and not place.reason and time.monotonic() - submitted < 1.0:
            return  # a worker starting: no notice to flash
        queued[0] = True
        if place.reason:  # held back before it is sent: the server is short of memory
            behind = f" ({ahead} job(s) ahead of yours)" if ahead else ""
            text = f"{label} is {place.reason}{behind}. It starts by itself as soon as enough is free."
        elif ahead:
            text = f"{label} is queued: {ahead} job(s) ahead of yours. It starts by itself once a processor is free."
        else:
            text = f"{label} is next in line: it starts as soon as a processor is free."
        notice.info(text, icon=":material/hourglass_top:")
        if not queued[1]:  # a widget is drawn once per script run
            cancel.button("Cancel", key=f"cancel_{label}", help="Leave the queue; nothing you have is lost.")
            queued[1] = True

    try:
        return run_job(fn, *args, progress=progress, waiting=waiting, partial=partial, quick=is_quick(fn, args))
    finally:
        notice.empty()
        cancel.empty()
