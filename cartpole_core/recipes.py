"""The code behind a result: each page's "Show the code" and the session's notebook.

A :class:`Recipe` is the Python (using the public face, ``import cartpole_core as cl``) that
reproduces one result of the dashboard from its settings, and the ``cartpole-lab`` command
where there is one. Settings are written from the config dataclasses themselves (only the
fields that differ from their defaults), so the code and the page cannot disagree.

A recipe reads what it starts from (``dataset.npz``, ``model.keras``) from files the page
offers beside it, and names its own results ``dataset`` and ``model``, so that in a notebook
the next step goes on from them without reading a file.

Pure: no Streamlit, no TensorFlow; strings in, strings out.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cartpole_core import wheel
from cartpole_core.ensemble import EnsembleConfig, EnsembleEvaluation
from cartpole_core.errors import default
from cartpole_core.evaluate import EvaluationConfig, EvaluationResult
from cartpole_core.generate import GenerationConfig, GenerationResult
from cartpole_core.improve import ImproveConfig, ImproveResult
from cartpole_core.model import ModelConfig
from cartpole_core.pipeline import NotebookConfig, NotebookResult
from cartpole_core.sweep import SweepConfig, SweepResult
from cartpole_core.training import TrainingConfig, TrainingResult

#: The first code cell of a notebook installs the library: this, then the wheel's file name.
INSTALL_CELL_PREFIX = "%pip install "
#: The session's notebook, as Home's zip names it.
NOTEBOOK_FILE = "cartpole-lab-session.ipynb"

#: The file names a recipe reads and writes.
DATASET_FILE, MODEL_FILE = "dataset.npz", "model.keras"
FILES = {"dataset": DATASET_FILE, "model": MODEL_FILE}

#: First lines of code that trains: the dashboard trains in workers of one thread each. The
#: same thread count gives the same sums; with more threads TensorFlow may split them
#: differently and the last digits, then the games, can move (bench stage 10 saw sweep trials
#: trained in one process and on Ray's workers evaluate differently; on this project's 2-core
#: test machine a small network's losses came out equal either way).
#: TensorFlow's thread counts of the dashboard's workers, as environment variables (read once,
#: when TensorFlow starts). The ``cartpole-lab`` command sets them too, so the shown command and
#: the shown code train alike whatever the machine's core count.
ONE_THREAD_ENV = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
ONE_THREAD = (
    "import os\n\n"
    "# Train as the dashboard does, on one thread: the same sums, the same numbers.\n"
    "os.environ.update(" + ", ".join(f'{name}="{value}"' for name, value in ONE_THREAD_ENV.items()) + ")\n"
)


@dataclass(frozen=True)
class Recipe:
    """The code that reproduces one result."""

    title: str
    """The step, e.g. "Generate data"."""
    what: str
    """What the step does, one or two sentences (markdown)."""
    body: str
    """The step's code, using ``cl`` and the names ``dataset`` / ``model`` when it needs them."""
    needs: tuple[str, ...] = ()
    """What the body uses that an earlier step makes: ``"dataset"``, ``"model"``."""
    makes: tuple[str, ...] = ()
    """What the body names for the next steps: ``"dataset"``, ``"model"``."""
    expect: str = ""
    """The numbers the dashboard showed (markdown), for the notebook."""
    command: str | None = None
    """The equivalent ``cartpole-lab`` command line, where there is one."""
    trains: bool = False
    """The code trains a network (it then pins TensorFlow to one thread, see :data:`ONE_THREAD`)."""

    def loads(self, kinds: tuple[str, ...] | None = None) -> str:
        """Lines reading what the body needs (or only ``kinds`` of it) from the files
        downloaded beside it."""
        reads = {
            "dataset": f'dataset = cl.load_dataset("{DATASET_FILE}")  # downloaded beside this code\n',
            "model": f'model = cl.load_model("{MODEL_FILE}")  # downloaded beside this code\n',
        }
        return "".join(line for kind, line in reads.items() if kind in self.needs and (kinds is None or kind in kinds))

    def files(self) -> tuple[str, ...]:
        """The files the standalone code reads."""
        return tuple(FILES[kind] for kind in ("dataset", "model") if kind in self.needs)

    def python(self) -> str:
        """The standalone program: it reads its inputs from files and runs the step."""
        loads = self.loads()
        head = (ONE_THREAD if self.trains else "") + "import cartpole_core as cl\n\n"
        return head + (loads + "\n" if loads else "") + self.body


