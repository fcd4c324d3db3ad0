"""Dataset: the (observation, action) pairs of the kept games, as plain numeric arrays.

A row is one step of one kept game: the observation the action was chosen from and the
action taken. Rows of a game are consecutive and in the order they were played, the
game's first step (from the reset observation) included. Only numbers are stored, so a
dataset saves to ``.npz`` without pickling (see :mod:`cartpole_core.storage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cartpole_core.envs import EnvInfo, env_info
from cartpole_core.errors import UserError


@dataclass(frozen=True)
class Dataset:
    """Training rows of kept games plus where they came from."""

    observations: np.ndarray
    """float32, shape (n, obs_dim): the observation each action was chosen from."""
    actions: np.ndarray
    """int64, shape (n,): the action taken, ``0 .. n_actions - 1``."""
    game_ids: np.ndarray
    """int64, shape (n,): which game (index into ``game_scores``) each row belongs to."""
    game_scores: np.ndarray
    """float32, shape (n_games,): the score (sum of rewards) of each kept game."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """JSON-able facts: ``env_id``, ``obs_dim``, ``n_actions``, the settings that made it,
    ``seed``, ``library_version``, ``source``."""

    @property
    def env_id(self) -> str:
        return str(self.metadata.get("env_id", ""))

    @property
    def n_actions(self) -> int:
        return int(self.metadata["n_actions"])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def n_games(self) -> int:
        return int(self.game_scores.shape[0])

    def one_hot_actions(self) -> np.ndarray:
        """float32, shape (n, n_actions): the notebook's labels (``1 -> [0, 1]``)."""
        return np.eye(self.n_actions, dtype=np.float32)[self.actions]

    def action_counts(self) -> np.ndarray:
        """int64, shape (n_actions,): how many rows took each action (label balance)."""
        return np.bincount(self.actions, minlength=self.n_actions).astype(np.int64)

    def validate(self, expect_env: str | None = None) -> Dataset:
        """Check shapes, dtypes, action range and (optionally) the env; return self.

        Raises :class:`UserError` naming the first problem found.
        """
        validate_arrays(self.observations, self.actions, self.game_ids, self.game_scores, self.metadata)
        if expect_env is not None and self.env_id != expect_env:
            raise UserError(
                f"This dataset was made in {self.env_id!r}, not {expect_env!r}: "
                f"choose {self.env_id!r} or generate a dataset in {expect_env!r}."
            )
        return self

    def subset_games(self, keep: np.ndarray) -> Dataset:
        """The dataset with only the games whose index is in ``keep`` (int array)."""
        keep = np.unique(np.asarray(keep, dtype=np.int64))
        new_index = np.full(self.n_games, -1, dtype=np.int64)
        new_index[keep] = np.arange(keep.size)
        rows = new_index[self.game_ids] >= 0
        return Dataset(
            observations=self.observations[rows],
            actions=self.actions[rows],
            game_ids=new_index[self.game_ids[rows]],
            game_scores=self.game_scores[keep],
            metadata=dict(self.metadata),
        )


def concat_datasets(parts: list[Dataset], metadata: dict[str, Any]) -> Dataset:
    """One dataset holding the games of every part, in order; game ids are renumbered."""
    if not parts:
        raise UserError("There is no dataset to combine.")
    offsets = np.cumsum([0] + [p.n_games for p in parts[:-1]])
    return Dataset(
        observations=np.concatenate([p.observations for p in parts]),
        actions=np.concatenate([p.actions for p in parts]),
        game_ids=np.concatenate([p.game_ids + off for p, off in zip(parts, offsets, strict=False)]),
        game_scores=np.concatenate([p.game_scores for p in parts]),
        metadata=metadata,
    )


def empty_dataset(info: EnvInfo, metadata: dict[str, Any]) -> Dataset:
    """A dataset with no rows for ``info``'s env (no game was kept)."""
    return Dataset(
        observations=np.zeros((0, info.obs_dim), dtype=np.float32),
        actions=np.zeros(0, dtype=np.int64),
        game_ids=np.zeros(0, dtype=np.int64),
        game_scores=np.zeros(0, dtype=np.float32),
        metadata=metadata,
    )


def validate_arrays(
    observations: np.ndarray,
    actions: np.ndarray,
    game_ids: np.ndarray,
    game_scores: np.ndarray,
    metadata: dict[str, Any],
) -> None:
    """Raise :class:`UserError` unless the arrays form a consistent dataset."""
    fix = "Use a dataset saved by CartPole Lab, or generate a new one."
    for key in ("env_id", "n_actions"):
        if key not in metadata:
            raise UserError(f"The dataset's metadata has no {key!r}. {fix}")
    if observations.ndim != 2 or observations.dtype != np.float32:
        raise UserError(
            f"observations must be float32 of shape (n, obs_dim), got {observations.dtype} "
            f"of shape {observations.shape}. {fix}"
        )
    n = observations.shape[0]
    for name, arr in (("actions", actions), ("game_ids", game_ids)):
        if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
            raise UserError(f"{name} must be integers of shape ({n},), got {arr.dtype} of shape {arr.shape}. {fix}")
    if game_scores.ndim != 1 or not np.issubdtype(game_scores.dtype, np.floating):
        raise UserError(f"game_scores must be a 1-D float array, got {game_scores.dtype} {game_scores.shape}. {fix}")
    if not np.isfinite(observations).all():
        raise UserError(f"observations contain NaN or infinite values. {fix}")
    try:
        info = env_info(str(metadata["env_id"]))
    except UserError as exc:
        raise UserError(f"The dataset names an environment this server cannot run: {exc}") from exc
    try:
        n_actions = int(metadata["n_actions"])
    except (TypeError, ValueError) as exc:
        raise UserError(f"The dataset's n_actions is not a whole number: {metadata['n_actions']!r}. {fix}") from exc
    if n_actions != info.n_actions or observations.shape[1] != info.obs_dim:
        raise UserError(
            f"The dataset says {info.env_id} but its shapes do not match it "
            f"(obs_dim {observations.shape[1]} vs {info.obs_dim}, actions {n_actions} vs "
            f"{info.n_actions}). {fix}"
        )
    if n and (actions.min() < 0 or actions.max() >= n_actions):
        raise UserError(
            f"actions must lie in 0..{n_actions - 1}, found {int(actions.min())}..{int(actions.max())}. {fix}"
        )
    if n and (game_ids.min() < 0 or game_ids.max() >= game_scores.shape[0]):
        raise UserError(f"game_ids point outside game_scores. {fix}")
