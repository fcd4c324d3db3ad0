"""Stages 1 to 5: generation, training, playing, GIF, the whole CLI run.

Each stage times the notebook's way (:mod:`bench.reference`) and ours in the same process
and the same run, ``settings.reps`` times, alternating which goes first.
"""

from __future__ import annotations

import cProfile
import io
import json
import math
import os
import pstats
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import reference
from bench.blas import openblas_threads
from bench.core import (
    Context,
    Row,
    StageResult,
    alternate,
    fmt_bytes,
    fmt_s,
    fmt_times,
    log,
    markdown_table,
    median,
    stage,
    timed,
)


@dataclass
class Measured:
    """A stage callable's own timing, when the call does more than the timed work."""

    seconds: float
    value: Any


def _secs(times: list[float], results: list[Any]) -> list[float]:
    """The Measured seconds when a call reported its own, else the outer timing."""
    return [r.seconds if isinstance(r, Measured) else t for t, r in zip(times, results, strict=True)]


def _val(result: Any) -> Any:
    return result.value if isinstance(result, Measured) else result


def _z(diff: float, se: float) -> float:
    """diff / se; NaN when either is not a finite number (too few accepted games)."""
    return diff / se if math.isfinite(diff) and math.isfinite(se) and se > 0 else math.nan


def _agree(z: float) -> str:
    if not math.isfinite(z):
        return "n/a (too few accepted games)"
    return "agree" if abs(z) < 3 else "**differ**"


def _profile_share(fn: Any, caller: str, funcname: str, path_part: str) -> tuple[float, float]:
    """(share of ``fn``'s profiled time spent in calls of ``funcname`` (a function in a
    file whose path contains ``path_part``) made directly from ``caller``, profiled seconds)."""
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict = stats.stats  # type: ignore[attr-defined]
    total = max(stats.total_tt, 1e-12)  # type: ignore[attr-defined]
    inside = 0.0
    for (path, _line, name), (_cc, _nc, _tt, ct, callers) in raw.items():
        if name == funcname and path_part in path and any(c[2] == caller for c in callers):
            inside += ct
    return inside / total, total


# ---------------------------------------------------------------- 1. generation


def _pooled_reference(results: list[reference.PopulationResult]) -> dict[str, float]:
    accepted = [s for r in results for s in r.accepted_scores]
    scores = [s for r in results for s in r.scores]
    return {
        "games": sum(r.games for r in results),
        "accepted": len(accepted),
        "rate": len(accepted) / max(1, len(scores)),
        "mean": float(np.mean(accepted)) if accepted else math.nan,
        "median": float(np.median(accepted)) if accepted else math.nan,
        "var": float(np.var(accepted, ddof=1)) if len(accepted) > 1 else math.nan,
        "score_mean": float(np.mean(scores)),
        "score_var": float(np.var(scores, ddof=1)),
        "rows": sum(len(r.training_data) for r in results),
        "env_steps": sum(r.env_steps for r in results),
    }


def _pooled_ours(results: list[Any]) -> dict[str, float]:
    accepted = np.concatenate([r.dataset.game_scores for r in results]).astype(np.float64)
    scores = np.concatenate([r.scores for r in results]).astype(np.float64)
    return {
        "games": int(scores.size),
        "accepted": int(accepted.size),
        "rate": accepted.size / max(1, scores.size),
        "mean": float(accepted.mean()) if accepted.size else math.nan,
        "median": float(np.median(accepted)) if accepted.size else math.nan,
        "var": float(np.var(accepted, ddof=1)) if accepted.size > 1 else math.nan,
        "score_mean": float(scores.mean()),
        "score_var": float(np.var(scores, ddof=1)),
        "rows": sum(len(r.dataset) for r in results),
        "env_steps": sum(r.env_steps for r in results),
    }


