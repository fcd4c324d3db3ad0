"""Sweeps: which settings work, measured over several seeds, each trial a Ray task.

A sweep varies one to three settings of the notebook's pipeline (or of ``improve``) over a
grid of values, and runs every (values, seed) pair as one *trial*: the whole pipeline with
those settings and that seed, ending in an evaluation. Trials run as Ray tasks
(:func:`cartpole_core.cluster.run_tasks`), on a local Ray or a cluster, and come back as
they finish; a trial that fails is reported with its error and the others go on; a Stop
cancels what has not finished and keeps what has. The table is the same whatever the number
of workers or nodes: a trial depends only on its settings and seed.

Plain Ray tasks rather than Ray Tune: a grid of independent trials needs nothing Tune adds
(schedulers, checkpoints, a results folder per trial, its extra dependencies), and a task
per trial keeps one engine for sweeps and chunked generation alike.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from cartpole_core.envs import env_info, score_range
from cartpole_core.errors import UserError, bounds, check_range
from cartpole_core.generate import GenerationConfig
from cartpole_core.improve import ImproveConfig
from cartpole_core.model import ModelConfig
from cartpole_core.pipeline import NotebookConfig
from cartpole_core.progress import ProgressCallback, report
from cartpole_core.stats import mean_interval
from cartpole_core.training import TrainingConfig

if TYPE_CHECKING:
    from cartpole_core.cluster import TaskOutcome

#: Most settings varied at once, and most trials in one sweep (the dashboard has its own limit).
MAX_VARIED, MAX_TRIALS = 3, 1000
#: Settings a sweep never varies: the env is the base's, seeds are their own axis, and
#: TensorBoard folders would collide between trials.
_FIXED = {"env_id", "seed", "tensorboard_dir"}

Base = NotebookConfig | ImproveConfig
_CONFIG_TYPES = {c.__name__: c for c in (GenerationConfig, ModelConfig, TrainingConfig, NotebookConfig, ImproveConfig)}


@dataclass(frozen=True)
class SweepConfig:
    """A grid of settings × seeds over the notebook's pipeline or ``improve``."""

    base: Base = NotebookConfig(evaluation_games=100)
    """Settings every trial starts from: a :class:`NotebookConfig` (generate → train →
    evaluate) or an :class:`ImproveConfig` (generations)."""
    vary: tuple[tuple[str, tuple[Any, ...]], ...] = (("score_requirement", (40.0, 50.0, 60.0, 70.0)),)
    """One to three (setting, values) pairs, by config field name (``score_requirement``,
    ``epochs``, ``hidden`` …); every combination of values is tried."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Each combination runs once per seed (the seed of its games, network and shuffling)."""

    @property
    def mode(self) -> str:
        """``"notebook"`` or ``"improve"``."""
        return "improve" if isinstance(self.base, ImproveConfig) else "notebook"

    @property
    def env_id(self) -> str:
        return self.base.env_id if isinstance(self.base, ImproveConfig) else self.base.generation.env_id

    @property
    def goal_steps(self) -> int:
        return self.base.goal_steps if isinstance(self.base, ImproveConfig) else self.base.generation.goal_steps

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the varied values, first setting slowest."""
        names = [name for name, _ in self.vary]
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*(v for _, v in self.vary))]

    def jobs(self) -> list[TrialJob]:
        """One job per (combination, seed), combination by combination."""
        return [
            TrialJob(index, settings, seed, trial_config(self.base, settings, seed))
            for index, (settings, seed) in enumerate(itertools.product(self.grid(), self.seeds))
        ]

    def validate(self, max_trials: int = MAX_TRIALS) -> SweepConfig:
        """Raise :class:`UserError` naming the fix for anything a sweep cannot run; return self."""
        env_info(self.env_id)
        if not self.vary or len(self.vary) > MAX_VARIED:
            raise UserError(f"Vary 1 to {MAX_VARIED} settings (e.g. score_requirement=40,50,60), got {len(self.vary)}.")
        names = [name for name, _ in self.vary]
        if len(set(names)) != len(names):
            raise UserError(f"Each setting may be varied once; {names} repeats one: list all its values together.")
        allowed = sweepable(self.base)
        for name, values in self.vary:
            if name not in allowed:
                raise UserError(
                    f"{name!r} is not a setting of the {self.mode} pipeline: vary one of {', '.join(sorted(allowed))}."
                )
            if not values:
                raise UserError(f"{name} has no values: give at least one (e.g. {name}=a,b).")
        if not self.seeds:
            raise UserError("Give at least one seed (e.g. --seeds 0-4).")
        for seed in self.seeds:
            check_range("seed", seed, *bounds(ImproveConfig, "seed"))
        trials = math.prod(len(v) for _, v in self.vary) * len(self.seeds)
        if trials > max_trials:
            raise UserError(
                f"This sweep has {trials} trials (values × seeds); at most {max_trials} are allowed: "
                "vary fewer values or use fewer seeds."
            )
        for settings in self.grid():  # every value must make a valid trial
            trial_config(self.base, settings, self.seeds[0])
        return self


def sweepable(base: Base) -> dict[str, type]:
    """Settings a sweep over ``base`` may vary, by config field name, with their types."""
    sections: list[type] = [ImproveConfig] if isinstance(base, ImproveConfig) else [
        GenerationConfig, ModelConfig, TrainingConfig, NotebookConfig
    ]  # fmt: skip
    found: dict[str, type] = {}
    for section in sections:
        hints = typing.get_type_hints(section, localns=_CONFIG_TYPES)
        for f in fields(section):
            kind = _plain_type(hints[f.name])
            if f.name not in _FIXED and kind is not None:
                found[f.name] = kind
    return found


def _plain_type(hint: Any) -> type | None:
    """int, float, bool, str or tuple (hidden layers) for a field's type hint; None for the
    rest (nested configs)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    hint = args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) else hint
    if typing.get_origin(hint) is tuple:
        return tuple
    return hint if hint in (int, float, bool, str) else None


