"""What the container gives (``container.py``): CPUs from the affinity and the cgroup quota (v1
and v2), memory from the cgroup limit or the machine, memory in use, the engine's sizes and the
overrides, read from fake /proc and /sys files under tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cartpole_core import container
from cartpole_core.container import GB, MB, Capacity, Sources, detect, memory_hold, memory_in_use

REPO = Path(__file__).resolve().parents[1]
MEMINFO = "MemTotal:       16384000 kB\nMemFree:         1000000 kB\nMemAvailable:   12288000 kB\n"


def machine(tmp_path: Path, cgroup: str, mounts: list[tuple[str, str, str, str]], affinity: int = 8) -> Sources:
    """Fake /proc files: ``cgroup`` is /proc/self/cgroup's text, ``mounts`` are (root, folder
    under tmp_path, fstype, super options) lines of /proc/self/mountinfo."""
    proc = tmp_path / "proc"
    proc.mkdir(exist_ok=True)
    (proc / "cgroup").write_text(cgroup)
    lines = [
        f"{30 + i} 25 0:{40 + i} {root} {tmp_path / point} rw,relatime - {fstype} {fstype} {options}"
        for i, (root, point, fstype, options) in enumerate(mounts)
    ]
    (proc / "mountinfo").write_text("\n".join(["22 1 8:1 / / rw - ext4 /dev/sda1 rw", *lines]) + "\n")
    (proc / "meminfo").write_text(MEMINFO)
    for _, point, _, _ in mounts:
        (tmp_path / point).mkdir(parents=True, exist_ok=True)
    return Sources(proc / "cgroup", proc / "mountinfo", proc / "meminfo", tmp_path, affinity)


def write(folder: Path, **files: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(text + "\n")


V1 = [("/", "cg/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"), ("/", "cg/memory", "cgroup", "rw,memory")]
THIS_MACHINE = "4:memory:/process_api/e32f\n2:cpu,cpuacct:/\n0::/\n"


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in container.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(container, "_shm_free", lambda sources: 8 * GB)


def test_cgroup_v2_quota_and_limit_and_memory_in_use(tmp_path):
    sources = machine(tmp_path, "0::/app.slice\n", [("/", "cg", "cgroup2", "rw,nsdelegate")])
    write(tmp_path / "cg" / "app.slice", cpu__max="150000 100000", memory__max=str(2_900_000_000))
    write(
        tmp_path / "cg" / "app.slice",
        memory__current=str(1_500_000_000),
        memory__stat="anon 1\ninactive_file 200000000",
    )
    cap = detect(sources)
    assert (cap.cpus, cap.cpus_from) == (2, "cgroup v2 quota"), "1.5 CPUs of quota round up to 2"
    assert (cap.memory_bytes, cap.memory_from) == (2_900_000_000, "cgroup v2 limit")
    assert cap.describe() == "2 CPUs, 2.7 GB"
    assert memory_in_use(cap).used_bytes == 1_300_000_000, "the inactive file cache is not counted"
    write(tmp_path / "cg" / "app.slice", cpu__max="max 100000", memory__max="max")
    cap = detect(sources)
    assert (cap.cpus, cap.cpus_from) == (8, "affinity")
    assert (cap.memory_bytes, cap.memory_from) == (16384000 * 1024, "machine")
    assert cap.memory_cgroup is None
    assert memory_in_use(cap).used_bytes == (16384000 - 12288000) * 1024, "the machine's MemTotal - MemAvailable"


def test_cgroup_v1_as_on_this_machine(tmp_path):
    """The v1 memory cgroup ``/process_api/<id>`` under the memory hierarchy's mount point."""
    sources = machine(tmp_path, THIS_MACHINE, V1, affinity=2)
    write(tmp_path / "cg/cpu,cpuacct", cpu__cfs_quota_us="-1", cpu__cfs_period_us="100000")
    write(tmp_path / "cg/memory", memory__limit_in_bytes="9223372036854771712")
    own = tmp_path / "cg/memory/process_api/e32f"
    write(own, memory__limit_in_bytes=str(1 * GB), memory__usage_in_bytes=str(700 * MB))
    write(own, memory__stat=f"cache 9\ninactive_file 1\ntotal_inactive_file {100 * MB}")
    cap = detect(sources)
    assert (cap.cpus, cap.cpus_from) == (2, "affinity"), "no quota (-1)"
    assert (cap.memory_bytes, cap.memory_from, cap.memory_cgroup) == (1 * GB, "cgroup v1 limit", own)
    assert memory_in_use(cap).used_bytes == 600 * MB
    write(tmp_path / "cg/cpu,cpuacct", cpu__cfs_quota_us="50000")
    assert (detect(sources).cpus, detect(sources).cpus_from) == (1, "cgroup v1 quota"), "half a CPU is one"


