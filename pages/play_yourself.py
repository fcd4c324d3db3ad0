"""Play it yourself: play the game in the page, keep your games, and let a network learn from you."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cartpole_core.errors import UserError
from cartpole_core.human import PLAYABLE, choose_games, game_seed, games_dataset, parse_game, replay
from cartpole_core.storage import RunRecord, dataset_to_bytes
from pages.common import (
    LIMITS,
    end_page,
    env_picker,
    lab,
    next_step,
    ray_job,
    record_step,
    save_as_run,
    score_text,
    set_dataset,
    show_code,
    show_error,
)
from pages.game import game

state = lab()
st.title("Play it yourself")
st.markdown(
    "Be the teacher. Play a few games yourself, keep the good ones, and a network learns to play "
    "**like you**: the same imitation the notebook does with lucky random games, with you as the player. "
    "Slow motion helps: a quarter of the game's 50 steps a second is easy to follow."
)

picked = env_picker(
    "you_env",
    "The games a person can play here, each with its own keys: the whole session then plays it.",
    label="Game",
    choices=tuple(PLAYABLE),
)
if picked is None:
    st.info(
        f"{state.env_id} cannot be played by hand here: choose {', '.join(PLAYABLE)} above (every page then plays it).",
        icon=":material/sports_esports:",
    )
    end_page()
info = picked
env_id = info.env_id

games = [g for g in state.your_games if g.env_id == env_id]
seed = game_seed(len(games))  # game k starts where Play & evaluate's game k (seed 0) starts
message = game(env_id, seed, len(games) + 1, key=f"you_game_{env_id}")
if message is not None:
    try:
        played = replay(parse_game(message))
    except UserError as exc:
        show_error(exc)  # nothing already played is lost
    else:
        state.your_games.append(played)
        st.rerun()  # a new game at once

if not games:
    st.info(f"No {env_id} games yet: play one above.", icon=":material/sports_esports:")
    end_page()

st.subheader("Your games")
rows = [
    {
        "game": i + 1,
        "score": g.score,
        "steps": g.steps,
        **{
            f"share {name}": f"{share:.0%}"
            for name, share in zip(info.action_names, g.action_shares(info.n_actions), strict=True)
        },
        "ended": "by the rules" if g.terminated else "time limit",
    }
    for i, g in enumerate(games)
]
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
scores = [g.score for g in games]
st.caption(f"{len(games)} game(s): mean score {sum(scores) / len(scores):.1f}, best {score_text(max(scores))}.")

watch = st.columns([1, 3])
number = watch[0].selectbox(  # keyed by the count: after a new game, the newest is chosen
    "Watch game", [i + 1 for i in range(len(games))], index=len(games) - 1, key=f"you_watch_{len(games)}"
)
if watch[0].button(
    "Film it", icon=":material/movie:", key="you_film", help="A GIF of the server's replay of that game."
):
    from cartpole_core.jobs import film_game_job

    try:
        state.your_film = (
            env_id,
            int(number),
            ray_job("Filming", film_game_job, games[int(number) - 1], LIMITS["gif_frames"]),
        )
    except Exception as exc:  # shown to the user; the page keeps what it had
        show_error(exc)
if state.your_film is not None and state.your_film[0] == env_id and state.your_film[1] <= len(games):
    shown = games[state.your_film[1] - 1]
    watch[1].image(
        state.your_film[2],
        caption=f"Your game {state.your_film[1]} as the server replayed it: score {score_text(shown.score)}",
    )

# The rule outside the form, so that choosing it redraws the form: a number the rule ignores is
# shown greyed out, with why.
keep = st.radio("Keep", ["all", "best", "at least"], horizontal=True, key="you_keep_mode")
with st.form("you_keep"):
    c = st.columns(2)
    best = c[0].number_input(
        "Best how many", 1, 1_000, min(5, len(games)), key="you_best", disabled=keep != "best",
        help="How many of your best games to keep." + ("" if keep == "best" else " Used when keeping the best."),
    )  # fmt: skip
    at_least = c[1].number_input(
        "Scoring at least", value=float(max(scores)) / 2, key="you_at_least", disabled=keep != "at least",
        help="The score a game needs to be kept." + ("" if keep == "at least" else " Used when keeping 'at least'."),
    )  # fmt: skip
    if keep == "all":
        st.caption("Keeping all your games: neither number is used.")
    kept = st.form_submit_button("Use these games as the dataset", icon=":material/dataset:", type="primary")
if kept:
    try:
        chosen = choose_games(games, str(keep), int(best), float(at_least))
        dataset = games_dataset([games[i] for i in chosen])
    except UserError as exc:
        show_error(exc)
    else:
        from cartpole_core.recipes import your_games_recipe

        set_dataset(dataset, f"your {len(chosen)} {env_id} game(s)")
        record_step("play_yourself", your_games_recipe([games[i] for i in chosen]), dataset)
        st.success(
            f"Your {len(chosen)} game(s), {len(dataset):,} steps, are now the dataset. Train a network on them next.",
            icon=":material/check_circle:",
        )
        st.page_link("pages/train.py", label="Train on your games →", icon=":material/neurology:")

d = state.dataset
if d is not None and d.metadata.get("source") == "your games" and d.env_id == env_id:
    actions = st.container(horizontal=True)
    actions.download_button(
        "Download your games (.npz)",
        icon=":material/download:",
        data=dataset_to_bytes(d),
        file_name=f"cartpole-lab-{d.env_id}-your-{d.n_games}-games.npz",
        mime="application/octet-stream",
        key="you_download",
        on_click="ignore",
    )
    if actions.button("Save as a run", icon=":material/save:", key="you_save"):
        save_as_run(
            RunRecord(
                kind="generate",
                name=f"your {d.n_games} {d.env_id} game(s)",
                settings={"source": "your games", "seeds": d.metadata.get("seeds", [])},
                results={"games": d.n_games, "rows": len(d), "mean": float(d.game_scores.mean())},
            ),
            dataset=d,
        )
    show_code("play_yourself", d)
next_step(("pages/train.py", "Train"), ("pages/generate.py", "Generate data"))
