"""Environments: which Gymnasium games we support and how we make them.

Any registered Gymnasium environment whose action space is ``Discrete(n)`` and whose
observation space is a 1-D ``Box`` works. Nothing about CartPole is hard-wired: the
observation size, the number of actions and the names of the observation dimensions are
read from the environment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from cartpole_core.errors import UserError
from cartpole_core.vector_envs import native_vector_env

DEFAULT_ENV_ID = "CartPole-v1"

#: Names of observation dimensions for environments where we know them (from the
#: environments' own documentation). Others are called ``obs[0]``, ``obs[1]``, ...
OBSERVATION_NAMES: dict[str, tuple[str, ...]] = {
    "CartPole": ("cart position", "cart velocity", "pole angle", "pole angular velocity"),
    "Acrobot": (
        "cos θ1",
        "sin θ1",
        "cos θ2",
        "sin θ2",
        "angular velocity θ1",
        "angular velocity θ2",
    ),
    "MountainCar": ("car position", "car velocity"),
    "LunarLander": (
        "x",
        "y",
        "x velocity",
        "y velocity",
        "angle",
        "angular velocity",
        "left leg contact",
        "right leg contact",
    ),
}

#: Names of actions where we know them; others are called ``action 0``, ``action 1``, ...
ACTION_NAMES: dict[str, tuple[str, ...]] = {
    "CartPole": ("push left", "push right"),
    "MountainCar": ("accelerate left", "don't accelerate", "accelerate right"),
    "Acrobot": ("torque -1", "torque 0", "torque +1"),
    "LunarLander": ("do nothing", "fire left engine", "fire main engine", "fire right engine"),
}

#: Unit of each observation value where it has one ("" for none), as OBSERVATION_NAMES.
OBSERVATION_UNITS: dict[str, tuple[str, ...]] = {
    "CartPole": ("m", "m/s", "rad", "rad/s"),
    "Acrobot": ("", "", "", "", "rad/s", "rad/s"),
    "MountainCar": ("", ""),
}

#: What the player does each step, in the game's terms ("each step the player …").
PLAYER_DOES: dict[str, str] = {
    "CartPole": "pushes the cart left or right",
    "Acrobot": "twists the joint between the two links: a torque of −1, 0 or +1",
    "MountainCar": "accelerates the car left or right, or lets it roll",
    "LunarLander": "fires the left, the main or the right engine, or does nothing",
}

#: What a score means, for envs where we can say it in the game's terms.
SCORE_MEANING: dict[str, str] = {
    "CartPole": "+1 for every step the pole stays up. A game ends when the pole leans more than 12° (0.21 rad) "
    "or the cart leaves the track, or when it reaches the step limit (500 in CartPole-v1).",
    "Acrobot": "-1 for every step until the free end swings above the line; higher (closer to 0) is better.",
    "MountainCar": "-1 for every step until the car reaches the flag; higher (closer to 0) is better.",
    "LunarLander": "Points for landing softly on the pad, minus fuel and crashes.",
}


#: The two ways a network can play: its most probable action, or an action drawn from its
#: probabilities (what generations collect their games with).
PLAYERS = ("greedy", "sampled")


@dataclass(frozen=True)
class EnvDefaults:
    """The profile of one game: the settings that fit it out of the box (its scores live on
    its own scale). Every config's ``for_env`` and every page takes its defaults from here,
    so a score on any page is the env's own, comparable with Gymnasium's threshold."""

    games: int
    """Random games to play first."""
    goal_steps: int
    """Most steps a game may last."""
    score_requirement: float | None = None
    """Keep games scoring at least this; None: keep the best ``keep_top`` share instead."""
    keep_top: float | None = 0.05
    """Share of the best random games kept when there is no fixed requirement."""
    target: float | None = None
    """Mean score that counts as mastering the game (generations stop there); None: none known."""
    hint: str = ""
    """What to change when random play never succeeds (said in the error)."""
    player: str = "greedy"
    """Which player of a network counts for the target: ``"greedy"`` (its most probable
    action) or ``"sampled"`` (an action drawn from its probabilities). Generations report
    both; on LunarLander the greedy player can be far worse than the sampled one it learns as."""
    progress_dim: int | None = None
    """Observation dimension whose highest value in a game breaks ties between games of equal
    score when generations pick their best games (MountainCar: the car's position, since
    every game that misses the flag scores the same); None: the score alone."""
    data: str = "best"
    """What generations learn from: ``"best"``, the best games seen so far, or ``"replace"``,
    each generation's own best games (LunarLander: a network's scores vary by ±100 from game
    to game, so the best games ever played are mostly lucky ones, and a pool of them stalls)."""
    play_steps: int | None = None
    """Most steps of the games generations play to collect data, when a weak player needs
    longer than the env's limit to reach the goal at all (MountainCar: 1,000); every
    measurement keeps the env's own limit. None: the env's limit."""

    def keeping(self) -> str:
        """``"score ≥ 50"`` or ``"the best 5 % of games"``."""
        if self.score_requirement is not None:
            return f"score ≥ {self.score_requirement:g}"
        return f"the best {100 * (self.keep_top or 0):g} % of games"


#: Defaults per suggested env, one table. CartPole keeps the notebook's settings exactly;
#: games whose scores are on another scale keep their best 5 % (Acrobot: about 1.6 % of
#: random games reach the line at all, and only those are kept, see ``generate.top_share_cut``).
ENV_DEFAULTS: dict[str, EnvDefaults] = {
    "CartPole-v1": EnvDefaults(games=10_000, goal_steps=500, score_requirement=50.0, keep_top=None, target=500.0),
    "CartPole-v0": EnvDefaults(games=10_000, goal_steps=200, score_requirement=50.0, keep_top=None, target=200.0),
    "Acrobot-v1": EnvDefaults(games=2_000, goal_steps=500, target=-100.0),
    "MountainCar-v0": EnvDefaults(
        games=2_000,
        goal_steps=200,
        target=-110.0,
        hint="In MountainCar-v0 random pushes almost never reach the flag: about 4 in 100 games do "
        "within 5,000 steps, none within 200. Keep the games that got farthest instead (Generations "
        "does), raise goal steps a lot, or choose another game.",
        progress_dim=0,
        play_steps=1000,
    ),
    "LunarLander-v3": EnvDefaults(games=2_000, goal_steps=1000, target=200.0, player="sampled", data="replace"),
}

#: Environments offered first in menus (all are in Gymnasium's classic_control or box2d).
SUGGESTED_ENV_IDS = ("CartPole-v1", "CartPole-v0", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3")


@dataclass(frozen=True)
class EnvInfo:
    """What the rest of the library needs to know about an environment."""

    env_id: str
    """Registered Gymnasium id, e.g. ``"CartPole-v1"``."""
    obs_dim: int
    """Length of one observation vector."""
    n_actions: int
    """Number of discrete actions; actions are ``0 .. n_actions - 1``."""
    obs_names: tuple[str, ...]
    """One human name per observation dimension."""
    action_names: tuple[str, ...]
    """One human name per action."""
    obs_low: tuple[float, ...]
    """Lower bound of each observation dimension (may be ``-inf``)."""
    obs_high: tuple[float, ...]
    """Upper bound of each observation dimension (may be ``inf``)."""
    max_episode_steps: int | None
    """The env's own time limit, if it registers one."""
    reward_threshold: float | None
    """Score at which Gymnasium considers the env solved, if it says."""
    has_vector_env: bool
    """True when every game can step in one vectorised call (fast): the env ships its own vector
    implementation (CartPole) or :mod:`cartpole_core.vector_envs` has one (Acrobot-v1,
    MountainCar-v0)."""


