"""Your games: games a person played in the browser, kept as the server replays them.

The browser draws the game with its own copy of the physics, but it sends only what the
player did: the game's seed and the actions, one per step. The server replays them in
Gymnasium from the same start state (:func:`start_state` is what the browser starts from)
and keeps the observations, the score and the end of that replay, never the browser's
(:func:`replay`). A message that is malformed, too long or names an impossible action is
refused with a :class:`UserError` saying what is wrong (:func:`parse_game`). The games then
become a :class:`~cartpole_core.dataset.Dataset` like Generate's, its source "your games"
(:func:`games_dataset`), and the journey goes on unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cartpole_core import __version__
from cartpole_core.dataset import Dataset
from cartpole_core.envs import env_info, make_env
from cartpole_core.errors import UserError

#: The games a person can play here, with the keys that play each action (in action order).
PLAYABLE: dict[str, tuple[str, ...]] = {
    "CartPole-v1": ("←", "→"),
    "MountainCar-v0": ("←", "↓", "→"),
    "Acrobot-v1": ("←", "↓", "→"),
}
#: The longest game a message may hold (steps), whatever the env says.
MAX_STEPS = 1_000
#: Seeds are Gymnasium's: whole numbers from 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class PlayedGame:
    """What the browser sends when a game ends: where it started and what the player did."""

    env_id: str
    seed: int
    """The seed of Gymnasium's ``reset``: the game's start state."""
    actions: tuple[int, ...]
    """One action per step, in order."""


@dataclass(frozen=True)
class HumanGame:
    """One game as the server replayed it."""

    env_id: str
    seed: int
    actions: np.ndarray
    """int64, shape (steps,): the action of each step."""
    observations: np.ndarray
    """float32, shape (steps, obs_dim): the observation each action was chosen from (the
    start state first)."""
    score: float
    """The sum of the rewards of the replay."""
    terminated: bool
    """The game ended by its own rule (the pole fell, the car reached the flag), not the time limit."""

    @property
    def steps(self) -> int:
        return int(self.actions.shape[0])

    def action_shares(self, n_actions: int) -> np.ndarray:
        """float64, shape (n_actions,): the share of steps that took each action."""
        counts = np.bincount(self.actions, minlength=n_actions).astype(np.float64)
        return counts / max(1, self.steps)


def game_seed(index: int) -> int:
    """The reset seed of a person's game number ``index`` (0, 1, …): game ``index`` of an
    evaluation with seed 0 (:meth:`~cartpole_core.evaluate.EvaluationConfig.game_seeds`), so a
    network and random play can be measured on exactly the starts the person played."""
    return int(np.random.SeedSequence(0).generate_state(index + 1)[index])


def start_state(env_id: str, seed: int) -> list[float]:
    """The env's inner state after ``reset(seed=seed)``, as plain floats (full precision), for
    the browser's copy of the physics to start from: CartPole's (x, x_dot, theta, theta_dot),
    MountainCar's (position, velocity), Acrobot's (theta1, theta2, dtheta1, dtheta2)."""
    _check_env(env_id)
    env = make_env(env_id, env_info(env_id).max_episode_steps or MAX_STEPS)
    try:
        env.reset(seed=seed)
        return [float(v) for v in np.asarray(env.unwrapped.state, dtype=np.float64)]  # type: ignore[attr-defined]
    finally:
        env.close()


def _check_env(env_id: str) -> None:
    if env_id not in PLAYABLE:
        raise UserError(f"{env_id!r} cannot be played in the page: choose one of {', '.join(PLAYABLE)}.")


def parse_game(message: Any) -> PlayedGame:
    """The browser's message (a dict: ``env_id``, ``seed``, ``actions``) as a :class:`PlayedGame`,
    or a :class:`UserError` naming what is wrong with it: not a dict, an env that cannot be
    played here, a seed that is not a whole number in Gymnasium's range, actions that are not a
    list of whole numbers, an impossible action, or more steps than the game allows."""
    if not isinstance(message, dict):
        raise UserError("The game's message is not a game (expected its game, seed and actions): play it again.")
    env_id = message.get("env_id")
    if not isinstance(env_id, str):
        raise UserError("The game's message names no game: play it again.")
    _check_env(env_id)
    seed = message.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"The game's seed {seed!r} is not a whole number from 0 to {MAX_SEED}: play it again.")
    actions = message.get("actions")
    if not isinstance(actions, list) or any(isinstance(a, bool) or not isinstance(a, int) for a in actions):
        raise UserError("The game's actions are not a list of whole numbers: play it again.")
    if not actions:
        raise UserError("The game has no steps: press a key to play before it ends.")
    limit = min(MAX_STEPS, env_info(env_id).max_episode_steps or MAX_STEPS)
    if len(actions) > limit:
        raise UserError(f"The game has {len(actions):,} steps, more than {env_id}'s {limit:,}: play it again.")
    n_actions = env_info(env_id).n_actions
    bad = next((a for a in actions if not 0 <= a < n_actions), None)
    if bad is not None:
        raise UserError(
            f"Action {bad} does not exist in {env_id} (its actions are 0 to {n_actions - 1}): play it again."
        )
    return PlayedGame(env_id, int(seed), tuple(int(a) for a in actions))


def replay(game: PlayedGame) -> HumanGame:
    """Play ``game``'s actions in Gymnasium from ``reset(seed=game.seed)`` and keep what that
    replay gives. Actions sent after the game ended are refused (:class:`UserError`): the
    browser stops at the end, so they mean its physics and the server's disagree."""
    info = env_info(game.env_id)
    limit = min(MAX_STEPS, info.max_episode_steps or MAX_STEPS)
    env = make_env(game.env_id, limit)
    try:
        obs, _ = env.reset(seed=game.seed)
        observations = np.empty((len(game.actions), info.obs_dim), dtype=np.float32)
        score, terminated, ended_at = 0.0, False, None
        for step, action in enumerate(game.actions):
            observations[step] = obs
            obs, reward, terminated, truncated, _ = env.step(action)
            score += float(reward)
            if terminated or truncated:
                ended_at = step + 1
                break
    finally:
        env.close()
    if ended_at is not None and ended_at < len(game.actions):
        raise UserError(
            f"The game ended at step {ended_at} on the server but the page sent {len(game.actions)} steps: "
            "play it again (nothing you kept is lost)."
        )
    return HumanGame(game.env_id, game.seed, np.asarray(game.actions, dtype=np.int64), observations, score, terminated)