def recipe_from_json(data: dict[str, Any]) -> Recipe:
    """A :class:`Recipe` back from its JSON form (``dataclasses.asdict``, as a saved run keeps it)."""
    names = {f.name for f in dataclasses.fields(Recipe)}
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return Recipe(**values)


def settings(config: Any, prefix: str = "cl.") -> str:
    """``cl.Config(field=value, ...)`` with the fields of a config dataclass that differ from
    their defaults (nested configs written the same way)."""
    parts = []
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        value = getattr(config, f.name)
        try:
            if value == default(type(config), f.name):
                continue
        except KeyError:  # no default: always written
            pass
        text = settings(value, prefix) if dataclasses.is_dataclass(value) else _literal(value)
        parts.append(f"{f.name}={text}")
    return f"{prefix}{type(config).__name__}({', '.join(parts)})"


def _literal(value: Any) -> str:
    """A setting's value as Python source (NumPy scalars as plain numbers, 10_000 for 10000)."""
    if type(value).__module__ == "numpy":
        value = value.item()
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:_}"
    return repr(value)


def _command(*parts: Any) -> str:
    """A command line from parts; None parts (and the flag before them) are left out."""
    words: list[str] = ["cartpole-lab"]
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(part, str) and part.startswith("--") and i + 1 < len(parts) and not _is_flag(parts[i + 1]):
            value = parts[i + 1]
            if value is not None:
                words += [part, shlex.quote(repr(value) if isinstance(value, float) else str(value))]
            i += 2
            continue
        if part is not None:
            words.append(shlex.quote(str(part)))
        i += 1
    return " ".join(words)


def _is_flag(part: Any) -> bool:
    return isinstance(part, str) and part.startswith("--")


def _scores(result: EvaluationResult) -> str:
    scores = [f"{score:g}" for score in result.scores[:20]]
    more = f", … ({len(result.scores)} games)" if len(result.scores) > 20 else ""
    return f"mean {result.mean:.2f}; game by game {', '.join(scores)}{more}"


def generate_recipe(config: GenerationConfig, result: GenerationResult | None = None) -> Recipe:
    """Random games, the good ones kept as a dataset (the Generate data page)."""
    shown = ""
    if result is not None:
        mean = "–" if result.accepted_mean is None else f"{result.accepted_mean:.2f}"
        median = "–" if result.accepted_median is None else f"{result.accepted_median:g}"
        shown = (
            f"{result.accepted:,} of {result.games:,} games kept ({result.acceptance_rate:.1%}); "
            f"mean kept score {mean}, median {median}."
        )
    body = (
        f"generation = cl.generate({settings(config)})\n"
        "dataset = generation.dataset\n"
        'print("games played:", generation.games, "| kept:", generation.accepted)\n'
        'print("acceptance rate:", generation.acceptance_rate)\n'
        'print("mean kept score:", generation.accepted_mean, "| median:", generation.accepted_median)\n'
        f'cl.save_dataset(dataset, "{DATASET_FILE}")\n'
    )
    command = _command(
        "generate", "--env", config.env_id, "--games", config.games, "--goal-steps", config.goal_steps,
        "--score-requirement", None if config.keep_top is not None else config.score_requirement,
        "--keep-top", config.keep_top, "--seed", config.seed, "--out", DATASET_FILE,
    )  # fmt: skip
    return Recipe(
        "Generate data",
        f"Play {config.games:,} games of {config.env_id} with random pushes and keep the good ones as training rows.",
        body,
        makes=("dataset",),
        expect=shown,
        command=command,
    )


def train_recipe(
    model_config: ModelConfig, training_config: TrainingConfig, seed: int, result: TrainingResult | None = None
) -> Recipe:
    """A new network trained on the dataset (the Train page)."""
    shown = ""
    if result is not None and result.final_accuracy is not None:
        shown = (
            f"accuracy {result.final_accuracy:.3f} and loss {result.final_loss:.4f} after "
            f"{result.epochs_completed} epoch(s)" + (" (stopped)." if result.stopped_early else ".")
        )
    body = (
        "model = cl.build_model(dataset.obs_dim, dataset.n_actions, "
        f"{settings(model_config)}, seed={seed})\n"
        f"training = cl.train(model, dataset, {settings(training_config)})\n"
        'print("accuracy per epoch:", training.epoch_history["accuracy"])\n'
        'print("loss per epoch:", training.epoch_history["loss"])\n'
        f'cl.save_model(model, "{MODEL_FILE}")\n'
    )
    hidden = ",".join(str(units) for units in model_config.hidden)
    command = _command(
        "train", "--data", DATASET_FILE, "--epochs", training_config.epochs, "--batch-size", training_config.batch_size,
        "--lr", model_config.learning_rate, "--hidden", hidden, "--dropout", model_config.dropout,
        "--validation-split", training_config.validation_split or None, "--seed", seed, "--out", MODEL_FILE,
    )  # fmt: skip
    return Recipe(
        "Train",
        "Train a new network to choose the action the kept games chose, from what the player saw.",
        body,
        needs=("dataset",),
        makes=("model",),
        expect=shown,
        command=command if _cli_trains_alike(training_config, seed) else None,
        trains=True,
    )


