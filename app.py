"""CartPole Lab: see a neural network learn to play a game.

Entry point of the dashboard: page set-up, the sidebar every page shares, and the
navigation over the pages in ``pages/`` (one page per step of the journey).
Run it with ``make run`` (or ``streamlit run app.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so pages can import pages.common

from cartpole_core.cluster import engine_info, warm_engine  # noqa: E402
from pages import sessions  # noqa: E402
from pages.common import Lab, lab, model_fits, page_frame, remember_settings, tensorflow_line, undo_last  # noqa: E402
from pages.phone import fit_phones  # noqa: E402
from pages.server import capacity_line, engine_line, server_line  # noqa: E402

st.set_page_config(page_title="CartPole Lab", page_icon="🕹️", layout="wide")
fit_phones()  # tap targets for a fingertip, forms that keep their button on a phone's first screen

PAGES = {
    "Start": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/glossary.py", title="Glossary", icon=":material/menu_book:"),
    ],
    "The notebook, step by step": [
        st.Page("pages/random_play.py", title="1 · Random play", icon=":material/casino:"),
        st.Page("pages/play_yourself.py", title="Play it yourself", icon=":material/keyboard:"),
        st.Page("pages/generate.py", title="2 · Generate data", icon=":material/dataset:"),
        st.Page("pages/train.py", title="3 · Train", icon=":material/neurology:"),
        st.Page("pages/play.py", title="4 · Play & evaluate", icon=":material/sports_esports:"),
    ],
    "Beyond the notebook": [
        st.Page("pages/ensemble.py", title="5 · Ensemble", icon=":material/how_to_vote:"),
        st.Page("pages/generations.py", title="6 · Generations", icon=":material/trending_up:"),
        st.Page("pages/sweep.py", title="7 · Sweep", icon=":material/science:"),
        st.Page("pages/policy_map.py", title="Policy map", icon=":material/grid_on:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/balance:"),
        st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
    ],
}


def sidebar() -> None:
    """This session's dataset, model and ensemble at a glance, and the hardware line."""
    state = lab()
    with st.sidebar:
        st.markdown("### This session")
        sessions.show_kept(state, nothing_yet=state.dataset is None and state.model is None)  # keeps the cookie
        st.caption(f"Environment: **{state.env_id}**")
        if state.dataset is not None:
            other = "" if state.dataset.env_id == state.env_id else f", of {state.dataset.env_id}"
            st.caption(
                f"Dataset: **{state.dataset.n_games:,} games**, {len(state.dataset):,} rows ({state.dataset_source})"
                + other
            )
        else:
            st.caption("Dataset: none yet")
        if state.model is not None:
            acc = state.training.final_accuracy if state.training else None
            acc_text = f", accuracy {acc:.2f}" if acc is not None else ""
            other = "" if model_fits() else f", plays {state.model_env_id or 'another game'}"
            st.caption(f"Model: **{state.model_source}**{acc_text}{other}")
        else:
            st.caption("Model: none yet")
        if state.undo is not None:
            st.caption(f"Last change: {state.undo[0]}.")
            if st.button("Undo", icon=":material/undo:", key="undo_last", help="Bring back what was there before it."):
                undo_last()
                st.rerun()
        if state.ensemble is not None:
            st.caption(f"Ensemble: **{len(state.ensemble.models)} members**, {state.ensemble.config.vote} vote")
        if not sessions.nothing_made(state):  # a dataset, a model, results, games played, a board name
            with st.popover("Start afresh", icon=":material/restart_alt:"):
                st.caption(
                    "Forget this session's dataset, models, results and games, on this server too (for a "
                    "shared computer, or a clean slate). Runs you saved stay on the Runs page, but this "
                    "browser can no longer delete them. Other open tabs keep showing the old work until "
                    "you reload them."
                )
                if st.button("Forget my session", key="start_afresh", type="primary"):
                    st.session_state["lab"] = sessions.start_afresh(Lab)
                    st.rerun()
        st.divider()
        st.caption(tensorflow_line())
        st.caption(server_line())
        info = engine_info()
        if info.capacity is not None:  # what the container gives, as the engine found it
            st.caption(capacity_line(info.capacity))
        st.caption(engine_line(info))


#: How long after the first page's script the engine's warm-up begins (seconds).
WARM_AFTER_SECONDS = 2.0

page = st.navigation(PAGES, expanded=True)  # every step of the journey in sight
with page_frame():  # a page that ends early (pages.common.end_page) still gets the sidebar
    page.run()
remember_settings()  # so the page shows these settings again when the visitor comes back
sidebar()  # after the page, so it shows what the page just made

if os.environ.get("CARTPOLE_LAB_WARM", "1") != "0":
    # Once per server, in the background, once its first page is drawn (Ray's import and start
    # would slow that page down): the first visitor's first training starts at once.
    warm_engine(after_seconds=WARM_AFTER_SECONDS)
