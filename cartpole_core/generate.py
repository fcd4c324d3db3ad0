"""Generation: play many random games and keep the good ones (the notebook's
``initial_population``).

Games run side by side in a vector env: one ``step`` call advances every game, so there is
no Python loop over games. Each env plays game after game through Gymnasium's autoreset,
so every env stays busy; the games played are exactly the first ``games`` games started,
each played to its end. Whether a game is counted depends only on when it started, never on
how long it lasted, so long games are neither cut off nor under-sampled (stopping at the
first ``games`` games to *finish* would favour short ones). The autoreset step (the step
after a game ends, which only resets) is not a transition and is not recorded.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from cartpole_core import __version__
from cartpole_core.dataset import Dataset, empty_dataset
from cartpole_core.envs import DEFAULT_ENV_ID, env_defaults, env_info, make_vector_env
from cartpole_core.errors import UserError, bounds, check_range, within
from cartpole_core.progress import Progress, ProgressCallback, report

#: Games each env of a native vector env plays on average (sets the vector's width):
#: wider vectors need fewer ``step`` calls but each costs more; 8 was fastest here.
GAMES_PER_VECTOR_ENV = 8
#: Steps buffered before they are reduced to real transitions.
_STEP_BUFFER = 128
#: Most envs in a Python-loop ``SyncVectorEnv`` (for envs without their own vector code).
MAX_SYNC_ENVS = 16
#: Games per chunk for envs without a native vector env; chunks run on Ray workers in parallel.
GAMES_PER_CHUNK = 500
#: Most games one call may play (the dashboard sets its own, lower limit).
MAX_GAMES = 1_000_000
#: Observations of rejected games kept for comparison.
REJECTED_SAMPLE = 20_000
MAX_GOAL_STEPS = 100_000


@dataclass(frozen=True)
class GenerationConfig:
    """Settings of one generation run; defaults are the notebook's."""

    env_id: str = DEFAULT_ENV_ID
    """Gymnasium environment id."""
    games: int = field(default=10_000, metadata=within(1, MAX_GAMES))
    """Random games to play (the notebook's ``initial_games``)."""
    goal_steps: int = field(default=500, metadata=within(1, MAX_GOAL_STEPS))
    """Most steps a game may last; a game still going then is cut (truncated)."""
    score_requirement: float = field(default=50.0, metadata=within(-1e9, 1e9))
    """A game is kept when its score (sum of rewards) is at least this (unless ``keep_top``)."""
    seed: int | None = field(default=0, metadata=within(0, 2**32 - 1))
    """Seed of the env starts and the random actions; None for fresh randomness."""
    keep_top: float | None = field(default=None, metadata=within(0.0001, 1.0))
    """Keep the best share of this run's games instead (0.05: the best 5 %), for games whose
    score scale you do not know; ``score_requirement`` is then ignored. Games tied at the
    cut are all kept or all left out, whichever is nearer the share (see :func:`top_share_cut`)."""
    progress_dim: int | None = None
    """With ``keep_top`` (ignored without): rank games by score, then by the highest value this
    observation reached in the game (MountainCar: the car's position, as every game that misses
    the flag scores the same), and keep exactly the best share. None: by score alone."""

    @classmethod
    def for_env(cls, env_id: str, **changes: Any) -> GenerationConfig:
        """Settings that fit ``env_id`` out of the box (:func:`cartpole_core.envs.env_defaults`:
        CartPole keeps the notebook's), with ``changes`` on top."""
        d = env_defaults(env_id)
        fitted = cls(
            env_id=env_info(env_id).env_id,
            games=d.games,
            goal_steps=d.goal_steps,
            keep_top=d.keep_top,
            progress_dim=d.progress_dim,
        )
        if d.score_requirement is not None:
            fitted = replace(fitted, score_requirement=d.score_requirement)
        return replace(fitted, **changes)

    def validate(self) -> GenerationConfig:
        """Raise :class:`UserError` for settings out of range; return self."""
        env_info(self.env_id)
        check_range("games", self.games, *bounds(self, "games"))
        check_range("goal_steps", self.goal_steps, *bounds(self, "goal_steps"))
        if not isinstance(self.games, int) or not isinstance(self.goal_steps, int):
            raise UserError("games and goal_steps must be whole numbers.")
        check_range("score_requirement", self.score_requirement, *bounds(self, "score_requirement"))
        if self.keep_top is not None:
            check_range("keep_top", self.keep_top, *bounds(self, "keep_top"), "0.05 keeps the best 5 % of games.")
        if self.progress_dim is not None:
            obs_dim = env_info(self.env_id).obs_dim
            if not 0 <= self.progress_dim < obs_dim:
                raise UserError(
                    f"progress_dim must name one of the env's {obs_dim} observation values (0 to {obs_dim - 1}), "
                    "or be empty to rank games by score alone."
                )
        if self.seed is not None:
            check_range("seed", self.seed, *bounds(self, "seed"))
        return self

    def keeping(self) -> str:
        """What is kept, in words: ``"score ≥ 50"``, ``"the best 5 % of games"`` or ``"the best
        5 % of games by score, then the highest car position reached"``."""
        if self.keep_top is not None:
            text = f"the best {100 * self.keep_top:g} % of games"
            if self.progress_dim is not None:
                text += f" by score, then the highest {env_info(self.env_id).obs_names[self.progress_dim]} reached"
            return text
        return f"score ≥ {self.score_requirement:g}"


