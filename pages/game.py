"""The game in the page, for Play it yourself: a Streamlit custom component (``st.components.v2``)
whose HTML, CSS and JavaScript are inline strings served by the app itself (no build step, no
CDN). ``game_physics.js`` steps the game for the picture; ``game_component.js`` draws it and
reads the keys and buttons, and speaks of keys on a keyboard's screen, of buttons to tap on a
touch screen (where they are big). The server never trusts it: it gets only the seed and the actions
(:mod:`cartpole_core.human` replays them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from cartpole_core.envs import env_info
from cartpole_core.human import PLAYABLE, start_state

HERE = Path(__file__).resolve().parent

#: The action taken while no key is held: none for CartPole (it keeps pushing the last way),
#: "no push" / "no torque" (the middle action) for the others.
IDLE_ACTION: dict[str, int | None] = {"CartPole-v1": None, "MountainCar-v0": 1, "Acrobot-v1": 1}
#: Slow motion: shares of the env's 50 steps a second.
SPEEDS = {"¼ speed": 0.25, "½ speed": 0.5, "full speed": 1.0}

_HTML = (
    '<div class="game" data-state="loading">'
    '<div class="keys"></div>'
    '<canvas width="600" height="340" aria-label="the game"></canvas>'
    '<div class="row"><span class="buttons"></span>'
    '<label>Speed <select class="speed">'
    + "".join(f'<option value="{v}">{name}</option>' for name, v in SPEEDS.items())
    + "</select></label></div>"
    '<div class="readout"></div><div class="status"></div></div>'
)
_CSS = """
.game { font-family: sans-serif; font-size: 14px; }
.game canvas { border: 1px solid #ddd; border-radius: 6px; max-width: 100%; touch-action: none; }
.game .row { display: flex; gap: 12px; align-items: center; margin: 6px 0; }
.game .buttons button { font-size: 22px; min-width: 64px; min-height: 44px; margin-right: 6px;
  border: 1px solid #bbb; border-radius: 6px; background: white; cursor: pointer;
  user-select: none; -webkit-user-select: none; -webkit-touch-callout: none; touch-action: none; }
.game .buttons button.held { background: #e8f4f6; border-color: #00798c; }
.game .keys { color: #555; margin-bottom: 6px; }
/* A touch screen: the buttons are the keys, big enough for a thumb, the speed under them. */
@media (pointer: coarse) {
  .game .row { flex-wrap: wrap; }
  .game .buttons { display: flex; gap: 8px; width: 100%; }
  .game .buttons button { flex: 1; min-height: 72px; font-size: 30px; margin-right: 0; }
  .game select.speed { min-height: 44px; font-size: 16px; }
}
.game .readout { font-family: monospace; color: #444; }
.game .status { margin-top: 4px; }
"""
_game = st.components.v2.component(
    "cartpole_lab_game",
    html=_HTML,
    css=_CSS,
    js=(HERE / "game_physics.js").read_text() + "\n" + (HERE / "game_component.js").read_text(),
)


def game(env_id: str, seed: int, number: int, key: str) -> dict[str, Any] | None:
    """Draw a new game of ``env_id`` (the player's game ``number``) starting from
    ``reset(seed=seed)``; returns the browser's message once a game ends (its seed and actions,
    unchecked), else None."""
    info = env_info(env_id)
    keys = PLAYABLE[env_id]
    result = _game(
        data={
            "env_id": env_id,
            "seed": seed,
            "start": start_state(env_id, seed),
            "keys": list(keys),
            "idle_action": IDLE_ACTION[env_id],
            "max_steps": info.max_episode_steps or 500,
            "obs_names": list(info.obs_names),
            "action_names": list(info.action_names),
            "number": number,
        },
        key=key,
        on_game_change=lambda: None,
    )
    return result.get("game") if hasattr(result, "get") else getattr(result, "game", None)
