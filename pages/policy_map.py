"""Policy map: what the network would do, everywhere on a slice of the observation space."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from cartpole_core.envs import make_env, obs_label
from cartpole_core.errors import UserError
from cartpole_core.evaluate import EvaluationConfig, evaluate
from cartpole_core.policies import Policy, probability_grid
from pages.common import (
    chart_title,
    counted_player_line,
    end_page,
    ensemble_fits,
    env_picker,
    lab,
    next_step,
    player_select,
    player_title,
    score_text,
    session_model,
    share_settings,
    show_error,
    show_recipe,
    url_select,
)

#: Grid points along each axis of the map.
RESOLUTION = 60

state = lab()
st.title("Policy map")
st.markdown(
    "A heatmap of the probability the network gives to one action, over two observation values "
    "(for CartPole: the pole's angle and how fast it turns), the other values held where the "
    "sliders put them (at first: where a game starts, a state the game can really be in). Overlay "
    "one game to see which states the network actually visits."
)

#: Axes the map starts on, by game: what decides the action (CartPole: the pole's angle and
#: its turning speed; Acrobot: the two joints' speeds; cos θ against sin θ is a circle, not a map).
FIRST_AXES = {"CartPole": (2, 3), "Acrobot": (4, 5)}
#: The overlaid game's colour: in no action's colour scale.
PATH_COLOR = "#f2c14e"

info = env_picker("map_env")
assert info is not None  # any game: None only with choices
env_id = info.env_id
model = session_model("map")
players: dict[str, str] = {}
if model is not None:
    players["current model"] = "model"
if ensemble_fits():
    players["ensemble"] = "ensemble"
if not players and state.model is None:
    st.warning(
        "There is no network in this session yet: train one (or run generations) first.", icon=":material/neurology:"
    )
    st.page_link("pages/train.py", label="Train a network →", icon=":material/neurology:")
if not players:
    end_page()


def dimension_ranges() -> list[tuple[float, float]]:
    """Per observation value: the 1st-99th percentile of the dataset when there is one for
    this env, else the env's bounds when finite, else -2..2."""
    data = state.dataset.observations if state.dataset is not None and state.dataset.env_id == env_id else None
    ranges = []
    for i in range(info.obs_dim):
        if data is not None and len(data):
            lo, hi = np.percentile(data[:, i], [1, 99])
            pad = 0.25 * (hi - lo) + 1e-3
            ranges.append((float(lo - pad), float(hi + pad)))
        elif (
            np.isfinite(info.obs_low[i]) and np.isfinite(info.obs_high[i]) and info.obs_high[i] - info.obs_low[i] < 100
        ):
            ranges.append((info.obs_low[i], info.obs_high[i]))
        else:
            ranges.append((-2.0, 2.0))
    return ranges


def start_state() -> np.ndarray:
    """float32 (obs_dim,): the observation game 1 of seed 0 starts from (a real state)."""
    env = make_env(env_id, goal_steps=1)
    try:
        obs, _ = env.reset(seed=int(EvaluationConfig.for_env(env_id, games=1, seed=0).game_seeds()[0]))
    finally:
        env.close()
    return np.asarray(obs, dtype=np.float32)


ranges = dimension_ranges()
names = [obs_label(info, i) for i in range(info.obs_dim)]
default_x, default_y = FIRST_AXES.get(env_id.split("-v")[0], (0, 1))
if max(default_x, default_y) >= info.obs_dim:
    default_x, default_y = 0, min(1, info.obs_dim - 1)
c = st.columns(4)
player = c[0].selectbox("Player", list(players), key="map_player", help="Whose decisions to map.")
x_name = url_select(
    c[1],
    "Across (x)",
    names,
    names[default_x],
    key="map_x",
    help="Observation value along the x axis.",
)
y_name = url_select(
    c[2],
    "Up (y)",
    names,
    names[default_y],
    key="map_y",
    help="Observation value along the y axis.",
)
action_name = url_select(
    c[3],
    "Probability of",
    list(info.action_names),
    info.action_names[-1],
    key="map_action",
    help="The action whose probability the colours show.",
)
x_dim, y_dim = names.index(x_name), names.index(y_name)
base = start_state()
others = [i for i in range(info.obs_dim) if i not in (x_dim, y_dim)]
if others:
    st.caption("The other observation values, held fixed:")
    cols = st.columns(len(others))
    for col, i in zip(cols, others, strict=True):
        lo, hi = ranges[i]
        base[i] = col.slider(
            names[i],
            float(lo),
            float(hi),
            float(np.clip(base[i], lo, hi)),
            key=f"map_fix_{i}",
            help=f"Value of {names[i]} for every point of the map.",
        )
