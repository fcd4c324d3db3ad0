"""Storage: the only module that reads or writes files.

- Datasets are ``.npz`` files of numeric arrays plus one JSON string (``metadata``); they
  are read with ``allow_pickle=False`` and validated.
- Models are Keras ``.keras`` files, loaded with ``safe_mode=True`` (no code from a file
  is ever run); ``.h5``, pickles and anything else are refused.
- Runs are folders under :func:`runs_dir` holding ``run.json`` (settings + results) and,
  optionally, ``dataset.npz`` and ``model.keras``. Every write goes to a temporary name
  first and is renamed into place, so a crash never leaves half a file or half a run.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cartpole_core.dataset import Dataset, validate_arrays
from cartpole_core.errors import UserError
from cartpole_core.network import Network, model_shape

if TYPE_CHECKING:
    import keras

RUNS_DIR_ENV = "CARTPOLE_LAB_RUNS"
DATASET_ARRAYS = ("observations", "actions", "game_ids", "game_scores")
#: Largest file this module will read (the dashboard has its own, lower upload limit).
MAX_FILE_BYTES = 512 * 1024 * 1024
RUN_FILE, DATASET_FILE, MODEL_FILE = "run.json", "dataset.npz", "model.keras"


# ---------------------------------------------------------------- small helpers


def to_jsonable(value: Any) -> Any:
    """Numbers, arrays, tuples and dicts -> plain JSON types (keys become strings)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_limited(path: Path) -> bytes:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror or exc}. Check the path.") from exc
    if size > MAX_FILE_BYTES:
        raise UserError(f"{path} is {size / 1e6:.0f} MB, more than the {MAX_FILE_BYTES / 1e6:.0f} MB limit.")
    return path.read_bytes()


# ---------------------------------------------------------------- datasets


def dataset_to_bytes(dataset: Dataset) -> bytes:
    """The dataset as ``.npz`` bytes: its four arrays plus ``metadata`` as a JSON string."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        observations=np.asarray(dataset.observations, dtype=np.float32),
        actions=np.asarray(dataset.actions, dtype=np.int64),
        game_ids=np.asarray(dataset.game_ids, dtype=np.int64),
        game_scores=np.asarray(dataset.game_scores, dtype=np.float32),
        metadata=np.array(json.dumps(to_jsonable(dataset.metadata))),
    )
    return buffer.getvalue()


def dataset_from_bytes(data: bytes, expect_env: str | None = None) -> Dataset:
    """Read ``.npz`` bytes written by :func:`dataset_to_bytes`, refusing pickles, and
    validate it. Raises :class:`UserError` naming what is wrong."""
    fix = "Upload a .npz dataset saved by CartPole Lab."
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"The dataset file is larger than {MAX_FILE_BYTES / 1e6:.0f} MB.")
    if not data.startswith(b"PK"):
        raise UserError(f"This file is not an .npz archive (it does not start like a zip file). {fix}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            missing = [k for k in (*DATASET_ARRAYS, "metadata") if k not in npz.files]
            if missing:
                raise UserError(f"The .npz file has no {', '.join(missing)}. {fix}")
            arrays = {k: npz[k] for k in (*DATASET_ARRAYS, "metadata")}
    except UserError:
        raise
    except ValueError as exc:  # allow_pickle=False refusing an object array lands here
        if "pickle" in str(exc).lower():
            raise UserError(f"The .npz file holds pickled Python objects, which are never loaded. {fix}") from exc
        raise UserError(f"The .npz file could not be read ({exc}). {fix}") from exc
    except Exception as exc:  # damaged bytes: BadZipFile, zlib.error, EOFError, tokenize errors...
        raise UserError(f"The .npz file is damaged or truncated ({exc}). {fix}") from exc
    meta = arrays.pop("metadata")
    if meta.dtype.kind != "U" or meta.shape != ():
        raise UserError(f"The dataset's metadata is not a JSON string. {fix}")
    try:
        metadata = json.loads(str(meta))
    except json.JSONDecodeError as exc:
        raise UserError(f"The dataset's metadata is not valid JSON. {fix}") from exc
    if not isinstance(metadata, dict):
        raise UserError(f"The dataset's metadata is not a JSON object. {fix}")
    validate_arrays(arrays["observations"], arrays["actions"], arrays["game_ids"], arrays["game_scores"], metadata)
    dataset = Dataset(
        observations=arrays["observations"],
        actions=arrays["actions"].astype(np.int64),
        game_ids=arrays["game_ids"].astype(np.int64),
        game_scores=arrays["game_scores"].astype(np.float32),
        metadata=metadata,
    )
    return dataset.validate(expect_env)


def save_dataset(dataset: Dataset, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        raise UserError(f"Datasets are saved as .npz files: name it {path.with_suffix('.npz').name}.")
    atomic_write(path, dataset_to_bytes(dataset))
    return path


def load_dataset(path: str | Path, expect_env: str | None = None) -> Dataset:
    """A dataset from an ``.npz`` file, or the dataset inside a run's ``.zip``."""
    path = Path(path)
    if path.suffix == ".zip":
        dataset = read_run_zip(_read_limited(path)).dataset
        if dataset is None:
            raise UserError(f"The run in {path.name} has no dataset: use a run saved with one.")
        return dataset.validate(expect_env)
    if path.suffix != ".npz":
        raise UserError(f"{path.name} is not an .npz dataset. Give a .npz file saved by CartPole Lab.")
    return dataset_from_bytes(_read_limited(path), expect_env)