def _cli_trains_alike(training_config: TrainingConfig, seed: int) -> bool:
    """The CLI's ``train`` seeds the network and the shuffling with one ``--seed``."""
    return training_config.seed == seed


def play_recipe(
    config: EvaluationConfig, played: EvaluationResult | None = None, randomly: EvaluationResult | None = None
) -> Recipe:
    """The network and random play on the same games (the Play & evaluate page)."""
    shown = ""
    if played is not None and randomly is not None:
        shown = f"the network: {_scores(played)}. Random play: {_scores(randomly)}."
    body = (
        "player = cl.ModelPolicy(model)\n"
        f"games = {settings(config)}\n"
        "played = cl.evaluate(player, games)\n"
        "randomly = cl.evaluate(cl.RandomPolicy(player.n_actions), games)  # random play on the same games\n"
        'print("network scores:", played.scores.tolist())\n'
        'print("random scores:", randomly.scores.tolist())\n'
        'print("network mean:", played.mean, "| random mean:", randomly.mean)\n'
    )
    plain = not (config.sample_actions or config.epsilon or config.keep_observations)
    command = _command(
        "evaluate", MODEL_FILE, "--env", config.env_id, "--games", config.games, "--goal-steps", config.goal_steps,
        "--seed", config.seed,
    )  # fmt: skip
    return Recipe(
        "Play & evaluate",
        f"Let the network play {config.games:,} games of {config.env_id}, and random play the same games.",
        body,
        needs=("model",),
        expect=shown,
        command=command if plain else None,
    )


def random_play_recipe(config: EvaluationConfig, n_actions: int, result: EvaluationResult | None = None) -> Recipe:
    """Random play (the Random play page)."""
    shown = "" if result is None else f"{_scores(result)}."
    body = (
        f"randomly = cl.evaluate(cl.RandomPolicy({n_actions}), {settings(config)})\n"
        'print("scores:", randomly.scores.tolist())\n'
        'print("mean:", randomly.mean)\n'
    )
    return Recipe(
        "Random play",
        f"Watch {config.games:,} games of {config.env_id} played with random pushes.",
        body,
        expect=shown,
        command=_command("evaluate", "random", "--env", config.env_id, "--games", config.games, "--seed", config.seed),
    )


def improve_recipe(config: ImproveConfig, from_model: bool, result: ImproveResult | None = None) -> Recipe:
    """Generations: the network keeps its own best games and retrains (the Generations page)."""
    shown = ""
    if result is not None:
        means = ", ".join(f"{g.mean:.1f}" for g in result.generations)
        shown = (
            f"mean score per generation {means}; the best, generation {result.best_generation}, "
            f"averaged {result.best_mean:.1f}."
        )
    start = "model" if from_model else "None"
    body = (
        f"improved = cl.improve({settings(config)}, {start})\n"
        "for g in improved.generations:\n"
        '    print("generation", g.generation, "| mean", g.mean, "| median", g.median)\n'
        'print("best generation:", improved.best_generation, "| its mean:", improved.best_mean)\n'
        "model = improved.model\n"
        f'cl.save_model(model, "{MODEL_FILE}")\n'
    )
    return Recipe(
        "Generations",
        "Let the network play, keep its own best games, retrain on them, and again, generation after generation.",
        body,
        needs=("model",) if from_model else (),
        makes=("model",),
        expect=shown,
        trains=True,
    )


