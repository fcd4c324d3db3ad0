"""Evaluation: let a policy play (the notebook's last cell), many games at once.

Every step, one forward pass of the policy covers all games still running; the first
action of a game is chosen from its reset observation (the notebook chose it at random).
Game ``i`` of a seed always starts from the same state and, when actions are drawn at
random, uses its own random stream, so every policy meets exactly the same games and any
single game can be played again on its own (to film it as a GIF).

How the games are stepped depends on the env, never the games played: an env with vectorised code (CartPole's
own, ours for Acrobot-v1 and MountainCar-v0 in :mod:`cartpole_core.vector_envs`) steps every
game in one NumPy call, each game started from the
state its own reset seed gives, so the games are exactly those played one env at a time;
any other env (LunarLander) steps one Gymnasium env per game, and many games are split into chunks of
:data:`GAMES_PER_CHUNK` played on Ray workers side by side (same scores, game for game).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from cartpole_core.envs import DEFAULT_ENV_ID, env_defaults, env_info, make_env, make_vector_env, score_range
from cartpole_core.errors import UserError, bounds, check_range, within
from cartpole_core.policies import Policy, choose_actions
from cartpole_core.progress import ProgressCallback, report
from cartpole_core.stats import MeanInterval, mean_interval
from cartpole_core.vector_envs import observe

MAX_EVAL_GAMES = 100_000
#: Games played side by side; a finished game's env is reused for the next one.
MAX_PARALLEL_GAMES = 512
#: Games per Ray task for envs without a native vector env (when ``parallel`` allows it).
GAMES_PER_CHUNK = 25
#: Uniform numbers drawn at once from a game's random stream when sampling actions.
_UNIFORM_BLOCK = 64


@dataclass(frozen=True)
class EvaluationConfig:
    """Which games to play and how to choose actions; defaults are the notebook's."""

    env_id: str = DEFAULT_ENV_ID
    """Gymnasium environment id."""
    games: int = field(default=10, metadata=within(1, MAX_EVAL_GAMES))
    """Games to play."""
    goal_steps: int = field(default=500, metadata=within(1, 100_000))
    """Most steps a game may last."""
    seed: int | None = field(default=0, metadata=within(0, 2**32 - 1))
    """Seed of the games' starts (and of any random choices); None for fresh ones."""
    sample_actions: bool = False
    """Draw each action from the policy's probabilities instead of taking the most
    probable one (random play always draws)."""
    temperature: float = field(default=1.0, metadata=within(0.01, 100.0))
    """When drawing actions, sharpen (below 1) or flatten (above 1) the probabilities:
    each is raised to ``1 / temperature`` and renormalised."""
    epsilon: float = field(default=0.0, metadata=within(0.0, 1.0))
    """Share of steps on which a uniformly random action replaces the policy's."""
    keep_observations: bool = False
    """Keep every visited observation and action (for maps and disagreement figures)."""

    @classmethod
    def for_env(cls, env_id: str, **changes: Any) -> EvaluationConfig:
        """Games of ``env_id`` as the env defines them (its own step limit, from
        :func:`cartpole_core.envs.env_defaults`), with ``changes`` on top."""
        return replace(cls(env_id=env_info(env_id).env_id, goal_steps=env_defaults(env_id).goal_steps), **changes)

    def validate(self) -> EvaluationConfig:
        env_info(self.env_id)
        check_range("games", self.games, *bounds(self, "games"))
        check_range("goal_steps", self.goal_steps, *bounds(self, "goal_steps"))
        check_range("epsilon", self.epsilon, *bounds(self, "epsilon"))
        check_range("temperature", self.temperature, *bounds(self, "temperature"))
        if self.seed is not None:
            check_range("seed", self.seed, *bounds(self, "seed"))
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
    """int64 (steps,) with ``keep_observations``: the game each observation belongs to
    (observations are grouped by game, in game order, each game's in step order)."""
    peaks: np.ndarray | None = None
    """float32 (games, obs_dim): the highest value each observation dimension reached in
    each game, its last observation included (MountainCar: how far right the car got)."""

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
    """What :func:`_play` saw, for the games it was given (positions in ``games``)."""

    scores: np.ndarray
    lengths: np.ndarray
    choice_counts: np.ndarray
    """int64 (games, n_actions): how often each game took each action."""
    peaks: np.ndarray
    obs_log: list[np.ndarray]
    action_log: list[np.ndarray]
    game_log: list[np.ndarray]
    """Game indices (into the config's games, not positions) of each logged step."""
    frames: list[np.ndarray]

    def record(
        self, observations: np.ndarray, playing: np.ndarray, actions: np.ndarray, games: np.ndarray, keep: bool
    ) -> None:
        """One step of the games at positions ``playing``: what they saw (float32 (k, obs_dim))
        and the actions taken (int64 (k,)); ``games`` maps positions to game indices."""
        self.peaks[playing] = np.maximum(self.peaks[playing], observations)
        self.choice_counts[playing, actions] += 1
        if keep:
            self.obs_log.append(observations.copy())
            self.action_log.append(actions.copy())
            self.game_log.append(games[playing])


