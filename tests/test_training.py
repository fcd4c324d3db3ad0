"""Training: fitting a network to the kept games' rows (the notebook's ``train_model``)."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from cartpole_core.errors import UserError
from cartpole_core.model import ModelConfig, build_model
from cartpole_core.policies import ModelPolicy
from cartpole_core.training import TrainerPool, TrainingConfig, split_games, train


def weights_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))


def test_history_per_batch_and_per_epoch(small_dataset, make_tiny_model):
    model = make_tiny_model()
    before = [w.copy() for w in model.get_weights()]
    result = train(model, small_dataset, TrainingConfig(epochs=2, batch_size=64, seed=0))
    steps = math.ceil(len(small_dataset) / 64)
    batches = result.batch_history
    assert set(batches) >= {"step", "epoch", "loss", "accuracy"}
    assert all(len(batches[key]) == 2 * steps for key in ("step", "epoch", "loss", "accuracy"))
    assert batches["step"] == list(range(1, 2 * steps + 1))
    assert batches["epoch"] == [1] * steps + [2] * steps
    assert all(0.0 <= a <= 1.0 for a in batches["accuracy"]) and all(np.isfinite(batches["loss"]))
    assert set(result.epoch_history) == {"loss", "accuracy"}
    assert all(len(v) == 2 for v in result.epoch_history.values())
    # An epoch's figure is the running figure at its last batch.
    assert result.epoch_history["loss"][0] == pytest.approx(batches["loss"][steps - 1])
    assert result.epochs_completed == 2 and not result.stopped_early
    assert result.samples == len(small_dataset)
    assert result.final_accuracy == result.epoch_history["accuracy"][-1]
    assert result.final_loss == result.epoch_history["loss"][-1]
    assert not all(np.array_equal(x, y) for x, y in zip(before, model.get_weights(), strict=True))


def test_validation_split_adds_validation_figures(small_dataset, make_tiny_model):
    result = train(make_tiny_model(), small_dataset, TrainingConfig(epochs=1, validation_split=0.2, seed=0))
    assert set(result.epoch_history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 1 for v in result.epoch_history.values())
    assert 0.0 <= result.epoch_history["val_accuracy"][0] <= 1.0
    assert 0 < result.samples < len(small_dataset)


def test_split_games_keeps_whole_games_on_one_side(small_dataset):
    train_rows, val_rows = split_games(small_dataset, 0.25, seed=3)
    assert train_rows.size + val_rows.size == len(small_dataset)
    assert np.intersect1d(train_rows, val_rows).size == 0
    train_games = set(small_dataset.game_ids[train_rows].tolist())
    val_games = set(small_dataset.game_ids[val_rows].tolist())
    assert not train_games & val_games
    assert len(val_games) == round(small_dataset.n_games * 0.25)
    again = split_games(small_dataset, 0.25, seed=3)
    np.testing.assert_array_equal(again[1], val_rows)
    no_split = split_games(small_dataset, 0.0, seed=3)
    assert no_split[0].size == len(small_dataset) and no_split[1].size == 0


def test_same_data_and_seeds_give_identical_weights(small_dataset, tiny_config):
    config = TrainingConfig(epochs=1, seed=4)
    a = build_model(4, 2, tiny_config, seed=1)
    b = build_model(4, 2, tiny_config, seed=1)
    c = build_model(4, 2, tiny_config, seed=1)
    result_a = train(a, small_dataset, config)
    result_b = train(b, small_dataset, config)
    train(c, small_dataset, TrainingConfig(epochs=1, seed=5))  # another shuffling order
    assert weights_equal(a, b)
    assert result_a.batch_history["loss"] == result_b.batch_history["loss"]
    assert not weights_equal(a, c)


def fit_in_place(model, dataset, config: TrainingConfig) -> None:
    """The reference: what ``train`` did before trainers, fitting ``model`` itself."""
    rng = np.random.default_rng(config.seed)
    x, y = dataset.observations, dataset.one_hot_actions()
    for epoch in range(config.epochs):
        order = rng.permutation(len(dataset))
        model.fit(
            x[order],
            y[order],
            batch_size=config.batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            shuffle=False,
            verbose=0,
        )


def test_training_through_a_trainer_equals_fitting_the_model_itself(small_dataset):
    """Weights, dropout state and optimiser state come back as if the model had been fitted."""
    config = ModelConfig(hidden=(16, 8), dropout=0.3, learning_rate=3e-3)
    ours, reference = (build_model(4, 2, config, seed=7) for _ in range(2))
    train(ours, small_dataset, TrainingConfig(epochs=2, seed=1))
    fit_in_place(reference, small_dataset, TrainingConfig(epochs=2, seed=1))
    for a, b in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(ours.optimizer.variables, reference.optimizer.variables, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert int(ours.optimizer.iterations) == 2 * math.ceil(len(small_dataset) / 64)
    # Training on continues from the copied-back state, as the model's own fit would.
    train(ours, small_dataset, TrainingConfig(epochs=1, seed=2))
    fit_in_place(reference, small_dataset, TrainingConfig(epochs=1, seed=2))
    for a, b in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_one_trainer_serves_every_model_of_an_architecture_without_carrying_state(small_dataset):
    """Seeds and learning rates differ, the trainer is the same; a used trainer gives the
    same result as a fresh one (nothing of the previous job stays in it)."""
    pool = TrainerPool()
    first = build_model(4, 2, ModelConfig(hidden=(12,)), seed=0)
    with pool.lend(first) as trainer:
        assert trainer is not first
    for seed, rate in ((1, 1e-3), (2, 1e-2), (3, 5e-4)):
        model = build_model(4, 2, ModelConfig(hidden=(12,), learning_rate=rate), seed=seed)
        with pool.lend(model) as trainer:
            trainer.fit(small_dataset.observations, small_dataset.one_hot_actions(), epochs=1, verbose=0)
    assert pool.created == 1 and pool.idle() == 1
    other = build_model(4, 2, ModelConfig(hidden=(12, 12)), seed=0)
    with pool.lend(other):
        assert pool.idle() == 1  # the other architecture's trainer waits
    assert pool.created == 2 and pool.idle() == 2
    # The process-wide pool: a trainer used by earlier tests gives the fresh model's result.
    a, b = (build_model(4, 2, ModelConfig(hidden=(12,)), seed=9) for _ in range(2))
    train(a, small_dataset, TrainingConfig(epochs=1, seed=0))
    fit_in_place(b, small_dataset, TrainingConfig(epochs=1, seed=0))
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_pool_keeps_a_bounded_number_of_trainers(small_dataset):
    pool = TrainerPool(architectures=2, per_architecture=1)
    models = [build_model(4, 2, ModelConfig(hidden=(units,)), seed=0) for units in (3, 4, 5)]
    for model in models:
        with pool.lend(model):
            pass
    assert pool.created == 3 and pool.idle() == 2  # the least recently used architecture went
    with pool.lend(models[0]), pool.lend(build_model(4, 2, ModelConfig(hidden=(3,)), seed=1)):
        pass  # two jobs of one architecture at once get two trainers
    assert pool.created == 5 and pool.idle() == 2
    # Lending empties an architecture's shelf; giving others back must not trip over it.
    with pool.lend(models[2]):
        for model in models[:2]:
            with pool.lend(model):
                pass
    assert pool.idle() == 2


class _Interrupted(BaseException):
    """Like Streamlit's StopException/RerunException: not an Exception."""


