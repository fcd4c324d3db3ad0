"""Dashboard jobs: each heavy stage as a function of plain data, to run as a Ray task.

The dashboard's web server holds no TensorFlow: a session keeps its networks as
:class:`~cartpole_core.network.Network` (a ``.keras`` file and NumPy layers), and everything
that builds, trains or loads a Keras model runs through :func:`cluster.run_job` on a Ray
worker (the local Ray, or a cluster's). Each function here takes settings, datasets and
Networks, calls the stage itself, and returns the stage's own result dataclass with its
Keras models replaced by Networks. They take ``progress`` like every stage, so they also
run in-process unchanged (the tests compare both).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from cartpole_core.dataset import Dataset
from cartpole_core.ensemble import EnsembleConfig, EnsembleResult
from cartpole_core.evaluate import EvaluationConfig, EvaluationResult
from cartpole_core.gif import gif_stride
from cartpole_core.human import HumanGame
from cartpole_core.improve import GenerationRecord, ImproveConfig, ImproveResult
from cartpole_core.model import ModelConfig, from_network, to_network
from cartpole_core.network import Network
from cartpole_core.pipeline import NotebookConfig, NotebookResult
from cartpole_core.policies import Policy
from cartpole_core.progress import Progress, ProgressCallback
from cartpole_core.training import TrainingConfig, TrainingResult


@dataclass(frozen=True)
class Trained:
    """A network and how its training went."""

    network: Network
    training: TrainingResult


def train_job(
    dataset: Dataset,
    model_config: ModelConfig,
    training_config: TrainingConfig,
    seed: int,
    progress: ProgressCallback | None = None,
) -> Trained:
    """A new network of ``model_config`` (weights from ``seed``) trained on ``dataset``.

    Stopped early (``progress`` returned True), it keeps the steps learned so far.
    """
    from cartpole_core.model import build_model
    from cartpole_core.training import train

    training_config.validate()
    model = build_model(dataset.obs_dim, dataset.n_actions, model_config, seed=seed)
    result = train(model, dataset, training_config, progress)
    return Trained(to_network(model), result)


def ensemble_job(
    dataset: Dataset,
    model_config: ModelConfig,
    training_config: TrainingConfig,
    config: EnsembleConfig,
    progress: ProgressCallback | None = None,
) -> EnsembleResult:
    """:func:`~cartpole_core.ensemble.train_ensemble`, its members as Networks."""
    from cartpole_core.ensemble import train_ensemble

    result = train_ensemble(dataset, model_config, training_config, config, progress)
    return replace(result, models=[to_network(m) for m in result.models])


@dataclass(frozen=True)
class GenerationDone:
    """The payload of :func:`improve_job`'s report after each generation."""

    record: GenerationRecord
    network: Network
    """The network as the generation left it (its ``.keras`` file dropped when NumPy can play it)."""


def improve_job(
    config: ImproveConfig, start: Network | None, progress: ProgressCallback | None = None
) -> ImproveResult:
    """:func:`~cartpole_core.improve.improve` from ``start`` (None: a first network on random
    games), the best network as a Network. After each generation a report carries a
    :class:`GenerationDone` as its ``payload``, for a live chart and a time-lapse."""
    from cartpole_core.improve import improve

    span = config.max_generations + 1

    def on_generation(record: GenerationRecord, model: object) -> None:
        if progress is not None:
            done = GenerationDone(record, to_network(model, keep_file=False))
            fraction = min(1.0, (record.generation + 1) / span)
            progress(Progress(fraction, f"generation {record.generation}: mean {record.mean:.1f}", {}, done))

    result = improve(config, None if start is None else from_network(start), progress, on_generation)
    return replace(result, model=to_network(result.model))


def notebook_job(config: NotebookConfig, progress: ProgressCallback | None = None) -> NotebookResult:
    """:func:`~cartpole_core.pipeline.run_notebook`, its network as a Network."""
    from cartpole_core.pipeline import run_notebook

    result = run_notebook(config, progress)
    return replace(result, model=to_network(result.model))


def load_network_job(keras_file: bytes, progress: ProgressCallback | None = None) -> Network:
    """A ``.keras`` file (an upload, a saved run) loaded in safe mode and checked, as a
    Network; a :class:`UserError` for anything that is not a safe model of observations to
    action probabilities."""
    from cartpole_core.storage import model_from_bytes

    return to_network(model_from_bytes(keras_file))


@dataclass(frozen=True)
class Played:
    """A player and random play on the same games, with GIFs of the best, the worst and
    random play on the best game."""

    result: EvaluationResult
    baseline: EvaluationResult
    """Random play on the very same games."""
    gifs: dict[str, tuple[bytes, str]]
    """``"best"``, ``"worst"``, ``"random"`` -> (GIF bytes, caption)."""


def play_job(
    policy: Policy, config: EvaluationConfig, max_gif_frames: int, progress: ProgressCallback | None = None
) -> Played:
    """``policy`` and random play on the games of ``config``, and three filmed games of at most
    ``max_gif_frames`` frames each (a long game keeps every k-th step). Filming holds every
    frame of a game in memory (~0.7 MB each for CartPole), which is why it runs as a job."""
    from cartpole_core.evaluate import evaluate
    from cartpole_core.policies import RandomPolicy

    result = evaluate(policy, config, progress)
    baseline = evaluate(RandomPolicy(policy.n_actions), config)
    return Played(result, baseline, film_job(policy, result, baseline, max_gif_frames))


