"""Storage: the only module that reads or writes files.

- Datasets are ``.npz`` files of numeric arrays plus one JSON string (``metadata``); they
  are read with ``allow_pickle=False`` and validated.
- Models are Keras ``.keras`` files, loaded with ``safe_mode=True`` (no code from a file
  is ever run); ``.h5``, pickles and anything else are refused.
- Runs are folders under :func:`runs_dir` holding ``run.json`` (settings + results) and,
  optionally, ``dataset.npz`` and ``model.keras``. Every write goes to a temporary name
  first and is renamed into place, so a crash never leaves half a file or half a run.
- A run belongs to whoever saved it: ``run.json`` keeps a SHA-256 hash of the saving
  session's secret (the secret itself stays in that session on the server), and only that
  secret or the operator's token (``$CARTPOLE_LAB_OPERATOR_TOKEN``) deletes it. Each owner
  keeps at most a quota of runs (their own oldest go first); a full server refuses a save
  rather than push out another visitor's runs.
- The class board is derived from the runs themselves (a run's score on fresh games and the
  name its owner chose); clearing it writes one small ``board.json`` (the time it was
  cleared), atomically.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import io
import json
import os
import re
import shutil
import tempfile
import threading
import time
import unicodedata
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cartpole_core.dataset import Dataset, validate_arrays
from cartpole_core.errors import UserError
from cartpole_core.network import Network, model_shape

if TYPE_CHECKING:
    import keras

RUNS_DIR_ENV = "CARTPOLE_LAB_RUNS"
OPERATOR_TOKEN_ENV = "CARTPOLE_LAB_OPERATOR_TOKEN"
DATASET_ARRAYS = ("observations", "actions", "game_ids", "game_scores")
#: Largest file this module will read (the dashboard has its own, lower upload limit).
MAX_FILE_BYTES = 512 * 1024 * 1024
RUN_FILE, DATASET_FILE, MODEL_FILE = "run.json", "dataset.npz", "model.keras"
#: In the runs folder: the time the operator last cleared the class board.
BOARD_FILE = "board.json"
#: Longest name on the class board, in characters.
BOARD_NAME_MAX = 30
#: The board's name for a visitor who gave none.
ANONYMOUS = "anonymous"


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


def _unwritable(folder: Path) -> str:
    """Why files cannot be made in ``folder`` (or where it would be made), e.g. ``"read-only
    file system"``; empty when they can. Asks the system (``os.access``) and then really
    writes and removes a probe file: ``root`` passes ``os.access`` on a read-only mount."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the folder is made at the first save: can its parent be written?
    if not probe.is_dir():
        return "not a folder"
    allowed = os.access(probe, os.W_OK | os.X_OK)
    if probe != folder:  # nothing is written beside the runs folder (the app's own folder, say)
        return "" if allowed else _why_not_writable(probe)
    try:  # also where access() says no: the failed write names the reason (read-only file system, ...)
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".tmp-probe-"))  # left by a kill: swept as a .tmp-
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    return "" if allowed else "permission denied"


def _why_not_writable(folder: Path) -> str:
    """Why ``os.access`` says ``folder`` cannot be written: a read-only mount or permissions."""
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows)
        read_only = False
    return "read-only file system" if read_only else "permission denied"


def _cannot_save(root: Path, why: str) -> UserError:
    """The one line a visitor reads when runs cannot be saved under ``root``."""
    if why in ("no space left on device", "disk quota exceeded"):
        return UserError(f"Runs cannot be saved on this server: its disk is full ({why}). The operator frees space.")
    where = f"{RUNS_DIR_ENV}={root}" if RUNS_DIR_ENV in os.environ else f"its folder {root}/"
    return UserError(
        f"Runs cannot be saved on this server: {where} cannot be written ({why}). "
        f"The operator sets {RUNS_DIR_ENV} to a writable folder (a volume)."
    )


def saving_off(root: Path | None = None) -> str:
    """Why runs cannot be saved here (one line naming ``$CARTPOLE_LAB_RUNS``), or ``""``
    when they can."""
    root = root or runs_dir()
    why = _unwritable(root)
    return str(_cannot_save(root, why)) if why else ""


def owner_id(secret: str) -> str:
    """What ``run.json`` keeps of an owner: the SHA-256 of their secret, 64 hex digits (the
    secret cannot be read back from it, and a downloaded run carries neither)."""
    return hashlib.sha256(f"cartpole-lab run owner\0{secret}".encode()).hexdigest()


