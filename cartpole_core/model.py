"""Model: the notebook's network, built with Keras 3 for any env.

Default: fully connected layers of 128, 256, 512, 256 and 128 ReLU units, each followed by
dropout 0.2 (the notebook's keep probability 0.8), then a softmax with one unit per action;
Adam at 1e-3, categorical cross-entropy, accuracy. The notebook's input shape (obs_dim, 1)
was a tflearn habit; here the input is the flat observation, shape (obs_dim,).

TensorFlow is imported when a model is first built (a few seconds, once per process), not
with this module: its settings are read by processes that never train (the web server, a
sweep's driver).

A trained model travels as a :class:`~cartpole_core.network.Network` (plain data, no
TensorFlow): :func:`to_network` makes one, :func:`from_network` rebuilds the Keras model.
``Network`` and ``model_shape`` are also importable from here, as before.
"""

from __future__ import annotations

import os
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from cartpole_core.errors import UserError, bounds, check_range, within
from cartpole_core.network import NUMPY_ACTIVATIONS, DenseLayer, Network, model_shape
from cartpole_core.storage import model_from_bytes, model_to_bytes

if TYPE_CHECKING:
    import keras

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter off stderr
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def import_keras() -> types.ModuleType:
    """Keras on TensorFlow, imported now (a few seconds the first time in a process), with
    TensorFlow's C++ chatter kept off stderr."""
    import keras

    return keras


MAX_LAYERS = 8
MAX_UNITS = 2048


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network and its optimiser; defaults are the notebook's."""

    hidden: tuple[int, ...] = (128, 256, 512, 256, 128)
    """Units of each hidden Dense+ReLU layer, input side first."""
    dropout: float = field(default=0.2, metadata=within(0.0, 0.9))
    """Share of units dropped after each hidden layer while training (0 = none)."""
    learning_rate: float = field(default=1e-3, metadata=within(1e-6, 1.0))
    """Adam's step size."""

    def validate(self) -> ModelConfig:
        """Raise :class:`UserError` for an impossible network; return self."""
        if not self.hidden or len(self.hidden) > MAX_LAYERS:
            raise UserError(f"The network needs 1 to {MAX_LAYERS} hidden layers, got {len(self.hidden)}.")
        for units in self.hidden:
            check_range("hidden layer units", units, 1, MAX_UNITS)
        check_range("dropout", self.dropout, *bounds(self, "dropout"), "0.2 is the notebook's.")
        check_range("learning rate", self.learning_rate, *bounds(self, "learning_rate"), "1e-3 is the notebook's.")
        return self


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"128,256,512"`` -> ``(128, 256, 512)``; a :class:`UserError` for anything else."""
    try:
        hidden = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as exc:
        raise UserError(
            f"Hidden layers must be whole numbers separated by commas (e.g. 128,256,512,256,128), got {text!r}."
        ) from exc
    ModelConfig(hidden=hidden).validate()
    return hidden


def build_model(obs_dim: int, n_actions: int, config: ModelConfig, seed: int | None = 0) -> keras.Model:
    """A compiled Keras model mapping float32 (batch, obs_dim) to probabilities (batch, n_actions).

    Every initialiser and dropout layer gets its own seed derived from ``seed``, so the
    same seed builds the same weights without touching Keras's global random state.
    """
    import keras

    config.validate()

    def layer_seed(i: int) -> int | None:
        return None if seed is None else seed * 1000 + i

    layers: list[keras.layers.Layer] = [keras.Input(shape=(obs_dim,), name="observation")]
    for i, units in enumerate(config.hidden):
        layers.append(
            keras.layers.Dense(
                units,
                activation="relu",
                kernel_initializer=keras.initializers.GlorotUniform(seed=layer_seed(2 * i)),
                name=f"dense_{i + 1}",
            )
        )
        if config.dropout > 0:
            layers.append(keras.layers.Dropout(config.dropout, seed=layer_seed(2 * i + 1), name=f"dropout_{i + 1}"))
    layers.append(
        keras.layers.Dense(
            n_actions,
            activation="softmax",
            kernel_initializer=keras.initializers.GlorotUniform(seed=layer_seed(99)),
            name="action_probabilities",
        )
    )
    return compile_model(keras.Sequential(layers, name="imitation_policy"), config.learning_rate)


def compile_model(model: keras.Model, learning_rate: float = ModelConfig.learning_rate) -> keras.Model:
    """Give ``model`` the notebook's training settings (Adam, categorical cross-entropy,
    accuracy) and return it; also used for a loaded model that was saved without them."""
    import keras

    model.compile(
        # A fixed name: TensorFlow keeps ~34 KB for every distinct variable name it has seen,
        # and Keras would otherwise number each new optimiser (adam_1/…, adam_2/…).
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate, name="adam"),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def numpy_layers(model: keras.Model) -> list[DenseLayer] | None:
    """The model's (kernel, bias, activation) per Dense layer, or None when it is not a
    plain Dense/Dropout stack with activations NumPy can compute (see
    :data:`cartpole_core.network.NUMPY_ACTIVATIONS`)."""
    import keras

    layers = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Dropout, keras.layers.InputLayer)):
            continue
        if not isinstance(layer, keras.layers.Dense) or not layer.use_bias:
            return None
        activation = keras.activations.serialize(layer.activation)
        if isinstance(activation, dict):
            activation = activation.get("config", {}).get("name", activation.get("class_name"))
        if activation not in NUMPY_ACTIVATIONS:
            return None
        kernel, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_weights())
        layers.append((kernel, bias, str(activation)))
    return layers or None


def to_network(model: keras.Model, keep_file: bool = True) -> Network:
    """The :class:`~cartpole_core.network.Network` of a Keras model, made in the process that
    trained or loaded it. ``keep_file=False`` drops the ``.keras`` file when the layers alone
    can play it (a light snapshot, e.g. one per generation for a time-lapse)."""
    obs_dim, n_actions = model_shape(model)
    layers = numpy_layers(model)
    optimizer = getattr(model, "optimizer", None)
    steps = int(np.asarray(optimizer.iterations)) if optimizer is not None and optimizer.built else 0
    keep = keep_file or layers is None
    return Network(obs_dim, n_actions, None if layers is None else tuple(layers),
                   model_to_bytes(model) if keep else None, steps)  # fmt: skip


def from_network(network: Network) -> keras.Model:
    """The Keras model of a Network (loaded in safe mode from its ``keras_file``; imports
    TensorFlow). A ``ValueError`` for a network kept only to play."""
    if network.keras_file is None:
        raise ValueError("this network was kept only to play: it has no .keras file to rebuild")
    return model_from_bytes(network.keras_file)
