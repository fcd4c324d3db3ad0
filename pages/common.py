"""What every page shares: this session's lab state, the env picker, progress bars,
error display and the charts. Pages stay thin: widgets -> a config -> one cartpole_core
call -> these charts.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import re
import secrets
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlencode

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from cartpole_core.envs import DEFAULT_ENV_ID, ENV_DEFAULTS, SUGGESTED_ENV_IDS, EnvInfo, env_info, target_words
from cartpole_core.errors import UserError, bounds
from cartpole_core.errors import default as default_of
from cartpole_core.progress import Progress, ProgressCallback
from cartpole_core.storage import ANONYMOUS, RunRecord, board_score, list_runs, save_run
from pages import sessions
from pages.server import LIMITS, ray_job  # noqa: F401  (re-exported for the pages)

if TYPE_CHECKING:
    from cartpole_core.dataset import Dataset
    from cartpole_core.ensemble import EnsembleEvaluation, EnsembleResult
    from cartpole_core.evaluate import EvaluationConfig, EvaluationResult
    from cartpole_core.generate import GenerationResult
    from cartpole_core.human import HumanGame
    from cartpole_core.improve import ImproveResult
    from cartpole_core.model import Network
    from cartpole_core.pipeline import NotebookResult
    from cartpole_core.recipes import Recipe
    from cartpole_core.sweep import SweepResult
    from cartpole_core.training import TrainingResult


def _leave_legacy_page_mode() -> None:
    """Run every page through ``app.py``'s navigation, even on a server's first requests.

    Streamlit treats a ``pages/`` folder next to the entry point as its legacy multipage
    layout until some script calls ``st.navigation``, and a run that starts in that mode
    draws a page alone: without the app's sidebar, with a menu of every file in ``pages/``
    (``common``, ``server``…). The first visitors of a fresh server got that (a shared
    link opened first; ten visitors arriving at once). A run in that mode turns it off for
    the server and starts again, now through ``app.py``. Called by :func:`lab`, which every
    page calls first.
    """
    from streamlit.runtime.pages_manager import PagesManager

    legacy = False
    frame = sys._getframe(1)
    while frame is not None:
        where = frame.f_code.co_filename.replace("\\", "/")
        if "/streamlit/testing/" in where:
            # AppTest turns the legacy mode back on before each of its runs, so a rerun here
            # would swallow the test's click; there app.py's navigation drives the page anyway.
            return
        legacy = legacy or (frame.f_code.co_name == "_mpa_v1" and "/streamlit/" in where)
        frame = frame.f_back  # type: ignore[assignment]
    if legacy:  # this run began in the legacy mode (Streamlit's ``_mpa_v1`` is running it)
        PagesManager.uses_pages_directory = False
        st.rerun()


ACCENT = "#d1495b"
RANDOM_COLOR = "#8d99ae"
MODEL_COLOR = "#00798c"
#: Each kind of player's colour, the same on every chart of every page and game: random play
#: grey, the greedy network teal, the sampled network purple, an ensemble green, you amber.
PLAYER_COLORS = {
    "random": RANDOM_COLOR,
    "greedy": MODEL_COLOR,
    "sampled": "#7b4ea3",
    "ensemble": "#3f8f4f",
    "you": "#e0a030",
}
#: How each way of playing picks a move, in a learner's words ("the network, …").
PLAYER_WORDS = {"greedy": "always its most probable move", "sampled": "drawing its moves from its probabilities"}
#: The two ways of playing as a select box shows them (short: a box a quarter of the page wide).
PLAYER_CHOICES = {"greedy": "greedy: most probable move", "sampled": "sampled: draws its moves"}


@dataclass(frozen=True)
class Step:
    """A result's code (its :class:`~cartpole_core.recipes.Recipe`) and what that code reads:
    the dataset or model the page started from, offered as files beside it."""

    page: str
    recipe: Recipe
    made: Any
    """The result it reproduces (the page shows the code only beside this very result)."""
    dataset: Dataset | None = None
    model: Network | None = None


@dataclass(frozen=True)
class Comparison:
    """Compare's last result: every player's scores over the seeds, the game they played and
    how the networks played (sampled or greedy)."""

    results: list[Any]
    """One ``cartpole_core.evaluate`` comparison row per player, in the order chosen."""
    env_id: str
    sampled: bool


@dataclass
class Lab:
    """Everything this browser session has made. Lives in ``st.session_state["lab"]``."""

    env_id: str = DEFAULT_ENV_ID
    random_play: EvaluationResult | None = None
    random_gif: bytes | None = None
    generation: GenerationResult | None = None
    dataset: Dataset | None = None
    dataset_source: str = ""
    model: Network | None = None
    """The current network, as plain data: the web server never holds a Keras model."""
    model_source: str = ""
    model_env_id: str = ""
    """The game :attr:`model` plays ("" when not known: a file whose shape fits no suggested game)."""
    training: TrainingResult | None = None
    live_training: dict[str, Any] | None = None
    evaluation: EvaluationResult | None = None
    evaluation_random: EvaluationResult | None = None
    evaluation_gifs: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    film_failed: bool = False
    """Filming :attr:`evaluation` failed: Play & evaluate offers to film again rather than retrying
    on every click."""
    ensemble: EnsembleResult | None = None
    ensemble_eval: EnsembleEvaluation | None = None
    comparison: Comparison | None = None
    """Compare's last result (kept with the session: it comes back after a reload)."""
    notebook: NotebookResult | None = None
    improve: ImproveResult | None = None
    improve_live: dict[str, Any] | None = None
    """While (or after) generations run: records so far and each generation's weights."""
    timelapse_gif: bytes | None = None
    sweep: SweepResult | None = None
    sweep_live: dict[str, Any] | None = None
    """While (or after) a sweep runs: its config and the trials finished so far."""
    your_games: list[HumanGame] = field(default_factory=list)
    """Games the visitor played on Play it yourself, as the server replayed them."""
    your_film: tuple[str, int, bytes] | None = None
    """The last of them filmed: env, game number (from 1), GIF."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Every page's widget values as last drawn (:func:`remember_settings`)."""
    notebook_source: str = ""
    """What made :attr:`notebook`, e.g. ``"Home, seed 0"`` or the Sweep's best settings."""
    steps: list[Step] = field(default_factory=list)
    """Every result this session made, in order, with its code (the session's notebook)."""
    undo: tuple[str, Lab] | None = None
    """The last replacement of the session's dataset or model: what it did, and a copy of this
    Lab from before it (:func:`undo_last`)."""
    owner_secret: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    """This session's proof that it saved its runs (64 hex digits): kept on the server, never
    drawn in the page; a run keeps only its hash (``storage.owner_id``)."""
    board_name: str = ANONYMOUS
    """The name this visitor chose for the class board (on the Runs page)."""


