"""Training: fit a model to a dataset's (observation, action) rows (the notebook's
``train_model``).

The rows are shuffled once per epoch by our own seeded generator, so the same data, model
seed and training seed give the same weights on the same machine, without touching Keras's
global random state (which is shared by every session of a server).

Speed: Keras's ``fit`` costs a Python round trip, a data pipeline step and callbacks on
every batch, which for the notebook's small batches is more than the arithmetic. Here a
compiled loop (:class:`_Steps`) runs a chunk of batches per call inside TensorFlow, with
``fit``'s maths (the model's compiled loss, its optimiser's ``apply``; a test checks the
weights match ``fit``'s), and hands back every batch's loss and accuracy; chunks are sized
to take ~0.25 s, so live curves and Stop still come several times a second.

Memory: the first step of every new Keras model traces a training function, and TensorFlow
never gives that memory back (8-17 MB per model for the notebook's network), so a server
that trains all day would grow without bound. Models are therefore never fitted
themselves: :class:`TrainerPool` keeps a few compiled *trainers*, one per architecture in
use; a job copies the model's variables and optimiser state into a free trainer, fits it,
and copies them back. A trainer's loop is traced once and reused, and the result is the
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
from typing import TYPE_CHECKING

import numpy as np

from cartpole_core.dataset import Dataset
from cartpole_core.errors import UserError, bounds, check_range, within
from cartpole_core.model import compile_model, model_shape
from cartpole_core.progress import ProgressCallback, report

if TYPE_CHECKING:  # TensorFlow is imported when training starts, not with the settings
    import keras
    import tensorflow as tf

MAX_EPOCHS = 1000
#: Progress reports per epoch at most (each one copies the running figures).
REPORTS_PER_EPOCH = 50
#: Batches in the first call of the compiled loop; later calls aim at CHUNK_SECONDS each.
FIRST_CHUNK, MAX_CHUNK, CHUNK_SECONDS = 8, 512, 0.25
#: Rows per step when measuring the validation games.
VALIDATION_BATCH = 4096


@dataclass(frozen=True)
class TrainingConfig:
    """How to fit; defaults are the notebook's."""

    epochs: int = field(default=4, metadata=within(1, MAX_EPOCHS))
    """Passes over the data (the notebook: more would overfit)."""
    batch_size: int = field(default=64, metadata=within(1, 65536))
    """Rows per gradient step (tflearn's default, which the notebook used)."""
    validation_split: float = field(default=0.0, metadata=within(0.0, 0.5))
    """Share of games held out to measure validation loss/accuracy (0 = none)."""
    seed: int | None = field(default=0, metadata=within(0, 2**31 - 1))
    """Seed of the shuffling and the validation split."""
    tensorboard_dir: str | None = None
    """If set, TensorBoard logs are written there (the notebook's ``logs/``)."""

    def validate(self) -> TrainingConfig:
        """Raise :class:`UserError` for settings out of range; return self."""
        check_range("epochs", self.epochs, *bounds(self, "epochs"))
        check_range("batch_size", self.batch_size, *bounds(self, "batch_size"))
        check_range("validation_split", self.validation_split, *bounds(self, "validation_split"))
        if self.seed is not None:
            check_range("seed", self.seed, *bounds(self, "seed"))
        if self.tensorboard_dir and importlib.util.find_spec("tensorboard") is None:
            raise UserError(
                "Training logs need the tensorboard package: run 'pip install tensorboard', or train without logs."
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


class _Steps:
    """A compiled training loop over many batches per call (one trace per trainer).

    Keras's ``fit`` pays for its data pipeline, callbacks and a Python round trip on every
    batch; here one call runs a whole chunk of batches inside TensorFlow (a ``tf.while_loop``)
    and returns each batch's loss and correct predictions, so the page still gets per-batch
    curves. The maths is ``fit``'s: the model's compiled loss, its optimiser's ``apply``.
    """

    def __init__(self, trainer: keras.Model):
        import tensorflow as tf

        obs_dim, n_actions = model_shape(trainer)
        variables = trainer.trainable_variables

        def run(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            n = tf.shape(x)[0]
            losses = tf.TensorArray(tf.float32, size=n)
            hits = tf.TensorArray(tf.float32, size=n)
            for i in tf.range(n):
                with tf.GradientTape() as tape:
                    y_pred = trainer(x[i], training=True)
                    loss = trainer.compute_loss(x=x[i], y=y[i], y_pred=y_pred, training=True)
                trainer.optimizer.apply(tape.gradient(loss, variables), variables)
                right = tf.equal(tf.argmax(y_pred, axis=-1), tf.argmax(y[i], axis=-1))
                losses = losses.write(i, tf.cast(loss, tf.float32))
                hits = hits.write(i, tf.reduce_sum(tf.cast(right, tf.float32)))
            return losses.stack(), hits.stack()

        spec = [tf.TensorSpec([None, None, obs_dim], tf.float32), tf.TensorSpec([None, None, n_actions], tf.float32)]
        self.run = tf.function(run, input_signature=spec)
        """(batches, rows, obs_dim), (batches, rows, n_actions) -> per batch: mean loss, rows right."""


def _steps_of(trainer: keras.Model) -> _Steps:
    """The trainer's compiled loop, traced on first use and kept with it (an attribute, so it
    goes when the trainer goes)."""
    steps = getattr(trainer, "_cartpole_steps", None)
    if steps is None:
        steps = _Steps(trainer)
        trainer._cartpole_steps = steps
    return steps


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
        import keras

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
    import tensorflow as tf

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
    x_all, y_all = dataset.observations.astype(np.float32, copy=False), dataset.one_hot_actions()
    size = config.batch_size
    steps_per_epoch = int(np.ceil(train_rows.size / size))
    every = max(1, steps_per_epoch // REPORTS_PER_EPOCH)
    total = steps_per_epoch * config.epochs
    batches: dict[str, list[float]] = {"step": [], "epoch": [], "loss": [], "accuracy": []}
    epochs: dict[str, list[float]] = {}
    writer = _TensorBoardWriter(config.tensorboard_dir) if config.tensorboard_dir else None
    rng = np.random.default_rng(config.seed)
    chunk = FIRST_CHUNK
    done, stop = 0, False
    with TRAINERS.lend(model) as trainer:
        run = _steps_of(trainer).run
        for epoch in range(config.epochs):
            order = train_rows[rng.permutation(train_rows.size)]
            loss_sum, right, rows_seen, batch = 0.0, 0.0, 0, 0
            while batch < steps_per_epoch and not stop:
                # A chunk of whole batches, or the epoch's last (short) batch on its own.
                full = (order.size - batch * size) // size
                n = min(chunk, full) if full else 1
                rows = order[batch * size : min(order.size, (batch + n) * size)]
                width = min(size, rows.size)
                x = x_all[rows].reshape(n, width, -1)
                y = y_all[rows].reshape(n, width, -1)
                t0 = time.perf_counter()
                losses, hits = (v.numpy() for v in run(tf.constant(x), tf.constant(y)))
                chunk = _next_chunk(chunk, n, time.perf_counter() - t0)
                for i in range(n):
                    loss_sum += float(losses[i]) * width
                    right += float(hits[i])
                    rows_seen += width
                    batch += 1
                    step = epoch * steps_per_epoch + batch
                    loss, acc = loss_sum / rows_seen, right / rows_seen
                    batches["step"].append(step)
                    batches["epoch"].append(epoch + 1)
                    batches["loss"].append(loss)
                    batches["accuracy"].append(acc)
                    if stop or not ((batch - 1) % every == 0 or batch == steps_per_epoch):
                        continue
                    message = f"epoch {epoch + 1}/{config.epochs}, batch {batch}/{steps_per_epoch}"
                    metrics = {"loss": loss, "accuracy": acc, "step": step, "epoch": epoch + 1}
                    stop = bool(report(progress, step / total, message, **metrics))
            if batch < steps_per_epoch:
                break  # stopped mid-epoch: no figures for a partial pass
            epochs.setdefault("loss", []).append(batches["loss"][-1])
            epochs.setdefault("accuracy", []).append(batches["accuracy"][-1])
            if val_rows.size:
                figures = trainer.evaluate(
                    x_all[val_rows], y_all[val_rows], batch_size=VALIDATION_BATCH, verbose=0, return_dict=True
                )
                epochs.setdefault("val_loss", []).append(float(figures["loss"]))
                epochs.setdefault("val_accuracy", []).append(float(figures.get("accuracy", np.nan)))
            if writer is not None:
                writer.epoch(epoch, {k: v[-1] for k, v in epochs.items()})
            done = epoch + 1
            if stop:
                break
    if writer is not None:
        writer.close()
    return TrainingResult(
        config=config,
        batch_history=batches,
        epoch_history=epochs,
        epochs_completed=done,
        stopped_early=done < config.epochs,
        samples=int(train_rows.size),
        seconds=time.perf_counter() - started,
    )


def _next_chunk(chunk: int, ran: int, seconds: float) -> int:
    """Batches in the next call: enough to amortise the call, few enough that progress and
    Stop come every ~:data:`CHUNK_SECONDS` (the first call also traces, so never shrink much)."""
    if ran < chunk or seconds <= 0:
        return chunk
    wanted = ran * CHUNK_SECONDS / seconds
    return int(min(MAX_CHUNK, max(chunk // 2, 1, min(wanted, chunk * 4))))


class _TensorBoardWriter:
    """Epoch figures as TensorBoard scalars, where Keras's TensorBoard callback puts them
    (``train/`` and ``validation/``, ``epoch_loss``, ``epoch_accuracy``)."""

    def __init__(self, folder: str):
        import tensorflow as tf

        self.train = tf.summary.create_file_writer(str(Path(folder) / "train"))
        self.validation = tf.summary.create_file_writer(str(Path(folder) / "validation"))

    def epoch(self, epoch: int, figures: dict[str, float]) -> None:
        import tensorflow as tf

        for name, value in figures.items():
            writer = self.validation if name.startswith("val_") else self.train
            with writer.as_default():
                tf.summary.scalar(f"epoch_{name.removeprefix('val_')}", value, step=epoch)

    def close(self) -> None:
        self.train.close()
        self.validation.close()