def _compare_stats(n: int, reps: int, ref: dict[str, float], ours: dict[str, float]) -> tuple[str, bool]:
    """A side-by-side Markdown table of acceptance statistics, and whether all agree."""
    p1, p2 = ref["rate"], ours["rate"]
    p = (ref["accepted"] + ours["accepted"]) / (ref["games"] + ours["games"])
    z_rate = _z(p1 - p2, math.sqrt(p * (1 - p) * (1 / ref["games"] + 1 / ours["games"])))
    z_mean = _z(
        ref["mean"] - ours["mean"],
        math.sqrt(ref["var"] / max(1, ref["accepted"]) + ours["var"] / max(1, ours["accepted"])),
    )
    z_score = _z(
        ref["score_mean"] - ours["score_mean"],
        math.sqrt(ref["score_var"] / ref["games"] + ours["score_var"] / ours["games"]),
    )
    rows = [
        ["games played", f"{ref['games']:,}", f"{ours['games']:,}", ""],
        ["accepted games (score ≥ threshold)", f"{ref['accepted']:,}", f"{ours['accepted']:,}", ""],
        ["acceptance rate", f"{p1:.2%}", f"{p2:.2%}", f"z = {z_rate:+.2f}: {_agree(z_rate)}"],
        ["accepted mean score", f"{ref['mean']:.2f}", f"{ours['mean']:.2f}", f"z = {z_mean:+.2f}: {_agree(z_mean)}"],
        ["accepted median score", f"{ref['median']:g}", f"{ours['median']:g}", "(medians of integer scores)"],
        [
            "mean score of all games",
            f"{ref['score_mean']:.2f}",
            f"{ours['score_mean']:.2f}",
            f"z = {z_score:+.2f}: {_agree(z_score)}",
        ],
        [
            "training rows",
            f"{ref['rows']:,}",
            f"{ours['rows']:,}",
            "notebook: score − 1 rows per accepted game (reset observation not stored); ours: score rows",
        ],
        ["env steps played", f"{ref['env_steps']:,}", f"{ours['env_steps']:,}", ""],
    ]
    table = markdown_table(["statistic", "notebook loop", "ours", "agreement"], rows)
    title = (
        f"Acceptance statistics, {n:,} games × {reps} repetitions pooled (seeds 0–{reps - 1}; the two "
        "use different random streams, so they agree only statistically; |z| < 3 counts as agreement):"
    )
    return title + "\n\n" + table, all(abs(z) < 3 for z in (z_rate, z_mean, z_score) if math.isfinite(z))