def parse_value(base: Base, name: str, text: str) -> Any:
    """One value of setting ``name`` from text (``"50"``, ``"0.2"``, ``"64x64"`` for hidden
    layers, ``"true"``); a :class:`UserError` naming the setting for anything else."""
    kind = sweepable(base).get(name)
    if kind is None:
        raise UserError(
            f"{name!r} is not a setting of this pipeline: vary one of {', '.join(sorted(sweepable(base)))}."
        )
    text = text.strip()
    try:
        if kind is tuple:
            return tuple(int(part) for part in text.lower().replace("-", "x").split("x") if part)
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if kind is int:
            return int(text)
        if kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
        return text
    except ValueError:
        example = {tuple: "64x64 (layer sizes joined by x)", int: "a whole number", float: "a number"}.get(kind, "")
        raise UserError(f"{name}={text!r} is not a valid value; {name} takes {example or kind.__name__}.") from None


def trial_config(base: Base, settings: dict[str, Any], seed: int) -> Base:
    """``base`` with ``settings`` applied and ``seed`` as the seed of every stage; a
    :class:`UserError` for a value out of range."""
    if isinstance(base, ImproveConfig):
        return replace(base, seed=seed, **settings).validate()

    def part(section: type, current: Any) -> Any:
        own = {k: v for k, v in settings.items() if k in {f.name for f in fields(section)}}
        return replace(current, **own) if own else current

    generation = replace(part(GenerationConfig, base.generation), seed=seed).validate()
    model = part(ModelConfig, base.model or ModelConfig()).validate()
    training = replace(part(TrainingConfig, base.training or TrainingConfig()), seed=seed).validate()
    config = NotebookConfig(generation, model, training, settings.get("evaluation_games", base.evaluation_games))
    check_range("evaluation_games", config.evaluation_games, *bounds(NotebookConfig, "evaluation_games"))
    return config


@dataclass(frozen=True)
class TrialJob:
    """What one Ray task gets: plain settings, nothing else."""

    index: int
    settings: dict[str, Any]
    """The varied settings' values for this trial."""
    seed: int
    config: Base
    """The full settings of this trial (``base`` with ``settings`` and ``seed`` applied)."""


@dataclass(frozen=True)
class TrialScores:
    """What a trial measured (a Ray task's return value)."""

    accepted: int
    """Games kept to train on (the random games kept; with improve, the best generation's)."""
    accuracy: float | None
    """Final training accuracy."""
    mean: float
    """Mean evaluation score (the trained network; with improve, the best generation's)."""
    median: float
    seconds: float
    generations: int = 0
    """With improve: generations run."""


def run_trial(job: TrialJob) -> TrialScores:
    """Run one trial in this process (a Ray worker calls this)."""
    started = time.perf_counter()
    if isinstance(job.config, ImproveConfig):
        from cartpole_core.improve import improve

        result = improve(job.config)
        best = result.generations[[g.generation for g in result.generations].index(result.best_generation)]
        return TrialScores(
            best.kept_games,
            best.accuracy,
            best.mean,
            best.median,
            time.perf_counter() - started,
            len(result.generations),
        )
    from cartpole_core.pipeline import run_notebook

    notebook = run_notebook(job.config)
    return TrialScores(
        notebook.generation.accepted,
        notebook.training.final_accuracy,
        notebook.evaluation.mean,
        notebook.evaluation.median,
        time.perf_counter() - started,
    )


