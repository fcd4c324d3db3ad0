"""The server run as a container runs it, without Docker: shared by the deploy tests
(``tests/test_deploy.py``) and the benchmark's deploy stage.

The image's folder is built from the checkout through ``.dockerignore`` (as ``docker build``'s
context and the Dockerfile's ``COPY . .`` would), then the image's command (``./serve``) runs in
a private mount namespace (``unshare -m``) with Docker's default 64 MB ``/dev/shm``, that
folder bind-mounted read-only, and one CPU by affinity (``taskset -c 0``). Linux only; needs
the right to mount (root).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The container's shell: Docker's 64 MB /dev/shm, the image's folder ($APP) read-only, one CPU.
CONTAINER = (
    'mount -t tmpfs -o size=64m tmpfs /dev/shm && mount --bind "$APP" "$APP" && '
    'mount -o remount,bind,ro "$APP" && cd "$APP" && exec taskset -c 0 ./serve'
)


def _pattern(rule: str) -> re.Pattern[str]:
    """A ``.dockerignore`` rule as a regular expression over a path relative to the context
    (Go's filepath.Match, plus ``**`` for any number of folders)."""
    out, i = "", 0
    while i < len(rule):
        if rule.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif rule.startswith("**", i):
            out, i = out + ".*", i + 2
        elif rule[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif rule[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(rule[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_rules(root: Path = ROOT) -> list[tuple[bool, re.Pattern[str]]]:
    """``.dockerignore``'s rules in order: (a ``!`` rule that brings paths back, pattern)."""
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), _pattern(line.lstrip("!").strip("/"))))
    return rules


def dockerignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether ``docker build`` leaves ``relative`` out: the last rule that matches the path
    or one of its folders decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for keep, pattern in rules:
        if any(pattern.match(p) for p in prefixes):
            ignored = not keep
    return ignored


def image_folder(into: Path, root: Path = ROOT) -> Path:
    """What ``COPY . .`` puts in the image: ``root`` less what ``.dockerignore`` leaves out."""
    rules = dockerignore_rules(root)
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not dockerignored(relative, rules):
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return into


def why_not() -> str:
    """Why a container-like run cannot be made here, or "" when it can."""
    if sys.platform != "linux":
        return "needs Linux (mount namespaces)"
    if not all(shutil.which(tool) for tool in ("unshare", "taskset", "mount")):
        return "needs unshare, taskset and mount (util-linux)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
        capture_output=True,
        text=True,
    )
    if probe.returncode:
        return f"mount namespaces are not available here ({probe.stderr.strip() or 'unshare failed'}; run as root)"
    return ""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_as_container(
    folder: Path, log: Path, env: dict[str, str] | None = None, start_timeout_s: float = 90
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``./serve`` of ``folder`` as a container runs it, on a free loopback port, with this
    process's environment less the project's and Ray's variables, plus ``env``; yields its URL
    and process (the server itself: the shell execs into it). A ``RuntimeError`` with the
    server's last output if it does not answer its health check in time."""
    port = free_port()
    run_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CARTPOLE_LAB_", "RAY_", "PYTEST_")) and key != "PYTHONPATH"
    }
    run_env.update(APP=str(folder), PORT=str(port), ADDRESS="127.0.0.1", PYTHON=sys.executable, **(env or {}))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", CONTAINER],
            env=run_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the server did not start: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)


def tree_pss(root: int) -> int:
    """The proportional set size of ``root`` and every process below it (bytes): shared pages
    split between the processes sharing them, so it adds up (the server, Ray and its workers)."""
    from bench.procs import descendants, memory

    return sum(memory(pid)[1] for pid in descendants(root))
