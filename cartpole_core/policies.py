"""Policies: anything that maps a batch of observations to action probabilities.

A policy has ``n_actions``, a ``name``, ``deterministic`` (True: play the most probable
action; False: draw the action from the probabilities) and
``probabilities(observations) -> float32 (n, n_actions)``. Random play, one network and an
ensemble (:mod:`cartpole_core.ensemble`) are all policies, so evaluation treats them alike.

A Keras model is run as a NumPy forward pass when it is a plain stack of Dense (and
Dropout) layers, which on a small batch is several times faster than any TensorFlow call
and equal to ``model(x, training=False)`` within float32 rounding; any other model runs
through one compiled ``tf.function``. Never ``model.predict`` per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from cartpole_core.errors import UserError, check_range
from cartpole_core.model import from_network, numpy_layers
from cartpole_core.network import Network, dense_forward, model_shape

if TYPE_CHECKING:
    import keras


@runtime_checkable
class Policy(Protocol):
    """What evaluation needs from a player."""

    name: str
    n_actions: int
    deterministic: bool

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        """float32 (n, obs_dim) -> float32 (n, n_actions), rows summing to 1."""
        ...


class RandomPolicy:
    """Uniformly random actions (the notebook's ``env.action_space.sample()``)."""

    deterministic = False

    def __init__(self, n_actions: int, name: str = "random"):
        self.n_actions = n_actions
        self.name = name

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        return np.full((observations.shape[0], self.n_actions), 1.0 / self.n_actions, dtype=np.float32)


class ModelPolicy:
    """A network's action probabilities, computed on whole batches.

    ``model`` is a Keras model or a :class:`~cartpole_core.network.Network`. A Network of a
    plain Dense stack plays in NumPy without importing TensorFlow; any other Network is
    rebuilt in Keras where it first plays (so a policy made in the web server and sent to a
    Ray task loads TensorFlow in the task's worker, not in the server). A policy made from a
    Network can be pickled.
    """

    deterministic = True

    def __init__(self, model: keras.Model | Network, name: str = "model"):
        self.name = name
        self._network: Network | None = None
        self._compiled: Callable[[np.ndarray], np.ndarray] | None = None
        if isinstance(model, Network):
            self.obs_dim, self.n_actions = model.obs_dim, model.n_actions
            self._layers = None if model.layers is None else list(model.layers)
            self._network = model
            return
        self.model = model
        self.obs_dim, self.n_actions = model_shape(model)
        self._layers = numpy_layers(model)
        if self._layers is None:
            self._compile(model)

    def _compile(self, model: keras.Model) -> None:
        import tensorflow as tf

        fn = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec(shape=(None, self.obs_dim), dtype=tf.float32)],
        )
        self._compiled = lambda x: fn(x).numpy()

    def __getstate__(self) -> dict:
        if self._network is None and self._layers is None:
            raise TypeError("a policy of a Keras model that NumPy cannot play does not travel: make it from a Network")
        return {k: v for k, v in self.__dict__.items() if k not in ("model", "_compiled")} | {"_compiled": None}

    @property
    def uses_numpy(self) -> bool:
        """True when the forward pass runs in NumPy (a plain Dense stack)."""
        return self._layers is not None

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        x = np.asarray(observations, dtype=np.float32)
        if self._layers is None:
            if self._compiled is None:
                assert self._network is not None
                self._compile(from_network(self._network))
            assert self._compiled is not None
            return np.asarray(self._compiled(x), dtype=np.float32)
        return dense_forward(self._layers, x)


def choose_actions(probabilities: np.ndarray, deterministic: bool, uniforms: np.ndarray | None = None) -> np.ndarray:
    """int64 (n,): argmax of each row, or (not deterministic) a draw using ``uniforms``
    (float (n,) in [0, 1), one per row)."""
    if deterministic:
        return probabilities.argmax(axis=1).astype(np.int64)
    if uniforms is None:
        raise ValueError("sampling needs one uniform number per row")
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative[:, -1] = 1.0  # guard against rounding below 1
    return (uniforms[:, None] >= cumulative).sum(axis=1).astype(np.int64)


@dataclass(frozen=True)
class ProbabilityGrid:
    """A policy's action probabilities over a grid of two observation dimensions."""

    x_dim: int
    y_dim: int
    xs: np.ndarray
    """float32 (nx,): values of observation ``x_dim`` along the grid."""
    ys: np.ndarray
    """float32 (ny,): values of observation ``y_dim`` along the grid."""
    probabilities: np.ndarray
    """float32 (ny, nx, n_actions): the policy's probabilities at each grid point."""


def probability_grid(
    policy: Policy,
    base: np.ndarray,
    x_dim: int,
    y_dim: int,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    resolution: int = 60,
) -> ProbabilityGrid:
    """Ask ``policy`` about every point of a ``resolution`` x ``resolution`` grid over two
    observation dimensions; the other dimensions keep their values from ``base``
    (float (obs_dim,)). One batched call for the whole grid."""
    base = np.asarray(base, dtype=np.float32)
    if x_dim == y_dim or not (0 <= x_dim < base.size and 0 <= y_dim < base.size):
        raise UserError(f"Choose two different observation dimensions between 0 and {base.size - 1}.")
    if not (x_range[0] < x_range[1] and y_range[0] < y_range[1]):
        raise UserError("Each range needs its low end below its high end.")
    check_range("resolution", resolution, 2, 400)
    xs = np.linspace(*x_range, resolution, dtype=np.float32)
    ys = np.linspace(*y_range, resolution, dtype=np.float32)
    grid = np.tile(base, (resolution * resolution, 1))
    gx, gy = np.meshgrid(xs, ys)
    grid[:, x_dim], grid[:, y_dim] = gx.ravel(), gy.ravel()
    probs = policy.probabilities(grid).reshape(resolution, resolution, -1)
    return ProbabilityGrid(x_dim, y_dim, xs, ys, probs.astype(np.float32))