def film_job(
    policy: Policy,
    result: EvaluationResult,
    baseline: EvaluationResult,
    max_gif_frames: int,
    progress: ProgressCallback | None = None,
) -> dict[str, tuple[bytes, str]]:
    """The GIFs of :attr:`Played.gifs` for an evaluation already played: ``policy``'s best and
    worst games of ``result`` and random play on the best one (``baseline``: random play on the
    same games), each of at most ``max_gif_frames`` frames, played again from their starts
    (e.g. the notebook's evaluation, which films nothing)."""
    from cartpole_core.evaluate import record_episode
    from cartpole_core.gif import frames_to_gif
    from cartpole_core.policies import RandomPolicy
    from cartpole_core.progress import report

    config = result.config

    def film(player: Policy, game: int, steps: int) -> tuple[bytes, float]:
        stride = gif_stride(steps, max_gif_frames, smallest=2)
        episode = record_episode(player, config, game, frame_stride=stride)
        return frames_to_gif(episode.frames, frame_stride=stride), episode.score

    gifs = {}
    for i, (label, game) in enumerate((("best", result.best_game), ("worst", result.worst_game))):
        data, score = film(policy, game, int(result.lengths[game]))
        gifs[label] = (data, f"{label.capitalize()} game (#{game + 1}): score {score:g}")
        report(progress, (i + 1) / 3, f"filmed the {label} game")
    randomly = RandomPolicy(policy.n_actions)
    data, score = film(randomly, result.best_game, int(baseline.lengths[result.best_game]))
    gifs["random"] = (data, f"Random play on the same game (#{result.best_game + 1}): score {score:g}")
    report(progress, 1.0, "filmed random play")
    return gifs


def timelapse_job(
    networks: list[tuple[int, Network]],
    config: EvaluationConfig,
    max_gif_frames: int,
    means: dict[int, float] | None = None,
    progress: ProgressCallback | None = None,
) -> bytes:
    """One game (game 0 of ``config``: the same start for all) played by each generation's
    network, one after another, labelled ``generation N: mean M, this game S`` (M from
    ``means``, the generation's evaluation mean, when given), as one GIF of at most
    ``max_gif_frames`` frames (every generation's game fits: games last up to
    ``config.goal_steps``)."""
    from cartpole_core.evaluate import record_episode
    from cartpole_core.gif import frames_to_gif, label_frames
    from cartpole_core.policies import ModelPolicy
    from cartpole_core.progress import report

    stride = gif_stride(len(networks) * config.goal_steps, max_gif_frames, smallest=5)
    frames: list = []
    for i, (generation, network) in enumerate(networks):
        episode = record_episode(ModelPolicy(network), config, 0, frame_stride=stride)
        mean = "" if means is None or generation not in means else f"mean {means[generation]:.0f}, "
        frames += label_frames(episode.frames, f"generation {generation}: {mean}this game {episode.score:g}")
        report(progress, (i + 1) / len(networks), f"filmed generation {generation}")
    return frames_to_gif(frames, frame_stride=stride)


def random_play_job(
    config: EvaluationConfig, n_actions: int, max_gif_frames: int, progress: ProgressCallback | None = None
) -> tuple[EvaluationResult, bytes]:
    """Random play on the games of ``config``, and its first game filmed (at most
    ``max_gif_frames`` frames)."""
    from cartpole_core.evaluate import evaluate, record_episode
    from cartpole_core.gif import frames_to_gif
    from cartpole_core.policies import RandomPolicy

    player = RandomPolicy(n_actions)
    result = evaluate(player, config, progress)
    stride = gif_stride(int(result.lengths[0]), max_gif_frames)
    episode = record_episode(player, config, game=0, frame_stride=stride)
    return result, frames_to_gif(episode.frames, frame_stride=stride)


def film_game_job(game: HumanGame, max_gif_frames: int, progress: ProgressCallback | None = None) -> bytes:
    """A person's game (Play it yourself) replayed and filmed: :func:`cartpole_core.human.film`."""
    from cartpole_core.human import film

    return film(game, max_gif_frames)


def is_quick(fn: Any, args: tuple) -> bool:
    """Whether a job takes well under a second whatever else runs, so it belongs in the quick
    lane (:data:`cartpole_core.cluster.QUICK_SLOTS`: in the waiting process, never queued behind
    the engine's long jobs): random games (a generation, random play) of an env whose games all
    step in one vectorised pass. Slower envs' games and everything that trains or films many
    games queue for a CPU."""
    from cartpole_core.envs import env_info
    from cartpole_core.generate import GenerationConfig, generate

    if fn is generate and args and isinstance(args[0], GenerationConfig):
        return env_info(args[0].env_id).has_vector_env
    if fn is random_play_job and args and isinstance(args[0], EvaluationConfig):
        return env_info(args[0].env_id).has_vector_env
    return False