# ---------------------------------------------------------------- models


def model_to_bytes(model: keras.Model) -> bytes:
    """The model as ``.keras`` file bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_FILE
        model.save(path)
        return path.read_bytes()


def model_from_bytes(data: bytes) -> keras.Model:
    """Load ``.keras`` bytes with ``safe_mode=True``; refuse anything else.

    Raises :class:`UserError` for HDF5 (``.h5``), pickles, damaged files and models that
    contain code (e.g. a ``Lambda`` layer).
    """
    fix = "Upload a .keras model saved by CartPole Lab."
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"The model file is larger than {MAX_FILE_BYTES / 1e6:.0f} MB.")
    if data.startswith(b"\x89HDF"):
        raise UserError(f"HDF5 (.h5) models are refused: they can carry code. {fix}")
    if data[:1] == b"\x80":
        raise UserError(f"Pickled files are refused: loading them runs code. {fix}")
    if not data.startswith(b"PK"):
        raise UserError(f"This is not a .keras model file. {fix}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as cartpole_core.model: TensorFlow's C++ chatter off stderr
    import keras

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_FILE
        path.write_bytes(data)
        try:
            model = keras.saving.load_model(path, safe_mode=True, compile=True)
        except Exception as exc:  # Keras raises many types for bad files
            text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            if "safe_mode" in str(exc) or "Lambda" in str(exc):
                raise UserError(
                    f"This model contains code (e.g. a Lambda layer), which is never loaded. {fix}"
                ) from exc
            raise UserError(f"The model file could not be loaded ({text}). {fix}") from exc
    if not isinstance(model, keras.Model):
        raise UserError(f"The file does not hold a Keras model. {fix}")
    model_shape(model)
    return model


def save_model(model: keras.Model, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".keras":
        raise UserError(f"Models are saved as .keras files: name it {path.with_suffix('.keras').name}.")
    atomic_write(path, model_to_bytes(model))
    return path


def load_model(path: str | Path) -> keras.Model:
    """A model from a ``.keras`` file, or the model inside a run's ``.zip``."""
    path = Path(path)
    if path.suffix == ".zip":
        model_bytes = read_run_zip(_read_limited(path)).model_bytes
        if model_bytes is None:
            raise UserError(f"The run in {path.name} has no model: use a run saved with one.")
        return model_from_bytes(model_bytes)
    if path.suffix != ".keras":
        raise UserError(f"{path.name} is not a .keras model; only .keras files are loaded (never .h5 or pickles).")
    return model_from_bytes(_read_limited(path))


# ---------------------------------------------------------------- runs


def runs_dir() -> Path:
    """Where runs are kept: ``$CARTPOLE_LAB_RUNS`` or ``./runs``."""
    return Path(os.environ.get(RUNS_DIR_ENV, "runs"))