def test_the_tightest_limit_on_the_way_up_counts(tmp_path):
    sources = machine(tmp_path, "4:memory:/a/b/c\n", V1[1:])
    write(tmp_path / "cg/memory/a/b/c", memory__limit_in_bytes=str(3 * GB))
    write(tmp_path / "cg/memory/a/b", memory__limit_in_bytes="9223372036854771712")
    write(tmp_path / "cg/memory/a", memory__limit_in_bytes=str(2 * GB))
    cap = detect(sources)
    assert cap.memory_bytes == 2 * GB and cap.memory_cgroup == tmp_path / "cg/memory/a", "a parent binds its child"
    write(tmp_path / "cg/memory/a/b/c", memory__limit_in_bytes=str(1 * GB))
    assert detect(sources).memory_bytes == 1 * GB


def test_a_cgroup_namespace_and_unknown_paths_fall_back_to_the_mount_point(tmp_path):
    """In a container with a cgroup namespace the process's cgroup is "/": the mount point is
    the container's cgroup. A path outside the mount's root, or a folder that is not there,
    falls back to it too."""
    mounts = [("/", "cg", "cgroup2", "rw")]
    write(tmp_path / "cg", memory__max=str(690 * MB), cpu__max="7800 100000")
    for cgroup in ("0::/\n", "0::/gone/elsewhere\n"):
        cap = detect(machine(tmp_path, cgroup, mounts))
        assert cap.describe() == "1 CPU, 690 MB" and cap.memory_cgroup == tmp_path / "cg", cgroup
    docker = [("/docker/abc", "cg1", "cgroup", "rw,memory")]  # a host's cgroup mounted for one container
    write(tmp_path / "cg1", memory__limit_in_bytes=str(512 * MB))
    assert detect(machine(tmp_path, "5:memory:/docker/abc\n", docker)).memory_bytes == 512 * MB
    assert detect(machine(tmp_path, "5:memory:/other\n", docker)).memory_bytes == 512 * MB


def test_no_cgroup_files_at_all_is_the_machine(tmp_path):
    sources = Sources(tmp_path / "none", tmp_path / "none", tmp_path / "none", tmp_path, affinity=3)
    cap = detect(sources)
    assert (cap.cpus, cap.cpus_from, cap.memory_from) == (3, "affinity", "machine")
    assert cap.memory_bytes > 0 and memory_in_use(cap).used_bytes == 0