def _keep_for_undo(what: str) -> None:
    """Before replacing the session's dataset or model, keep a copy of the Lab to undo to."""
    state = lab()
    if state.model is None and state.dataset is None:
        return  # nothing to lose
    before = copy.copy(state)
    before.undo, before.settings = None, {}
    state.undo = (what, before)


def undo_last() -> str:
    """Bring back the dataset, model and results the last replacement took away; says what."""
    state = lab()
    assert state.undo is not None
    what, before = state.undo
    settings = state.settings
    for f in fields(Lab):
        setattr(state, f.name, getattr(before, f.name))
    state.settings, state.undo = settings, None
    return what


def use_notebook_result(result: NotebookResult, dataset_source: str, model_source: str) -> None:
    """Make a notebook run's dataset, network and evaluations this session's (the sources say
    where they came from, e.g. ``"notebook run, seed 0"``)."""
    state = lab()
    what = "the dataset" if state.model is None else f"the dataset and the model “{state.model_source}”"
    _keep_for_undo(f"{what} replaced by the {dataset_source}")
    state.notebook, state.notebook_source = result, dataset_source
    state.generation, state.dataset = result.generation, result.generation.dataset
    state.dataset_source = dataset_source
    env_id = result.generation.config.env_id
    set_model(result.model, model_source, result.training, env_id=env_id)  # a Network: the result came from a job
    state.evaluation, state.evaluation_random = result.evaluation, result.random_evaluation
    state.env_id = result.generation.config.env_id


def record_step(
    page: str, recipe: Recipe, made: Any, dataset: Dataset | None = None, model: Network | None = None
) -> None:
    """``page`` made the result ``made``: keep its code (and what the code reads) for the
    page's "Show the code" and the session's notebook."""
    lab().steps.append(Step(page, recipe, made, dataset, model))


def shown_step(page: str, made: Any) -> Step | None:
    """The step of ``page`` that made ``made``, or None (e.g. a stopped training: its code
    would not stop at the same batch)."""
    return next((step for step in reversed(lab().steps) if step.page == page and step.made is made), None)


def show_code(page: str, made: Any) -> bool:
    """ "Show the code": the Python that reproduces ``made`` (the page's result on show), the
    files it reads, and the ``cartpole-lab`` command where there is one. False when ``made``
    has no code (e.g. the ensemble as a player)."""
    step = shown_step(page, made)
    if step is not None:
        show_recipe(step.recipe, page, step.dataset, step.model)
    return step is not None


def show_recipe(recipe: Recipe, page: str, dataset: Dataset | None = None, model: Network | None = None) -> None:
    """ "Show the code" of ``recipe`` (see :func:`show_code`), for a result drawn live rather
    than made by a click (the Policy map): ``dataset`` and ``model`` are what its code reads."""
    from cartpole_core import wheel
    from cartpole_core.recipes import DATASET_FILE, MODEL_FILE
    from cartpole_core.storage import dataset_to_bytes

    with st.expander("Show the code", icon=":material/code:"):
        st.caption(
            "Python that reproduces this result with the same settings and seeds (`import cartpole_core as cl`). "
            f"Download the library, install it with `{wheel.install_command()}` (Python {wheel.PYTHONS}; it "
            "brings the versions this server runs), then run the code"
            + (" in the folder holding what it reads:" if recipe.files() else ":")
        )
        cols = st.columns(1 + len(recipe.files()))
        cols[0].download_button(
            wheel.wheel_name(), data=wheel.wheel_bytes, file_name=wheel.wheel_name(), key=f"{page}_code_wheel",
            icon=":material/download:", on_click="ignore", mime="application/zip",
            help="The library this dashboard runs, as a wheel for pip.",
        )  # fmt: skip
        for col, name in zip(cols[1:], recipe.files(), strict=True):
            if name == DATASET_FILE and dataset is not None:
                col.download_button(
                    name, data=functools.partial(dataset_to_bytes, dataset), file_name=name,
                    key=f"{page}_code_{name}", icon=":material/download:", on_click="ignore",
                    mime="application/octet-stream",
                )  # fmt: skip
            elif name == MODEL_FILE and model is not None and model.keras_file:
                col.download_button(
                    name, data=model.keras_file, file_name=name, key=f"{page}_code_{name}",
                    icon=":material/download:", on_click="ignore", mime="application/octet-stream",
                )  # fmt: skip
        st.code(recipe.python(), language="python")
        if recipe.command:
            st.caption("The same on the command line (the wheel installs `cartpole-lab`):")
            st.code(recipe.command, language="bash", wrap_lines=True)


def set_dataset(dataset: Dataset, source: str) -> None:
    """Make ``dataset`` this session's dataset (the old one can be brought back: :func:`undo_last`)."""
    state = lab()
    if state.dataset is not None:
        _keep_for_undo(f"the dataset “{state.dataset_source}” replaced by “{source}”")
    state.dataset, state.dataset_source, state.env_id = dataset, source, dataset.env_id


def set_model(
    model: Network | None, source: str, training: TrainingResult | None = None, env_id: str | None = None
) -> None:
    """Make ``model`` this session's current model (forgetting what described the old one; the
    old one can be brought back: :func:`undo_last`). ``env_id``: the game it plays; None for a
    file: the session's game when its shape fits it, else the first suggested game it fits."""
    state = lab()
    if state.model is not None and not (state.undo and state.undo[1].model is state.model):
        _keep_for_undo(f"the model “{state.model_source}” replaced by “{source}”")
    state.model, state.model_source, state.training = model, source, training
    if env_id is None and model is not None:
        env_id = next((e for e in (state.env_id, *SUGGESTED_ENV_IDS) if _shape_fits(model, e)), "")
    state.model_env_id = env_id or ""
    state.evaluation = state.evaluation_random = None
    state.evaluation_gifs, state.film_failed = {}, False


