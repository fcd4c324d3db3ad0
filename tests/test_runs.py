"""The Runs page and saving, driven with AppTest from the entrypoint: runs belong to the
session that saved them (or the operator), each visitor keeps a quota, a folder that cannot
be written is one line, and the class board."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app import press, start, visit

from cartpole_core.errors import UserError
from cartpole_core.storage import OPERATOR_TOKEN_ENV, RunRecord, delete_run, list_runs, save_run

TOKEN = "operator-token-for-the-test"


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    runs = tmp_path / "runs"
    monkeypatch.setenv("CARTPOLE_LAB_RUNS", str(runs))
    monkeypatch.setenv(OPERATOR_TOKEN_ENV, TOKEN)
    return runs


def labels(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def generate_and_save(at: AppTest) -> AppTest:
    visit(at, "pages/generate.py")
    at.number_input(key="gen_games").set_value(300)
    at.number_input(key="gen_requirement").set_value(30.0)
    press(at, "Play and keep the good games")
    return press(at, "Save as a run")


def secret(at: AppTest) -> str:
    return at.session_state["lab"].owner_secret


def everything_drawn(at: AppTest) -> str:
    """Every element the page sent to the browser, as text."""
    parts: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    walk(at.sidebar)
    return "\n".join(parts)


def board_table(at: AppTest, env_id: str):
    """The class board's table of ``env_id`` (its tab's table) as a DataFrame."""
    (tab,) = [t for t in at.tabs if t.label == env_id]
    return tab.dataframe[0].value


def save_for(at: AppTest, name: str, root: Path, **results) -> str:
    """A run saved with ``at``'s session secret (as its Save button does), without a job."""
    env_id, board_name = results.pop("env_id", "CartPole-v1"), results.pop("board_name", "")
    record = RunRecord(
        kind="evaluate",
        name=name,
        settings={"env_id": env_id, "games": 10, "seed": 0},
        results={"policy": "network", **results},
        board_name=board_name,
    )
    return save_run(record, root=root, owner_secret=secret(at)).run_id


def test_a_run_is_deleted_only_by_the_session_that_saved_it_or_the_operator(_runs_dir: Path) -> None:
    a, b = start(), start()
    generate_and_save(a)
    assert any("Saved as run" in s.value for s in a.success)
    (run,) = list_runs()
    assert secret(a) != secret(b) and run.owned_by(secret(a)) and not run.owned_by(secret(b))

    visit(b, "pages/runs.py")
    assert "Yes, delete it for everyone" not in labels(b), "another visitor sees no way to delete it"
    locked = b.button(key="runs_delete_locked")
    assert locked.disabled and "another visitor" in locked.help
    assert b.dataframe[-1].value["by"].tolist() == ["another visitor"]
    with pytest.raises(UserError, match="another visitor"):  # a forged request: the check is the server's
        delete_run(run.run_id, owner_secret=secret(b))
    assert secret(a) not in everything_drawn(visit(a, "pages/runs.py")), "the secret never reaches the page"

    b.text_input(key="_runs_operator_token").set_value("not-the-token").run()
    assert any("not this server's operator token" in e.value for e in b.error)
    assert "Yes, delete it for everyone" not in labels(b)

    assert a.dataframe[-1].value["by"].tolist() == ["you"]
    press(a, "Yes, delete it for everyone")
    assert list_runs() == []

    again = save_for(a, "second", _runs_dir)
    b.text_input(key="_runs_operator_token").set_value(TOKEN).run()
    assert any("Operator" in s.value for s in b.success)
    press(b, "Yes, delete it for everyone")
    assert again not in {r.run_id for r in list_runs()} and not b.exception


def test_each_visitor_keeps_a_quota_of_runs(monkeypatch: pytest.MonkeyPatch, _runs_dir: Path) -> None:
    from pages.server import LIMITS

    monkeypatch.setitem(LIMITS, "runs_per_visitor", 2)
    other = start()
    theirs = save_for(other, "another visitor's", _runs_dir)
    at = generate_and_save(start())
    press(at, "Save as a run")
    press(at, "Save as a run")
    assert any("Your 1 oldest made room: each visitor keeps 2 runs" in s.value for s in at.success)
    runs = list_runs()
    assert len([r for r in runs if r.owned_by(secret(at))]) == 2 and theirs in {r.run_id for r in runs}

    monkeypatch.setitem(LIMITS, "runs_kept", 3)
    monkeypatch.setitem(LIMITS, "runs_per_visitor", 5)
    press(at, "Save as a run")
    assert any("holds its most runs (3): nothing was saved" in e.value for e in at.error)
    assert theirs in {r.run_id for r in list_runs()} and len(list_runs()) == 3
    assert at.session_state["lab"].dataset is not None, "the session keeps its dataset"