def test_an_interrupted_job_keeps_what_was_learned(small_dataset):
    """The dashboard's Stop interrupts the script from inside the progress callback; the
    model must keep the batches already learned, as when it was fitted itself."""
    model = build_model(4, 2, ModelConfig(hidden=(16,)), seed=0)
    before = [w.copy() for w in model.get_weights()]
    reports = []

    def interrupt_at_fifth(p) -> bool:
        reports.append(p)
        if len(reports) == 5:
            raise _Interrupted
        return False

    with pytest.raises(_Interrupted):
        train(model, small_dataset, TrainingConfig(epochs=1, batch_size=16, seed=0), interrupt_at_fifth)
    assert int(model.optimizer.iterations) > 0
    assert not all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    # The trainer went back to the pool and serves the next job as a fresh one would.
    a, b = (build_model(4, 2, ModelConfig(hidden=(16,)), seed=3) for _ in range(2))
    train(a, small_dataset, TrainingConfig(epochs=1, seed=0))
    fit_in_place(b, small_dataset, TrainingConfig(epochs=1, seed=0))
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_models_of_other_number_types_get_their_own_trainer(small_dataset):
    pool = TrainerPool()
    ours = build_model(4, 2, ModelConfig(hidden=(8,)), seed=0)
    import keras

    wide = keras.Sequential(
        [keras.Input(shape=(4,)), keras.layers.Dense(8, activation="relu", dtype="float64"),
         keras.layers.Dense(2, activation="softmax", dtype="float64")]
    )  # fmt: skip
    wide.compile(optimizer="adam", loss="categorical_crossentropy")
    for model in (ours, wide):
        with pool.lend(model) as trainer:
            assert [v.dtype for v in trainer.variables] == [v.dtype for v in model.variables]
    assert pool.created == 2


