"""The page's game physics (``pages/game_physics.js``) run in headless Chromium against
Gymnasium's envs (issue 22): 100 random action sequences per game from the same start states;
observations within 1e-6 at every step and the same step of the end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cartpole_core.envs import make_env
from cartpole_core.human import PLAYABLE, start_state

pytestmark = pytest.mark.browser

PHYSICS = Path(__file__).resolve().parents[1] / "pages" / "game_physics.js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)

GAMES = 100
STEPS = 500

_RUN_JS = """([envId, starts, actions]) => {
  const P = globalThis.cartpoleLabPhysics;
  return starts.map((start, g) => {
    let state = start;
    const observations = [];
    for (let t = 0; t < actions[g].length; t++) {
      const out = P.step(envId, state, actions[g][t]);
      state = out.state;
      observations.push(P.observe(envId, state));
      if (out.terminated) return { observations, end: t + 1 };
    }
    return { observations, end: null };
  });
}"""


@pytest.fixture(scope="module")
def page():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        page.set_content("<html><body></body></html>")
        page.add_script_tag(content=PHYSICS.read_text())
        yield page
        browser.close()


@pytest.mark.parametrize("env_id", list(PLAYABLE))
def test_the_pages_physics_is_gymnasiums(page, env_id: str) -> None:
    rng = np.random.default_rng(0)
    n_actions = len(PLAYABLE[env_id])
    seeds = list(range(GAMES))
    actions = [rng.integers(0, n_actions, STEPS).tolist() for _ in seeds]
    played = page.evaluate(_RUN_JS, [env_id, [start_state(env_id, s) for s in seeds], actions])
    worst = 0.0
    for seed, game_actions, js in zip(seeds, actions, played, strict=True):
        env = make_env(env_id, 10_000)  # no time limit here: the end is the game's own
        env.reset(seed=seed)
        end = None
        for t, action in enumerate(game_actions):
            obs, _, terminated, _, _ = env.step(action)
            worst = max(worst, float(np.max(np.abs(np.asarray(js["observations"][t], dtype=np.float64) - obs))))
            if terminated:
                end = t + 1
                break
        env.close()
        assert js["end"] == end, f"seed {seed}: the page's game ends at {js['end']}, Gymnasium's at {end}"
    assert worst <= 1e-6, f"largest difference of an observation: {worst:.3g}"