class _Chooser:
    """Turns the policy's probabilities into actions, each game drawing from its own random
    stream (so a game's actions never depend on which other games play beside it).

    ``sample`` (bool per game) says which games draw their action from the probabilities; the
    others take the most probable one. Without epsilon, each game's uniform numbers are drawn
    :data:`_UNIFORM_BLOCK` at a time from its stream (the same numbers as one at a time)."""

    def __init__(
        self, policy: Policy, config: EvaluationConfig, seeds: np.ndarray, n_actions: int, sample: np.ndarray | None
    ):
        self.policy, self.config, self.n_actions = policy, config, n_actions
        everyone = config.sample_actions or not policy.deterministic
        self.sample = np.full(seeds.size, everyone) if sample is None else (np.asarray(sample, bool) | everyone)
        self.rngs = [np.random.default_rng([int(s), 1]) for s in seeds]
        self.uniforms = np.zeros((seeds.size, _UNIFORM_BLOCK))
        self.used = np.full(seeds.size, _UNIFORM_BLOCK)  # each game's row is drawn when first needed

    def _uniforms(self, games: np.ndarray) -> np.ndarray:
        if self.config.epsilon > 0:  # epsilon's draws interleave with these: one at a time
            return np.array([self.rngs[g].random() for g in games])
        for g in games[self.used[games] == _UNIFORM_BLOCK]:
            self.uniforms[g], self.used[g] = self.rngs[g].random(_UNIFORM_BLOCK), 0
        drawn = self.uniforms[games, self.used[games]]
        self.used[games] += 1
        return drawn

    def __call__(self, observations: np.ndarray, playing: np.ndarray) -> np.ndarray:
        """int64 (n,): actions for ``observations`` float32 (n, obs_dim) of games at positions ``playing``."""
        probs = self.policy.probabilities(observations)
        actions = probs.argmax(axis=1).astype(np.int64)
        drawing = np.flatnonzero(self.sample[playing])
        if drawing.size:
            p = probs[drawing]
            if self.config.temperature != 1.0:
                p = np.power(p, 1.0 / self.config.temperature)
                p /= p.sum(axis=1, keepdims=True)
            actions[drawing] = choose_actions(p, False, self._uniforms(playing[drawing]))
        if self.config.epsilon > 0:
            for j, g in enumerate(playing):
                rng = self.rngs[g]
                if rng.random() < self.config.epsilon:
                    actions[j] = rng.integers(self.n_actions)
        return actions


def _check_fits(policy: Policy, env_id: str) -> None:
    info = env_info(env_id)
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


