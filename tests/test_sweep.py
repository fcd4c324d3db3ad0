"""Sweeps: a grid of settings × seeds, each trial a Ray task on a local Ray with 2 CPUs."""

from __future__ import annotations

import math
import sys

import pytest

from cartpole_core.errors import UserError
from cartpole_core.generate import GenerationConfig
from cartpole_core.improve import ImproveConfig
from cartpole_core.model import ModelConfig
from cartpole_core.pipeline import NotebookConfig
from cartpole_core.sweep import (
    SweepConfig,
    Trial,
    TrialScores,
    parse_seeds,
    parse_vary,
    summarise,
    sweep,
    sweepable,
    trial_config,
)
from cartpole_core.training import TrainingConfig

#: A trial that takes about a second: 300 games, one layer of 16 units, one epoch, 10 games.
TINY = NotebookConfig(
    GenerationConfig(games=300, score_requirement=30), ModelConfig(hidden=(16,)), TrainingConfig(epochs=1), 10
)


def tiny_sweep(values=(20.0, 30.0), seeds=(0, 1)) -> SweepConfig:
    return SweepConfig(TINY, (("score_requirement", tuple(values)),), tuple(seeds))


@pytest.fixture(scope="module")
def local_ray():
    from cartpole_core.cluster import engine_info, ensure_ray

    ensure_ray(num_cpus=2)
    info = engine_info()
    assert info.started and info.cpus == 2 and info.nodes == 1
    return info


# ---------------------------------------------------------------- settings, no Ray


def test_every_stage_setting_can_be_varied_by_its_field_name():
    names = sweepable(NotebookConfig())
    for name in ("games", "goal_steps", "score_requirement", "hidden", "dropout", "learning_rate", "epochs"):
        assert name in names
    assert "env_id" not in names and "seed" not in names
    assert {"keep_top", "games_per_generation", "temperature"} <= set(sweepable(ImproveConfig()))


def test_values_are_parsed_by_the_setting_type():
    base = NotebookConfig()
    assert parse_vary(base, "score_requirement=40,50") == ("score_requirement", (40.0, 50.0))
    assert parse_vary(base, "epochs=1,4") == ("epochs", (1, 4))
    assert parse_vary(base, "hidden=64x64,128") == ("hidden", ((64, 64), (128,)))
    assert parse_seeds("0-2,7") == (0, 1, 2, 7)
    assert parse_seeds("3") == (3,)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour=1,2", "not a setting"),
        ("epochs=", "has no values"),
        ("epochs", "setting=value"),
        ("epochs=x", "whole number"),
        ("dropout=nan", "number"),
    ],
)
def test_bad_vary_text_names_the_fix(text, expected):
    with pytest.raises(UserError, match=expected):
        parse_vary(NotebookConfig(), text)


@pytest.mark.parametrize("text", ["x", "4-2", "", "1-"])
def test_bad_seeds_name_the_fix(text):
    with pytest.raises(UserError, match="seed"):
        parse_seeds(text)


def test_validate_refuses_out_of_range_values_and_too_many_trials():
    with pytest.raises(UserError, match="dropout"):
        SweepConfig(TINY, (("dropout", (0.1, 5.0)),), (0,)).validate()
    with pytest.raises(UserError, match="at most 5"):
        tiny_sweep(values=(10.0, 20.0, 30.0), seeds=(0, 1)).validate(max_trials=5)
    with pytest.raises(UserError, match="once"):
        SweepConfig(TINY, (("epochs", (1,)), ("epochs", (2,))), (0,)).validate()
    with pytest.raises(UserError, match="1 to 3"):
        SweepConfig(TINY, (), (0,)).validate()


def test_a_trial_applies_its_settings_and_seed_to_every_stage():
    config = trial_config(TINY, {"epochs": 3, "hidden": (8, 8), "score_requirement": 40.0}, seed=5)
    assert isinstance(config, NotebookConfig)
    assert config.training.epochs == 3 and config.training.seed == 5
    assert config.model.hidden == (8, 8)
    assert config.generation.score_requirement == 40.0 and config.generation.seed == 5
    assert config.generation.games == 300  # the base's, untouched
    improve = trial_config(ImproveConfig(eval_games=10), {"keep_top": 0.3}, seed=2)
    assert isinstance(improve, ImproveConfig) and improve.keep_top == 0.3 and improve.seed == 2


