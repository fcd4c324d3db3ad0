"""Command line: ``python -m cartpole_core SUBCOMMAND`` or ``cartpole-lab SUBCOMMAND`` once installed
(generate, train, evaluate, run, improve, sweep).

Every subcommand takes ``--json`` and then prints exactly one JSON object on stdout.
Progress goes to stderr. A user's mistake prints one line on stderr and exits 2.
TensorFlow runs on one thread, as the dashboard's workers train, so a command gives the
numbers the dashboard shows on any machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from cartpole_core import __version__
from cartpole_core.envs import DEFAULT_ENV_ID, PLAYERS, selection_words
from cartpole_core.errors import UserError, default
from cartpole_core.evaluate import EvaluationConfig, EvaluationResult, evaluate, record_episode
from cartpole_core.generate import GenerationConfig, GenerationResult, generate
from cartpole_core.progress import Progress, ProgressCallback
from cartpole_core.storage import save_dataset, to_jsonable


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


_bar_line_open = [False]  # a progress bar is drawn and its line not yet ended


def _bar(quiet: bool) -> ProgressCallback | None:
    """A text progress bar on stderr, redrawn at most 10 times a second."""
    if quiet:
        return None
    last = [0.0]

    def draw(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] < 0.1 and p.fraction < 1.0:
            return
        last[0] = now
        filled = int(p.fraction * 30)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {p.fraction:4.0%} {p.message[:60]:<60}")
        _bar_line_open[0] = p.fraction < 1.0
        if not _bar_line_open[0]:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return draw


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what TensorFlow's C++ side writes to stderr while it starts (CUDA probes)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import_tensorflow() -> None:
    with _quiet_native_stderr():
        from cartpole_core.model import import_keras

        import_keras()
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs here, not at the first op


# ---------------------------------------------------------------- JSON shapes


def generation_json(result: GenerationResult) -> dict[str, Any]:
    return {
        "env_id": result.config.env_id,
        "games": result.games,
        "accepted": result.accepted,
        "acceptance_rate": result.acceptance_rate,
        "accepted_mean": result.accepted_mean,
        "accepted_median": result.accepted_median,
        "accepted_counts": {f"{score:g}": n for score, n in result.accepted_counts.items()},
        "samples": len(result.dataset),
        "keep_top": result.config.keep_top,
        "threshold": result.threshold,
        "seconds": result.seconds,
    }


def evaluation_json(result: EvaluationResult) -> dict[str, Any]:
    return {
        "env_id": result.config.env_id,
        "policy": result.policy_name,
        "games": result.config.games,
        "scores": to_jsonable(result.scores),
        "mean": result.mean,
        "median": result.median,
        "min": result.min,
        "max": result.max,
        "choice_ratios": to_jsonable(result.choice_ratios),
        "seconds": result.seconds,
    }


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(to_jsonable(data)) if args.json else text)


def _counter_text(counts: dict[float, int]) -> str:
    return "Counter({" + ", ".join(f"{s:g}: {n}" for s, n in counts.items()) + "})"


# ---------------------------------------------------------------- subcommands


def cmd_generate(args: argparse.Namespace) -> None:
    config = _generation_config(args)
    result = generate(config, _bar(args.quiet))
    dataset = result.require_accepted()
    if args.out:
        save_dataset(dataset, args.out)
    data = generation_json(result)
    text = (
        f"Played {result.games} games of {config.env_id} in {result.seconds:.2f} s; kept {result.accepted} "
        f"({result.acceptance_rate:.1%}), {len(dataset)} rows"
        + (f": {config.keeping()}, score ≥ {result.threshold:g}" if config.keep_top is not None else "")
        + "\n"
        f"Average accepted score: {result.accepted_mean:.2f}\n"
        f"Median accepted score: {result.accepted_median:g}\n"
        f"{_counter_text(result.accepted_counts)}" + (f"\nSaved {args.out}" if args.out else "")
    )
    _emit(args, data, text)


def cmd_train(args: argparse.Namespace) -> None:
    from cartpole_core.model import ModelConfig, parse_hidden  # settings only: no TensorFlow yet
    from cartpole_core.training import TrainingConfig

    model_cfg = ModelConfig(hidden=parse_hidden(args.hidden), dropout=args.dropout, learning_rate=args.lr).validate()
    train_cfg = TrainingConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=args.validation_split,
        seed=args.seed,
        tensorboard_dir=args.tensorboard,
    )
    train_cfg.validate()
    if args.out and Path(args.out).suffix != ".keras":
        raise UserError(f"Models are saved as .keras files: use --out {Path(args.out).with_suffix('.keras')}.")
    from cartpole_core.storage import load_dataset

    dataset = load_dataset(args.data)  # after the settings: a wrong one is said before any work
    _import_tensorflow()
    from cartpole_core.model import build_model
    from cartpole_core.storage import save_model
    from cartpole_core.training import train

    model = build_model(dataset.obs_dim, dataset.n_actions, model_cfg, seed=args.seed)
    result = train(model, dataset, train_cfg, _bar(args.quiet))
    if args.out:
        save_model(model, args.out)
    data = {
        "epochs": result.epochs_completed,
        "history": result.epoch_history,
        "samples": result.samples,
        "seconds": result.seconds,
    }
    lines = [
        f"epoch {i + 1}: " + ", ".join(f"{k} {v[i]:.4f}" for k, v in result.epoch_history.items())
        for i in range(result.epochs_completed)
    ]
    lines.append(
        f"Trained on {result.samples} rows in {result.seconds:.1f} s" + (f"; saved {args.out}" if args.out else "")
    )
    _emit(args, data, "\n".join(lines))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from cartpole_core.envs import env_info
    from cartpole_core.policies import Policy, RandomPolicy

    info = env_info(args.env)
    steps = {} if args.goal_steps is None else {"goal_steps": args.goal_steps}
    config = EvaluationConfig.for_env(info.env_id, games=args.games, seed=args.seed, **steps).validate()
    names = args.model or ["random"]
    policies: list[Policy] = []
    for name in names:
        if name == "random":
            policies.append(RandomPolicy(info.n_actions))
            continue
        from cartpole_core.storage import load_model

        _import_tensorflow()
        from cartpole_core.policies import ModelPolicy

        policies.append(ModelPolicy(load_model(name), name=Path(name).name))
    for p in policies:
        if getattr(p, "obs_dim", info.obs_dim) != info.obs_dim or p.n_actions != info.n_actions:
            raise UserError(
                f"Model {p.name} does not fit {info.env_id} ({info.obs_dim} observation values, "
                f"{info.n_actions} actions): pass --env with the env it was trained on."
            )
    bar = _bar(args.quiet)
    policy: Policy
    if len(policies) > 1:
        from cartpole_core.ensemble import EnsemblePolicy, evaluate_ensemble

        ensemble = EnsemblePolicy(policies, vote=args.vote)
        ens = evaluate_ensemble(ensemble, config, bar)
        result, policy = ens.ensemble, ensemble
        data = evaluation_json(result)
        data["members"] = [evaluation_json(m) for m in ens.members]
        data["disagreement"] = ens.disagreement
    else:
        policy = policies[0]
        result = evaluate(policy, config, bar)
        data = evaluation_json(result)
    text = [
        f"{result.policy_name} on {config.games} games of {config.env_id} ({result.seconds:.2f} s)",
        f"Average score: {result.mean:.1f} (median {result.median:g}, min {result.min:g}, max {result.max:g})",
        " ".join(f"Choice {a}: {r:.2f}" for a, r in enumerate(result.choice_ratios)),
    ]
    if "members" in data:
        text += [f"  {m['policy']}: average {m['mean']:.1f}" for m in data["members"]]
    if args.gif:
        from cartpole_core.gif import frames_to_gif
        from cartpole_core.storage import atomic_write

        episode = record_episode(policy, config, result.best_game, frame_stride=args.gif_stride)
        gif = frames_to_gif(episode.frames, frame_stride=args.gif_stride)
        atomic_write(Path(args.gif), gif)
        text.append(f"Saved {args.gif}: game {episode.game}, score {episode.score:g}, {len(gif) / 1e3:.0f} KB")
        data["gif"] = {"path": args.gif, "game": episode.game, "score": episode.score, "bytes": len(gif)}
    _emit(args, data, "\n".join(text))


def cmd_improve(args: argparse.Namespace) -> None:
    from cartpole_core.envs import env_info

    env_info(args.env)
    _import_tensorflow()
    from cartpole_core.improve import ImproveConfig, improve
    from cartpole_core.model import parse_hidden
    from cartpole_core.storage import load_model, save_model

    config = ImproveConfig.for_env(
        args.env,
        first_games=args.first_games,
        first_epochs=args.first_epochs,
        max_generations=args.generations,
        games_per_generation=args.games,
        keep_top=args.keep_top,
        hidden=parse_hidden(args.hidden),
        learning_rate=args.lr,
        data=args.data_mode,
        fallback=not args.no_fallback,
        epochs=args.epochs,
        batch_size=args.batch_size,
        sample_actions=not args.argmax,
        temperature=args.temperature,
        epsilon=args.epsilon,
        eval_games=args.eval_games,
        confirm_games=args.confirm_games,
        max_seconds=args.max_seconds,
        seed=args.seed,
        **({} if args.target is None else {"target_mean": args.target}),
        **({} if args.goal_steps is None else {"goal_steps": args.goal_steps}),
        **({} if args.player is None else {"player": args.player}),
        **({} if args.progress_dim is None else {"progress_dim": None if args.progress_dim < 0 else args.progress_dim}),
    ).validate()
    if args.out and Path(args.out).suffix != ".keras":
        raise UserError(f"Models are saved as .keras files: use --out {Path(args.out).with_suffix('.keras')}.")
    start_model = load_model(args.model) if args.model else None
    result = improve(config, start_model, _bar(args.quiet))
    if args.out:
        save_model(result.model, args.out)
    generations = [
        {
            "generation": g.generation,
            "mean": g.mean,
            "median": g.median,
            "min": g.min,
            "max": g.max,
            "samples": g.samples,
            "kept_games": g.kept_games,
            "accuracy": g.accuracy,
            "play_mean": g.play_mean,
            "greedy_mean": g.greedy_mean,
            "sampled_mean": g.sampled_mean,
            "started_from": g.started_from,
            "env_steps": g.env_steps,
            "seconds": g.seconds,
            "elapsed": g.elapsed,
        }
        for g in result.generations
    ]
    data = {
        "env_id": config.env_id,
        "seed": config.seed,
        "player": config.player,
        "generations": generations,
        "best_generation": result.best_generation,
        "best_mean": result.best_mean,
        "confirm_games": config.confirm_games,
        "confirm_mean": result.confirm_mean,
        "seconds": result.seconds,
    }
    lines = [
        f"generation {g['generation']}: mean {g['mean']:.1f} (median {g['median']:g}, min {g['min']:g}, "
        f"max {g['max']:g}; greedy {g['greedy_mean']:.1f}, sampled {g['sampled_mean']:.1f}), "
        f"{g['samples']} rows, {g['elapsed']:.1f} s"
        for g in generations
    ]
    picked = selection_words(config.env_id, config.progress_dim)
    lines.insert(0, f"Means are of the {config.player} player; games picked by {picked}")
    lines.append(
        f"Best: generation {result.best_generation}, {config.player} mean {result.best_mean:.1f} "
        f"over {config.eval_games} games"
    )
    if result.confirm_mean is not None:
        lines.append(
            f"Confirmation: {config.player} mean {result.confirm_mean:.2f} over {config.confirm_games} fresh games"
        )
    lines.append(f"{result.seconds:.1f} s" + (f"; saved {args.out}" if args.out else ""))
    _emit(args, data, "\n".join(lines))


def cmd_run(args: argparse.Namespace) -> None:
    from cartpole_core.pipeline import NotebookConfig, run_notebook

    gen = _generation_config(args).validate()
    started = time.perf_counter()
    _import_tensorflow()
    import_seconds = time.perf_counter() - started
    result = run_notebook(NotebookConfig(generation=gen, evaluation_games=args.eval_games), _bar(args.quiet))
    g, t, e, r = result.generation, result.training, result.evaluation, result.random_evaluation
    seconds = dict(result.seconds, import_tensorflow=import_seconds, total=time.perf_counter() - started)
    data = {
        "generate": generation_json(g),
        "train": {"epochs": t.epochs_completed, "history": t.epoch_history, "samples": t.samples, "seconds": t.seconds},
        "evaluate": evaluation_json(e),
        "random": evaluation_json(r),
        "seconds": seconds,
    }
    ratios = e.choice_ratios
    text = "\n".join(
        [
            f"Average accepted score: {g.accepted_mean:.2f}",
            f"Median accepted score: {g.accepted_median:g}",
            _counter_text(g.accepted_counts),
            f"Kept {g.accepted} of {g.games} games ({g.acceptance_rate:.1%}), {len(g.dataset)} rows",
            f"Training: loss {t.final_loss:.4f}, accuracy {t.final_accuracy:.4f} after {t.epochs_completed} epochs",
            f"Average score: {e.mean:.1f} over {e.config.games} games (random play: {r.mean:.1f})",
            " ".join(f"Choice {a}: {ratios[a]:.2f}" for a in reversed(range(len(ratios)))),
            "Seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()),
        ]
    )
    _emit(args, data, text)


def cmd_sweep(args: argparse.Namespace) -> None:
    _import_tensorflow()  # trials run on Ray workers; their settings' classes live beside Keras
    from cartpole_core.improve import ImproveConfig
    from cartpole_core.pipeline import NotebookConfig
    from cartpole_core.sweep import Base, SweepConfig, parse_seeds, parse_vary, settings_text, sweep

    base: Base
    if args.improve:
        goal = {} if args.goal_steps is None else {"goal_steps": args.goal_steps}
        base = ImproveConfig.for_env(args.env, eval_games=args.eval_games, confirm_games=0, **goal).validate()
    else:
        generation = _generation_config(args, seed=0).validate()
        base = NotebookConfig(generation=generation, evaluation_games=args.eval_games)
    if not args.vary:
        raise UserError("Say what to vary: --vary setting=value,value (e.g. --vary score_requirement=40,50,60).")
    config = SweepConfig(base, tuple(parse_vary(base, v) for v in args.vary), parse_seeds(args.seeds)).validate()
    result = sweep(config, _bar(args.quiet))
    trials = [
        {
            "settings": t.settings,
            "seed": t.seed,
            "status": t.status,
            "accepted": t.scores.accepted if t.scores else None,
            "accuracy": t.scores.accuracy if t.scores else None,
            "mean": t.scores.mean if t.scores else None,
            "median": t.scores.median if t.scores else None,
            "seconds": t.scores.seconds if t.scores else None,
            "node": t.node,
            "error": t.error,
        }
        for t in result.trials
    ]
    summary = [
        {
            "settings": s.settings,
            "mean": s.mean,
            "ci_low": s.ci_low,
            "ci_high": s.ci_high,
            "n": s.n,
            "clipped": s.clipped,
        }
        for s in result.summary
    ]
    best = next((row for row, s in zip(summary, result.summary, strict=True) if s is result.best), None)
    data = {
        "mode": config.mode,
        "env_id": config.env_id,
        "trials": trials,
        "summary": summary,
        "best": best,
        "workers": result.workers,
        "nodes": result.nodes,
        "seconds": result.seconds,
    }
    lines = [
        f"{settings_text(t.settings)}, seed {t.seed}: "
        + (f"mean {t.scores.mean:.1f}, {t.scores.accepted} kept, {t.scores.seconds:.1f} s" if t.scores else t.status)
        + (f" ({t.error})" if t.error else "")
        for t in result.trials
    ]
    lines += [
        f"{settings_text(s.settings)}: mean {s.mean:.1f} over {s.n} seed(s), 95 % CI {s.ci_low:.1f} – {s.ci_high:.1f}"
        + (" (cut at the score range)" if s.clipped else "")
        for s in result.summary
    ]
    if result.best is not None:
        lines.append(f"Best: {settings_text(result.best.settings)} (mean {result.best.mean:.1f})")
    lines.append(f"{len(trials)} trials on {result.workers} CPU(s), {result.nodes} node(s), in {result.seconds:.1f} s")
    _emit(args, data, "\n".join(lines))


# ---------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")


def _generation_config(args: argparse.Namespace, seed: int | None = None) -> GenerationConfig:
    """The settings given by :func:`_generation_args`'s flags (``seed`` instead of ``--seed``):
    the env's own defaults (:func:`cartpole_core.envs.env_defaults`) where a flag is not given."""
    if args.score_requirement is not None and args.keep_top is not None:
        raise UserError("Give --score-requirement or --keep-top, not both: a game is kept by one rule.")
    changes: dict[str, Any] = {"seed": args.seed if seed is None else seed}
    if args.games is not None:
        changes["games"] = args.games
    if args.goal_steps is not None:
        changes["goal_steps"] = args.goal_steps
    if args.score_requirement is not None:
        changes.update(score_requirement=args.score_requirement, keep_top=None)
    if args.keep_top is not None:
        changes["keep_top"] = args.keep_top
    return GenerationConfig.for_env(args.env, **changes)