@dataclass(frozen=True)
class GenerationResult:
    """What a generation run produced."""

    config: GenerationConfig
    scores: np.ndarray
    """float32, shape (games,): the score of every game played, kept or not."""
    dataset: Dataset
    """The rows of the kept games (empty when no game was kept)."""
    accepted_counts: dict[float, int]
    """Kept games per score, most common first (the notebook's ``Counter``)."""
    env_steps: int
    """Transitions played (autoreset steps not counted)."""
    seconds: float
    """Wall time of the run."""
    rejected_observations: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    """float32 (m, obs_dim): up to :data:`REJECTED_SAMPLE` observations of games that were
    not kept, evenly spread (to compare what kept and rejected play saw)."""
    threshold: float = math.nan
    """The score a game needed to be kept: ``score_requirement``, or with ``keep_top`` the
    cut this run's scores gave (``inf`` when no game did better than another)."""

    @property
    def games(self) -> int:
        return int(self.scores.shape[0])

    @property
    def accepted(self) -> int:
        return self.dataset.n_games

    @property
    def acceptance_rate(self) -> float:
        """Share of games kept, 0.0 to 1.0."""
        return self.accepted / self.games if self.games else 0.0

    @property
    def accepted_mean(self) -> float | None:
        """Mean score of the kept games; None when none was kept."""
        s = self.dataset.game_scores
        return float(np.mean(s)) if s.size else None

    @property
    def accepted_median(self) -> float | None:
        """Median score of the kept games; None when none was kept."""
        s = self.dataset.game_scores
        return float(statistics.median(s.tolist())) if s.size else None

    def require_accepted(self) -> Dataset:
        """The dataset, or a :class:`UserError` saying why no game was kept and what to change."""
        if self.accepted == 0:
            best = float(self.scores.max()) if self.scores.size else 0.0
            if self.config.keep_top is not None:  # every game scored the same: none is better
                hint = env_defaults(self.config.env_id).hint or (
                    "Give games more steps (goal steps), play more games, or choose another game."
                )
                raise UserError(
                    f"All {self.games:,} random games of {self.config.env_id} scored {best:g}: random play "
                    f"never did better within {self.config.goal_steps:,} steps, so there are no best games "
                    f"to keep. {hint}"
                )
            raise UserError(
                f"No game reached score_requirement {self.config.score_requirement:g} "
                f"(the best of {self.games} games scored {best:g}): lower the score "
                "requirement, keep the best share of games instead (keep_top), or play more games."
            )
        return self.dataset


def top_share_cut(scores: np.ndarray, share: float) -> float:
    """The score a game needs to be among the best ``share`` of ``scores`` (games scoring at
    least it are kept).

    The cut is the score of the ``ceil(share * n)``-th best game. Games tied with it are all
    kept or all left out, whichever leaves the kept share nearer ``share`` (all kept on a
    draw, and always all kept rather than none), so the share actually kept — stated with
    the result — can differ from the one asked. When every game has the same score no game
    is better than another: the cut is ``inf`` and none is kept.
    """
    n = int(scores.size)
    if n == 0:
        return math.inf
    wanted = max(1, math.ceil(share * n - 1e-9))
    best_first = np.sort(scores)[::-1]
    cut = float(best_first[wanted - 1])
    above = int(np.count_nonzero(scores > cut))  # strictly better than the cut
    with_ties = int(np.count_nonzero(scores >= cut))
    if above == 0:
        return math.inf if with_ties == n and n > 1 else cut
    if abs(with_ties - wanted) <= abs(above - wanted):
        return cut
    return float(best_first[above - 1])  # the lowest score strictly above the cut


def _vector_width(games: int, native: bool) -> int:
    if native:
        return max(1, min(games, math.ceil(games / GAMES_PER_VECTOR_ENV)))
    return max(1, min(games, MAX_SYNC_ENVS))


