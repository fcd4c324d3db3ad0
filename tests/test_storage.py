"""Storage: datasets (.npz, no pickles), models (.keras, safe mode) and saved runs."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import keras
import numpy as np
import pytest

from cartpole_core.errors import UserError
from cartpole_core.storage import (
    RUNS_DIR_ENV,
    RunRecord,
    atomic_write,
    dataset_from_bytes,
    dataset_to_bytes,
    delete_run,
    list_runs,
    load_dataset,
    load_model,
    load_run,
    load_run_dataset,
    load_run_model,
    model_from_bytes,
    model_to_bytes,
    read_run_zip,
    run_zip,
    runs_dir,
    save_dataset,
    save_model,
    save_run,
    to_jsonable,
)

ARRAYS = ("observations", "actions", "game_ids", "game_scores")


def npz_bytes(allow_pickle: bool = False, **arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=allow_pickle, **arrays)
    return buffer.getvalue()


def dataset_arrays(dataset) -> dict[str, np.ndarray]:
    return {
        "observations": dataset.observations,
        "actions": dataset.actions,
        "game_ids": dataset.game_ids,
        "game_scores": dataset.game_scores,
        "metadata": np.array(json.dumps(to_jsonable(dataset.metadata))),
    }


def assert_same_dataset(a, b) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, name).dtype == getattr(b, name).dtype
    assert a.metadata == to_jsonable(b.metadata)


# ---------------------------------------------------------------- helpers


def test_to_jsonable():
    value = {1: np.float32(0.5), "t": (1, 2), "a": np.arange(3), "nan": float("nan"), "n": np.int64(7)}
    assert to_jsonable(value) == {"1": 0.5, "t": [1, 2], "a": [0, 1, 2], "nan": None, "n": 7}
    json.dumps(to_jsonable(value))


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "file.bin"
    atomic_write(path, b"one")
    atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["file.bin"]


# ---------------------------------------------------------------- datasets


def test_dataset_bytes_round_trip(small_dataset):
    data = dataset_to_bytes(small_dataset)
    assert data.startswith(b"PK")
    assert_same_dataset(dataset_from_bytes(data, expect_env="CartPole-v1"), small_dataset)


def test_dataset_file_round_trip(small_dataset, tmp_path):
    path = save_dataset(small_dataset, tmp_path / "data.npz")
    assert path.exists()
    assert_same_dataset(load_dataset(path), small_dataset)
    assert_same_dataset(load_dataset(str(path)), small_dataset)


def test_dataset_files_must_be_npz(small_dataset, tmp_path):
    with pytest.raises(UserError, match=r"data\.npz"):
        save_dataset(small_dataset, tmp_path / "data.csv")
    (tmp_path / "data.pkl").write_bytes(b"x")
    with pytest.raises(UserError, match="not an .npz dataset"):
        load_dataset(tmp_path / "data.pkl")


def test_missing_dataset_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="Cannot read"):
        load_dataset(tmp_path / "nowhere.npz")


def test_dataset_of_another_env_is_refused_when_a_env_is_expected(small_dataset):
    with pytest.raises(UserError, match="'Acrobot-v1'"):
        dataset_from_bytes(dataset_to_bytes(small_dataset), expect_env="Acrobot-v1")


def test_pickled_object_arrays_are_refused(small_dataset):
    """np.load(allow_pickle=False) refuses an object array; that must be a UserError naming pickles."""
    arrays = dataset_arrays(small_dataset)
    evil = np.empty(len(small_dataset), dtype=object)
    evil[:] = [[0.0, 0.0, 0.0, 0.0]] * len(small_dataset)
    arrays["observations"] = evil
    with pytest.raises(UserError, match="pickle"):
        dataset_from_bytes(npz_bytes(allow_pickle=True, **arrays))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_dataset_is_a_user_error(small_dataset, keep):
    data = dataset_to_bytes(small_dataset)
    with pytest.raises(UserError):
        dataset_from_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    "data", [b"", b"hello", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), b"PK" + b"\0" * 100]
)
def test_random_bytes_are_a_user_error(data):
    with pytest.raises(UserError, match=".npz"):
        dataset_from_bytes(data)


def test_any_single_damaged_byte_loads_or_is_a_user_error(small_dataset):
    """Bit rot in the compressed data raises zlib and tokenizer errors deep in NumPy: each must
    surface as a UserError (or, where the damage hits nothing checked, as a valid dataset)."""
    data = dataset_to_bytes(small_dataset)
    rng = np.random.default_rng(0)
    positions = np.concatenate(
        [np.arange(0, 400, 3), rng.integers(0, len(data), 300), np.arange(len(data) - 300, len(data), 3)]
    )
    refused = 0
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        try:
            dataset_from_bytes(bytes(damaged)).validate()
        except UserError:
            refused += 1
    assert refused > len(positions) // 2


@pytest.mark.parametrize("missing", ["observations", "game_ids", "metadata"])
def test_missing_arrays_are_named(small_dataset, missing):
    arrays = dataset_arrays(small_dataset)
    del arrays[missing]
    with pytest.raises(UserError, match=f"has no {missing}"):
        dataset_from_bytes(npz_bytes(**arrays))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("observations", lambda d: d.observations.astype(np.float64), "float32"),
        ("actions", lambda d: d.actions.astype(np.float32), "actions must be integers"),
        ("actions", lambda d: d.actions + 5, r"0\.\.1"),
        ("game_scores", lambda d: d.game_scores.astype(np.int32), "game_scores"),
        ("metadata", lambda d: np.array("{not json"), "not valid JSON"),
        ("metadata", lambda d: np.array("[1, 2]"), "not a JSON object"),
        ("metadata", lambda d: np.arange(3), "not a JSON string"),
        ("metadata", lambda d: np.array('{"env_id": "CartPole-v1", "n_actions": "two"}'), "n_actions"),
        ("metadata", lambda d: np.array('{"env_id": "CartPole-v1", "n_actions": null}'), "n_actions"),
        ("metadata", lambda d: np.array('{"env_id": "Pendulum-v1", "n_actions": 2}'), "Pendulum-v1"),
    ],
)
def test_wrong_contents_are_user_errors(small_dataset, name, value, message):
    arrays = dataset_arrays(small_dataset)
    arrays[name] = value(small_dataset)
    with pytest.raises(UserError, match=message):
        dataset_from_bytes(npz_bytes(**arrays))


# ---------------------------------------------------------------- models


def test_model_bytes_round_trip_predicts_the_same(trained_tiny_model, small_dataset):
    data = model_to_bytes(trained_tiny_model)
    assert data.startswith(b"PK")
    loaded = model_from_bytes(data)
    x = small_dataset.observations[:200]
    np.testing.assert_array_equal(
        np.asarray(loaded(x, training=False)), np.asarray(trained_tiny_model(x, training=False))
    )
    assert loaded.optimizer is not None  # compiled: it can be trained further


def test_model_file_round_trip(trained_tiny_model, small_dataset, tmp_path):
    path = save_model(trained_tiny_model, tmp_path / "m.keras")
    loaded = load_model(path)
    x = small_dataset.observations[:50]
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(trained_tiny_model(x)))
    with pytest.raises(UserError, match=r"m\.keras"):
        save_model(trained_tiny_model, tmp_path / "m.h5")
    (tmp_path / "m.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(UserError, match="only .keras files"):
        load_model(tmp_path / "m.h5")


def test_model_with_a_lambda_layer_is_refused():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2.0), keras.layers.Dense(2, activation="softmax")]
    )
    data = model_to_bytes(model)
    with pytest.raises(UserError, match="contains code"):
        model_from_bytes(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "HDF5"),
        (pickle.dumps({"weights": [1.0, 2.0]}), "Pickled"),
        (pickle.dumps([np.zeros(3)], protocol=2), "Pickled"),
        (b"hello", "not a .keras model"),
        (b"PK\x03\x04" + b"\0" * 64, "could not be loaded"),
    ],
)
def test_other_model_files_are_refused(data, message):
    with pytest.raises(UserError, match=message):
        model_from_bytes(data)


def test_a_dataset_is_not_a_model(small_dataset):
    with pytest.raises(UserError, match="could not be loaded"):
        model_from_bytes(dataset_to_bytes(small_dataset))


# ---------------------------------------------------------------- runs


def record(name: str = "first", created: float = 1_700_000_000.0, **results) -> RunRecord:
    return RunRecord(kind="train", name=name, settings={"epochs": 1, "hidden": (16,)}, results=results, created=created)


def test_save_list_load_zip_delete(small_dataset, trained_tiny_model, tmp_path):
    saved = save_run(record(accuracy=np.float32(0.5)), dataset=small_dataset, model=trained_tiny_model, root=tmp_path)
    assert saved.run_id and saved.has_dataset and saved.has_model
    assert saved.settings == {"epochs": 1, "hidden": [16]} and saved.results == {"accuracy": 0.5}
    runs = list_runs(tmp_path)
    assert [r.run_id for r in runs] == [saved.run_id]
    assert runs[0].damaged == ""
    loaded = load_run(saved.run_id, tmp_path)
    assert (loaded.kind, loaded.name, loaded.settings, loaded.results) == (
        "train",
        "first",
        saved.settings,
        saved.results,
    )
    assert loaded.created == saved.created and loaded.has_dataset and loaded.has_model
    assert_same_dataset(load_run_dataset(saved.run_id, tmp_path), small_dataset)
    x = small_dataset.observations[:20]
    np.testing.assert_array_equal(
        np.asarray(load_run_model(saved.run_id, tmp_path)(x)), np.asarray(trained_tiny_model(x))
    )
    with zipfile.ZipFile(io.BytesIO(run_zip(saved.run_id, tmp_path))) as zf:
        names = set(zf.namelist())
        assert names == {f"{saved.run_id}/{f}" for f in ("run.json", "dataset.npz", "model.keras")}
        assert json.loads(zf.read(f"{saved.run_id}/run.json"))["name"] == "first"
    delete_run(saved.run_id, tmp_path)
    assert list_runs(tmp_path) == []
    assert list(tmp_path.iterdir()) == []  # nothing left behind, not even the trash folder
    with pytest.raises(UserError, match="no run"):
        load_run(saved.run_id, tmp_path)


def test_a_run_without_files_has_none(tmp_path):
    saved = save_run(record(), root=tmp_path)
    assert not saved.has_dataset and not saved.has_model
    assert sorted(p.name for p in (tmp_path / saved.run_id).iterdir()) == ["run.json"]
    with pytest.raises(UserError, match="Cannot read"):
        load_run_dataset(saved.run_id, tmp_path)


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '{"name": "no kind"}', None])
def test_damaged_runs_are_listed_not_raised(tmp_path, body):
    good = save_run(record("good"), root=tmp_path)
    folder = tmp_path / "20240101-000000-broken"
    folder.mkdir()
    if body is not None:
        (folder / "run.json").write_text(body)
    runs = {r.run_id: r for r in list_runs(tmp_path)}
    assert set(runs) == {good.run_id, folder.name}
    assert runs[folder.name].damaged and not runs[good.run_id].damaged
    with pytest.raises(UserError, match="damaged"):
        load_run(folder.name, tmp_path)
    delete_run(folder.name, tmp_path)  # a damaged run can still be deleted
    assert [r.run_id for r in list_runs(tmp_path)] == [good.run_id]


def test_leftover_temporary_folders_are_not_listed(tmp_path):
    saved = save_run(record(), root=tmp_path)
    leftover = tmp_path / ".tmp-20240101-000000-crashed"
    leftover.mkdir()
    (leftover / "run.json").write_text(json.dumps({"kind": "train", "name": "half-saved"}))
    assert [r.run_id for r in list_runs(tmp_path)] == [saved.run_id]


def test_runs_are_listed_newest_first_and_keep_prunes_the_oldest(tmp_path):
    ids = [save_run(record(f"run {i}", created=1_700_000_000.0 + i * 60), root=tmp_path).run_id for i in range(4)]
    assert [r.run_id for r in list_runs(tmp_path)] == ids[::-1]
    newest = save_run(record("run 4", created=1_700_000_000.0 + 4 * 60), root=tmp_path, keep=2)
    assert [r.run_id for r in list_runs(tmp_path)] == [newest.run_id, ids[3]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([newest.run_id, ids[3]])


@pytest.mark.parametrize("run_id", ["../outside", ".tmp-x", "", "a/b"])
def test_run_ids_cannot_leave_the_runs_folder(tmp_path, run_id):
    with pytest.raises(UserError, match="not a run id"):
        load_run(run_id, tmp_path)
    with pytest.raises(UserError, match="not a run id"):
        delete_run(run_id, tmp_path)


def test_runs_folder_comes_from_the_environment(tmp_path, monkeypatch):
    root = tmp_path / "my-runs"
    monkeypatch.setenv(RUNS_DIR_ENV, str(root))
    assert runs_dir() == root
    saved = save_run(record())
    assert (root / saved.run_id / "run.json").exists()
    assert [r.run_id for r in list_runs()] == [saved.run_id]
    assert load_run(saved.run_id).name == "first"
    monkeypatch.delenv(RUNS_DIR_ENV)
    assert runs_dir().name == "runs"


def test_no_runs_folder_means_no_runs(tmp_path):
    assert list_runs(tmp_path / "missing") == []


def test_a_run_zip_round_trips_and_loads_by_path(small_dataset, trained_tiny_model, tmp_path):
    saved = save_run(
        RunRecord(kind="train", name="zip me", settings={"epochs": 1}, results={"accuracy": 0.6}),
        dataset=small_dataset,
        model=trained_tiny_model,
        root=tmp_path / "runs",
    )
    data = run_zip(saved.run_id, tmp_path / "runs")
    archive = read_run_zip(data)
    assert archive.record.kind == "train" and archive.record.results == {"accuracy": 0.6}
    assert_same_dataset(archive.dataset, small_dataset)
    path = tmp_path / "run.zip"
    path.write_bytes(data)
    assert_same_dataset(load_dataset(path), small_dataset)
    x = small_dataset.observations[:50]
    assert np.allclose(load_model(path)(x, training=False), trained_tiny_model(x, training=False), atol=1e-6)


def test_bad_run_zips_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a readable zip"):
        read_run_zip(b"PK\x03\x04 not really")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("run/run.json", "{}")
        zf.writestr("run/evil.py", "print('hi')")
    with pytest.raises(UserError, match="must hold run.json"):
        read_run_zip(buffer.getvalue())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("run/run.json", "[1, 2]")
    with pytest.raises(UserError, match="not a CartPole Lab run record"):
        read_run_zip(buffer.getvalue())


def test_files_over_the_size_limit_are_refused_unread(small_dataset, tmp_path, monkeypatch):
    import cartpole_core.storage as storage

    path = storage.save_dataset(small_dataset, tmp_path / "big.npz")
    monkeypatch.setattr(storage, "MAX_FILE_BYTES", 1000)
    with pytest.raises(UserError, match="limit"):
        storage.load_dataset(path)
    with pytest.raises(UserError, match="larger than"):
        storage.dataset_from_bytes(path.read_bytes())
    with pytest.raises(UserError, match="larger than"):
        storage.model_from_bytes(b"PK" + bytes(2000))


def test_log_folders_are_new_each_time_pruned_to_a_limit_and_zip_whole(tmp_path, monkeypatch):
    import io
    import zipfile

    from cartpole_core.storage import folder_zip, new_log_folder

    monkeypatch.setenv("CARTPOLE_LAB_LOGS", str(tmp_path / "logs"))
    first = new_log_folder("seed 0", keep=2)
    (first / "train").mkdir()
    (first / "train" / "events.out.tfevents.1").write_bytes(b"abc")
    second, third = new_log_folder("seed 1", keep=2), new_log_folder("seed 2", keep=2)
    assert len({first, second, third}) == 3 and first.parent == tmp_path / "logs"
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == sorted([second.name, third.name])
    (second / "x.txt").write_text("hello")
    with zipfile.ZipFile(io.BytesIO(folder_zip(second))) as zf:
        assert zf.namelist() == [f"{second.name}/x.txt"] and zf.read(f"{second.name}/x.txt") == b"hello"
