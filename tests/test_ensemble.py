"""Ensembles: several weak networks vote (soft: mean probabilities; hard: majority of argmax)."""

from __future__ import annotations

import numpy as np
import pytest

from cartpole_core.ensemble import (
    EnsembleConfig,
    EnsemblePolicy,
    bootstrap_games,
    evaluate_ensemble,
    train_ensemble,
)
from cartpole_core.errors import UserError
from cartpole_core.evaluate import EvaluationConfig, evaluate
from cartpole_core.model import ModelConfig
from cartpole_core.policies import RandomPolicy
from cartpole_core.training import TrainingConfig


class FixedPolicy:
    """Gives the same probability rows whatever it is shown (rows are cycled over the batch)."""

    deterministic = True

    def __init__(self, rows, name: str = "fixed"):
        self.rows = np.asarray(rows, dtype=np.float32)
        self.n_actions = self.rows.shape[1]
        self.name = name

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        return self.rows[np.arange(observations.shape[0]) % self.rows.shape[0]]


def batch(n: int) -> np.ndarray:
    return np.zeros((n, 4), dtype=np.float32)


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_keeps_the_number_of_games_and_groups_rows(small_dataset):
    resample = bootstrap_games(small_dataset, seed=0)
    assert resample.n_games == small_dataset.n_games
    assert np.all(np.diff(resample.game_ids) >= 0)
    assert set(np.unique(resample.game_ids)) == set(range(resample.n_games))
    rows_per_game = np.bincount(resample.game_ids, minlength=resample.n_games)
    np.testing.assert_array_equal(rows_per_game, resample.game_scores)  # CartPole: one row per point
    resample.validate(expect_env="CartPole-v1")
    assert resample.metadata["source"] == "bootstrap resample"


def test_bootstrap_games_are_whole_original_games(small_dataset, game_slices):
    originals = {
        small_dataset.observations[piece].tobytes(): small_dataset.actions[piece].tobytes()
        for piece in game_slices(small_dataset)
    }
    resample = bootstrap_games(small_dataset, seed=1)
    drawn = [resample.observations[piece].tobytes() for piece in game_slices(resample)]
    for piece, key in zip(game_slices(resample), drawn, strict=True):
        assert originals[key] == resample.actions[piece].tobytes()
    assert len(set(drawn)) < len(drawn)  # drawn with replacement: some game comes twice


