"""Training: fit a model to a dataset's (observation, action) rows (the notebook's
``train_model``).

The rows are shuffled once per epoch by our own seeded generator and fed to Keras's
``fit`` in that order, so the same data, model seed and training seed give the same
weights on the same machine, without touching Keras's global random state (which is
shared by every session of a server).

Memory: the first ``fit`` of every new Keras model traces a training step, and TensorFlow
never gives that memory back (8-17 MB per model for the notebook's network), so a server
that trains all day would grow without bound. Models are therefore never fitted
themselves: :class:`TrainerPool` keeps a few compiled *trainers*, one per architecture in
use; a job copies the model's variables and optimiser state into a free trainer, fits it,
and copies them back. A trainer's step is traced once and reused, and the result is the
same as fitting the model itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from cartpole_core.dataset import Dataset
from cartpole_core.errors import UserError, check_range
from cartpole_core.model import compile_model, model_shape
from cartpole_core.progress import ProgressCallback, report

MAX_EPOCHS = 1000
#: Progress reports per epoch at most (each one copies the running figures).
REPORTS_PER_EPOCH = 50


@dataclass(frozen=True)
class TrainingConfig:
    """How to fit; defaults are the notebook's."""

    epochs: int = 4
    """Passes over the data (the notebook: more would overfit)."""
    batch_size: int = 64
    """Rows per gradient step (tflearn's default, which the notebook used)."""
    validation_split: float = 0.0
    """Share of games held out to measure validation loss/accuracy (0 = none)."""
    seed: int | None = 0
    """Seed of the shuffling and the validation split."""
    tensorboard_dir: str | None = None
    """If set, TensorBoard logs are written there (the notebook's ``logs/``)."""

    def validate(self) -> TrainingConfig:
        """Raise :class:`UserError` for settings out of range; return self."""
        check_range("epochs", self.epochs, 1, MAX_EPOCHS)
        check_range("batch_size", self.batch_size, 1, 65536)
        check_range("validation_split", self.validation_split, 0.0, 0.5)
        if self.seed is not None:
            check_range("seed", self.seed, 0, 2**31 - 1)
        if self.tensorboard_dir and importlib.util.find_spec("tensorboard") is None:
            raise UserError(
                "TensorBoard logs need the tensorboard package: run 'pip install tensorboard', "
                "or train without a TensorBoard folder."
            )
        return self


@dataclass(frozen=True)
class TrainingResult:
    """Learning curves of one training run (the model itself was trained in place)."""

    config: TrainingConfig
    batch_history: dict[str, list[float]] = field(default_factory=dict)
    """Per batch: ``step`` (global batch number, from 1), ``epoch`` (from 1), and the
    epoch's running ``loss`` and ``accuracy`` up to that batch."""
    epoch_history: dict[str, list[float]] = field(default_factory=dict)
    """Per finished epoch: ``loss``, ``accuracy`` and, with a split, ``val_loss``, ``val_accuracy``."""
    epochs_completed: int = 0
    stopped_early: bool = False
    """True when the progress callback asked to stop before the last epoch ended."""
    samples: int = 0
    """Training rows used (after the validation split)."""
    seconds: float = 0.0

    @property
    def final_accuracy(self) -> float | None:
        acc = self.epoch_history.get("accuracy") or self.batch_history.get("accuracy")
        return float(acc[-1]) if acc else None

    @property
    def final_loss(self) -> float | None:
        loss = self.epoch_history.get("loss") or self.batch_history.get("loss")
        return float(loss[-1]) if loss else None


