"""Vector envs in NumPy for the classic-control games Gymnasium steps one game at a time.

Gymnasium ships a vector implementation for CartPole only; Acrobot-v1 and MountainCar-v0 run
one Python ``step`` per game per step (an Acrobot step is four Runge-Kutta evaluations in
scalar NumPy, about 30 µs: 2,000 random games of 500 steps take half a minute). The classes
here step every game in one vectorised pass, with **the single env's arithmetic, operation
for operation**, so a game started from the state a single env's reset gives is the game
that env plays, observation for observation (``tests/test_envs.py`` checks this against
Gymnasium on random action sequences). They follow :class:`CartPoleVectorEnv`'s conventions:
``state`` is ``(state_dim, num_envs)`` float64, autoreset is ``NEXT_STEP`` (the step after a
game ends resets it and scores 0), games are cut at ``max_episode_steps``.

:func:`native_vector_env` names the class for an env id (exact versions only: another
version's physics may differ), :func:`observe` turns any of these envs' state into
observations.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


class NumpyVectorEnv(VectorEnv):
    """Shared bookkeeping: seeding, step counts, the time limit and ``NEXT_STEP`` autoreset.

    A subclass defines the spaces (``single_observation_space``, ``single_action_space``),
    :meth:`_starts` (k fresh start states), :meth:`_advance` (one step of physics) and
    :meth:`_observe`.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, max_episode_steps: int = 500) -> None:
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.state: np.ndarray | None = None
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.prev_done = np.zeros(num_envs, dtype=bool)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)

    def _starts(self, k: int) -> np.ndarray:
        """(state_dim, k) float64: fresh start states, drawn from ``self.np_random``."""
        raise NotImplementedError

    def _advance(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One step of every game: (next state (state_dim, n), terminated bool (n,), reward float32 (n,))."""
        raise NotImplementedError

    def _observe(self, state: np.ndarray) -> np.ndarray:
        """(n, obs_dim) float32: what the player sees in each state."""
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.state = self._starts(self.num_envs)
        self.steps = np.zeros(self.num_envs, dtype=np.int64)
        self.prev_done = np.zeros(self.num_envs, dtype=bool)
        return self._observe(self.state), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        assert self.state is not None, "Call reset before step."
        action = np.asarray(action, dtype=np.int64)
        self.state, terminated, reward = self._advance(self.state, action)
        self.steps += 1
        truncated = self.steps >= self.max_episode_steps
        done = self.prev_done
        if done.any():  # the games that ended last step start again; this step is not a move
            self.state[:, done] = self._starts(int(done.sum()))
            self.steps[done] = 0
            reward[done] = 0.0
            terminated[done] = False
            truncated[done] = False
        self.prev_done = terminated | truncated
        return self._observe(self.state), reward, terminated, truncated, {}


#: ``x ** 2`` as the single env computes it on a NumPy scalar: the C library's ``pow``, which
#: in about 1 case in 1,000 differs from ``x * x`` (what NumPy's array ``x ** 2`` does) in the
#: last bit; Acrobot is chaotic enough for such a bit to change a game. ~0.1 µs a value.
_pow2_libm = np.frompyfunc(lambda x: math.pow(x, 2), 1, 1)


def _square(x: np.ndarray) -> np.ndarray:
    return _pow2_libm(x).astype(np.float64)


def _wrap(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Gymnasium's ``acrobot.wrap``, element by element: subtract or add the range until inside."""
    diff = high - low
    while (above := x > high).any():
        x = np.where(above, x - diff, x)
    while (below := x < low).any():
        x = np.where(below, x + diff, x)
    return x


class AcrobotVectorEnv(NumpyVectorEnv):
    """Acrobot-v1 (``book`` dynamics, no torque noise), every game in one RK4 pass."""

    dt = 0.2
    LINK_LENGTH_1 = 1.0
    LINK_MASS_1 = 1.0
    LINK_MASS_2 = 1.0
    LINK_COM_POS_1 = 0.5
    LINK_COM_POS_2 = 0.5
    LINK_MOI = 1.0
    MAX_VEL_1 = 4 * math.pi
    MAX_VEL_2 = 9 * math.pi
    AVAIL_TORQUE = np.array([-1.0, 0.0, 1.0])

    def __init__(self, num_envs: int = 1, max_episode_steps: int = 500) -> None:
        high = np.array([1.0, 1.0, 1.0, 1.0, self.MAX_VEL_1, self.MAX_VEL_2], dtype=np.float32)
        self.single_observation_space = spaces.Box(low=-high, high=high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(3)
        super().__init__(num_envs, max_episode_steps)

    def _starts(self, k: int) -> np.ndarray:
        # The single env draws float32 starts; its first step widens them to float64.
        return self.np_random.uniform(low=-0.1, high=0.1, size=(4, k)).astype(np.float32).astype(np.float64)

    def _dsdt(self, s: np.ndarray) -> np.ndarray:
        """(5, n) → (5, n): the single env's ``_dsdt``, the same expressions on arrays."""
        m1, m2 = self.LINK_MASS_1, self.LINK_MASS_2
        l1 = self.LINK_LENGTH_1
        lc1, lc2 = self.LINK_COM_POS_1, self.LINK_COM_POS_2
        I1 = I2 = self.LINK_MOI
        g = 9.8
        pi = np.pi
        cos, sin = np.cos, np.sin
        a, theta1, theta2, dtheta1, dtheta2 = s[4], s[0], s[1], s[2], s[3]
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos(theta2)) + I1 + I2
        d2 = m2 * (lc2**2 + l1 * lc2 * cos(theta2)) + I2
        phi2 = m2 * lc2 * g * cos(theta1 + theta2 - pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * _square(dtheta2) * sin(theta2)
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * cos(theta1 - pi / 2)
            + phi2
        )
        ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * _square(dtheta1) * sin(theta2) - phi2) / (
            m2 * lc2**2 + I2 - _square(d2) / d1
        )
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return np.stack((dtheta1, dtheta2, ddtheta1, ddtheta2, np.zeros_like(a)))

    def _advance(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y0 = np.concatenate((state, self.AVAIL_TORQUE[action][None, :]))
        dt = self.dt
        dt2 = dt / 2.0
        k1 = self._dsdt(y0)
        k2 = self._dsdt(y0 + dt2 * k1)
        k3 = self._dsdt(y0 + dt2 * k2)
        k4 = self._dsdt(y0 + dt * k3)
        ns = (y0 + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4))[:4]
        ns[0] = _wrap(ns[0], -np.pi, np.pi)
        ns[1] = _wrap(ns[1], -np.pi, np.pi)
        ns[2] = np.minimum(np.maximum(ns[2], -self.MAX_VEL_1), self.MAX_VEL_1)
        ns[3] = np.minimum(np.maximum(ns[3], -self.MAX_VEL_2), self.MAX_VEL_2)
        terminated = -np.cos(ns[0]) - np.cos(ns[1] + ns[0]) > 1.0
        reward = np.where(terminated, 0.0, -1.0).astype(np.float32)
        return ns, terminated, reward

    def _observe(self, state: np.ndarray) -> np.ndarray:
        s = state
        return np.stack((np.cos(s[0]), np.sin(s[0]), np.cos(s[1]), np.sin(s[1]), s[2], s[3]), axis=1).astype(np.float32)