def _generation_args(p: argparse.ArgumentParser, seed: bool = True) -> None:
    d = GenerationConfig()
    p.add_argument("--env", default=d.env_id, help=f"Gymnasium env id (default {d.env_id})")
    p.add_argument(
        "--games", type=int, help=f"random games to play (default: the env's; {d.games} for CartPole, 2000 others)"
    )
    p.add_argument("--goal-steps", type=int, help="most steps a game lasts (default: the env's own limit)")
    p.add_argument(
        "--score-requirement",
        type=float,
        help=f"keep games scoring at least this (default: {d.score_requirement:g} for CartPole; "
        "other envs keep their best 5 %%)",
    )
    p.add_argument(
        "--keep-top",
        type=float,
        metavar="SHARE",
        help="keep the best SHARE of games instead of a fixed score, e.g. 0.05 for the best 5 %%",
    )
    if seed:
        p.add_argument("--seed", type=int, default=d.seed, help="seed (default %(default)s)")


def build_parser(prog: str = "python -m cartpole_core") -> argparse.ArgumentParser:
    # settings only: none of these imports TensorFlow; every default below is its dataclass's
    from cartpole_core.ensemble import EnsembleConfig
    from cartpole_core.improve import DATA_MODES, ImproveConfig
    from cartpole_core.model import ModelConfig
    from cartpole_core.pipeline import NotebookConfig
    from cartpole_core.sweep import SweepConfig
    from cartpole_core.training import TrainingConfig

    parser = _Parser(
        prog=prog,
        description="CartPole Lab: play random games, keep the good ones, train a network to imitate them.",
    )
    parser.add_argument("--version", action="version", version=f"cartpole_core {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("generate", help="play random games and keep the good ones")
    _generation_args(p)
    p.add_argument("--out", help="save the dataset to this .npz file")
    _common(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("train", help="train a network on a dataset")
    p.add_argument("--data", required=True, help="dataset .npz made by generate (or a run .zip)")
    model, training = ModelConfig(), TrainingConfig()
    p.add_argument("--epochs", type=int, default=training.epochs, help="passes over the data (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=training.batch_size, help="rows per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=model.learning_rate, help="Adam learning rate (default %(default)s)")
    p.add_argument(
        "--hidden", default=",".join(map(str, model.hidden)), help="hidden layer sizes (default %(default)s)"
    )
    p.add_argument("--dropout", type=float, default=model.dropout, help="dropout rate (default %(default)s)")
    p.add_argument(
        "--validation-split",
        type=float,
        default=training.validation_split,
        help="share of games held out (default %(default)s)",
    )
    p.add_argument("--tensorboard", help="write TensorBoard logs to this folder")
    p.add_argument("--seed", type=int, default=training.seed, help="seed (default %(default)s)")
    p.add_argument("--out", help="save the model to this .keras file")
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="let a model (or several, or random) play")
    p.add_argument(
        "--model", action="append", help="a .keras file (or a run .zip), or 'random'; repeat for an ensemble"
    )
    p.add_argument(
        "--vote",
        choices=("soft", "hard"),
        default=EnsembleConfig().vote,
        help="how an ensemble votes (default %(default)s)",
    )
    p.add_argument("--env", default=DEFAULT_ENV_ID, help=f"Gymnasium env id (default {DEFAULT_ENV_ID})")
    evaluation = EvaluationConfig()
    p.add_argument("--games", type=int, default=evaluation.games, help="games to play (default %(default)s)")
    p.add_argument("--goal-steps", type=int, help="most steps a game lasts (default: the env's own limit)")
    p.add_argument("--seed", type=int, default=evaluation.seed, help="seed of the games (default %(default)s)")
    p.add_argument("--gif", help="save the best game as an animated GIF here")
    p.add_argument("--gif-stride", type=int, default=2, help="keep every k-th frame in the GIF (default 2)")
    _common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="the whole notebook with its defaults")
    _generation_args(p)
    p.add_argument(
        "--eval-games",
        type=int,
        default=default(NotebookConfig, "evaluation_games"),
        help="games the network plays (default %(default)s)",
    )
    _common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("improve", help="generations: keep the network's own best games and retrain")
    d = ImproveConfig()
    p.add_argument("--model", help="start from this .keras model (default: a first network trained on random games)")
    p.add_argument("--env", default=DEFAULT_ENV_ID, help=f"Gymnasium env id (default {DEFAULT_ENV_ID})")
    for flag, name, kind, text in (
        ("--first-games", "first_games", int, "random games whose best train generation 0's network"),
        ("--first-epochs", "first_epochs", int, "its epochs on them"),
        ("--generations", "max_generations", int, "most generations"),
        ("--games", "games_per_generation", int, "games played per generation"),
        ("--keep-top", "keep_top", float, "share of games kept"),
        ("--epochs", "epochs", int, "fine-tuning epochs per generation"),
        ("--batch-size", "batch_size", int, "rows per gradient step"),
        ("--temperature", "temperature", float, "below 1 sharpens the sampling"),
        ("--epsilon", "epsilon", float, "share of random actions while collecting"),
        ("--eval-games", "eval_games", int, "evaluation games per generation"),
        ("--confirm-games", "confirm_games", int, "fresh games to confirm the result"),
        ("--max-seconds", "max_seconds", float, "start no generation after this"),
        ("--seed", "seed", int, "seed"),
    ):
        p.add_argument(flag, type=kind, default=getattr(d, name), help=f"{text} (default %(default)s)")
    p.add_argument(
        "--hidden", default=",".join(map(str, d.hidden)), help="the first network's hidden layers (default %(default)s)"
    )
    p.add_argument(
        "--lr", type=float, default=d.learning_rate, help="the first network's Adam learning rate (default %(default)s)"
    )
    p.add_argument(
        "--data-mode",
        choices=DATA_MODES,
        default=d.data,
        help="best: the best games seen so far; replace: this generation's best; add: all kept (default %(default)s)",
    )
    p.add_argument(
        "--no-fallback",
        action="store_true",
        help="let a generation build on a network worse than the best so far (default: start again from the best)",
    )
    p.add_argument("--argmax", action="store_true", help="collect games with argmax instead of sampling")
    p.add_argument(
        "--player",
        choices=PLAYERS,
        help="the player whose evaluation counts: greedy (most probable action) or sampled "
        "(default: the env's; sampled for LunarLander-v3, greedy elsewhere); both are reported",
    )
    p.add_argument(
        "--progress-dim",
        type=int,
        help="observation whose highest value in a game breaks ties between equal scores when picking the "
        "best games (default: the env's; 0, the car's position, for MountainCar-v0; none elsewhere); -1: none",
    )
    p.add_argument(
        "--target",
        type=float,
        help="stop at this evaluation mean (default: the env's solved score; 500 for CartPole-v1)",
    )
    p.add_argument("--goal-steps", type=int, help="most steps a game lasts (default: the env's own limit)")
    p.add_argument("--out", help="save the best model to this .keras file")
    _common(p)
    p.set_defaults(func=cmd_improve)

    p = sub.add_parser(
        "sweep",
        help="vary settings over seeds, each trial a Ray task (local Ray, or the cluster at RAY_ADDRESS)",
        description="Each combination of the varied values runs once per seed: generate -> train -> evaluate "
        "(or generations with --improve). Any setting can be varied by its name: games, goal_steps, "
        "score_requirement, hidden (64x64), dropout, learning_rate, epochs, batch_size, validation_split, "
        "evaluation_games; with --improve, the generations settings (keep_top, epochs, games_per_generation, ...).",
    )
    _generation_args(p, seed=False)
    p.add_argument(
        "--vary",
        action="append",
        metavar="SETTING=V1,V2",
        help="a setting and its values, e.g. score_requirement=40,50,60 or hidden=64x64,128x128; repeat (up to 3)",
    )
    sweep_defaults = SweepConfig()
    sweep_base = sweep_defaults.base  # the notebook pipeline by default
    p.add_argument(
        "--seeds",
        default=f"{sweep_defaults.seeds[0]}-{sweep_defaults.seeds[-1]}",
        help="seeds of every combination, e.g. 0-4 or 0,3,7 (default %(default)s)",
    )
    p.add_argument(
        "--eval-games",
        type=int,
        default=sweep_base.evaluation_games if isinstance(sweep_base, NotebookConfig) else sweep_base.eval_games,
        help="games each trained network plays (default %(default)s)",
    )
    p.add_argument("--improve", action="store_true", help="each trial runs generations (improve) instead")
    _common(p)
    p.set_defaults(func=cmd_sweep)
    return parser


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """TensorFlow on one thread while a command runs, as the dashboard's workers train
    (:data:`cartpole_core.recipes.ONE_THREAD_ENV`, set before TensorFlow starts): the command
    gives the page's numbers whatever the machine's core count. The environment is restored after."""
    from cartpole_core.recipes import ONE_THREAD_ENV

    saved = {name: os.environ.get(name) for name in ONE_THREAD_ENV}
    os.environ.update(ONE_THREAD_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv: Sequence[str] | None = None, prog: str = "python -m cartpole_core") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        with _one_thread():
            args.func(args)
    except UserError as exc:
        sys.stderr.write(("\n" if _bar_line_open[0] else "") + f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return 0


def console() -> int:
    """The ``cartpole-lab`` command that ``pip install`` puts on the PATH (same subcommands)."""
    return main(prog="cartpole-lab")
