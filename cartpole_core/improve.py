"""Generations: keep the network's own best games and retrain, until the game is mastered.

The notebook stops at a network imitating lucky random play. Here the same idea repeats —
the deep cross-entropy method: each generation the network plays a batch of games drawing
its actions from its own probabilities (a little exploration), the best games become the
training data, and the network is fine-tuned on them.

Three things keep it from losing ground (each measured over many seeds, see BENCHMARKS.md):

- **The best games seen so far** are the training data (``data="best"``): this
  generation's best games compete with those kept before, so the data never gets worse
  when one generation plays badly. (Not on LunarLander, whose profile says ``"replace"``:
  a network's scores there vary so much from game to game that the best games ever played
  are mostly lucky ones.)
- **Elitism**: a generation whose network measures clearly worse than the best so far is
  not built on; the next generation starts again from the best network (``fallback``),
  unless the player that collects the games got clearly better. Each generation's record
  says which network it started from and why (:data:`START_REASONS`).
- **Both players are measured**, on the same fixed evaluation games every generation: the
  most probable action (greedy) and an action drawn from the probabilities (sampled). The
  env's profile says which one counts for its target (:attr:`EnvDefaults.player`): on
  LunarLander the greedy player can be far worse than the sampled one the method trains.

Games are picked by score; where the score says nothing (MountainCar: every game that misses
the flag scores -200) the env's profile names an observation whose highest value breaks
ties (the farthest car position reached). The score reported stays the env's own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cartpole_core import __version__
from cartpole_core.dataset import Dataset, concat_datasets
from cartpole_core.envs import DEFAULT_ENV_ID, PLAYERS, env_defaults, env_info
from cartpole_core.errors import UserError, bounds, check_range, within
from cartpole_core.evaluate import EvaluationConfig, EvaluationResult, evaluate, evaluate_players
from cartpole_core.generate import MAX_GAMES, MAX_GOAL_STEPS, GenerationConfig, generate
from cartpole_core.model import ModelConfig, build_model
from cartpole_core.network import Network
from cartpole_core.policies import ModelPolicy
from cartpole_core.progress import Progress, ProgressCallback, report
from cartpole_core.training import TrainingConfig, TrainingResult, train

if TYPE_CHECKING:  # TensorFlow comes with the first network built, not with the settings
    import keras

DATA_MODES = ("best", "replace", "add")
#: Why a generation started from the network it did (:attr:`GenerationRecord.start_reason`),
#: judged on the previous generation against the best so far (the counted player's evaluation
#: games): ``best`` it was the best so far; ``noise`` below the best, by less than twice the
#: standard error of the difference; ``collecting`` clearly below, but the player that collects
#: the games got clearly better than the best network's (the method's own progress, which a
#: fall back would undo); ``fallback`` clearly below: the best network again; ``kept`` clearly
#: below, with ``fallback`` off.
START_REASONS = ("best", "noise", "collecting", "fallback", "kept")
#: Offsets that keep the play, evaluation and confirmation games of one seed apart.
_EVAL_SEED_OFFSET, _CONFIRM_SEED_OFFSET = 1_000_003, 2_000_003


@dataclass(frozen=True)
class ImproveConfig:
    """Settings of a generations run. The defaults were chosen on CartPole-v1 seeds 100-109
    and judged on others (BENCHMARKS.md, stage 11)."""

    env_id: str = DEFAULT_ENV_ID
    """Gymnasium environment id."""
    goal_steps: int = field(default=500, metadata=within(1, MAX_GOAL_STEPS))
    """Most steps a game may last."""
    first_games: int = field(default=2_000, metadata=within(1, MAX_GAMES))
    """Random games played for generation 0, kept by the env's rule (CartPole: score ≥ 50)."""
    first_epochs: int = field(default=1, metadata=within(1, 100))
    """Epochs of generation 0's training on the kept random games."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the network built for generation 0 (ReLU; no dropout). Smaller
    than the notebook's: it learns the game as well here, and plays and trains far faster."""
    learning_rate: float = field(default=1e-3, metadata=within(*bounds(ModelConfig, "learning_rate")))
    """Adam's step size for the network built for generation 0."""
    max_generations: int = field(default=50, metadata=within(0, 1000))
    """Generations to run at most."""
    games_per_generation: int = field(default=200, metadata=within(1, 100_000))
    """Games the network plays each generation to find its best ones."""
    keep_top: float = field(default=0.2, metadata=within(0.001, 1.0))
    """Share of each generation's games kept as training data (the best ones)."""
    min_score: float | None = None
    """If set, keep only games scoring at least this (on top of ``keep_top``)."""
    data: str = "best"
    """``best``: the best games seen so far (this generation's and those kept before, as many
    as one generation keeps); ``replace``: this generation's best only; ``add``: all kept so far."""
    fallback: bool = True
    """A generation whose network measures clearly below the best so far (by more than twice
    the standard error of the difference) hands the best network, not its own, to the next."""
    epochs: int = field(default=2, metadata=within(1, 100))
    """Fine-tuning epochs per generation."""
    batch_size: int = field(default=128, metadata=within(*bounds(TrainingConfig, "batch_size")))
    """Rows per gradient step."""
    sample_actions: bool = True
    """While collecting games, draw actions from the network's probabilities."""
    temperature: float = field(default=1.0, metadata=within(0.01, 100.0))
    """While collecting games, sharpen (below 1) the network's probabilities before drawing."""
    epsilon: float = field(default=0.0, metadata=within(0.0, 1.0))
    """While collecting games, share of steps taking a random action instead."""
    player: str = "greedy"
    """Which player's evaluation mean counts for the target and for the best network:
    ``greedy`` (most probable action) or ``sampled`` (drawn from the probabilities). Both are
    measured and reported."""
    progress_dim: int | None = None
    """Observation dimension whose highest value in a game breaks ties between equal scores
    when picking the best games (None: the score alone)."""
    play_steps: int | None = field(default=None, metadata=within(1, 100_000))
    """Most steps of the games played to collect data (None: ``goal_steps``, the env's own).
    Longer games let a weak player reach a far goal while collecting (MountainCar), while
    every measurement keeps the env's own limit."""
    eval_games: int = field(default=100, metadata=within(1, 100_000))
    """Games each generation is measured on (fixed seeds, both players)."""
    target_mean: float | None = 500.0
    """Stop once the counted player's evaluation mean reaches this (None: run every generation)."""
    confirm_games: int = field(default=1000, metadata=within(0, 100_000))
    """Fresh games the final model plays to confirm its level (0 to skip)."""
    max_seconds: float = field(default=600.0, metadata=within(1.0, 86_400.0))
    """Stop starting new generations after this long."""
    seed: int = field(default=0, metadata=within(0, 2**31 - 1))
    """Seed of everything: the first random games, the network, the games played."""

    @classmethod
    def for_env(cls, env_id: str, **changes: Any) -> ImproveConfig:
        """Settings that fit ``env_id`` out of the box, from its profile
        (:func:`cartpole_core.envs.env_defaults`): its step limit, its target (the score
        Gymnasium counts as solved; 500 on CartPole-v1, the most there is), the player that
        counts and the tie-breaking observation, with ``changes`` on top. The first random
        games use the env's own threshold or share (:meth:`GenerationConfig.for_env`)."""
        d = env_defaults(env_id)
        fitted = cls(
            env_id=env_info(env_id).env_id,
            goal_steps=d.goal_steps,
            target_mean=d.target,
            player=d.player,
            progress_dim=d.progress_dim,
            play_steps=d.play_steps,
            data=d.data,
        )
        return replace(fitted, **changes)

    def evaluation_config(self, player: str | None = None) -> EvaluationConfig:
        """The fixed games every generation is measured on, by ``player`` (default: the one
        that counts)."""
        return EvaluationConfig(
            env_id=self.env_id,
            games=self.eval_games,
            goal_steps=self.goal_steps,
            seed=self.seed + _EVAL_SEED_OFFSET,
            sample_actions=(player or self.player) == "sampled",
        )

    def model_config(self) -> ModelConfig:
        """The network built for generation 0."""
        return ModelConfig(hidden=tuple(self.hidden), dropout=0.0, learning_rate=self.learning_rate)

    def validate(self) -> ImproveConfig:
        info = env_info(self.env_id)
        self.model_config().validate()
        for name in ("first_games", "first_epochs", "goal_steps", "max_generations", "games_per_generation",
                     "keep_top", "epochs", "batch_size", "epsilon", "temperature", "play_steps", "eval_games",
                     "confirm_games", "max_seconds", "seed"):  # fmt: skip
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), *bounds(self, name))
        if self.data not in DATA_MODES:
            raise UserError(f"data must be one of {', '.join(DATA_MODES)}; got {self.data!r}.")
        if self.player not in PLAYERS:
            raise UserError(f"player must be 'greedy' or 'sampled', got {self.player!r}.")
        if self.progress_dim is not None and not 0 <= self.progress_dim < info.obs_dim:
            raise UserError(
                f"progress_dim must name one of {info.env_id}'s {info.obs_dim} observation values "
                f"(0 to {info.obs_dim - 1}), or be None to pick games by score alone."
            )
        return self