def test_summary_is_per_combination_over_finished_seeds_and_stays_in_the_score_range():
    config = tiny_sweep()
    scores = [TrialScores(10, 0.6, m, m, 1.0) for m in (500.0, 420.0, 100.0)]
    trials = [
        Trial(0, {"score_requirement": 20.0}, 0, "done", scores[0]),
        Trial(1, {"score_requirement": 20.0}, 1, "done", scores[1]),
        Trial(2, {"score_requirement": 30.0}, 0, "done", scores[2]),
        Trial(3, {"score_requirement": 30.0}, 1, "failed", error="boom"),
    ]
    summary = summarise(config, trials)
    assert [s.settings for s in summary] == [{"score_requirement": 20.0}, {"score_requirement": 30.0}]
    assert summary[0].mean == 460.0 and summary[0].n == 2
    assert summary[0].ci_high == 500.0 and summary[0].clipped  # a t interval would reach ~714
    assert summary[1].n == 1 and summary[1].ci_low == summary[1].ci_high == 100.0


# ---------------------------------------------------------------- on a local Ray


def test_a_tiny_sweep_runs_end_to_end_on_a_local_ray(local_ray):
    seen: list[Trial] = []
    reports = []
    result = sweep(tiny_sweep(values=(20.0, 30.0, 500.0)), lambda p: reports.append(p.fraction), seen.append)
    assert len(result.trials) == 6 and [t.index for t in result.trials] == list(range(6))
    assert sorted(t.index for t in seen) == list(range(6)), "each trial is streamed as it finishes"
    done = [t for t in result.trials if t.status == "done"]
    failed = [t for t in result.trials if t.status == "failed"]
    # No random CartPole game of 300 scores 500: those trials fail with the user's message, the rest go on.
    assert len(done) == 4 and len(failed) == 2
    assert all("No game reached score_requirement 500" in t.error for t in failed)
    for t in done:
        assert t.scores is not None and t.scores.accepted > 0 and 0 <= t.scores.mean <= 500
        assert t.node and 0 < t.scores.accuracy <= 1
    assert [s.settings["score_requirement"] for s in result.summary] == [20.0, 30.0]
    assert result.best in result.summary and result.best.mean == max(s.mean for s in result.summary)
    assert result.workers == 2 and result.nodes == 1 and not result.stopped
    assert reports[-1] == 1.0


def test_same_sweep_same_table(local_ray):
    a, b = sweep(tiny_sweep()), sweep(tiny_sweep())
    rows = [[(t.seed, t.scores) for t in r.trials] for r in (a, b)]
    strip = [[(seed, s.accepted, s.accuracy, s.mean, s.median) for seed, s in row] for row in rows]
    assert strip[0] == strip[1]


def test_stop_cancels_what_has_not_finished_and_keeps_what_has(local_ray):
    finished: list[Trial] = []

    def stop_after_first(_):
        return len(finished) >= 1

    result = sweep(tiny_sweep(values=(20.0, 25.0, 30.0, 35.0), seeds=(0, 1, 2)), stop_after_first, finished.append)
    assert result.stopped
    statuses = [t.status for t in result.trials]
    assert len(statuses) == 12 and statuses.count("cancelled") >= 6
    assert all(s in ("done", "cancelled") for s in statuses)
    kept = [t for t in result.trials if t.status == "done"]
    assert kept and all(t.scores is not None for t in kept)
    assert sum(s.n for s in result.summary) == len(kept)


def test_workers_cap_tensorflow_and_blas_threads_to_one_cpu(local_ray):
    from cartpole_core.cluster import run_tasks
    from cartpole_core.sweep import run_trial

    # A real trial first, so the worker has TensorFlow loaded and running.
    [outcome] = list(run_tasks(run_trial, tiny_sweep(values=(20.0,), seeds=(0,)).jobs()))
    assert outcome.error is None
    [threads] = list(run_tasks(_thread_settings, [None]))
    assert threads.error is None, threads.error
    assert threads.result["tf_intra"] in (0, 1) and threads.result["env_intra"] == "1"
    assert threads.result["blas"] and all(n == 1 for n in threads.result["blas"])


def _thread_settings(_: object) -> dict:
    """In a worker: how many threads TensorFlow and BLAS may use."""
    import os

    import tensorflow as tf
    from threadpoolctl import threadpool_info

    return {
        "tf_intra": tf.config.threading.get_intra_op_parallelism_threads(),
        "env_intra": os.environ.get("TF_NUM_INTRAOP_THREADS"),
        "blas": [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"],
    }


def test_improve_trials_report_their_best_generation(local_ray):
    base = ImproveConfig(max_generations=1, games_per_generation=20, eval_games=5, confirm_games=0, target_mean=None)
    config = SweepConfig(base, (("keep_top", (0.2, 0.5)),), (0,))
    result = sweep(config)
    assert [t.status for t in result.trials] == ["done", "done"], [t.error for t in result.trials]
    for t in result.trials:
        assert t.scores is not None and t.scores.generations == 2 and math.isfinite(t.scores.mean)


# Workers import functions by module name; this module is not importable there, so it travels by value.
import ray.cloudpickle  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
