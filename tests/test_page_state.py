"""What a page keeps and says about the session's work (a review of the pages, after sessions
began to survive a reload and two tabs began to share one session):

- Compare's result lives in the session's Lab, so it comes back after a reload, and is put
  away while another game is picked;
- a job of this session still running elsewhere (another tab, or the tab before its reload)
  is said on Train, Generations and Sweep, their main button does not replace it, and the
  Generations verdict does not say it "ended";
- a run cut at the Stop button or the progress bar (a rerun, a closed tab) leaves no job
  "running" for ever;
- Play & evaluate does not film again on every click after filming failed, and offers to;
- a random player the visitor picked beside a network is kept when an ensemble appears (in a
  real browser: tests/test_player_browser.py).

A reload is a new AppTest session given the first one's Lab (what ``pages/sessions.py`` does
for a browser's cookie). Streamlit's AppTest from the entrypoint, small budgets.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

import pages.common
from pages.common import STILL_RUNNING, run_with_stop
from tests.test_app import _generate, _runs_dir, _train_tiny, press, start, visit  # noqa: F401

REFUSED = "Nothing was started: a job of this session is still running."


def _texts(at: AppTest, kind: str) -> list[str]:
    return [x.value for x in at.get(kind)]


def _reloaded(at: AppTest, page: str) -> AppTest:
    """A new session (a reloaded tab) that the server gave ``at``'s Lab, on ``page``."""
    again = start()
    again.session_state["lab"] = at.session_state["lab"]
    return visit(again, page)


def test_a_comparison_comes_back_after_a_reload_and_is_put_away_with_its_game() -> None:
    at = visit(start(), "pages/compare.py")
    at.multiselect(key="cmp_players").set_value(["random"])
    at.number_input(key="cmp_seeds").set_value(2)
    at.number_input(key="cmp_games").set_value(2)
    press(at, "Compare")
    title = "Every player on the same games, the networks always their most probable move"
    assert title in _texts(at, "subheader")

    again = _reloaded(at, "pages/compare.py")
    assert title in _texts(again, "subheader"), "the comparison came back with the session"
    assert again.dataframe[0].value["player"].tolist() == ["random"]

    again.selectbox(key="cmp_env").set_value("Acrobot-v1").run()
    assert title not in _texts(again, "subheader")
    assert any(c.startswith("Your last comparison was on CartPole-v1") for c in _texts(again, "caption"))
    again.selectbox(key="cmp_env").set_value("CartPole-v1").run()
    assert title in _texts(again, "subheader"), "shown again with its game"


def _running(at: AppTest, field: str, **record: Any) -> dict[str, Any]:
    """Make the Lab's ``field`` a job record of a job running in another script run."""
    live = {**record, "done": False, "stopped": None, "running": True}
    setattr(at.session_state["lab"], field, live)
    return live


def test_a_training_running_elsewhere_is_said_and_not_replaced() -> None:
    at = _train_tiny(_generate(start(), games=600))
    lab = at.session_state["lab"]
    model = lab.model
    live = _running(at, "live_training", source="8 network, seed 0", env_id="CartPole-v1")
    visit(at, "pages/train.py")
    assert STILL_RUNNING in _texts(at, "info")

    press(at, "Train")
    assert any(w.startswith(REFUSED) for w in _texts(at, "warning"))
    assert lab.live_training is live and live["running"], "the running job's record is not replaced"
    assert lab.model is model, "nothing trained"

    live.update(running=False, done=True)  # it ended (its own script run keeps its result)
    at.run()
    assert STILL_RUNNING not in _texts(at, "info")


def test_a_sweep_running_elsewhere_is_said_and_not_replaced() -> None:
    at = start()
    live = _running(at, "sweep_live", trials=[])
    visit(at, "pages/sweep.py")
    assert STILL_RUNNING in _texts(at, "info")
    at.number_input(key="sweep_games").set_value(300)
    press(at, "Run the sweep")
    assert any(w.startswith(REFUSED) for w in _texts(at, "warning"))
    assert at.session_state["lab"].sweep_live is live and at.session_state["lab"].sweep is None


def test_generations_running_elsewhere_say_so_and_not_that_the_run_ended() -> None:
    at = visit(start(), "pages/generations.py")
    at.number_input(key="imp_generations").set_value(1)
    at.number_input(key="imp_games").set_value(60)
    at.number_input(key="imp_eval").set_value(10)
    at.number_input(key="imp_confirm").set_value(0)
    at.number_input(key="imp_first_games").set_value(300)
    press(at, "Run generations")
    lab = at.session_state["lab"]
    live = lab.improve_live
    assert live["records"] and not live["running"]
    # Its twin in another tab, mid-run: the records so far, no result yet.
    live.update(running=True, done=False)
    lab.improve = None

    again = _reloaded(at, "pages/generations.py")
    assert STILL_RUNNING in _texts(again, "info")
    [verdict] = [i for i in _texts(again, "info") if i.startswith("Not mastered yet")]
    assert "ended" not in verdict
    assert verdict.endswith("so far: generation 1 is the last measured, and the run goes on.")
    press(again, "Run generations")
    assert any(w.startswith(REFUSED) for w in _texts(again, "warning"))
    assert lab.improve_live is live, "the running job's record is not replaced"


def test_a_run_cut_before_its_job_starts_leaves_nothing_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rerun or a closed tab ends the script at a Streamlit call: one that comes while the Stop
    button or the progress bar is drawn must not leave the job "running" for ever (every page
    would then say a job runs, and refuse to start one)."""

    class Rerun(Exception):  # stands for Streamlit's own, raised inside its calls
        pass

    def cut(label: str) -> Any:
        raise Rerun

    monkeypatch.setattr(pages.common, "progress_bar", cut)
    live: dict[str, Any] = {"done": True}
    with pytest.raises(Rerun):
        run_with_stop(live, "Training", lambda progress, keep: None, key="cut", stop_help="Stop.")
    assert not live.get("running"), live


def test_play_does_not_film_again_on_every_click_after_filming_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _train_tiny(_generate(start(), games=600))
    visit(at, "pages/play.py")
    at.number_input(key="play_games").set_value(2)
    press(at, "Play")
    lab = at.session_state["lab"]
    # The notebook's evaluation comes without films (Home's one click): this page films it.
    lab.notebook, lab.evaluation_gifs = SimpleNamespace(evaluation=lab.evaluation), {}
    tries = []
    real = pages.common.ray_job

    def failing_film(label: str, *args: Any, **kwargs: Any) -> Any:
        if label == "Filming":
            tries.append(label)
            raise RuntimeError("the film broke")
        return real(label, *args, **kwargs)

    monkeypatch.setattr(pages.common, "ray_job", failing_film)
    at.run()
    assert len(tries) == 1 and any("the film broke" in e for e in _texts(at, "error"))
    for games in (3, 4):  # other clicks: no new filming
        at.number_input(key="play_games").set_value(games).run()
        assert not at.exception and len(tries) == 1
    assert any(c.startswith("Filming the best and the worst game failed") for c in _texts(at, "caption"))
    press(at, "Film again")
    assert len(tries) == 2

    monkeypatch.setattr(pages.common, "ray_job", real)
    press(at, "Film again")
    assert set(lab.evaluation_gifs) == {"best", "worst", "random"} and not lab.film_failed