def test_the_pool_keeps_at_most_its_byte_budget_of_idle_trainers():
    small = build_model(4, 2, ModelConfig(hidden=(4,)), seed=0)
    big = build_model(4, 2, ModelConfig(hidden=(256, 256)), seed=0)
    with TrainerPool().lend(big) as trainer:
        big_bytes = sum(np.asarray(v).nbytes for v in (*trainer.variables, *trainer.optimizer.variables))
    pool = TrainerPool(max_idle_bytes=big_bytes // 2)
    with pool.lend(small):
        pass
    with pool.lend(big):
        pass
    assert pool.idle() == 1, "the big trainer is over the budget on its own: not kept"
    pool = TrainerPool(max_idle_bytes=big_bytes + 10_000)
    with pool.lend(big):
        pass
    with pool.lend(build_model(4, 2, ModelConfig(hidden=(4,)), seed=0)):
        pass
    with pool.lend(build_model(4, 2, ModelConfig(hidden=(256, 256), dropout=0.3), seed=0)):
        pass
    assert pool.idle() == 2, "the oldest (big) trainer made room for the newest"


def test_concurrent_jobs_get_their_own_trainers_and_the_sequential_results(small_dataset, tiny_config):
    import threading

    config = TrainingConfig(epochs=1, seed=3)
    expected = []
    for seed in (0, 1):
        model = build_model(4, 2, tiny_config, seed=seed)
        train(model, small_dataset, config)
        expected.append(model.get_weights())
    models = [build_model(4, 2, tiny_config, seed=seed) for seed in (0, 1)]
    errors: list[BaseException] = []

    def run(model) -> None:
        try:
            train(model, small_dataset, config)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for model, weights in zip(models, expected, strict=True):
        for a, b in zip(model.get_weights(), weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_model_saved_without_training_settings_gets_the_notebooks(small_dataset):
    import keras

    bare = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(2, activation="softmax")])
    result = train(bare, small_dataset, TrainingConfig(epochs=1))
    assert result.epochs_completed == 1 and result.final_accuracy is not None
    assert bare.optimizer.name == "adam" and float(bare.optimizer.learning_rate) == pytest.approx(1e-3)


def test_dropout_is_seeded_too(small_dataset):
    """With dropout the masks must be seeded as well for two runs to agree."""
    config = ModelConfig(hidden=(16,), dropout=0.5)
    a, b = (build_model(4, 2, config, seed=2) for _ in range(2))
    for model in (a, b):
        train(model, small_dataset, TrainingConfig(epochs=1, seed=2))
    assert weights_equal(a, b)


