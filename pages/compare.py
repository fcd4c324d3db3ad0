"""Compare: several players on the same games over several seeds, with confidence
intervals; and what the kept and the rejected games looked like."""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from cartpole_core.envs import env_info
from cartpole_core.evaluate import EvaluationConfig, compare
from cartpole_core.policies import Policy, RandomPolicy
from pages.common import (
    ACCENT,
    LIMITS,
    MODEL_COLOR,
    RANDOM_COLOR,
    Comparison,
    chart_title,
    checked,
    choice_chart,
    counted_player_line,
    ensemble_fits,
    env_picker,
    lab,
    next_step,
    of_this_game,
    player_moves,
    player_select,
    policy_colors,
    progress_bar,
    ray_job,
    record_step,
    session_dataset,
    session_model,
    setting,
    share_settings,
    show_code,
    show_error,
    url_number,
)

state = lab()
st.title("Compare")
st.markdown(
    "One seed can flatter a player: results vary a lot from seed to seed. Here every player meets "
    "**the same games on several seeds**, and each bar shows the mean over seeds with its 95 % "
    "confidence interval."
)

info = env_picker("cmp_env")
assert info is not None  # any game: None only with choices
env_id = info.env_id
model = session_model("cmp")
live = state.improve_live or {}
# Generations of another game are put away with their game (they come back with it).
snapshots: dict[int, Any] = live.get("snapshots", {}) if live and live["config"].env_id == env_id else {}
available = ["random"]
if model is not None:
    available.append("current model")
if ensemble_fits():
    available.append("ensemble")
available += [f"generation {g}" for g in sorted(snapshots)]

