"""CartPole Lab's engine: play random games, keep the good ones, train a network to imitate
them, and let it play. One module per stage; see the README's architecture section.

The package is its own public face: ``import cartpole_core as cl`` gives every stage, its
settings and its result by name, as the dashboard's "Show the code" uses them::

    import cartpole_core as cl

    generation = cl.generate(cl.GenerationConfig(games=10_000, seed=0))
    model = cl.build_model(generation.dataset.obs_dim, generation.dataset.n_actions, cl.ModelConfig(), seed=0)
    training = cl.train(model, generation.dataset, cl.TrainingConfig(epochs=4, seed=0))
    played = cl.evaluate(cl.ModelPolicy(model), cl.EvaluationConfig(games=100, seed=0))
    print(played.mean)

Importing it is cheap: each name is looked up in its stage's module the first time it is
used, and TensorFlow is imported only by the modules that need it (``model``,
``training``, ``ensemble``, ``improve``; ``policies`` when given a Keras model); Ray only
when a job runs on it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

#: Public name -> the stage module that defines it (``cartpole_core.<module>``).
_PUBLIC: dict[str, str] = {
    # environments
    "env_info": "envs",
    "make_env": "envs",
    # generation of random games
    "GenerationConfig": "generate",
    "GenerationResult": "generate",
    "generate": "generate",
    # dataset
    "Dataset": "dataset",
    "concat_datasets": "dataset",
    # model
    "ModelConfig": "model",
    "Network": "network",
    "build_model": "model",
    # training
    "TrainingConfig": "training",
    "TrainingResult": "training",
    "train": "training",
    # players and evaluation
    "RandomPolicy": "policies",
    "ModelPolicy": "policies",
    "probability_grid": "policies",
    "EvaluationConfig": "evaluate",
    "EvaluationResult": "evaluate",
    "evaluate": "evaluate",
    "compare": "evaluate",
    "record_episode": "evaluate",
    # ensemble
    "EnsembleConfig": "ensemble",
    "EnsembleResult": "ensemble",
    "EnsemblePolicy": "ensemble",
    "train_ensemble": "ensemble",
    "evaluate_ensemble": "ensemble",
    # generations of self-improvement
    "ImproveConfig": "improve",
    "ImproveResult": "improve",
    "improve": "improve",
    # the reference notebook end to end
    "NotebookConfig": "pipeline",
    "NotebookResult": "pipeline",
    "run_notebook": "pipeline",
    # sweeps
    "SweepConfig": "sweep",
    "SweepResult": "sweep",
    "sweep": "sweep",
    # GIFs
    "frames_to_gif": "gif",
    # files
    "save_dataset": "storage",
    "load_dataset": "storage",
    "save_model": "storage",
    "load_model": "storage",
    # bad input
    "UserError": "errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    """``cl.<name>``: the public name from its stage's module, imported on first use."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'cartpole_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cartpole_core.{module}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


class _PublicFace(types.ModuleType):
    """The package's module type: four stages share their module's name (``generate``,
    ``evaluate``, ``improve``, ``sweep``), and Python's import sets ``cartpole_core.<name>`` to
    the submodule when it first loads it. Here that name stays the function; the module is
    still ``sys.modules["cartpole_core.<name>"]`` and every ``from cartpole_core.<name>
    import ...`` works as before."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _PUBLIC.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _PublicFace
