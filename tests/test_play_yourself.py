"""Play it yourself as the page handles the browser's messages (issue 22): a good game joins
your games; each kind of bad message is refused with one clear line and nothing already played
is lost; kept games become the dataset. (The game itself, with real keys, is in
test_browser.py; here the component's message is given to the page directly.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_human import lean_player

from cartpole_core.human import game_seed

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list:
    """The messages the page's game will hand over, one per script run (None: still playing)."""
    import pages.game

    queue: list = []
    monkeypatch.setattr(pages.game, "game", lambda env_id, seed, number, key: queue.pop(0) if queue else None)
    return queue


def good(index: int, steps: int = 500) -> dict:
    seed = game_seed(index)
    return {"env_id": "CartPole-v1", "seed": seed, "actions": lean_player(seed, steps)}


def test_games_are_kept_bad_messages_refused_and_nothing_is_lost(sent: list, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CARTPOLE_LAB_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/play_yourself.py")
    at.run()
    assert any("No CartPole-v1 games yet" in i.value for i in at.info)

    sent.append(good(0, 40))
    at.run()
    assert not at.exception and not at.error
    lab = at.session_state["lab"]
    assert [g.score for g in lab.your_games] == [40]

    refusals = [
        ("left, right", "not a game"),
        ({"env_id": "CartPole-v1", "seed": 1, "actions": [0, 7]}, "Action 7 does not exist in CartPole-v1"),
        ({"env_id": "CartPole-v1", "seed": 1, "actions": [1] * 600}, "more than CartPole-v1's 500"),
        ({"env_id": "CartPole-v1", "seed": "x", "actions": [1]}, "is not a whole number"),
        ({"env_id": "CartPole-v1", "seed": game_seed(1), "actions": [1] * 300}, "ended at step"),
    ]
    for message, says in refusals:
        sent.append(message)
        at.run()
        assert not at.exception, at.exception
        [error] = [e.value for e in at.error]
        assert says in error and "\n" not in error
        assert len(at.session_state["lab"].your_games) == 1, "nothing already played is lost"
        assert at.dataframe, "the page keeps working: your games are still shown"

    sent.append(good(1))
    at.run()
    assert [g.score for g in at.session_state["lab"].your_games] == [40, 500]
    at.radio(key="you_keep_mode").set_value("best").run()  # the rule redraws the form: its number opens
    at.number_input(key="you_best").set_value(1)
    next(b for b in at.button if "Use these games" in b.label).click()
    at.run()
    dataset = at.session_state["lab"].dataset
    assert dataset.metadata["source"] == "your games" and dataset.n_games == 1 and len(dataset) == 500
    next(b for b in at.button if b.label == "Save as a run").click()
    at.run()
    assert any("Saved as run" in m.value for m in at.success), [m.value for m in at.success]
    from cartpole_core.storage import list_runs

    [run] = list_runs()
    assert run.has_dataset and run.settings["source"] == "your games"


def test_the_code_behind_your_games_gives_the_same_dataset(sent: list, tmp_path, monkeypatch) -> None:
    """Issue 23: Show the code beside your games: run in a fresh interpreter, it replays them
    and keeps the very dataset the page made."""
    import json
    import subprocess
    import sys

    import numpy as np

    monkeypatch.setenv("CARTPOLE_LAB_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/play_yourself.py")
    at.run()
    for index, steps in ((0, 60), (1, 500)):
        sent.append(good(index, steps))
        at.run()
    next(b for b in at.button if "Use these games" in b.label).click()
    at.run()
    assert not at.exception
    [code] = [c.value for c in at.code if "import cartpole_core as cl" in c.value]
    (tmp_path / "shown.py").write_text(code)
    probe = "import json, runpy; g = runpy.run_path('shown.py'); d = g['dataset']; " + (
        "print(json.dumps([d.observations.tolist(), d.actions.tolist(), d.game_scores.tolist()]))"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    observations, actions, scores = json.loads(done.stdout.splitlines()[-1])
    page = at.session_state["lab"].dataset
    assert np.array_equal(np.asarray(observations, dtype=np.float32), page.observations)
    assert actions == page.actions.tolist() and scores == page.game_scores.tolist() == [60.0, 500.0]