def ensemble_recipe(
    model_config: ModelConfig,
    training_config: TrainingConfig,
    config: EnsembleConfig,
    games: EvaluationConfig,
    result: EnsembleEvaluation | None = None,
) -> Recipe:
    """Weak networks that vote, each member against the ensemble on the same games (the Ensemble page)."""
    shown = ""
    if result is not None:
        members = ", ".join(f"{m.mean:.1f}" for m in result.members)
        shown = f"members' means {members}; the ensemble's {result.ensemble.mean:.1f}."
    body = (
        f"ensemble = cl.train_ensemble(dataset, {settings(model_config)}, {settings(training_config)}, "
        f"{settings(config)})\n"
        f"voted = cl.evaluate_ensemble(ensemble.policy(), {settings(games)})\n"
        'print("members\' means:", [m.mean for m in voted.members])\n'
        'print("ensemble mean:", voted.ensemble.mean)\n'
        'print("members disagree on:", voted.disagreement)\n'
    )
    return Recipe(
        "Ensemble",
        f"Train {config.members} weak networks and let them vote ({config.vote} vote), each member against the "
        "ensemble on the same games.",
        body,
        needs=("dataset",),
        expect=shown,
        trains=True,
    )


def notebook_recipe(config: NotebookConfig, result: NotebookResult | None = None) -> Recipe:
    """The reference notebook end to end: generate, train, play (Home's one click)."""
    shown = ""
    if result is not None:
        g, t = result.generation, result.training
        shown = (
            f"{g.accepted:,} of {g.games:,} games kept, training accuracy {t.final_accuracy:.3f}, the network's "
            f"mean {result.evaluation.mean:.1f} against {result.random_evaluation.mean:.1f} for random play."
        )
    body = (
        f"notebook = cl.run_notebook({settings(config)})\n"
        "dataset, model = notebook.generation.dataset, notebook.model\n"
        'print("kept:", notebook.generation.accepted, "of", notebook.generation.games)\n'
        'print("training accuracy:", notebook.training.final_accuracy)\n'
        'print("network scores:", notebook.evaluation.scores.tolist())\n'
        'print("random scores:", notebook.random_evaluation.scores.tolist())\n'
    )
    return Recipe(
        "The whole notebook",
        "The reference notebook end to end: random games, keep the good ones, train the notebook's network, "
        "let it play beside random play.",
        body,
        makes=("dataset", "model"),
        expect=shown,
        command=_command("run", "--seed", config.generation.seed, "--eval-games", config.evaluation_games)
        if config == NotebookConfig(generation=GenerationConfig(seed=config.generation.seed),
                                    evaluation_games=config.evaluation_games)
        else None,
        trains=True,
    )  # fmt: skip


def sweep_recipe(config: SweepConfig, result: SweepResult | None = None) -> Recipe:
    """Every combination of settings over seeds, each trial a Ray task (the Sweep page)."""
    shown = ""
    if result is not None and result.best is not None:
        shown = (
            f"{len(result.trials)} trials; the best settings {result.best.settings} averaged {result.best.mean:.1f}."
        )
    body = (
        f"swept = cl.sweep({settings(config)})\n"
        "for trial in swept.trials:\n"
        '    print(trial.settings, "seed", trial.seed, "| mean", None if trial.scores is None else trial.scores.mean)\n'
        'print("best:", None if swept.best is None else (swept.best.settings, swept.best.mean))\n'
    )
    return Recipe(
        "Sweep",
        "Run every combination of the varied settings once per seed, and compare the means over seeds.",
        body,
        expect=shown,
        trains=True,
    )


def policy_map_recipe(
    base: Any, x_dim: int, y_dim: int, x_range: tuple[float, float], y_range: tuple[float, float], resolution: int
) -> Recipe:
    """The network's action probabilities over two observation values, the others held at
    ``base`` (the Policy map page)."""
    values = ", ".join(repr(float(v)) for v in base)
    x_lo, x_hi = (float(v) for v in x_range)
    y_lo, y_hi = (float(v) for v in y_range)
    body = (
        f"held = [{values}]  # every observation value where the map does not vary it\n"
        f"grid = cl.probability_grid(cl.ModelPolicy(model), held, x_dim={x_dim}, y_dim={y_dim}, "
        f"x_range=({x_lo!r}, {x_hi!r}), y_range=({y_lo!r}, {y_hi!r}), resolution={resolution})\n"
        "# grid.probabilities[row, column, action]: rows follow grid.ys, columns grid.xs\n"
        'print("P(each action) at the middle of the map:", grid.probabilities[len(grid.ys) // 2, len(grid.xs) // 2])\n'
    )
    return Recipe(
        "Policy map",
        "The network's probability of each action over a grid of two observation values.",
        body,
        needs=("model",),
    )


