"""Generation: random games played side by side, the good ones kept (the notebook's ``initial_population``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from cartpole_core.errors import UserError
from cartpole_core.generate import GenerationConfig, generate

#: Envs with a small budget each (Acrobot steps are slow: keep its games few and short).
SMALL_RUNS = {
    "CartPole-v1": GenerationConfig(env_id="CartPole-v1", games=200, goal_steps=60, score_requirement=0, seed=3),
    "Acrobot-v1": GenerationConfig(env_id="Acrobot-v1", games=12, goal_steps=20, score_requirement=-1e9, seed=3),
    "MountainCar-v0": GenerationConfig(
        env_id="MountainCar-v0", games=20, goal_steps=25, score_requirement=-1e9, seed=3
    ),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_notebook_defaults_keep_about_4_percent_of_games(seed):
    """10,000 random CartPole-v1 games, threshold 50: the notebook's acceptance figures."""
    result = generate(GenerationConfig(seed=seed))
    assert result.games == 10_000
    assert 0.03 <= result.acceptance_rate <= 0.05
    assert 60 <= result.accepted_mean <= 63
    assert 57 <= result.accepted_median <= 59
    assert result.dataset.game_scores.min() >= 50
    assert (result.scores >= 50).sum() == result.accepted


def test_same_seed_gives_identical_scores_and_dataset():
    config = GenerationConfig(games=500, seed=7)
    a, b = generate(config), generate(config)
    np.testing.assert_array_equal(a.scores, b.scores)
    for name in ("observations", "actions", "game_ids", "game_scores"):
        np.testing.assert_array_equal(getattr(a.dataset, name), getattr(b.dataset, name))
    assert a.accepted_counts == b.accepted_counts


def test_different_seeds_give_different_games():
    a = generate(GenerationConfig(games=500, seed=1))
    b = generate(GenerationConfig(games=500, seed=2))
    assert not np.array_equal(a.scores, b.scores)
    assert not np.array_equal(a.dataset.observations[:20], b.dataset.observations[:20])


def test_rows_of_a_game_are_consecutive_and_count_its_steps(small_generation, game_slices):
    """CartPole pays 1 per step, so a kept game has exactly ``score`` rows, the first step included."""
    dataset = small_generation.dataset
    assert np.all(np.diff(dataset.game_ids) >= 0), "rows must be grouped by game, in game order"
    assert set(np.unique(dataset.game_ids)) == set(range(dataset.n_games))
    rows_per_game = np.array([s.stop - s.start for s in game_slices(dataset)])
    np.testing.assert_array_equal(rows_per_game, dataset.game_scores)
    assert len(dataset) == int(dataset.game_scores.sum())


def test_first_row_of_each_game_is_a_reset_observation(small_generation, game_slices):
    dataset = small_generation.dataset
    firsts = np.array([s.start for s in game_slices(dataset)])
    assert np.abs(dataset.observations[firsts]).max() <= 0.05  # CartPole starts uniformly in [-0.05, 0.05]
    # Later rows are not all near zero: a kept game lasts 50+ steps and drifts.
    lasts = np.array([s.stop - 1 for s in game_slices(dataset)])
    assert np.abs(dataset.observations[lasts]).max() > 0.05


def test_kept_games_replay_exactly_in_a_scalar_env(small_generation, game_slices):
    """Each kept game's rows are real transitions: replaying its actions from its first observation
    reproduces every following row, and the pole falls on the last action, not before."""
    dataset = small_generation.dataset
    for piece in game_slices(dataset)[:10]:
        observations, actions = dataset.observations[piece], dataset.actions[piece]
        env = gym.make("CartPole-v1").unwrapped
        env.reset(seed=0)
        env.state = observations[0].astype(np.float64)
        for i, action in enumerate(actions):
            obs, reward, terminated, _, _ = env.step(int(action))
            assert reward == 1.0
            if i + 1 < len(actions):
                np.testing.assert_allclose(obs, observations[i + 1], atol=1e-4)
                assert not terminated
            else:
                assert terminated
        env.close()