def test_jobs_at_once_follow_the_cpus_and_the_memory(tmp_path):
    sources = machine(tmp_path, "0::/\n", [("/", "cg", "cgroup2", "rw")], affinity=64)
    sizes = {}
    for limit_mb in (700, 1100, 1700, 2765, 100_000):
        write(tmp_path / "cg", memory__max=str(limit_mb * MB))
        cap = detect(sources)
        sizes[limit_mb] = (cap.jobs, cap.object_store_bytes // MB)
    # ~600 MB for the server and Ray, ~500 MB per TensorFlow worker; the store 10 % within [80 MB, 1 GB]
    # (a limit beyond the machine's 15.6 GB is the machine's: 30 jobs, not 64)
    assert sizes == {700: (1, 80), 1100: (1, 110), 1700: (2, 170), 2765: (4, 276), 100_000: (30, 1024)}
    write(tmp_path / "cg", cpu__max="100000 100000")
    cap = detect(sources)
    assert (cap.cpus, cap.jobs, cap.quick_slots) == (1, 1, 1), "one CPU: one job at once"


def test_the_object_store_stays_under_dev_shm_or_goes_to_tmp(tmp_path, monkeypatch):
    """Docker's /dev/shm is 64 MB: less than Ray's smallest store (75 MB), so the store keeps its
    size and Ray puts it under /tmp; a /dev/shm that can hold a smaller store gets one that fits."""
    sources = machine(tmp_path, "0::/\n", [("/", "cg", "cgroup2", "rw")])
    write(tmp_path / "cg", memory__max=str(2765 * MB))
    for free_mb, store_mb, in_shm in ((64, 276, False), (200, 180, True), (8192, 276, True)):
        monkeypatch.setattr(container, "_shm_free", lambda sources, free=free_mb: free * MB)
        cap = detect(sources)
        assert (cap.object_store_bytes // MB, cap.object_store_in_shm) == (store_mb, in_shm), free_mb


def test_each_variable_overrides_and_a_bad_value_is_one_line(tmp_path, capsys):
    sources = machine(tmp_path, THIS_MACHINE, V1, affinity=2)
    good = {
        "CARTPOLE_LAB_CPUS": "1",
        "CARTPOLE_LAB_MEMORY_MB": "2765",
        "CARTPOLE_LAB_OBJECT_STORE_MB": "100",
        "CARTPOLE_LAB_JOBS": "3",
        "CARTPOLE_LAB_MEMORY_GUARD": "0.5",
    }
    cap = detect(sources, good)
    assert (cap.cpus, cap.cpus_from, cap.memory_from) == (1, "CARTPOLE_LAB_CPUS", "CARTPOLE_LAB_MEMORY_MB")
    assert (cap.memory_bytes, cap.object_store_bytes, cap.jobs, cap.memory_guard) == (2765 * MB, 100 * MB, 3, 0.5)
    assert cap.describe() == "1 CPU, 2.7 GB"
    assert capsys.readouterr().err == ""
    detected = detect(sources, {})
    for name, bad in zip(good, ("two", "12", "50", "0", "1.5"), strict=True):
        cap = detect(sources, {name: bad})
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"CartPole Lab: {name}={bad!r} is not "), err
        assert cap == detected, f"{name}={bad}: the detected value is used"


def test_a_limit_set_by_a_variable_counts_the_memory_of_this_cgroup(tmp_path):
    sources = machine(tmp_path, THIS_MACHINE, V1, affinity=2)
    own = tmp_path / "cg/memory/process_api/e32f"
    write(own, memory__usage_in_bytes=str(2500 * MB), memory__stat="total_inactive_file 0")
    cap = detect(sources, {"CARTPOLE_LAB_MEMORY_MB": "2765"})
    assert cap.memory_cgroup == own
    assert memory_hold(cap) == "waiting for memory: 2.4 of 2.7 GB in use"
    write(own, memory__usage_in_bytes=str(1000 * MB))
    assert memory_hold(cap) is None, "read again at each call"


def test_memory_in_use_describes_itself():
    assert container.MemoryUse(600 * MB, 690 * MB).describe() == "600 of 690 MB in use"
    cap = Capacity(1, "affinity", 690 * MB, "machine", 80 * MB, True, 1, 1, 0.85)
    assert cap.describe() == "1 CPU, 690 MB"


def test_this_machine_one_cpu_by_affinity():
    """``taskset -c 0`` gives one CPU, as a container's cpuset does."""
    code = "import cartpole_core.container as c; print(c.capacity().describe(), c.capacity().cpus_from)"
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("this machine has one CPU already")
    done = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 CPU, ") and done.stdout.strip().endswith("affinity"), done.stdout


def test_the_sidebar_says_what_the_engine_found(tmp_path, monkeypatch):
    """One short caption: "This server: 1 processor, 2.7 GB of memory" (here from the variables,
    as on a container whose files say so), and the engine's line counts jobs at once, not the
    host's cores, in a visitor's words (no library name)."""
    from streamlit.testing.v1 import AppTest

    from cartpole_core import cluster

    sources = machine(tmp_path, THIS_MACHINE, V1, affinity=2)
    cap = detect(sources, {"CARTPOLE_LAB_CPUS": "1", "CARTPOLE_LAB_MEMORY_MB": "2765"})
    monkeypatch.setattr(cluster, "capacity", lambda: cap)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    captions = [c.value for c in at.sidebar.caption]
    assert "This server: 1 processor, 2.7 GB of memory" in captions, captions
    engine = next(c for c in captions if c.startswith("Heavy work "))
    assert engine.startswith("Heavy work (training, playing games): 1 job at once"), engine
    assert "Ray" not in " ".join(captions) and "CPU" not in " ".join(captions), captions