@dataclass(frozen=True)
class Trial:
    """One row of a sweep's table."""

    index: int
    settings: dict[str, Any]
    seed: int
    status: str
    """``"done"``, ``"failed"`` (see ``error``) or ``"cancelled"`` (a Stop came first)."""
    scores: TrialScores | None = None
    node: str = ""
    """Short id of the Ray node that ran it."""
    error: str = ""

    @property
    def mean(self) -> float | None:
        return None if self.scores is None else self.scores.mean


@dataclass(frozen=True)
class SettingSummary:
    """One combination of values over the seeds that finished."""

    settings: dict[str, Any]
    mean: float
    """Mean over seeds of the trials' mean scores."""
    ci_low: float
    ci_high: float
    """95 % confidence interval of that mean (Student t, cut at the env's score range)."""
    n: int
    """Seeds that finished."""
    clipped: bool = False
    """True when the interval was cut at the score range."""


@dataclass(frozen=True)
class SweepResult:
    config: SweepConfig
    trials: list[Trial]
    """Every trial, in grid order (combination by combination, seed by seed)."""
    summary: list[SettingSummary]
    """Each combination with at least one finished trial, in grid order."""
    best: SettingSummary | None
    """The combination with the highest mean (the first on a tie); None if none finished."""
    workers: int
    """CPUs the engine had for trials."""
    nodes: int
    """Ray nodes alive when the sweep ended."""
    seconds: float
    stopped: bool = False

    @property
    def nodes_used(self) -> list[str]:
        """The nodes that ran a trial, each once."""
        return list(dict.fromkeys(t.node for t in self.trials if t.node))


def summarise(config: SweepConfig, trials: list[Trial]) -> list[SettingSummary]:
    """Per combination, the mean over its finished seeds and its 95 % interval."""
    bounds = score_range(config.env_id, config.goal_steps)
    out = []
    for settings in config.grid():
        means = [t.mean for t in trials if t.settings == settings and t.mean is not None]
        if means:
            m = mean_interval(means, bounds)
            out.append(SettingSummary(settings, m.mean, m.low, m.high, m.n, m.clipped))
    return out


def sweep(
    config: SweepConfig,
    progress: ProgressCallback | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    max_trials: int = MAX_TRIALS,
) -> SweepResult:
    """Run every trial of ``config`` as a Ray task and summarise them.

    ``on_trial`` is called with each trial as it finishes (or fails). ``progress`` is called
    a few times a second; returning True cancels the trials not yet finished and returns
    what finished (``stopped=True``, the cancelled trials listed as such).
    """
    from cartpole_core.cluster import run_tasks

    config.validate(max_trials)
    started = time.perf_counter()
    jobs = config.jobs()
    rows: dict[int, Trial] = {}
    stop = [False]
    latest = [""]  # the last finished trial, said in every progress report

    def record(outcome: TaskOutcome) -> None:
        job = jobs[outcome.index]
        if outcome.cancelled:
            trial = Trial(job.index, job.settings, job.seed, "cancelled")
        elif outcome.error is not None:
            error = outcome.error
            message = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
            trial = Trial(job.index, job.settings, job.seed, "failed", error=message.splitlines()[0][:300])
        else:
            trial = Trial(job.index, job.settings, job.seed, "done", outcome.result, outcome.node[:8])
        rows[job.index] = trial
        if on_trial is not None:
            on_trial(trial)
        what = f"mean {trial.mean:.1f}" if trial.mean is not None else trial.status
        latest[0] = f" (last: {settings_text(job.settings)}, seed {job.seed}: {what})"

    def should_stop() -> bool:
        # Asked every poll, not only when a trial ends, so a Stop (or a closed tab) is heard at once.
        done = len(rows)
        asked = report(progress, done / len(jobs), f"{done} of {len(jobs)} trials finished{latest[0]}")
        stop[0] = stop[0] or asked
        return stop[0]

    with contextlib.closing(run_tasks(run_trial, jobs, should_stop=should_stop)) as outcomes:
        for outcome in outcomes:
            record(outcome)

    trials = [rows[i] for i in sorted(rows)]
    done = sum(t.status == "done" for t in trials)
    report(progress, 1.0, f"{done} of {len(jobs)} trials done" + (" (stopped)" if stop[0] else ""))
    return _result(config, trials, time.perf_counter() - started, stop[0])