def _play(
    policy: Policy,
    config: EvaluationConfig,
    games: np.ndarray,
    frame_stride: int = 0,
    progress: ProgressCallback | None = None,
    sample: np.ndarray | None = None,
) -> _Played:
    """Play the games whose indices are in ``games`` (into ``config.game_seeds()``; one may
    appear twice): all in one native vector env when the env has one (and no frames are
    filmed), else one env per game. ``sample`` (bool per position) draws those games' actions
    from the probabilities whatever ``config.sample_actions`` says."""
    _check_fits(policy, config.env_id)
    # One BLAS thread: the per-step batches are small, and on a busy machine (a shared
    # server, training in another session) two BLAS threads fighting over two cores made a
    # step up to 40x slower; alone, the second thread gains only about 25 %.
    with threadpool_limits(limits=1, user_api="blas"):
        if env_info(config.env_id).has_vector_env and not frame_stride:
            return _play_vector(policy, config, games, progress, sample)
        return _play_envs(policy, config, games, frame_stride, progress, sample)


def _new_played(n: int, obs_dim: int, n_actions: int) -> _Played:
    return _Played(
        np.zeros(n, np.float64), np.zeros(n, np.int64), np.zeros((n, n_actions), np.int64),
        np.full((n, obs_dim), -np.inf, np.float32), [], [], [], [],
    )  # fmt: skip


def _play_vector(
    policy: Policy,
    config: EvaluationConfig,
    games: np.ndarray,
    progress: ProgressCallback | None,
    sample: np.ndarray | None = None,
) -> _Played:
    """Every game in one native vector env, one ``step`` for all of them.

    Each game starts from the state a single env reset with the game's own seed gives (read
    from that env, so the starts are Gymnasium's, exactly); the vector env's physics is the
    single env's, so each game is the one :func:`_play_envs` plays, step for step. A game
    that has ended is left alone: the vector env's autoreset games are never read.
    """
    info = env_info(config.env_id)
    n = games.size
    seeds = config.game_seeds()[games]
    choose = _Chooser(policy, config, seeds, info.n_actions, sample)
    played = _new_played(n, info.obs_dim, info.n_actions)
    single = make_env(info.env_id, config.goal_steps)
    starts = []
    try:
        for s in seeds:
            single.reset(seed=int(s))
            starts.append(np.array(single.unwrapped.state, dtype=np.float64))  # type: ignore[attr-defined]
    finally:
        single.close()
    env = make_vector_env(info.env_id, n, config.goal_steps)
    try:
        env.reset(seed=0)
        core = env.unwrapped
        core.state = np.stack(starts, axis=1)  # type: ignore[attr-defined]  # (state_dim, n), as the vector env keeps it
        obs = observe(core)
        live = np.ones(n, dtype=bool)
        all_actions = np.zeros(n, dtype=np.int64)
        finished, step = 0, 0
        while finished < n:
            playing = np.flatnonzero(live)
            actions = choose(obs[playing], playing)
            played.record(obs[playing], playing, actions, games, config.keep_observations)
            all_actions[playing] = actions
            obs, reward, terminated, truncated, _ = env.step(all_actions)
            played.scores[playing] += reward[playing]
            played.lengths[playing] += 1
            ended = playing[(terminated | truncated)[playing]]
            if ended.size:
                played.peaks[ended] = np.maximum(played.peaks[ended], obs[ended])
                live[ended] = False
                finished += ended.size
            step += 1
            if step % 25 == 0 or finished == n:
                report(progress, finished / n, f"{finished:,} of {n:,} games played")
    finally:
        env.close()
    return played