@dataclass(frozen=True)
class GenerationRecord:
    """What one generation did and how well its network played."""

    generation: int
    """0 is the notebook's network trained on random games; 1, 2, ... are improvements."""
    mean: float
    """Evaluation mean of the player that counts (``player``)."""
    median: float
    min: float
    max: float
    samples: int
    """Training rows this generation's network was trained on."""
    kept_games: int
    accuracy: float | None
    """Final training accuracy of this generation's fit."""
    seconds: float
    """Wall time of this generation."""
    elapsed: float
    """Seconds since the run started, at the end of this generation."""
    kept_counts: dict[float, int] = field(default_factory=dict)
    """Kept games per score (the Counter of this generation's data)."""
    play_mean: float = 0.0
    """Mean score of the games played (with exploration) to find the best ones."""
    env_steps: int = 0
    """Env steps played to collect this generation's data (generation 0: the random games;
    the evaluation games not counted)."""
    player: str = "greedy"
    """Which player ``mean``, ``median``, ``min`` and ``max`` are of."""
    greedy_mean: float = math.nan
    """Evaluation mean of the most probable action."""
    sampled_mean: float = math.nan
    """Evaluation mean of actions drawn from the probabilities (the same games)."""
    started_from: int = -1
    """The generation whose network this one was trained from (-1: none, generation 0)."""
    start_reason: str = ""
    """Why it started from that network, one of :data:`START_REASONS` ("": generation 0)."""
    best_before: int = -1
    """The best generation so far when this one started (-1: generation 0)."""


