"""Show the code: the Python a page shows, run in a fresh interpreter, gives the page's numbers.

A session goes random play -> generate -> train -> play -> generations with small budgets
(Streamlit's AppTest; every job on the local Ray, as in the served app). After each result
the test takes the code the page shows, writes the files the page offers beside it (the
same bytes as its download buttons), runs the code with a new Python in an empty folder,
and compares what the code computed with what the page showed: kept games, mean and
median, training accuracy and loss per epoch, and scores game for game. Equal, not close:
the code trains on one thread as the dashboard's workers do (``recipes.ONE_THREAD``).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from cartpole_core.recipes import DATASET_FILE, MODEL_FILE
from cartpole_core.storage import dataset_to_bytes
from cartpole_core.wheel import wheel_name
from pages.common import score_text

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 300


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTPOLE_LAB_RUNS", str(tmp_path / "runs"))


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def _visit(at: AppTest, page: str) -> AppTest:
    at.switch_page(page)
    return _run(at)


def _press(at: AppTest, label: str) -> AppTest:
    matches = [b for b in at.button if label in b.label]
    assert matches, f"no button {label!r} among {[b.label for b in at.button]}"
    matches[0].click()
    return _run(at)


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _shown_code(at: AppTest) -> str:
    """The page's "Show the code" Python (the one code block that imports the library)."""
    blocks = [c.value for c in at.code if "import cartpole_core as cl" in c.value]
    assert len(blocks) == 1, f"{len(blocks)} code blocks on the page"
    return blocks[0]


def _shown_command(at: AppTest) -> str:
    """The page's "same on the command line" (the one code block starting with ``cartpole-lab``)."""
    blocks = [c.value for c in at.code if c.value.startswith("cartpole-lab ")]
    assert len(blocks) == 1, f"{len(blocks)} command lines on the page"
    return blocks[0]


def _chart_frame(chart: Any) -> Any:
    """The first dataset of a Vega-Lite chart on the page, as a pandas frame (Arrow IPC)."""
    import pyarrow as pa

    return pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_all().to_pandas()


def _in_the_checkout(book: Any) -> Any:
    """The notebook without its first code cell, which installs the library from its wheel:
    here the checkout is on the path (tests/test_take_home.py runs that cell in a fresh venv)."""
    first = next(i for i, c in enumerate(book.cells) if c.cell_type == "code")
    assert book.cells[first].source == f"%pip install {wheel_name()}", "the first code cell installs the library"
    del book.cells[first]
    return book


def _run_command(command: str, folder: Path) -> dict[str, Any]:
    """The shown ``cartpole-lab`` command, run in ``folder`` (as ``python -m cartpole_core``), its
    ``--json``; no thread count set in its environment, so TensorFlow may use every core unless
    the command pins it (as it must, to train as the dashboard's workers do)."""
    return json.loads(_fresh_python(["-m", "cartpole_core", *shlex.split(command)[1:], "--json", "--quiet"], folder))