def test_env_steps_count_transitions_only(small_generation):
    """Autoreset steps are not transitions: CartPole's step count is the sum of all scores."""
    assert small_generation.env_steps == int(small_generation.scores.sum())


def test_accepted_counts_follow_the_kept_scores(small_generation):
    result = small_generation
    counts = result.accepted_counts
    assert sum(counts.values()) == result.accepted
    assert all(score >= result.config.score_requirement for score in counts)
    values = list(counts.values())
    assert values == sorted(values, reverse=True), "most common first, like Counter.most_common()"
    expected = dict(zip(*np.unique(result.dataset.game_scores, return_counts=True), strict=True))
    assert counts == {float(k): int(v) for k, v in expected.items()}


def test_metadata_says_where_the_data_came_from(small_generation):
    meta = small_generation.dataset.metadata
    assert meta["env_id"] == "CartPole-v1"
    assert (meta["obs_dim"], meta["n_actions"]) == (4, 2)
    assert meta["seed"] == 0
    assert meta["settings"]["games"] == small_generation.config.games


@pytest.mark.parametrize("env_id", list(SMALL_RUNS))
def test_small_runs_in_each_env(env_id, game_slices):
    config = SMALL_RUNS[env_id]
    result = generate(config)
    dataset = result.dataset
    info_dims = {"CartPole-v1": (4, 2), "Acrobot-v1": (6, 3), "MountainCar-v0": (2, 3)}[env_id]
    assert result.scores.shape == (config.games,)
    assert (dataset.obs_dim, dataset.n_actions) == info_dims
    assert dataset.observations.dtype == np.float32 and dataset.actions.dtype == np.int64
    assert dataset.actions.min() >= 0 and dataset.actions.max() < dataset.n_actions
    assert result.accepted == config.games  # the threshold keeps every game
    rows_per_game = np.array([s.stop - s.start for s in game_slices(dataset)])
    assert rows_per_game.max() <= config.goal_steps
    assert result.env_steps == len(dataset) == rows_per_game.sum()
    if env_id == "CartPole-v1":
        np.testing.assert_array_equal(rows_per_game, dataset.game_scores)
    else:
        # -1 per step and no random game reaches the goal this fast: every game is cut at goal_steps.
        np.testing.assert_array_equal(dataset.game_scores, -config.goal_steps)
        np.testing.assert_array_equal(rows_per_game, config.goal_steps)


def test_goal_steps_cuts_games():
    result = generate(GenerationConfig(games=300, goal_steps=20, score_requirement=0, seed=0))
    assert result.scores.max() == 20  # some random games survive 20 steps and are cut there
    assert result.scores.min() >= 8  # from a reset state the pole needs at least 8 steps to fall


def test_threshold_no_game_reaches_keeps_nothing_and_says_why():
    result = generate(GenerationConfig(games=50, score_requirement=400, seed=0))
    assert result.accepted == 0
    assert result.acceptance_rate == 0.0
    assert result.accepted_mean is None and result.accepted_median is None
    assert len(result.dataset) == 0 and result.dataset.observations.shape == (0, 4)
    best = f"{result.scores.max():g}"
    with pytest.raises(UserError) as excinfo:
        result.require_accepted()
    message = str(excinfo.value)
    assert "score_requirement 400" in message
    assert f"scored {best}" in message


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"games": 0}, "games"),
        ({"games": 2_000_000}, "games"),
        ({"goal_steps": -1}, "goal_steps"),
        ({"seed": -5}, "seed"),
        ({"score_requirement": float("nan")}, "score_requirement"),
        ({"games": 10.5}, "whole numbers"),
        ({"env_id": "NoSuchGame-v0"}, "NoSuchGame-v0"),
        ({"env_id": "Pendulum-v1"}, "Pendulum-v1"),
    ],
)
def test_settings_out_of_range_are_user_errors(changes, name):
    config = GenerationConfig(**changes)
    with pytest.raises(UserError, match=name):
        config.validate()
    with pytest.raises(UserError, match=name):
        generate(config)


