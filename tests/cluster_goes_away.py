"""Issue 21's cluster that goes away, as a visitor sees it (run by ``test_cluster.py`` in a
fresh interpreter): a cluster started with ``ray start --head`` is killed under the Train
page, then started again at the same address. Prints ``ok`` when every check held."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("CARTPOLE_LAB_WARM", "0")  # as the other AppTests: no background warm-up
# The test cluster and this driver agree on no token (a local Ray started earlier by the test
# process sets RAY_AUTH_MODE=token in the environment we inherit).
os.environ["RAY_AUTH_MODE"] = "disabled"

from streamlit.testing.v1 import AppTest  # noqa: E402

from cartpole_core.cluster import _import_ray  # noqa: E402


def main() -> None:
    """Issue 21: the cluster at RAY_ADDRESS stops (its head killed, every process of it) while a
    visitor works: the next Train click says so in one line and keeps the network the visitor
    had; once a cluster answers at that address again, the next click trains there. The head
    is a ``ray start --head --block`` of its own, as a real one would be (Ray's test Cluster
    keeps a client of its GCS in this process, and Ray ends a process whose GCS stays away 60 s)."""
    ray = _import_ray()  # sets the loopback switch in this process's environment first
    if ray.is_initialized():
        ray.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"

    def head() -> subprocess.Popen:
        command = [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}"]
        command += ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--include-dashboard=false", "--block"]
        command += [f"--object-store-memory={200 << 20}"]
        env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")  # loopback only
        proc = subprocess.Popen(
            command, start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                time.sleep(3)  # the GCS answers; give the raylet a moment to register
                return proc
            time.sleep(0.2)
        raise AssertionError("the test cluster did not start")

    def stop(proc: subprocess.Popen | None) -> None:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # every process of that cluster
            proc.wait(timeout=30)

    first = head()
    os.environ["RAY_ADDRESS"] = address
    second = None
    try:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
        at.run()
        at.switch_page("pages/generate.py")
        at.run()
        at.number_input(key="gen_games").set_value(2000)
        next(b for b in at.button if "Play and keep" in b.label).click()
        at.run()
        at.switch_page("pages/train.py")
        at.run()
        at.text_input(key="train_hidden").set_value("16")
        at.number_input(key="train_epochs").set_value(1)

        def train() -> None:
            next(b for b in at.button if b.label == "Train").click()
            at.run()
            assert not at.exception, at.exception

        train()
        trained = at.session_state["lab"].model
        assert trained is not None and not at.error, [e.value for e in at.error]

        stop(first)  # the cluster goes away
        train()
        [error] = [e.value for e in at.error]
        assert f"Cannot reach the Ray cluster at RAY_ADDRESS={address}" in error and "\n" not in error
        assert at.session_state["lab"].model is trained, "the network the visitor had is kept"
        assert any(b.label == "Train" for b in at.button), "the page keeps working"

        second = head()  # a cluster answers at the same address again
        train()
        assert not at.error, [e.value for e in at.error]
        again = at.session_state["lab"].model
        assert again is not None and again is not trained, "the next click trained on the new cluster"
    finally:
        ray.shutdown()
        stop(first)
        stop(second)


if __name__ == "__main__":
    main()
    print("ok")