@stage(1, "generation", "Generation of random games (threshold 50)")
def generation(ctx: Context) -> StageResult:
    from cartpole_core.generate import GenerationConfig, generate

    s = ctx.settings
    out = StageResult()
    threshold = s.gen_threshold

    def ours_fn(n: int) -> Any:
        return lambda rep: generate(GenerationConfig(games=n, score_requirement=threshold, seed=rep))

    def ref_fn(n: int, sample: bool = False) -> Any:
        return lambda rep: reference.initial_population(n, 500, threshold, seed=rep, sample_from_action_space=sample)

    ours_fn(100)(0)  # warm-up: imports, env registration (not timed)
    all_agree = True
    for i, n in enumerate(s.gen_sizes):
        ref_s, ref_r, our_s, our_r = alternate(s.reps, ref_fn(n), ours_fn(n), f"{n:,} games")
        ratio = median(ref_s) / median(our_s)
        target = "≥ 50× faster" if i == 0 else ""
        out.rows.append(
            Row(
                f"{n:,} games: wall time",
                fmt_times(ref_s),
                fmt_times(our_s),
                ratio,
                target,
                ratio >= 50 if i == 0 else None,
            )
        )
        ref_stats, our_stats = _pooled_reference(ref_r), _pooled_ours(our_r)
        steps_ref = ref_stats["env_steps"] / s.reps
        steps_ours = our_stats["env_steps"] / s.reps
        out.rows.append(
            Row(
                f"{n:,} games: time per env step",
                fmt_s(median(ref_s) / steps_ref),
                fmt_s(median(our_s) / steps_ours),
                None,
            )
        )
        table, agree = _compare_stats(n, s.reps, ref_stats, our_stats)
        all_agree &= agree
        out.details.append(table)
        out.data[f"games_{n}"] = {
            "reference_seconds": ref_s,
            "ours_seconds": our_s,
            "ratio": ratio,
            "reference_stats": ref_stats,
            "ours_stats": our_stats,
        }
        if i == 0:
            sample_s = []
            for rep in range(s.reps):
                t, _ = timed(lambda rep=rep, n=n: ref_fn(n, sample=True)(rep))
                sample_s.append(t)
                log(f"  {n:,} games rep {rep + 1}/{s.reps} ref with action_space.sample(): {fmt_s(t)}")
            r2 = median(sample_s) / median(our_s)
            out.rows.append(
                Row(
                    f"{n:,} games, notebook loop with `env.action_space.sample()`",
                    fmt_times(sample_s),
                    fmt_times(our_s),
                    r2,
                    "(for information)",
                )
            )
            out.data[f"games_{n}"]["reference_sample_seconds"] = sample_s
            # where the time goes (one extra, untimed, profiled run of each)
            share_ours, prof_ours = _profile_share(lambda n=n: ours_fn(n)(0), "play_chunk", "step", "gymnasium")
            n_prof = min(n, 2_000)
            share_ref, prof_ref = _profile_share(
                lambda n=n_prof: ref_fn(n)(0), "initial_population", "step", "gymnasium"
            )
            out.notes.append(
                f"Where the time goes (cProfile, one extra run, profiler overhead included): ours spends "
                f"{share_ours:.0%} of {fmt_s(prof_ours)} inside the Gymnasium vector env's `step` for {n:,} games, "
                f"the rest in our bookkeeping; the notebook loop spends {share_ref:.0%} of its time in "
                f"`env.step` (with Gymnasium's wrappers, {n_prof:,} games profiled)."
            )
            out.data["profile"] = {"ours_step_share": share_ours, "reference_step_share": share_ref}
            out.rows[0].why = (
                f"Gymnasium's own `CartPoleVectorEnv.step` (its per-step `action_space.contains` check included) "
                f"is {share_ours:.0%} of our time; the rest is recording each step. Every env stays busy and steps "
                "are reduced in chunks; going further would mean our own copy of the env's physics, which we do "
                "not write."
            )
    if len(s.gen_sizes) > 1:
        a, b = s.gen_sizes[0], s.gen_sizes[-1]
        da, db = out.data[f"games_{a}"], out.data[f"games_{b}"]
        scale_ours = median(db["ours_seconds"]) / median(da["ours_seconds"])
        scale_ref = median(db["reference_seconds"]) / median(da["reference_seconds"])
        out.notes.append(
            f"Scaling from {a:,} to {b:,} games ({b / a:g}× the games): the notebook loop takes "
            f"{scale_ref:.1f}× the time, ours {scale_ours:.1f}×."
        )
    out.notes.append(
        "Acceptance statistics of both agree within noise."
        if all_agree
        else "**Some acceptance statistics differ by more than 3 standard errors: see the tables.**"
    )
    out.notes.append(
        "The notebook loop is faithful to cell 33: `gym.make('CartPole-v1')` (with Gymnasium's default "
        "wrappers), `random.randrange(0, 2)` per step, the reset observation never stored, "
        "`env.reset()` after each game; its `np.save` of the ragged object array is not timed. "
        "The brief's `env.action_space.sample()` variant is shown for information."
    )
    return out


# ---------------------------------------------------------------- 2. training