def _play_envs(
    policy: Policy,
    config: EvaluationConfig,
    games: np.ndarray,
    frame_stride: int = 0,
    progress: ProgressCallback | None = None,
    sample: np.ndarray | None = None,
) -> _Played:
    """The games in Gymnasium envs of their own, up to :data:`MAX_PARALLEL_GAMES` side by
    side (a finished game's env starts the next game), one forward pass per step for all."""
    info = env_info(config.env_id)
    all_seeds = config.game_seeds()
    n = games.size
    choose = _Chooser(policy, config, all_seeds[games], info.n_actions, sample)
    slots = min(n, MAX_PARALLEL_GAMES)
    envs = [make_env(info.env_id, config.goal_steps, render=frame_stride > 0) for _ in range(slots)]
    obs = np.zeros((slots, info.obs_dim), dtype=np.float32)
    slot_game = np.full(slots, -1, dtype=np.int64)  # position in `games` played in each slot
    played = _new_played(n, info.obs_dim, info.n_actions)
    scores, lengths, peaks = played.scores, played.lengths, played.peaks
    next_game = 0
    finished = 0

    def start(slot: int) -> None:
        nonlocal next_game
        slot_game[slot] = next_game
        obs[slot], _ = envs[slot].reset(seed=int(all_seeds[games[next_game]]))
        if frame_stride:
            played.frames.append(np.asarray(envs[slot].render(), dtype=np.uint8))
        next_game += 1

    try:
        for slot in range(slots):
            start(slot)
        while finished < n:
            live = np.flatnonzero(slot_game >= 0)
            playing = slot_game[live]
            actions = choose(obs[live], playing)
            played.record(obs[live], playing, actions, games, config.keep_observations)
            for j, s in enumerate(live):
                g = slot_game[s]
                o, reward, terminated, truncated, _ = envs[s].step(int(actions[j]))
                obs[s] = o
                scores[g] += float(reward)
                lengths[g] += 1
                if frame_stride and lengths[g] % frame_stride == 0:
                    played.frames.append(np.asarray(envs[s].render(), dtype=np.uint8))
                if terminated or truncated:
                    peaks[g] = np.maximum(peaks[g], obs[s])
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


@dataclass(frozen=True)
class PlayJob:
    """Some games of one evaluation: plain data, so a Ray worker can play them."""

    policy: Policy
    config: EvaluationConfig
    games: np.ndarray
    """int64 (k,): indices of the games to play (into ``config.game_seeds()``)."""
    sample: np.ndarray | None = None
    """bool (k,): which of them draw their actions (None: as the config says)."""


def play_job(job: PlayJob) -> _Played:
    """Play one :class:`PlayJob` (a Ray task's body; also the in-process path)."""
    return _play(job.policy, job.config, job.games, sample=job.sample)


Piece = tuple[np.ndarray, "np.ndarray | None"]
"""Positions' game indices and, optionally, which of them draw their actions."""


def _pieces(
    config: EvaluationConfig, parallel: bool | None, games: np.ndarray, sample: np.ndarray | None
) -> list[Piece]:
    """The games in pieces: one piece for an env with a native vector env or a few games (or
    ``parallel=False``), else consecutive chunks of :data:`GAMES_PER_CHUNK`."""
    split = not env_info(config.env_id).has_vector_env and games.size > GAMES_PER_CHUNK
    if parallel is False or (parallel is None and not split):
        return [(games, sample)]
    return [
        (games[i : i + GAMES_PER_CHUNK], None if sample is None else sample[i : i + GAMES_PER_CHUNK])
        for i in range(0, games.size, GAMES_PER_CHUNK)
    ]


def _merge(parts: list[_Played]) -> _Played:
    """The pieces of consecutive games as one, observations grouped by game."""
    merged = _Played(
        scores=np.concatenate([p.scores for p in parts]),
        lengths=np.concatenate([p.lengths for p in parts]),
        choice_counts=np.concatenate([p.choice_counts for p in parts]),
        peaks=np.concatenate([p.peaks for p in parts]),
        obs_log=[x for p in parts for x in p.obs_log],
        action_log=[x for p in parts for x in p.action_log],
        game_log=[x for p in parts for x in p.game_log],
        frames=[],
    )
    if merged.game_log:
        game = np.concatenate(merged.game_log)
        order = np.argsort(game, kind="stable")  # group by game, each game's steps in order
        merged.obs_log = [np.concatenate(merged.obs_log)[order]]
        merged.action_log = [np.concatenate(merged.action_log)[order]]
        merged.game_log = [game[order]]
    return merged


