"""Random play: what the game looks like when nobody plays it well."""

from __future__ import annotations

import streamlit as st

from cartpole_core.envs import player_does, score_meaning
from cartpole_core.evaluate import EvaluationConfig
from pages.common import (
    LIMITS,
    checked,
    env_picker,
    lab,
    next_step,
    of_this_game,
    progress_bar,
    ray_job,
    record_step,
    score_histogram,
    score_text,
    setting,
    share_settings,
    show_code,
    show_error,
    url_number,
)
from pages.learn import what_to_notice

state = lab()
st.title("Random play")

info = env_picker("random_env")
st.markdown(
    f"First, the game itself: each step the player {player_does(state.env_id)}, at random. "
    "This is where the notebook starts, and the baseline every network is measured against."
)
what_to_notice("random_play", state.env_id)
c1, c2 = st.columns(2)
games = url_number(
    c1,
    "Games",
    *(games_range := setting(EvaluationConfig, "games", cap=LIMITS["eval_games"]))[:2],
    100,  # the page's own default: random scores spread widely, 10 games would say little
    step=10,
    key="random_games",
    help=f"How many random games to play (at most {games_range[1]:,} here).",
)
seed = url_number(
    c2,
    "Seed",
    *setting(EvaluationConfig, "seed"),
    key="random_seed",
    help="Same seed, same starting positions and same random pushes.",
)

share_settings(["random_env", "random_games", "random_seed"])
if info is not None:
    st.info(f"**What is a score in {info.env_id}?** {score_meaning(info)}", icon=":material/info:")
    if st.button(
        "Play random games",
        icon=":material/casino:",
        type="primary",
        key="random_play",
        help="Play the games with random pushes and film the first one.",
    ) and checked(games, seed):
        config = EvaluationConfig.for_env(info.env_id, games=int(games), seed=int(seed))
        update, bar = progress_bar("Playing")
        try:
            from cartpole_core.jobs import random_play_job

            job = (random_play_job, config, info.n_actions, LIMITS["gif_frames"])
            result, gif = ray_job("Random play", *job, progress=update)
        except Exception as exc:  # shown to the user; the session keeps what it had
            show_error(exc)
        else:
            state.random_play, state.random_gif = result, gif
            from cartpole_core.recipes import random_play_recipe

            record_step("random_play", random_play_recipe(config, info.n_actions, result), result)
        finally:
            bar.empty()

result = state.random_play
if result is not None and of_this_game(result.config.env_id, "Your last random play was of"):
    st.subheader(f"{result.config.games:,} random games of {result.config.env_id}")
    cols = st.columns([1, 2])
    with cols[0]:
        if state.random_gif:
            caption = f"Game 1 of seed {result.config.seed}: score {score_text(result.scores[0])}"
            st.image(state.random_gif, caption=caption)
    with cols[1]:
        m = st.columns(4)
        m[0].metric("Mean score", f"{result.mean:.1f}")
        m[1].metric("Median", score_text(result.median))
        m[2].metric("Best", score_text(result.max))
        m[3].metric("Worst", score_text(result.min))
        st.altair_chart(score_histogram(result.scores, "Scores of random play"), width="stretch")
    st.caption(f"Played in {result.seconds:.2f} s.")
    show_code("random_play", result)
next_step(("pages/play_yourself.py", "Play it yourself"), ("pages/generate.py", "Generate data"))