class _PageEnds(Exception):
    """Raised by :func:`end_page` inside :func:`page_frame`, which catches it."""


_framed = threading.local()


@contextlib.contextmanager
def page_frame() -> Iterator[None]:
    """Where ``app.py`` runs the page: a page that ends early (:func:`end_page`) ends here, and
    what ``app.py`` draws after it (the sidebar) still comes."""
    _framed.active = True
    try:
        with contextlib.suppress(_PageEnds):
            yield
    finally:
        _framed.active = False


def end_page() -> NoReturn:
    """End this page here, as ``st.stop()`` would, but inside :func:`page_frame` only the page
    (``st.stop()`` ends the whole script run: the sidebar, drawn after the page, went missing on
    every page that stopped early). A page run on its own (``AppTest`` runs a page's file
    alone) stops with ``st.stop()``."""
    if getattr(_framed, "active", False):
        raise _PageEnds
    st.stop()


def lab() -> Lab:
    """This session's :class:`Lab`: on a session's first use, the one this browser had before a
    reload or a dropped tab when the server still keeps it, else a new one
    (:func:`pages.sessions.begin`)."""
    _leave_legacy_page_mode()
    if "lab" not in st.session_state:
        st.session_state["lab"] = sessions.begin(Lab)
    return st.session_state["lab"]


def remember_settings() -> None:
    """Keep every widget value of this run, so a page drawn again later (after a visit to
    another page, where Streamlit forgets the widgets) shows the settings its result was
    made with, not the defaults. ``app.py`` calls it after each page."""
    kept = lab().settings
    for key, value in st.session_state.items():
        if key != "lab" and not str(key).startswith(("_", "FormSubmitter")) and isinstance(value, (int, float, str)):
            kept[str(key)] = value


def from_url(key: str, default: Any, low: float | None = None, high: float | None = None, choices: Any = None) -> Any:
    """The value this page's link gives for the widget ``key``; else the value the widget had
    when this page was last drawn in this session (:func:`remember_settings`); else ``default``.

    A link is typed by people too: a value that is not of the right type, out of range or
    not among ``choices`` is ignored with a warning that says so.
    """
    raw = st.query_params.get(key)
    if raw is None:
        kept = lab().settings.get(key)
        fits = kept is not None and type(kept) is type(default) and (choices is None or kept in choices)
        return kept if fits else default
    try:
        if isinstance(default, bool):
            value: Any = raw.lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            value = int(raw)
        elif isinstance(default, float):
            value = float(raw)
            if value != value:
                raise ValueError("not a number")
        else:
            value = str(raw)
        if choices is not None and value not in choices:
            raise ValueError("choose one of " + ", ".join(map(str, choices)))
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"allowed: {low:g} to {high:g}")
    except (TypeError, ValueError) as exc:
        st.warning(f"The link's {key}={raw!r} was ignored ({exc}); using {default}.", icon=":material/link_off:")
        return default
    return value


def url_number(where: Any, label: str, low: float, high: float, default: float, *, key: str, **kwargs: Any) -> Any:
    """``where.number_input`` whose first value comes from the page's link when it has one.

    A value outside ``low``–``high`` is refused with a message under the field naming the
    allowed range, and None is returned: pass the values to :func:`checked` before running
    anything, so nothing runs with a refused or a stale value. (The widget itself gets no
    bounds: a browser field with bounds silently keeps its old value when the typed one is
    out of range.)"""
    value = where.number_input(label, value=from_url(key, default, low, high), key=key, **kwargs)
    if value is None or not low <= value <= high:
        shown = "nothing" if value is None else f"{value:,}"
        where.error(f"{label}: {shown} is not allowed here; type a value from {low:,} to {high:,}.",
                    icon=":material/block:")  # fmt: skip
        return None
    return value


def checked(*values: Any) -> bool:
    """True when no setting was refused (none is None); else says, beside the button, that
    nothing ran. Use it as ``if clicked and checked(games, seed): …``."""
    if any(v is None for v in values):
        st.error("Nothing was run: correct the settings marked above first.", icon=":material/block:")
        return False
    return True


def url_slider(where: Any, label: str, low: float, high: float, default: float, *, key: str, **kwargs: Any) -> Any:
    """``where.slider`` whose first value comes from the page's link when it has one."""
    return where.slider(label, low, high, from_url(key, default, low, high), key=key, **kwargs)


def setting(config: Any, name: str, *, cap: float | None = None, scale: float = 1) -> tuple[Any, Any, Any]:
    """``(low, high, default)`` of setting ``name`` of a config dataclass, for a field: the
    library's own range (:func:`cartpole_core.errors.bounds`) and the config's value (pass the
    class for its default, or an instance such as ``GenerationConfig.for_env(...)``), times
    ``scale`` (100 for a share shown in %); ``cap`` lowers the high end to this server's limit
    (``cap=LIMITS["epochs"]``), and the default with it. Use it as ``url_number(where, label,
    *setting(TrainingConfig, "epochs", cap=LIMITS["epochs"]), key=...)``."""
    low, high = bounds(config, name)
    value = default_of(config, name) if isinstance(config, type) else getattr(config, name)
    if cap is not None:
        high = min(high, cap)
    if scale != 1:  # 0.07 * 100 is 7.000000000000001
        low, high, value = (None if v is None else round(v * scale, 9) for v in (low, high, value))
    return low, high, None if value is None else min(value, high)


def url_score(where: Any, label: str, default: float, *, key: str, help: str) -> float:
    """``where.number_input`` for a score a game must reach, first value from the page's link
    (no bounds: every game has its own scale)."""
    return where.number_input(label, value=from_url(key, float(default)), step=5.0, key=key, help=help)


def url_select(where: Any, label: str, options: list[Any], default: Any, *, key: str, **kwargs: Any) -> Any:
    """``where.selectbox`` whose first choice comes from the page's link when it has one."""
    options = list(options)
    index = options.index(from_url(key, default, choices=options))
    return where.selectbox(label, options, index=index, key=key, **kwargs)


def chosen_upload(label: str, kinds: list[str], button: str, *, key: str, help: str, button_help: str) -> Any:
    """A file uploader capped at the server's upload limit and, once a file is chosen, a
    button; returns the uploaded file when the button is pressed, else None."""
    upload = st.file_uploader(label, type=kinds, key=key, max_upload_size=LIMITS["upload_mb"], help=help)
    if upload is not None and st.button(button, key=f"{key}_use", help=button_help):
        return upload
    return None


