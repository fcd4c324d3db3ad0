"""What the container gives this server: CPUs and memory, as the engine sizes itself by them.

``os.cpu_count()`` is the host's, not the container's: a container limited to 2 CPUs on a
64-core host sees 64, and memory is capped by the container (Streamlit Community Cloud: 2.7 GB)
whatever the host has. This module reads what really holds, from Linux's own files only (no
third-party code, nothing written):

- CPUs: the process's CPU affinity (``taskset``, a cpuset), and the cgroup CPU quota (cgroup v2
  ``cpu.max``, cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) rounded up, whichever
  is fewer.
- Memory: the cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), else the
  machine's (``MemTotal`` in ``/proc/meminfo``); memory in use is the cgroup's usage minus the
  file cache the kernel frees first (``inactive_file``), else the machine's used memory.

The cgroup of this process comes from ``/proc/self/cgroup`` and the hierarchies' mount points
from ``/proc/self/mountinfo``; the tightest limit on the way up to the mount point counts (a
parent's limit binds its children). In a container with a cgroup namespace the process's
cgroup is ``/``: the mount point itself is the container's cgroup.

From these the engine's sizes follow (:class:`Capacity`): jobs running at once, Ray's object
store, the quick lane's slots, and the memory guard (a new heavy job waits while memory in use
is above a share of the limit). Each can be set by an environment variable (``CARTPOLE_LAB_*``,
see :data:`VARIABLES`); a value that makes no sense is one line on stderr and the detected value
is used. Every path is a field of :class:`Sources`, so tests read fake files.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MB = 1 << 20
"""One megabyte as this module counts it (bytes; the variables' ``_MB`` are these)."""
GB = 1 << 30
"""One gigabyte as this module counts it (bytes)."""

#: A cgroup limit at or above this is "no limit" (cgroup v1 writes 2^63 rounded down to a page).
NO_LIMIT = 1 << 62
#: Memory a server needs beside its workers: the web server, Ray's own processes (bytes).
SERVER_MEMORY = 600 * MB
#: Memory one job's worker holds once TensorFlow is loaded (bytes).
WORKER_MEMORY = 500 * MB
#: Share of the memory limit given to Ray's object store, and its bounds (bytes). Ray refuses
#: less than 75 MB.
OBJECT_STORE_SHARE = 0.10
OBJECT_STORE_MIN = 80 * MB
OBJECT_STORE_MAX = 1 * GB
#: Share of /dev/shm's free space the object store may take there (Ray keeps other files in it).
SHM_SHARE = 0.9
#: The quick lane (short jobs in the web server's threads) has at most this many slots.
QUICK_SLOTS_MAX = 2
#: Default share of the memory limit above which a new heavy job waits.
MEMORY_GUARD = 0.85

#: The environment variables that override what is detected: what each sets, what it accepts.
VARIABLES: dict[str, tuple[str, str]] = {
    "CARTPOLE_LAB_CPUS": ("CPUs the server may use", "a whole number ≥ 1"),
    "CARTPOLE_LAB_MEMORY_MB": ("memory the server may use, in MB", "a whole number ≥ 256"),
    "CARTPOLE_LAB_OBJECT_STORE_MB": ("Ray's object store on a local Ray, in MB", "a whole number ≥ 80"),
    "CARTPOLE_LAB_JOBS": ("heavy jobs running at once on a local Ray", "a whole number ≥ 1"),
    "CARTPOLE_LAB_MEMORY_GUARD": (
        "share of the memory limit above which a new heavy job waits",
        "a number from 0.1 to 1",
    ),
}


@dataclass(frozen=True)
class Sources:
    """Where the figures are read; the real files by default (tests point them at fakes)."""

    proc_cgroup: Path = Path("/proc/self/cgroup")
    """This process's cgroups (``hierarchy:controllers:path`` lines)."""
    mountinfo: Path = Path("/proc/self/mountinfo")
    """This process's mounts (where each cgroup hierarchy is mounted)."""
    meminfo: Path = Path("/proc/meminfo")
    """The machine's memory (``MemTotal``, ``MemAvailable``, in kB)."""
    shm: Path = Path("/dev/shm")
    """The shared-memory folder Ray's object store prefers."""
    affinity: int | None = None
    """CPUs this process may run on; None: ``os.sched_getaffinity(0)``."""


@dataclass(frozen=True)
class Capacity:
    """What this server may use, and the engine's sizes that follow from it."""

    cpus: int
    """CPUs (≥ 1)."""
    cpus_from: str
    """Where ``cpus`` came from: ``"affinity"`` (the CPUs this process may run on),
    ``"cgroup v2 quota"``, ``"cgroup v1 quota"`` or ``"CARTPOLE_LAB_CPUS"``."""
    memory_bytes: int
    """Memory limit (bytes)."""
    memory_from: str
    """Where ``memory_bytes`` came from: ``"cgroup v2 limit"``, ``"cgroup v1 limit"``,
    ``"machine"`` or ``"CARTPOLE_LAB_MEMORY_MB"``."""
    object_store_bytes: int
    """Ray's object store on a local Ray (bytes)."""
    object_store_in_shm: bool
    """True when it fits in /dev/shm; otherwise Ray keeps it in a file under /tmp (slower)."""
    jobs: int
    """Heavy jobs running at once on a local Ray (Ray's CPUs): the CPUs, no more than memory
    holds (:data:`WORKER_MEMORY` per job beyond :data:`SERVER_MEMORY`), or ``CARTPOLE_LAB_JOBS``."""
    quick_slots: int
    """Quick jobs running at once in the web server's threads."""
    memory_guard: float
    """Share of ``memory_bytes`` in use above which a new heavy job waits (0.1 to 1)."""
    memory_cgroup: Path | None = None
    """The cgroup folder whose usage is the memory in use; None: the machine's."""
    cgroup_version: int = 0
    """1 or 2 for ``memory_cgroup``'s hierarchy; 0 without one."""
    meminfo: Path = field(default=Path("/proc/meminfo"), compare=False)
    """The machine's memory figures, read when there is no cgroup to read."""

    def describe(self) -> str:
        """E.g. ``"1 CPU, 2.7 GB"``."""
        return f"{self.cpus} CPU{'s' * (self.cpus != 1)}, {_size(self.memory_bytes)}"


@dataclass(frozen=True)
class MemoryUse:
    """Memory in use now against the limit."""

    used_bytes: int
    """In use, not counting file cache the kernel frees first (bytes)."""
    limit_bytes: int
    """The limit (bytes)."""

    @property
    def share(self) -> float:
        """``used_bytes / limit_bytes``."""
        return self.used_bytes / self.limit_bytes if self.limit_bytes else 0.0

    def describe(self) -> str:
        """E.g. ``"2.4 of 2.7 GB in use"``."""
        if self.limit_bytes >= GB:
            return f"{self.used_bytes / GB:.1f} of {self.limit_bytes / GB:.1f} GB in use"
        return f"{self.used_bytes / MB:.0f} of {self.limit_bytes / MB:.0f} MB in use"


def _size(n: int) -> str:
    """Bytes as ``"2.7 GB"`` (``"690 MB"`` below a gigabyte)."""
    return f"{n / GB:.1f} GB" if n >= GB else f"{n / MB:.0f} MB"


# ---------------------------------------------------------------- reading files


def _read(path: Path) -> str | None:
    """A small file's text, stripped; None when it cannot be read."""
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _keyed(text: str | None) -> dict[str, int]:
    """``name value [unit]`` lines (memory.stat, /proc/meminfo) as a mapping (values as written)."""
    found: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2 and parts[1].isdigit():
            found[parts[0]] = int(parts[1])
    return found


def _unescape(path: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


@dataclass(frozen=True)
class _Mount:
    root: str
    """The folder of the hierarchy mounted there (``/`` for all of it)."""
    point: Path
    fstype: str
    options: frozenset[str]
    """Super options: for cgroup v1 the controllers (``memory``, ``cpu``, ...)."""


def _cgroup_mounts(sources: Sources) -> list[_Mount]:
    mounts = []
    for line in (_read(sources.mountinfo) or "").splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append(_Mount(_unescape(fields[3]), Path(_unescape(fields[4])), tail[0], frozenset(tail[2].split(","))))
    return mounts


def _cgroup_folders(sources: Sources, controller: str | None) -> list[Path]:
    """This process's cgroup folder for a cgroup v1 ``controller`` (None: the v2 hierarchy) and
    its parents up to the hierarchy's mount point, innermost first; empty without one."""
    path = None
    for line in (_read(sources.proc_cgroup) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, where = rest.partition(":")
        if (controller is None and hierarchy == "0" and not controllers) or (
            controller is not None and controller in controllers.split(",")
        ):
            path = where
            break
    if path is None:
        return []
    for mount in _cgroup_mounts(sources):
        if controller is None and mount.fstype != "cgroup2":
            continue
        if controller is not None and (mount.fstype != "cgroup" or controller not in mount.options):
            continue
        root = mount.root.rstrip("/")
        if path == root or path.startswith(root + "/"):
            inner = mount.point / path[len(root) :].lstrip("/")
        else:  # the process's cgroup lies outside what is mounted here: the mount's own cgroup
            inner = mount.point
        if not inner.is_dir():
            inner = mount.point
        folders = [inner]
        while folders[-1] != mount.point and mount.point in folders[-1].parents:
            folders.append(folders[-1].parent)
        return folders
    return []


def _cpu_quota(sources: Sources) -> tuple[float, str] | None:
    """The tightest cgroup CPU quota (CPUs, may be fractional) and which cgroup version set it."""
    quotas: list[tuple[float, str]] = []
    for folder in _cgroup_folders(sources, None):
        text = _read(folder / "cpu.max")
        if text:
            quota, _, period = text.partition(" ")
            if quota.isdigit() and period.strip().isdigit() and int(period) > 0:
                quotas.append((int(quota) / int(period), "cgroup v2 quota"))
    for folder in _cgroup_folders(sources, "cpu"):
        quota_us, period_us = _read_int(folder / "cpu.cfs_quota_us"), _read_int(folder / "cpu.cfs_period_us")
        if quota_us is not None and quota_us > 0 and period_us:
            quotas.append((quota_us / period_us, "cgroup v1 quota"))
    return min(quotas) if quotas else None


def _memory_limit(sources: Sources) -> tuple[int, Path, int] | None:
    """The tightest cgroup memory limit (bytes), the folder that sets it and its cgroup version."""
    limits: list[tuple[int, Path, int]] = []
    for folder in _cgroup_folders(sources, None):
        value = _read_int(folder / "memory.max")  # "max" (no limit) reads as None
        if value is not None and 0 < value < NO_LIMIT:
            limits.append((value, folder, 2))
    for folder in _cgroup_folders(sources, "memory"):
        value = _read_int(folder / "memory.limit_in_bytes")
        if value is not None and 0 < value < NO_LIMIT:
            limits.append((value, folder, 1))
    return min(limits, key=lambda limit: limit[0]) if limits else None


def _own_memory_cgroup(sources: Sources) -> tuple[Path, int] | None:
    """This process's innermost cgroup that counts memory (for a limit set by a variable)."""
    v2 = _cgroup_folders(sources, None)
    if v2 and (v2[0] / "memory.current").is_file():
        return v2[0], 2
    v1 = _cgroup_folders(sources, "memory")
    if v1 and (v1[0] / "memory.usage_in_bytes").is_file():
        return v1[0], 1
    return None


def _affinity() -> int:
    """CPUs this process may run on (Linux's affinity; the machine's cores elsewhere)."""
    getaffinity = getattr(os, "sched_getaffinity", None)  # Linux only
    return len(getaffinity(0)) if getaffinity is not None else os.cpu_count() or 1


def _physical_memory() -> int:
    """The machine's memory where ``/proc/meminfo`` is missing (bytes; 4 GB if unknown)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows), or no such name
        return 4 * GB


def _shm_free(sources: Sources) -> int:
    """Free bytes in /dev/shm (0 where it cannot be read), as Ray measures them."""
    try:
        stats = os.statvfs(sources.shm)
    except (OSError, AttributeError):  # no /dev/shm, or no statvfs (Windows)
        return 0
    return stats.f_bsize * stats.f_bavail


# ---------------------------------------------------------------- the overrides


def _override(
    environ: Mapping[str, str], name: str, low: float, high: float, whole: bool, detected: object
) -> float | None:
    """The variable's value when set and within [low, high]; else None, and one line on stderr
    when it is set to something else (``detected`` is what is used instead)."""
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        print(
            f"CartPole Lab: {name}={raw!r} is not {VARIABLES[name][1]}; using {detected}.",
            file=sys.stderr,
        )
        return None
    return value


def detect(sources: Sources | None = None, environ: Mapping[str, str] | None = None) -> Capacity:
    """What this process may use, read from ``sources`` (default: this machine's files), with
    the ``CARTPOLE_LAB_*`` overrides of ``environ`` (default: ``os.environ``) applied."""
    sources = sources or Sources()
    env = os.environ if environ is None else environ
    machine = _keyed(_read(sources.meminfo))
    machine_bytes = machine.get("MemTotal", 0) * 1024 or _physical_memory()

    affinity = sources.affinity if sources.affinity is not None else _affinity()
    cpus, cpus_from = affinity, "affinity"
    quota = _cpu_quota(sources)
    if quota is not None and math.ceil(quota[0] - 1e-9) < cpus:
        cpus, cpus_from = max(1, math.ceil(quota[0] - 1e-9)), quota[1]
    if (forced := _override(env, "CARTPOLE_LAB_CPUS", 1, 4096, True, cpus)) is not None:
        cpus, cpus_from = int(forced), "CARTPOLE_LAB_CPUS"

    limit = _memory_limit(sources)
    memory, memory_from = machine_bytes, "machine"
    usage: tuple[Path, int] | None = None
    if limit is not None and limit[0] < machine_bytes:
        memory, memory_from, usage = limit[0], f"cgroup v{limit[2]} limit", (limit[1], limit[2])
    if (forced := _override(env, "CARTPOLE_LAB_MEMORY_MB", 256, 1 << 24, True, memory // MB)) is not None:
        memory, memory_from = int(forced) * MB, "CARTPOLE_LAB_MEMORY_MB"
        usage = usage or _own_memory_cgroup(sources)

    store = int(min(OBJECT_STORE_MAX, max(OBJECT_STORE_MIN, OBJECT_STORE_SHARE * memory)))
    shm = int(SHM_SHARE * _shm_free(sources)) // MB * MB
    in_shm = shm >= store
    if not in_shm and shm >= OBJECT_STORE_MIN:  # smaller, but in shared memory
        store, in_shm = shm, True
    # else: Ray keeps a store larger than /dev/shm in a file under /tmp (it warns, and works)
    if (forced := _override(env, "CARTPOLE_LAB_OBJECT_STORE_MB", 80, 1 << 20, True, store // MB)) is not None:
        store = int(forced) * MB
        in_shm = _shm_free(sources) >= store

    jobs = max(1, min(cpus, (memory - SERVER_MEMORY) // WORKER_MEMORY))
    if (forced := _override(env, "CARTPOLE_LAB_JOBS", 1, 4096, True, jobs)) is not None:
        jobs = int(forced)
    guard = _override(env, "CARTPOLE_LAB_MEMORY_GUARD", 0.1, 1.0, False, MEMORY_GUARD)
    return Capacity(
        cpus=cpus,
        cpus_from=cpus_from,
        memory_bytes=int(memory),
        memory_from=memory_from,
        object_store_bytes=store,
        object_store_in_shm=in_shm,
        jobs=int(jobs),
        quick_slots=max(1, min(QUICK_SLOTS_MAX, cpus)),
        memory_guard=MEMORY_GUARD if guard is None else float(guard),
        memory_cgroup=usage[0] if usage else None,
        cgroup_version=usage[1] if usage else 0,
        meminfo=sources.meminfo,
    )


@functools.cache
def capacity() -> Capacity:
    """This server's :class:`Capacity`, read once per process (limits do not change while it runs)."""
    return detect()


def memory_in_use(cap: Capacity | None = None) -> MemoryUse:
    """Memory in use now, against ``cap``'s limit (default: :func:`capacity`): the cgroup's
    usage minus its inactive file cache, else the machine's ``MemTotal - MemAvailable``."""
    cap = cap or capacity()
    used = None
    if cap.memory_cgroup is not None:
        v2 = cap.cgroup_version == 2
        current = _read_int(cap.memory_cgroup / ("memory.current" if v2 else "memory.usage_in_bytes"))
        if current is not None:
            stat = _keyed(_read(cap.memory_cgroup / "memory.stat"))
            cache = (
                stat.get("inactive_file", 0) if v2 else stat.get("total_inactive_file", stat.get("inactive_file", 0))
            )
            used = max(0, current - cache)
    if used is None:
        machine = _keyed(_read(cap.meminfo))
        used = max(0, machine.get("MemTotal", 0) - machine.get("MemAvailable", machine.get("MemTotal", 0))) * 1024
    return MemoryUse(used, cap.memory_bytes)


def memory_hold(cap: Capacity | None = None) -> str | None:
    """None while a new heavy job may start; else why it waits, in one line (``"waiting for
    memory: 2.4 of 2.7 GB in use"``): memory in use is above ``cap.memory_guard`` of the limit."""
    cap = cap or capacity()
    use = memory_in_use(cap)
    return None if use.share <= cap.memory_guard else f"waiting for memory: {use.describe()}"