def test_progress_reports_reach_one():
    reports = []
    generate(GenerationConfig(games=2_000, seed=0), progress=reports.append)
    fractions = [p.fraction for p in reports]
    assert len(reports) >= 2
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0 and "2,000 games played" in reports[-1].message


def test_vector_cartpole_follows_the_scalar_cartpole():
    """Gymnasium's vectorised CartPole (what generation runs on) follows the same trajectories as
    the scalar CartPoleEnv for the same starts and actions, step by step, until each game ends."""
    n = 16
    vec = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
    obs, _ = vec.reset(seed=123)
    scalars = []
    for i in range(n):
        env = gym.make("CartPole-v1").unwrapped
        env.reset(seed=i)
        env.state = vec.unwrapped.state[:, i].copy()
        scalars.append(env)
        np.testing.assert_allclose(np.asarray(env.state, dtype=np.float32), obs[i], atol=1e-7)
    rng = np.random.default_rng(0)
    live = np.ones(n, dtype=bool)
    steps = 0
    while live.any():
        actions = rng.integers(2, size=n)
        vec_obs, vec_reward, vec_terminated, vec_truncated, _ = vec.step(actions)
        for i in np.flatnonzero(live):
            obs_i, reward_i, terminated_i, truncated_i, _ = scalars[i].step(int(actions[i]))
            np.testing.assert_allclose(vec_obs[i], obs_i, atol=1e-5)
            assert vec_reward[i] == reward_i
            assert bool(vec_terminated[i]) == terminated_i
            if terminated_i or bool(vec_truncated[i]):
                live[i] = False
        steps += 1
        assert steps <= 500
    vec.close()
    assert steps >= 8  # the games really were played


def test_a_sample_of_rejected_observations_is_kept(small_generation) -> None:
    rejected = small_generation.rejected_observations
    assert rejected.dtype == np.float32 and rejected.shape[1] == 4
    kept_steps = int(small_generation.dataset.game_scores.sum())
    from cartpole_core.generate import REJECTED_SAMPLE

    n_rejected_steps = small_generation.env_steps - kept_steps
    stride = -(-n_rejected_steps // REJECTED_SAMPLE)  # every stride-th row, to stay under the cap
    assert rejected.shape[0] == -(-n_rejected_steps // stride) <= REJECTED_SAMPLE
    assert np.isfinite(rejected).all()


# ---------------------------------------------------------------- chunks on Ray (issue 10)


def test_envs_without_a_vector_env_split_into_fixed_chunks_and_cartpole_does_not():
    from cartpole_core.generate import GAMES_PER_CHUNK, chunk_jobs

    jobs = chunk_jobs(GenerationConfig(env_id="LunarLander-v3", games=2 * GAMES_PER_CHUNK + 7, seed=1), 1)
    assert [j.games for j in jobs] == [GAMES_PER_CHUNK, GAMES_PER_CHUNK, 7]
    assert [j.spawn_key for j in jobs] == [(0,), (1,), (2,)]
    [single] = chunk_jobs(GenerationConfig(games=50_000, seed=1), 1)
    assert single.games == 50_000 and single.spawn_key == ()


@pytest.mark.parametrize(("env_id", "requirement"), [("LunarLander-v3", -10.0)])
def test_chunked_generation_on_ray_equals_the_one_process_result(env_id, requirement):
    """Same seed, same data, whether the chunks are played here one after another or on Ray workers."""
    from cartpole_core.generate import GAMES_PER_CHUNK

    games = 2 * GAMES_PER_CHUNK + 30
    config = GenerationConfig(env_id=env_id, games=games, goal_steps=15, score_requirement=requirement, seed=4)
    here = generate(config, parallel=False)
    on_ray = generate(config)  # several chunks: played on a local Ray
    assert here.games == on_ray.games == config.games
    np.testing.assert_array_equal(here.scores, on_ray.scores)
    for name in ("observations", "actions", "game_ids", "game_scores"):
        np.testing.assert_array_equal(getattr(here.dataset, name), getattr(on_ray.dataset, name))
    np.testing.assert_array_equal(here.rejected_observations, on_ray.rejected_observations)
    assert here.accepted_counts == on_ray.accepted_counts and here.env_steps == on_ray.env_steps
    if env_id == "LunarLander-v3":  # its scores vary within 15 steps: some games are kept, some not
        assert 0 < here.accepted < config.games and here.rejected_observations.size
    # chunks are seeded by position: no two kept games start alike (same seeds would repeat them)
    starts = np.flatnonzero(np.diff(here.dataset.game_ids, prepend=-1))
    assert len(np.unique(here.dataset.observations[starts], axis=0)) == here.accepted


def test_cartpole_results_did_not_change_with_chunking():
    """The notebook's figures for seed 0 (10,000 games, threshold 50) stay exactly as they were."""
    result = generate(GenerationConfig(seed=0))
    assert (result.accepted, len(result.dataset)) == (372, 22_771)
    assert result.accepted_mean == pytest.approx(61.2124, abs=1e-4)


# ---------------------------------------------------------------- the best share of games (issue 11)


@pytest.mark.parametrize(
    ("scores", "share", "kept"),
    [
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.2, [9, 10]),  # no ties: exactly the best 20 %
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.25, [8, 9, 10]),  # 2.5 games: rounded up
        ([0, 0, 0, 0, 0, 0, 5, 5, 5, 9], 0.2, [9]),  # 4 tied at the cut: leaving them out is nearer 20 %
        ([0, 0, 0, 0, 0, 0, 0, 5, 5, 9], 0.2, [5, 5, 9]),  # 2 tied: keeping them is nearer (30 % vs 10 %)
        ([0, 0, 0, 0, 0, 0, 5, 5, 5, 5], 0.2, [5, 5, 5, 5]),  # all the best tie: kept rather than none
        ([3, 3, 3, 3], 0.5, []),  # every game alike: none is better than another
        ([7], 0.05, [7]),
        ([1, 2, 3, 4], 1.0, [1, 2, 3, 4]),
    ],
)
def test_the_best_share_keeps_ties_whole_and_nearest_the_share(scores, share, kept):
    from cartpole_core.generate import top_share_cut

    scores = np.array(scores, dtype=np.float64)
    cut = top_share_cut(scores, share)
    assert sorted(scores[scores >= cut].tolist()) == kept


