"""The notebook end to end: generate -> train -> play, with random play on the same games."""

from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np
import pytest

from cartpole_core.errors import UserError
from cartpole_core.evaluate import evaluate
from cartpole_core.generate import GenerationConfig
from cartpole_core.model import ModelConfig
from cartpole_core.pipeline import NotebookConfig, run_notebook
from cartpole_core.policies import RandomPolicy
from cartpole_core.training import TrainingConfig

SMALL = NotebookConfig(
    generation=GenerationConfig(games=2_000, seed=1),
    model=ModelConfig(hidden=(32, 32)),
    training=TrainingConfig(epochs=1, seed=1),
    evaluation_games=6,
)


@pytest.fixture(scope="module")
def small_run():
    reports = []
    result = run_notebook(SMALL, progress=reports.append)
    return result, reports


def test_run_returns_every_part(small_run):
    result, _ = small_run
    assert result.generation.games == 2_000 and result.generation.accepted > 0
    assert isinstance(result.model, keras.Model)
    assert [layer.units for layer in result.model.layers if isinstance(layer, keras.layers.Dense)] == [32, 32, 2]
    assert result.training.epochs_completed == 1
    assert result.training.samples == len(result.generation.dataset)
    assert result.evaluation.scores.shape == (6,) and result.random_evaluation.scores.shape == (6,)
    assert result.evaluation.policy_name == "model" and result.random_evaluation.policy_name == "random"
    assert {"generate", "train", "evaluate", "total"} <= set(result.seconds)
    assert result.seconds["total"] >= result.seconds["train"] > 0


def test_network_and_random_play_meet_the_same_games(small_run):
    result, _ = small_run
    config = result.evaluation.config
    assert result.random_evaluation.config == config
    assert (config.env_id, config.seed, config.goal_steps) == ("CartPole-v1", 1, 500)
    np.testing.assert_array_equal(config.game_seeds(), result.random_evaluation.config.game_seeds())
    # Random play's figures are exactly those of random play on that config.
    again = evaluate(RandomPolicy(2), config)
    np.testing.assert_array_equal(again.scores, result.random_evaluation.scores)


def test_pipeline_is_reproducible(small_run):
    result, _ = small_run
    again = run_notebook(replace(SMALL, evaluation_games=2))
    np.testing.assert_array_equal(again.generation.scores, result.generation.scores)
    assert again.training.epoch_history == result.training.epoch_history
    for a, b in zip(again.model.get_weights(), result.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.evaluation.scores, result.evaluation.scores[:2])


def test_progress_covers_every_stage(small_run):
    _, reports = small_run
    fractions = [p.fraction for p in reports]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0 and reports[-1].message == "done"
    stages = {p.message.split(":")[0] for p in reports[:-1]}
    assert {"generate", "train", "evaluate"} <= stages


def test_no_game_kept_stops_before_training():
    config = NotebookConfig(generation=GenerationConfig(games=100, score_requirement=1_000, seed=0))
    with pytest.raises(UserError, match="score_requirement 1000"):
        run_notebook(config)


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="games"):
        run_notebook(NotebookConfig(generation=GenerationConfig(games=0)))