def _family(env_id: str) -> str:
    return env_id.split("-v")[0].split("/")[-1]


@lru_cache(maxsize=64)
def env_info(env_id: str) -> EnvInfo:
    """Check that ``env_id`` is supported and describe it.

    Raises :class:`UserError` for an unknown id or unsupported spaces, naming what the env
    has and what is supported.
    """
    if not isinstance(env_id, str) or not env_id.strip():
        raise UserError("The environment id is empty: give a game's id such as CartPole-v1.")
    env_id = env_id.strip()
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise UserError(
            f"Unknown environment {env_id!r}: use a game's id such as {', '.join(SUGGESTED_ENV_IDS)}."
        ) from exc
    try:
        env = gym.make(env_id)
    except Exception as exc:  # a missing optional dependency (box2d, mujoco...)
        raise UserError(
            f"Environment {env_id!r} could not be created ({exc}). Install what it needs, "
            f"or choose one of {', '.join(SUGGESTED_ENV_IDS)}."
        ) from exc
    try:
        act, obs = env.action_space, env.observation_space
    finally:
        env.close()
    problems = []
    if not isinstance(act, spaces.Discrete):
        problems.append(f"its action space is {act}, not Discrete(n)")
    if not isinstance(obs, spaces.Box) or len(obs.shape) != 1:
        problems.append(f"its observation space is {obs}, not a 1-D Box")
    if problems:
        raise UserError(
            f"Environment {env_id!r} is not supported: {' and '.join(problems)}. "
            "CartPole Lab needs discrete actions and a flat observation vector "
            f"(for example {', '.join(SUGGESTED_ENV_IDS)})."
        )
    assert isinstance(act, spaces.Discrete) and isinstance(obs, spaces.Box)
    if int(act.start) != 0:
        raise UserError(
            f"Environment {env_id!r} numbers its actions from {int(act.start)}; "
            "only action spaces starting at 0 are supported."
        )
    obs_dim, n_actions = int(obs.shape[0]), int(act.n)
    family = _family(env_id)
    names = OBSERVATION_NAMES.get(family, ())
    if len(names) != obs_dim:
        names = tuple(f"obs[{i}]" for i in range(obs_dim))
    actions = ACTION_NAMES.get(family, ())
    if len(actions) != n_actions:
        actions = tuple(f"action {i}" for i in range(n_actions))
    return EnvInfo(
        env_id=env_id,
        obs_dim=obs_dim,
        n_actions=n_actions,
        obs_names=names,
        action_names=actions,
        obs_low=tuple(float(v) for v in np.asarray(obs.low, dtype=np.float64)),
        obs_high=tuple(float(v) for v in np.asarray(obs.high, dtype=np.float64)),
        max_episode_steps=spec.max_episode_steps,
        reward_threshold=spec.reward_threshold,
        has_vector_env=spec.vector_entry_point is not None or native_vector_env(env_id) is not None,
    )


