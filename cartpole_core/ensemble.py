"""Ensemble: several weak networks vote (the notebook's "several weak models give a
stronger, more correct signal").

Each member is the same network trained with its own seed on its own bootstrap resample
of the games (drawn with replacement). The ensemble is a policy: ``soft`` voting averages
the members' probabilities; ``hard`` voting counts each member's argmax as one vote (ties
go to the action with the higher mean probability).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from cartpole_core.dataset import Dataset
from cartpole_core.errors import UserError, bounds, check_range, within
from cartpole_core.evaluate import EvaluationConfig, EvaluationResult, evaluate
from cartpole_core.model import ModelConfig, build_model
from cartpole_core.network import Network
from cartpole_core.policies import ModelPolicy, Policy
from cartpole_core.progress import Progress, ProgressCallback, report
from cartpole_core.training import TrainingConfig, TrainingResult, train

if TYPE_CHECKING:  # TensorFlow comes with the first network built, not with the settings
    import keras

VOTES = ("soft", "hard")
MAX_MEMBERS = 50


@dataclass(frozen=True)
class EnsembleConfig:
    """How many members, how they are trained and how they vote."""

    members: int = field(default=5, metadata=within(1, MAX_MEMBERS))
    """Networks in the ensemble."""
    vote: str = "soft"
    """``soft``: average probabilities; ``hard``: majority of argmax."""
    bootstrap: bool = True
    """Train each member on a resample of the games drawn with replacement."""
    epochs: int = field(default=1, metadata=within(1, 1000))
    """Epochs per member (weak members: 1 by default)."""
    seed: int = field(default=0, metadata=within(0, 2**31 - 1 - MAX_MEMBERS))
    """Member i uses seed ``seed + i`` for its weights, resample and shuffling."""

    def validate(self) -> EnsembleConfig:
        for name in ("members", "epochs", "seed"):
            check_range(name, getattr(self, name), *bounds(self, name))
        if self.vote not in VOTES:
            raise UserError(f"vote must be 'soft' or 'hard', got {self.vote!r}.")
        return self


class EnsemblePolicy:
    """Members vote on every batch of observations."""

    deterministic = True

    def __init__(self, members: list[Policy], vote: str = "soft", name: str = "ensemble"):
        if not members:
            raise UserError("An ensemble needs at least one member.")
        if vote not in VOTES:
            raise UserError(f"vote must be 'soft' or 'hard', got {vote!r}.")
        if len({m.n_actions for m in members}) != 1:
            raise UserError("All members of an ensemble must play the same game (same number of actions).")
        self.members = members
        self.vote = vote
        self.name = name
        self.n_actions = members[0].n_actions

    def member_probabilities(self, observations: np.ndarray) -> np.ndarray:
        """float32 (members, n, n_actions)."""
        return np.stack([m.probabilities(observations) for m in self.members])

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        each = self.member_probabilities(observations)
        mean = each.mean(axis=0)
        if self.vote == "soft":
            return mean.astype(np.float32)
        votes = (each.argmax(axis=2)[:, :, None] == np.arange(self.n_actions)).sum(axis=0)  # (n, n_actions)
        shares = votes / len(self.members)
        return (shares + 1e-3 * mean).astype(np.float32) / (1 + 1e-3)  # tie-break by mean

    def disagreement(self, observations: np.ndarray) -> float:
        """Share of observations on which not all members pick the same action."""
        if observations.shape[0] == 0:
            return 0.0
        picks = self.member_probabilities(observations).argmax(axis=2)
        return float((picks != picks[0]).any(axis=0).mean())


@dataclass(frozen=True)
class EnsembleResult:
    """The trained members and how their training went."""

    config: EnsembleConfig
    models: list[keras.Model | Network] = field(default_factory=list)
    """The members' Keras models (Networks when the result comes from :mod:`cartpole_core.jobs`)."""
    histories: list[TrainingResult] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False

    def policy(self, vote: str | None = None) -> EnsemblePolicy:
        members: list[Policy] = [ModelPolicy(m, name=f"member {i + 1}") for i, m in enumerate(self.models)]
        return EnsemblePolicy(members, vote or self.config.vote)


def bootstrap_games(dataset: Dataset, seed: int) -> Dataset:
    """A resample of the dataset's games, drawn with replacement (same number of games)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(dataset.n_games, size=dataset.n_games)
    order = np.argsort(dataset.game_ids, kind="stable")
    starts = np.searchsorted(dataset.game_ids[order], np.arange(dataset.n_games))
    ends = np.searchsorted(dataset.game_ids[order], np.arange(dataset.n_games), side="right")
    rows = np.concatenate([order[starts[g] : ends[g]] for g in picks])
    new_ids = np.repeat(np.arange(picks.size), ends[picks] - starts[picks])
    return Dataset(
        observations=dataset.observations[rows],
        actions=dataset.actions[rows],
        game_ids=new_ids,
        game_scores=dataset.game_scores[picks],
        metadata=dict(dataset.metadata, source="bootstrap resample"),
    )


def train_ensemble(
    dataset: Dataset,
    model_config: ModelConfig = ModelConfig(),
    training_config: TrainingConfig = TrainingConfig(epochs=1),
    config: EnsembleConfig = EnsembleConfig(),
    progress: ProgressCallback | None = None,
) -> EnsembleResult:
    """Train ``config.members`` networks; ``config.epochs`` overrides the training epochs.

    Stopping (progress returns True) keeps the members finished so far (at least one).
    """
    config.validate()
    if len(dataset) == 0:
        raise UserError("The dataset has no rows to learn from: generate one in which some games are kept.")
    started = time.perf_counter()
    models: list[keras.Model] = []
    histories: list[TrainingResult] = []
    stopped = False
    for i in range(config.members):
        seed = config.seed + i
        data = bootstrap_games(dataset, seed) if config.bootstrap else dataset
        model = build_model(dataset.obs_dim, dataset.n_actions, model_config, seed=seed)

        def member_progress(p: Progress, i: int = i) -> bool:
            fraction = (i + p.fraction) / config.members
            return report(progress, fraction, f"member {i + 1}/{config.members}: {p.message}", **p.metrics)

        tc = TrainingConfig(
            epochs=config.epochs,
            batch_size=training_config.batch_size,
            validation_split=training_config.validation_split,
            seed=seed,
        )
        result = train(model, data, tc, member_progress)
        if result.epochs_completed == 0 and models:
            stopped = True
            break
        models.append(model)
        histories.append(result)
        if result.stopped_early:
            stopped = True
            break
    return EnsembleResult(config, models, histories, time.perf_counter() - started, stopped)


@dataclass(frozen=True)
class EnsembleEvaluation:
    """The ensemble and each member on the same games."""

    ensemble: EvaluationResult
    members: list[EvaluationResult]
    disagreement: float
    """Share of the states the ensemble visited on which the members did not all agree."""


def evaluate_ensemble(
    policy: EnsemblePolicy, config: EvaluationConfig, progress: ProgressCallback | None = None
) -> EnsembleEvaluation:
    """Play the same games with the ensemble and with each member alone."""
    parts = len(policy.members) + 1

    def part(k: int) -> ProgressCallback:
        return lambda p: report(progress, (k + p.fraction) / parts, p.message)

    ens = evaluate(policy, replace(config, keep_observations=True), part(0))
    members = [evaluate(m, config, part(k + 1)) for k, m in enumerate(policy.members)]
    assert ens.observations is not None
    return EnsembleEvaluation(ens, members, policy.disagreement(ens.observations))