def share_settings(keys: list[str]) -> None:
    """Put these widgets' current values in the page's URL and offer the link to copy."""
    params = {k: str(st.session_state[k]) for k in keys if k in st.session_state}
    st.query_params.from_dict(params)
    with st.expander("Share these settings", icon=":material/link:"):
        st.caption(
            "Anyone who opens this link gets this page with the same environment, settings and seeds "
            "(not your data or models: those stay in your session)."
        )
        st.code(f"{st.context.url or ''}?{urlencode(params)}", language=None)


def save_as_run(
    record: RunRecord, dataset: Dataset | None = None, model: Network | None = None, code: Step | None = None
) -> None:
    """Save a run as this session's (only it, or the operator, may delete it) under the
    visitor's name on the class board, and say so, or show why not in one line (a folder that
    cannot be written, a full server); the session keeps what it had either way. Each visitor
    keeps at most ``LIMITS["runs_per_visitor"]`` runs: their own oldest make room.
    ``code``: the step that made the result, whose recipe the run keeps (Runs offers it as a
    notebook when the run holds the files the code reads)."""
    state = lab()
    if code is not None:
        record = dataclasses.replace(record, results={**record.results, "code": dataclasses.asdict(code.recipe)})
    record = dataclasses.replace(record, board_name=state.board_name)
    quota = LIMITS["runs_per_visitor"]
    try:
        before = {r.run_id for r in list_runs() if r.owned_by(state.owner_secret)}
        saved = save_run(
            record,
            dataset=dataset,
            model=model,
            keep=LIMITS["runs_kept"],
            owner_secret=state.owner_secret,
            per_owner=quota,
            stale_after_s=LIMITS["run_days"] * 86_400,
        )
        gone = before - {r.run_id for r in list_runs()}
    except Exception as exc:  # a full disk or a bad record: the session keeps what it had
        show_error(exc)
    else:
        room = f" Your {len(gone)} oldest made room: each visitor keeps {quota} runs." if gone else ""
        board = (
            f" On the class board (Runs) as “{saved.board_name or ANONYMOUS}”."
            if board_score(saved) is not None
            else ""
        )
        st.success(f"Saved as run {saved.run_id}.{board}{room}")


def _taught(model: Network) -> tuple[Dataset | None, dict[str, Any]]:
    """The dataset ``model`` learned from in this session (None when not known) and what it
    took to make it: ``games_played`` (random games, your games or generations' games) and
    ``seconds_taken`` (machine seconds generating and training); empty when not known (a
    model loaded from a file or a run, generations started from a network)."""
    state = lab()
    for step in reversed(state.steps):
        made = step.made
        if step.page == "generations" and made.model is model:
            if step.model is not None:
                return None, {}  # started from a network whose making is not counted
            best = next(r for r in made.generations if r.generation == made.best_generation)
            games = made.config.first_games + made.config.games_per_generation * made.best_generation
            return None, {"games_played": games, "seconds_taken": best.elapsed}
        if step.page == "home" and made.model is model:
            effort = {"seconds_taken": made.generation.seconds + made.training.seconds}
            return made.generation.dataset, {"games_played": made.generation.games, **effort}
    if state.training is None or state.model is not model:
        return None, {}
    train = next((s for s in reversed(state.steps) if s.page == "train" and s.made is state.training), None)
    if train is None or train.dataset is None:
        return None, {}
    for step in reversed(state.steps):
        generation = step.made.generation if step.page == "home" else step.made
        if step.page in ("generate", "home") and generation.dataset is train.dataset:
            effort = {"seconds_taken": generation.seconds + state.training.seconds}
            return train.dataset, {"games_played": generation.games, **effort}
        if step.page == "play_yourself" and step.made is train.dataset:
            return train.dataset, {"games_played": train.dataset.n_games, "seconds_taken": state.training.seconds}
    return train.dataset, {}


def board_results(model: Network | None, games: EvaluationConfig | None = None) -> dict[str, Any]:
    """What the class board reads from a run's results beside its ``mean``: the games and
    seconds it took to make ``model`` (when known, see :func:`_taught`) and, for an evaluation
    on ``games``, ``fresh``: False when those games start where the model's own training games
    did (your games replayed on seed 0), so its score is not one on fresh games."""
    if model is None:
        return {}
    dataset, effort = _taught(model)
    if games is None:
        return effort
    learned = set(dataset.metadata.get("seeds", [])) if dataset is not None else set()
    return {**effort, "fresh": not learned & {int(s) for s in games.game_seeds()}}


#: Names of the library's fields that its messages may use, in the dashboard's words.
FIELD_WORDS = {"val_accuracy": "validation accuracy", "val_loss": "validation loss", "min_score": "lowest score kept"}


def in_words(message: str) -> str:
    """A library message with each settings field name in words, as the page's fields say them
    (``score_requirement=60`` -> ``score requirement 60``): the library speaks to code and the
    command line, a visitor reads labels."""
    from cartpole_core.sweep import SETTING_WORDS

    words = {**SETTING_WORDS, **FIELD_WORDS}
    names = "|".join(sorted(map(re.escape, words), key=len, reverse=True))

    def say(m: re.Match[str]) -> str:
        name, equals = m.group(1), m.group(2)
        if "_" not in name and not equals:  # "epochs", "games": plain words already
            return m.group(0)
        return words[name] + (" " if equals else "")

    return re.sub(rf"(?<![\w-])({names})(=|\b)", say, message)


def show_error(exc: Exception) -> None:
    """A user's mistake as a friendly message (in the page's words); anything else as an error
    with its type."""
    if isinstance(exc, UserError):
        st.error(in_words(str(exc)), icon=":material/warning:")
    elif type(exc).__module__.split(".")[0] == "ray":  # the engine's trouble, not the visitor's
        st.error(
            "The engine lost this job (one of its processes stopped). Nothing you had was lost: click again, "
            "it starts a new engine if it needs one.",
            icon=":material/sync_problem:",
        )
    else:
        st.error(f"Something went wrong ({type(exc).__name__}: {exc}). Nothing you had was lost; try again.")