@dataclass(frozen=True)
class ImproveResult:
    config: ImproveConfig
    generations: list[GenerationRecord]
    model: keras.Model | Network
    """The best network found (highest evaluation mean of the player that counts; the later
    one on a tie); a Network when the result comes from :mod:`cartpole_core.jobs`."""
    best_generation: int
    best_mean: float
    confirmation: EvaluationResult | None
    """The best network on ``confirm_games`` fresh games, by the player that counts (None
    when skipped)."""
    seconds: float
    stopped_early: bool = False
    """True when the progress callback asked to stop."""

    @property
    def confirm_mean(self) -> float | None:
        return None if self.confirmation is None else self.confirmation.mean


def games_dataset(result: EvaluationResult, keep: np.ndarray, metadata: dict) -> Dataset:
    """The rows of games ``keep`` (indices) of an evaluation run with ``keep_observations``."""
    assert result.observations is not None and result.actions is not None and result.observation_games is not None
    keep = np.sort(np.asarray(keep, dtype=np.int64))  # games keep their playing order
    new_id = np.full(result.config.games, -1, dtype=np.int64)
    new_id[keep] = np.arange(keep.size)
    rows = np.flatnonzero(new_id[result.observation_games] >= 0)
    rows = rows[np.argsort(result.observation_games[rows], kind="stable")]  # group by game, keep step order
    return Dataset(
        observations=result.observations[rows],
        actions=result.actions[rows],
        game_ids=new_id[result.observation_games[rows]],
        game_scores=result.scores[keep].astype(np.float32),
        metadata=metadata,
    )


def select_best(
    scores: np.ndarray, keep_top: float, min_score: float | None, progress: np.ndarray | None = None
) -> np.ndarray:
    """Indices of the best ``keep_top`` share of games (at least one), best first: by score,
    ties broken by ``progress`` (float (games,), higher is better) when given; optionally
    only those scoring ``min_score`` or more."""
    secondary = np.zeros_like(scores) if progress is None else progress
    order = np.lexsort((-np.asarray(secondary, np.float64), -np.asarray(scores, np.float64)))
    n = max(1, int(round(keep_top * scores.size)))
    best = order[:n]
    if min_score is not None:
        best = best[scores[best] >= min_score]
    return best


@dataclass(frozen=True)
class _Level:
    """How well one player played a generation's evaluation games."""

    mean: float
    se: float
    """Standard error of the mean."""

    @classmethod
    def of(cls, scores: np.ndarray) -> _Level:
        se = float(np.std(scores, ddof=1) / math.sqrt(scores.size)) if scores.size > 1 else 0.0
        return cls(float(np.mean(scores)), se)

    def clearly_below(self, other: _Level) -> bool:
        """Lower than ``other`` by more than twice the standard error of the difference."""
        return self.mean < other.mean - 2 * math.hypot(self.se, other.se)