@stage(2, "training", "Training at the notebook's settings")
def training(ctx: Context) -> StageResult:
    from cartpole_core.model import ModelConfig, build_model
    from cartpole_core.training import TrainingConfig, train

    s = ctx.settings
    out = StageResult()
    ds = ctx.dataset()
    x, y = ds.observations, ds.one_hot_actions()
    warm = build_model(ds.obs_dim, ds.n_actions, ModelConfig(), seed=999)
    warm.fit(x[:640], y[:640], epochs=1, batch_size=s.train_batch, verbose=0)  # TF start-up, not timed
    del warm

    def ref(rep: int) -> Measured:
        model = build_model(ds.obs_dim, ds.n_actions, ModelConfig(), seed=rep)
        seconds, history = timed(lambda: reference.fit(model, x, y, s.train_epochs, s.train_batch))
        return Measured(seconds, (float(history.history["accuracy"][-1]), float(history.history["loss"][-1])))

    def ours(rep: int) -> Measured:
        model = build_model(ds.obs_dim, ds.n_actions, ModelConfig(), seed=rep)
        config = TrainingConfig(epochs=s.train_epochs, batch_size=s.train_batch, seed=rep)
        seconds, result = timed(lambda: train(model, ds, config))
        if rep == 0:
            ctx.cache["model"] = model
        return Measured(seconds, (float(result.final_accuracy), float(result.final_loss)))

    ref_t, ref_r, our_t, our_r = alternate(s.reps, ref, ours, "training")
    variants = {  # Keras's own ways to the same end, timed once each (information, not targets)
        "plain `fit` with XLA (`jit_compile=True`)": {"jit_compile": True},
        "plain `fit` with `steps_per_execution=64`": {"steps_per_execution": 64},
    }
    variant_rows = []
    for label, options in variants.items():
        model = build_model(ds.obs_dim, ds.n_actions, ModelConfig(), seed=0)
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"], **options)
        seconds, history = timed(lambda m=model: reference.fit(m, x, y, s.train_epochs, s.train_batch))
        log(f"  {label}: {fmt_s(seconds)}")
        variant_rows.append((label, seconds, float(history.history["accuracy"][-1])))
    ref_s, our_s = _secs(ref_t, ref_r), _secs(our_t, our_r)
    ref_acc = [_val(r)[0] for r in ref_r]
    our_acc = [_val(r)[0] for r in our_r]
    ratio = median(ref_s) / median(our_s)
    steps = math.ceil(len(ds) / s.train_batch) * s.train_epochs
    acc_diff = median(our_acc) - median(ref_acc)
    out.rows += [
        Row(
            f"{len(ds):,} rows, {s.train_epochs} epochs, batch {s.train_batch}: wall time",
            fmt_times(ref_s),
            fmt_times(our_s),
            ratio,
            "ratio ≥ 1.5",
            ratio >= 1.5,
            "same network, data, batch size and epochs as plain `fit`; ours runs a chunk of batches per call in a "
            "compiled loop instead of a Python round trip, data pipeline step and callbacks per batch.",
        ),
        Row("time per batch", fmt_s(median(ref_s) / steps), fmt_s(median(our_s) / steps), None),
        *(
            Row(
                f"{label}, one run, vs ours",
                f"{fmt_s(sec)} (accuracy {acc:.4f})",
                fmt_times(our_s),
                sec / median(our_s),
            )
            for label, sec, acc in variant_rows
        ),
        Row(
            "final training accuracy (median)",
            f"{median(ref_acc):.4f}",
            f"{median(our_acc):.4f}",
            None,
            "within 0.01",
            abs(acc_diff) <= 0.01,
        ),
    ]
    out.notes += [
        f"Dataset: the default generation ({s.train_games:,} games, seed 0), {len(ds):,} rows. Each repetition "
        "builds a fresh model (seed = repetition) with `build_model(ModelConfig())`; only the fit is timed. "
        "Reference: one `model.fit(x, y_onehot, epochs, batch_size, shuffle=True, verbose=0)`; "
        "ours: `cartpole_core.training.train` (own shuffling; a compiled `tf.while_loop` over a chunk of batches "
        "per call, chunks sized to ~0.25 s so the page's live curves and Stop keep working; fitting a pooled "
        "trainer of the same architecture whose loop was traced once, in the first repetition; the reference "
        "traces the step of each fresh model).",
        "A short warm-up fit ran first (TensorFlow start-up, not timed).",
        "Accuracies per repetition: notebook way "
        + ", ".join(f"{a:.4f}" for a in ref_acc)
        + "; ours "
        + ", ".join(f"{a:.4f}" for a in our_acc)
        + f" (difference of medians {acc_diff:+.4f}).",
    ]
    out.data = {
        "rows": len(ds),
        "reference_seconds": ref_s,
        "ours_seconds": our_s,
        "ratio": ratio,
        "reference_accuracy": ref_acc,
        "ours_accuracy": our_acc,
    }
    return out


# ---------------------------------------------------------------- 3. playing


