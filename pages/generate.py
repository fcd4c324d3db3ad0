"""Generate data: play many random games and keep the good ones (the notebook's
``initial_population``)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cartpole_core.errors import UserError
from cartpole_core.generate import GenerationConfig, generate
from cartpole_core.recipes import generate_recipe
from cartpole_core.storage import RunRecord, dataset_from_bytes, dataset_to_bytes
from pages.common import (
    LIMITS,
    checked,
    chosen_upload,
    counter_chart,
    env_picker,
    from_url,
    in_words,
    lab,
    next_step,
    of_this_game,
    progress_bar,
    ray_job,
    record_step,
    save_as_run,
    score_histogram,
    score_text,
    set_dataset,
    setting,
    settings_follow_env,
    share_settings,
    show_code,
    show_error,
    shown_step,
    url_number,
    url_score,
)
from pages.learn import what_to_notice

state = lab()
st.title("Generate data")
st.markdown(
    "Play thousands of games with random pushes and **keep only the games that scored at least the "
    "requirement**. Every step of a kept game becomes a training row: the observation the player saw "
    "and the action it took. Unlike the notebook, each game's first step (from the reset observation) is kept."
)

RULES = {"score": "games scoring at least a score", "share": "the best share of games"}


info = env_picker("gen_env")
fitted = GenerationConfig.for_env(state.env_id)
what_to_notice("generate", fitted.env_id)
settings_follow_env(  # a new game starts from its own defaults: its scores use another scale
    "gen",
    fitted.env_id,
    {
        "gen_games": setting(fitted, "games", cap=LIMITS["games"])[2],
        "gen_goal_steps": fitted.goal_steps,
        "gen_rule": "share" if fitted.keep_top else "score",
        "gen_requirement": float(fitted.score_requirement),
        "gen_keep_top": 100 * (fitted.keep_top or 0.05),
    },
)
rule = st.radio(
    "Keep",
    list(RULES),
    index=list(RULES).index(from_url("gen_rule", "share" if fitted.keep_top else "score", choices=list(RULES))),
    format_func=RULES.get,
    horizontal=True,
    key="gen_rule",
    help="A fixed score needs to know the game's scale (CartPole: 50 is the notebook's). The best share "
    "works for any game: the best 5 % of this run's games, whatever their scores.",
)
with st.form("generate_form"):
    c = st.columns(4)
    games = url_number(
        c[0],
        "Games",
        *(games_range := setting(fitted, "games", cap=LIMITS["games"])),
        step=1000,
        key="gen_games",
        help=f"Random games to play (the notebook: 10,000; at most {games_range[1]:,} here).",
    )
    goal_steps = url_number(
        c[1],
        "Goal steps",
        *setting(fitted, "goal_steps"),
        key="gen_goal_steps",
        help="Most steps a game may last; a game still going then is stopped (500 in CartPole-v1).",
    )
    if rule == "score":
        requirement = url_score(
            c[2],
            "Score requirement",
            fitted.score_requirement,
            key="gen_requirement",
            help="A game is kept when its score reaches at least this (the notebook: 50).",
        )
        keep_top = None
    else:
        keep_top = url_number(
            c[2],
            "Best share (%)",
            *setting(fitted, "keep_top", scale=100)[:2],
            100 * (fitted.keep_top or 0.05),
            step=1.0,
            format="%.1f",
            key="gen_keep_top",
            help="Keep this share of the games, the best ones"
            + (
                f" by score, then by the highest {info.obs_names[fitted.progress_dim]} reached (every game "
                "that misses the goal scores the same)."
                if info is not None and fitted.progress_dim is not None
                else ". Games tied at the cut are all kept or all left out, whichever is nearer the share; "
                "the share actually kept is shown with the result."
            ),
        )
        requirement = fitted.score_requirement
    seed = url_number(
        c[3], "Seed", *setting(GenerationConfig, "seed"), key="gen_seed", help="Same seed, same games, same dataset."
    )
    submitted = st.form_submit_button("Play and keep the good games", icon=":material/dataset:", type="primary")

share_settings(["gen_env", "gen_games", "gen_goal_steps", "gen_rule", "gen_requirement", "gen_keep_top", "gen_seed"])
if submitted and info is not None and checked(games, goal_steps, keep_top if rule == "share" else 0, seed):
    config = GenerationConfig(
        env_id=info.env_id,
        games=int(games),
        goal_steps=int(goal_steps),
        score_requirement=float(requirement),
        seed=int(seed),
        keep_top=None if keep_top is None else float(keep_top) / 100,
        progress_dim=fitted.progress_dim,  # the env's tie-breaker: how far a game got (MountainCar)
    )
    update, bar = progress_bar("Playing")
    try:
        # Slow envs' games are split into chunks that run as Ray tasks of their own.
        result = ray_job("Generating", generate, config, progress=update)
    except Exception as exc:  # shown to the user; the session keeps what it had
        show_error(exc)
    else:
        state.generation = result
        record_step("generate", generate_recipe(config, result), result)
        if result.accepted:
            set_dataset(result.dataset, f"{result.games:,} random games, seed {config.seed}")
    finally:
        bar.empty()

result = state.generation
if result is not None and of_this_game(result.config.env_id, "Your last generated games were of"):
    cfg = result.config
    asked = f" ({cfg.keeping()} asked)" if cfg.keep_top is not None else ""
    kept_if = f"score ≥ {score_text(result.threshold)}{asked}"
    st.subheader(f"{result.games:,} random games of {cfg.env_id}, kept if {kept_if}")
    st.caption(f"Made with: {cfg.games:,} games of at most {cfg.goal_steps:,} steps, seed {cfg.seed}.")
    m = st.columns(5)
    m[0].metric("Games played", f"{result.games:,}")
    m[1].metric("Kept", f"{result.accepted:,}")
    m[2].metric("Acceptance rate", f"{result.acceptance_rate:.1%}")
    m[3].metric("Average kept score", "–" if result.accepted_mean is None else f"{result.accepted_mean:.1f}")
    m[4].metric("Median kept score", "–" if result.accepted_median is None else score_text(result.accepted_median))
    if result.accepted == 0:
        try:
            result.require_accepted()
        except UserError as exc:  # says why nothing was kept and what to change
            st.warning(f"{in_words(str(exc))} Your previous dataset (if any) is kept.", icon=":material/warning:")
    c1, c2 = st.columns(2)
    with c1:
        st.altair_chart(
            score_histogram(
                result.scores, "All scores, with the score a game needed", result.threshold if result.accepted else None
            ),
            width="stretch",
        )
    with c2:
        if result.accepted:
            st.altair_chart(counter_chart(result.accepted_counts), width="stretch")
    st.caption(
        f"{result.env_steps:,} steps played in {result.seconds:.2f} s "
        f"({result.env_steps / max(result.seconds, 1e-9):,.0f} steps a second)."
    )
    show_code("generate", result)
    if st.button(
        "Save as a run",
        icon=":material/save:",
        key="gen_save_run",
        disabled=result.accepted == 0,
        help="Keep this result (its settings, figures and kept games) on the server (see Runs)."
        if result.accepted
        else "No game was kept: there is no dataset to save.",
    ):
        save_as_run(
            RunRecord(
                kind="generate",
                name=f"{cfg.env_id} {result.games} games",
                settings=cfg.__dict__,
                results={
                    "accepted": result.accepted,
                    "acceptance_rate": result.acceptance_rate,
                    "accepted_mean": result.accepted_mean,
                    "accepted_median": result.accepted_median,
                    "scores": result.scores,
                },
            ),
            dataset=result.dataset,
            code=shown_step("generate", result),
        )

dataset = state.dataset
if dataset is not None and of_this_game(dataset.env_id, "Your dataset is of"):
    st.subheader("The dataset")
    st.caption(f"{dataset.n_games:,} games, {len(dataset):,} rows, from {state.dataset_source}.")
    from cartpole_core.envs import env_info

    ds_info = env_info(dataset.env_id)
    peek = pd.DataFrame(dataset.observations[:200], columns=list(ds_info.obs_names))
    peek.insert(0, "game", dataset.game_ids[:200])
    peek["action"] = [ds_info.action_names[a] for a in dataset.actions[:200]]
    st.dataframe(peek, height=240, width="stretch", hide_index=True)
    counts = dataset.action_counts()
    st.caption(
        "Label balance: "
        + ", ".join(f"{ds_info.action_names[a]} {counts[a] / max(len(dataset), 1):.1%}" for a in range(len(counts)))
    )
    st.download_button(
        "Download dataset (.npz)",
        icon=":material/download:",
        data=dataset_to_bytes(dataset),
        file_name=f"cartpole-lab-{dataset.env_id}-{dataset.n_games}-games.npz",
        mime="application/octet-stream",
        key="gen_download",
        help="The dataset as a .npz file of numbers (no code), to keep or to upload later.",
        on_click="ignore",
    )

st.subheader("Upload a dataset")
upload = chosen_upload(
    "A .npz dataset saved by CartPole Lab",
    ["npz"],
    "Use this dataset",
    key="gen_upload",
    help="It is checked (its numbers, its actions and its game) before it replaces the current dataset.",
    button_help="Check the file and make it this session's dataset.",
)
if upload is not None:
    try:
        loaded = dataset_from_bytes(upload.getvalue())
    except Exception as exc:
        show_error(exc)
    else:
        set_dataset(loaded, f"uploaded {upload.name}")
        st.success(
            f"Loaded {loaded.n_games:,} games, {len(loaded):,} rows of {loaded.env_id}: "
            f"the session now plays {loaded.env_id}."
        )
next_step(("pages/train.py", "Train"))