def test_a_folder_that_cannot_be_written_is_one_line_and_nothing_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("")  # a folder under a plain file: unwritable even for root
    monkeypatch.setenv("CARTPOLE_LAB_RUNS", str(tmp_path / "a-file" / "runs"))
    at = generate_and_save(start())
    (line,) = [e.value for e in at.error]
    assert line.startswith("Runs cannot be saved on this server") and "CARTPOLE_LAB_RUNS" in line
    assert "\n" not in line and "Something went wrong" not in line
    assert at.session_state["lab"].dataset is not None and at.metric, "the result is still on the page"
    visit(at, "pages/runs.py")
    assert any(w.value.startswith("Runs cannot be saved") and "Saving is off" in w.value for w in at.warning)


def test_the_board_ranks_runs_under_the_names_chosen_and_the_operator_clears_it(_runs_dir: Path) -> None:
    a, b = start(), start()
    save_for(a, "a's", _runs_dir, mean=480.0, games_played=2000, seconds_taken=12.0)
    save_for(b, "b's", _runs_dir, mean=500.0, games_played=3000, seconds_taken=9.0, board_name="Bo")
    save_for(b, "b's acrobot", _runs_dir, mean=-95.0, env_id="Acrobot-v1", board_name="Bo")
    save_for(b, "random", _runs_dir, mean=20.0, policy="random")

    visit(a, "pages/runs.py")
    assert [t.label for t in a.tabs] == ["CartPole-v1", "Acrobot-v1"], "this session's env first"
    cartpole = board_table(a, "CartPole-v1")
    assert cartpole["name"].tolist() == ["Bo", "anonymous (you)"]
    assert cartpole["games played"].tolist() == [3000, 2000] and cartpole["mean on fresh games"].tolist() == [500, 480]

    a.text_input(key="runs_board_name").set_value("x" * 31).run()
    assert any("at most 30 characters" in e.value for e in a.error) and not a.exception
    a.text_input(key="runs_board_name").set_value("Ada").run()
    assert not a.error and a.session_state["lab"].board_name == "Ada"
    press(a, "Put it on my 1 saved run(s)")
    assert board_table(a, "CartPole-v1")["name"].tolist() == ["Bo", "Ada (you)"]
    assert "Clear the board" not in labels(a), "only the operator clears it"

    a.text_input(key="_runs_operator_token").set_value(TOKEN).run()
    press(a, "Clear the board")
    assert any("Nobody is on the board yet" in i.value for i in a.info)
    assert len(list_runs()) == 4, "the runs stay"
    generate_and_save(a)
    assert list_runs()[0].board_name == "Ada", "a new run takes the name chosen"
    assert not any("class board" in s.value for s in a.success), "a Generate run is not on the board"


def test_a_played_network_enters_the_board_with_its_games_and_seconds(_runs_dir: Path) -> None:
    at = start()
    visit(at, "pages/generate.py")
    at.number_input(key="gen_games").set_value(1000)
    press(at, "Play and keep the good games")
    visit(at, "pages/train.py")
    at.text_input(key="train_hidden").set_value("16")
    at.number_input(key="train_epochs").set_value(1)
    press(at, "Train")
    visit(at, "pages/play.py")
    at.number_input(key="play_games").set_value(5)
    press(at, "Play")
    press(at, "Save as a run")
    assert any("On the class board (Runs) as “anonymous”" in s.value for s in at.success)
    (run,) = list_runs()
    lab = at.session_state["lab"]
    assert run.results["games_played"] == 1000 and run.results["fresh"] is True
    assert run.results["seconds_taken"] == pytest.approx(lab.generation.seconds + lab.training.seconds)
    visit(at, "pages/runs.py")
    (row,) = board_table(at, "CartPole-v1").to_dict("records")
    assert row["games played"] == 1000 and row["mean on fresh games"] == pytest.approx(run.results["mean"])
