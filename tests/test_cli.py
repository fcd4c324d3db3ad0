"""Command line: ``python -m cartpole_core generate|train|evaluate|run``, run in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cartpole_core.cli import main
from cartpole_core.storage import load_dataset, load_model

REPO = Path(__file__).resolve().parents[1]

GENERATE_KEYS = {
    "env_id",
    "games",
    "accepted",
    "acceptance_rate",
    "accepted_mean",
    "accepted_median",
    "accepted_counts",
    "samples",
    "keep_top",
    "threshold",
    "seconds",
}
EVALUATE_KEYS = {"env_id", "policy", "games", "scores", "mean", "median", "min", "max", "choice_ratios", "seconds"}


def run_json(capsys, argv: list[str]) -> dict:
    """Run the CLI; it must succeed and print exactly one JSON object on stdout."""
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") == 1, f"expected one line of JSON, got {out!r}"
    return json.loads(out)


def run_error(capsys, argv: list[str]) -> str:
    """Run the CLI; it must exit 2 with one line on stderr, no traceback and nothing on stdout."""
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's usage errors exit from inside parse_args
        status = exc.code
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {captured.err!r}"
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "data.npz"
    assert main(["generate", "--games", "1000", "--seed", "0", "--quiet", "--json", "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def model_file(data_file) -> Path:
    path = data_file.with_name("model.keras")
    argv = ["train", "--data", str(data_file), "--epochs", "1", "--hidden", "16", "--quiet", "--json"]
    assert main([*argv, "--out", str(path)]) == 0
    return path


# ---------------------------------------------------------------- generate


def test_generate_prints_one_json_object_and_saves_the_dataset(capsys, tmp_path):
    out = tmp_path / "tmp.npz"
    data = run_json(capsys, ["generate", "--games", "500", "--json", "--quiet", "--out", str(out)])
    assert set(data) == GENERATE_KEYS
    assert data["env_id"] == "CartPole-v1" and data["games"] == 500
    assert 0 < data["accepted"] < 500
    assert data["acceptance_rate"] == pytest.approx(data["accepted"] / 500)
    assert data["accepted_mean"] >= 50 and data["accepted_median"] >= 50
    assert all(isinstance(k, str) for k in data["accepted_counts"])
    assert sum(data["accepted_counts"].values()) == data["accepted"]
    assert all(float(k) >= 50 for k in data["accepted_counts"])
    dataset = load_dataset(out)
    assert dataset.n_games == data["accepted"] and len(dataset) == data["samples"]


def test_generate_text_output_is_the_notebooks(capsys):
    assert main(["generate", "--games", "300", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Average accepted score:" in out and "Median accepted score:" in out and "Counter({" in out


def test_generate_draws_a_progress_bar_on_stderr(capsys):
    assert main(["generate", "--games", "300", "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)
    assert "100%" in captured.err and "300 games played" in captured.err


def test_generate_in_another_env(capsys):
    argv = ["generate", "--env", "MountainCar-v0", "--games", "5", "--goal-steps", "20", "--score-requirement", "-100"]
    data = run_json(capsys, [*argv, "--json", "--quiet"])
    assert data["env_id"] == "MountainCar-v0" and data["accepted"] == 5 and data["samples"] == 100
    assert data["accepted_counts"] == {"-20": 5}


# ---------------------------------------------------------------- train


def test_train_prints_its_history_and_saves_the_model(capsys, data_file, tmp_path):
    out = tmp_path / "m.keras"
    argv = ["train", "--data", str(data_file), "--epochs", "1", "--hidden", "16", "--json", "--quiet"]
    data = run_json(capsys, [*argv, "--out", str(out)])
    assert set(data) == {"epochs", "history", "samples", "seconds"}
    assert data["epochs"] == 1
    assert set(data["history"]) == {"loss", "accuracy"}
    assert all(isinstance(v, list) and len(v) == 1 for v in data["history"].values())
    assert 0.0 <= data["history"]["accuracy"][0] <= 1.0
    assert data["samples"] == len(load_dataset(data_file))
    model = load_model(out)
    assert model.layers[0].units == 16


def test_train_with_validation_split(capsys, data_file):
    argv = ["train", "--data", str(data_file), "--epochs", "1", "--hidden", "8", "--validation-split", "0.2"]
    data = run_json(capsys, [*argv, "--json", "--quiet"])
    assert set(data["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}


# ---------------------------------------------------------------- evaluate


def test_evaluate_a_model(capsys, model_file):
    data = run_json(capsys, ["evaluate", "--model", str(model_file), "--games", "5", "--json", "--quiet"])
    assert set(data) == EVALUATE_KEYS
    assert data["env_id"] == "CartPole-v1" and data["games"] == 5 and data["policy"] == "model.keras"
    assert len(data["scores"]) == 5
    assert data["mean"] == pytest.approx(np.mean(data["scores"]))
    assert data["min"] == min(data["scores"]) and data["max"] == max(data["scores"])
    assert sum(data["choice_ratios"]) == pytest.approx(1.0) and len(data["choice_ratios"]) == 2


def test_evaluate_random_play(capsys):
    data = run_json(capsys, ["evaluate", "--model", "random", "--games", "20", "--seed", "3", "--json", "--quiet"])
    assert data["policy"] == "random" and len(data["scores"]) == 20
    assert 8 <= data["mean"] <= 60
    again = run_json(capsys, ["evaluate", "--games", "20", "--seed", "3", "--json", "--quiet"])  # random is the default
    assert again["scores"] == data["scores"]


def test_two_models_make_an_ensemble_with_member_results(capsys, model_file):
    argv = ["evaluate", "--model", str(model_file), "--model", "random", "--games", "4", "--json", "--quiet"]
    data = run_json(capsys, argv)
    assert data["policy"] == "ensemble"
    assert [m["policy"] for m in data["members"]] == ["model.keras", "random"]
    assert all(set(m) == EVALUATE_KEYS and len(m["scores"]) == 4 for m in data["members"])
    assert 0.0 <= data["disagreement"] <= 1.0


def test_evaluate_writes_a_gif_of_the_best_game(capsys, tmp_path):
    gif = tmp_path / "out.gif"
    data = run_json(capsys, ["evaluate", "--games", "3", "--gif", str(gif), "--json", "--quiet"])
    assert gif.read_bytes().startswith(b"GIF89a")
    assert data["gif"]["path"] == str(gif) and data["gif"]["bytes"] == gif.stat().st_size
    assert data["gif"]["score"] == max(data["scores"])


def test_evaluate_text_output(capsys):
    assert main(["evaluate", "--games", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("random on 3 games of CartPole-v1") and "Average score:" in out and "Choice 0:" in out


# ---------------------------------------------------------------- run


@pytest.mark.slow
def test_run_the_whole_notebook(capsys):
    """``run`` trains the notebook's full-size network (4 epochs on a small dataset: a few seconds)."""
    data = run_json(capsys, ["run", "--games", "500", "--eval-games", "2", "--seed", "1", "--json", "--quiet"])
    assert set(data) == {"generate", "train", "evaluate", "random", "seconds"}
    assert set(data["generate"]) == GENERATE_KEYS and data["generate"]["games"] == 500
    assert data["train"]["epochs"] == 4 and len(data["train"]["history"]["accuracy"]) == 4
    assert set(data["evaluate"]) == set(data["random"]) == EVALUATE_KEYS
    assert data["evaluate"]["games"] == data["random"]["games"] == 2
    assert data["random"]["policy"] == "random"


