"""Home: what this is, where this session stands, and the whole notebook in one click."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import streamlit as st

from cartpole_core.generate import GenerationConfig
from cartpole_core.pipeline import NotebookConfig, NotebookResult
from cartpole_core.training import TrainingConfig
from pages.common import (
    checked,
    lab,
    progress_bar,
    ray_job,
    record_step,
    score_text,
    setting,
    share_settings,
    show_code,
    show_error,
    url_number,
    use_notebook_result,
)

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator

    from pages.common import Step


def session_files(steps: list[Step]) -> dict[str, Callable[[], bytes]]:
    """What the session's notebook reads from files (the session started from an upload or a
    run): file name -> a function giving its bytes, from the step that reads it (a model no
    longer held has none)."""
    from cartpole_core.recipes import DATASET_FILE, FILES, notebook_reads
    from cartpole_core.storage import dataset_to_bytes

    readers: dict[str, Callable[[], bytes]] = {}
    for step, reads in zip(steps, notebook_reads([step.recipe for step in steps]), strict=True):
        for kind in reads:
            if FILES[kind] == DATASET_FILE:
                readers[DATASET_FILE] = functools.partial(dataset_to_bytes, step.dataset)
            elif step.model is not None and step.model.keras_file:
                readers[FILES[kind]] = functools.partial(bytes, step.model.keras_file)
    return readers


def take_home_zip_button(box: DeltaGenerator, steps: list[Step]) -> None:
    """Home's "Take it home": the session's notebook, the library's wheel its first cell
    installs and the files it reads, in one zip (one download lands them in one folder, under
    the names the notebook uses)."""
    from cartpole_core import wheel
    from cartpole_core.recipes import FILES, NOTEBOOK_FILE, notebook_reads, take_home_zip

    recipes = [step.recipe for step in steps]
    readers = session_files(steps)
    missing = {FILES[kind] for reads in notebook_reads(recipes) for kind in reads} - set(readers)
    box.caption(
        f"This session's {len(steps)} result(s), in order, as a Jupyter notebook: each step's code with the same "
        "settings and seeds, after a note saying what it does and the numbers this dashboard showed. The zip "
        f"holds the notebook ({NOTEBOOK_FILE}), the library as a wheel ({wheel.wheel_name()}, with the versions "
        "this server runs)" + (f" and the file(s) it reads ({', '.join(readers)})" if readers else "")
        + f". Unpack it into an empty folder and open the notebook (Python {wheel.PYTHONS}): its first cell "
        f"installs the library (`{wheel.install_command()}`). Each page's **Show the code** has the code of its "
        "own result."
    )  # fmt: skip
    box.download_button(
        "Download the notebook with the library (.zip)",
        icon=":material/download:",
        data=lambda: take_home_zip(recipes, {name: read() for name, read in readers.items()}),
        file_name="cartpole-lab-session.zip",
        mime="application/zip",
        key="home_notebook",
        on_click="ignore",
        disabled=bool(missing),
        help=f"This session no longer holds {', '.join(sorted(missing))}, which the notebook reads."
        if missing
        else None,
    )


state = lab()

st.title("CartPole Lab")
st.markdown(
    "Watch a neural network learn to balance a pole **without any reinforcement-learning algorithm**: "
    "play thousands of random games, keep the few good ones, and train a network to imitate them. "
    "Then let it play, side by side with random play, and push it further with ensembles."
)

# The main button first (on a phone too, it is on the first screen); what explains it after.
st.subheader("The whole notebook in one click")
st.markdown(
    "10,000 random CartPole-v1 games, keep those scoring ≥ 50, train the notebook's network "
    "(128-256-512-256-128, dropout 0.2, 4 epochs, batch 64), then play 10 games — about half a minute."
)
left, right = st.columns([1, 3], vertical_alignment="bottom")
seed = url_number(
    left,
    "Seed",
    *setting(TrainingConfig, "seed"),  # the seed of every stage: training's range is the narrowest
    step=1,
    key="home_seed",
    help="Same seed, same games, same network. Results vary a lot between seeds: try several.",
)
share_settings(["home_seed"])
if right.button(
    "Run the whole notebook",
    icon=":material/play_arrow:",
    type="primary",
    key="home_run",
    help="Generate, train and play with the notebook's settings and this seed.",
) and checked(seed):
    from cartpole_core.jobs import notebook_job

    update, bar = progress_bar("Running the notebook")
    try:
        config = NotebookConfig(generation=GenerationConfig(seed=int(seed)))
        result = ray_job("The notebook", notebook_job, config, progress=update)
    except Exception as exc:  # shown to the user; the session keeps what it had
        bar.empty()
        show_error(exc)
    else:
        bar.empty()
        use_notebook_result(result, f"notebook run, seed {seed}", f"notebook network, seed {seed}")
        from cartpole_core.recipes import notebook_recipe

        record_step("home", notebook_recipe(config, result), result)
        st.rerun()  # redraw the page (its result, the step cards) with the new state


def made_with(r: NotebookResult) -> str:
    """The settings a notebook result was made with, in words."""
    g, t = r.generation.config, r.training.config
    dense = getattr(r.model, "layers", None) or ()  # a Network: (weights, bias, activation) per layer
    layers = "-".join(str(bias.size) for _, bias, _ in dense[:-1])
    return (
        f"Made with: {g.games:,} random games of {g.env_id}, kept if {g.keeping()}; "
        + (f"a {layers} network, " if layers else "")
        + f"{t.epochs} epochs, batch {t.batch_size}; {r.evaluation.config.games} games played; seed {g.seed}."
    )


if state.notebook is not None:
    r = state.notebook
    g, t, e, rnd = r.generation, r.training, r.evaluation, r.random_evaluation
    st.success(f"Notebook finished in {r.seconds['total']:.1f} s ({state.notebook_source or f'seed {g.config.seed}'}).")
    st.caption(made_with(r))
    c = st.columns(5)
    c[0].metric(
        "Kept games", f"{g.accepted:,}", f"{g.acceptance_rate:.1%} of {g.games:,}", delta_color="off", delta_arrow="off"
    )
    c[1].metric("Average accepted score", f"{g.accepted_mean:.1f}")
    c[2].metric("Training accuracy", f"{t.final_accuracy:.3f}")
    c[3].metric("Network's average score", f"{e.mean:.1f}", f"{e.mean - rnd.mean:+.1f} vs random", delta_color="normal")
    c[4].metric("Random play's average", f"{rnd.mean:.1f}")
    ratios = e.choice_ratios
    st.caption(
        " · ".join(f"Choice {a}: {ratios[a]:.2f}" for a in reversed(range(len(ratios))))
        + f" · median accepted score {score_text(g.accepted_median)}"
        + " · seconds: "
        + ", ".join(f"{k} {v:.1f}" for k, v in r.seconds.items())
    )
    show_code("home", r)
    st.page_link("pages/play.py", label="See the network play (GIFs, charts) →", icon=":material/sports_esports:")

steps = [
    ("1 · Random play", "pages/random_play.py", "watch random games", state.random_play is not None),
    (
        "2 · Generate data",
        "pages/generate.py",
        "keep the games scoring at least a threshold",
        state.dataset is not None,
    ),
    ("3 · Train", "pages/train.py", "imitate the kept games", state.model is not None),
    ("4 · Play & evaluate", "pages/play.py", "let the network play, beside random play", state.evaluation is not None),
    ("5 · Ensemble", "pages/ensemble.py", "several weak networks vote", state.ensemble is not None),
    ("6 · Generations", "pages/generations.py", "retrain on its own best games", state.improve is not None),
]
st.subheader("Your pipeline")
cols = st.columns(3) + st.columns(3)  # two rows of three cards
for col, (title, path, what, done) in zip(cols, steps, strict=True):
    with col.container(border=True):
        st.markdown(f"**{title}**")
        st.caption(what)
        st.markdown(
            ":green[:material/check_circle: **done**]" if done else ":gray[:material/radio_button_unchecked: not yet]"
        )
        st.page_link(path, label="Open", icon=":material/arrow_forward:")

take_home = st.container(border=True)
take_home.markdown("**Take it home**")
if state.steps:
    take_home_zip_button(take_home, state.steps)
else:
    take_home.caption(
        "Once a page has made a result, this session can be downloaded here as a Jupyter notebook with the "
        "library it runs on, and each page's **Show the code** gives the Python behind its result."
    )

with st.expander("About: which notebook this is, and why imitating lucky games works", icon=":material/school:"):
    st.markdown(
        "CartPole Lab grew from a classic teaching notebook on CartPole: it plays 10,000 random games, keeps "
        "the ones scoring at least 50, trains a network to answer each kept observation with the action taken "
        "there, and lets that network play. Every step of it is a page here (1 to 4), with its figures; pages "
        "5 to 7 go further.\n\n"
        "**Where the games come from.** The games come from Gymnasium, a standard collection of games for "
        "learning programs: CartPole (keep a pole upright on a cart), then Acrobot, MountainCar and "
        "LunarLander, harder tests of the same idea. Each page plays the game you pick.\n\n"
        "**Why it works.** A random game that lasted long is one where, more often than not, the random "
        "push happened to be the right one. The network learns the *typical* move in each situation from "
        "thousands of such steps: it keeps their tendency and drops their noise, so it plays far better "
        "than any of the games it learned from. Generations repeat the idea with the network's own best "
        "games, until it masters the game. No reward is ever used for learning, only to pick the games."
    )