def player_does(env_id: str) -> str:
    """What the player does each step: ``"pushes the cart left or right"``, or for an env we
    have no words for, ``"takes one of its 3 actions"``."""
    info = env_info(env_id)
    return PLAYER_DOES.get(_family(info.env_id), f"takes one of its {info.n_actions} actions")


def obs_label(info: EnvInfo, dim: int) -> str:
    """An observation value's name with its unit: ``"pole angle (rad)"``."""
    units = OBSERVATION_UNITS.get(_family(info.env_id), ())
    unit = units[dim] if len(units) == info.obs_dim else ""
    return f"{info.obs_names[dim]} ({unit})" if unit else info.obs_names[dim]


def target_words(env_id: str) -> str:
    """What the env's target means, one meaning of "solved" everywhere: Gymnasium's
    ``reward_threshold``, in a learner's words. ``"mastered at a mean of 500 (every game to the
    step limit; 475 counts as solved)"`` or ``"solved at a mean of −100 (the game's own bar)"``."""
    info, target = env_info(env_id), env_defaults(env_id).target
    solved = info.reward_threshold
    if target is None:
        return "no known score that solves it" if solved is None else f"solved at a mean of {solved:g}"
    if solved is not None and target != solved:
        return f"mastered at a mean of {target:g} (every game to the step limit; {solved:g} counts as solved)"
    return f"solved at a mean of {target:g} (the game's own bar)"


def score_meaning(info: EnvInfo) -> str:
    """One or two sentences on what a game's score (sum of rewards) means in this env."""
    text = SCORE_MEANING.get(_family(info.env_id), "The score is the sum of the rewards of one game.")
    if info.reward_threshold is not None:
        text += f" A mean of {info.reward_threshold:g} counts as solved."
    return text


def env_defaults(env_id: str) -> EnvDefaults:
    """The settings that fit ``env_id`` out of the box: its row of :data:`ENV_DEFAULTS`, or for
    any other env 2,000 games, its own step limit (else 500), the best 5 % kept, and its
    ``reward_threshold`` as the target."""
    info = env_info(env_id)
    if info.env_id in ENV_DEFAULTS:
        return ENV_DEFAULTS[info.env_id]
    return EnvDefaults(games=2_000, goal_steps=info.max_episode_steps or 500, target=info.reward_threshold)


def selection_words(env_id: str, progress_dim: int | None) -> str:
    """How generations pick their best games, in words: ``"score"`` or ``"score, then the
    highest car position reached"`` (``progress_dim`` breaking ties between equal scores)."""
    if progress_dim is None:
        return "score"
    return f"score, then the highest {env_info(env_id).obs_names[progress_dim]} reached"


def score_range(env_id: str, goal_steps: int) -> tuple[float, float]:
    """Lowest and highest score a game of at most ``goal_steps`` steps can have, where the
    game's rewards say (CartPole: 0 to goal_steps; Acrobot, MountainCar: -goal_steps to 0);
    ``(-inf, inf)`` for envs whose rewards have no simple bound (LunarLander, others)."""
    family = _family(env_id)
    if family == "CartPole":
        return 0.0, float(goal_steps)
    if family in ("Acrobot", "MountainCar"):
        return -float(goal_steps), 0.0
    return -math.inf, math.inf


def make_vector_env(env_id: str, num_envs: int, goal_steps: int) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies, each game cut at ``goal_steps`` steps.

    Uses the env's own vectorised implementation when it has one (CartPole does), ours from
    :mod:`cartpole_core.vector_envs` (Acrobot-v1, MountainCar-v0), a ``SyncVectorEnv``
    otherwise. Autoreset mode is Gymnasium's default, ``NEXT_STEP``: the step after a game
    ends is a reset, not a transition.
    """
    info = env_info(env_id)
    ours = native_vector_env(info.env_id)
    if ours is not None:
        return ours(num_envs=num_envs, max_episode_steps=goal_steps)
    mode = "vector_entry_point" if info.has_vector_env else "sync"
    return gym.make_vec(info.env_id, num_envs=num_envs, vectorization_mode=mode, max_episode_steps=goal_steps)


def make_env(env_id: str, goal_steps: int, render: bool = False) -> gym.Env:
    """One env cut at ``goal_steps`` steps; ``render=True`` makes ``render()`` return RGB frames."""
    info = env_info(env_id)
    return gym.make(
        info.env_id,
        max_episode_steps=goal_steps,
        render_mode="rgb_array" if render else None,
        disable_env_checker=True,
    )
