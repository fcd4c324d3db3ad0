"""The notebook end to end: generate -> train -> play, with random play beside it.

Used by ``python -m cartpole_core run`` and by the dashboard's one-click button, so both
report the same figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cartpole_core.errors import within
from cartpole_core.evaluate import EvaluationConfig, EvaluationResult, evaluate
from cartpole_core.generate import GenerationConfig, GenerationResult, generate
from cartpole_core.policies import RandomPolicy
from cartpole_core.progress import ProgressCallback, report

if TYPE_CHECKING:
    import keras

    from cartpole_core.model import ModelConfig
    from cartpole_core.network import Network
    from cartpole_core.training import TrainingConfig, TrainingResult

#: Share of the progress bar each stage takes (training dominates the time).
_WEIGHTS = {"generate": 0.05, "train": 0.85, "evaluate": 0.10}


@dataclass(frozen=True)
class NotebookConfig:
    """Every stage's settings; the env and seed of generation are used throughout."""

    generation: GenerationConfig = GenerationConfig()
    model: ModelConfig | None = None
    """None: the notebook's network."""
    training: TrainingConfig | None = None
    """None: the notebook's training settings (with the generation's seed)."""
    evaluation_games: int = field(default=10, metadata=within(1, 100_000))
    """Games the trained network (and random play) plays (the notebook: 10)."""


@dataclass(frozen=True)
class NotebookResult:
    generation: GenerationResult
    model: keras.Model | Network
    """A Network when the result comes from :mod:`cartpole_core.jobs`."""
    training: TrainingResult
    evaluation: EvaluationResult
    random_evaluation: EvaluationResult
    """Random play on the very same games."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per stage: ``generate``, ``train``, ``evaluate``, ``total``."""


def run_notebook(config: NotebookConfig = NotebookConfig(), progress: ProgressCallback | None = None) -> NotebookResult:
    """Run the notebook's pipeline; stops with a :class:`UserError` if no game is kept."""
    started = time.perf_counter()
    gen_cfg = config.generation.validate()
    seconds: dict[str, float] = {}

    def stage(name: str, before: float) -> ProgressCallback:
        weight = _WEIGHTS[name]
        return lambda p: report(progress, before + weight * p.fraction, f"{name}: {p.message}", **p.metrics)

    gen = generate(gen_cfg, stage("generate", 0.0))
    seconds["generate"] = gen.seconds
    dataset = gen.require_accepted()

    from cartpole_core.model import ModelConfig, build_model
    from cartpole_core.policies import ModelPolicy
    from cartpole_core.training import TrainingConfig, train

    model_cfg = config.model or ModelConfig()
    train_cfg = config.training or TrainingConfig(seed=gen_cfg.seed)
    model = build_model(dataset.obs_dim, dataset.n_actions, model_cfg, seed=gen_cfg.seed)
    training = train(model, dataset, train_cfg, stage("train", 0.05))
    seconds["train"] = training.seconds

    eval_cfg = EvaluationConfig(
        env_id=gen_cfg.env_id, games=config.evaluation_games, goal_steps=gen_cfg.goal_steps, seed=gen_cfg.seed
    )
    evaluation = evaluate(ModelPolicy(model), eval_cfg, stage("evaluate", 0.90))
    random_eval = evaluate(RandomPolicy(dataset.n_actions), eval_cfg)
    seconds["evaluate"] = evaluation.seconds
    seconds["total"] = time.perf_counter() - started
    report(progress, 1.0, "done")
    return NotebookResult(gen, model, training, evaluation, random_eval, seconds)