def film(game: HumanGame, max_frames: int) -> bytes:
    """An animated GIF of ``game`` replayed in Gymnasium (every k-th step so it fits in
    ``max_frames`` frames, shown at the game's own speed). Holds each frame in memory (~0.7 MB
    for CartPole) while it encodes: run it as a job."""
    from cartpole_core.gif import frames_to_gif, gif_stride

    stride = gif_stride(game.steps, max_frames)
    env = make_env(game.env_id, min(MAX_STEPS, env_info(game.env_id).max_episode_steps or MAX_STEPS), render=True)
    try:
        env.reset(seed=game.seed)
        frames: list[np.ndarray] = [np.asarray(env.render())]
        for step, action in enumerate(game.actions, start=1):
            env.step(int(action))
            if step % stride == 0 or step == game.steps:
                frames.append(np.asarray(env.render()))
    finally:
        env.close()
    return frames_to_gif(frames, frame_stride=stride)


def choose_games(games: list[HumanGame], keep: str = "all", best: int = 5, at_least: float = 0.0) -> list[int]:
    """Indexes of the games to keep: ``"all"``, the ``"best"`` N by score (ties: the earlier
    game), or those scoring ``"at least"`` a score; in the order they were played."""
    if keep == "all":
        return list(range(len(games)))
    if keep == "best":
        if best < 1:
            raise UserError(f"Keep the best {best} games? Choose 1 or more.")
        order = sorted(range(len(games)), key=lambda i: (-games[i].score, i))
        return sorted(order[:best])
    if keep == "at least":
        return [i for i, g in enumerate(games) if g.score >= at_least]
    raise UserError(f"Keep {keep!r}? Choose all, best or at least.")


def games_dataset(games: list[HumanGame]) -> Dataset:
    """Every step of ``games`` as training rows (observation -> the player's action), its source
    "your games": the same :class:`Dataset` as Generate's."""
    if not games:
        raise UserError("No games to keep: play a game first, or keep more of them.")
    env_ids = {g.env_id for g in games}
    if len(env_ids) > 1:
        raise UserError(f"Your games were played in {', '.join(sorted(env_ids))}: keep those of one of them.")
    info = env_info(games[0].env_id)
    return Dataset(
        observations=np.concatenate([g.observations for g in games]).astype(np.float32),
        actions=np.concatenate([g.actions for g in games]).astype(np.int64),
        game_ids=np.concatenate([np.full(g.steps, i, dtype=np.int64) for i, g in enumerate(games)]),
        game_scores=np.asarray([g.score for g in games], dtype=np.float32),
        metadata={
            "env_id": info.env_id,
            "obs_dim": info.obs_dim,
            "n_actions": info.n_actions,
            "source": "your games",
            "seeds": [g.seed for g in games],
            "library_version": __version__,
        },
    ).validate()