# ---------------------------------------------------------------- errors: one line, exit 2


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["generate", "--env", "NoSuchGame-v0", "--games", "10"], "Unknown environment 'NoSuchGame-v0'"),
        (["generate", "--env", "Pendulum-v1", "--games", "10"], "'Pendulum-v1' is not supported"),
        (["generate", "--games", "0"], "games must be between 1"),
        (["evaluate", "--games", "0"], "games must be between 1"),
        (["evaluate", "--env", "Pendulum-v1"], "'Pendulum-v1' is not supported"),
        (["generate", "--games", "10", "--seed", "-5"], "seed must be between 0"),
        (["generate", "--games", "10", "--bogus"], "unrecognized arguments: --bogus"),
        (["generate", "--games", "ten"], "invalid int value: 'ten'"),
        (["fly"], "invalid choice: 'fly'"),
        ([], "the following arguments are required"),
    ],
)
def test_mistakes_print_one_line_and_exit_2(capsys, argv, expected):
    line = run_error(capsys, argv)
    assert expected in line


def test_a_threshold_no_game_reaches_names_it_and_the_best_score(capsys):
    line = run_error(capsys, ["generate", "--games", "20", "--score-requirement", "450", "--quiet"])
    assert line.startswith("error: No game reached score_requirement 450")
    assert "the best of 20 games scored" in line


def test_missing_data_file(capsys, tmp_path):
    line = run_error(capsys, ["train", "--data", str(tmp_path / "missing.npz"), "--quiet"])
    assert "missing.npz" in line and "No such file" in line


