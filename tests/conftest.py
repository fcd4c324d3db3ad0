"""Shared fixtures: small seeded datasets and tiny networks so the suite stays fast.

Fixtures that need Keras import it inside the fixture, so test modules that never touch a
network (envs, generate, dataset, gif) do not pay TensorFlow's start-up cost when run alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# AppTest runs app.py in this process: no background warm-up of Ray here (a module's end stops
# Ray under it). The browser tests' servers warm theirs, as a real server does.
os.environ.setdefault("CARTPOLE_LAB_WARM", "0")

from cartpole_core.dataset import Dataset  # noqa: E402
from cartpole_core.generate import GenerationConfig, GenerationResult, generate  # noqa: E402

if TYPE_CHECKING:
    import keras

    from cartpole_core.model import ModelConfig

#: Hidden layers of the tiny network most tests train (one layer of 16 units).
TINY_HIDDEN = (16,)
#: Games of the shared small CartPole dataset (about 35 kept games, 2,000 rows).
SMALL_GAMES = 1_000


def _game_slices(dataset: Dataset) -> list[slice]:
    starts = np.searchsorted(dataset.game_ids, np.arange(dataset.n_games), side="left")
    ends = np.searchsorted(dataset.game_ids, np.arange(dataset.n_games), side="right")
    return [slice(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


@pytest.fixture(scope="session")
def game_slices() -> Callable[[Dataset], list[slice]]:
    """Function: a dataset -> the row slice of each game, in game order (assumes sorted game ids)."""
    return _game_slices


@pytest.fixture(scope="session")
def small_generation() -> GenerationResult:
    """1,000 random CartPole-v1 games, seed 0, threshold 50 (the notebook's other defaults)."""
    return generate(GenerationConfig(games=SMALL_GAMES, seed=0))


@pytest.fixture(scope="session")
def small_dataset(small_generation: GenerationResult) -> Dataset:
    """The kept games of :func:`small_generation` (treat as read-only: it is shared)."""
    dataset = small_generation.dataset
    assert dataset.n_games >= 20, "the shared dataset should hold a few dozen games"
    return dataset


@pytest.fixture(scope="session")
def default_generation() -> GenerationResult:
    """The notebook's run: 10,000 random CartPole-v1 games, threshold 50, seed 0."""
    return generate(GenerationConfig(seed=0))


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    from cartpole_core.model import ModelConfig

    return ModelConfig(hidden=TINY_HIDDEN)


@pytest.fixture
def make_tiny_model(tiny_config: ModelConfig) -> Callable[..., keras.Model]:
    """Factory: a fresh, untrained tiny model (CartPole shapes unless told otherwise)."""
    from cartpole_core.model import build_model

    def make(obs_dim: int = 4, n_actions: int = 2, seed: int | None = 0) -> keras.Model:
        return build_model(obs_dim, n_actions, tiny_config, seed=seed)

    return make


@pytest.fixture(scope="session")
def trained_tiny_model(small_dataset: Dataset, tiny_config: ModelConfig) -> keras.Model:
    """A tiny CartPole network trained for one epoch on the small dataset (shared: do not train it further)."""
    from cartpole_core.model import build_model
    from cartpole_core.training import TrainingConfig, train

    model = build_model(small_dataset.obs_dim, small_dataset.n_actions, tiny_config, seed=0)
    train(model, small_dataset, TrainingConfig(epochs=1, seed=0))
    return model


@pytest.fixture(autouse=True, scope="module")
def _ray_stopped_after_each_module() -> Iterator[None]:
    """A module that started Ray (a sweep, chunked generation) stops it when it ends, so the
    next module starts from a clean process (a local Ray, or a test cluster of its own)."""
    yield
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
