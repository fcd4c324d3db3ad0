"""Environments: which Gymnasium games are supported and what we read from them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from cartpole_core.envs import SUGGESTED_ENV_IDS, env_info, make_env, make_vector_env
from cartpole_core.errors import UserError


class _PlainEnv(gym.Env):
    """A minimal env the library has no names for: Discrete(3) actions, 5 observation values."""

    def __init__(self, action_start: int = 0, obs_shape: tuple[int, ...] = (5,)):
        self.action_space = spaces.Discrete(3, start=action_start)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=obs_shape, dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.observation_space.shape, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(self.observation_space.shape, dtype=np.float32), 0.0, True, False, {}


gym.register("CartPoleLabTest/Plain-v0", entry_point=_PlainEnv)
gym.register("CartPoleLabTest/ActionsFromOne-v0", entry_point=_PlainEnv, kwargs={"action_start": 1})
gym.register("CartPoleLabTest/ImageObs-v0", entry_point=_PlainEnv, kwargs={"obs_shape": (4, 4)})


@pytest.mark.parametrize(
    ("env_id", "obs_dim", "n_actions", "first_obs_name", "action_names", "max_steps"),
    [
        ("CartPole-v1", 4, 2, "cart position", ("push left", "push right"), 500),
        ("Acrobot-v1", 6, 3, "cos θ1", ("torque -1", "torque 0", "torque +1"), 500),
        ("MountainCar-v0", 2, 3, "car position", ("accelerate left", "don't accelerate", "accelerate right"), 200),
        (
            "LunarLander-v3",
            8,
            4,
            "x",
            ("do nothing", "fire left engine", "fire main engine", "fire right engine"),
            1000,
        ),
    ],
)
def test_env_info_describes_supported_envs(env_id, obs_dim, n_actions, first_obs_name, action_names, max_steps):
    info = env_info(env_id)
    assert info.env_id == env_id
    assert (info.obs_dim, info.n_actions) == (obs_dim, n_actions)
    assert len(info.obs_names) == obs_dim and info.obs_names[0] == first_obs_name
    assert info.action_names == action_names
    assert len(info.obs_low) == len(info.obs_high) == obs_dim
    assert all(lo < hi for lo, hi in zip(info.obs_low, info.obs_high, strict=True))
    assert info.max_episode_steps == max_steps


def test_cartpole_info_matches_gymnasium():
    info = env_info("CartPole-v1")
    env = gym.make("CartPole-v1")
    try:
        np.testing.assert_allclose(info.obs_high, env.observation_space.high)
    finally:
        env.close()
    assert info.reward_threshold == 475.0
    assert info.has_vector_env  # CartPole ships its own vectorised implementation
    assert env_info("MountainCar-v0").has_vector_env  # ours, cartpole_core.vector_envs
    assert not env_info("LunarLander-v3").has_vector_env


def test_env_info_strips_whitespace():
    assert env_info("  CartPole-v1 ").env_id == "CartPole-v1"


def test_unnamed_env_gets_generic_names():
    info = env_info("CartPoleLabTest/Plain-v0")
    assert info.obs_names == ("obs[0]", "obs[1]", "obs[2]", "obs[3]", "obs[4]")
    assert info.action_names == ("action 0", "action 1", "action 2")


# Taxi-v3 is deprecated in Gymnasium 1.4 (Taxi-v4 replaced it): gym.spec refuses it like an unknown id.
@pytest.mark.parametrize("env_id", ["NoSuchGame-v0", "CartPole-v99", "Taxi-v3"])
def test_unknown_env_is_a_user_error_naming_it_and_the_supported_ones(env_id):
    with pytest.raises(UserError) as excinfo:
        env_info(env_id)
    message = str(excinfo.value)
    assert env_id in message
    assert all(suggested in message for suggested in SUGGESTED_ENV_IDS)


@pytest.mark.parametrize("env_id", ["", "   "])
def test_empty_env_id_is_a_user_error(env_id):
    with pytest.raises(UserError, match="empty"):
        env_info(env_id)


@pytest.mark.parametrize(
    ("env_id", "what"),
    [
        ("Pendulum-v1", "action space is Box"),  # continuous actions
        ("Taxi-v4", "observation space is Discrete"),  # one integer state, not a vector
        ("FrozenLake-v1", "observation space is Discrete"),
        ("CartPoleLabTest/ImageObs-v0", "not a 1-D Box"),  # a 2-D observation
    ],
)
def test_unsupported_spaces_are_a_user_error_saying_what_is_needed(env_id, what):
    with pytest.raises(UserError) as excinfo:
        env_info(env_id)
    message = str(excinfo.value)
    assert env_id in message
    assert what in message
    assert "discrete actions and a flat observation vector" in message
    assert "CartPole-v1" in message


def test_actions_not_numbered_from_zero_are_refused():
    with pytest.raises(UserError, match="numbers its actions from 1"):
        env_info("CartPoleLabTest/ActionsFromOne-v0")


def test_vector_env_has_the_requested_width_and_cuts_games_at_goal_steps():
    env = make_vector_env("CartPole-v1", num_envs=3, goal_steps=5)
    try:
        assert env.num_envs == 3
        env.reset(seed=0)
        for step in range(1, 6):
            # Alternating pushes keep the pole up for a few steps: only the time limit can end them.
            _, _, terminated, truncated, _ = env.step(np.full(3, step % 2))
            assert not terminated.any()
            assert truncated.all() == (step == 5)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "MountainCar-v0"])
def test_single_env_is_cut_at_goal_steps(env_id):
    env = make_env(env_id, goal_steps=4)
    try:
        env.reset(seed=0)
        ends = [env.step(1)[3] for _ in range(4)]
    finally:
        env.close()
    assert ends == [False, False, False, True]


def test_every_suggested_env_has_defaults_and_others_fall_back_to_the_best_5_percent():
    from cartpole_core.envs import ENV_DEFAULTS, env_defaults

    assert set(SUGGESTED_ENV_IDS) <= set(ENV_DEFAULTS)
    cartpole = env_defaults("CartPole-v1")  # the notebook's, exactly
    assert (cartpole.games, cartpole.goal_steps, cartpole.score_requirement, cartpole.keep_top) == (
        10_000,
        500,
        50.0,
        None,
    )
    assert env_defaults("CartPole-v1").keeping() == "score ≥ 50"
    assert env_defaults("Acrobot-v1").keeping() == "the best 5 % of games"
    assert env_defaults("LunarLander-v3").target == env_info("LunarLander-v3").reward_threshold == 200
    other = env_defaults("CartPoleLabTest/Plain-v0")
    assert other.keep_top == 0.05 and other.score_requirement is None and other.goal_steps == 500
    assert other.target is None


# ---------------------------------------------------------------- our vector envs (issue 19)


@pytest.mark.parametrize("env_id", ["Acrobot-v1", "MountainCar-v0"])
def test_our_vector_env_plays_gymnasiums_games_exactly(env_id):
    """From the start states Gymnasium's own env resets to, 100 random action sequences give
    the same observations, bit for bit, and end at the same step (Acrobot is chaotic: one
    differing last bit would show within a few hundred steps)."""
    from cartpole_core.vector_envs import observe

    n, steps = 100, 300
    actions = np.random.default_rng(7).integers(3, size=(steps, n))
    vector = make_vector_env(env_id, num_envs=n, goal_steps=steps)
    vector.reset(seed=0)
    starts, expected, ends = [], [], []
    for i in range(n):
        env = make_env(env_id, goal_steps=steps)
        obs, _ = env.reset(seed=500 + i)
        starts.append(np.array(env.unwrapped.state, dtype=np.float64))
        seen = [obs]
        for k in range(steps):
            obs, _, terminated, truncated, _ = env.step(int(actions[k, i]))
            seen.append(obs)
            if terminated or truncated:
                break
        expected.append(np.array(seen))
        ends.append(len(seen) - 1)
        env.close()
    core = vector.unwrapped
    core.state = np.stack(starts, axis=1)
    got = [observe(core)]
    for k in range(max(ends)):
        got.append(vector.step(actions[k])[0])
    got = np.array(got)  # (steps + 1, n, obs_dim)
    for i in range(n):
        np.testing.assert_array_equal(got[: ends[i] + 1, i], expected[i], err_msg=f"game {i}")
    vector.close()


@pytest.mark.parametrize("env_id", ["Acrobot-v1", "MountainCar-v0"])
def test_our_vector_env_autoresets_on_the_next_step_and_cuts_at_goal_steps(env_id):
    env = make_vector_env(env_id, num_envs=4, goal_steps=3)
    first, _ = env.reset(seed=1)
    again, _ = make_vector_env(env_id, num_envs=4, goal_steps=3).reset(seed=1)
    np.testing.assert_array_equal(first, again)  # seeded
    for step in range(1, 4):
        _, reward, terminated, truncated, _ = env.step(np.ones(4, dtype=np.int64))
        assert not terminated.any() and truncated.all() == (step == 3)
        assert np.all(reward == -1.0)
    obs, reward, terminated, truncated, _ = env.step(np.ones(4, dtype=np.int64))  # the autoreset step
    assert np.all(reward == 0.0) and not terminated.any() and not truncated.any()
    assert env.observation_space.contains(obs)