def start_reason(
    last: dict[str, _Level], top: dict[str, _Level], is_best: bool, player: str, collecting: str, fallback: bool
) -> str:
    """Whether the next generation builds on the last network or on the best one, and why
    (one of :data:`START_REASONS`; ``fallback`` alone means the best one). ``last`` and
    ``top``: each player's level of the last and of the best network; ``is_best``: the last is
    the best; ``player`` counts, ``collecting`` plays the games the data comes from.

    Elitism: build on the best network, not on one clearly worse (by more than twice the
    standard error of the difference: a noisy game's evaluation wobbles without any loss of
    ground), unless the player that collects the games got clearly better: that is the method
    making progress, which a fall back would undo."""
    if is_best:
        return "best"
    if not last[player].clearly_below(top[player]):
        return "noise"
    if top[collecting].clearly_below(last[collecting]):
        return "collecting"
    return "fallback" if fallback else "kept"


@dataclass(frozen=True)
class ElitePool:
    """The best games seen so far, with each game's tie-breaking progress."""

    games: Dataset
    progress: np.ndarray
    """float64 (games,): the tie-breaking value of each game (zeros without one)."""

    def merged(self, new: Dataset, new_progress: np.ndarray, size: int) -> ElitePool:
        """The best ``size`` games of this pool and ``new`` (on a tie, the newer game)."""
        both = concat_datasets([new, self.games], dict(new.metadata))
        progress = np.concatenate([new_progress, self.progress])
        best = select_best(both.game_scores, 1.0, None, progress)[:size]
        return ElitePool(both.subset_games(best), progress[np.sort(best)])