def _fresh_python(args: list[str], folder: Path) -> str:
    """``python args`` in a new interpreter in ``folder`` that knows nothing of this one but
    where the project is; its stdout (it must succeed)."""
    done = subprocess.run(
        [sys.executable, *args], cwd=folder, capture_output=True, text=True, timeout=600,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "HOME": str(folder)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _step(at: AppTest, page: str) -> Any:
    return next(s for s in reversed(at.session_state["lab"].steps) if s.page == page)


def _run_elsewhere(code: str, folder: Path, step: Any, names: str) -> dict[str, Any]:
    """Run ``code`` with a fresh Python in ``folder`` (holding the files the page offers),
    then read the variables ``names`` computes (a Python expression of the code's globals) as JSON."""
    folder.mkdir()
    if f'load_dataset("{DATASET_FILE}")' in code:
        (folder / DATASET_FILE).write_bytes(dataset_to_bytes(step.dataset))
    if f'load_model("{MODEL_FILE}")' in code:
        (folder / MODEL_FILE).write_bytes(step.model.keras_file)
    (folder / "shown.py").write_text(code)
    probe = textwrap.dedent(
        f"""
        import json, runpy
        g = runpy.run_path("shown.py")
        print("RESULT " + json.dumps({names}, default=float))
        """
    )
    out = _fresh_python(["-c", probe], folder)
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_the_code_each_page_shows_gives_the_pages_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(AppTest.from_file(APP, default_timeout=TIMEOUT))

    # Random play: scores game for game.
    _visit(at, "pages/random_play.py")
    at.number_input(key="random_games").set_value(7)
    at.number_input(key="random_seed").set_value(3)
    _press(at, "Play random games")
    shown = at.session_state["lab"].random_play
    got = _run_elsewhere(
        _shown_code(at), tmp_path / "random", _step(at, "random_play"), 'g["randomly"].scores.tolist()'
    )
    assert got == shown.scores.tolist()

    # Generate: kept games, mean and median as the page's counters show them.
    _visit(at, "pages/generate.py")
    at.number_input(key="gen_games").set_value(3000)
    at.number_input(key="gen_seed").set_value(5)
    _press(at, "Play and keep the good games")
    m = _metrics(at)
    got = _run_elsewhere(
        _shown_code(at), tmp_path / "generate", _step(at, "generate"),
        '[g["generation"].games, g["generation"].accepted, g["generation"].accepted_mean, '
        'g["generation"].accepted_median, g["dataset"].observations.sum().item()]',
    )  # fmt: skip
    assert f"{got[0]:,}" == m["Games played"] and f"{got[1]:,}" == m["Kept"]
    assert f"{got[2]:.1f}" == m["Average kept score"] and score_text(got[3]) == m["Median kept score"]
    assert got[4] == pytest.approx(float(at.session_state["lab"].dataset.observations.sum()), abs=0)
    done = _run_command(_shown_command(at), tmp_path / "generate")
    assert (done["games"], done["accepted"]) == (got[0], got[1])

    # Train: accuracy and loss of every epoch, to the last digit.
    _visit(at, "pages/train.py")
    at.text_input(key="train_hidden").set_value("32,32")
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_seed").set_value(4)
    _press(at, "Train")
    history = at.session_state["lab"].training.epoch_history
    code = _shown_code(at)
    assert "seed=4" in code and "epochs=2" in code
    got = _run_elsewhere(code, tmp_path / "train", _step(at, "train"), 'g["training"].epoch_history')
    assert got["accuracy"] == history["accuracy"] and got["loss"] == history["loss"]
    assert f"{got['accuracy'][-1]:.3f}" == _metrics(at)["Accuracy"]
    done = _run_command(_shown_command(at), tmp_path / "train")  # reads the dataset.npz written above
    assert done["history"]["accuracy"] == history["accuracy"], "the command line trains alike"
    _press(at, "Save as a run")  # Runs offers it as a notebook (checked at the end)

    # Play & evaluate: the network's and random play's scores, game for game.
    _visit(at, "pages/play.py")
    at.number_input(key="play_games").set_value(6)
    _press(at, "Play")
    lab = at.session_state["lab"]
    got = _run_elsewhere(
        _shown_code(at), tmp_path / "play", _step(at, "play"),
        '[g["played"].scores.tolist(), g["randomly"].scores.tolist()]',
    )  # fmt: skip
    assert got == [lab.evaluation.scores.tolist(), lab.evaluation_random.scores.tolist()]
    baseline = lab.evaluation_random  # (the next model forgets it)

    # Policy map (drawn live, no click): the probability in every cell of the heatmap.
    _visit(at, "pages/policy_map.py")
    code = _shown_code(at)
    heat = _chart_frame(at.get("vega_lite_chart")[0])
    got = _run_elsewhere(code, tmp_path / "map", lab.steps[-1], 'g["grid"].probabilities[:, :, -1].ravel().tolist()')
    assert got == heat["p"].tolist()

    # Compare: each player's mean on every seed.
    _visit(at, "pages/compare.py")
    at.multiselect(key="cmp_players").set_value(["random", "current model"])
    at.number_input(key="cmp_seeds").set_value(2)
    at.number_input(key="cmp_games").set_value(3)
    _press(at, "Compare")
    shown = [[c.name, c.seed_means.tolist()] for c in at.session_state["lab"].comparison.results]
    got = _run_elsewhere(
        _shown_code(at), tmp_path / "compare", _step(at, "compare"),
        '[[c.name, c.seed_means.tolist()] for c in g["compared"]]',
    )  # fmt: skip
    assert got == shown

    # Generations, from the network just trained: every generation's mean.
    _visit(at, "pages/generations.py")
    at.number_input(key="imp_generations").set_value(2)
    at.number_input(key="imp_games").set_value(20)
    at.number_input(key="imp_eval").set_value(10)
    at.number_input(key="imp_confirm").set_value(10)
    _press(at, "Run generations")
    means = [r.mean for r in at.session_state["lab"].improve.generations]
    got = _run_elsewhere(
        _shown_code(at), tmp_path / "generations", _step(at, "generations"),
        '[r.mean for r in g["improved"].generations]',
    )  # fmt: skip
    assert got == means

    # The whole session as a notebook (Home's download), run in a fresh kernel: its outputs
    # hold the numbers every page showed.
    _visit(at, "pages/home.py")
    assert any(b.proto.label == "Download the notebook with the library (.zip)" for b in at.get("download_button"))
    _notebook_holds_the_pages_numbers(at, tmp_path / "notebook", monkeypatch, baseline)

    # Runs: the saved training as a notebook of its own, reading the run's dataset.
    _visit(at, "pages/runs.py")
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download as a Jupyter notebook" in labels and wheel_name() in labels, "the notebook and the library"
    _a_runs_notebook_trains_alike(tmp_path / "run_notebook", history)


def _a_runs_notebook_trains_alike(folder: Path, history: dict[str, list[float]]) -> None:
    import nbclient
    import nbformat

    from cartpole_core.recipes import notebook_bytes, recipe_from_json
    from cartpole_core.storage import list_runs, load_run_dataset

    (run,) = list_runs()
    recipe = recipe_from_json(run.results["code"])
    assert recipe.files() == (DATASET_FILE,)
    folder.mkdir()
    (folder / DATASET_FILE).write_bytes(dataset_to_bytes(load_run_dataset(run.run_id)))
    book = _in_the_checkout(nbformat.reads(notebook_bytes([recipe]).decode(), as_version=4))
    nbclient.NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    out = "\n".join(o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.outputs if "text" in o)
    assert f"accuracy per epoch: {history['accuracy']}" in out, out


def _notebook_holds_the_pages_numbers(
    at: AppTest, folder: Path, monkeypatch: pytest.MonkeyPatch, played_randomly: Any
) -> None:
    import nbclient
    import nbformat

    from cartpole_core.recipes import notebook_bytes

    lab = at.session_state["lab"]
    assert [s.page for s in lab.steps] == ["random_play", "generate", "train", "play", "compare", "generations"]
    book = _in_the_checkout(nbformat.reads(notebook_bytes([s.recipe for s in lab.steps]).decode(), as_version=4))
    code = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    assert "load_dataset" not in code and "load_model" not in code, "each step goes on from the one before"
    folder.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    nbclient.NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    out = "\n".join(
        o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"
    )
    g, t, e = lab.generation, lab.steps[2].made, lab.steps[3].made
    r = played_randomly
    expected = [
        f"scores: {lab.random_play.scores.tolist()}",
        f"games played: {g.games} | kept: {g.accepted}",
        f"mean kept score: {g.accepted_mean} | median: {g.accepted_median}",
        f"accuracy per epoch: {t.epoch_history['accuracy']}",
        f"network scores: {e.scores.tolist()}",
        f"random scores: {r.scores.tolist()}",
        *(f"generation {x.generation} | mean {x.mean} | median {x.median}" for x in lab.improve.generations),
    ]
    for line in expected:
        assert line in out, f"{line!r} not in the notebook's outputs:\n{out}"
    # Each step's markdown says what the dashboard showed.
    notes = "\n".join(c.source for c in book.cells if c.cell_type == "markdown")
    assert f"{g.accepted:,} of {g.games:,} games kept" in notes and f"accuracy {t.final_accuracy:.3f}" in notes


def test_the_code_of_home_ensemble_and_sweep_gives_their_numbers(tmp_path: Path) -> None:
    at = _run(AppTest.from_file(APP, default_timeout=TIMEOUT))

    # Home: the whole notebook in one click (10,000 games, the notebook's network, 10 games).
    at.number_input(key="home_seed").set_value(2)
    _press(at, "Run the whole notebook")
    r = at.session_state["lab"].notebook
    got = _run_elsewhere(
        _shown_code(at), tmp_path / "home", _step(at, "home"),
        '[g["notebook"].generation.accepted, g["notebook"].training.epoch_history, '
        'g["notebook"].evaluation.scores.tolist(), g["notebook"].random_evaluation.scores.tolist()]',
    )  # fmt: skip
    assert got == [
        r.generation.accepted, r.training.epoch_history, r.evaluation.scores.tolist(),
        r.random_evaluation.scores.tolist(),
    ]  # fmt: skip
    done = _run_command(_shown_command(at), tmp_path / "home")
    assert done["generate"]["accepted"] == r.generation.accepted
    assert done["train"]["history"] == r.training.epoch_history, "the command line trains alike"

    # Ensemble: each member's mean and the ensemble's, on the same games.
    _visit(at, "pages/ensemble.py")
    at.number_input(key="ens_members").set_value(2)
    at.number_input(key="ens_games").set_value(5)
    _press(at, "Train the members and compare")
    ev = at.session_state["lab"].ensemble_eval
    got = _run_elsewhere(
        _shown_code(at), tmp_path / "ensemble", _step(at, "ensemble"),
        '[[m.scores.tolist() for m in g["voted"].members], g["voted"].ensemble.scores.tolist()]',
    )  # fmt: skip
    assert got == [[m.scores.tolist() for m in ev.members], ev.ensemble.scores.tolist()]

    # Sweep: every trial's mean (two networks × two seeds, each trial a Ray task, here and there).
    _visit(at, "pages/sweep.py")
    at.number_input(key="sweep_games").set_value(300)
    at.number_input(key="sweep_requirement").set_value(30.0)
    at.number_input(key="sweep_eval").set_value(10)
    at.text_input(key="sweep_seeds").set_value("0-1")
    at.selectbox(key="sweep_notebook_vary1").set_value("hidden")
    at.text_input(key="sweep_notebook_vary1_values").set_value("16,8")
    _press(at, "Run the sweep")
    trials = at.session_state["lab"].sweep.trials
    got = _run_elsewhere(
        _shown_code(at), tmp_path / "sweep", _step(at, "sweep"),
        '[[t.seed, t.scores.mean] for t in sorted(g["swept"].trials, key=lambda t: t.index)]',
    )  # fmt: skip
    assert got == [[t.seed, t.scores.mean] for t in sorted(trials, key=lambda t: t.index)]


def test_a_notebook_reads_a_file_only_where_no_earlier_step_made_it() -> None:
    """A session that began from an uploaded dataset: its notebook's training reads dataset.npz
    (Home offers it beside the notebook); after a generation it reads nothing."""
    from cartpole_core.evaluate import EvaluationConfig
    from cartpole_core.generate import GenerationConfig
    from cartpole_core.model import ModelConfig
    from cartpole_core.recipes import generate_recipe, notebook_cells, notebook_reads, play_recipe, train_recipe
    from cartpole_core.training import TrainingConfig

    train, play = train_recipe(ModelConfig(), TrainingConfig(), 0), play_recipe(EvaluationConfig())
    assert notebook_reads([train, play]) == [("dataset",), ()]
    assert notebook_reads([play, train]) == [("model",), ("dataset",)]
    assert notebook_reads([generate_recipe(GenerationConfig()), train, play]) == [(), (), ()]
    code = [source for kind, source in notebook_cells([train, play]) if kind == "code"]
    assert code[0] == f"%pip install {wheel_name()}", "the first cell installs the library"
    assert code[2].startswith('dataset = cl.load_dataset("dataset.npz")') and "load_model" not in code[3]