@dataclass(frozen=True)
class ChunkJob:
    """One share of a generation run's games: plain data, so a Ray worker can play it."""

    env_id: str
    games: int
    goal_steps: int
    entropy: int
    """The run's seed entropy (the seed itself, or fresh entropy when the seed is None)."""
    spawn_key: tuple[int, ...]
    """Which share of the run this is: ``()`` for a run played in one piece, ``(i,)`` for chunk i."""


@dataclass(frozen=True)
class PlayedGames:
    """Every transition of some games of random play, in the order they were played."""

    observations: np.ndarray
    """float32 (steps, obs_dim): what the player saw before each action."""
    actions: np.ndarray
    """int64 (steps,): the action taken."""
    games: np.ndarray
    """int64 (steps,): the game of each step, numbered from 0 within these games."""
    scores: np.ndarray
    """float64 (games,): each game's score."""


def chunk_jobs(config: GenerationConfig, entropy: int) -> list[ChunkJob]:
    """How a run's games are split: in one piece for envs with a native vector env, else in
    chunks of :data:`GAMES_PER_CHUNK` games, each seeded by its position. The split depends
    only on the settings, never on how many workers play it, so the data does not either."""
    if env_info(config.env_id).has_vector_env:
        return [ChunkJob(config.env_id, config.games, config.goal_steps, entropy, ())]
    sizes = [min(GAMES_PER_CHUNK, config.games - start) for start in range(0, config.games, GAMES_PER_CHUNK)]
    return [ChunkJob(config.env_id, n, config.goal_steps, entropy, (i,)) for i, n in enumerate(sizes)]


def play_chunk(job: ChunkJob, progress: ProgressCallback | None = None) -> PlayedGames:
    """Play ``job.games`` games of uniformly random actions; the first ``job.games`` games
    started are the ones played, each to its end."""
    info = env_info(job.env_id)
    games = job.games
    width = _vector_width(games, info.has_vector_env)
    seeds = np.random.SeedSequence(job.entropy, spawn_key=job.spawn_key)
    env_seed, action_seed = (int(s.generate_state(1)[0]) for s in seeds.spawn(2))
    rng = np.random.default_rng(action_seed)
    env = make_vector_env(info.env_id, width, job.goal_steps)
    # Steps are written into fixed buffers of _STEP_BUFFER steps; each full buffer is reduced to
    # its real transitions in one vectorised pass, so the per-step work stays small.
    obs_buf = np.empty((_STEP_BUFFER, width, info.obs_dim), dtype=np.float32)
    game_buf = np.empty((_STEP_BUFFER, width), dtype=np.int64)
    move_buf = np.empty((_STEP_BUFFER, width), dtype=bool)
    obs_parts: list[np.ndarray] = []
    action_parts: list[np.ndarray] = []
    game_parts: list[np.ndarray] = []

    def flush(actions: np.ndarray, steps: int) -> None:
        moved = np.flatnonzero(move_buf[:steps].ravel())
        obs_parts.append(obs_buf[:steps].reshape(-1, info.obs_dim).take(moved, axis=0))
        action_parts.append(actions[:steps].ravel().take(moved))
        game_parts.append(game_buf[:steps].ravel().take(moved))

    try:
        obs, _ = env.reset(seed=env_seed)
        game = np.arange(width, dtype=np.int64)  # game id each env plays; -1 once it has no more
        next_game = width  # games 0..width-1 start at once; the next id to hand out
        running = np.zeros(width, dtype=np.float64)  # score of the game in progress
        resetting = np.zeros(width, dtype=bool)  # this step is an autoreset, not a move
        scores = np.zeros(games, dtype=np.float64)
        finished = 0
        actions = rng.integers(info.n_actions, size=(_STEP_BUFFER, width), dtype=np.int64)
        k = 0
        while finished < games:
            moving = (game >= 0) & ~resetting
            obs_buf[k], game_buf[k], move_buf[k] = obs, game, moving
            obs, reward, terminated, truncated, _ = env.step(actions[k])
            running += reward  # an autoreset step scores 0; idle envs are never read
            ended = (terminated | truncated) & moving
            if ended.any():
                which = np.flatnonzero(ended)
                scores[game[which]] = running[which]
                running[which] = 0.0
                finished += which.size
                # The first `games` games started are the ones played, each to its end.
                new_ids = next_game + np.arange(which.size)
                game[which] = np.where(new_ids < games, new_ids, -1)
                next_game = min(next_game + which.size, games)
            resetting = ended
            k += 1
            if k == _STEP_BUFFER:
                flush(actions, k)
                actions, k = rng.integers(info.n_actions, size=(_STEP_BUFFER, width), dtype=np.int64), 0
                report(progress, finished / games, f"{finished:,} of {games:,} games played")
        flush(actions, k)
    finally:
        env.close()
    return PlayedGames(np.concatenate(obs_parts), np.concatenate(action_parts), np.concatenate(game_parts), scores)


