"""The dashboard, driven headlessly with Streamlit's AppTest from the entrypoint.

Each test starts from ``app.py``, visits pages, presses their main buttons with small
budgets and checks that no exception was raised and that the key results appear.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = [
    "pages/home.py",
    "pages/glossary.py",
    "pages/random_play.py",
    "pages/generate.py",
    "pages/train.py",
    "pages/play.py",
    "pages/ensemble.py",
    "pages/generations.py",
    "pages/sweep.py",
    "pages/policy_map.py",
    "pages/compare.py",
    "pages/runs.py",
]
TIMEOUT = 300  # seconds per script run: TensorFlow's first import and training take a while


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    runs = tmp_path / "runs"
    monkeypatch.setenv("CARTPOLE_LAB_RUNS", str(runs))
    return runs


def start() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def visit(at: AppTest, page: str) -> AppTest:
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def press(at: AppTest, label: str) -> AppTest:
    """Click the button (or form submit button) whose label contains ``label`` and rerun."""
    matches = [b for b in at.button if label in b.label]
    assert matches, f"no button {label!r} among {[b.label for b in at.button]}"
    matches[0].click()
    at.run()
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def elements_of_type(at: AppTest, kind: str) -> list:
    found = []

    def walk(node) -> None:
        for child in getattr(node, "children", {}).values():
            if child.type == kind:
                found.append(child)
            walk(child)

    walk(at.main)
    return found


def gif_captions(at: AppTest) -> list[str]:
    images = elements_of_type(at, "image")
    return [img.proto.imgs[0].caption for img in images if img.proto.imgs[0].url.endswith(".gif")]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_without_error(page: str) -> None:
    at = visit(start(), page)
    assert at.title, "every page has a title"
    assert not at.error


def test_home_lists_the_pipeline_steps_not_done() -> None:
    at = start()
    text = " ".join(m.value for m in at.markdown)
    for step in ("Random play", "Generate data", "Train", "Play & evaluate", "Ensemble"):
        assert step in text
    assert "not yet" in text


def test_random_play_shows_scores_and_an_animated_gif() -> None:
    at = visit(start(), "pages/random_play.py")
    at.number_input(key="random_games").set_value(30)
    press(at, "Play random games")
    m = metrics(at)
    assert 8 <= float(m["Mean score"]) <= 60  # random CartPole games last ~22 steps
    assert len(gif_captions(at)) == 1
    assert at.get("vega_lite_chart"), "score histogram"
    assert any("What is a score" in i.value for i in at.info)


def _generate(at: AppTest, games: int = 3000, requirement: float = 50.0) -> AppTest:
    visit(at, "pages/generate.py")
    at.number_input(key="gen_games").set_value(games)
    at.number_input(key="gen_requirement").set_value(requirement)
    return press(at, "Play and keep the good games")


def _train_tiny(at: AppTest) -> AppTest:
    visit(at, "pages/train.py")
    at.text_input(key="train_hidden").set_value("32,32")
    at.number_input(key="train_epochs").set_value(1)
    return press(at, "Train")


def test_generate_shows_counters_and_keeps_the_dataset_when_nothing_is_kept() -> None:
    at = _generate(start())
    m = metrics(at)
    assert m["Games played"] == "3,000"
    kept = int(m["Kept"].replace(",", ""))
    assert 60 <= kept <= 160  # 3-5 % of 3,000
    assert 55 <= float(m["Average kept score"]) <= 70
    assert len(at.get("vega_lite_chart")) >= 2, "histogram with threshold + Counter chart"
    assert at.dataframe, "a peek at the rows"
    # A threshold no game reaches: a clear warning, and the previous dataset stays.
    _generate(at, games=200, requirement=400)
    assert any("No game reached score requirement 400" in w.value for w in at.warning)
    assert at.session_state["lab"].dataset.n_games == kept


def test_train_then_play_then_ensemble_then_runs() -> None:
    at = _generate(start())
    _train_tiny(at)
    m = metrics(at)
    assert 0.4 <= float(m["Accuracy"]) <= 0.8
    assert m["Epochs"] == "1"
    assert at.get("download_button"), "model download"

    visit(at, "pages/play.py")
    at.number_input(key="play_games").set_value(5)
    press(at, "Play")
    m = metrics(at)
    assert "network mean" in m and "random mean" in m
    assert float(m["random mean"]) < 60
    captions = gif_captions(at)
    assert len(captions) == 3 and captions[0].startswith("Best game")
    assert len(at.get("vega_lite_chart")) >= 2, "scores per game + choice ratios"

    visit(at, "pages/ensemble.py")
    at.number_input(key="ens_members").set_value(2)
    at.number_input(key="ens_games").set_value(5)
    press(at, "Train the members and compare")
    m = metrics(at)
    assert "Ensemble mean (soft vote)" in m and "Best member" in m
    assert at.get("vega_lite_chart")

    visit(at, "pages/play.py")
    at.selectbox(key="play_policy").set_value("ensemble")
    press(at, "Play")
    assert "ensemble mean" in metrics(at)

    press(at, "Save as a run")
    assert any("Saved as run" in s.value for s in at.success)
    visit(at, "pages/runs.py")
    assert at.dataframe, "runs table"
    assert at.get("vega_lite_chart"), "score comparison"
    press(at, "Yes, delete it for everyone")  # in the Delete popover: asked first (issue 20)
    visit(at, "pages/runs.py")
    assert any("No run has been saved yet" in i.value for i in at.info)


def test_generations_policy_map_and_compare() -> None:
    at = _generate(start())
    _train_tiny(at)

    visit(at, "pages/generations.py")
    at.number_input(key="imp_generations").set_value(2)
    at.number_input(key="imp_games").set_value(20)
    at.number_input(key="imp_eval").set_value(10)
    at.number_input(key="imp_confirm").set_value(10)
    press(at, "Run generations")
    m = metrics(at)
    assert m["Generations"] == "2"
    assert "On fresh games (greedy)" in m and "Best evaluation mean (greedy)" in m
    assert len(at.get("vega_lite_chart")) >= 2, "scores per generation + kept games per generation"
    assert at.session_state["lab"].model_source.startswith("generation "), "the best generation became the model"
    press(at, "Make the time-lapse GIF")
    assert gif_captions(at) == [
        "The same game, played by each generation in turn (sped up), with its generation's mean"
    ]

    visit(at, "pages/policy_map.py")
    charts = at.get("vega_lite_chart")
    assert charts and "P(push right)" in str(charts[0].proto.spec)
    assert any("overlaid game lasted" in c.value for c in at.caption)

    visit(at, "pages/compare.py")
    at.multiselect(key="cmp_players").set_value(["random", "current model", "generation 1"])
    at.number_input(key="cmp_seeds").set_value(2)
    at.number_input(key="cmp_games").set_value(3)
    press(at, "Compare")
    table = at.dataframe[0].value
    assert list(table["player"]) == ["random", "current model", "generation 1"]
    assert len(at.get("vega_lite_chart")) >= 3, "means with CI, choice ratios, inspector"


def _sweep_form(at: AppTest, seeds: str = "0-1", **values: str) -> AppTest:
    """On the Sweep page: 300 random games, threshold 30, 10 evaluation games, and the
    varied settings given as vary1/values1, vary2/values2."""
    visit(at, "pages/sweep.py")
    at.number_input(key="sweep_games").set_value(300)
    at.number_input(key="sweep_requirement").set_value(30.0)
    at.number_input(key="sweep_eval").set_value(10)
    at.text_input(key="sweep_seeds").set_value(seeds)
    for i in (1, 2):
        if f"vary{i}" in values:
            at.selectbox(key=f"sweep_notebook_vary{i}").set_value(values[f"vary{i}"])
            at.text_input(key=f"sweep_notebook_vary{i}_values").set_value(values[f"values{i}"])
    return at


def test_sweep_runs_trials_shows_the_grid_and_trains_the_best() -> None:
    """Issue 10: a sweep from the dashboard, trials as Ray tasks; a failing value is a
    failed row with its error, the others go on."""
    at = _sweep_form(start(), vary1="hidden", values1="16", vary2="score_requirement", values2="30,1000")
    press(at, "Run the sweep")
    assert not at.error
    result = at.session_state["lab"].sweep
    assert result is not None and not result.stopped
    statuses = [t.status for t in result.trials]
    assert statuses.count("done") == 2 and statuses.count("failed") == 2, statuses
    trials = at.dataframe[-1].value
    assert list(trials.columns)[:3] == ["settings", "seed", "status"]
    failed = trials[trials["status"] == "failed"]
    assert len(failed) == 2 and failed["error"].str.contains("1000").all(), failed["error"].tolist()
    assert (trials[trials["status"] == "done"]["mean"].astype(float) > 0).all()
    summary = at.dataframe[0].value
    assert list(summary["score requirement"]) == ["30", "1000"] and summary["seeds"].tolist() == [2, 0]
    chart = at.get("vega_lite_chart")[0].proto
    assert '"rect"' in chart.spec and '"text"' in chart.spec, "a heatmap with the mean written in each cell"
    assert b"no result" in chart.datasets[0].data.data, "the cell where every trial failed says so"
    assert metrics(at)["Trials done"] == "2 of 4"
    assert any("Best settings" in s.value and "hidden layers 16, score requirement 30" in s.value for s in at.success)

    press(at, "Train with the best settings")
    lab = at.session_state["lab"]
    assert lab.model is not None and lab.model_source.startswith("sweep best: hidden layers 16, score requirement 30")
    assert lab.dataset is not None and lab.evaluation is not None
    assert any("It is now this session's dataset and model" in s.value for s in at.success)
    press(at, "Save as a run")
    assert any("Saved as run" in s.value for s in at.success)


def test_a_generations_sweep_runs_and_says_where_to_go_on() -> None:
    at = visit(start(), "pages/sweep.py")
    at.radio(key="sweep_mode").set_value("generations").run()
    at.number_input(key="sweep_generations").set_value(1)
    at.number_input(key="sweep_games_per_generation").set_value(20)
    at.number_input(key="sweep_eval").set_value(5)
    at.text_input(key="sweep_seeds").set_value("2")  # seed 0's first network already masters the game
    at.text_input(key="sweep_generations_vary1_values").set_value("0.2,0.5")
    press(at, "Run the sweep")
    assert not at.error and metrics(at)["Trials done"] == "2 of 2"
    trials = at.dataframe[-1].value
    assert list(trials["settings"]) == ["best share kept 0.2", "best share kept 0.5"]
    assert (trials["generations"] == 2).all()
    assert not [b for b in at.button if "Train with the best" in b.label], "training the best is for notebook sweeps"
    assert any("Generations page" in c.value for c in at.caption)


def test_a_bad_sweep_value_is_an_error_and_the_page_keeps_working() -> None:
    at = _sweep_form(start(), vary1="epochs", values1="1,x")
    press(at, "Run the sweep")
    assert any("epochs 'x' is not a valid value" in e.value for e in at.error), [e.value for e in at.error]
    at.text_input(key="sweep_notebook_vary1_values").set_value("1,2")
    at.text_input(key="sweep_seeds").set_value("0-29")
    press(at, "Run the sweep")
    assert any("60 trials" in e.value and "at most 40" in e.value for e in at.error), [e.value for e in at.error]
    at.text_input(key="sweep_notebook_vary1_values").set_value("1,5000")
    at.text_input(key="sweep_seeds").set_value("0")
    press(at, "Run the sweep")
    assert any("Epochs 5000 is over this server's limit" in e.value for e in at.error), [e.value for e in at.error]
    assert at.session_state["lab"].sweep is None, "no sweep ran"
    assert [b.label for b in at.button if "Run the sweep" in b.label], "the form is still there"


def test_a_shared_link_reproduces_the_page_settings() -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/generate.py")
    at.query_params.update({"gen_games": "2500", "gen_requirement": "60.0", "gen_seed": "7"})
    at.run()
    assert not at.exception
    assert at.number_input(key="gen_games").value == 2500
    assert at.number_input(key="gen_requirement").value == 60.0
    assert at.number_input(key="gen_seed").value == 7
    link = at.code[0].value
    assert "gen_games=2500" in link and "gen_seed=7" in link and "gen_env=CartPole-v1" in link


def test_a_bad_link_value_is_ignored_with_a_warning() -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/generate.py")
    at.query_params.update({"gen_games": "lots", "gen_seed": "-3"})
    at.run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "gen_games='lots' was ignored" in warnings and "gen_seed='-3' was ignored" in warnings
    assert at.number_input(key="gen_games").value == 10_000


def test_bad_form_input_is_an_error_and_the_page_keeps_its_data() -> None:
    at = _generate(start())
    visit(at, "pages/train.py")
    at.text_input(key="train_hidden").set_value("128,abc")
    press(at, "Train")
    assert any("Hidden layers must be whole numbers" in e.value for e in at.error)
    assert at.session_state["lab"].dataset is not None, "the dataset is still there"
    at.text_input(key="train_hidden").set_value("16")
    at.number_input(key="train_epochs").set_value(1)
    press(at, "Train")
    assert not at.error and "Accuracy" in metrics(at)


def test_runs_page_survives_a_damaged_run(_runs_dir: Path) -> None:
    bad = _runs_dir / "20260101-000000-broken"
    bad.mkdir(parents=True)
    (bad / "run.json").write_text("{not json")
    at = visit(start(), "pages/runs.py")
    assert any("damaged" in w.value for w in at.warning)


def test_pages_that_need_data_say_so() -> None:
    at = start()
    for page in ("pages/train.py", "pages/ensemble.py"):
        visit(at, page)
        assert any("no dataset" in w.value for w in at.warning)


@pytest.mark.slow
def test_home_runs_the_whole_notebook_in_one_click() -> None:
    at = start()
    press(at, "Run the whole notebook")
    m = metrics(at)
    assert float(m["Training accuracy"]) > 0.55
    assert float(m["Network's average score"]) > 2 * float(m["Random play's average"])
    assert 3.0 <= float(m["Kept games"].replace(",", "")) / 100 <= 5.0  # 3-5 % of 10,000
    assert "done" in " ".join(x.value for x in at.markdown)


def test_a_finished_session_leaves_nothing_behind() -> None:
    """Nothing outside a session (job slots, trainers, caches) keeps its data: once the
    session is gone, its dataset, model and results are freed."""
    import gc
    import weakref

    at = _generate(start())
    _train_tiny(at)
    visit(at, "pages/play.py")
    at.number_input(key="play_games").set_value(3)
    press(at, "Play")
    lab = at.session_state["lab"]
    assert lab.dataset is not None and lab.model is not None and lab.evaluation is not None
    refs = {name: weakref.ref(getattr(lab, name)) for name in ("dataset", "model", "training", "evaluation")}
    refs["lab"] = weakref.ref(lab)
    del lab, at
    gc.collect()
    alive = [name for name, ref in refs.items() if ref() is not None]
    assert not alive, f"still referenced after the session ended: {alive}"


@pytest.mark.parametrize(("env_id", "games"), [("Acrobot-v1", 120), ("LunarLander-v3", 200)])
def test_another_game_on_generate_keeps_games_with_its_own_defaults(env_id: str, games: int) -> None:
    """Picking a game with another score scale switches to its defaults (the best 5 %), so the
    defaults keep games where CartPole's 50 would keep none (issue 11)."""
    at = visit(start(), "pages/generate.py")
    assert at.radio(key="gen_rule").value == "score"  # CartPole: the notebook's score requirement
    at.selectbox(key="gen_env").set_value(env_id).run()
    assert not at.exception
    assert at.radio(key="gen_rule").value == "share" and at.number_input(key="gen_keep_top").value == 5.0
    at.number_input(key="gen_games").set_value(games)
    press(at, "Play and keep the good games")
    lab = at.session_state["lab"]
    assert lab.dataset is not None and lab.dataset.env_id == env_id and lab.dataset.n_games > 0
    assert any("the best 5 % of games asked" in h.value for h in at.subheader)


