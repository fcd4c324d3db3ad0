"""Processes seen through Linux's ``/proc``: trees, sessions, memory, listening sockets.

The Ray stage (:mod:`bench.ray_stage`) uses these to weigh Ray's processes, to check that
they listen on the loopback interface only, and to find any process left running after a
part of the stage ended. Plain ``/proc`` reads, so no extra package is needed. A process
that ends while it is being read is skipped (its figures count as 0).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` this module needs."""

    pid: int
    state: str
    """``R``, ``S``, ``Z`` (a zombie: ended, not yet reaped) …"""
    ppid: int
    sid: int
    """Session id: the pid of the session's leader."""


def _stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name in brackets may hold spaces
    return ProcStat(pid, fields[0], int(fields[1]), int(fields[3]))


def live_processes() -> list[ProcStat]:
    """Every process that has not ended (zombies left out)."""
    found = (_stat(int(d)) for d in os.listdir("/proc") if d.isdigit())
    return [p for p in found if p is not None and p.state != "Z"]


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it, parents before children."""
    children: dict[int, list[int]] = {}
    for p in live_processes():
        children.setdefault(p.ppid, []).append(p.pid)
    tree, i = [root], 0
    while i < len(tree):
        tree += children.get(tree[i], [])
        i += 1
    return tree


def session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (a process started with ``start_new_session=True``
    leads a session whose id is its pid; its descendants stay in it, even once orphaned)."""
    return [p.pid for p in live_processes() if p.sid == sid]


def cmdline(pid: int) -> str:
    """The command line, arguments joined by spaces ('' when the process is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _kib_field(path: str, name: str) -> int:
    """A ``Name:  123 kB`` line of a ``/proc`` file, in bytes (0 when missing)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes. RSS counts every page the process maps, shared ones included,
    so RSS of several processes overstates their sum; PSS splits each shared page between
    the processes sharing it, so PSS adds up."""
    return _kib_field(f"/proc/{pid}/status", "VmRSS"), _kib_field(f"/proc/{pid}/smaps_rollup", "Pss")


def peak_rss(pid: int) -> int:
    """The process's largest RSS so far (``VmHWM``), in bytes."""
    return _kib_field(f"/proc/{pid}/status", "VmHWM")


def _socket_inodes(pids: list[int]) -> dict[str, int]:
    """Socket inode -> pid of the process holding it."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    return inodes


def _address(hex_ip: str, family: socket.AddressFamily) -> str:
    raw = bytes.fromhex(hex_ip)
    if family == socket.AF_INET:
        return socket.inet_ntop(family, raw[::-1])
    return socket.inet_ntop(family, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))


def listening_sockets(pids: list[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket in LISTEN state held by one of ``pids``."""
    inodes = _socket_inodes(pids)
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            with open(f"/proc/net/{table}") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            found.append((_address(hex_ip, family), int(hex_port, 16), inodes[fields[9]]))
    return found


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (``::ffff:127.0.0.1``)."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def stop(pids: list[int], grace: float = 5.0) -> int:
    """SIGTERM each of ``pids``, SIGKILL those still alive after ``grace`` seconds; returns
    how many were alive to be stopped."""
    alive = {p.pid for p in live_processes()}
    targets = [pid for pid in pids if pid in alive]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in targets:
            with contextlib.suppress(OSError):  # ended meanwhile
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            alive = {p.pid for p in live_processes()}
            if not any(pid in alive for pid in targets):
                return len(targets)
            time.sleep(0.1)
    return len(targets)