class MountainCarVectorEnv(NumpyVectorEnv):
    """MountainCar-v0 (goal velocity 0), every game in one pass."""

    min_position = -1.2
    max_position = 0.6
    max_speed = 0.07
    goal_position = 0.5
    goal_velocity = 0.0
    force = 0.001
    gravity = 0.0025

    def __init__(self, num_envs: int = 1, max_episode_steps: int = 200) -> None:
        low = np.array([self.min_position, -self.max_speed], dtype=np.float32)
        high = np.array([self.max_position, self.max_speed], dtype=np.float32)
        self.single_observation_space = spaces.Box(low, high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(3)
        super().__init__(num_envs, max_episode_steps)

    def _starts(self, k: int) -> np.ndarray:
        return np.stack((self.np_random.uniform(low=-0.6, high=-0.4, size=k), np.zeros(k)))

    def _advance(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position, velocity = state[0], state[1]
        velocity = velocity + ((action - 1) * self.force + np.cos(3 * position) * (-self.gravity))
        velocity = np.clip(velocity, -self.max_speed, self.max_speed)
        position = position + velocity
        position = np.clip(position, self.min_position, self.max_position)
        velocity = np.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.goal_position) & (velocity >= self.goal_velocity)
        return np.stack((position, velocity)), terminated, np.full(position.shape, -1.0, dtype=np.float32)

    def _observe(self, state: np.ndarray) -> np.ndarray:
        return state.T.astype(np.float32)


#: Our vector envs by exact env id (another version of these games may have other physics).
NUMPY_VECTOR_ENVS: dict[str, type[NumpyVectorEnv]] = {
    "Acrobot-v1": AcrobotVectorEnv,
    "MountainCar-v0": MountainCarVectorEnv,
}


def native_vector_env(env_id: str) -> type[NumpyVectorEnv] | None:
    """This module's vector env for ``env_id``, or None."""
    return NUMPY_VECTOR_ENVS.get(env_id)


def observe(env: VectorEnv) -> np.ndarray:
    """(num_envs, obs_dim) float32: the observations of a native vector env's current state
    (CartPole's observation is its state; ours say how theirs is made)."""
    if isinstance(env, NumpyVectorEnv):
        assert env.state is not None
        return env._observe(env.state)
    return np.asarray(env.state).T.astype(np.float32)  # type: ignore[attr-defined]