def test_train_writes_tensorboard_logs_and_says_how_to_open_them(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CARTPOLE_LAB_LOGS", str(tmp_path / "logs"))
    at = _generate(start())
    visit(at, "pages/train.py")
    at.text_input(key="train_hidden").set_value("16")
    at.number_input(key="train_epochs").set_value(1)
    at.checkbox(key="train_tensorboard").check()
    press(at, "Train")
    [folder] = (tmp_path / "logs").iterdir()
    assert any(p.name.startswith("events.out.tfevents") for p in folder.rglob("*"))
    text = " ".join(m.value for m in at.markdown)
    assert f"tensorboard --logdir {tmp_path / 'logs'}" in text and str(folder) in text
    assert any(b.label == "Download the logs (.zip)" for b in at.get("download_button"))


def test_the_web_server_trains_and_plays_without_tensorflow() -> None:
    """Training, the ensemble and generations run as Ray jobs: the dashboard's own process
    never imports TensorFlow, yet its session gets the networks and plays them (in NumPy).
    Run in a fresh interpreter: this test process has TensorFlow from other tests."""
    import subprocess
    import sys

    code = f"""
import sys
sys.path.insert(0, {str(Path(APP).parent)!r})
from streamlit.testing.v1 import AppTest
import tests.test_app as t
at = t.start()
t._generate(at)
t._train_tiny(at)
t.visit(at, "pages/play.py")
at.number_input(key="play_games").set_value(3)
t.press(at, "Play")
t.visit(at, "pages/ensemble.py")
at.number_input(key="ens_members").set_value(2)
at.number_input(key="ens_games").set_value(3)
t.press(at, "Train the members")
lab = at.session_state["lab"]
assert lab.model is not None and lab.model.gradient_steps > 0, lab.model
assert lab.evaluation is not None and lab.ensemble_eval is not None
assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "TensorFlow was loaded in the web server"
import ray
ray.shutdown()
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=str(Path(APP).parent), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


#: The step limit of each suggested env's own game (Gymnasium's registration).
OWN_STEPS = {"CartPole-v1": 500, "Acrobot-v1": 500, "MountainCar-v0": 200, "LunarLander-v3": 1000}


@pytest.mark.parametrize("env_id", list(OWN_STEPS))
def test_every_page_plays_the_envs_own_game(env_id: str) -> None:
    """Issue 19: Random play, Play, Compare and the Generations page play each env's own game
    (its own step limit), so a score on any page is comparable with Gymnasium's. MountainCar's
    random games last exactly its 200 steps (-200), not 500."""
    at = visit(start(), "pages/random_play.py")
    at.selectbox(key="random_env").set_value(env_id).run()
    at.number_input(key="random_games").set_value(4)
    press(at, "Play random games")
    lab = at.session_state["lab"]
    assert lab.random_play.config.goal_steps == OWN_STEPS[env_id]
    if env_id == "MountainCar-v0":
        assert (lab.random_play.scores == -200).all()
        return  # random play never keeps a MountainCar game: its journey goes through Generations
    visit(at, "pages/generate.py")
    at.selectbox(key="gen_env").set_value(env_id).run()
    at.number_input(key="gen_games").set_value(150)
    press(at, "Play and keep the good games")
    assert at.session_state["lab"].dataset.env_id == env_id
    _train_tiny(at)
    visit(at, "pages/play.py")
    assert at.selectbox(key="play_mode").value == ("sampled" if env_id == "LunarLander-v3" else "greedy")
    at.number_input(key="play_games").set_value(2)
    press(at, "Play")
    played = at.session_state["lab"].evaluation
    assert played.config.goal_steps == OWN_STEPS[env_id] and played.config.env_id == env_id
    visit(at, "pages/compare.py")
    at.multiselect(key="cmp_players").set_value(["random", "current model"])
    at.number_input(key="cmp_seeds").set_value(2)
    at.number_input(key="cmp_games").set_value(2)
    press(at, "Compare")
    assert not at.error
    visit(at, "pages/generations.py")
    text = " ".join(c.value for c in at.caption)
    assert f"games of up to {OWN_STEPS[env_id]:,} steps" in text and "Games are picked by" in text


#: Each page that plays a game, and its game picker.
PICKERS = {
    "pages/random_play.py": "random_env",
    "pages/play_yourself.py": "you_env",
    "pages/generate.py": "gen_env",
    "pages/train.py": "train_env",
    "pages/play.py": "play_env",
    "pages/ensemble.py": "ens_env",
    "pages/generations.py": "imp_env",
    "pages/sweep.py": "sweep_env",
    "pages/policy_map.py": "map_env",
    "pages/compare.py": "cmp_env",
}


def test_the_game_picked_on_one_page_is_every_pages_game() -> None:
    """Issue 30, item 1: one game per session. Generate, drawn first with CartPole, does not
    switch the game back after LunarLander is picked on Random play; every page's picker shows
    the session's game, and switching it on one page switches it for all. (AppTest runs a page
    alone, without app.py's sidebar: the browser test reads the sidebar.)"""
    at = visit(start(), "pages/generate.py")
    assert at.selectbox(key="gen_env").value == "CartPole-v1"
    visit(at, "pages/random_play.py")
    at.selectbox(key="random_env").set_value("LunarLander-v3").run()
    assert not at.exception
    for page, key in PICKERS.items():
        visit(at, page)
        picked = at.selectbox(key=key).value
        assert picked == (None if page == "pages/play_yourself.py" else "LunarLander-v3"), (page, picked)
        assert at.session_state["lab"].env_id == "LunarLander-v3", page  # what the sidebar says
        if page == "pages/play_yourself.py":  # not a game a person plays here: it says so
            assert any("LunarLander-v3 cannot be played by hand" in i.value for i in at.info)

    visit(at, "pages/generations.py")
    assert any(c.value.startswith("LunarLander-v3: games of up to 1,000 steps") for c in at.caption)
    at.selectbox(key="imp_env").set_value("CartPole-v1").run()
    for page, key in PICKERS.items():
        visit(at, page)
        assert at.selectbox(key=key).value == "CartPole-v1", page
    assert at.session_state["lab"].env_id == "CartPole-v1"


def test_a_shared_link_sets_the_game_once_on_arrival() -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/generate.py")
    at.query_params["gen_env"] = "Acrobot-v1"
    at.run()
    assert not at.exception
    assert at.selectbox(key="gen_env").value == "Acrobot-v1" and at.session_state["lab"].env_id == "Acrobot-v1"
    at.selectbox(key="gen_env").set_value("CartPole-v1").run()  # the link does not switch it back
    assert at.selectbox(key="gen_env").value == "CartPole-v1" and at.session_state["lab"].env_id == "CartPole-v1"
    visit(at, "pages/random_play.py")
    assert at.selectbox(key="random_env").value == "CartPole-v1"


def test_a_model_and_dataset_of_another_game_are_refused_with_the_fix() -> None:
    """A CartPole model and dataset, then LunarLander picked: the pages say so in one line and
    offer what fits; Generations starts from a first network for LunarLander; the results made
    on CartPole are put away, not shown under LunarLander."""
    at = _generate(start(), games=1000)
    _train_tiny(at)
    visit(at, "pages/play.py")
    at.number_input(key="play_games").set_value(2)
    press(at, "Play")
    assert at.subheader and "CartPole-v1" in at.subheader[0].value
    at.selectbox(key="play_env").set_value("LunarLander-v3").run()
    assert not at.exception
    line = "Your model plays CartPole-v1; this page plays LunarLander-v3"
    assert any(w.value.startswith(line) for w in at.warning)
    assert at.selectbox(key="play_policy").options == ["random"]
    assert not any("CartPole-v1" in h.value for h in at.subheader), "CartPole's evaluation is put away"
    assert any(c.value.startswith("Your last evaluation was on CartPole-v1") for c in at.caption)

    visit(at, "pages/generations.py")
    assert any(w.value.startswith(line) for w in at.warning)
    assert at.radio(key="imp_start").options == ["a first network trained on random games"]
    for page in ("pages/train.py", "pages/ensemble.py", "pages/compare.py"):
        visit(at, page)
        assert any(
            w.value.startswith("Your dataset is of CartPole-v1; this page plays LunarLander-v3") for w in at.warning
        ), page
    visit(at, "pages/policy_map.py")
    assert any(w.value.startswith(line) for w in at.warning) and not at.get("vega_lite_chart")

    visit(at, "pages/train.py")
    press(at, "Play CartPole-v1 again")
    assert at.session_state["lab"].env_id == "CartPole-v1" and at.selectbox(key="train_env").value == "CartPole-v1"
    assert not at.warning