@dataclass(frozen=True)
class RunRecord:
    """One saved experiment: what was asked and what came out (all JSON-able)."""

    kind: str
    """What ran: ``"notebook"``, ``"generate"``, ``"train"``, ``"evaluate"``, ``"ensemble"``, ``"improve"``."""
    name: str
    """A short title a person gave or we made."""
    settings: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    """Unix time of saving."""
    run_id: str = ""
    """Folder name under :func:`runs_dir` (set when saved)."""
    has_dataset: bool = False
    has_model: bool = False
    damaged: str = ""
    """Why the run could not be read; empty for a healthy run."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "run"


def _sweep_leftovers(root: Path, older_than_s: float = 3600.0) -> None:
    """Remove what an interrupted save or delete left behind (hidden folders over an hour old)."""
    cutoff = time.time() - older_than_s
    for leftover in [*root.glob(".tmp-*"), *root.glob(".trash-*")]:
        try:
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


def save_run(
    record: RunRecord,
    dataset: Dataset | None = None,
    model: keras.Model | Network | None = None,
    root: Path | None = None,
    keep: int | None = None,
) -> RunRecord:
    """Save a run as a new folder, atomically (all of it appears at once or nothing).

    ``keep`` deletes the oldest runs beyond that many. Returns the record as saved.
    """
    root = root or runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(record.created))
    run_id = f"{stamp}-{_slug(record.kind + '-' + record.name)}-{uuid.uuid4().hex[:6]}"
    saved = RunRecord(
        kind=record.kind,
        name=record.name,
        settings=to_jsonable(record.settings),
        results=to_jsonable(record.results),
        created=record.created,
        run_id=run_id,
        has_dataset=dataset is not None,
        has_model=model is not None,
    )
    _sweep_leftovers(root)
    tmp = root / f".tmp-{run_id}"
    tmp.mkdir()
    try:
        if dataset is not None:
            (tmp / DATASET_FILE).write_bytes(dataset_to_bytes(dataset))
        if model is not None:
            data = model.keras_file if isinstance(model, Network) else model_to_bytes(model)
            if data is None:
                raise ValueError("this network was kept only to play: it has no .keras file to save")
            (tmp / MODEL_FILE).write_bytes(data)
        body = {k: v for k, v in saved.__dict__.items() if k != "damaged"}
        (tmp / RUN_FILE).write_text(json.dumps(body, indent=1))
        os.rename(tmp, root / run_id)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if keep is not None:
        for old in list_runs(root)[keep:]:
            delete_run(old.run_id, root)
    return saved


def _read_record(folder: Path) -> RunRecord:
    try:
        body = json.loads((folder / RUN_FILE).read_text())
        if not isinstance(body, dict):
            raise ValueError("run.json is not an object")
        return RunRecord(
            kind=str(body["kind"]),
            name=str(body["name"]),
            settings=dict(body.get("settings", {})),
            results=dict(body.get("results", {})),
            created=float(body.get("created", 0.0)),
            run_id=folder.name,
            has_dataset=(folder / DATASET_FILE).exists(),
            has_model=(folder / MODEL_FILE).exists(),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        created = folder.stat().st_mtime if folder.exists() else 0.0
        return RunRecord(kind="?", name=folder.name, created=created, run_id=folder.name, damaged=str(exc)[:200])


def list_runs(root: Path | None = None) -> list[RunRecord]:
    """Every run, newest first; unreadable ones are listed with ``damaged`` set."""
    root = root or runs_dir()
    if not root.is_dir():
        return []
    records = [_read_record(p) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(records, key=lambda r: r.created, reverse=True)


def _run_folder(run_id: str, root: Path | None) -> Path:
    root = root or runs_dir()
    if not re.fullmatch(r"[A-Za-z0-9._-]+", run_id or "") or run_id.startswith("."):
        raise UserError(f"{run_id!r} is not a run id: pick one from the runs list.")
    folder = root / run_id
    if not folder.is_dir():
        raise UserError(f"There is no run {run_id!r}: it may have been deleted. Pick one from the runs list.")
    return folder


def load_run(run_id: str, root: Path | None = None) -> RunRecord:
    record = _read_record(_run_folder(run_id, root))
    if record.damaged:
        raise UserError(f"Run {run_id} is damaged ({record.damaged}); delete it.")
    return record


def load_run_dataset(run_id: str, root: Path | None = None) -> Dataset:
    return load_dataset(_run_folder(run_id, root) / DATASET_FILE)


def load_run_model(run_id: str, root: Path | None = None) -> keras.Model:
    return load_model(_run_folder(run_id, root) / MODEL_FILE)


def run_model_file(run_id: str, root: Path | None = None) -> bytes:
    """The run's ``model.keras`` as bytes, unloaded (no TensorFlow needed to read it)."""
    path = _run_folder(run_id, root) / MODEL_FILE
    if not path.exists():
        raise UserError(f"Run {run_id} has no model: use a run saved with one.")
    return _read_limited(path)


