"""Evaluation: a policy plays many games at once, every policy meeting the same games."""

from __future__ import annotations

import importlib
from dataclasses import replace

import numpy as np
import pytest

from cartpole_core.errors import UserError
from cartpole_core.evaluate import EvaluationConfig, evaluate, record_episode
from cartpole_core.policies import ModelPolicy, RandomPolicy


class ConstantPolicy:
    """Always the same action (a fake: anything with ``probabilities`` is a policy)."""

    deterministic = True

    def __init__(self, action: int, n_actions: int = 2):
        self.n_actions, self.name, self.action = n_actions, f"always {action}", action

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        probs = np.zeros((observations.shape[0], self.n_actions), dtype=np.float32)
        probs[:, self.action] = 1.0
        return probs


class RecordingPolicy(ConstantPolicy):
    """Remembers every batch of observations it was asked about."""

    def __init__(self, action: int = 0, n_actions: int = 2):
        super().__init__(action, n_actions)
        self.batches: list[np.ndarray] = []

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        self.batches.append(np.array(observations, copy=True))
        return super().probabilities(observations)


def test_same_seed_same_scores_for_random_play():
    config = EvaluationConfig(games=30, seed=4)
    a = evaluate(RandomPolicy(2), config)
    b = evaluate(RandomPolicy(2), config)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.choice_counts, b.choice_counts)
    c = evaluate(RandomPolicy(2), replace(config, seed=5))
    assert not np.array_equal(a.scores, c.scores)


def test_same_seed_same_scores_for_a_network(trained_tiny_model):
    config = EvaluationConfig(games=8, seed=0)
    a = evaluate(ModelPolicy(trained_tiny_model), config)
    b = evaluate(ModelPolicy(trained_tiny_model), config)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.scores.shape == (8,) and a.scores.dtype == np.float32


@pytest.mark.parametrize("policy", [RandomPolicy(2), ConstantPolicy(1)], ids=["random", "constant"])
def test_a_games_start_does_not_depend_on_how_many_games_are_played(policy):
    """Game i of a seed is the same game in a 5-game and a 40-game evaluation."""
    few = evaluate(policy, EvaluationConfig(games=5, seed=9, keep_observations=True))
    many = evaluate(policy, EvaluationConfig(games=40, seed=9, keep_observations=True))
    np.testing.assert_array_equal(many.scores[:5], few.scores)
    np.testing.assert_array_equal(many.lengths[:5], few.lengths)
    for game in range(5):
        np.testing.assert_array_equal(
            many.observations[many.observation_games == game], few.observations[few.observation_games == game]
        )


def test_game_seeds_are_a_prefix():
    np.testing.assert_array_equal(
        EvaluationConfig(games=100, seed=3).game_seeds()[:7], EvaluationConfig(games=7, seed=3).game_seeds()
    )


def test_random_play_scores_about_22_on_cartpole():
    result = evaluate(RandomPolicy(2), EvaluationConfig(games=200, seed=0))
    assert 15 <= result.mean <= 30
    assert result.min >= 8 and result.max < 200
    assert result.min <= result.median <= result.max
    np.testing.assert_allclose(result.choice_ratios, [0.5, 0.5], atol=0.03)
    assert result.scores[result.best_game] == result.max and result.scores[result.worst_game] == result.min


def test_choice_counts_sum_to_the_steps_played():
    result = evaluate(RandomPolicy(2), EvaluationConfig(games=25, seed=1, keep_observations=True))
    assert result.choice_counts.sum() == result.lengths.sum() == result.steps_played
    np.testing.assert_array_equal(result.lengths, result.scores)  # CartPole: 1 point per step
    np.testing.assert_array_equal(np.bincount(result.actions, minlength=2), result.choice_counts)
    assert result.observations.shape == (result.steps_played, 4)
    np.testing.assert_array_equal(np.bincount(result.observation_games, minlength=25), result.lengths)
    assert result.choice_ratios.sum() == pytest.approx(1.0)


def test_a_deterministic_policy_takes_its_own_action_every_step():
    result = evaluate(ConstantPolicy(0), EvaluationConfig(games=6, seed=0))
    assert result.choice_counts[1] == 0 and result.choice_counts[0] == result.steps_played
    assert result.max <= 12  # always pushing left, the pole falls within a few steps
    assert result.policy_name == "always 0"