def _play_pieces(
    policy: Policy, config: EvaluationConfig, pieces: list[Piece], progress: ProgressCallback | None
) -> _Played:
    """Every piece's games, here (one piece) or as Ray tasks, merged in order."""
    if len(pieces) == 1:
        games, sample = pieces[0]
        return _merge([_play(policy, config, games, progress=progress, sample=sample)])
    from cartpole_core.cluster import run_tasks

    _check_fits(policy, config.env_id)  # here, before any task starts
    parts: list[_Played | None] = [None] * len(pieces)
    total, done = sum(g.size for g, _ in pieces), 0
    for outcome in run_tasks(play_job, [PlayJob(policy, config, g, s) for g, s in pieces]):
        if outcome.error is not None:
            raise outcome.error
        parts[outcome.index] = outcome.result
        done += pieces[outcome.index][0].size
        report(progress, done / total, f"{done:,} of {total:,} games played ({len(pieces)} chunks on Ray)")
    return _merge([p for p in parts if p is not None])


def _result(policy: Policy, config: EvaluationConfig, played: _Played, part: slice, seconds: float) -> EvaluationResult:
    keep = config.keep_observations
    obs_dim = env_info(config.env_id).obs_dim
    return EvaluationResult(
        config=config,
        policy_name=policy.name,
        scores=played.scores[part].astype(np.float32),
        lengths=played.lengths[part],
        choice_counts=played.choice_counts[part].sum(axis=0),
        seconds=seconds,
        observations=(played.obs_log[0] if played.obs_log else np.zeros((0, obs_dim), np.float32)) if keep else None,
        actions=(played.action_log[0] if played.action_log else np.zeros(0, np.int64)) if keep else None,
        observation_games=(played.game_log[0] if played.game_log else np.zeros(0, np.int64)) if keep else None,
        peaks=played.peaks[part],
    )


def evaluate(
    policy: Policy,
    config: EvaluationConfig = EvaluationConfig(),
    progress: ProgressCallback | None = None,
    parallel: bool | None = False,
) -> EvaluationResult:
    """Play ``config.games`` games with ``policy`` and return every game's score.

    The same config (integer seed) gives the same games to every policy. ``parallel=None``
    splits the games of an env without a native vector env into chunks played as Ray tasks
    (:data:`GAMES_PER_CHUNK` each; the policy must pickle, as one made from a
    :class:`~cartpole_core.network.Network` or a Dense Keras stack does); ``False`` plays them
    here. Either way the result is the same, game for game.
    """
    config.validate()
    started = time.perf_counter()
    played = _play_pieces(policy, config, _pieces(config, parallel, np.arange(config.games), None), progress)
    return _result(policy, config, played, slice(None), time.perf_counter() - started)


def evaluate_players(
    policy: Policy,
    config: EvaluationConfig = EvaluationConfig(),
    progress: ProgressCallback | None = None,
    parallel: bool | None = False,
) -> dict[str, EvaluationResult]:
    """The greedy and the sampled player of ``policy`` on the same ``config.games`` games,
    played side by side in one pass (on CartPole, one vector env for both):
    ``{"greedy": …, "sampled": …}``, each equal, game for game, to :func:`evaluate` with
    ``sample_actions`` False and True. Observations are not kept."""
    config = replace(config, sample_actions=False, keep_observations=False).validate()
    n = config.games
    started = time.perf_counter()
    games, sample = np.tile(np.arange(n), 2), np.repeat([False, True], n)
    played = _play_pieces(policy, config, _pieces(config, parallel, games, sample), progress)
    seconds = time.perf_counter() - started
    return {
        "greedy": _result(policy, config, played, slice(0, n), seconds),
        "sampled": _result(policy, replace(config, sample_actions=True), played, slice(n, 2 * n), seconds),
    }


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