c = st.columns(4)
chosen = c[0].multiselect(
    "Players",
    available,
    default=available[: min(len(available), 3)],
    key="cmp_players",
    help="Who plays. Generations appear after a run on the Generations page.",
)
n_seeds = url_number(c[1], "Seeds", 2, 20, 5, key="cmp_seeds", help="Each seed is a different set of games.")
games = url_number(
    c[2],
    "Games per seed",
    *setting(EvaluationConfig, "games", cap=LIMITS["eval_games"] // 5)[:2],
    20,  # the page's own default: 5 seeds × 20 games per player
    key="cmp_games",
    help="Games each player plays on each seed.",
)
mode = player_select(
    c[3],
    "cmp_mode",
    env_id,
    "greedy: every network (and the ensemble) makes its most probable move; sampled: a move drawn from its "
    "probabilities. Random play always draws at random.",
    label="How the networks play",
)


share_settings(["cmp_seeds", "cmp_games", "cmp_mode"])


def make_policy(name: str) -> Policy:
    if name == "random":
        return RandomPolicy(info.n_actions)
    from cartpole_core.policies import ModelPolicy

    if name == "current model":
        assert model is not None
        return ModelPolicy(model, name=name)
    if name == "ensemble":
        assert state.ensemble is not None
        return state.ensemble.policy()
    return ModelPolicy(snapshots[int(name.split()[-1])], name=name)


if st.button(
    "Compare",
    icon=":material/balance:",
    type="primary",
    key="cmp_run",
    help="Every chosen player plays the same games on every seed.",
) and checked(n_seeds, games):
    update, bar = progress_bar("Playing")
    try:
        policies = {name: make_policy(name) for name in chosen}
        config = EvaluationConfig.for_env(env_id, games=int(games), sample_actions=mode == "sampled")
        results = ray_job("Comparing", compare, policies, config, list(range(int(n_seeds))), progress=update)
    except Exception as exc:  # shown to the user; the session keeps what it had
        show_error(exc)
    else:
        from cartpole_core.recipes import compare_recipe

        state.comparison = Comparison(results, env_id, config.sample_actions)
        recipe = compare_recipe(list(chosen), info.n_actions, config, list(range(int(n_seeds))))
        if recipe is not None:
            record_step("compare", recipe, results, model=state.model)
    finally:
        bar.empty()

shown = state.comparison
if shown is not None and shown.results and of_this_game(shown.env_id, "Your last comparison was on"):
    results, sampled = shown.results, shown.sampled
    st.subheader(f"Every player on the same games, the networks {player_moves(sampled, many=True)}")
    st.markdown(counted_player_line(env_id, sampled))
    rows = [{"player": r.name, "mean": r.mean, "low": r.ci95[0], "high": r.ci95[1]} for r in results]
    df = pd.DataFrame(rows)
    base = alt.Chart(df)
    bars = base.mark_bar(opacity=0.8).encode(
        x=alt.X("player:N", sort=None, title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("mean:Q", title="mean score"),
        color=alt.Color("player:N", scale=policy_colors([r.name for r in results], sampled), legend=None),
        tooltip=[
            "player:N",
            alt.Tooltip("mean:Q", format=".1f"),
            alt.Tooltip("low:Q", format=".1f"),
            alt.Tooltip("high:Q", format=".1f"),
        ],  # fmt: skip
    )
    errors = base.mark_errorbar(color=ACCENT, thickness=2, ticks=True).encode(
        x=alt.X("player:N", sort=None), y=alt.Y("low:Q", title="mean score"), y2="high:Q"
    )
    c1, c2 = st.columns([3, 2])
    title = chart_title("Mean score over seeds", "with 95 % confidence intervals")
    c1.altair_chart(alt.layer(bars, errors).properties(title=title), width="stretch")
    c2.altair_chart(choice_chart({r.name: r.choice_ratios for r in results}, info.action_names), width="stretch")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "player": r.name,
                    "plays": "at random" if r.name == "random" else player_moves(sampled),
                    "mean": round(r.mean, 1),
                    "95 % CI": f"{r.ci95[0]:.1f} – {r.ci95[1]:.1f}" + (" (cut)" if r.interval.clipped else ""),
                    "per seed": ", ".join(f"{m:.1f}" for m in r.seed_means),
                }
                for r in results
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    if any(r.interval.clipped for r in results):
        st.caption(
            "Intervals marked *cut* ran past the highest (or lowest) score a game can have and "
            "are shown up to it: an interval reaches as far above the mean as below it, scores cannot."
        )
    if not show_code("compare", results):
        st.caption(
            "Show the code: for random play and the current model only (other players have no file to start from)."
        )

st.subheader("Dataset inspector")
gen = state.generation
dataset = session_dataset("cmp")  # of another game: said here, with what fits
if dataset is None and state.dataset is None:
    st.info("Generate a dataset to see its label balance and what kept and rejected games looked like.")
elif dataset is not None:
    ds_info = env_info(dataset.env_id)
    counts = dataset.action_counts()
    balance = pd.DataFrame(
        {"action": list(ds_info.action_names), "rows": counts, "share": counts / max(len(dataset), 1)}
    )
    c1, c2 = st.columns([1, 3])
    c1.altair_chart(
        alt.Chart(balance, title=alt.TitleParams("Label balance", subtitle="of the kept rows"))
        .mark_bar(color=MODEL_COLOR)
        .encode(
            x=alt.X("action:N", title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("share:Q", title="share of rows", axis=alt.Axis(format="%")),
            tooltip=["action:N", "rows:Q", alt.Tooltip("share:Q", format=".1%")],
        ),
        width="stretch",
    )
    kept = pd.DataFrame(dataset.observations, columns=list(ds_info.obs_names)).assign(games="kept")
    frames = [kept.sample(min(len(kept), 20_000), random_state=0)]
    if gen is not None and gen.dataset is dataset and gen.rejected_observations.size:
        frames.append(pd.DataFrame(gen.rejected_observations, columns=list(ds_info.obs_names)).assign(games="rejected"))
    groups = pd.concat(frames)
    hist_rows = []
    for name in ds_info.obs_names:
        edges = np.histogram_bin_edges(groups[name], bins=40)
        for label, part in groups.groupby("games"):
            counts, _ = np.histogram(part[name], bins=edges)
            share = counts / max(counts.sum(), 1)
            hist_rows += [
                {"observation": name, "games": label, "value": float(x), "share": float(y)}
                for x, y in zip(edges[:-1], share, strict=True)
            ]
    c2.markdown("**What the player saw: kept vs rejected games**")
    lines = {"kept": MODEL_COLOR, "rejected": RANDOM_COLOR}
    c2.caption(" · ".join(f"{games} games: the {'dark' if games == 'kept' else 'grey'} line" for games in lines))
    saw = pd.DataFrame(hist_rows)
    # One chart per observation, two to a row (one under another on a phone): a facet's panels have
    # a fixed width, too wide for a phone. No legend in each (the caption says which line is which):
    # the panels are small, their height is for the plot.
    for row in range(0, len(ds_info.obs_names), 2):
        for col, name in zip(c2.columns(2), ds_info.obs_names[row : row + 2], strict=False):
            col.altair_chart(
                alt.Chart(saw[saw["observation"] == name])
                .mark_line(interpolate="step-after")
                .encode(
                    x=alt.X("value:Q", title=name),
                    y=alt.Y("share:Q", title="share of steps", axis=alt.Axis(format="%")),
                    color=alt.Color(
                        "games:N", scale=alt.Scale(domain=list(lines), range=list(lines.values())), legend=None
                    ),
                    tooltip=[
                        "observation:N",
                        "games:N",
                        alt.Tooltip("value:Q", format=".3f"),
                        alt.Tooltip("share:Q", format=".1%"),
                    ],
                ),
                width="stretch",
                height=220,
            )
    if len(frames) == 1:
        st.caption("Rejected games are shown for datasets generated in this session.")
next_step(("pages/runs.py", "Runs"))