def _shape_fits(model: Network, env_id: str) -> bool:
    """True when ``model`` reads ``env_id``'s observations and chooses among its actions."""
    info = env_info(env_id)
    return model.obs_dim == info.obs_dim and model.n_actions == info.n_actions


def _pick_game(key: str) -> None:
    """The picker ``key`` changed (a callback, before the page runs): its game becomes the
    session's, so every page plays it; an id that is not a game is kept for the picker to refuse."""
    chosen = st.session_state.get(key)
    if chosen is None:
        return
    try:
        st.session_state["lab"].env_id = env_info(str(chosen)).env_id
    except UserError as exc:
        st.session_state[f"_{key}_refused"] = str(exc)


def _back_to(env_id: str) -> None:
    """A button's callback: the session plays ``env_id`` again."""
    st.session_state["lab"].env_id = env_id


def env_picker(
    key: str, help_text: str = "", *, label: str = "Environment", choices: tuple[str, ...] | None = None
) -> EnvInfo | None:
    """The session's game as a select box that also accepts any Gymnasium id typed in: its
    value is always :attr:`Lab.env_id`, whichever page draws it, and a choice in it is the
    session's game for every page. A page's link (``?<key>=<id>``) sets it once, on arrival.
    ``choices``: the games this page can play (any when None); returns None, and shows an
    empty picker, when the session's game is not among them."""
    state = lab()
    link = st.query_params.get(key)
    if link is not None and key not in st.session_state:  # arriving by a shared link
        st.session_state[key] = link
        _pick_game(key)
    refused = st.session_state.pop(f"_{key}_refused", None)
    if refused is not None:
        show_error(UserError(refused))
    playable = choices is None or state.env_id in choices
    options = list(dict.fromkeys([state.env_id, *SUGGESTED_ENV_IDS])) if choices is None else list(choices)
    st.session_state[key] = state.env_id if playable else None  # the picker shows the session's game
    st.selectbox(
        label,
        options,
        index=0,
        key=key,
        on_change=_pick_game,
        args=(key,),
        accept_new_options=choices is None,
        placeholder="Choose a game",
        help=help_text
        or "The game to play, on every page of this session. Another game of the same collection works too when "
        "its player chooses one of a few actions and sees a list of numbers: type its id to try it. Each game "
        "starts from settings that fit its scores:\n\n"
        + "\n".join(
            f"- **{env}**: keep {d.keeping()}, {d.goal_steps:,} steps" + f", {target_words(env)}"
            for env, d in ENV_DEFAULTS.items()
        )
        + "\n- any other game: keep the best 5 % of games",
    )
    return env_info(state.env_id) if playable else None


def _other_game(line: str, other: str, offers: list[tuple[str, str, str]], key: str) -> None:
    """``line`` (what is of the game ``other``, not the session's, and what fits), then links to
    the pages that make what fits (``offers``: page, label, icon) and a button back to ``other``."""
    st.warning(line, icon=":material/swap_horiz:")
    row = st.container(horizontal=True)
    for page, label, icon in offers:
        row.page_link(page, label=label, icon=icon)
    if other in SUGGESTED_ENV_IDS or other in ENV_DEFAULTS:
        row.button(f"Play {other} again", key=f"{key}_back_to_game", on_click=_back_to, args=(other,),
                   icon=":material/undo:", help=f"Make {other} the session's game again, on every page.")  # fmt: skip


def session_dataset(key: str) -> Dataset | None:
    """The session's dataset when it is of the session's game. A dataset of another game is
    never used silently: the page says so in one line, offers to generate data for this game
    (or to play the dataset's game again), and gets None. ``key``: the page's widget prefix."""
    state = lab()
    dataset = state.dataset
    if dataset is None or dataset.env_id == state.env_id:
        return dataset
    env_id, other = state.env_id, dataset.env_id
    line = f"Your dataset is of {other}; this page plays {env_id}: generate data for {env_id}, or play {other} again."
    offers = [("pages/generate.py", f"Generate data for {env_id} →", ":material/dataset:")]
    _other_game(line, other, offers, f"{key}_dataset")
    return None


def model_fits() -> bool:
    """True when the session's model plays the session's game (False with no model)."""
    state = lab()
    if state.model is None:
        return False
    if state.model_env_id:
        return state.model_env_id == state.env_id
    return _shape_fits(state.model, state.env_id)


def session_model(key: str, here: str = "") -> Network | None:
    """The session's model when it plays the session's game. A model of another game is never
    used silently: the page says so in one line, offers to train one for this game or to start
    generations from a first network for it (or to play the model's game again), and gets None.
    ``here``: this page's file, left out of the offers."""
    state = lab()
    if state.model is None or model_fits():
        return state.model
    env_id, other = state.env_id, state.model_env_id or "another game"
    line = (
        f"Your model plays {other}; this page plays {env_id}: train one on data of {env_id}, or start "
        f"generations from a first network for it."
    )
    offers = [
        ("pages/train.py", f"Train one for {env_id} →", ":material/neurology:"),
        ("pages/generations.py", f"Generations for {env_id} →", ":material/trending_up:"),
    ]
    _other_game(line, other, [o for o in offers if o[0] != here], f"{key}_model")
    return None


def ensemble_fits() -> bool:
    """True when the session's ensemble plays the session's game (False with no ensemble)."""
    state = lab()
    ev = state.ensemble_eval
    return state.ensemble is not None and ev is not None and ev.ensemble.config.env_id == state.env_id


def of_this_game(env_id: str, what: str) -> bool:
    """True when a result made on ``env_id`` is of the session's game; else puts it away with one
    line saying so (it comes back when that game is picked again) and returns False."""
    if env_id == lab().env_id:
        return True
    st.caption(f"{what} {env_id}: it is shown again when {env_id} is the game.")
    return False


def settings_follow_env(page: str, env_id: str, defaults: dict[str, Any]) -> None:
    """When the visitor switches ``page`` to another env, set the widgets ``defaults`` names
    (key -> value) to the new env's values, and drop the old values from the link: games keep
    scores on their own scales. Call it before drawing those widgets. (Values are set, not
    just forgotten: the browser would otherwise send the old ones back with the next click.)"""
    marker = f"{page}_settings_for"
    if st.session_state.get(marker, env_id) != env_id:
        for key, value in defaults.items():
            st.session_state[key] = value
            st.query_params.pop(key, None)
    st.session_state[marker] = env_id


