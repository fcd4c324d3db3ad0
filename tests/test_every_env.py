"""Every suggested game works out of the box: its own defaults (threshold or best share, goal
steps, target) take generate → train → evaluate → improve through without a flag (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest

from cartpole_core.envs import SUGGESTED_ENV_IDS, env_defaults
from cartpole_core.errors import UserError
from cartpole_core.evaluate import EvaluationConfig, evaluate
from cartpole_core.generate import GenerationConfig, generate

#: Small budgets: the envs' defaults, with fewer games (Acrobot steps are slow).
GAMES = {"CartPole-v1": 500, "CartPole-v0": 500, "Acrobot-v1": 150, "MountainCar-v0": 50, "LunarLander-v3": 200}
WORKING = [e for e in SUGGESTED_ENV_IDS if e != "MountainCar-v0"]


def test_every_suggested_env_has_a_small_budget_here():
    assert set(GAMES) == set(SUGGESTED_ENV_IDS)


@pytest.mark.parametrize("env_id", WORKING)
def test_defaults_take_an_env_from_random_games_to_generations(env_id, tiny_config):
    from cartpole_core.improve import ImproveConfig, improve
    from cartpole_core.model import build_model
    from cartpole_core.policies import ModelPolicy
    from cartpole_core.training import TrainingConfig, train

    config = GenerationConfig.for_env(env_id, games=GAMES[env_id], seed=0)
    generation = generate(config)
    dataset = generation.require_accepted()
    assert 0 < generation.accepted < generation.games
    model = build_model(dataset.obs_dim, dataset.n_actions, tiny_config, seed=0)
    fit = train(model, dataset, TrainingConfig(epochs=1))
    assert fit.final_accuracy is not None and fit.final_accuracy > 1 / (dataset.n_actions + 1)
    played = evaluate(ModelPolicy(model), EvaluationConfig(env_id=env_id, games=3, goal_steps=config.goal_steps))
    assert played.scores.shape == (3,)
    settings = ImproveConfig.for_env(env_id, max_generations=1, games_per_generation=8, eval_games=3, confirm_games=0)
    assert settings.target_mean == env_defaults(env_id).target and settings.goal_steps == config.goal_steps
    result = improve(settings, model)
    assert [g.generation for g in result.generations] == [0, 1]
    assert result.best_mean == max(g.mean for g in result.generations)


def test_mountaincar_keeps_the_random_games_that_got_farthest():
    """Issue 19: every random MountainCar game scores -200 within its 200 steps, so its profile
    ranks games by score, then by the highest car position reached: the kept 5 % are exactly
    the games whose car got farthest right."""
    config = GenerationConfig.for_env("MountainCar-v0", games=200, seed=3)
    assert config.progress_dim == 0 and "highest car position" in config.keeping()
    result = generate(config)
    assert (result.scores == -200).all() and result.accepted == 10
    data = result.dataset
    peak_kept = np.array([data.observations[data.game_ids == g, 0].max() for g in range(data.n_games)])
    every = generate(GenerationConfig.for_env("MountainCar-v0", games=200, seed=3, keep_top=1.0))
    rows = every.dataset
    peaks = np.array([rows.observations[rows.game_ids == g, 0].max() for g in range(rows.n_games)])
    assert np.allclose(np.sort(peak_kept), np.sort(peaks)[-10:]), "the 10 farthest of the 200 games"


def test_by_score_alone_mountaincar_says_plainly_that_random_play_never_succeeds():
    with pytest.raises(UserError, match="random play never did better within 200 steps"):
        generate(GenerationConfig.for_env("MountainCar-v0", games=50, progress_dim=None)).require_accepted()