def delete_run(run_id: str, root: Path | None = None) -> None:
    folder = _run_folder(run_id, root)
    trash = folder.with_name(f".trash-{folder.name}-{uuid.uuid4().hex[:6]}")
    os.rename(folder, trash)  # atomic: the run disappears from the list at once
    shutil.rmtree(trash, ignore_errors=True)


def run_zip(run_id: str, root: Path | None = None) -> bytes:
    """The run's folder as zip bytes (run.json, dataset.npz, model.keras)."""
    folder = _run_folder(run_id, root)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for item in sorted(folder.iterdir()):
            if item.is_file():
                zf.write(item, arcname=f"{run_id}/{item.name}")
    return buffer.getvalue()


@dataclass(frozen=True)
class RunArchive:
    """What a run's zip holds (see :func:`run_zip`)."""

    record: RunRecord
    dataset: Dataset | None
    model_bytes: bytes | None
    """The ``.keras`` file, still to be loaded with :func:`model_from_bytes` (needs TensorFlow)."""


def read_run_zip(data: bytes) -> RunArchive:
    """Read a zip made by :func:`run_zip`: ``run.json`` plus optional ``dataset.npz`` and
    ``model.keras``, each checked (sizes first, so a zip bomb is refused unread)."""
    fix = "Use a run zip downloaded from CartPole Lab's Runs page."
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = {Path(info.filename).name: info for info in zf.infolist() if not info.is_dir()}
            unknown = set(members) - {RUN_FILE, DATASET_FILE, MODEL_FILE}
            if unknown or RUN_FILE not in members:
                raise UserError(f"The zip must hold run.json (and optionally dataset.npz, model.keras). {fix}")
            if any(info.file_size > MAX_FILE_BYTES for info in members.values()):
                raise UserError(f"A file in the zip is larger than {MAX_FILE_BYTES / 1e6:.0f} MB. {fix}")
            files = {name: zf.read(info) for name, info in members.items()}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"This is not a readable zip file ({exc}). {fix}") from exc
    try:
        body = json.loads(files[RUN_FILE])
        record = RunRecord(
            kind=str(body["kind"]),
            name=str(body["name"]),
            settings=dict(body.get("settings", {})),
            results=dict(body.get("results", {})),
            created=float(body.get("created", 0.0)),
            run_id=str(body.get("run_id", "")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"run.json in the zip is not a CartPole Lab run record. {fix}") from exc
    dataset = dataset_from_bytes(files[DATASET_FILE]) if DATASET_FILE in files else None
    return RunArchive(record, dataset, files.get(MODEL_FILE))


# ---------------------------------------------------------------- TensorBoard logs

LOGS_DIR_ENV = "CARTPOLE_LAB_LOGS"
#: Log folders kept (the oldest go first), so a shared server's disk does not fill up.
LOGS_KEPT = 200


def logs_dir() -> Path:
    """Where TensorBoard logs go: ``$CARTPOLE_LAB_LOGS`` or ``./logs`` (the notebook's)."""
    return Path(os.environ.get(LOGS_DIR_ENV, "logs"))


def new_log_folder(label: str, keep: int = LOGS_KEPT) -> Path:
    """A new, empty folder under :func:`logs_dir` for one training's logs (named by time and
    ``label``); the oldest folders beyond ``keep`` are removed."""
    root = logs_dir()
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = root / f"{stamp}-{_slug(label)}-{uuid.uuid4().hex[:4]}"
    folder.mkdir()
    old = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for stale in old[: max(0, len(old) - keep)]:
        shutil.rmtree(stale, ignore_errors=True)
    return folder


def folder_zip(folder: Path) -> bytes:
    """Every file under ``folder`` as zip bytes, paths relative to its parent (for a download)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for item in sorted(Path(folder).rglob("*")):
            if item.is_file():
                zf.write(item, arcname=str(item.relative_to(Path(folder).parent)))
    return buffer.getvalue()