def test_bootstrap_is_seeded(small_dataset):
    a, b, c = (bootstrap_games(small_dataset, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.game_scores, b.game_scores)
    assert not np.array_equal(a.game_scores, c.game_scores)


# ---------------------------------------------------------------- voting


def test_soft_vote_is_the_mean_of_member_probabilities():
    members = [
        FixedPolicy([[0.9, 0.1], [0.2, 0.8]]),
        FixedPolicy([[0.6, 0.4], [0.5, 0.5]]),
        FixedPolicy([[0.0, 1.0], [0.35, 0.65]]),
    ]
    policy = EnsemblePolicy(members, vote="soft")
    probs = policy.probabilities(batch(4))
    expected = np.mean([m.probabilities(batch(4)) for m in members], axis=0)
    np.testing.assert_allclose(probs, expected, atol=1e-7)
    assert policy.member_probabilities(batch(4)).shape == (3, 4, 2)


def test_hard_vote_follows_the_majority_not_the_mean():
    """Two members mildly prefer action 0, one is sure of action 1: the mean says 1, the vote says 0."""
    members = [FixedPolicy([[0.6, 0.4]]), FixedPolicy([[0.6, 0.4]]), FixedPolicy([[0.0, 1.0]])]
    x = batch(3)
    assert EnsemblePolicy(members, vote="soft").probabilities(x).argmax(axis=1).tolist() == [1, 1, 1]
    hard = EnsemblePolicy(members, vote="hard").probabilities(x)
    assert hard.argmax(axis=1).tolist() == [0, 0, 0]
    np.testing.assert_allclose(hard.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(hard[0], [2 / 3, 1 / 3], atol=1e-3)  # vote shares


def test_hard_vote_tie_goes_to_the_higher_mean_probability():
    members = [FixedPolicy([[0.55, 0.45]]), FixedPolicy([[0.1, 0.9]])]
    assert EnsemblePolicy(members, vote="hard").probabilities(batch(2)).argmax(axis=1).tolist() == [1, 1]
    members = [FixedPolicy([[0.95, 0.05]]), FixedPolicy([[0.4, 0.6]])]
    assert EnsemblePolicy(members, vote="hard").probabilities(batch(2)).argmax(axis=1).tolist() == [0, 0]


@pytest.mark.parametrize("vote", ["soft", "hard"])
def test_an_empty_batch_gives_no_rows(vote):
    policy = EnsemblePolicy([RandomPolicy(3), RandomPolicy(3)], vote=vote)
    assert policy.probabilities(np.zeros((0, 2), dtype=np.float32)).shape == (0, 3)
    assert policy.disagreement(np.zeros((0, 2), dtype=np.float32)) == 0.0


def test_disagreement():
    same = EnsemblePolicy([FixedPolicy([[0.7, 0.3]]), FixedPolicy([[0.7, 0.3]]), FixedPolicy([[0.9, 0.1]])])
    assert same.disagreement(batch(10)) == 0.0
    opposite = EnsemblePolicy([FixedPolicy([[0.7, 0.3]]), FixedPolicy([[0.2, 0.8]])])
    assert opposite.disagreement(batch(10)) == 1.0
    # Member two disagrees on every other row.
    half = EnsemblePolicy([FixedPolicy([[0.7, 0.3]]), FixedPolicy([[0.7, 0.3], [0.2, 0.8]])])
    assert half.disagreement(batch(10)) == 0.5


def test_ensemble_policy_refuses_bad_members():
    with pytest.raises(UserError, match="at least one member"):
        EnsemblePolicy([])
    with pytest.raises(UserError, match="same number of actions"):
        EnsemblePolicy([RandomPolicy(2), RandomPolicy(3)])
    with pytest.raises(UserError, match="vote"):
        EnsemblePolicy([RandomPolicy(2)], vote="median")


@pytest.mark.parametrize(
    ("config", "name"),
    [
        (EnsembleConfig(members=0), "members"),
        (EnsembleConfig(vote="mean"), "vote"),
        (EnsembleConfig(epochs=0), "epochs"),
    ],
)
def test_ensemble_config_out_of_range(config, name):
    with pytest.raises(UserError, match=name):
        config.validate()


# ---------------------------------------------------------------- training and evaluating


@pytest.fixture(scope="module")
def tiny_ensemble(small_dataset):
    return train_ensemble(
        small_dataset,
        ModelConfig(hidden=(16,)),
        TrainingConfig(epochs=1),
        EnsembleConfig(members=3, epochs=1, seed=0),
    )


def test_train_ensemble_trains_each_member(tiny_ensemble, small_dataset):
    result = tiny_ensemble
    assert len(result.models) == len(result.histories) == 3
    assert not result.stopped_early
    assert all(h.epochs_completed == 1 for h in result.histories)
    # Bootstrap resamples have the original number of games but not the same rows.
    assert len({h.samples for h in result.histories}) > 1
    first_kernels = [m.get_weights()[0] for m in result.models]
    assert not np.array_equal(first_kernels[0], first_kernels[1])
    policy = result.policy()
    assert isinstance(policy, EnsemblePolicy) and len(policy.members) == 3 and policy.vote == "soft"
    assert result.policy("hard").vote == "hard"
    probs = policy.probabilities(small_dataset.observations[:20])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_evaluate_ensemble_plays_the_same_games_with_each_member(tiny_ensemble):
    policy = tiny_ensemble.policy()
    config = EvaluationConfig(games=6, seed=1)
    result = evaluate_ensemble(policy, config)
    assert result.ensemble.scores.shape == (6,)
    assert len(result.members) == 3
    assert all(m.config == config and m.scores.shape == (6,) for m in result.members)
    assert result.ensemble.config.seed == config.seed and result.ensemble.config.games == config.games
    # Each member's result is what that member scores on its own on these games.
    alone = evaluate(policy.members[1], config)
    np.testing.assert_array_equal(result.members[1].scores, alone.scores)
    assert 0.0 <= result.disagreement <= 1.0
    expected = policy.disagreement(result.ensemble.observations)
    assert result.disagreement == expected


def test_stopping_keeps_the_members_finished_so_far(small_dataset):
    result = train_ensemble(
        small_dataset,
        ModelConfig(hidden=(8,)),
        TrainingConfig(epochs=1),
        EnsembleConfig(members=4, seed=0),
        progress=lambda p: True,  # stop at the first report
    )
    assert result.stopped_early
    assert len(result.models) == 1  # at least one member is kept, so the policy still plays
    assert len(result.policy().members) == 1


def test_train_ensemble_on_an_empty_dataset_is_a_user_error(small_dataset):
    with pytest.raises(UserError, match="no rows"):
        train_ensemble(small_dataset.subset_games(np.array([], dtype=np.int64)), config=EnsembleConfig(members=2))


@pytest.mark.parametrize("vote", ["soft", "hard"])
def test_evaluate_ensemble_plays_sampled_when_asked(tiny_ensemble, vote):
    """Issue 30, item 2: the ensemble plays as LunarLander's counted player does, drawing its
    moves from its probabilities (a hard vote: from its vote's shares), and so does each member:
    every one the same as on its own, seeded, and not the greedy play."""
    from dataclasses import replace

    policy = tiny_ensemble.policy(vote)
    sampled = EvaluationConfig(games=6, seed=1, sample_actions=True)
    result = evaluate_ensemble(policy, sampled)
    assert result.ensemble.config.sample_actions and all(m.config.sample_actions for m in result.members)
    alone = evaluate(policy, sampled)
    np.testing.assert_array_equal(result.ensemble.scores, alone.scores)
    np.testing.assert_array_equal(result.ensemble.choice_counts, alone.choice_counts)
    np.testing.assert_array_equal(result.members[0].scores, evaluate(policy.members[0], sampled).scores)
    again = evaluate_ensemble(policy, sampled)
    np.testing.assert_array_equal(again.ensemble.scores, result.ensemble.scores)
    greedy = evaluate_ensemble(policy, replace(sampled, sample_actions=False))
    assert not np.array_equal(greedy.ensemble.observations, result.ensemble.observations), "it drew its moves"