def _play_all(
    jobs: list[ChunkJob], parallel: bool | None, progress: ProgressCallback | None, total: int
) -> list[PlayedGames]:
    """Every chunk's games, in chunk order: here one after another, or on Ray workers."""
    if parallel is None:
        parallel = len(jobs) > 1  # a native vector env's single piece is faster here than a task
    if not parallel:
        played, done = [], 0
        for job in jobs:
            offset = done

            def forward(p: Progress, offset: int = offset, job: ChunkJob = job) -> None:
                n = offset + int(p.fraction * job.games)
                report(progress, n / total, f"{n:,} of {total:,} games played")

            played.append(play_chunk(job, forward))
            done += job.games
        return played
    from cartpole_core.cluster import run_tasks

    parts: list[PlayedGames | None] = [None] * len(jobs)
    done = 0
    for outcome in run_tasks(play_chunk, jobs):
        if outcome.error is not None:
            raise outcome.error
        parts[outcome.index] = outcome.result
        done += jobs[outcome.index].games
        report(progress, done / total, f"{done:,} of {total:,} games played ({len(jobs)} chunks on Ray)")
    return [p for p in parts if p is not None]


def generate(
    config: GenerationConfig, progress: ProgressCallback | None = None, parallel: bool | None = None
) -> GenerationResult:
    """Play ``config.games`` games of uniformly random actions and keep the good ones.

    Same config with the same integer seed gives the same scores and the same dataset,
    however the games are played: envs without a native vector env are split into chunks
    (:func:`chunk_jobs`) played on Ray workers when there are several (``parallel=None``),
    or one after another in this process (``parallel=False``), with the same result.
    """
    config.validate()
    info = env_info(config.env_id)
    start_time = time.perf_counter()
    entropy = np.random.SeedSequence(config.seed).entropy
    jobs = chunk_jobs(config, int(entropy))  # type: ignore[arg-type]
    played = _play_all(jobs, parallel, progress, config.games)
    first_game = np.cumsum([0] + [p.scores.size for p in played])
    scores = np.concatenate([p.scores for p in played])
    obs_parts = [p.observations for p in played]
    action_parts = [p.actions for p in played]
    game_parts = [p.games + first for p, first in zip(played, first_game, strict=False)]

    game_of_row = np.concatenate(game_parts)
    all_obs = np.concatenate(obs_parts)
    if config.progress_dim is not None and config.keep_top is not None:
        # By score, then by the farthest the game got: exactly the best share of games.
        peak = np.full(scores.size, -np.inf)
        np.maximum.at(peak, game_of_row, all_obs[:, config.progress_dim].astype(np.float64))
        best = np.lexsort((-peak, -scores))[: max(1, math.ceil(config.keep_top * scores.size - 1e-9))]
        keep_game = np.zeros(scores.size, dtype=bool)
        keep_game[best] = True
        threshold = float(scores[best].min())
    else:
        threshold = config.score_requirement if config.keep_top is None else top_share_cut(scores, config.keep_top)
        keep_game = scores >= threshold
    n_kept = int(keep_game.sum())
    metadata = {
        "env_id": info.env_id,
        "obs_dim": info.obs_dim,
        "n_actions": info.n_actions,
        "settings": asdict(config),
        "seed": config.seed,
        "source": "random play",
        "library_version": __version__,
    }
    rejected = np.flatnonzero(~keep_game[game_of_row])
    rejected = rejected[:: max(1, -(-rejected.size // REJECTED_SAMPLE))]  # evenly spread sample
    if n_kept:
        rows = np.flatnonzero(keep_game[game_of_row])
        rows = rows[np.argsort(game_of_row[rows], kind="stable")]  # group by game, keep step order
        new_id = np.cumsum(keep_game) - 1
        dataset = Dataset(
            observations=all_obs[rows],
            actions=np.concatenate(action_parts)[rows],
            game_ids=new_id[game_of_row[rows]],
            game_scores=scores[keep_game].astype(np.float32),
            metadata=metadata,
        )
    else:
        dataset = empty_dataset(info, metadata)
    counts = Counter(float(s) for s in scores[keep_game])
    report(progress, 1.0, f"{config.games:,} games played, {n_kept:,} kept")
    return GenerationResult(
        config=config,
        scores=scores.astype(np.float32),
        dataset=dataset,
        accepted_counts=dict(counts.most_common()),
        env_steps=int(game_of_row.size),
        seconds=time.perf_counter() - start_time,
        rejected_observations=all_obs[rejected],
        threshold=float(threshold),
    )