def _result(config: SweepConfig, trials: list[Trial], seconds: float, stopped: bool) -> SweepResult:
    """Trials summarised, with where they ran."""
    from cartpole_core.cluster import engine_info

    summary = summarise(config, trials)
    engine = engine_info()
    return SweepResult(
        config=config,
        trials=trials,
        summary=summary,
        best=max(summary, key=lambda s: s.mean, default=None),  # max keeps the first on a tie
        workers=engine.cpus,
        nodes=engine.nodes,
        seconds=seconds,
        stopped=stopped,
    )


def stopped_result(config: SweepConfig, finished: list[Trial], seconds: float) -> SweepResult:
    """The result of a sweep interrupted from outside (a dashboard's Stop unwinds
    :func:`sweep` before it returns): the trials that finished, every other one listed as
    cancelled, summarised as :func:`sweep` would have (``stopped=True``)."""
    done = {t.index: t for t in finished}
    trials = [done.get(job.index) or Trial(job.index, job.settings, job.seed, "cancelled") for job in config.jobs()]
    return _result(config, trials, seconds, stopped=True)


def value_text(value: Any) -> str:
    """A setting's value as people write it (``64x64`` for layers, ``50`` for 50.0)."""
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


#: Each sweepable setting in words, as the dashboard's fields name it (the command line and
#: the library use the field names).
SETTING_WORDS = {
    "games": "random games",
    "goal_steps": "most steps a game",
    "score_requirement": "score requirement",
    "keep_top": "best share kept",
    "progress_dim": "tie-break observation",
    "hidden": "hidden layers",
    "dropout": "dropout",
    "learning_rate": "learning rate",
    "epochs": "epochs",
    "batch_size": "batch size",
    "validation_split": "validation share",
    "evaluation_games": "evaluation games",
    "first_games": "random games first",
    "first_epochs": "their epochs",
    "max_generations": "most generations",
    "games_per_generation": "games per generation",
    "min_score": "lowest score kept",
    "data": "training data",
    "fallback": "build on the best network",
    "sample_actions": "sample while collecting",
    "temperature": "sampling temperature",
    "epsilon": "random actions",
    "player": "player that counts",
    "play_steps": "steps of collected games",
    "eval_games": "evaluation games",
    "target_mean": "stop at mean score",
    "confirm_games": "confirmation games",
    "max_seconds": "most seconds",
}


def setting_words(name: str) -> str:
    """A setting's name in words (``"score requirement"`` for ``score_requirement``)."""
    return SETTING_WORDS.get(name, name.replace("_", " "))


def settings_text(settings: dict[str, Any], words: bool = False) -> str:
    """``"score_requirement=50, epochs=4"``; with ``words``, ``"score requirement 50, epochs 4"``."""
    if words:
        return ", ".join(f"{setting_words(k)} {value_text(v)}" for k, v in settings.items())
    return ", ".join(f"{k}={value_text(v)}" for k, v in settings.items())


def parse_vary(base: Base, text: str) -> tuple[str, tuple[Any, ...]]:
    """``"score_requirement=40,50,60"`` -> ``("score_requirement", (40.0, 50.0, 60.0))``;
    a :class:`UserError` naming the fix for anything else."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UserError(f"{text!r} needs the form setting=value,value (e.g. score_requirement=40,50,60).")
    parts = [v for v in values.split(",") if v.strip()]
    if not parts:
        raise UserError(f"{name}= has no values: give at least one (e.g. {name}=a,b).")
    return name, tuple(dict.fromkeys(parse_value(base, name, v) for v in parts))


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0-4"`` -> ``(0, 1, 2, 3, 4)``; ``"0,2,7"`` and ``"0-2,7"`` work too."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            low, dash, high = part.partition("-")
            first, last = int(low), int(high) if dash else int(low)
            if last < first:
                raise ValueError(part)
            seeds.extend(range(first, last + 1))
    except ValueError:
        raise UserError(f"Seeds {text!r} are not a list of seeds: write e.g. 0-4 or 0,1,2.") from None
    if not seeds:
        raise UserError("No seeds given: give at least one seed, e.g. 0-4.")
    if len(seeds) > MAX_TRIALS:
        raise UserError(f"Seeds {text!r} give {len(seeds)} seeds; a sweep runs at most {MAX_TRIALS} trials.")
    return tuple(dict.fromkeys(seeds))