def test_epsilon_replaces_some_actions_with_random_ones():
    result = evaluate(ConstantPolicy(0), EvaluationConfig(games=20, seed=0, epsilon=0.5))
    share = result.choice_ratios[1]
    assert 0.15 <= share <= 0.35  # half the steps are random, half of those push right


def test_first_action_is_chosen_from_the_reset_observation():
    """The notebook's first move was random; here the policy sees the reset observation first."""
    policy = RecordingPolicy()
    result = evaluate(policy, EvaluationConfig(games=12, seed=2, keep_observations=True))
    assert np.abs(policy.batches[0]).max() <= 0.05 and policy.batches[0].shape == (12, 4)
    assert sum(batch.shape[0] for batch in policy.batches) == result.steps_played  # one choice per step
    first_rows = [np.flatnonzero(result.observation_games == game)[0] for game in range(12)]
    assert np.abs(result.observations[first_rows]).max() <= 0.05


def test_more_games_than_parallel_slots_reuse_envs(monkeypatch):
    """A finished game's env starts the next game from that game's own seed."""
    evaluate_module = importlib.import_module("cartpole_core.evaluate")

    config = EvaluationConfig(games=9, seed=6)
    wide = evaluate(RandomPolicy(2), config)
    monkeypatch.setattr(evaluate_module, "MAX_PARALLEL_GAMES", 2)
    narrow = evaluate(RandomPolicy(2), config)
    np.testing.assert_array_equal(wide.scores, narrow.scores)


@pytest.mark.parametrize(
    ("env_id", "n_actions", "goal_steps"), [("CartPole-v1", 2, 15), ("Acrobot-v1", 3, 15), ("MountainCar-v0", 3, 40)]
)
def test_goal_steps_cut_games_in_each_env(env_id, n_actions, goal_steps):
    result = evaluate(RandomPolicy(n_actions), EvaluationConfig(env_id=env_id, games=4, goal_steps=goal_steps))
    assert result.lengths.max() <= goal_steps
    assert result.choice_counts.shape == (n_actions,)
    if env_id != "CartPole-v1":  # -1 per step, and random play never reaches the goal this soon
        np.testing.assert_array_equal(result.scores, -goal_steps)


@pytest.mark.parametrize(("env_id", "n_actions"), [("CartPole-v1", 3), ("Acrobot-v1", 2)])
def test_policy_with_the_wrong_number_of_actions_is_a_user_error(env_id, n_actions):
    with pytest.raises(UserError) as excinfo:
        evaluate(RandomPolicy(n_actions), EvaluationConfig(env_id=env_id, games=2))
    assert env_id in str(excinfo.value) and f"among {n_actions} actions" in str(excinfo.value)


@pytest.mark.parametrize(
    ("config", "name"),
    [
        (EvaluationConfig(games=0), "games"),
        (EvaluationConfig(goal_steps=0), "goal_steps"),
        (EvaluationConfig(epsilon=1.5), "epsilon"),
        (EvaluationConfig(seed=-1), "seed"),
        (EvaluationConfig(env_id="Pendulum-v1"), "Pendulum-v1"),
    ],
)
def test_settings_out_of_range_are_user_errors(config, name):
    with pytest.raises(UserError, match=name):
        evaluate(RandomPolicy(2), config)


def test_progress_reports_reach_one():
    reports = []
    evaluate(RandomPolicy(2), EvaluationConfig(games=100, seed=0), reports.append)
    assert reports and reports[-1].fraction == 1.0
    assert [p.fraction for p in reports] == sorted(p.fraction for p in reports)


@pytest.mark.parametrize("stride", [1, 3])
def test_record_episode_returns_the_games_frames(stride):
    config = EvaluationConfig(games=5, seed=0)
    episode = record_episode(RandomPolicy(2), config, game=3, frame_stride=stride)
    assert episode.game == 3 and episode.frame_stride == stride
    assert len(episode.frames) == episode.length // stride + 1  # the reset frame, then every stride-th step
    assert all(frame.shape == (400, 600, 3) and frame.dtype == np.uint8 for frame in episode.frames)
    assert not np.array_equal(episode.frames[0], episode.frames[-1])  # the pole moved
    # It is the same game as in the evaluation (same start, same random stream).
    result = evaluate(RandomPolicy(2), config)
    assert episode.score == result.scores[3] and episode.length == result.lengths[3]