def test_random_bytes_npz(capsys, tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    line = run_error(capsys, ["train", "--data", str(path), "--quiet"])
    assert "not an .npz archive" in line


def test_bad_hidden_layers(capsys, data_file):
    line = run_error(capsys, ["train", "--data", str(data_file), "--hidden", "128,abc", "--quiet"])
    assert "'128,abc'" in line


def test_model_saved_with_another_suffix_is_refused_before_training(capsys, data_file, tmp_path):
    line = run_error(capsys, ["train", "--data", str(data_file), "--out", str(tmp_path / "m.h5"), "--quiet"])
    assert "m.keras" in line


def test_a_model_from_another_env(capsys, model_file):
    line = run_error(capsys, ["evaluate", "--model", str(model_file), "--env", "Acrobot-v1", "--games", "2", "--quiet"])
    assert "does not fit Acrobot-v1" in line and "--env" in line


def test_a_model_file_that_is_not_a_model(capsys, data_file):
    line = run_error(capsys, ["evaluate", "--model", str(data_file), "--games", "2", "--quiet"])
    assert "not a .keras model" in line


def test_help_as_a_subprocess():
    done = subprocess.run(
        [sys.executable, "-m", "cartpole_core", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for command in ("generate", "train", "evaluate", "run"):
        assert command in done.stdout
    assert done.stderr == ""


# ---------------------------------------------------------------- sweep (issue 10)

SWEEP_TINY = ["sweep", "--games", "300", "--score-requirement", "30", "--eval-games", "10", "--quiet"]


def test_sweep_json_has_trials_summary_best_and_where_it_ran(capsys):
    argv = [*SWEEP_TINY, "--vary", "score_requirement=20,30", "--vary", "hidden=16", "--vary", "epochs=1"]
    data = run_json(capsys, [*argv, "--seeds", "0-1", "--json"])
    assert {"trials", "summary", "best", "workers", "nodes", "seconds"} <= set(data)
    assert len(data["trials"]) == 4 and data["workers"] >= 1 and data["nodes"] == 1
    for trial in data["trials"]:
        assert {"settings", "seed", "accepted", "accuracy", "mean", "median", "seconds", "node"} <= set(trial)
        assert trial["status"] == "done" and trial["node"]
        assert trial["settings"]["hidden"] == [16] and trial["settings"]["epochs"] == 1
    assert [t["seed"] for t in data["trials"]] == [0, 1, 0, 1]
    assert [s["settings"]["score_requirement"] for s in data["summary"]] == [20.0, 30.0]
    for s in data["summary"]:
        assert {"settings", "mean", "ci_low", "ci_high", "n"} <= set(s) and s["n"] == 2
        assert 0 <= s["ci_low"] <= s["mean"] <= s["ci_high"] <= 500
    assert data["best"]["mean"] == max(s["mean"] for s in data["summary"])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--vary", "colour=1,2"], "not a setting"),
        (["--vary", "epochs="], "has no values"),
        (["--vary", "epochs=x"], "whole number"),
        (["--vary", "dropout=0.1,7"], "dropout must be between"),
        (["--vary", "epochs=1", "--seeds", "2-1"], "Seeds '2-1' are not a list of seeds"),
        (["--vary", "games=1,2,3,4,5,6,7,8,9,10", "--seeds", "0-199"], "at most 1000"),
        ([], "Say what to vary"),
        (["--vary", "epochs=1", "--env", "Nope-v0"], "Unknown environment"),
    ],
)
def test_sweep_mistakes_are_one_line_and_exit_2(capsys, argv, expected):
    line = run_error(capsys, [*SWEEP_TINY, *argv])
    assert expected in line


# ---------------------------------------------------------------- every game out of the box (issue 11)


def test_keep_top_keeps_the_best_share_and_says_the_cut(capsys):
    data = run_json(capsys, ["generate", "--games", "1000", "--keep-top", "0.1", "--quiet", "--json"])
    assert data["keep_top"] == 0.1 and data["accepted"] >= 90
    assert data["accepted"] == sum(data["accepted_counts"].values())
    assert min(float(s) for s in data["accepted_counts"]) >= data["threshold"]


def test_other_envs_use_their_own_defaults_without_flags(capsys):
    data = run_json(capsys, ["generate", "--env", "LunarLander-v3", "--games", "200", "--quiet", "--json"])
    assert data["keep_top"] == 0.05 and data["accepted"] == 10  # LunarLander's scores are spread out
    data = run_json(capsys, ["generate", "--games", "500", "--quiet", "--json"])  # CartPole: the notebook's 50
    assert data["keep_top"] is None and data["threshold"] == 50


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", "keep_top must be between"), ("1.5", "keep_top must be between"), ("x", "invalid float value: 'x'")],
)
def test_bad_keep_top_values_are_one_line_and_exit_2(capsys, value, expected):
    line = run_error(capsys, ["generate", "--games", "100", "--keep-top", value, "--quiet"])
    assert expected in line


def test_keep_top_and_a_score_requirement_together_name_the_conflict(capsys):
    line = run_error(capsys, ["generate", "--keep-top", "0.1", "--score-requirement", "40", "--quiet"])
    assert "not both" in line
