"""Model: the notebook's network, built with Keras 3 for any env.

Default: fully connected layers of 128, 256, 512, 256 and 128 ReLU units, each followed by
dropout 0.2 (the notebook's keep probability 0.8), then a softmax with one unit per action;
Adam at 1e-3, categorical cross-entropy, accuracy. The notebook's input shape (obs_dim, 1)
was a tflearn habit; here the input is the flat observation, shape (obs_dim,).

TensorFlow is imported when a model is first built (a few seconds, once per process), not
with this module: its settings are read by processes that never train (the web server, a
sweep's driver).
"""

from __future__ import annotations

import os
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cartpole_core.errors import UserError, check_range

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
    dropout: float = 0.2
    """Share of units dropped after each hidden layer while training (0 = none)."""
    learning_rate: float = 1e-3
    """Adam's step size."""

    def validate(self) -> ModelConfig:
        """Raise :class:`UserError` for an impossible network; return self."""
        if not self.hidden or len(self.hidden) > MAX_LAYERS:
            raise UserError(f"The network needs 1 to {MAX_LAYERS} hidden layers, got {len(self.hidden)}.")
        for units in self.hidden:
            check_range("hidden layer units", units, 1, MAX_UNITS)
        check_range("dropout", self.dropout, 0.0, 0.9, "0.2 is the notebook's.")
        check_range("learning rate", self.learning_rate, 1e-6, 1.0, "1e-3 is the notebook's.")
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


def model_shape(model: keras.Model) -> tuple[int, int]:
    """``(obs_dim, n_actions)`` of a model that maps observations to action probabilities."""
    try:
        obs_dim = int(model.input_shape[-1])
        n_actions = int(model.output_shape[-1])
    except (AttributeError, TypeError, ValueError) as exc:
        raise UserError("This model does not map one observation vector to action probabilities.") from exc
    return obs_dim, n_actions


DenseLayer = tuple[np.ndarray, np.ndarray, str]
"""One Dense layer as NumPy: kernel float32 (inputs, units), bias float32 (units,), activation name."""


@dataclass(frozen=True, eq=False)
class Network:
    """A network as plain data: what a browser session keeps and what travels to and from a
    Ray task. Needs no TensorFlow to hold, to play (a plain Dense stack runs in NumPy), to
    download or to save; :meth:`to_keras` rebuilds the Keras model where one is trained.

    Made by :meth:`of` from a Keras model in the process that trained or loaded it.
    """

    obs_dim: int
    n_actions: int
    layers: tuple[DenseLayer, ...] | None
    """Each Dense layer in NumPy for a plain Dense/Dropout stack with activations NumPy can
    compute (every network this app builds); None for any other model."""
    keras_file: bytes | None
    """The whole model as a ``.keras`` file: architecture, weights and optimiser state
    (~4 MB for the notebook's network). None for a copy kept only to play (see :meth:`of`)."""
    gradient_steps: int = 0
    """Optimiser steps the network has learned."""

    @classmethod
    def of(cls, model: keras.Model, keep_file: bool = True) -> Network:
        """The network of a Keras model. ``keep_file=False`` drops the ``.keras`` file when the
        layers alone can play it (a light snapshot, e.g. one per generation for a time-lapse)."""
        from cartpole_core.policies import numpy_layers
        from cartpole_core.storage import model_to_bytes

        obs_dim, n_actions = model_shape(model)
        layers = numpy_layers(model)
        optimizer = getattr(model, "optimizer", None)
        steps = int(np.asarray(optimizer.iterations)) if optimizer is not None and optimizer.built else 0
        keep = keep_file or layers is None
        return cls(obs_dim, n_actions, None if layers is None else tuple(layers),
                   model_to_bytes(model) if keep else None, steps)  # fmt: skip

    def to_keras(self) -> keras.Model:
        """The Keras model (loaded in safe mode from :attr:`keras_file`; imports TensorFlow)."""
        from cartpole_core.storage import model_from_bytes

        if self.keras_file is None:
            raise ValueError("this network was kept only to play: it has no .keras file to rebuild")
        return model_from_bytes(self.keras_file)

    def describe(self) -> str:
        """E.g. ``"Dense 128-256-512-256-128 → 2"`` or ``"a custom Keras model"``."""
        if self.layers is None:
            return "a custom Keras model"
        return "Dense " + "-".join(str(k.shape[1]) for k, _, _ in self.layers[:-1]) + f" → {self.n_actions}"
