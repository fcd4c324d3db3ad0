"""Storage: datasets (.npz, no pickles), models (.keras, safe mode) and saved runs."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import keras
import numpy as np
import pytest

from cartpole_core.errors import UserError
from cartpole_core.storage import (
    OPERATOR_TOKEN_ENV,
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


def files_in(folder) -> list[str]:
    """What a runs folder holds (its lock is the folder itself: no lock file)."""
    return sorted(p.name for p in folder.iterdir())


def test_save_list_load_zip_delete(small_dataset, trained_tiny_model, tmp_path):
    saved = save_run(
        record(accuracy=np.float32(0.5)),
        dataset=small_dataset,
        model=trained_tiny_model,
        root=tmp_path,
        owner_secret="mine",
    )
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
    delete_run(saved.run_id, tmp_path, owner_secret="mine")
    assert list_runs(tmp_path) == []
    assert files_in(tmp_path) == []  # nothing left behind, not even the trash folder
    with pytest.raises(UserError, match="no run"):
        load_run(saved.run_id, tmp_path)


def test_a_run_without_files_has_none(tmp_path):
    saved = save_run(record(), root=tmp_path)
    assert not saved.has_dataset and not saved.has_model
    assert sorted(p.name for p in (tmp_path / saved.run_id).iterdir()) == ["run.json"]
    with pytest.raises(UserError, match="Cannot read"):
        load_run_dataset(saved.run_id, tmp_path)


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '{"name": "no kind"}', None])
def test_damaged_runs_are_listed_not_raised(tmp_path, body, monkeypatch):
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
    with pytest.raises(UserError, match="only the operator"):
        delete_run(folder.name, tmp_path, owner_secret="anyone")
    monkeypatch.setenv(OPERATOR_TOKEN_ENV, "op")
    delete_run(folder.name, tmp_path, operator_token="op")  # a damaged run can still be deleted
    assert [r.run_id for r in list_runs(tmp_path)] == [good.run_id]


def test_leftover_temporary_folders_are_not_listed(tmp_path):
    saved = save_run(record(), root=tmp_path)
    leftover = tmp_path / ".tmp-20240101-000000-crashed"
    leftover.mkdir()
    (leftover / "run.json").write_text(json.dumps({"kind": "train", "name": "half-saved"}))
    assert [r.run_id for r in list_runs(tmp_path)] == [saved.run_id]


def test_runs_are_listed_newest_first(tmp_path):
    ids = [save_run(record(f"run {i}", created=1_700_000_000.0 + i * 60), root=tmp_path).run_id for i in range(4)]
    assert [r.run_id for r in list_runs(tmp_path)] == ids[::-1]
    assert files_in(tmp_path) == sorted(ids)


@pytest.mark.parametrize("run_id", ["../outside", ".tmp-x", "", "a/b"])
def test_run_ids_cannot_leave_the_runs_folder(tmp_path, run_id):
    with pytest.raises(UserError, match="not a run id"):
        load_run(run_id, tmp_path)
    with pytest.raises(UserError, match="not a run id"):
        delete_run(run_id, tmp_path, owner_secret="x")


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


# ---------------------------------------------------------------- owners, quotas, read-only disks


def evaluation(name: str = "A", mean: float = 100.0, env_id: str = "CartPole-v1", **results) -> RunRecord:
    return RunRecord(
        kind="evaluate",
        name=f"network on {env_id}",
        settings={"env_id": env_id, "games": 10, "seed": 0},
        results={"policy": "network", "mean": mean, **results},
        board_name=name,
    )


def test_a_run_keeps_a_hash_of_its_owner_never_the_secret(tmp_path):
    from cartpole_core.storage import owner_id

    saved = save_run(record(), root=tmp_path, owner_secret="s3cret-of-a")
    body = (tmp_path / saved.run_id / "run.json").read_text()
    assert "s3cret-of-a" not in body
    assert json.loads(body)["owner"] == owner_id("s3cret-of-a") == saved.owner and len(saved.owner) == 64
    assert owner_id("s3cret-of-b") != saved.owner
    with zipfile.ZipFile(io.BytesIO(run_zip(saved.run_id, tmp_path))) as zf:
        assert "owner" not in json.loads(zf.read(f"{saved.run_id}/run.json")), "the hash stays on the server"


def test_only_the_owner_or_the_operator_deletes_a_run(tmp_path, monkeypatch):
    monkeypatch.delenv(OPERATOR_TOKEN_ENV, raising=False)
    a = save_run(record("a's"), root=tmp_path, owner_secret="secret-a")
    for proof in ({"owner_secret": "secret-b"}, {}, {"operator_token": ""}, {"operator_token": "guess"}):
        with pytest.raises(UserError, match="saved by another visitor: only they, or the operator"):
            delete_run(a.run_id, tmp_path, **proof)
    monkeypatch.setenv(OPERATOR_TOKEN_ENV, "the-operators-token")
    for wrong in ("the-operators-toke", "the-operators-token ", "THE-OPERATORS-TOKEN", ""):
        with pytest.raises(UserError, match="another visitor"):
            delete_run(a.run_id, tmp_path, owner_secret="secret-b", operator_token=wrong)
    assert [r.run_id for r in list_runs(tmp_path)] == [a.run_id], "every refused delete left it"
    delete_run(a.run_id, tmp_path, owner_secret="secret-a")
    b = save_run(record("b's"), root=tmp_path, owner_secret="secret-b")
    delete_run(b.run_id, tmp_path, operator_token="the-operators-token")
    assert list_runs(tmp_path) == []


def test_a_run_saved_before_owners_is_the_operators_to_delete(tmp_path, monkeypatch):
    old = save_run(record("from before"), root=tmp_path)  # no owner: as runs saved before owners existed
    assert load_run(old.run_id, tmp_path).owner == ""
    monkeypatch.setenv(OPERATOR_TOKEN_ENV, "op")
    for secret in ("", "anyone", None):
        with pytest.raises(UserError, match="before runs had owners: only the operator"):
            delete_run(old.run_id, tmp_path, owner_secret=secret)
    delete_run(old.run_id, tmp_path, operator_token="op")
    assert list_runs(tmp_path) == []


def test_each_owner_keeps_a_quota_and_their_own_oldest_go_first(tmp_path):
    others = [
        save_run(record(f"b {i}", created=1_700_000_000.0 + i), root=tmp_path, owner_secret="b") for i in range(3)
    ]
    mine = [
        save_run(record(f"a {i}", created=1_700_000_100.0 + i), root=tmp_path, owner_secret="a", per_owner=2)
        for i in range(5)
    ]
    kept = {r.run_id for r in list_runs(tmp_path)}
    assert kept == {mine[3].run_id, mine[4].run_id} | {r.run_id for r in others}, "only a's own oldest went"


def test_a_full_server_refuses_a_save_and_removes_no_one_elses_run(tmp_path):
    others = [
        save_run(record(f"b {i}", created=1_700_000_000.0 + i), root=tmp_path, owner_secret="b") for i in range(2)
    ]
    mine = save_run(record("a 0", created=1_700_000_010.0), root=tmp_path, owner_secret="a", keep=3, per_owner=5)
    before = {r.run_id for r in list_runs(tmp_path)}
    with pytest.raises(UserError, match=r"holds its most runs \(3\): nothing was saved.*Delete one of your runs"):
        save_run(record("a 1"), root=tmp_path, owner_secret="a", keep=3, per_owner=5)
    assert {r.run_id for r in list_runs(tmp_path)} == before == {mine.run_id} | {r.run_id for r in others}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")], "the refused run left nothing"
    # At its own quota, the visitor's own oldest makes room: still nobody else's run.
    newer = save_run(record("a 2"), root=tmp_path, owner_secret="a", keep=3, per_owner=1)
    assert {r.run_id for r in list_runs(tmp_path)} == {newer.run_id} | {r.run_id for r in others}


def test_a_full_server_makes_room_with_anyones_stale_runs_only(tmp_path):
    """A session's secret dies with the session, so runs nobody may delete would fill a demo
    server for good: a save on a full server removes anyone's runs older than the stale age,
    oldest first, as many as it needs, and never a younger one."""
    import time

    now, week = time.time(), 7 * 86_400.0
    stale = [save_run(record(f"b {i}", created=now - 10 * 86_400 + i), root=tmp_path, owner_secret="b")
             for i in range(2)]  # fmt: skip
    young = save_run(record("c", created=now - 3_600), root=tmp_path, owner_secret="c")
    first = save_run(record("a 1", created=now), root=tmp_path, owner_secret="a", keep=3, stale_after_s=week)
    assert {r.run_id for r in list_runs(tmp_path)} == {stale[1].run_id, young.run_id, first.run_id}
    second = save_run(record("a 2", created=now), root=tmp_path, owner_secret="a", keep=3, stale_after_s=week)
    assert {r.run_id for r in list_runs(tmp_path)} == {young.run_id, first.run_id, second.run_id}
    with pytest.raises(UserError, match=r"holds its most runs \(3\)"):  # only recent runs left: refused
        save_run(record("a 3", created=now), root=tmp_path, owner_secret="a", keep=3, stale_after_s=week)
    assert {r.run_id for r in list_runs(tmp_path)} == {young.run_id, first.run_id, second.run_id}


def test_a_runs_folder_yet_to_be_made_is_checked_without_writing_beside_it(tmp_path, monkeypatch):
    """Where the runs folder does not exist yet (``./runs`` in the app's folder), checking it
    writes nothing into its parent, not even a probe made and removed at once."""
    import tempfile

    from cartpole_core.storage import saving_off

    parent = tmp_path / "app"
    parent.mkdir()
    made: list[str] = []
    real = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(str(k.get("dir"))) or real(*a, **k))
    assert saving_off(parent / "runs") == ""
    assert made == [] and list(parent.iterdir()) == [], "nothing was written beside the runs folder"
    (parent / "runs").mkdir()
    assert saving_off(parent / "runs") == "" and made == [str(parent / "runs")], "inside it, a real probe"


def test_sessions_saving_at_once_lose_no_run(tmp_path, small_dataset):
    """Eight visitors save three runs each at the same moment, each keeping at most two: every
    visitor ends with exactly their two newest, whole; nothing else is removed."""
    from concurrent.futures import ThreadPoolExecutor

    def visitor(i: int) -> list[str]:
        return [
            save_run(record(f"v{i} r{k}", created=1_700_000_000.0 + k), small_dataset, root=tmp_path,
                     owner_secret=f"visitor-{i}", per_owner=2, keep=100).run_id
            for k in range(3)
        ]  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        saved = list(pool.map(visitor, range(8)))
    runs = list_runs(tmp_path)
    assert {r.run_id for r in runs} == {run_id for ids in saved for run_id in ids[1:]}
    assert not [r for r in runs if r.damaged] and all(r.has_dataset for r in runs)
    assert files_in(tmp_path) == sorted(r.run_id for r in runs), "no half run or trash left behind"


def test_a_server_filling_up_under_many_saves_at_once_keeps_its_limit(tmp_path):
    """Twelve visitors save at the same moment on a server with room for five more runs:
    exactly five are saved (counting and saving are one step under the folder's lock), the
    seven others are told so, and nothing is half written."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    for i in range(60):  # a well-filled server: counting its runs takes a while
        save_run(record(f"earlier {i}"), root=tmp_path, owner_secret="earlier")
    start = Barrier(12)

    def visitor(i: int) -> str:
        start.wait()
        try:
            return save_run(record(f"v{i}"), root=tmp_path, owner_secret=f"v{i}", keep=65).run_id
        except UserError as exc:
            return str(exc)

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(visitor, range(12)))
    refused = [o for o in outcomes if "holds its most runs (65)" in o]
    assert len(refused) == 7 and len(list_runs(tmp_path)) == 65
    assert files_in(tmp_path) == sorted(r.run_id for r in list_runs(tmp_path))


def test_an_unwritable_runs_folder_is_one_line_naming_the_variable(tmp_path, monkeypatch):
    """Works as root too: a folder under a plain file cannot be made by anyone."""
    from cartpole_core.storage import saving_off

    (tmp_path / "a-file").write_text("not a folder")
    root = tmp_path / "a-file" / "runs"
    monkeypatch.setenv(RUNS_DIR_ENV, str(root))
    line = saving_off()
    assert line.startswith("Runs cannot be saved on this server: CARTPOLE_LAB_RUNS=") and "\n" not in line
    assert "The operator sets CARTPOLE_LAB_RUNS to a writable folder" in line
    with pytest.raises(UserError, match="Runs cannot be saved on this server") as refused:
        save_run(record(), owner_secret="a")
    assert str(refused.value) == line
    monkeypatch.setenv(RUNS_DIR_ENV, str(tmp_path / "fine"))
    assert saving_off() == "" and not (tmp_path / "fine").exists(), "asking writes nothing"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod: see the read-only mount test")
def test_a_chmod_read_only_runs_folder_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    root.chmod(0o555)
    monkeypatch.setenv(RUNS_DIR_ENV, str(root))
    try:
        with pytest.raises(UserError, match="cannot be written"):
            save_run(record(), owner_secret="a")
    finally:
        root.chmod(0o755)


READ_ONLY_APP = """
import json, os, sys
from cartpole_core.errors import UserError
from cartpole_core.storage import RunRecord, list_runs, logs_dir, new_log_folder, save_run, saving_off
out = {"off": saving_off(), "listed": [r.name for r in list_runs()], "logs": str(logs_dir())}
try:
    save_run(RunRecord(kind="train", name="in a read-only app"), owner_secret="a")
except UserError as exc:
    out["refused"] = str(exc)
out["log_folder"] = str(new_log_folder("seed 0"))
print(json.dumps(out))
"""


def test_a_read_only_app_folder_as_a_container_has_it(tmp_path):
    """The app folder bind-mounted read-only in a private mount namespace (root ignores chmod,
    not a read-only mount), no CARTPOLE_LAB_RUNS: Save is one line naming the variable, the runs
    already there are still listed, TensorBoard logs go to the temporary directory."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs a private mount namespace (unshare -m): run as root on Linux")
    app = tmp_path / "app"
    (app / "runs").mkdir(parents=True)
    save_run(record("saved before"), root=app / "runs", owner_secret="a")
    project = Path(__file__).resolve().parents[1]
    # cd after the mounts: a working folder entered before them is still the writable one
    script = f'mount --bind "{app}" "{app}" && mount -o remount,bind,ro "{app}" "{app}" && cd "{app}" && '
    script += 'exec "$0" -c "$1"'
    env = {k: v for k, v in os.environ.items() if k not in (RUNS_DIR_ENV, "CARTPOLE_LAB_LOGS")}
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, sys.executable, READ_ONLY_APP],
        cwd=app, env={**env, "PYTHONPATH": str(project)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    line = (
        "Runs cannot be saved on this server: its folder runs/ cannot be written (read-only file system). "
        "The operator sets CARTPOLE_LAB_RUNS to a writable folder (a volume)."
    )
    assert out["off"] == out["refused"] == line
    assert out["listed"] == ["saved before"]
    assert not out["logs"].startswith(str(app)) and Path(out["log_folder"]).parent == Path(out["logs"])
    assert sorted(p.name for p in app.iterdir()) == ["runs"], "nothing was written into the app folder"


def test_an_unwritable_logs_folder_is_a_user_error(tmp_path, monkeypatch):
    from cartpole_core.storage import new_log_folder

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("CARTPOLE_LAB_LOGS", str(tmp_path / "a-file" / "logs"))
    with pytest.raises(UserError, match="Training logs cannot be written.*CARTPOLE_LAB_LOGS"):
        new_log_folder("seed 0")


# ---------------------------------------------------------------- the class board


def test_the_board_ranks_fresh_scores_then_fewest_games_then_seconds(tmp_path):
    from cartpole_core.storage import board

    def save(rec: RunRecord, secret: str = "a") -> str:
        return save_run(rec, root=tmp_path, owner_secret=secret).run_id

    best = save(evaluation("Ada", 500.0, games_played=3000, seconds_taken=9.0))
    fewer = save(evaluation("Bo", 480.0, games_played=1000, seconds_taken=30.0), "b")
    more = save(evaluation("Cy", 480.0, games_played=5000, seconds_taken=3.0), "c")
    faster = save(evaluation("Di", 480.0, games_played=1000, seconds_taken=20.0), "d")
    unknown = save(evaluation("", 480.0), "e")
    generations = save(
        RunRecord(
            kind="improve",
            name="g",
            settings={"env_id": "CartPole-v1"},
            results={"confirm_mean": 490.0, "seconds": 12.0},
            board_name="Ed",
        ),
        "f",
    )  # fmt: skip  (saved before the board: its confirmation mean counts)
    acrobot = save(evaluation("Ada", -90.0, env_id="Acrobot-v1", games_played=2000))
    save(evaluation("random", 20.0, policy="random"))
    save(evaluation("own starts", 500.0, fresh=False))
    save(RunRecord(kind="train", name="t", settings={"env_id": "CartPole-v1"}, results={"accuracy": 0.6}))
    save(RunRecord(kind="generate", name="yours", settings={"env_id": "CartPole-v1"}, results={"mean": 300.0}))
    ranked = board(tmp_path)
    assert list(ranked) == ["Acrobot-v1", "CartPole-v1"]
    assert [e.run_id for e in ranked["CartPole-v1"]] == [best, generations, faster, fewer, more, unknown]
    first = ranked["CartPole-v1"][0]
    assert (first.name, first.score, first.games, first.seconds) == ("Ada", 500.0, 3000, 9.0)
    assert ranked["CartPole-v1"][-1].name == "anonymous" and ranked["CartPole-v1"][-1].games is None
    assert [e.run_id for e in ranked["Acrobot-v1"]] == [acrobot]


def test_only_the_operator_clears_the_board_and_runs_stay(tmp_path, monkeypatch):
    from cartpole_core.storage import board, clear_board

    monkeypatch.setenv(OPERATOR_TOKEN_ENV, "op")
    before = save_run(evaluation("Ada"), root=tmp_path, owner_secret="a")
    for wrong in (None, "", "po"):
        with pytest.raises(UserError, match="Only the operator clears the board"):
            clear_board(wrong, tmp_path)
    assert [e.run_id for e in board(tmp_path)["CartPole-v1"]] == [before.run_id]
    clear_board("op", tmp_path)
    assert board(tmp_path) == {} and [r.run_id for r in list_runs(tmp_path)] == [before.run_id]
    after = save_run(evaluation("Bo"), root=tmp_path, owner_secret="b")
    assert [e.run_id for e in board(tmp_path)["CartPole-v1"]] == [after.run_id], "a new class starts"
    assert files_in(tmp_path) == sorted([before.run_id, after.run_id, "board.json"])


@pytest.mark.parametrize(
    ("typed", "problem"),
    [("x" * 31, "at most 30 characters"), ("Ada\x07", "letters, digits"), ("a\nb", "letters, digits"),
     ("\u202eevil", "letters, digits")],
)  # fmt: skip
def test_bad_names_on_the_board_are_refused_in_one_line(typed, problem):
    from cartpole_core.storage import check_board_name

    with pytest.raises(UserError, match=problem) as refused:
        check_board_name(typed)
    assert "\n" not in str(refused.value)


def test_good_names_on_the_board(tmp_path):
    from cartpole_core.storage import check_board_name, rename_on_board

    assert check_board_name("  Ada L. ") == "Ada L." and check_board_name("") == "anonymous"
    assert check_board_name("x" * 30) == "x" * 30 and check_board_name("Zoë 🚀") == "Zoë 🚀"
    saved = save_run(evaluation("first"), root=tmp_path, owner_secret="a")
    with pytest.raises(UserError, match="another visitor"):
        rename_on_board(saved.run_id, "Bo", "b", tmp_path)
    rename_on_board(saved.run_id, "Ada", "a", tmp_path)
    after = load_run(saved.run_id, tmp_path)
    assert after.board_name == "Ada" and after.owner == saved.owner and after.results == saved.results