def improve(
    config: ImproveConfig = ImproveConfig(),
    model: keras.Model | None = None,
    progress: ProgressCallback | None = None,
    on_generation: Callable[[GenerationRecord, keras.Model], None] | None = None,
) -> ImproveResult:
    """Run generations from ``model`` (or, if None, from a first network of
    ``config.hidden`` trained the notebook's way on ``first_games`` random games for
    ``first_epochs``, which counts as generation 0).

    ``on_generation`` is called after each generation with its record and the network as
    that generation left it (e.g. to keep a copy of its weights).

    ``progress`` is called often; its metrics carry ``generation`` and, after each
    generation, that generation's evaluation ``mean``. Returning True stops after the
    current step and keeps the best network so far.

    The games of an env without a native vector env are played in chunks on Ray when there
    are many (:func:`cartpole_core.evaluate.evaluate`'s ``parallel=None``); CartPole's are
    played in one vector env here.
    """
    config.validate()
    info = env_info(config.env_id)
    started = time.perf_counter()
    meta = {"env_id": info.env_id, "obs_dim": info.obs_dim, "n_actions": info.n_actions, "library_version": __version__}
    records: list[GenerationRecord] = []
    stop = [False]
    span = config.max_generations + 1

    def sub(generation: int, what: str) -> ProgressCallback:
        def forward(p: Progress) -> bool:
            asked = report(
                progress,
                (generation + p.fraction) / span,
                f"generation {generation}: {what} ({p.message})",
                generation=generation,
                **p.metrics,
            )
            stop[0] = stop[0] or asked
            return asked

        return forward

    def measure(
        generation: int, data: Dataset, fit: TrainingResult | None, began: float, **extra: Any
    ) -> dict[str, _Level]:
        """Evaluate both players and record the generation; each player's level."""
        both = evaluate_players(ModelPolicy(model), config.evaluation_config(), sub(generation, "measuring"),
                                parallel=None)  # fmt: skip
        counted, means = both[config.player], {p: r.mean for p, r in both.items()}
        records.append(
            GenerationRecord(
                generation=generation,
                mean=counted.mean,
                median=counted.median,
                min=counted.min,
                max=counted.max,
                samples=len(data),
                kept_games=data.n_games,
                accuracy=None if fit is None else fit.final_accuracy,
                seconds=time.perf_counter() - began,
                elapsed=time.perf_counter() - started,
                kept_counts={
                    float(k): int(v) for k, v in zip(*np.unique(data.game_scores, return_counts=True), strict=True)
                },
                play_mean=float(extra.get("play_mean", 0.0)),
                env_steps=int(extra.get("env_steps", 0)),
                player=config.player,
                greedy_mean=means["greedy"],
                sampled_mean=means["sampled"],
                started_from=int(extra.get("started_from", -1)),
                start_reason=str(extra.get("start_reason", "")),
                best_before=int(extra.get("best_before", -1)),
            )
        )
        report(
            progress,
            (generation + 1) / span,
            f"generation {generation}: mean {counted.mean:.1f} ({config.player})",
            generation=generation,
            mean=counted.mean,
        )
        return {p: _Level.of(r.scores) for p, r in both.items()}

    # Generation 0: a network trained the notebook's way on random games, or the one we were given.
    began = time.perf_counter()
    if model is None:
        first = GenerationConfig.for_env(
            info.env_id, games=config.first_games, goal_steps=config.goal_steps, seed=config.seed
        )
        first = replace(first, progress_dim=config.progress_dim)  # ranked as the generations rank their games
        gen = generate(first)
        data, first_steps = gen.require_accepted(), gen.env_steps
        model = build_model(info.obs_dim, info.n_actions, config.model_config(), seed=config.seed)
        fit: TrainingResult | None = train(
            model,
            data,
            TrainingConfig(epochs=config.first_epochs, batch_size=config.batch_size, seed=config.seed),
            sub(0, "training"),
        )
    else:
        first_steps = 0
        data, fit = Dataset(np.zeros((0, info.obs_dim), np.float32), np.zeros(0, np.int64),
                            np.zeros(0, np.int64), np.zeros(0, np.float32), meta), None  # fmt: skip
    top = last = measure(0, data, fit, began, env_steps=first_steps)  # the best network's levels, the last one's
    best_mean = top[config.player].mean
    collecting = "sampled" if config.sample_actions else "greedy"
    best_weights, best_generation, last_generation = model.get_weights(), 0, 0
    if on_generation is not None:
        on_generation(records[-1], model)

    pool: ElitePool | None = None
    collected: list[Dataset] = []
    for generation in range(1, config.max_generations + 1):
        reached = config.target_mean is not None and best_mean >= config.target_mean
        if reached or stop[0] or time.perf_counter() - started > config.max_seconds:
            break
        began = time.perf_counter()
        started_from, best_before = last_generation, best_generation
        why = start_reason(last, top, last_generation == best_generation, config.player, collecting, config.fallback)
        if why == "fallback":  # elitism (see start_reason)
            model.set_weights(best_weights)
            started_from = best_generation
        play_cfg = replace(
            config.evaluation_config(collecting),
            games=config.games_per_generation,
            seed=config.seed * 7919 + generation,
            goal_steps=config.play_steps or config.goal_steps,
            temperature=config.temperature,
            epsilon=config.epsilon,
            keep_observations=True,
        )
        played = evaluate(ModelPolicy(model), play_cfg, sub(generation, "playing"), parallel=None)
        assert played.peaks is not None
        tie = None if config.progress_dim is None else played.peaks[:, config.progress_dim].astype(np.float64)
        best = select_best(played.scores, config.keep_top, config.min_score, tie)
        if best.size == 0:
            raise UserError(
                f"No game of generation {generation} scored at least {config.min_score:g} "
                f"(best {played.max:g}): lower min_score."
            )
        kept = games_dataset(played, best, dict(meta, source=f"generation {generation}"))
        kept_tie = np.zeros(best.size) if tie is None else tie[np.sort(best)]
        if config.data == "best":
            pool = ElitePool(kept, kept_tie) if pool is None else pool.merged(kept, kept_tie, best.size)
            data = replace(pool.games, metadata=dict(meta, source="the best games so far"))
        elif config.data == "add":
            collected.append(kept)
            data = concat_datasets(collected, dict(meta, source="generations"))
        else:
            data = kept
        fit = train(
            model,
            data,
            TrainingConfig(epochs=config.epochs, batch_size=config.batch_size, seed=config.seed + generation),
            sub(generation, "training"),
        )
        last = measure(generation, data, fit, began, play_mean=played.mean, env_steps=played.steps_played,
                       started_from=started_from, start_reason=why, best_before=best_before)  # fmt: skip
        last_generation = generation
        if last[config.player].mean >= best_mean:
            top, best_mean, best_weights, best_generation = (
                last,
                last[config.player].mean,
                model.get_weights(),
                generation,
            )
        if on_generation is not None:
            on_generation(records[-1], model)
        if stop[0]:
            break

    model.set_weights(best_weights)
    confirmation = None
    if config.confirm_games and not stop[0]:
        confirm_cfg = replace(config.evaluation_config(), games=config.confirm_games,
                              seed=config.seed + _CONFIRM_SEED_OFFSET)  # fmt: skip
        confirmation = evaluate(ModelPolicy(model), confirm_cfg, sub(len(records), "confirming on fresh games"),
                                parallel=None)  # fmt: skip
    return ImproveResult(
        config=config,
        generations=records,
        model=model,
        best_generation=best_generation,
        best_mean=best_mean,
        confirmation=confirmation,
        seconds=time.perf_counter() - started,
        stopped_early=stop[0],
    )
