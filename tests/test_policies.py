"""Policies: random play and networks, mapping a batch of observations to action probabilities."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cartpole_core.model import ModelConfig, build_model
from cartpole_core.policies import ModelPolicy, Policy, RandomPolicy, choose_actions


def observations(obs_dim: int, n: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=2.0, size=(n, obs_dim)).astype(np.float32)


def keras_probabilities(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(x, training=False))


@pytest.mark.parametrize(("obs_dim", "n_actions"), [(4, 2), (6, 3), (2, 3)])
def test_numpy_forward_pass_equals_keras_for_the_default_network(obs_dim, n_actions):
    model = build_model(obs_dim, n_actions, ModelConfig(), seed=1)
    policy = ModelPolicy(model)
    assert policy.uses_numpy
    assert (policy.obs_dim, policy.n_actions) == (obs_dim, n_actions)
    x = observations(obs_dim)
    probs = policy.probabilities(x)
    assert probs.dtype == np.float32 and probs.shape == (64, n_actions)
    np.testing.assert_allclose(probs, keras_probabilities(model, x), atol=1e-5)


def test_numpy_forward_pass_equals_keras_after_training(trained_tiny_model, small_dataset):
    policy = ModelPolicy(trained_tiny_model)
    assert policy.uses_numpy
    x = small_dataset.observations[:500]
    np.testing.assert_allclose(policy.probabilities(x), keras_probabilities(trained_tiny_model, x), atol=1e-5)
    np.testing.assert_allclose(policy.probabilities(x[:1]), keras_probabilities(trained_tiny_model, x[:1]), atol=1e-5)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "linear"])
def test_numpy_forward_pass_handles_other_simple_activations(activation):
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation=activation), keras.layers.Dense(2, activation="softmax")]
    )
    policy = ModelPolicy(model)
    assert policy.uses_numpy
    x = observations(4)
    np.testing.assert_allclose(policy.probabilities(x), keras_probabilities(model, x), atol=1e-5)


def _with_batch_norm() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    bn = model.layers[1]
    rng = np.random.default_rng(0)
    # Non-trivial statistics, so that skipping the layer would change the output.
    gamma, beta, mean, var = (w.shape for w in bn.get_weights())
    bn.set_weights(
        [
            rng.uniform(0.5, 2.0, gamma).astype(np.float32),
            rng.normal(size=beta).astype(np.float32),
            rng.normal(size=mean).astype(np.float32),
            rng.uniform(0.5, 3.0, var).astype(np.float32),
        ]
    )
    return model


def _with_normalization() -> keras.Model:
    norm = keras.layers.Normalization(mean=[1.0, -2.0, 0.5, 3.0], variance=[4.0, 0.25, 1.0, 9.0])
    return keras.Sequential([keras.Input((4,)), norm, keras.layers.Dense(3, activation="softmax")])


def _without_bias() -> keras.Model:
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax", use_bias=False)])


def _with_elu() -> keras.Model:
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="elu"), keras.layers.Dense(2, activation="softmax")]
    )


@pytest.mark.parametrize("make", [_with_batch_norm, _with_normalization, _without_bias, _with_elu])
def test_other_models_fall_back_to_the_compiled_path_and_still_match(make):
    model = make()
    policy = ModelPolicy(model)
    assert not policy.uses_numpy
    x = observations(4)
    expected = keras_probabilities(model, x)
    probs = policy.probabilities(x)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(policy.probabilities(x[:3]), expected[:3], atol=1e-5)  # another batch size


def test_batch_norm_really_changes_the_output():
    """Guards the fallback test above: a NumPy pass that skipped BatchNormalization would differ."""
    model = _with_batch_norm()
    dense_only = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")]
    )
    dense_only.layers[0].set_weights(model.layers[0].get_weights())
    dense_only.layers[1].set_weights(model.layers[2].get_weights())
    x = observations(4)
    assert np.abs(keras_probabilities(model, x) - keras_probabilities(dense_only, x)).max() > 1e-3


@pytest.mark.parametrize("n_actions", [2, 3, 4])
def test_random_policy_is_uniform(n_actions):
    policy = RandomPolicy(n_actions)
    probs = policy.probabilities(np.zeros((5, 7), dtype=np.float32))
    assert probs.dtype == np.float32 and probs.shape == (5, n_actions)
    np.testing.assert_allclose(probs, 1.0 / n_actions)
    assert not policy.deterministic
    assert policy.name == "random"


def test_policies_satisfy_the_protocol(trained_tiny_model):
    assert isinstance(RandomPolicy(2), Policy)
    assert isinstance(ModelPolicy(trained_tiny_model), Policy)
    assert ModelPolicy(trained_tiny_model).deterministic


def test_choose_actions_argmax():
    probs = np.array([[0.1, 0.9, 0.0], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]], dtype=np.float32)
    actions = choose_actions(probs, deterministic=True)
    assert actions.dtype == np.int64
    np.testing.assert_array_equal(actions, [1, 0, 2])


def test_choose_actions_sampling_uses_the_uniform_numbers():
    probs = np.tile(np.array([[0.2, 0.5, 0.3]], dtype=np.float32), (6, 1))
    uniforms = np.array([0.0, 0.19, 0.21, 0.69, 0.71, 0.999])
    np.testing.assert_array_equal(choose_actions(probs, False, uniforms), [0, 0, 1, 1, 2, 2])


def test_choose_actions_sampling_follows_the_probabilities():
    probs = np.tile(np.array([[0.25, 0.75]], dtype=np.float32), (20_000, 1))
    uniforms = np.random.default_rng(0).random(20_000)
    share = choose_actions(probs, False, uniforms).mean()
    assert share == pytest.approx(0.75, abs=0.015)


def test_choose_actions_sampling_never_goes_past_the_last_action():
    """Rows summing to a little under 1 (float32 rounding) still give a valid action."""
    probs = np.array([[0.3333333, 0.3333333, 0.3333333]], dtype=np.float32)
    assert choose_actions(probs, False, np.array([0.9999999]))[0] == 2


def test_choose_actions_sampling_needs_uniforms():
    with pytest.raises(ValueError, match="uniform"):
        choose_actions(np.full((2, 2), 0.5, dtype=np.float32), deterministic=False)


def test_probability_grid_asks_the_policy_about_every_point(trained_tiny_model) -> None:
    from cartpole_core.policies import ModelPolicy, probability_grid

    policy = ModelPolicy(trained_tiny_model)
    base = np.array([0.1, -0.2, 0.0, 0.0], dtype=np.float32)
    grid = probability_grid(policy, base, 2, 3, (-0.2, 0.2), (-1.0, 1.0), resolution=7)
    assert grid.probabilities.shape == (7, 7, 2)
    assert np.allclose(grid.probabilities.sum(axis=2), 1.0, atol=1e-5)
    # the point at row i, column j is base with obs[2] = xs[j] and obs[3] = ys[i]
    point = base.copy()
    point[2], point[3] = grid.xs[4], grid.ys[1]
    assert np.allclose(grid.probabilities[1, 4], policy.probabilities(point[None])[0], atol=1e-6)


def test_probability_grid_refuses_the_same_dimension_twice() -> None:
    from cartpole_core.errors import UserError
    from cartpole_core.policies import RandomPolicy, probability_grid

    with pytest.raises(UserError, match="two different"):
        probability_grid(RandomPolicy(2), np.zeros(4), 1, 1, (-1, 1), (-1, 1))


def test_networks_travel_to_a_job_and_play_there_as_their_model_would():
    """The dashboard sends policies made from Networks to Ray tasks: a Dense stack plays in
    NumPy, any other network is rebuilt in Keras only where it first plays, after pickling."""
    import pickle

    from cartpole_core.model import compile_model, to_network

    x = observations(4)
    dense = build_model(4, 2, ModelConfig(hidden=(8,)), seed=2)
    custom = compile_model(_with_batch_norm())
    for model in (dense, custom):
        policy = ModelPolicy(to_network(model))
        assert policy._compiled is None, "nothing built before it plays"
        travelled = pickle.loads(pickle.dumps(policy))
        np.testing.assert_allclose(travelled.probabilities(x), keras_probabilities(model, x), atol=1e-5)
    with pytest.raises(TypeError, match="make it from a Network"):
        pickle.dumps(ModelPolicy(custom))
