"""Evaluation: let a policy play (the notebook's last cell), many games at once.

Every step, one forward pass of the policy covers all games still running; the first
action of a game is chosen from its reset observation (the notebook chose it at random).
Game ``i`` of a seed always starts from the same state and, when actions are drawn at
random, uses its own random stream, so every policy meets exactly the same games and any
single game can be played again on its own (to film it as a GIF).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, replace

import numpy as np
from threadpoolctl import threadpool_limits

from cartpole_core.envs import DEFAULT_ENV_ID, env_info, make_env, score_range
from cartpole_core.errors import UserError, check_range
from cartpole_core.policies import Policy, choose_actions
from cartpole_core.progress import ProgressCallback, report
from cartpole_core.stats import MeanInterval, mean_interval

MAX_EVAL_GAMES = 100_000
#: Games played side by side; a finished game's env is reused for the next one.
MAX_PARALLEL_GAMES = 512


@dataclass(frozen=True)
class EvaluationConfig:
    """Which games to play and how to choose actions; defaults are the notebook's."""

    env_id: str = DEFAULT_ENV_ID
    """Gymnasium environment id."""
    games: int = 10
    """Games to play."""
    goal_steps: int = 500
    """Most steps a game may last."""
    seed: int | None = 0
    """Seed of the games' starts (and of any random choices); None for fresh ones."""
    sample_actions: bool = False
    """Draw each action from the policy's probabilities instead of taking the most
    probable one (random play always draws)."""
    temperature: float = 1.0
    """When drawing actions, sharpen (below 1) or flatten (above 1) the probabilities:
    each is raised to ``1 / temperature`` and renormalised."""
    epsilon: float = 0.0
    """Share of steps on which a uniformly random action replaces the policy's."""
    keep_observations: bool = False
    """Keep every visited observation and action (for maps and disagreement figures)."""

    def validate(self) -> EvaluationConfig:
        env_info(self.env_id)
        check_range("games", self.games, 1, MAX_EVAL_GAMES)
        check_range("goal_steps", self.goal_steps, 1, 100_000)
        check_range("epsilon", self.epsilon, 0.0, 1.0)
        check_range("temperature", self.temperature, 0.01, 100.0)
        if self.seed is not None:
            check_range("seed", self.seed, 0, 2**32 - 1)
        return self

    def game_seeds(self) -> np.ndarray:
        """uint32 (games,): the reset seed of each game; game i's seed does not depend on
        how many games are played."""
        return np.random.SeedSequence(self.seed).generate_state(self.games).astype(np.uint32)