def test_record_episode_of_a_game_that_does_not_exist():
    with pytest.raises(UserError, match="no game 5"):
        record_episode(RandomPolicy(2), EvaluationConfig(games=5), game=5)
    with pytest.raises(UserError, match="frame_stride"):
        record_episode(RandomPolicy(2), EvaluationConfig(games=5), game=0, frame_stride=0)


def test_compare_plays_the_same_games_for_every_player_over_seeds() -> None:
    from cartpole_core.evaluate import compare
    from cartpole_core.policies import RandomPolicy

    cfg = EvaluationConfig(games=15)
    results = compare({"a": RandomPolicy(2, "a"), "b": RandomPolicy(2, "b")}, cfg, [0, 1, 2])
    assert [r.name for r in results] == ["a", "b"]
    # random players with the same per-game streams meet the same games and play them alike
    assert np.array_equal(results[0].seed_means, results[1].seed_means)
    for seed, mean in zip([0, 1, 2], results[0].seed_means, strict=True):
        assert mean == pytest.approx(evaluate(RandomPolicy(2), EvaluationConfig(games=15, seed=seed)).mean)
    low, high = results[0].ci95
    assert low < results[0].mean < high
    assert results[0].choice_ratios.sum() == pytest.approx(1.0)


# Issue 19: CartPole's games in its native vector env, the others in chunks on Ray — the same games.


class LeaningPolicy:
    """Pushes toward the side the pole falls (a good, fake CartPole player)."""

    name, n_actions, deterministic, obs_dim = "leaning", 2, True, 4

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        right = 1.0 / (1.0 + np.exp(-(10 * observations[:, 2] + 3 * observations[:, 3])))
        return np.stack([1 - right, right], axis=1).astype(np.float32)


@pytest.mark.parametrize(
    ("policy", "changes"),
    [
        (RandomPolicy(2), {}),
        (LeaningPolicy(), {}),
        (LeaningPolicy(), {"sample_actions": True}),
        (LeaningPolicy(), {"sample_actions": True, "temperature": 0.5, "epsilon": 0.1}),
    ],
)
def test_cartpole_in_its_vector_env_plays_each_game_as_one_env_alone(policy, changes) -> None:
    """The vector path (every game in one CartPole vector env) against each game played by
    itself in its own Gymnasium env (record_episode's path): same score, length, every
    observation and action, game for game."""
    from cartpole_core.evaluate import _play_envs, _play_vector

    config = EvaluationConfig(games=40, seed=11, keep_observations=True, **changes)
    batch = evaluate(policy, config)
    assert batch.lengths.max() > 100 or isinstance(policy, RandomPolicy)
    alone = [_play_envs(policy, config, np.array([g])) for g in range(config.games)]
    assert np.array_equal(batch.scores, np.array([a.scores[0] for a in alone], np.float32))
    assert np.array_equal(batch.lengths, np.array([a.lengths[0] for a in alone]))
    assert np.array_equal(batch.observations, np.concatenate([np.concatenate(a.obs_log) for a in alone]))
    assert np.array_equal(batch.actions, np.concatenate([np.concatenate(a.action_log) for a in alone]))
    assert np.array_equal(batch.peaks, np.concatenate([a.peaks for a in alone]))
    vector = _play_vector(policy, config, np.arange(config.games), None)
    assert np.array_equal(vector.scores, batch.scores), "evaluate took the vector path"


class PumpingPolicy:
    """Pushes the way a swinging part already moves (Acrobot's dθ2, MountainCar's velocity):
    a fake player that reaches the goal in well under the step limit, so games differ."""

    name, n_actions, deterministic = "pumping", 3, True

    def __init__(self, speed_dim: int) -> None:
        self.speed_dim = speed_dim
        self.obs_dim = 6 if speed_dim == 5 else 2

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        push = 1.0 / (1.0 + np.exp(np.clip(-300 * observations[:, self.speed_dim], -50, 50)))
        return np.stack([(1 - push) * 0.9, np.full(len(push), 0.1), push * 0.9], axis=1).astype(np.float32)


