"""Your games (issue 22): the server replays what the browser sent and keeps its own replay;
bad messages are refused with a clear line; kept games are a dataset a network imitates."""

from __future__ import annotations

import numpy as np
import pytest

from cartpole_core.envs import make_env
from cartpole_core.errors import UserError
from cartpole_core.human import (
    PLAYABLE,
    HumanGame,
    PlayedGame,
    choose_games,
    film,
    games_dataset,
    parse_game,
    replay,
    start_state,
)


def lean_player(seed: int, steps: int = 500) -> list[int]:
    """A scripted good CartPole player: push toward the side the pole falls to (its angle
    plus a share of its angular speed), played in Gymnasium from ``reset(seed)``."""
    env = make_env("CartPole-v1", steps)
    obs, _ = env.reset(seed=seed)
    actions: list[int] = []
    for _ in range(steps):
        action = int(obs[2] + 0.5 * obs[3] > 0)
        actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    env.close()
    return actions


def test_the_replay_is_gymnasiums_game_from_the_same_start() -> None:
    env = make_env("CartPole-v1", 500)
    env.reset(seed=7)
    actions = [0, 1] * 5
    for action in actions:
        env.step(action)
    while not env.step(1)[2]:  # then push right until the pole falls
        actions.append(1)
    actions.append(1)
    game = replay(PlayedGame("CartPole-v1", 7, tuple(actions)))
    env = make_env("CartPole-v1", 500)
    obs, _ = env.reset(seed=7)
    np.testing.assert_array_equal(game.observations[0], obs)
    assert np.allclose(start_state("CartPole-v1", 7), obs, atol=1e-7), "the browser starts where the server does"
    for step, action in enumerate(game.actions):
        np.testing.assert_array_equal(game.observations[step], obs)
        obs, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            break
    assert game.terminated and game.score == game.steps == step + 1


def test_every_playable_game_replays() -> None:
    for env_id, keys in PLAYABLE.items():
        actions = tuple(i % len(keys) for i in range(12))
        game = replay(PlayedGame(env_id, 3, actions))
        assert game.steps == 12 and game.observations.shape[0] == 12
        assert len(start_state(env_id, 3)) in (2, 4)
        assert game.action_shares(len(keys)).sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ("left, right", "not a game"),
        ({"seed": 1, "actions": [0]}, "names no game"),
        ({"env_id": "LunarLander-v3", "seed": 1, "actions": [0]}, "cannot be played in the page"),
        ({"env_id": "CartPole-v1", "seed": -1, "actions": [0]}, "is not a whole number from 0"),
        ({"env_id": "CartPole-v1", "seed": "7", "actions": [0]}, "is not a whole number from 0"),
        ({"env_id": "CartPole-v1", "seed": 1, "actions": "0101"}, "not a list of whole numbers"),
        ({"env_id": "CartPole-v1", "seed": 1, "actions": [0, 1.5]}, "not a list of whole numbers"),
        ({"env_id": "CartPole-v1", "seed": 1, "actions": []}, "has no steps"),
        ({"env_id": "CartPole-v1", "seed": 1, "actions": [0, 2]}, "Action 2 does not exist in CartPole-v1"),
        ({"env_id": "CartPole-v1", "seed": 1, "actions": [0] * 501}, "more than CartPole-v1's 500"),
    ],
)
def test_a_bad_message_is_refused_with_what_is_wrong(message, says: str) -> None:
    with pytest.raises(UserError, match=says) as refused:
        parse_game(message)
    assert "\n" not in str(refused.value)


def test_actions_after_the_end_are_refused() -> None:
    """The browser stops at the end: more actions mean its physics and the server's disagree."""
    with pytest.raises(UserError, match="ended at step"):
        replay(parse_game({"env_id": "CartPole-v1", "seed": 1, "actions": [1] * 200}))


def test_games_are_kept_all_best_or_at_least_and_become_a_dataset() -> None:
    games = [replay(PlayedGame("CartPole-v1", s, tuple(lean_player(s, n)))) for s, n in ((1, 30), (2, 80), (3, 50))]
    assert [g.score for g in games] == [30, 80, 50]
    assert choose_games(games) == [0, 1, 2]
    assert choose_games(games, "best", best=2) == [1, 2]
    assert choose_games(games, "at least", at_least=50) == [1, 2]
    with pytest.raises(UserError, match="Choose 1 or more"):
        choose_games(games, "best", best=0)
    data = games_dataset([games[i] for i in choose_games(games, "best", best=2)])
    assert data.metadata["source"] == "your games" and data.metadata["seeds"] == [2, 3]
    assert len(data) == 130 and data.n_games == 2
    np.testing.assert_array_equal(data.actions[:80], games[1].actions)
    with pytest.raises(UserError, match="play a game first"):
        games_dataset([])


def test_a_network_learns_to_play_like_a_good_player_from_five_games() -> None:
    """Issue 22: five games of a scripted good player (each ≥ 400), a network trained on them,
    averages ≥ 300 over 100 fresh games."""
    from cartpole_core.evaluate import EvaluationConfig, evaluate
    from cartpole_core.model import ModelConfig, build_model
    from cartpole_core.policies import ModelPolicy
    from cartpole_core.training import TrainingConfig, train

    games: list[HumanGame] = [replay(PlayedGame("CartPole-v1", s, tuple(lean_player(s)))) for s in range(5)]
    assert min(g.score for g in games) >= 400, [g.score for g in games]
    data = games_dataset(games)
    model = build_model(data.obs_dim, data.n_actions, ModelConfig(), seed=0)
    train(model, data, TrainingConfig(epochs=5, seed=0))
    result = evaluate(ModelPolicy(model), EvaluationConfig(games=100, seed=1000))
    assert result.mean >= 300, result.mean


def test_a_game_is_filmed_as_the_server_replays_it() -> None:
    import imageio.v3 as iio

    seed = 4
    game = replay(PlayedGame("CartPole-v1", seed, tuple(lean_player(seed, 120))))
    gif = film(game, max_frames=50)
    frames = iio.imread(gif, index=None)
    assert gif[:6] == b"GIF89a" and 2 <= frames.shape[0] <= 51, frames.shape