def has_operator() -> bool:
    """True when this server has an operator (``$CARTPOLE_LAB_OPERATOR_TOKEN`` is set)."""
    return bool(os.environ.get(OPERATOR_TOKEN_ENV, ""))


def is_operator(token: str | None) -> bool:
    """True when ``token`` is this server's operator token (``$CARTPOLE_LAB_OPERATOR_TOKEN``,
    compared in constant time). Without the variable there is no operator."""
    expected = os.environ.get(OPERATOR_TOKEN_ENV, "")
    return bool(expected and token) and hmac.compare_digest(str(token).encode(), expected.encode())


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
    owner: str = ""
    """:func:`owner_id` of the session that saved it; empty for a run saved before runs had
    owners (only the operator deletes those)."""
    board_name: str = ""
    """The name its owner chose for the class board (``""``: :data:`ANONYMOUS`)."""

    def owned_by(self, secret: str | None) -> bool:
        """True when ``secret`` is the secret of the session that saved this run."""
        return bool(secret and self.owner) and hmac.compare_digest(
            self.owner.encode(errors="replace"), owner_id(str(secret)).encode()
        )


def may_delete(record: RunRecord, owner_secret: str | None = None, operator_token: str | None = None) -> bool:
    """True when the session with ``owner_secret``, or ``operator_token``, may delete ``record``."""
    return record.owned_by(owner_secret) or is_operator(operator_token)


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


@contextmanager
def _runs_lock(root: Path) -> Iterator[None]:
    """Hold the runs folder's lock (an exclusive ``flock`` on the folder itself, so no lock
    file lies in it): saves, deletes and renames that read the list and then change it do so
    one at a time, across threads and processes. The heavy writes (datasets, models) happen
    before, outside it."""
    try:
        import fcntl  # POSIX only: elsewhere one server's threads take turns by the lock below
    except ImportError:
        with _local_runs_lock:
            yield
        return
    handle = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing the folder releases its lock


_local_runs_lock = threading.Lock()


def _remove(folder: Path) -> None:
    trash = folder.with_name(f".trash-{folder.name}-{uuid.uuid4().hex[:6]}")
    os.rename(folder, trash)  # atomic: the run disappears from the list at once
    shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def _disk_errors(root: Path) -> Iterator[None]:
    """An unwritable or full runs folder as the one line a visitor reads (a UserError)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
            raise _cannot_save(root, (exc.strerror or str(exc)).lower()) from exc
        raise


def save_run(
    record: RunRecord,
    dataset: Dataset | None = None,
    model: keras.Model | Network | None = None,
    root: Path | None = None,
    keep: int | None = None,
    *,
    owner_secret: str | None = None,
    per_owner: int | None = None,
    stale_after_s: float | None = None,
) -> RunRecord:
    """Save a run as a new folder, atomically (all of it appears at once or nothing).

    ``owner_secret``: the saving session's secret; the run keeps its :func:`owner_id`.
    ``per_owner``: that owner keeps at most this many runs, their own oldest removed to make
    room. ``keep``: the most runs the server holds; a save beyond it removes anyone's runs older
    than ``stale_after_s`` seconds, oldest first, to make room (a session's secret dies with the
    session, so without this a server would fill up for good), and is refused (a
    :class:`UserError`) rather than remove another visitor's younger run. A folder that cannot be
    written is a :class:`UserError` naming ``$CARTPOLE_LAB_RUNS``. Returns the record as saved.
    """
    root = root or runs_dir()
    why = _unwritable(root)
    if why:
        raise _cannot_save(root, why)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(record.created))
    run_id = f"{stamp}-{_slug(record.kind + '-' + record.name)}-{uuid.uuid4().hex[:6]}"
    owner = owner_id(owner_secret) if owner_secret else ""
    saved = replace(
        record,
        settings=to_jsonable(record.settings),
        results=to_jsonable(record.results),
        run_id=run_id,
        has_dataset=dataset is not None,
        has_model=model is not None,
        damaged="",
        owner=owner,
        board_name=check_board_name(record.board_name) if record.board_name else "",
    )
    with _disk_errors(root):
        root.mkdir(parents=True, exist_ok=True)
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
            with _runs_lock(root):
                runs = list_runs(root)
                mine = [r for r in runs if owner and r.owner == owner]  # newest first
                making_room = mine[max(per_owner - 1, 0) :] if per_owner is not None else []
                over = len(runs) - len(making_room) - keep + 1 if keep is not None else 0
                if over > 0 and stale_after_s is not None:
                    going = {r.run_id for r in making_room}
                    stale = [r for r in reversed(runs)  # oldest first
                             if r.run_id not in going and time.time() - r.created > stale_after_s]  # fmt: skip
                    making_room += stale[:over]
                    over -= len(stale[:over])
                if over > 0:
                    raise UserError(
                        f"This server holds its most runs ({keep}): nothing was saved, and no one else's recent "
                        "run was removed to make room. Delete one of your runs on the Runs page, or ask the "
                        "operator to clear old ones."
                    )
                os.rename(tmp, root / run_id)
                for old in making_room:
                    _remove(root / old.run_id)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
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
            owner=str(body.get("owner", "")),
            board_name=str(body.get("board_name", "")),
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


def delete_run(
    run_id: str, root: Path | None = None, *, owner_secret: str | None = None, operator_token: str | None = None
) -> None:
    """Delete a run, if ``owner_secret`` is the secret of the session that saved it or
    ``operator_token`` is the operator's (:func:`may_delete`); else a :class:`UserError`.
    The check reads the run's own ``run.json`` here, so no request names its way past it."""
    root = root or runs_dir()
    _run_folder(run_id, root)  # a bad id or a missing run is said before anything is locked
    with _disk_errors(root), _runs_lock(root):
        folder = _run_folder(run_id, root)
        record = _read_record(folder)
        if not may_delete(record, owner_secret, operator_token):
            if not record.owner:
                raise UserError(f"Run {run_id} was saved before runs had owners: only the operator can delete it.")
            raise UserError(f"Run {run_id} was saved by another visitor: only they, or the operator, can delete it.")
        _remove(folder)