def test_keep_top_states_the_share_it_actually_kept():
    """Acrobot: 98 % of random games fail at -500; of the best 5 % asked only those that reached the line are kept."""
    result = generate(GenerationConfig(env_id="Acrobot-v1", games=300, keep_top=0.05, seed=0))
    failed = int(np.count_nonzero(result.scores == -500))
    assert failed > 0.9 * result.games
    assert result.accepted == result.games - failed and result.acceptance_rate < 0.05
    assert result.threshold > -500 and result.dataset.game_scores.min() >= result.threshold
    again = generate(GenerationConfig(games=1000, keep_top=0.05, seed=0))  # CartPole: scores spread out
    assert again.accepted == 50 or abs(again.accepted - 50) <= np.count_nonzero(again.scores == again.threshold)


def test_when_random_play_never_succeeds_the_message_says_so_and_what_to_change():
    result = generate(GenerationConfig.for_env("MountainCar-v0", games=50, seed=0, progress_dim=None))  # score alone
    assert result.accepted == 0 and result.threshold == np.inf
    with pytest.raises(UserError) as excinfo:
        result.require_accepted()
    message = str(excinfo.value)
    assert "All 50 random games of MountainCar-v0 scored -200" in message and "goal steps" in message


def test_for_env_gives_the_notebooks_cartpole_settings_and_a_share_elsewhere():
    assert GenerationConfig.for_env("CartPole-v1") == GenerationConfig()
    acrobot = GenerationConfig.for_env("Acrobot-v1", seed=3)
    assert acrobot.keep_top == 0.05 and acrobot.goal_steps == 500 and acrobot.seed == 3
    assert GenerationConfig.for_env("LunarLander-v3").goal_steps == 1000


@pytest.mark.parametrize("share", [0, 1.5, -0.1])
def test_bad_shares_are_user_errors(share):
    with pytest.raises(UserError, match="keep_top"):
        GenerationConfig(keep_top=share).validate()
