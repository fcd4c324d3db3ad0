"""Dataset: the kept games' (observation, action) rows as plain arrays."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cartpole_core.dataset import Dataset, concat_datasets, empty_dataset
from cartpole_core.envs import env_info
from cartpole_core.errors import UserError

CARTPOLE_META = {"env_id": "CartPole-v1", "obs_dim": 4, "n_actions": 2}


def make_dataset(
    rows_per_game=(2, 3, 1), n_actions=2, obs_dim=4, env_id="CartPole-v1", actions=None, offset=0.0
) -> Dataset:
    """A hand-made dataset: row r has observation values offset + r (so rows can be traced)."""
    n = sum(rows_per_game)
    observations = (offset + np.arange(n, dtype=np.float32))[:, None] * np.ones(obs_dim, dtype=np.float32)
    return Dataset(
        observations=observations.astype(np.float32),
        actions=np.asarray(actions if actions is not None else np.arange(n) % n_actions, dtype=np.int64),
        game_ids=np.repeat(np.arange(len(rows_per_game)), rows_per_game).astype(np.int64),
        game_scores=np.asarray(rows_per_game, dtype=np.float32),
        metadata={"env_id": env_id, "obs_dim": obs_dim, "n_actions": n_actions},
    )


def test_sizes_and_env():
    dataset = make_dataset()
    assert len(dataset) == 6
    assert dataset.n_games == 3
    assert dataset.obs_dim == 4 and dataset.n_actions == 2
    assert dataset.env_id == "CartPole-v1"


def test_one_hot_actions_are_the_notebooks_labels():
    dataset = make_dataset(rows_per_game=(3,), actions=[0, 1, 1])
    labels = dataset.one_hot_actions()
    assert labels.dtype == np.float32
    np.testing.assert_array_equal(labels, [[1, 0], [0, 1], [0, 1]])


def test_one_hot_actions_with_three_actions():
    dataset = make_dataset(rows_per_game=(4,), n_actions=3, obs_dim=2, env_id="MountainCar-v0", actions=[2, 0, 1, 2])
    np.testing.assert_array_equal(dataset.one_hot_actions(), [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])


def test_action_counts_include_actions_never_taken():
    dataset = make_dataset(rows_per_game=(3,), n_actions=3, obs_dim=2, env_id="MountainCar-v0", actions=[0, 0, 2])
    counts = dataset.action_counts()
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, [2, 0, 1])


def test_action_counts_of_a_generated_dataset_add_up(small_dataset):
    counts = small_dataset.action_counts()
    assert counts.sum() == len(small_dataset)
    assert counts.min() > 0


def test_validate_accepts_good_data_and_returns_it(small_dataset):
    assert make_dataset().validate() is not None
    assert small_dataset.validate(expect_env="CartPole-v1") is small_dataset


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (lambda d: replace(d, observations=d.observations.astype(np.float64)), "float32"),
        (lambda d: replace(d, observations=d.observations[:, 0]), "observations must be float32 of shape"),
        (lambda d: replace(d, observations=d.observations[:, :3]), "obs_dim 3 vs 4"),
        (lambda d: replace(d, actions=d.actions[:-1]), "actions must be integers of shape"),
        (lambda d: replace(d, actions=d.actions.astype(np.float32)), "actions must be integers"),
        (lambda d: replace(d, actions=np.where(d.actions == 1, 2, d.actions)), r"0\.\.1"),
        (lambda d: replace(d, actions=d.actions - 1), r"0\.\.1"),
        (lambda d: replace(d, game_ids=d.game_ids + 1), "game_ids point outside"),
        (lambda d: replace(d, game_scores=d.game_scores.astype(np.int64)), "game_scores"),
        (lambda d: replace(d, observations=np.full_like(d.observations, np.nan)), "NaN"),
        (lambda d: replace(d, metadata={"n_actions": 2}), "env_id"),
        (lambda d: replace(d, metadata={"env_id": "CartPole-v1"}), "n_actions"),
        (lambda d: replace(d, metadata=dict(d.metadata, n_actions=3)), "actions 3 vs 2"),
        (lambda d: replace(d, metadata=dict(d.metadata, env_id="NoSuchGame-v0")), "NoSuchGame-v0"),
    ],
)
def test_validate_names_the_problem(broken, message):
    with pytest.raises(UserError, match=message):
        broken(make_dataset()).validate()


def test_validate_catches_an_env_mismatch():
    with pytest.raises(UserError) as excinfo:
        make_dataset().validate(expect_env="Acrobot-v1")
    assert "'CartPole-v1'" in str(excinfo.value) and "'Acrobot-v1'" in str(excinfo.value)


def test_subset_games_keeps_the_chosen_games_renumbered_in_order():
    dataset = make_dataset(rows_per_game=(2, 3, 1))
    subset = dataset.subset_games(np.array([2, 0, 2]))  # order and repeats do not matter
    assert subset.n_games == 2
    np.testing.assert_array_equal(subset.game_scores, [2, 1])
    np.testing.assert_array_equal(subset.game_ids, [0, 0, 1])
    np.testing.assert_array_equal(subset.observations[:, 0], [0, 1, 5])  # rows 0, 1 (game 0) and 5 (game 2)
    np.testing.assert_array_equal(subset.actions, dataset.actions[[0, 1, 5]])
    subset.validate()


def test_subset_games_of_a_generated_dataset(small_dataset):
    keep = np.arange(0, small_dataset.n_games, 3)
    subset = small_dataset.subset_games(keep)
    assert subset.n_games == keep.size
    assert len(subset) == int(small_dataset.game_scores[keep].sum())
    assert subset.metadata == small_dataset.metadata and subset.metadata is not small_dataset.metadata


def test_concat_datasets_renumbers_games():
    a = make_dataset(rows_per_game=(2, 1))
    b = make_dataset(rows_per_game=(3,), offset=100.0)
    both = concat_datasets([a, b], metadata=dict(CARTPOLE_META, source="test"))
    assert both.n_games == 3 and len(both) == 6
    np.testing.assert_array_equal(both.game_ids, [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(both.game_scores, [2, 1, 3])
    np.testing.assert_array_equal(both.observations[:, 0], [0, 1, 2, 100, 101, 102])
    assert both.metadata["source"] == "test"
    both.validate()


def test_concat_of_nothing_is_a_user_error():
    with pytest.raises(UserError, match="no dataset"):
        concat_datasets([], metadata=CARTPOLE_META)


@pytest.mark.parametrize(("env_id", "obs_dim"), [("CartPole-v1", 4), ("Acrobot-v1", 6), ("MountainCar-v0", 2)])
def test_empty_dataset_has_the_envs_shape(env_id, obs_dim):
    info = env_info(env_id)
    dataset = empty_dataset(info, {"env_id": env_id, "n_actions": info.n_actions})
    assert len(dataset) == 0 and dataset.n_games == 0
    assert dataset.observations.shape == (0, obs_dim)
    assert dataset.one_hot_actions().shape == (0, info.n_actions)
    np.testing.assert_array_equal(dataset.action_counts(), np.zeros(info.n_actions))
    dataset.validate(expect_env=env_id)