def _without_owner(run_json: bytes) -> bytes:
    """``run.json`` without its ``owner`` (a damaged one as it is)."""
    try:
        body = json.loads(run_json)
    except ValueError:
        return run_json
    if not isinstance(body, dict):
        return run_json
    body.pop("owner", None)
    return json.dumps(body, indent=1).encode()


def run_zip(run_id: str, root: Path | None = None) -> bytes:
    """The run's folder as zip bytes (run.json, dataset.npz, model.keras); its ``run.json``
    without the owner's hash (that stays on this server)."""
    folder = _run_folder(run_id, root)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for item in sorted(folder.iterdir()):
            if item.name == RUN_FILE:
                zf.writestr(f"{run_id}/{item.name}", _without_owner(item.read_bytes()))
            elif item.is_file():
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


# ---------------------------------------------------------------- the class board


def check_board_name(text: str) -> str:
    """A name for the class board as typed (spaces around it removed; empty:
    :data:`ANONYMOUS`); a :class:`UserError` when longer than :data:`BOARD_NAME_MAX`
    characters or holding control characters."""
    name = str(text).strip()
    if not name:
        return ANONYMOUS
    if len(name) > BOARD_NAME_MAX:
        raise UserError(
            f"A name on the board has at most {BOARD_NAME_MAX} characters; this one has {len(name)}. Shorten it."
        )
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise UserError("A name on the board holds letters, digits, spaces and punctuation only: remove the rest.")
    return name


@dataclass(frozen=True)
class BoardEntry:
    """One run on the class board."""

    run_id: str
    env_id: str
    name: str
    """The name its owner chose (:data:`ANONYMOUS` when none)."""
    score: float
    """Mean score of its network on games it never trained on."""
    games: int | None
    """Games played to make that network (random or generations' games; None: not known)."""
    seconds: float | None
    """Machine seconds it took to make it (None: not known)."""
    kind: str
    created: float
    """Unix time of saving."""


def board_score(record: RunRecord) -> float | None:
    """A run's score on fresh games, or None when it has none and stays off the board.

    ``"evaluate"`` runs of a network or an ensemble (not random play) score their
    ``results["mean"]`` unless ``results["fresh"]`` is False (played on starts it learned
    from); ``"improve"`` runs their confirmation on fresh games (``mean``, or ``confirm_mean``
    in runs saved before the board)."""
    results = record.results
    if record.damaged:
        return None
    if record.kind == "evaluate":
        if results.get("policy") == "random" or results.get("fresh") is False:
            return None
        score = results.get("mean")
    elif record.kind == "improve":
        score = results.get("mean", results.get("confirm_mean"))
    else:
        return None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or score != score:
        return None
    return float(score)