def progress_bar(label: str) -> tuple[ProgressCallback, Any]:
    """A Streamlit progress bar and a callback that moves it (at most ~10 redraws a second)."""
    bar = st.progress(0.0, text=label)
    last = [0.0]

    def update(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.1 or p.fraction >= 1.0:
            last[0] = now
            bar.progress(p.fraction, text=f"{label}: {p.message}")

    return update, bar


def run_with_stop(
    live: dict[str, Any],
    label: str,
    start: Callable[[ProgressCallback, Callable[[Any], None]], Any],
    *,
    key: str,
    stop_label: str = "Stop",
    stop_help: str,
    on_report: Callable[[Progress], None] | None = None,
) -> Any | None:
    """The one way a page runs a long job: a Stop button, a progress bar, the job's reports to
    ``on_report`` (a live chart), its error shown in the page's words. ``start(progress, keep)``
    runs the job (usually :func:`ray_job` with ``partial=keep``); ``keep(partial)`` records what
    a stopped job hands over in ``live`` (the page's entry in the session), so the next script
    run, the one Stop's click starts, keeps it with :func:`finish_stopped`. Returns the result,
    or None when the job failed (the page keeps what it had)."""
    # The widgets first, then the record: a rerun or a closed tab can end the script at any st
    # call, and only inside the ``try`` does ``finally`` clear "running" (else it sticks).
    stop_slot = st.empty()
    stop_slot.button(stop_label, icon=":material/stop:", key=f"{key}_stop", help=stop_help)
    update, bar = progress_bar(label)

    def progress(p: Progress) -> None:
        update(p)
        if on_report is not None:
            on_report(p)

    def keep(partial: Any) -> None:
        live["stopped"] = partial

    try:
        live.update(done=False, stopped=None, running=True)
        result = start(progress, keep)
    except Exception as exc:  # shown to the user; the session keeps what it had
        live["done"] = True  # failed, not stopped
        show_error(exc)
        return None
    else:
        live["done"] = True
        return result
    finally:
        live["running"] = False  # after a Stop too: the script run holding the job has ended
        stop_slot.empty()
        bar.empty()


def finish_stopped(live: dict[str, Any] | None, keep: Callable[[Any], str | None], nothing: str) -> None:
    """At the top of a page: if its last job was cut short by a Stop click (its script run
    ended mid-job), make what the job handed over the session's with ``keep`` (which returns
    the line to show, or None when there is nothing to keep), or say ``nothing`` when it
    handed over nothing (stopped while queued). A job still running elsewhere (the same
    session in another tab, or the tab that was just reloaded, ending) is left alone."""
    if live is None or live.get("done", True) or live.get("running", False):
        return
    live["done"] = True
    partial = live.get("stopped")
    message = None if partial is None else keep(partial)
    st.info(message or nothing, icon=":material/stop_circle:")


STILL_RUNNING = (
    "A job of this session is still running (in another tab, or from before the reload): its result comes "
    "here when it ends."
)
#: Seconds between two looks at a job running elsewhere (:func:`still_running`).
POLL_SECONDS = 2.0


def still_running(live: dict[str, Any] | None) -> bool:
    """At the top of a page, after :func:`finish_stopped`: True while the page's job runs in
    another script run of this session (another tab, or the tab before its reload), saying so
    in one line and looking again every :data:`POLL_SECONDS`: the page is drawn again, with the
    result, when the job ends. The page's main button then starts nothing
    (:func:`refuse_while_running`): its job would replace the record the running job fills."""
    if live is None or not live.get("running", False):
        return False
    st.info(STILL_RUNNING, icon=":material/hourglass_top:")

    @st.fragment(run_every=POLL_SECONDS)
    def look_again() -> None:
        if not live.get("running", False):
            st.rerun()  # the whole page: the job's result is the session's now

    look_again()
    return True


def refuse_while_running(running: bool) -> bool:
    """True when nothing may start because :func:`still_running` said a job runs; says so
    beside the button. Use it as ``if submitted and not refuse_while_running(busy) and …``."""
    if running:
        st.warning(
            "Nothing was started: a job of this session is still running. Wait for its result here (or stop "
            "it in its own tab), then start again.",
            icon=":material/block:",
        )
    return running


def tensorflow_line() -> str:
    """Where TensorFlow runs: in Ray's workers, never in this web server (unless the Policy
    map drew a custom uploaded model that NumPy cannot play)."""
    if "tensorflow" not in sys.modules:
        return "Networks are trained in the background, apart from this web server"
    # While another session's thread still imports it (~5 s), the module is half made: no
    # __version__ yet.
    version = getattr(sys.modules["tensorflow"], "__version__", None)
    if version is None:
        return "Networks: their library is loading in this web server too (an uploaded model's Policy map)"
    return "Networks: their library is also in this web server (an uploaded model's Policy map)"


# ---------------------------------------------------------------- charts

#: The longest line of a chart's title and of its subtitle (characters). Vega-Lite counts the
#: title in the chart's width: a title wider than a phone's 358 px column leaves the plot none
#: (the Generations chart shrank to one vertical line). A title's letters are ~7 px wide, a
#: subtitle's under 6: these lines fit 300 px.
TITLE_LINE, SUBTITLE_LINE = 40, 52


def chart_title(text: str, subtitle: str = "") -> alt.TitleParams:
    """A chart's title that fits a phone: ``text`` in lines of at most :data:`TITLE_LINE`
    characters, and an optional ``subtitle`` under it in smaller type, in lines of at most
    :data:`SUBTITLE_LINE`. Give the whole chart (a layer's top, not one of its layers) this title:
    only there does Streamlit also cut a line too long for the frame."""
    lines = textwrap.wrap(text, TITLE_LINE, break_on_hyphens=False)
    title = alt.TitleParams(lines if len(lines) > 1 else text)
    if subtitle:
        title.subtitle = textwrap.wrap(subtitle, SUBTITLE_LINE, break_on_hyphens=False)
    return title


def score_histogram(scores: np.ndarray, title: str, threshold: float | None = None) -> alt.Chart:
    """Histogram of game scores, with the keep threshold as a labelled red rule drawn on top.

    Where most games share one score (Acrobot's random games: −500), the count axis is
    logarithmic, so the few games elsewhere, the ones kept, stay visible."""
    values = np.asarray(scores, dtype=float)
    df = pd.DataFrame({"score": values})
    counts, _ = np.histogram(values, bins=60) if values.size else (np.zeros(1), None)
    crowded = values.size > 0 and counts.max() > 0.6 * values.size
    bars = (
        alt.Chart(df)
        .mark_bar(color=MODEL_COLOR)
        .encode(
            x=alt.X("score:Q", bin=alt.Bin(maxbins=60), title="score (sum of rewards)"),
            y=alt.Y(
                "count():Q",
                title="games (log scale: most games share one score)" if crowded else "games",
                # Log scale from just under 1, so a bar of one game still shows.
                scale=alt.Scale(type="log", domainMin=0.7) if crowded else alt.Scale(),
                axis=alt.Axis(values=[1, 10, 100, 1_000, 10_000, 100_000]) if crowded else alt.Axis(format="d"),
            ),
            tooltip=[
                alt.Tooltip("score:Q", bin=alt.Bin(maxbins=60), title="score"),
                alt.Tooltip("count():Q", title="games"),
            ],
        )
    )
    if threshold is None:
        return bars.properties(title=chart_title(title))
    line = pd.DataFrame({"threshold": [threshold], "label": [f"kept from {score_text(threshold)}"]})
    rule = (
        alt.Chart(line)
        .mark_rule(color=ACCENT, strokeWidth=2)
        .encode(x="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", title="score requirement")])
    )
    label = (
        alt.Chart(line)
        .mark_text(color=ACCENT, align="left", dx=4, dy=4, baseline="top", fontWeight="bold")
        .encode(x="threshold:Q", y=alt.value(0), text="label:N")
    )
    return alt.layer(bars, rule, label).properties(title=chart_title(title))


