"""Model: the notebook's network built with Keras 3 for any env."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from cartpole_core.errors import UserError
from cartpole_core.model import MAX_LAYERS, ModelConfig, build_model, model_shape, parse_hidden

REPO = Path(__file__).resolve().parent.parent
ENV_SHAPES = [pytest.param(4, 2, id="CartPole"), pytest.param(6, 3, id="Acrobot"), pytest.param(2, 3, id="MountainCar")]


def dense_units(model: keras.Model) -> list[int]:
    return [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]


@pytest.mark.parametrize(("obs_dim", "n_actions"), ENV_SHAPES)
def test_output_is_one_probability_row_per_observation(obs_dim, n_actions, tiny_config):
    model = build_model(obs_dim, n_actions, tiny_config, seed=0)
    x = np.random.default_rng(0).normal(scale=3.0, size=(7, obs_dim)).astype(np.float32)
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (7, n_actions)
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert model_shape(model) == (obs_dim, n_actions)


def test_default_config_is_the_notebooks_network():
    config = ModelConfig()
    assert config.hidden == (128, 256, 512, 256, 128)
    assert config.dropout == pytest.approx(0.2)  # tflearn's keep probability 0.8
    assert config.learning_rate == pytest.approx(1e-3)
    model = build_model(4, 2, config)
    assert dense_units(model) == [128, 256, 512, 256, 128, 2]
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert [layer.rate for layer in dropouts] == pytest.approx([0.2] * 5)
    assert model.layers[-1].activation is keras.activations.softmax
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert model.loss == "categorical_crossentropy"


@pytest.mark.parametrize("hidden", [(16,), (8, 32), (5, 6, 7)])
def test_layer_sizes_follow_the_config(hidden):
    model = build_model(3, 4, ModelConfig(hidden=hidden, dropout=0.0, learning_rate=0.01))
    assert dense_units(model) == [*hidden, 4]
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    assert model.count_params() == sum((a + 1) * b for a, b in zip([3, *hidden], [*hidden, 4], strict=True))


def test_same_seed_same_weights_different_seed_different_weights(tiny_config):
    a = build_model(4, 2, tiny_config, seed=5).get_weights()
    b = build_model(4, 2, tiny_config, seed=5).get_weights()
    c = build_model(4, 2, tiny_config, seed=6).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_every_model_names_its_optimiser_variables_alike(tiny_config):
    """TensorFlow keeps memory for every distinct variable name it has created, so new
    models must not bring new optimiser names (Keras would number them adam_1, adam_2…)."""

    def names(model: keras.Model) -> list[str]:
        model.optimizer.build(model.trainable_variables)
        return [v.value.name for v in model.optimizer.variables]

    first, second = (names(build_model(4, 2, tiny_config, seed=s)) for s in (1, 2))
    assert first == second and first[0].startswith("adam/")


def test_seed_none_gives_fresh_weights(tiny_config):
    a = build_model(4, 2, tiny_config, seed=None).get_weights()
    b = build_model(4, 2, tiny_config, seed=None).get_weights()
    assert not np.array_equal(a[0], b[0])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ModelConfig(hidden=()), "1 to 8 hidden layers"),
        (ModelConfig(hidden=(4,) * (MAX_LAYERS + 1)), "1 to 8 hidden layers"),
        (ModelConfig(hidden=(16, 0)), "hidden layer units"),
        (ModelConfig(hidden=(100_000,)), "hidden layer units"),
        (ModelConfig(dropout=0.95), "dropout"),
        (ModelConfig(dropout=-0.1), "dropout"),
        (ModelConfig(learning_rate=0.0), "learning rate"),
        (ModelConfig(learning_rate=5.0), "learning rate"),
    ],
)
def test_impossible_networks_are_user_errors(config, message):
    with pytest.raises(UserError, match=message):
        config.validate()
    with pytest.raises(UserError, match=message):
        build_model(4, 2, config)


def test_validate_returns_the_config():
    config = ModelConfig(hidden=(8,))
    assert config.validate() is config


@pytest.mark.parametrize(
    ("text", "hidden"),
    [("128,256,512", (128, 256, 512)), (" 16 , 32 ", (16, 32)), ("64", (64,)), ("8,8,", (8, 8))],
)
def test_parse_hidden(text, hidden):
    assert parse_hidden(text) == hidden


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("128,abc", "whole numbers separated by commas"),
        ("1.5", "whole numbers"),
        ("", "1 to 8 hidden layers"),
        ("0", "hidden layer units"),
        ("16,-4", "hidden layer units"),
    ],
)
def test_parse_hidden_refuses_bad_text(text, message):
    with pytest.raises(UserError, match=message):
        parse_hidden(text)


def test_parse_hidden_error_quotes_the_text():
    with pytest.raises(UserError, match="'128,abc'"):
        parse_hidden("128,abc")


def test_settings_and_the_cli_parser_load_without_tensorflow():
    """Processes that only read settings (the web server drawing a form, a sweep's driver,
    `--help`) must not pay TensorFlow's import; building a network loads it."""
    code = (
        "import sys\n"
        "import cartpole_core.improve, cartpole_core.ensemble, cartpole_core.sweep, cartpole_core.pipeline\n"
        "from cartpole_core.cli import build_parser\n"
        "build_parser()\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported too early'\n"
        "from cartpole_core.model import ModelConfig, build_model\n"
        "build_model(4, 2, ModelConfig(hidden=(4,)))\n"
        "assert 'keras' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