def compare_recipe(players: list[str], n_actions: int, games: EvaluationConfig, seeds: list[int]) -> Recipe | None:
    """Players on the same games over several seeds (the Compare page), for players the code
    can make: ``"random"`` and ``"current model"`` (None for any other)."""
    if not set(players) <= {"random", "current model"}:
        return None
    made = {"random": f"cl.RandomPolicy({n_actions})", "current model": 'cl.ModelPolicy(model, name="current model")'}
    listed = ", ".join(f"{name!r}: {made[name]}" for name in players)
    body = (
        f"players = {{{listed}}}\n"
        f"compared = cl.compare(players, {settings(games)}, seeds={seeds!r})\n"
        "for c in compared:\n"
        '    print(c.name, "| mean per seed:", c.seed_means.tolist())\n'
    )
    return Recipe(
        "Compare",
        "Several players on the same games, over several seeds, with the mean per seed.",
        body,
        needs=("model",) if "current model" in players else (),
    )


def your_games_recipe(games: list[Any]) -> Recipe:
    """Your games (Play it yourself) replayed in Gymnasium and kept as a dataset: ``games``
    are :class:`~cartpole_core.human.HumanGame` (their env, start seed and actions)."""
    listed = "".join(
        f"    PlayedGame({g.env_id!r}, seed={int(g.seed)}, actions=({', '.join(str(int(a)) for a in g.actions)},)),\n"
        for g in games
    )
    body = (
        "from cartpole_core.human import PlayedGame, games_dataset, replay\n\n"
        "played = [  # each game: where it started and every action you took\n"
        f"{listed}]\n"
        "games = [replay(game) for game in played]  # Gymnasium plays your actions again\n"
        'print("scores:", [game.score for game in games])\n'
        "dataset = games_dataset(games)\n"
        f'cl.save_dataset(dataset, "{DATASET_FILE}")\n'
    )
    return Recipe(
        "Your games",
        f"The {len(games)} game(s) you played, replayed in Gymnasium and kept as a dataset.",
        body,
        makes=("dataset",),
        expect=f"scores {', '.join(f'{g.score:g}' for g in games)}.",
    )


def notebook_cells(recipes: list[Recipe]) -> list[tuple[str, str]]:
    """The session's steps as notebook cells, ``("markdown" | "code", source)`` in order: each
    step's code after a markdown cell saying what it does and what the dashboard showed. A
    step reads a file only when no earlier step made what it needs."""
    trains = any(r.trains for r in recipes)
    cells: list[tuple[str, str]] = [
        ("markdown", "# CartPole Lab: this session's steps\n\nEach step below reproduces a result the dashboard "
         "showed, with the same settings and seeds.\n\nThe first cell installs the library from its wheel, "
         f"downloaded with this notebook into the notebook's folder, with the versions the dashboard runs "
         f"(Python {wheel.PYTHONS}; a fresh virtual environment is best)."),
        ("code", INSTALL_CELL_PREFIX + wheel.wheel_name()),
        ("code", (ONE_THREAD if trains else "") + "import cartpole_core as cl"),
    ]  # fmt: skip
    for recipe, reads in zip(recipes, notebook_reads(recipes), strict=True):
        text = f"## {recipe.title}\n\n{recipe.what}"
        if recipe.expect:
            text += f"\n\nThe dashboard showed: {recipe.expect}"
        cells.append(("markdown", text))
        cells.append(("code", (recipe.loads(reads) + recipe.body).rstrip("\n")))
    return cells


def notebook_reads(recipes: list[Recipe]) -> list[tuple[str, ...]]:
    """Per step of a notebook, what it reads from a file: what it needs that no earlier step made."""
    made: set[str] = set()
    reads = []
    for recipe in recipes:
        reads.append(tuple(kind for kind in recipe.needs if kind not in made))
        made |= set(recipe.makes)
    return reads


def notebook_bytes(recipes: list[Recipe]) -> bytes:
    """The session's steps (:func:`notebook_cells`) as a Jupyter notebook (``.ipynb``, nbformat 4)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    make = {"markdown": new_markdown_cell, "code": new_code_cell}
    book = new_notebook(
        cells=[make[kind](source) for kind, source in notebook_cells(recipes)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.validate(book)
    return nbformat.writes(book).encode()


def take_home_zip(recipes: list[Recipe], files: Mapping[str, bytes]) -> bytes:
    """One zip to unpack into an empty folder and run: the notebook (:data:`NOTEBOOK_FILE`),
    the library's wheel its first cell installs, and ``files`` (file name -> bytes: what the
    notebook reads, :func:`notebook_reads`). The same bytes for the same inputs."""
    parts = {NOTEBOOK_FILE: notebook_bytes(recipes), wheel.wheel_name(): wheel.wheel_bytes(), **files}
    return wheel.zip_bytes(parts.items())