def counter_chart(counts: dict[float, int]) -> alt.Chart:
    """Bar chart of kept games per score (the notebook's Counter)."""
    df = pd.DataFrame({"score": list(counts.keys()), "games": list(counts.values())})
    return (
        alt.Chart(df, title=chart_title("Kept games per score", "as the notebook counts them"))
        .mark_bar(color=MODEL_COLOR)
        .encode(
            x=alt.X("score:Q", title="score"),
            y=alt.Y("games:Q", title="kept games", axis=alt.Axis(tickMinStep=1, format="d")),
            tooltip=["score:Q", "games:Q"],
        )
    )


def curves_charts(df: pd.DataFrame, x: str, title: str, x_title: str, note: str = "") -> list[alt.Chart]:
    """Loss and accuracy against ``x``, one chart each (titled "``title``: loss", with ``note``
    under it), each axis from 0 (a change in the third decimal stays the small change it is).
    Two charts, not a two-panel facet: a facet has a fixed width, too wide for a phone, and
    :func:`show_curves` puts them side by side where there is room."""
    long = df.melt(id_vars=[x], value_vars=[c for c in df.columns if c != x and c != "epoch"], var_name="series")
    long["metric"] = np.where(long["series"].str.contains("loss"), "loss", "accuracy")
    long["series"] = long["series"].map(lambda name: FIELD_WORDS.get(name, name))
    charts = []
    for metric in ("loss", "accuracy"):
        shown = long[long["metric"] == metric]
        # A legend only for two curves (with validation); under the plot, so it keeps its width.
        legend = alt.Legend(orient="bottom") if shown["series"].nunique() > 1 else None
        charts.append(
            # No height of its own: Streamlit's chart height holds the title and the legend too.
            alt.Chart(shown, title=chart_title(f"{title}: {metric}", note))
            .mark_line(point=len(df) <= 30)
            .encode(
                # Epochs and batches are whole numbers: no 1.1, 1.2 … ticks between them.
                x=alt.X(f"{x}:Q", title=x_title, axis=alt.Axis(tickMinStep=1, format="d")),
                y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=True)),
                color=alt.Color("series:N", title=None, legend=legend),
                tooltip=[f"{x}:Q", "series:N", alt.Tooltip("value:Q", format=".4f")],
            )
        )
    return charts


def show_curves(df: pd.DataFrame, x: str, title: str, x_title: str, note: str = "") -> None:
    """:func:`curves_charts` side by side (one under the other on a phone)."""
    for column, chart in zip(st.columns(2), curves_charts(df, x, title, x_title, note), strict=True):
        column.altair_chart(chart, width="stretch")