@pytest.mark.parametrize("env_id", ["Acrobot-v1", "MountainCar-v0"])
def test_our_vector_envs_play_each_game_as_one_env_alone(env_id) -> None:
    """Acrobot and MountainCar in our NumPy vector envs (cartpole_core.vector_envs) against each
    game played by itself in Gymnasium's env: same score, length and observations, game for game."""
    from cartpole_core.evaluate import _play_envs, _play_vector

    config = EvaluationConfig.for_env(env_id, games=30, seed=5, keep_observations=True, sample_actions=True)
    policy = PumpingPolicy(5 if env_id == "Acrobot-v1" else 1)
    batch = evaluate(policy, config)
    alone = [_play_envs(policy, config, np.array([g])) for g in range(config.games)]
    assert np.array_equal(batch.scores, np.array([a.scores[0] for a in alone], np.float32))
    assert np.array_equal(batch.lengths, np.array([a.lengths[0] for a in alone]))
    assert np.array_equal(batch.observations, np.concatenate([np.concatenate(a.obs_log) for a in alone]))
    assert len(set(batch.scores.tolist())) > 5 and batch.scores.max() > -config.goal_steps  # games that differ
    vector = _play_vector(policy, config, np.arange(config.games), None)
    assert np.array_equal(vector.scores, batch.scores), "evaluate took the vector path"


def test_peaks_are_each_games_highest_observation_last_one_included() -> None:
    played = evaluate(RandomPolicy(3), EvaluationConfig.for_env("MountainCar-v0", games=4, keep_observations=True))
    assert played.observations is not None and played.observation_games is not None and played.peaks is not None
    for g in range(4):
        seen = played.observations[played.observation_games == g].max(axis=0)
        assert np.all(played.peaks[g] >= seen)  # the last observation (not acted on) can be higher
    assert np.all(played.scores == -200), "MountainCar's own step limit: 200 steps, -1 each"


def test_every_env_plays_its_own_step_limit_by_default() -> None:
    for env_id, steps in {"CartPole-v1": 500, "MountainCar-v0": 200, "LunarLander-v3": 1000, "Acrobot-v1": 500}.items():
        assert EvaluationConfig.for_env(env_id).goal_steps == steps
    assert EvaluationConfig.for_env("MountainCar-v0", games=3).games == 3


@pytest.mark.parametrize("env_id", ["LunarLander-v3", "CartPole-v1"])
def test_chunked_play_on_ray_equals_one_process(env_id) -> None:
    """Games of an env without a vector env (LunarLander) split into chunks on Ray workers give
    what one process gives, game for game (observations grouped by game either way); those of
    an env with one stay in one piece."""
    from cartpole_core.evaluate import GAMES_PER_CHUNK, _pieces

    config = EvaluationConfig.for_env(env_id, games=GAMES_PER_CHUNK + 5, seed=4, sample_actions=True,
                                      goal_steps=60, keep_observations=True)  # fmt: skip
    assert len(_pieces(config, None, np.arange(config.games), None)) == (2 if env_id == "LunarLander-v3" else 1)
    policy = RandomPolicy(env_info_actions(env_id))
    here = evaluate(policy, config, parallel=False)
    spread = evaluate(policy, config, parallel=None)
    for field in ("scores", "lengths", "choice_counts", "observations", "actions", "observation_games", "peaks"):
        assert np.array_equal(getattr(here, field), getattr(spread, field)), field


def env_info_actions(env_id: str) -> int:
    from cartpole_core.envs import env_info

    return env_info(env_id).n_actions


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "LunarLander-v3"])
def test_both_players_in_one_pass_equal_each_played_alone(env_id) -> None:
    """evaluate_players plays the greedy and the sampled player side by side (one vector env
    on CartPole and Acrobot, chunks on Ray on LunarLander): each equals its own evaluate, game
    for game."""
    from cartpole_core.evaluate import GAMES_PER_CHUNK, evaluate_players

    policy = LeaningPolicy() if env_id == "CartPole-v1" else RandomPolicy(env_info_actions(env_id))
    games = 30 if env_id == "CartPole-v1" else GAMES_PER_CHUNK + 3
    config = EvaluationConfig.for_env(env_id, games=games, seed=8, goal_steps=80)
    both = evaluate_players(policy, config, parallel=None)
    for player, sample in (("greedy", False), ("sampled", True)):
        alone = evaluate(policy, replace(config, sample_actions=sample))
        assert np.array_equal(both[player].scores, alone.scores), player
        assert np.array_equal(both[player].lengths, alone.lengths), player
        assert np.array_equal(both[player].choice_counts, alone.choice_counts), player
        assert np.array_equal(both[player].peaks, alone.peaks), player
        assert both[player].config.sample_actions == sample
