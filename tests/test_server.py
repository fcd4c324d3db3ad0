"""What a shared server needs: limits from the environment, the job queue, and runs that
survive a writer killed mid-save."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cartpole_core.storage import list_runs, load_run, load_run_dataset
from pages.server import _read_limits

ROOT = Path(__file__).resolve().parents[1]


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("CARTPOLE_LAB_MAX_GAMES", "2000")
    monkeypatch.setenv("CARTPOLE_LAB_MAX_EPOCHS", "not a number")
    monkeypatch.setenv("CARTPOLE_LAB_MAX_MEMBERS", "0")
    limits = _read_limits()
    assert limits["games"] == 2000
    assert limits["epochs"] == 50, "a value that is not a number keeps the default"
    assert limits["members"] == 10, "a value below 1 keeps the default"
    err = capsys.readouterr().err
    assert "CARTPOLE_LAB_MAX_EPOCHS='not a number' is not a whole number" in err and "using 50" in err
    assert "CARTPOLE_LAB_MAX_MEMBERS='0'" in err


def test_limits_can_come_from_the_secrets_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    """``[limits]`` in secrets.toml sets a limit; an environment variable wins over it."""
    import streamlit as st

    secrets = tmp_path / "secrets.toml"
    secrets.write_text("[limits]\ngames = 1234\nepochs = 7\nmembers = 2.5\ngenerations = true\n")
    from streamlit import config

    before = config.get_option("secrets.files")
    config.set_option("secrets.files", [str(secrets)])
    st.secrets._reset()  # Streamlit reads the files once; forget what it read before
    monkeypatch.setenv("CARTPOLE_LAB_MAX_EPOCHS", "9")
    try:
        limits = _read_limits()
    finally:
        config.set_option("secrets.files", before)
        st.secrets._reset()
    assert limits["games"] == 1234
    assert limits["epochs"] == 9
    assert limits["members"] == 10, "2.5 is not a whole number: the default stays"
    assert limits["generations"] == 30, "true is not a number: the default stays"
    err = capsys.readouterr().err
    assert "[limits] members in secrets.toml=2.5 is not a whole number" in err


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from cartpole_core.generate import GenerationConfig, generate
    from cartpole_core.storage import RunRecord, save_run

    root = Path(sys.argv[1])
    dataset = generate(GenerationConfig(games=20_000, seed=1)).dataset
    print("ready", flush=True)
    i = 0
    while True:  # save runs until killed
        save_run(RunRecord(kind="generate", name=f"loop {i}"), dataset=dataset, root=root)
        i += 1
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_writer_killed_mid_save_leaves_every_listed_run_whole(tmp_path: Path, small_dataset) -> None:
    from cartpole_core.storage import RunRecord, save_run

    root = tmp_path / "runs"
    before = save_run(RunRecord(kind="generate", name="before"), dataset=small_dataset, root=root)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    time.sleep(1.5)  # several saves, then a kill at an arbitrary point of one
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    runs = list_runs(root)
    assert len(runs) >= 2, "the writer saved some runs before it was killed"
    assert not [r for r in runs if r.damaged], "a half-written run is never listed"
    for r in runs:
        assert load_run(r.run_id, root).has_dataset
        assert len(load_run_dataset(r.run_id, root)) > 0
    assert load_run_dataset(before.run_id, root).n_games == small_dataset.n_games
    # whatever the kill left behind is hidden (a dot-folder), not a run
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert all(name.startswith(".tmp-") for name in leftovers)


def test_the_served_config_keeps_the_security_basics() -> None:
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server = config["server"]
    assert server["enableXsrfProtection"] is True
    assert server["maxUploadSize"] <= 50, "uploads are capped (MB)"
    assert server["headless"] is True
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["showErrorDetails"] in ("none", False), "no tracebacks shown to visitors"


def test_every_uploader_sets_the_servers_size_limit_and_loading_stays_safe() -> None:
    pages = {p.name: p.read_text() for p in (ROOT / "pages").glob("*.py")}
    uploaders = [name for name, text in pages.items() if "st.file_uploader(" in text]
    assert uploaders, "the app has uploaders"
    for name in uploaders:
        assert pages[name].count("st.file_uploader(") == pages[name].count('max_upload_size=LIMITS["upload_mb"]'), name
    core = "".join(p.read_text() for p in (ROOT / "cartpole_core").glob("*.py"))
    assert "allow_pickle=True" not in core and core.count("allow_pickle=False") >= 1
    assert "safe_mode=False" not in core and "safe_mode=True" in core


def test_the_sidebar_says_how_busy_the_server_is() -> None:
    """Counts only: the engine's busy processors and this server's jobs, never whose (queue places and
    running counts under load: test_jobs)."""
    from streamlit.testing.v1 import AppTest

    from cartpole_core.cluster import run_job
    from cartpole_core.generate import GenerationConfig, generate
    from pages.server import server_line

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert "Jobs: none yet on this server" in [c.value for c in at.sidebar.caption]
    run_job(generate, GenerationConfig(games=20, score_requirement=0), progress=lambda p: False)
    line = server_line()
    assert line.startswith("Processors busy: ") and line.endswith("this server's jobs: 0 running, 0 waiting"), line


def test_the_engine_and_the_server_in_a_visitors_words() -> None:
    """Issue 30: the sidebar's lines name no library and no CPU (the library's ``describe()``
    keeps the operator's words), in every state of the engine."""
    from cartpole_core.cluster import EngineInfo
    from cartpole_core.container import Capacity
    from pages.server import capacity_line, engine_line

    local = EngineInfo("local Ray", started=True, nodes=1, cpus=2, warm="ready")
    head = "Heavy work (training, playing games): "
    pairs = [
        (engine_line(local), head + "2 jobs at once, ready"),
        (engine_line(EngineInfo("local Ray", False, 0, 1)), head + "1 job at once (it starts with the first one)"),
        (engine_line(EngineInfo("local Ray", True, 1, 2, warm="warming")), head + "getting ready (a first job may "
         "wait a few seconds)"),
        (engine_line(EngineInfo("Ray cluster", True, 3, 24)), head + "on a cluster of 3 machines, 24 processors"),
        (engine_line(local, head="Trials run side by side: "), "Trials run side by side: 2 jobs at once, ready"),
    ]  # fmt: skip
    assert [line for line, _ in pairs] == [expected for _, expected in pairs]
    assert local.describe() == "local Ray, 2 jobs at once, ready", "the operator's words stay"
    cap = Capacity(cpus=1, cpus_from="test", memory_bytes=2765 * 2**20, memory_from="test", object_store_bytes=0,
                   object_store_in_shm=False, jobs=1, quick_slots=1, memory_guard=0.9)  # fmt: skip
    assert capacity_line(cap) == "This server: 1 processor, 2.7 GB of memory"
