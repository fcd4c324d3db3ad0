"""Train Stable-Baselines3's PPO (or DQN) on a game until it masters it (stage 11).

``python bench/peers/sb3_race.py --algo ppo --env CartPole-v1 --seed 0 [--max-steps N]
[--max-seconds S]`` trains with RL Baselines3 Zoo's settings for that env, measures the model
on 100 fixed games every few thousand env steps (most probable action) and stops once their
mean reaches the env's bar (CartPole-v1 475, Acrobot-v1 -100, MountainCar-v0 -110,
LunarLander-v3 200), or at the budget; then plays 1,000 fresh games (100 with a budget) with
the model it stopped with. It prints one JSON line.

It runs in the benchmark-only venv ``bench/.peers-venv`` (``bench/peers/requirements.txt``),
never in the app's: it imports neither ``cartpole_core`` nor Keras, so the games are set up
here the way ``cartpole_core.evaluate`` sets them up (same reset seeds, 500-step limit).
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from typing import Any

import numpy as np

#: RL Baselines3 Zoo's tuned CartPole-v1 blocks, copied from hyperparams/ppo.yml and
#: hyperparams/dqn.yml of DLR-RM/rl-baselines3-zoo at commit
#: 22e3ff2450fd92033f7f032915e1f64894a09584 (2026-04-23). "lin_X" is the zoo's linear
#: schedule: X at the start, falling to 0 at the end of ``learn`` (``--max-steps``).
ZOO: dict[str, dict[str, Any]] = {
    "ppo": {
        "n_envs": 8,
        "n_timesteps": 100_000,
        "policy": "MlpPolicy",
        "n_steps": 32,
        "batch_size": 256,
        "gae_lambda": 0.8,
        "gamma": 0.98,
        "n_epochs": 20,
        "ent_coef": 0.0,
        "learning_rate": "lin_0.001",
        "clip_range": "lin_0.2",
    },
    # The zoo names LunarLander-v2; v3 is the same game with Box2D fixes (Gymnasium 1.x).
    "ppo:Acrobot-v1": {
        "normalize": True,
        "n_envs": 16,
        "n_timesteps": 1_000_000,
        "policy": "MlpPolicy",
        "n_steps": 256,
        "gae_lambda": 0.94,
        "gamma": 0.99,
        "n_epochs": 4,
        "ent_coef": 0.0,
    },
    "ppo:MountainCar-v0": {
        "normalize": True,
        "n_envs": 16,
        "n_timesteps": 1_000_000,
        "policy": "MlpPolicy",
        "n_steps": 16,
        "gae_lambda": 0.98,
        "gamma": 0.99,
        "n_epochs": 4,
        "ent_coef": 0.0,
    },
    "ppo:LunarLander-v3": {
        "n_envs": 16,
        "n_timesteps": 1_000_000,
        "policy": "MlpPolicy",
        "n_steps": 1024,
        "batch_size": 64,
        "gae_lambda": 0.98,
        "gamma": 0.999,
        "n_epochs": 4,
        "ent_coef": 0.01,
    },
    "dqn": {
        "n_timesteps": 50_000,
        "policy": "MlpPolicy",
        "learning_rate": 2.3e-3,
        "batch_size": 64,
        "buffer_size": 100_000,
        "learning_starts": 1000,
        "gamma": 0.99,
        "target_update_interval": 10,
        "train_freq": 256,
        "gradient_steps": 128,
        "exploration_fraction": 0.16,
        "exploration_final_eps": 0.04,
        "policy_kwargs": {"net_arch": [256, 256]},
    },
}
#: Env steps between two evaluations (PPO: 10 rollouts of 8 envs x 32 steps).
EVAL_EVERY = {"ppo": 2_560, "dqn": 2_500}
EVAL_GAMES, CONFIRM_GAMES = 100, 1_000
#: The bar per env: CartPole-v1's 475 (as stage 7), the others' Gymnasium reward_threshold.
BARS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "MountainCar-v0": -110.0, "LunarLander-v3": 200.0}
#: As in cartpole_core.improve: offsets of the evaluation and confirmation games' seeds.
EVAL_SEED_OFFSET, CONFIRM_SEED_OFFSET = 1_000_003, 2_000_003
#: torch threads (the machine has 2 cores; see --threads).
THREADS = 2


def game_seeds(seed: int, games: int) -> np.ndarray:
    """Reset seed of each game: ``cartpole_core.evaluate.EvaluationConfig.game_seeds``."""
    return np.random.SeedSequence(seed).generate_state(games).astype(np.uint32)


def play(model: Any, env_id: str, seed: int, games: int, normalize: Any = None) -> float:
    """Mean score of ``model`` (most probable action) over ``games`` games of ``env_id`` (its
    own step limit) reset with :func:`game_seeds` ``(seed, games)``; all games step together,
    one batched ``predict`` per step (observations normalised as in training, if it was)."""
    import gymnasium as gym

    envs = [gym.make(env_id, disable_env_checker=True) for _ in range(games)]
    obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, game_seeds(seed, games), strict=True)])
    scores = np.zeros(games)
    live = np.arange(games)
    while live.size:
        seen = obs[live] if normalize is None else normalize.normalize_obs(obs[live])
        actions, _ = model.predict(seen, deterministic=True)
        still = []
        for i, action in zip(live, actions, strict=True):
            obs[i], reward, terminated, truncated, _ = envs[i].step(int(action))
            scores[i] += reward
            if not (terminated or truncated):
                still.append(i)
        live = np.asarray(still, dtype=np.int64)
    for env in envs:
        env.close()
    return float(scores.mean())


def zoo_value(value: Any) -> Any:
    """A zoo setting as SB3 takes it ("lin_X" becomes the zoo's linear schedule)."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def refuse_sockets() -> None:
    """Make any attempt to bind or listen on a socket fail: the race must not open the network."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("sb3_race.py must not bind sockets")

    socket.socket.bind = socket.socket.listen = refuse  # type: ignore[method-assign]


def race(
    algo: str, env_id: str, seed: int, max_steps: int | None, max_seconds: float | None, threads: int = THREADS
) -> dict[str, Any]:
    """Train ``algo`` with evaluations until the bar, ``max_steps`` or ``max_seconds`` of
    training (evaluations not counted); the figures as a dict."""
    import stable_baselines3
    import torch
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(threads)
    block = ZOO.get(f"{algo}:{env_id}", ZOO[algo] if env_id == "CartPole-v1" else None)
    if block is None:
        raise SystemExit(f"no zoo settings for {algo} on {env_id}")
    params = {k: zoo_value(v) for k, v in block.items()}
    n_envs, budget, policy = params.pop("n_envs", 1), params.pop("n_timesteps"), params.pop("policy")
    normalize = params.pop("normalize", False)
    max_steps = int(max_steps or budget)
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    if normalize:  # the zoo's `normalize: true`: observations and rewards, statistics frozen for evaluation
        env = VecNormalize(env, gamma=params.get("gamma", 0.99))
    model = (PPO if algo == "ppo" else DQN)(policy, env, seed=seed, device="cpu", verbose=0, **params)
    eval_seed = seed + EVAL_SEED_OFFSET
    bar = BARS[env_id]
    norm = env if normalize else None

    class Evaluations(BaseCallback):
        """Plays the 100 evaluation games every ``EVAL_EVERY`` env steps and stops training at
        the bar. PPO is measured at the start of a rollout (just after its update on the last
        one), DQN on the env step that completes the interval."""

        def __init__(self) -> None:
            super().__init__()
            self.next_at, self.seconds, self.history = EVAL_EVERY[algo], 0.0, []
            self.reached: dict[str, Any] | None = None
            self.began = time.perf_counter()
            self.out_of_time = False

        def evaluate(self) -> None:
            steps, start = self.model.num_timesteps, time.perf_counter()
            mean = play(self.model, env_id, eval_seed, EVAL_GAMES, norm)
            self.seconds += time.perf_counter() - start
            self.history.append([steps, mean, start - self.began - self.seconds + (time.perf_counter() - start)])
            if mean >= bar and self.reached is None:
                self.reached = {"steps": steps, "mean": mean}
            if max_seconds is not None and time.perf_counter() - self.began - self.seconds > max_seconds:
                self.out_of_time = True
            while self.next_at <= steps:
                self.next_at += EVAL_EVERY[algo]

        def _on_rollout_start(self) -> None:
            if algo == "ppo" and self.model.num_timesteps >= self.next_at:
                self.evaluate()

        def _on_step(self) -> bool:
            if algo != "ppo" and self.num_timesteps >= self.next_at:
                self.evaluate()
            return self.reached is None and not self.out_of_time

    evaluations = Evaluations()
    start = time.perf_counter()
    model.learn(total_timesteps=max_steps, callback=evaluations)
    learn_seconds = time.perf_counter() - start
    reached = evaluations.reached
    if reached is None and (not evaluations.history or evaluations.history[-1][0] != model.num_timesteps):
        evaluations.evaluate()  # the final model, outside the timed part
    last_steps, last_mean = evaluations.history[-1][:2]
    best_steps, best_mean = max(evaluations.history, key=lambda h: h[1])[:2]
    return {
        "algo": algo,
        "env_id": env_id,
        "bar": bar,
        "seed": seed,
        "best_mean": best_mean,
        "best_steps": best_steps,
        "reached": reached is not None,
        "train_seconds": learn_seconds - evaluations.seconds,
        "seconds_with_evaluations": learn_seconds,
        "eval_seconds": evaluations.seconds,
        "steps": reached["steps"] if reached else last_steps,
        "eval_mean": reached["mean"] if reached else last_mean,
        "confirm_mean": play(
            model, env_id, seed + CONFIRM_SEED_OFFSET, CONFIRM_GAMES if max_seconds is None else EVAL_GAMES, norm
        ),  # fmt: skip
        "max_steps": max_steps,
        "steps_done": model.num_timesteps,
        "evaluations": evaluations.history,
        "hyperparameters": block,
        "max_seconds": max_seconds,
        "versions": {"stable_baselines3": stable_baselines3.__version__, "torch": torch.__version__},
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", choices=("dqn", "ppo"), required=True)
    p.add_argument("--env", default="CartPole-v1", choices=sorted(BARS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, help="stop after this much training (evaluations not counted)")
    p.add_argument("--max-steps", type=int, help="most env steps (default: the zoo's n_timesteps)")
    p.add_argument("--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS})")
    args = p.parse_args(argv)
    refuse_sockets()
    print(json.dumps(race(args.algo, args.env, args.seed, args.max_steps, args.max_seconds, args.threads)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