class _Recorder(keras.callbacks.Callback):
    """Collects per-batch figures and forwards them to the progress callback."""

    def __init__(self, steps_per_epoch: int, epochs: int, progress: ProgressCallback | None):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.progress = progress
        self.epoch = 0
        self.batches: dict[str, list[float]] = {"step": [], "epoch": [], "loss": [], "accuracy": []}
        self.stop_requested = False
        self.every = max(1, steps_per_epoch // REPORTS_PER_EPOCH)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        step = self.epoch * self.steps_per_epoch + batch + 1
        loss, acc = float(logs.get("loss", np.nan)), float(logs.get("accuracy", np.nan))
        self.batches["step"].append(step)
        self.batches["epoch"].append(self.epoch + 1)
        self.batches["loss"].append(loss)
        self.batches["accuracy"].append(acc)
        last = batch + 1 == self.steps_per_epoch
        if batch % self.every == 0 or last:
            message = f"epoch {self.epoch + 1}/{self.epochs}, batch {batch + 1}/{self.steps_per_epoch}"
            fraction = step / (self.steps_per_epoch * self.epochs)
            if report(self.progress, fraction, message, loss=loss, accuracy=acc, step=step, epoch=self.epoch + 1):
                self.stop_requested = True
                self.model.stop_training = True


def _architecture_key(model: keras.Model) -> str:
    """What makes two compiled models share a trainer: layers, number types, loss, metrics,
    optimiser kind and every variable's shape and type, but not seeds, layer names or the
    learning rate (those differ between models of one architecture, or live in variables)."""

    def strip(value: object) -> object:
        if isinstance(value, dict):
            if "DTypePolicy" in str(value.get("class_name", "")):
                return value  # its "name" is the number type (float32, mixed_float16 …)
            return {k: strip(v) for k, v in value.items() if k not in ("seed", "name", "learning_rate")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    variables = [(tuple(v.shape), str(v.dtype)) for v in (*model.variables, *model.optimizer.variables)]
    return json.dumps(
        [type(model).__name__, strip(model.get_config()), strip(model.get_compile_config()), variables],
        sort_keys=True,
        default=str,
    )


def _state_bytes(model: keras.Model) -> int:
    """Bytes of a compiled model's variables and optimiser state."""
    variables = (*model.variables, *(model.optimizer.variables if model.optimizer else ()))
    return sum(int(np.prod(v.shape)) * np.dtype(str(v.dtype)).itemsize for v in variables)


class TrainerPool:
    """Compiled twins of models, reused across training jobs (see the module docstring).

    Thread-safe: a trainer is lent to one job at a time; two jobs of the same architecture
    at once get two trainers. Idle trainers are kept for the ``architectures`` most recently
    used, at most ``per_architecture`` each and ``max_idle_bytes`` of state in all (the
    largest networks allowed hold ~350 MB each); the least recently used go first.
    """

    def __init__(
        self,
        architectures: int = 4,
        per_architecture: int = max(2, os.cpu_count() or 1),
        max_idle_bytes: int = 512 * 2**20,
    ):
        self.architectures = architectures
        self.per_architecture = per_architecture
        self.max_idle_bytes = max_idle_bytes
        self._idle: OrderedDict[str, list[tuple[keras.Model, int]]] = OrderedDict()
        """Architecture key -> idle trainers and their state's bytes, least recently used first."""
        self._lock = threading.Lock()
        self.created = 0
        """Trainers built since start (each one traced a training step once)."""

    def idle(self) -> int:
        """Trainers waiting for a job."""
        with self._lock:
            return sum(len(v) for v in self._idle.values())

    @contextlib.contextmanager
    def lend(self, model: keras.Model) -> Iterator[keras.Model]:
        """A trainer holding ``model``'s state. However the block ends (normally, by an
        error, or by Streamlit interrupting the script on a Stop click), the trainer's state
        is copied back: the model keeps what was learned, as if it had been fitted itself."""
        if getattr(model, "optimizer", None) is None:
            compile_model(model)  # saved without training settings: the notebook's
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        key = _architecture_key(model)
        with self._lock:
            free = self._idle.get(key)
            trainer = free.pop()[0] if free else None
            if free == []:
                del self._idle[key]
        if trainer is None:
            trainer = self._build_trainer(model)
        source = [*model.variables, *model.optimizer.variables]
        target = [*trainer.variables, *trainer.optimizer.variables]
        if [(tuple(v.shape), v.dtype) for v in source] != [(tuple(v.shape), v.dtype) for v in target]:
            yield model  # a model whose clone differs (a custom layer): fit the model itself
            return
        copied_in = False
        try:
            for t, s in zip(target, source, strict=True):
                t.assign(s.value)
            copied_in = True
            yield trainer
        finally:
            if copied_in:
                for s, t in zip(source, target, strict=True):
                    s.assign(t.value)
            self._give_back(key, trainer)  # the next job overwrites all of its state

    def _give_back(self, key: str, trainer: keras.Model) -> None:
        size = _state_bytes(trainer)
        with self._lock:
            if size <= self.max_idle_bytes and len(self._idle.get(key, ())) < self.per_architecture:
                self._idle.setdefault(key, []).append((trainer, size))
                self._idle.move_to_end(key)
            while len(self._idle) > self.architectures or self._idle_bytes() > self.max_idle_bytes:
                oldest = next(iter(self._idle))  # least recently used architecture first
                if self._idle[oldest]:
                    self._idle[oldest].pop(0)
                if not self._idle[oldest]:
                    del self._idle[oldest]

    def _idle_bytes(self) -> int:
        return sum(size for trainers in self._idle.values() for _, size in trainers)

    def _build_trainer(self, model: keras.Model) -> keras.Model:
        trainer = keras.models.clone_model(model)
        trainer.compile_from_config(model.get_compile_config())
        obs_dim, n_actions = model_shape(model)
        # Build the optimiser, loss and metric state eagerly: created inside the traced step,
        # each variable would register a conditional graph function that TensorFlow keeps.
        trainer.optimizer.build(trainer.trainable_variables)
        x = np.zeros((1, obs_dim), dtype=np.float32)
        y = np.zeros((1, n_actions), dtype=np.float32)
        y[0, 0] = 1.0
        y_pred = trainer(x)
        trainer.compute_loss(x=x, y=y, y_pred=y_pred)
        trainer.compute_metrics(x, y, y_pred)
        trainer.reset_metrics()
        with self._lock:
            self.created += 1
        return trainer


#: The process's trainers, shared by every session. An idle trainer still holds the numbers
#: of its last job until the next one overwrites them; it is never shown to anyone.
TRAINERS = TrainerPool()


def split_games(dataset: Dataset, share: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, validation): whole games go to one side, chosen at random."""
    rows = np.arange(len(dataset))
    if share <= 0 or dataset.n_games < 2:
        return rows, rows[:0]
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(dataset.n_games * share)))
    val_games = np.zeros(dataset.n_games, dtype=bool)
    val_games[rng.choice(dataset.n_games, size=n_val, replace=False)] = True
    in_val = val_games[dataset.game_ids]
    return rows[~in_val], rows[in_val]


def train(
    model: keras.Model,
    dataset: Dataset,
    config: TrainingConfig = TrainingConfig(),
    progress: ProgressCallback | None = None,
) -> TrainingResult:
    """Fit ``model`` in place on ``dataset`` and return its learning curves.

    ``progress`` gets a report every few batches with the running loss and accuracy;
    returning True stops training after the current batch, keeping what was learned.
    """
    config.validate()
    if len(dataset) == 0:
        raise UserError("The dataset has no rows to learn from: generate one in which some games are kept.")
    obs_dim, n_actions = model_shape(model)
    if (obs_dim, n_actions) != (dataset.obs_dim, dataset.n_actions):
        raise UserError(
            f"The model expects {obs_dim} observation values and {n_actions} actions, but the dataset "
            f"({dataset.env_id}) has {dataset.obs_dim} and {dataset.n_actions}: build a model for this dataset."
        )
    started = time.perf_counter()
    train_rows, val_rows = split_games(dataset, config.validation_split, config.seed)
    x_all, y_all = dataset.observations, dataset.one_hot_actions()
    validation = (x_all[val_rows], y_all[val_rows]) if val_rows.size else None
    steps_per_epoch = int(np.ceil(train_rows.size / config.batch_size))
    recorder = _Recorder(steps_per_epoch, config.epochs, progress)
    callbacks: list[keras.callbacks.Callback] = [recorder]
    if config.tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(Path(config.tensorboard_dir))))
    rng = np.random.default_rng(config.seed)
    epochs: dict[str, list[float]] = {}
    done = 0
    with TRAINERS.lend(model) as trainer:
        for epoch in range(config.epochs):
            recorder.epoch = epoch
            order = train_rows[rng.permutation(train_rows.size)]
            history = trainer.fit(
                x_all[order],
                y_all[order],
                batch_size=config.batch_size,
                epochs=epoch + 1,
                initial_epoch=epoch,
                shuffle=False,
                validation_data=validation,
                callbacks=callbacks,
                verbose=0,
            )
            if recorder.stop_requested and len(recorder.batches["step"]) < (epoch + 1) * steps_per_epoch:
                break  # stopped mid-epoch: Keras's epoch figures would describe a partial pass
            for key, values in history.history.items():
                epochs.setdefault(key, []).append(float(values[-1]))
            done = epoch + 1
            if recorder.stop_requested:
                break
    return TrainingResult(
        config=config,
        batch_history=recorder.batches,
        epoch_history=epochs,
        epochs_completed=done,
        stopped_early=done < config.epochs,
        samples=int(train_rows.size),
        seconds=time.perf_counter() - started,
    )