def test_progress_returning_true_stops_early_and_keeps_the_model_usable(small_dataset, make_tiny_model):
    reports = []

    def stop_at_second_report(p):
        reports.append(p)
        return len(reports) >= 2

    model = make_tiny_model()
    result = train(model, small_dataset, TrainingConfig(epochs=3, batch_size=16, seed=0), stop_at_second_report)
    steps = math.ceil(len(small_dataset) / 16)
    assert len(reports) == 2
    assert result.stopped_early
    assert result.epochs_completed == 0 and result.epoch_history == {}  # no epoch finished
    assert 0 < len(result.batch_history["step"]) < steps
    assert {"loss", "accuracy"} <= set(reports[0].metrics)
    assert 0.0 < reports[-1].fraction < 1.0 / 3
    probs = ModelPolicy(model).probabilities(small_dataset.observations[:10])
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    # The model can still be trained: the stop request does not stick.
    again = train(model, small_dataset, TrainingConfig(epochs=1, seed=0))
    assert again.epochs_completed == 1 and not again.stopped_early


def test_stopping_after_an_epoch_keeps_that_epochs_figures(small_dataset, make_tiny_model):
    def stop_in_epoch_two(p):
        return p.message.startswith("epoch 2/")

    result = train(make_tiny_model(), small_dataset, TrainingConfig(epochs=3, seed=0), stop_in_epoch_two)
    assert result.stopped_early
    assert result.epochs_completed == 1
    assert all(len(v) == 1 for v in result.epoch_history.values())


def test_progress_reports_cover_the_run(small_dataset, make_tiny_model):
    reports = []
    train(make_tiny_model(), small_dataset, TrainingConfig(epochs=2, seed=0), reports.append)
    fractions = [p.fraction for p in reports]
    assert fractions == sorted(fractions)
    assert fractions[-1] == pytest.approx(1.0)
    assert reports[-1].message.startswith("epoch 2/2")


def test_empty_dataset_is_a_user_error(small_dataset, make_tiny_model):
    empty = small_dataset.subset_games(np.array([], dtype=np.int64))
    with pytest.raises(UserError, match="no rows"):
        train(make_tiny_model(), empty, TrainingConfig(epochs=1))


def test_model_and_dataset_of_different_shapes_is_a_user_error(small_dataset, make_tiny_model):
    acrobot_model = make_tiny_model(obs_dim=6, n_actions=3)
    with pytest.raises(UserError) as excinfo:
        train(acrobot_model, small_dataset, TrainingConfig(epochs=1))
    message = str(excinfo.value)
    assert "6 observation values and 3 actions" in message and "has 4 and 2" in message


@pytest.mark.parametrize(
    ("config", "name"),
    [
        (TrainingConfig(epochs=0), "epochs"),
        (TrainingConfig(batch_size=0), "batch_size"),
        (TrainingConfig(validation_split=0.6), "validation_split"),
        (TrainingConfig(seed=-1), "seed"),
    ],
)
def test_settings_out_of_range_are_user_errors(config, name, small_dataset, make_tiny_model):
    with pytest.raises(UserError, match=name):
        train(make_tiny_model(), small_dataset, config)


def test_tensorboard_logs_are_written_when_asked(small_dataset, make_tiny_model, tmp_path):
    train(make_tiny_model(), small_dataset, TrainingConfig(epochs=1, seed=0, tensorboard_dir=str(tmp_path / "logs")))
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "logs").rglob("*"))


def test_tensorboard_without_the_package_is_a_user_error_naming_the_install(tmp_path, monkeypatch):
    """TensorFlow 2.21 no longer brings TensorBoard along: asking for logs without it must say
    what to install (the dev requirements install it, so its absence is simulated here)."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real_find_spec(name, *a)
    )
    config = TrainingConfig(epochs=1, tensorboard_dir=str(tmp_path / "logs"))
    with pytest.raises(UserError, match="pip install tensorboard"):
        config.validate()


@pytest.mark.slow
def test_notebook_network_on_notebook_data_reaches_notebook_accuracy(default_generation):
    """The notebook's network, 4 epochs on the 10,000-game dataset: accuracy about 0.6 (20 s)."""
    dataset = default_generation.require_accepted()
    model = build_model(dataset.obs_dim, dataset.n_actions, ModelConfig(), seed=0)
    result = train(model, dataset, TrainingConfig())
    assert result.epochs_completed == 4
    assert 0.55 <= result.final_accuracy <= 0.65
    assert result.epoch_history["loss"][-1] < result.epoch_history["loss"][0]