@stage(3, "playing", "Playing games with the trained network")
def playing(ctx: Context) -> StageResult:
    from cartpole_core.envs import make_env
    from cartpole_core.evaluate import EvaluationConfig, evaluate
    from cartpole_core.policies import ModelPolicy

    s = ctx.settings
    out = StageResult()
    model = ctx.trained_model()
    model.predict(np.zeros((1, 4), np.float32), verbose=0)  # builds Keras's predict function (not timed)

    def ref(rep: int) -> Measured:
        r = reference.play_per_frame(model, s.predict_frames, seed=rep)
        return Measured(r.seconds, r)

    def ours(rep: int) -> Measured:
        seconds, r = timed(lambda: evaluate(ModelPolicy(model), EvaluationConfig(games=s.play_games, seed=rep)))
        return Measured(seconds, r)

    ref_t, ref_r, our_t, our_r = alternate(s.reps, ref, ours, "playing")
    our_s = _secs(our_t, our_r)
    ref_step = [r.seconds_per_step for r in map(_val, ref_r)]
    our_steps = [_val(r).steps_played for r in our_r]
    our_step = [t / n for t, n in zip(our_s, our_steps, strict=True)]
    ratio = median(ref_step) / median(our_step)
    steps_played = median(our_steps)
    out.rows += [
        Row(
            "time per game-step",
            fmt_times(ref_step),
            fmt_times(our_step),
            ratio,
            "≥ 2,000× faster",
            ratio >= 2000,
        ),
        Row(
            f"{s.play_games} games ({steps_played:,.0f} steps)",
            f"{fmt_s(median(ref_step) * steps_played)} (extrapolated)",
            fmt_times(our_s),
            None,
        ),
    ]
    # where our time goes: one env step alone, and one forward pass of the policy
    env = make_env("CartPole-v1", 500)
    env.reset(seed=0)
    n_env = 20_000 if not s.quick else 2_000
    actions = np.random.default_rng(0).integers(2, size=n_env)

    def step_loop() -> None:
        for a in actions:
            _, _, terminated, truncated, _ = env.step(int(a))
            if terminated or truncated:
                env.reset()

    env_s, _ = timed(step_loop)
    env.close()
    policy = ModelPolicy(model)
    batch = np.random.default_rng(0).normal(size=(s.play_games, 4)).astype(np.float32)
    fwd_n = 200

    def forward(n: int) -> float:
        x = batch[:n]
        policy.probabilities(x)
        return timed(lambda: [policy.probabilities(x) for _ in range(fwd_n)])[0] / fwd_n

    fwd = {n: forward(n) for n in (s.play_games, 1)}
    # the same with NumPy's OpenBLAS on one thread (a diagnostic: the library does not do this)
    single: list[float] = []
    fwd1: dict[int, float] = {}
    with openblas_threads(1) as before:
        if before is not None:
            fwd1 = {n: forward(n) for n in (s.play_games, 1)}
            for rep in range(s.reps):
                t, r = timed(lambda rep=rep: evaluate(policy, EvaluationConfig(games=s.play_games, seed=rep)))
                single.append(t / r.steps_played)
                log(f"  playing rep {rep + 1}/{s.reps} ours, OpenBLAS 1 thread: {fmt_s(t)}")
    if single:
        r1 = median(ref_step) / median(single)
        out.rows.append(
            Row(
                "time per game-step, ours with OpenBLAS limited to 1 thread (diagnostic)",
                fmt_times(ref_step),
                fmt_times(single),
                r1,
                "(for information)",
            )
        )
        out.data["ours_seconds_per_step_blas1"] = single
    mean_score = float(np.mean([_val(r).mean for r in our_r]))
    parts = [
        ["one `env.step` of a single Gymnasium CartPole env (Python call, wrappers)", fmt_s(env_s / n_env), ""],
        [
            f"one NumPy forward pass on {s.play_games} observations",
            fmt_s(fwd[s.play_games]),
            fmt_s(fwd1[s.play_games]) if fwd1 else "—",
        ],
        [
            f"… per observation ({s.play_games} per pass)",
            fmt_s(fwd[s.play_games] / s.play_games),
            fmt_s(fwd1[s.play_games] / s.play_games) if fwd1 else "—",
        ],
        ["one NumPy forward pass on 1 observation", fmt_s(fwd[1]), fmt_s(fwd1[1]) if fwd1 else "—"],
        [
            "ours, all included, per game-step",
            fmt_s(median(our_step)),
            fmt_s(median(single)) if single else "—",
        ],
    ]
    out.details.append(
        "Where our time per game-step goes (NumPy's OpenBLAS as it comes, and limited to one thread):\n\n"
        + markdown_table(["part", "default threads", "OpenBLAS 1 thread"], parts)
    )
    ref_games = [sc for r in map(_val, ref_r) for sc in r.scores]
    out.notes += [
        f"Reference: the notebook's cell 39 loop, one `model.predict(obs[None], verbose=0)` per frame, timed over "
        f"{s.predict_frames} frames per repetition (games cut there) and extrapolated to the "
        f"{steps_played:,.0f} steps our {s.play_games} games took; one `predict` ran first to build Keras's "
        "predict function (not timed).",
        f"Ours: `evaluate(ModelPolicy(model), EvaluationConfig(games={s.play_games}, seed=rep))`, the same "
        f"trained model; average score {mean_score:.1f}"
        + (
            f" (the reference finished {len(ref_games)} game{'s' if len(ref_games) != 1 else ''} within its "
            f"frame budget, average "
            f"{np.mean(ref_games):.1f})."
            if ref_games
            else "."
        ),
    ]
    out.data = {
        "reference_seconds_per_step": ref_step,
        "ours_seconds_per_step": our_step,
        "ours_steps": our_steps,
        "ratio": ratio,
        "env_step_seconds": env_s / n_env,
    }
    return out


