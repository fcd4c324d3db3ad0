"""The notebook's way, written out as the notebook does it, to time it beside ours.

Each function follows a cell of ``/work/shared/seed/notebook-ru.txt`` line by line; the only
changes are the ones Gymnasium and Keras 3 force (``step`` returns ``terminated, truncated``
instead of ``done``; the model takes a flat (1, obs_dim) input instead of tflearn's
(1, obs_dim, 1)), seeds so runs can be repeated, and no drawing or saving (see each
function). They are deliberately not optimised: they are the baseline.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from statistics import mean, median
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

ENV_ID = "CartPole-v1"


@dataclass
class PopulationResult:
    """What the notebook's ``initial_population`` prints and returns."""

    games: int
    scores: list[float]
    accepted_scores: list[float]
    training_data: list[list[Any]]
    """[observation, one-hot action] pairs of the accepted games (the notebook's rows)."""
    env_steps: int

    @property
    def accepted(self) -> int:
        return len(self.accepted_scores)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.games

    @property
    def accepted_mean(self) -> float | None:
        return float(mean(self.accepted_scores)) if self.accepted_scores else None

    @property
    def accepted_median(self) -> float | None:
        return float(median(self.accepted_scores)) if self.accepted_scores else None

    def counter(self) -> Counter:
        return Counter(self.accepted_scores)


def initial_population(
    initial_games: int = 10_000,
    goal_steps: int = 500,
    score_requirement: float = 50,
    seed: int | None = 0,
    sample_from_action_space: bool = False,
) -> PopulationResult:
    """Cells 31 and 33: ``gym.make('CartPole-v1')`` and a Python loop over games and steps.

    Faithful to the notebook: the observation returned by ``env.reset()`` is never stored
    (a row pairs the *previous step's* observation with the action, so each game loses its
    first step: an accepted game of score s gives s - 1 rows), the action is
    ``random.randrange(0, 2)`` (``sample_from_action_space=True`` uses
    ``env.action_space.sample()`` instead, as the notebook's first cell does), and the env
    is reset after each game. Not done: ``np.save`` of the ragged object array (our
    generation does not save either) and the printing.
    """
    import gymnasium as gym

    rng = random.Random(seed)
    env = gym.make(ENV_ID)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    training_data: list[list[Any]] = []
    scores: list[float] = []
    accepted_scores: list[float] = []
    env_steps = 0
    for _ in range(initial_games):
        score = 0.0
        game_memory = []
        prev_observation: Any = []
        for _ in range(goal_steps):
            action = env.action_space.sample() if sample_from_action_space else rng.randrange(0, 2)
            observation, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            env_steps += 1
            if len(prev_observation) > 0:
                game_memory.append([prev_observation, action])
            prev_observation = observation
            score += reward
            if done:
                break
        if score >= score_requirement:
            accepted_scores.append(score)
            for data in game_memory:
                if data[1] == 1:
                    output = [0, 1]
                elif data[1] == 0:
                    output = [1, 0]
                training_data.append([data[0], output])
        env.reset()
        scores.append(score)
    env.close()
    if accepted_scores:  # the notebook's analytics (mean([]) would crash it)
        mean(accepted_scores)
        median(accepted_scores)
        Counter(accepted_scores)
    return PopulationResult(initial_games, scores, accepted_scores, training_data, env_steps)


def fit(model: keras.Model, x: np.ndarray, y_onehot: np.ndarray, epochs: int = 4, batch_size: int = 64) -> Any:
    """Cell 35 in Keras 3: one plain ``model.fit`` call (tflearn's ``fit`` shuffled every epoch)."""
    return model.fit(x, y_onehot, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)


@dataclass
class PerFrameResult:
    steps: int
    """Env steps played (each one a ``model.predict`` call, except a game's first)."""
    predicts: int
    seconds: float
    scores: list[float]
    """Scores of the games finished within the frame budget."""

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(1, self.steps)


def play_per_frame(model: keras.Model, max_steps: int, goal_steps: int = 500, seed: int | None = 0) -> PerFrameResult:
    """Cell 39: games where every frame calls ``model.predict`` on one observation.

    Stops after ``max_steps`` env steps (a game may be cut), since at tens of milliseconds
    a frame 100 whole games would take many minutes. The first action of a game is random
    (the notebook has no observation yet). Not done: ``env.render()`` and the
    ``game_memory`` list the notebook keeps but never uses.
    """
    import gymnasium as gym

    rng = random.Random(seed)
    env = gym.make(ENV_ID)
    env.reset(seed=seed)
    scores: list[float] = []
    choices: list[int] = []
    steps = predicts = 0
    start = time.perf_counter()
    while steps < max_steps:
        score = 0.0
        prev_obs: Any = []
        env.reset()
        finished = False
        for _ in range(goal_steps):
            if len(prev_obs) == 0:
                action = rng.randrange(0, 2)
            else:
                action = int(np.argmax(model.predict(prev_obs.reshape(-1, len(prev_obs)), verbose=0)[0]))
                predicts += 1
            choices.append(action)
            new_observation, reward, terminated, truncated, info = env.step(action)
            prev_obs = new_observation
            score += reward
            steps += 1
            if terminated or truncated:
                finished = True
                break
            if steps >= max_steps:
                break
        if finished:
            scores.append(score)
    seconds = time.perf_counter() - start
    env.close()
    return PerFrameResult(steps, predicts, seconds, scores)