def batch_curves(batches: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Per-batch loss and accuracy from a training's running means of each epoch, smoothed by
    a moving average across epochs; and the window (batches). The running mean restarts every
    epoch, so plotted as it is it jumps at each epoch's start. Batch k's own value is
    k·mean_k − (k−1)·mean_(k−1) (exact for equal batches; an epoch's smaller last batch is
    weighted as a full one)."""
    k = batches.groupby("epoch").cumcount() + 1
    own = pd.DataFrame({"step": batches["step"]})
    for name in ("loss", "accuracy"):
        before = batches.groupby("epoch")[name].shift(fill_value=0.0)
        own[name] = k * batches[name] - (k - 1) * before
    window = max(1, min(50, len(own) // 20))
    own[["loss", "accuracy"]] = own[["loss", "accuracy"]].rolling(window, min_periods=1).mean()
    return own, window


def player_kind(name: str, sampled: bool = False) -> str:
    """Which of :data:`PLAYER_COLORS` a player named ``name`` is: ``random``, ``you``, an
    ``ensemble`` (its name says so), or a network: ``sampled`` or ``greedy`` as its name says,
    else as ``sampled`` says (how the page's networks play)."""
    low = name.lower()
    if low.startswith("random"):
        return "random"
    if low == "you":
        return "you"
    if "ensemble" in low:
        return "ensemble"
    if "sampled" in low or "greedy" in low:
        return "sampled" if "sampled" in low else "greedy"
    return "sampled" if sampled else "greedy"


def policy_colors(names: list[str], sampled: bool = False) -> alt.Scale:
    """Each player's colour by what it is (:func:`player_kind`), never by its place in the
    legend: random play always grey, the greedy network, the sampled network, an ensemble and
    you each their own colour on every chart."""
    return alt.Scale(domain=names, range=[PLAYER_COLORS[player_kind(n, sampled)] for n in names])


def network_label(name: str, sampled: bool) -> str:
    """A chart's name for a network or ensemble that plays ``sampled`` or greedy: ``"network,
    sampled"``; random play stays ``"random"``."""
    if player_kind(name) == "random":
        return name
    return f"{name}, {'sampled' if sampled else 'greedy'}"


def player_title(name: str, sampled: bool) -> str:
    """The player in a result's title, in a learner's words: ``"the network, drawing its
    moves from its probabilities"``, ``"the ensemble, always its most probable move"``,
    ``"random play"``."""
    kind = player_kind(name)
    if kind == "random":
        return "random play"
    who = "the ensemble" if kind == "ensemble" else "the network"
    return f"{who}, {PLAYER_WORDS['sampled' if sampled else 'greedy']}"


def player_moves(sampled: bool, many: bool = False) -> str:
    """How a network picks its moves, in words (:data:`PLAYER_WORDS`): ``"always its most
    probable move"``; ``many``: said of several networks, ``"always their most probable move"``."""
    words = PLAYER_WORDS["sampled" if sampled else "greedy"]
    return re.sub(r"\bits\b", "their", words) if many else words


def player_select(where: Any, key: str, env_id: str, help: str, label: str = "How the network plays") -> str:
    """The "how they play" box (greedy or sampled): it starts on the player ``env_id`` counts,
    goes back to that one when the game changes (:func:`settings_follow_env`), keeps the
    visitor's own choice within one game, and ends its ``help`` with the counted player.
    ``key`` (``"play_mode"``): the widget's key, also in the page's links."""
    from cartpole_core.envs import PLAYERS, env_defaults

    counted = env_defaults(env_id).player
    settings_follow_env(key.removesuffix("_mode"), env_id, {key: counted})  # the game's counted player
    shown = url_select(where, label, list(PLAYERS), counted, key=key, format_func=PLAYER_CHOICES.get,
                       help=f"{help} {env_id} counts the {counted} player.")  # fmt: skip
    return str(shown)


def counted_player_line(env_id: str, sampled: bool | None = None) -> str:
    """One sentence on which player ``env_id`` counts and why; ``sampled``: how the result on
    show plays (None: no result), said when it is the other player."""
    from cartpole_core.envs import env_defaults

    counted = env_defaults(env_id).player
    if counted == "sampled":
        line = (
            f"{env_id} counts the network that draws its moves from its probabilities: that is how the "
            "cross-entropy method trains it, and the greedy player (always its most probable move) can be far "
            "worse than the one the method trains."
        )
    else:
        line = f"{env_id} counts the network that always makes its most probable move (greedy), as the notebook plays."
    if sampled is not None and sampled != (counted == "sampled"):
        line += " The result below is of the other player: choose the counted one to compare with the target."
    return line


def scores_by_game_chart(results: dict[str, np.ndarray], title: str) -> alt.Chart:
    """Every game's score for each policy, game by game, on the same games."""
    frames = [
        pd.DataFrame({"game": np.arange(1, len(s) + 1), "score": s, "policy": name}) for name, s in results.items()
    ]
    df = pd.concat(frames)
    return (
        alt.Chart(df, title=chart_title(title))
        .mark_line(point=True)
        .encode(
            x=alt.X("game:Q", title="game (same start for every player)", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("score:Q", title="score"),
            color=alt.Color(
                "policy:N", title="player", scale=policy_colors(list(results)), legend=alt.Legend(orient="bottom")
            ),  # under the plot: the players' names are long, and a phone's width is the plot's
            tooltip=["policy:N", "game:Q", "score:Q"],
        )
    )


def choice_chart(ratios: dict[str, np.ndarray], action_names: tuple[str, ...]) -> alt.Chart:
    """How often each action was taken, per policy (the notebook's Choice 0 / Choice 1)."""
    rows = [
        {"policy": name, "action": f"{a}: {action_names[a]}", "share": float(r[a])}
        for name, r in ratios.items()
        for a in range(len(r))
    ]
    return (
        alt.Chart(
            # A height per bar: a fixed total height squashes nominal bars to nothing in
            # Streamlit's charts (streamlit/streamlit#9604).
            pd.DataFrame(rows),
            title=chart_title("Choice ratios", "share of steps on each action"),
            height=alt.Step(30),
        )
        .mark_bar()
        .encode(
            x=alt.X("share:Q", title="share of steps", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("policy:N", title=None),
            color=alt.Color(
                "action:N",
                title=None,
                scale=alt.Scale(scheme="tableau10"),
                legend=alt.Legend(orient="bottom", columns=2),  # four long action names fit
            ),
            tooltip=["policy:N", "action:N", alt.Tooltip("share:Q", format=".1%")],
        )
    )


def score_text(score: float) -> str:
    """A score as people read it: ``"500"`` for whole numbers (CartPole), ``"-421.1"`` otherwise
    (a cut at -55.1961 reads -55.2)."""
    return f"{score:.0f}" if float(score).is_integer() else f"{score:.1f}"


def signed_score(score: float, env_id: str) -> str:
    """A mean score as a verdict says it: :func:`score_text` of it to one decimal (``"241.3"``,
    ``"500"``), with its sign where ``env_id``'s scores can be negative (``"+11.7"``, ``"-98.2"``)."""
    from cartpole_core.envs import score_range

    text = score_text(round(score, 1))
    return f"+{text}" if score_range(env_id, 1)[0] < 0 and score > 0 else text


def next_step(*steps: tuple[str, str]) -> None:
    """The journey's next step, one line at a page's end: ``(page, label)`` each, e.g.
    ``next_step(("pages/train.py", "Train"))``; a second step is offered as "or …"."""
    row = st.container(horizontal=True)
    for i, (page, label) in enumerate(steps):
        row.page_link(page, label=f"{'Next: ' if i == 0 else 'or '}{label} →")


def metrics_rows(players: list[tuple[str, EvaluationResult]]) -> None:
    """Mean, median, min and max of each ``(label, evaluation)`` as st.metric tiles: a row per
    player, a column per figure. On a phone, where columns go one under another, each figure's
    players stay together (the network's mean just above random play's)."""
    cols = st.columns(4)
    for label, result in players:
        prefix = f"{label} " if label else ""
        cols[0].metric(f"{prefix}mean", f"{result.mean:.1f}")
        cols[1].metric(f"{prefix}median", score_text(result.median))
        cols[2].metric(f"{prefix}min", score_text(result.min))
        cols[3].metric(f"{prefix}max", score_text(result.max))