@dataclass(frozen=True)
class EvaluationResult:
    """Scores and choices of one policy over the games of one config."""

    config: EvaluationConfig
    policy_name: str
    scores: np.ndarray
    """float32 (games,): sum of rewards of each game."""
    lengths: np.ndarray
    """int64 (games,): steps each game lasted."""
    choice_counts: np.ndarray
    """int64 (n_actions,): how often each action was taken over all games."""
    seconds: float
    observations: np.ndarray | None = None
    """float32 (steps, obs_dim) with ``keep_observations``: every observation acted on."""
    actions: np.ndarray | None = None
    """int64 (steps,) with ``keep_observations``: the action taken at each of them."""
    observation_games: np.ndarray | None = None
    """int64 (steps,) with ``keep_observations``: the game each observation belongs to."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def median(self) -> float:
        return float(statistics.median(self.scores.tolist()))

    @property
    def min(self) -> float:
        return float(np.min(self.scores))

    @property
    def max(self) -> float:
        return float(np.max(self.scores))

    @property
    def choice_ratios(self) -> np.ndarray:
        """float64 (n_actions,): share of steps on which each action was taken."""
        total = self.choice_counts.sum()
        return self.choice_counts / total if total else np.zeros_like(self.choice_counts, dtype=float)

    @property
    def best_game(self) -> int:
        return int(np.argmax(self.scores))

    @property
    def worst_game(self) -> int:
        return int(np.argmin(self.scores))

    @property
    def steps_played(self) -> int:
        return int(self.lengths.sum())


@dataclass(frozen=True)
class Episode:
    """One game played again on its own, with its frames."""

    game: int
    """Index of the game in its evaluation config."""
    score: float
    length: int
    frames: list[np.ndarray]
    """uint8 (height, width, 3) RGB frames, every ``frame_stride``-th step."""
    frame_stride: int


@dataclass
class _Played:
    scores: np.ndarray
    lengths: np.ndarray
    choice_counts: np.ndarray
    obs_log: list[np.ndarray]
    action_log: list[np.ndarray]
    game_log: list[np.ndarray]
    frames: list[np.ndarray]


def _play(
    policy: Policy,
    config: EvaluationConfig,
    games: np.ndarray,
    frame_stride: int = 0,
    progress: ProgressCallback | None = None,
) -> _Played:
    """Play the games whose indices are in ``games`` (into ``config.game_seeds()``)."""
    info = env_info(config.env_id)
    if policy.n_actions != info.n_actions:
        raise UserError(
            f"The policy chooses among {policy.n_actions} actions but {info.env_id} has "
            f"{info.n_actions}: use a model trained on {info.env_id}."
        )
    obs_dim = getattr(policy, "obs_dim", info.obs_dim)
    if obs_dim != info.obs_dim:
        raise UserError(
            f"The policy reads {obs_dim} observation values but {info.env_id} gives {info.obs_dim}: "
            f"use a model trained on {info.env_id}."
        )
    all_seeds = config.game_seeds()
    n = games.size
    sample = config.sample_actions or not policy.deterministic
    rngs = [np.random.default_rng([int(all_seeds[g]), 1]) for g in games]
    slots = min(n, MAX_PARALLEL_GAMES)
    envs = [make_env(info.env_id, config.goal_steps, render=frame_stride > 0) for _ in range(slots)]
    obs = np.zeros((slots, info.obs_dim), dtype=np.float32)
    slot_game = np.full(slots, -1, dtype=np.int64)  # position in `games` played in each slot
    scores = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)
    counts = np.zeros(info.n_actions, dtype=np.int64)
    played = _Played(scores, lengths, counts, [], [], [], [])
    next_game = 0
    finished = 0

    def start(slot: int) -> None:
        nonlocal next_game
        slot_game[slot] = next_game
        obs[slot], _ = envs[slot].reset(seed=int(all_seeds[games[next_game]]))
        if frame_stride:
            played.frames.append(np.asarray(envs[slot].render(), dtype=np.uint8))
        next_game += 1

    # One BLAS thread: the per-step batches are small, and on a busy machine (a shared
    # server, training in another session) two BLAS threads fighting over two cores made a
    # step up to 40x slower; alone, the second thread gains only about 25 %.
    with threadpool_limits(limits=1, user_api="blas"):
        try:
            for slot in range(slots):
                start(slot)
            while finished < n:
                live = np.flatnonzero(slot_game >= 0)
                probs = policy.probabilities(obs[live])
                uniforms = None
                if sample:
                    uniforms = np.array([rngs[slot_game[s]].random() for s in live])
                    if config.temperature != 1.0:
                        probs = np.power(probs, 1.0 / config.temperature)
                        probs /= probs.sum(axis=1, keepdims=True)
                actions = choose_actions(probs, not sample, uniforms)
                if config.epsilon > 0:
                    for j, s in enumerate(live):
                        rng = rngs[slot_game[s]]
                        if rng.random() < config.epsilon:
                            actions[j] = rng.integers(info.n_actions)
                counts += np.bincount(actions, minlength=info.n_actions)
                if config.keep_observations:
                    played.obs_log.append(obs[live].copy())
                    played.action_log.append(actions.copy())
                    played.game_log.append(games[slot_game[live]])
                for j, s in enumerate(live):
                    g = slot_game[s]
                    o, reward, terminated, truncated, _ = envs[s].step(int(actions[j]))
                    obs[s] = o
                    scores[g] += float(reward)
                    lengths[g] += 1
                    if frame_stride and lengths[g] % frame_stride == 0:
                        played.frames.append(np.asarray(envs[s].render(), dtype=np.uint8))
                    if terminated or truncated:
                        finished += 1
                        slot_game[s] = -1
                        if next_game < n:
                            start(int(s))
                        if finished % max(1, n // 50) == 0:
                            report(progress, finished / n, f"{finished:,} of {n:,} games played")
        finally:
            for env in envs:
                env.close()
    return played


def evaluate(
    policy: Policy, config: EvaluationConfig = EvaluationConfig(), progress: ProgressCallback | None = None
) -> EvaluationResult:
    """Play ``config.games`` games with ``policy`` and return every game's score.

    The same config (integer seed) gives the same games to every policy.
    """
    config.validate()
    started = time.perf_counter()
    played = _play(policy, config, np.arange(config.games), progress=progress)
    keep = config.keep_observations
    info = env_info(config.env_id)
    return EvaluationResult(
        config=config,
        policy_name=policy.name,
        scores=played.scores.astype(np.float32),
        lengths=played.lengths,
        choice_counts=played.choice_counts,
        seconds=time.perf_counter() - started,
        observations=(
            np.concatenate(played.obs_log)
            if keep and played.obs_log
            else np.zeros((0, info.obs_dim), np.float32)
            if keep
            else None
        ),
        actions=np.concatenate(played.action_log) if keep and played.action_log else None,
        observation_games=np.concatenate(played.game_log) if keep and played.game_log else None,
    )


def record_episode(policy: Policy, config: EvaluationConfig, game: int = 0, frame_stride: int = 1) -> Episode:
    """Play game ``game`` of ``config`` again, alone, keeping every ``frame_stride``-th frame.

    It is the same game (same start, same random stream) as in :func:`evaluate`; with
    argmax play, a near-tie between two actions may rarely resolve differently on a batch
    of one, so the episode reports its own score.
    """
    config.validate()
    if not 0 <= game < config.games:
        raise UserError(f"There is no game {game}: choose one from 0 to {config.games - 1}.")
    check_range("frame_stride", frame_stride, 1, 1000)
    played = _play(policy, config, np.array([game]), frame_stride=frame_stride)
    return Episode(
        game=game,
        score=float(played.scores[0]),
        length=int(played.lengths[0]),
        frames=played.frames,
        frame_stride=frame_stride,
    )


@dataclass(frozen=True)
class Comparison:
    """One policy over several seeds of the same games as the others."""

    name: str
    seed_means: np.ndarray
    """float64 (seeds,): mean score over each seed's games."""
    choice_ratios: np.ndarray
    """float64 (n_actions,): share of steps on each action, over all seeds."""
    score_range: tuple[float, float] = (-math.inf, math.inf)
    """Lowest and highest score a game can have (the interval never leaves it)."""

    @property
    def mean(self) -> float:
        return float(self.seed_means.mean())

    @property
    def interval(self) -> MeanInterval:
        """The mean over seeds with its 95 % Student t interval, cut at the score range."""
        return mean_interval([float(m) for m in self.seed_means], self.score_range)

    @property
    def ci95(self) -> tuple[float, float]:
        """95 % confidence interval of the mean over seeds (a point for one seed)."""
        interval = self.interval
        return interval.low, interval.high


def compare(
    policies: dict[str, Policy],
    config: EvaluationConfig,
    seeds: list[int],
    progress: ProgressCallback | None = None,
) -> list[Comparison]:
    """Play ``config.games`` games per seed with every policy — the same games for all —
    and summarise each policy's mean score per seed."""
    if not policies or not seeds:
        raise UserError("Choose at least one player and one seed to compare.")
    results = []
    total, done = len(policies) * len(seeds), 0
    for name, policy in policies.items():
        means, counts = [], None
        for seed in seeds:
            r = evaluate(policy, replace(config, seed=int(seed)))
            means.append(r.mean)
            counts = r.choice_counts if counts is None else counts + r.choice_counts
            done += 1
            report(progress, done / total, f"{name}, seed {seed}")
        assert counts is not None
        ratios = counts / max(int(counts.sum()), 1)
        results.append(Comparison(name, np.array(means), ratios, score_range(config.env_id, config.goal_steps)))
    return results
