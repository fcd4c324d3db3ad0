"""Network: a trained network as plain data, and its forward pass in NumPy.

The bottom of the model stack, imported by :mod:`cartpole_core.storage` (which saves a
Network's ``.keras`` file), :mod:`cartpole_core.model` (which turns a Keras model into a
Network and back) and :mod:`cartpole_core.policies` (which plays one). It imports none of
them and never TensorFlow: a Network is what a browser session keeps and what travels to
and from a Ray task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cartpole_core.errors import UserError

if TYPE_CHECKING:
    import keras

DenseLayer = tuple[np.ndarray, np.ndarray, str]
"""One Dense layer as NumPy: kernel float32 (inputs, units), bias float32 (units,), activation name."""


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


NUMPY_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda z: np.maximum(z, 0.0),
    "linear": lambda z: z,
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "softmax": _softmax,
}
"""Keras activation name -> the same function on float32 (n, units) in NumPy (softmax per row)."""


def dense_forward(layers: tuple[DenseLayer, ...] | list[DenseLayer], observations: np.ndarray) -> np.ndarray:
    """Run a Dense stack on float32 (n, obs_dim) observations; float32 (n, units of the last
    layer). Equal to Keras's ``model(x, training=False)`` within float32 rounding."""
    x = np.asarray(observations, dtype=np.float32)
    for kernel, bias, activation in layers:
        x = NUMPY_ACTIVATIONS[activation](x @ kernel + bias)
    return x.astype(np.float32, copy=False)


def model_shape(model: keras.Model) -> tuple[int, int]:
    """``(obs_dim, n_actions)`` of a model that maps observations to action probabilities
    (reads its input and output shapes; imports nothing)."""
    try:
        obs_dim = int(model.input_shape[-1])
        n_actions = int(model.output_shape[-1])
    except (AttributeError, TypeError, ValueError) as exc:
        raise UserError("This model does not map one observation vector to action probabilities.") from exc
    return obs_dim, n_actions


@dataclass(frozen=True, eq=False)
class Network:
    """A network as plain data: what a browser session keeps and what travels to and from a
    Ray task. Needs no TensorFlow to hold, to play (a plain Dense stack runs in NumPy with
    :func:`dense_forward`), to download or to save.

    Made from a Keras model by :func:`cartpole_core.model.to_network` in the process that
    trained or loaded it; :func:`cartpole_core.model.from_network` rebuilds the Keras model
    where one is trained.
    """

    obs_dim: int
    """Length of one observation vector."""
    n_actions: int
    """Number of discrete actions (the width of the softmax output)."""
    layers: tuple[DenseLayer, ...] | None
    """Each Dense layer in NumPy for a plain Dense/Dropout stack with activations NumPy can
    compute (every network this app builds); None for any other model."""
    keras_file: bytes | None
    """The whole model as a ``.keras`` file: architecture, weights and optimiser state
    (~4 MB for the notebook's network). None for a copy kept only to play (see
    :func:`cartpole_core.model.to_network`)."""
    gradient_steps: int = 0
    """Optimiser steps the network has learned."""

    def describe(self) -> str:
        """E.g. ``"Dense 128-256-512-256-128 → 2"`` or ``"a custom Keras model"``."""
        if self.layers is None:
            return "a custom Keras model"
        return "Dense " + "-".join(str(k.shape[1]) for k, _, _ in self.layers[:-1]) + f" → {self.n_actions}"