def board_cleared(root: Path | None = None) -> float:
    """Unix time the operator last cleared the board (0.0: never); runs saved before it are off."""
    try:
        body = json.loads(((root or runs_dir()) / BOARD_FILE).read_text())
        return float(body["cleared"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def _number(value: Any, kind: type) -> Any:
    return kind(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def board(root: Path | None = None) -> dict[str, list[BoardEntry]]:
    """The class board: per env, every run with a :func:`board_score` saved since the board was
    last cleared, best first (highest score, then fewest games, then fewest seconds, then the
    earlier save)."""
    root = root or runs_dir()
    cleared = board_cleared(root)
    per_env: dict[str, list[BoardEntry]] = {}
    for record in list_runs(root):
        score = board_score(record)
        if score is None or record.created <= cleared:
            continue
        env_id = str(record.settings.get("env_id", "?"))
        games = _number(record.results.get("games_played"), int)
        seconds = _number(record.results.get("seconds_taken", record.results.get("seconds")), float)
        entry = BoardEntry(
            record.run_id, env_id, record.board_name or ANONYMOUS, score, games, seconds, record.kind, record.created
        )
        per_env.setdefault(env_id, []).append(entry)
    for entries in per_env.values():
        entries.sort(
            key=lambda e: (
                -e.score,
                e.games if e.games is not None else float("inf"),
                e.seconds if e.seconds is not None else float("inf"),
                e.created,
            )
        )
    return dict(sorted(per_env.items()))


def clear_board(operator_token: str | None, root: Path | None = None) -> None:
    """Clear the class board (every run stays; those saved until now leave the board): the
    operator only, else a :class:`UserError`."""
    root = root or runs_dir()
    if not is_operator(operator_token):
        raise UserError("Only the operator clears the board: type the operator token first.")
    with _disk_errors(root):
        atomic_write(root / BOARD_FILE, json.dumps({"cleared": time.time()}).encode())


def rename_on_board(run_id: str, name: str, owner_secret: str | None, root: Path | None = None) -> None:
    """Put ``name`` (:func:`check_board_name`) on the owner's run ``run_id``, rewriting its
    ``run.json`` atomically; a :class:`UserError` for another visitor's run."""
    root = root or runs_dir()
    name = check_board_name(name)
    _run_folder(run_id, root)
    with _disk_errors(root), _runs_lock(root):
        folder = _run_folder(run_id, root)
        record = _read_record(folder)
        if not record.owned_by(owner_secret):
            raise UserError(f"Run {run_id} was saved by another visitor: only they can name it on the board.")
        body = json.loads((folder / RUN_FILE).read_text())
        body["board_name"] = name
        atomic_write(folder / RUN_FILE, json.dumps(body, indent=1).encode())


# ---------------------------------------------------------------- TensorBoard logs

LOGS_DIR_ENV = "CARTPOLE_LAB_LOGS"
#: Log folders kept (the oldest go first), so a shared server's disk does not fill up.
LOGS_KEPT = 200


def logs_dir() -> Path:
    """Where TensorBoard logs go: ``$CARTPOLE_LAB_LOGS``; else ``./logs`` (the notebook's)
    where it can be written; else a folder in the system's temporary directory (a read-only
    app folder in a container: the logs are only there to be downloaded)."""
    if LOGS_DIR_ENV in os.environ:
        return Path(os.environ[LOGS_DIR_ENV])
    if not _unwritable(Path("logs")):
        return Path("logs")
    return Path(tempfile.gettempdir()) / f"cartpole-lab-logs-{os.getuid()}"


def new_log_folder(label: str, keep: int = LOGS_KEPT) -> Path:
    """A new, empty folder under :func:`logs_dir` for one training's logs (named by time and
    ``label``); the oldest folders beyond ``keep`` are removed. A folder that cannot be
    written is a :class:`UserError` naming ``$CARTPOLE_LAB_LOGS``."""
    root = logs_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = root / f"{stamp}-{_slug(label)}-{uuid.uuid4().hex[:4]}"
        folder.mkdir()
    except OSError as exc:
        raise UserError(
            f"Training logs cannot be written on this server: {root}/ cannot be written "
            f"({(exc.strerror or str(exc)).lower()}). Train without them, or the operator sets "
            f"{LOGS_DIR_ENV} to a writable folder."
        ) from exc
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