overlay_col, mode_col = st.columns([2, 1], vertical_alignment="bottom")
overlay = overlay_col.checkbox(
    "Overlay the states of one evaluation game",
    value=True,
    key="map_overlay",
    help="Game 1 of seed 0, played by this player.",
)
mode = player_select(
    mode_col,
    "map_mode",
    env_id,
    "The map shows the probabilities, the same for both; the overlaid game is played greedy (always the "
    "most probable move) or sampled (a move drawn from them).",
    label="How it plays that game",
)
share_settings(["map_player", "map_x", "map_y", "map_action", "map_mode"])


def current_policy() -> Policy:
    if players[player] == "ensemble":
        assert state.ensemble is not None
        return state.ensemble.policy()
    from cartpole_core.policies import ModelPolicy

    assert model is not None
    return ModelPolicy(model, name="network")


if x_dim == y_dim:
    st.error("Choose two different observation values for the two axes.")
    end_page()
try:
    policy = current_policy()
    grid = probability_grid(policy, base, x_dim, y_dim, ranges[x_dim], ranges[y_dim], resolution=RESOLUTION)
except (UserError, ValueError) as exc:
    show_error(exc)
    end_page()

action = list(info.action_names).index(action_name)
dx, dy = float(grid.xs[1] - grid.xs[0]), float(grid.ys[1] - grid.ys[0])
gx, gy = np.meshgrid(grid.xs, grid.ys)
cells = pd.DataFrame(
    {
        "x": gx.ravel() - dx / 2,
        "x2": gx.ravel() + dx / 2,
        "y": gy.ravel() - dy / 2,
        "y2": gy.ravel() + dy / 2,
        "p": grid.probabilities[:, :, action].ravel(),
    }
)
heat = (
    alt.Chart(cells)
    .mark_rect()
    .encode(
        x=alt.X("x:Q", title=x_name, scale=alt.Scale(domain=list(ranges[x_dim]), nice=False)),
        x2="x2:Q",
        y=alt.Y("y:Q", title=y_name, scale=alt.Scale(domain=list(ranges[y_dim]), nice=False)),
        y2="y2:Q",
        color=alt.Color(
            "p:Q",
            title=f"P({action_name})",
            scale=alt.Scale(scheme="redblue", domain=[0, 1], reverse=True),
            legend=alt.Legend(orient="bottom"),  # the map keeps the width, on a phone too
        ),
        tooltip=[alt.Tooltip("p:Q", format=".2f", title=f"P({action_name})")],
    )
)
layers: list[alt.Chart] = [heat]
if overlay:
    try:
        sampled = mode == "sampled"
        game = evaluate(
            policy,
            EvaluationConfig.for_env(env_id, games=1, seed=0, keep_observations=True, sample_actions=sampled),
        )
    except UserError as exc:
        show_error(exc)
    else:
        assert game.observations is not None
        path = pd.DataFrame(
            {
                "x": game.observations[:, x_dim],
                "y": game.observations[:, y_dim],
                "step": np.arange(len(game.observations)),
            }
        )
        inside = path[path.x.between(*ranges[x_dim]) & path.y.between(*ranges[y_dim])]  # keep the map's scale readable
        layers.append(
            alt.Chart(inside)
            .mark_line(
                color=PATH_COLOR, strokeWidth=1.5, opacity=0.9, point=alt.OverlayMarkDef(size=10, color=PATH_COLOR)
            )
            .encode(x="x:Q", y="y:Q", order="step:Q", tooltip=["step:Q"])
        )
        st.caption(
            f"The overlaid game lasted {int(game.lengths[0])} steps (score {score_text(game.scores[0])}), played by "
            f"{player_title(players[player], sampled)}. {counted_player_line(env_id, sampled)}"
        )
title = chart_title(f"P({action_name}) by {x_name} and {y_name}")
# The height holds the title and the legend under the map too.
st.altair_chart(alt.layer(*layers).properties(height=560, title=title), width="stretch")
if players[player] != "ensemble":
    from cartpole_core.recipes import policy_map_recipe

    recipe = policy_map_recipe(base, x_dim, y_dim, ranges[x_dim], ranges[y_dim], RESOLUTION)
    show_recipe(recipe, "map", model=model)
else:
    st.caption("Show the code: for the network only (the ensemble has no file to start from).")
next_step(("pages/compare.py", "Compare"))