# ---------------------------------------------------------------- 4. GIF


class BalancingPolicy:
    """A hand-written controller that keeps the pole up for 500 steps (for a 500-step GIF):
    push right when ``pole_angle + 0.5 * angular_velocity > 0``."""

    name = "balancer"
    n_actions = 2
    deterministic = True

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        obs = np.asarray(observations, dtype=np.float32)
        right = obs[:, 2] + 0.5 * obs[:, 3] > 0
        return np.stack([~right, right], axis=1).astype(np.float32)


def _fixed_palette_gif(frames: list[np.ndarray], duration_ms: int, scale: int) -> bytes:
    """A sketch of a faster encoder (not the library's): one palette computed from the
    first frame, every frame mapped to it without dithering, Pillow writes the GIF."""
    from PIL import Image

    small = [f[::scale, ::scale] if scale > 1 else f for f in frames]
    palette = Image.fromarray(small[0]).quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in small]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return buffer.getvalue()


@stage(4, "gif", "A 500-step GIF")
def gif(ctx: Context) -> StageResult:
    from cartpole_core.evaluate import EvaluationConfig, record_episode
    from cartpole_core.gif import frame_duration_ms, frames_to_gif

    s = ctx.settings
    out = StageResult()
    policy = BalancingPolicy()
    record_episode(policy, EvaluationConfig(games=1, goal_steps=5), 0)  # pygame start-up (not timed)
    variants = [
        ("ours", s.gif_stride, s.gif_scale),
        ("naive: every frame, full size", 1, 1),
        ("every frame, half size", 1, 2),
    ]
    measured: dict[str, dict[str, list[float]]] = {}
    lengths: set[int] = set()
    shape: tuple[int, ...] = ()
    for rep in range(s.reps):
        order = variants if rep % 2 == 0 else variants[::-1]
        for label, stride, scale in order:
            config = EvaluationConfig(games=1, goal_steps=s.gif_steps, seed=rep)
            t_render, episode = timed(lambda c=config, k=stride: record_episode(policy, c, 0, frame_stride=k))
            t_encode, data = timed(
                lambda e=episode, k=stride, sc=scale: frames_to_gif(e.frames, frame_stride=k, scale=sc)
            )
            m = measured.setdefault(label, {"render": [], "encode": [], "total": [], "bytes": [], "frames": []})
            m["render"].append(t_render)
            m["encode"].append(t_encode)
            m["total"].append(t_render + t_encode)
            m["bytes"].append(len(data))
            m["frames"].append(len(episode.frames))
            lengths.add(episode.length)
            shape = episode.frames[0].shape
            log(f"  gif rep {rep + 1}/{s.reps} {label}: {fmt_s(t_render)} + {fmt_s(t_encode)}, {fmt_bytes(len(data))}")
            if label == "ours" and rep == 0:
                duration = frame_duration_ms(50, stride)
                t_alt, alt = timed(lambda e=episode, d=duration, sc=scale: _fixed_palette_gif(e.frames, d, sc))
                ctx.cache["gif_alt"] = (t_alt, len(alt), t_encode)
    ours, naive = measured["ours"], measured[variants[1][0]]
    total_ratio = median(naive["total"]) / median(ours["total"])
    t_ours = median(ours["total"])
    size_ours = median(ours["bytes"])
    out.rows += [
        Row(
            f"{s.gif_steps}-step GIF: render + encode",
            fmt_times(naive["total"]),
            fmt_times(ours["total"]),
            total_ratio,
            "≤ 1.5 s",
            t_ours <= 1.5,
        ),
        Row("… of which render (`record_episode`)", fmt_times(naive["render"]), fmt_times(ours["render"]), None),
        Row("… of which encode (`frames_to_gif`)", fmt_times(naive["encode"]), fmt_times(ours["encode"]), None),
        Row(
            "GIF file size",
            fmt_bytes(median(naive["bytes"])),
            fmt_bytes(size_ours),
            median(naive["bytes"]) / size_ours,
            "≤ 300 KB",
            size_ours <= 300_000,
        ),
    ]
    table_rows = []
    for label, stride, scale in variants:
        m = measured[label]
        h, w = math.ceil(shape[0] / scale), math.ceil(shape[1] / scale)
        table_rows.append(
            [
                label,
                f"every {stride}",
                f"{w}×{h}",
                f"{median(m['frames']):.0f}",
                fmt_times(m["render"]),
                fmt_times(m["encode"]),
                fmt_s(median(m["encode"]) / median(m["frames"])),
                fmt_bytes(median(m["bytes"])),
            ]
        )
    out.details.append(
        "GIF variants (same episodes; frame size in pixels):\n\n"
        + markdown_table(
            ["variant", "frames kept", "size", "frames", "render", "encode", "encode per frame", "file"],
            table_rows,
        )
    )
    if "gif_alt" in ctx.cache:
        t_alt, size_alt, t_lib = ctx.cache.pop("gif_alt")
        out.notes.append(
            f"A sketch of a faster encoder on our frames (one 64-colour palette from the first frame, each frame "
            f"mapped to it with Pillow without dithering): {fmt_s(t_alt)} and {fmt_bytes(size_alt)}, against "
            f"{fmt_s(t_lib)} for `frames_to_gif` on the same frames (one run)."
        )
    out.notes += [
        f"Policy: a hand-written balancing controller (push right when pole angle + 0.5 × angular velocity > 0), "
        f"which plays all {s.gif_steps} steps; episode lengths seen: {sorted(lengths)}. Frames are "
        f"{shape[1]}×{shape[0]} RGB from Gymnasium's pygame renderer.",
        f"Ours = `record_episode(..., frame_stride={s.gif_stride})` + `frames_to_gif(frame_stride="
        f"{s.gif_stride}, scale={s.gif_scale})` (the CLI's defaults); naive = every frame at full size "
        "through the same two functions. A tiny warm-up episode ran first (pygame start-up, not timed).",
    ]
    out.data = {label: m for label, m in measured.items()}
    return out


# ---------------------------------------------------------------- 5. whole run


def run_child(cmd: list[str], cwd: str, timeout: float) -> tuple[float, int, int, str, str]:
    """Run ``cmd`` in a fresh process: (wall seconds, exit code, peak RSS in bytes, stdout, stderr).

    The command runs under :mod:`bench.launch`, so its peak RSS is its own (see there), and
    its wall time is taken from spawn to exit by the launcher.
    """
    with tempfile.TemporaryDirectory() as tmp:
        result_path = os.path.join(tmp, "result.json")
        launcher = [sys.executable, "-m", "bench.launch", result_path, *cmd]
        proc = subprocess.Popen(
            launcher, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # the launcher passes it on to the command
            stdout, stderr = proc.communicate()
        with open(result_path) as f:
            result = json.load(f)
    return (
        float(result.get("seconds", math.nan)),
        int(result.get("exit_code", proc.returncode)),
        int(result.get("peak_rss_bytes", 0)),
        stdout.decode(errors="replace"),
        stderr.decode(errors="replace"),
    )


@stage(5, "run", "The whole `python -m cartpole_core run --quiet --json`")
def whole_run(ctx: Context) -> StageResult:
    s = ctx.settings
    out = StageResult()
    cmd = [sys.executable, "-m", "cartpole_core", "run", "--quiet", "--json", *s.run_args]
    walls: list[float] = []
    rss: list[int] = []
    parts: list[dict[str, float]] = []
    outputs: list[dict[str, Any]] = []
    for rep in range(s.reps):
        wall, code, peak, stdout, stderr = run_child(cmd, str(ctx.root), timeout=900)
        log(f"  run rep {rep + 1}/{s.reps}: {fmt_s(wall)}, peak RSS {fmt_bytes(peak)}, exit {code}")
        if code != 0:
            raise RuntimeError(f"`{' '.join(cmd[1:])}` exited {code}: {stderr.strip()[-500:]}")
        data = json.loads(stdout.strip().splitlines()[-1])
        walls.append(wall)
        rss.append(peak)
        parts.append(data["seconds"])
        outputs.append(data)
    wall_med, rss_max = median(walls), max(rss)
    out.rows += [
        Row("wall time, import included", "—", fmt_times(walls), None, "≤ 30 s", wall_med <= 30),
        Row("peak RSS (largest of the runs)", "—", fmt_bytes(rss_max), None, "≤ 2 GB", rss_max <= 2e9),
    ]
    # the notebook's way, estimated from stages 1-3 of this run
    gen = ctx.results.get("generation")
    trn = ctx.results.get("training")
    ply = ctx.results.get("playing")
    eval_steps = median([sum(o["evaluate"]["scores"]) for o in outputs])
    default_games = not s.run_args and s.gen_sizes[0] == 10_000
    if gen and trn and ply and default_games and "games_10000" in gen.data:
        estimate = (
            median(gen.data["games_10000"]["reference_seconds"])
            + median(trn.data["reference_seconds"])
            + median(ply.data["reference_seconds_per_step"]) * eval_steps
        )
        out.rows[0].reference = f"≈ {fmt_s(estimate)} (estimated)"
        out.rows[0].ratio = estimate / wall_med
        out.notes.append(
            "The notebook way's figure is an estimate from this run's stages 1–3: its 10,000-game loop + "
            f"plain `fit` + per-frame `predict` × the {eval_steps:,.0f} steps our 10 evaluation games took "
            "(imports and random play not included)."
        )
    keys = sorted({k for p in parts for k in p})
    breakdown = [[k, fmt_times([p.get(k, 0.0) for p in parts])] for k in keys]
    out.details.append(
        "Seconds per part as the run reports them (`seconds` in its JSON; median over the runs):\n\n"
        + markdown_table(["part", "seconds"], breakdown)
    )
    last = outputs[-1]
    acc = last["train"]["history"].get("accuracy", [None])[-1]
    out.notes += [
        f"Command: `{' '.join(['python', *cmd[1:]])}`, one fresh process per repetition; wall time from "
        "spawn to exit; peak RSS is the command's own `ru_maxrss` (`os.wait4` in a small launcher process, "
        "`bench/launch.py`, so the benchmark's own memory is not counted).",
        f"Last run: kept {last['generate']['accepted']} of {last['generate']['games']:,} games, "
        f"final accuracy {acc:.4f}, network average {last['evaluate']['mean']:.1f} over "
        f"{last['evaluate']['games']} games (random play {last['random']['mean']:.1f}).",
    ]
    out.data = {"wall_seconds": walls, "peak_rss_bytes": rss, "seconds": parts}
    return out
