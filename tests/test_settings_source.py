"""One source of truth for settings (issue "take it home"): every number field of the
dashboard and every CLI default comes from the config dataclasses, and each range the pages
and the CLI allow is exactly the one the config's own ``validate`` accepts (lowered only by
this server's documented ``LIMITS``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from cartpole_core.cli import build_parser, main
from cartpole_core.ensemble import EnsembleConfig
from cartpole_core.errors import UserError, bounds
from cartpole_core.evaluate import EvaluationConfig
from cartpole_core.generate import GenerationConfig
from cartpole_core.improve import ImproveConfig
from cartpole_core.model import ModelConfig
from cartpole_core.pipeline import NotebookConfig
from cartpole_core.sweep import SweepConfig, trial_config
from cartpole_core.training import TrainingConfig
from pages.server import LIMITS

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 300  # seconds per script run, as in test_app.py

CONFIGS = (GenerationConfig, ModelConfig, TrainingConfig, EvaluationConfig, EnsembleConfig, ImproveConfig,
           NotebookConfig)  # fmt: skip


class Field:
    """What a page's number field must be: setting ``name`` of ``config``, its high end capped
    by ``cap`` (a server limit) when given, shown times ``scale``; ``own_default`` is a page's
    deliberate default of its own (commented where the page sets it), else the config's."""

    def __init__(self, config: type, name: str, cap: int | None = None, scale: float = 1, own_default: Any = None):
        self.config, self.name, self.cap, self.scale, self.own_default = config, name, cap, scale, own_default

    def expected(self) -> tuple[float, float, Any]:
        low, high = bounds(self.config, self.name)
        if self.cap is not None:
            high = min(high, self.cap)
        declared = {f.name: f.default for f in dataclasses.fields(self.config)}[self.name]
        value = self.own_default if self.own_default is not None else min(declared, high) * self.scale
        return round(low * self.scale, 9), round(high * self.scale, 9), value


PAGES: dict[str, dict[str, Field]] = {
    "pages/home.py": {"home_seed": Field(TrainingConfig, "seed")},
    "pages/random_play.py": {
        "random_games": Field(EvaluationConfig, "games", LIMITS["eval_games"], own_default=100),
        "random_seed": Field(EvaluationConfig, "seed"),
    },
    "pages/generate.py": {
        "gen_games": Field(GenerationConfig, "games", LIMITS["games"]),
        "gen_goal_steps": Field(GenerationConfig, "goal_steps"),
        "gen_seed": Field(GenerationConfig, "seed"),
    },
    "pages/train.py": {
        "train_dropout": Field(ModelConfig, "dropout"),
        "train_lr": Field(ModelConfig, "learning_rate"),
        "train_epochs": Field(TrainingConfig, "epochs", LIMITS["epochs"]),
        "train_batch": Field(TrainingConfig, "batch_size"),
        "train_split": Field(TrainingConfig, "validation_split"),
        "train_seed": Field(TrainingConfig, "seed"),
    },
    "pages/play.py": {
        "play_games": Field(EvaluationConfig, "games", LIMITS["eval_games"]),
        "play_seed": Field(EvaluationConfig, "seed"),
    },
    "pages/ensemble.py": {
        "ens_members": Field(EnsembleConfig, "members", LIMITS["members"]),
        "ens_epochs": Field(EnsembleConfig, "epochs", LIMITS["epochs"]),
        "ens_games": Field(EvaluationConfig, "games", LIMITS["eval_games"], own_default=100),
        "ens_seed": Field(EnsembleConfig, "seed"),
    },
    "pages/generations.py": {
        "imp_generations": Field(ImproveConfig, "max_generations", LIMITS["generations"]),
        "imp_games": Field(ImproveConfig, "games_per_generation", LIMITS["games_per_generation"]),
        "imp_keep": Field(ImproveConfig, "keep_top", scale=100),
        "imp_epochs": Field(ImproveConfig, "epochs", LIMITS["epochs"]),
        "imp_epsilon": Field(ImproveConfig, "epsilon", scale=100),
        "imp_eval": Field(ImproveConfig, "eval_games", LIMITS["eval_games"]),
        "imp_confirm": Field(ImproveConfig, "confirm_games", LIMITS["eval_games"], own_default=200),
        "imp_seed": Field(ImproveConfig, "seed"),
        "imp_temperature": Field(ImproveConfig, "temperature"),
        "imp_first_games": Field(ImproveConfig, "first_games", LIMITS["games"]),
        "imp_first_epochs": Field(ImproveConfig, "first_epochs", LIMITS["epochs"]),
        "imp_batch": Field(ImproveConfig, "batch_size"),
    },
    "pages/sweep.py": {
        "sweep_games": Field(GenerationConfig, "games", LIMITS["games"]),
        "sweep_eval": Field(NotebookConfig, "evaluation_games", LIMITS["eval_games"], own_default=20),
    },
    "pages/generate.py|gen_rule=share": {  # CartPole keeps no share by default: the page offers 5 %
        "gen_keep_top": Field(GenerationConfig, "keep_top", scale=100, own_default=5.0),
    },
    "pages/sweep.py|sweep_mode=generations": {
        "sweep_generations": Field(ImproveConfig, "max_generations", LIMITS["generations"], own_default=3),
        "sweep_games_per_generation": Field(ImproveConfig, "games_per_generation", LIMITS["games_per_generation"]),
    },
    "pages/compare.py": {"cmp_games": Field(EvaluationConfig, "games", LIMITS["eval_games"] // 5, own_default=20)},
}
SUBMIT = {
    "pages/generate.py": "Play and keep the good games",
    "pages/train.py": "Train",
    "pages/ensemble.py": "Train the members and compare",
    "pages/generations.py": "Run generations",
    "pages/sweep.py": "Run the sweep",
}


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTPOLE_LAB_RUNS", str(tmp_path / "runs"))


def accepts(config: type, name: str, value: Any) -> bool:
    """Whether the config's own validation accepts ``value`` for setting ``name``."""
    try:
        if config is NotebookConfig:  # it has no validate of its own: a sweep trial checks it
            trial_config(NotebookConfig(evaluation_games=value), {}, 0)
        else:
            replace(config(), **{name: value}).validate()
    except UserError:
        return False
    return True


def step_out(value: float, direction: float) -> float:
    return value + direction if isinstance(value, int) else math.nextafter(value, direction * math.inf)


@pytest.mark.parametrize("config", CONFIGS)
def test_each_range_is_the_one_the_config_validates(config: type) -> None:
    """Not circular: the range the pages and the CLI read must be exactly what validate() allows."""
    ranged = [f.name for f in dataclasses.fields(config) if "range" in f.metadata]
    assert ranged, f"{config.__name__} declares no range"
    for name in ranged:
        low, high = bounds(config, name)
        assert accepts(config, name, low) and accepts(config, name, high), (config.__name__, name)
        assert not accepts(config, name, step_out(low, -1)), (config.__name__, name, "below")
        assert not accepts(config, name, step_out(high, +1)), (config.__name__, name, "above")


def _session_with_a_dataset() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/generate.py")
    at.run()
    at.number_input(key="gen_games").set_value(300)
    at.number_input(key="gen_requirement").set_value(20.0)
    [b for b in at.button if "Play and keep" in b.label][0].click()
    at.run()
    assert not at.exception and at.session_state["lab"].dataset is not None
    return at


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppTest]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CARTPOLE_LAB_RUNS", str(tmp_path_factory.mktemp("runs")))
        yield _session_with_a_dataset()


def _refused_range(at: AppTest, page: str, keys: list[str]) -> dict[str, str]:
    """Type a value far above every field of ``page`` and return each field's refusal."""
    for key in keys:
        widget = at.number_input(key=key)
        widget.set_value(1e12 if isinstance(widget.value, float) else 10**12)
    if page in SUBMIT:
        [b for b in at.button if b.label == SUBMIT[page]][0].click()
    at.run()
    assert not at.exception, at.exception
    refusals = {}
    for key in keys:
        label = at.number_input(key=key).label
        refusals[key] = next((e.value for e in at.error if e.value.startswith(f"{label}:")), "")
    return refusals


@pytest.mark.parametrize("where", list(PAGES))
def test_every_number_field_takes_its_range_and_default_from_the_config(session: AppTest, where: str) -> None:
    """``where`` is a page, and after ``|`` a radio choice that shows more fields."""
    page, _, choice = where.partition("|")
    at = session
    at.query_params.clear()
    at.switch_page(page)
    at.run()
    if choice:
        radio, value = choice.split("=")
        at.radio(key=radio).set_value(value).run()
    assert not at.exception, at.exception
    fields = PAGES[where]
    numbers = {n.key for n in at.number_input}
    for key, field in fields.items():
        low, high, value = field.expected()
        if key in numbers:
            assert at.number_input(key=key).value == pytest.approx(value), key
        else:
            slider = at.slider(key=key)
            assert (slider.min, slider.max, slider.value) == pytest.approx((low, high, value)), key
    refusals = _refused_range(at, page, [k for k in fields if k in numbers])
    for key, text in refusals.items():
        low, high, _ = fields[key].expected()
        assert f"type a value from {low:,} to {high:,}." in text, (key, text)
    for field in fields.values():  # the page's high end is the library's unless a server limit caps it
        library_high = bounds(field.config, field.name)[1] * field.scale
        _, high, _ = field.expected()
        assert high == pytest.approx(library_high) or (field.cap is not None and high == field.cap * field.scale)


def test_the_train_page_allows_the_librarys_batch_size(session: AppTest) -> None:
    """The Train page once stopped at 4,096 rows per step while TrainingConfig takes 65,536."""
    assert not any("batch" in name for name in LIMITS), "a server limit on batches would need a cap here"
    at = session
    at.switch_page("pages/train.py")
    at.run()
    at.number_input(key="train_batch").set_value(65_536)
    at.number_input(key="train_epochs").set_value(10**9)  # keeps the form from training
    [b for b in at.button if b.label == "Train"][0].click()
    at.run()
    errors = " ".join(e.value for e in at.error)
    assert "Batch size:" not in errors and "Epochs:" in errors
    assert accepts(TrainingConfig, "batch_size", 65_536) and not accepts(TrainingConfig, "batch_size", 65_537)
    at.number_input(key="train_batch").set_value(65_537)
    [b for b in at.button if b.label == "Train"][0].click()
    at.run()
    assert any(e.value.startswith("Batch size:") and "from 1 to 65,536." in e.value for e in at.error)


def _defaults(*argv: str) -> dict[str, Any]:
    return vars(build_parser().parse_args(list(argv)))


def test_cli_defaults_are_the_configs_defaults() -> None:
    model, training, evaluation = ModelConfig(), TrainingConfig(), EvaluationConfig()
    train = _defaults("train", "--data", "x.npz")
    assert (train["epochs"], train["batch_size"], train["validation_split"], train["seed"]) == (
        training.epochs, training.batch_size, training.validation_split, training.seed
    )  # fmt: skip
    assert (train["lr"], train["dropout"], train["hidden"]) == (
        model.learning_rate, model.dropout, ",".join(map(str, model.hidden))
    )  # fmt: skip
    assert _defaults("generate")["seed"] == GenerationConfig().seed
    evaluate = _defaults("evaluate")
    assert (evaluate["games"], evaluate["seed"], evaluate["vote"]) == (
        evaluation.games, evaluation.seed, EnsembleConfig().vote
    )  # fmt: skip
    assert _defaults("run")["eval_games"] == NotebookConfig().evaluation_games
    sweep = _defaults("sweep")
    assert sweep["eval_games"] == SweepConfig().base.evaluation_games
    assert sweep["seeds"] == f"{SweepConfig().seeds[0]}-{SweepConfig().seeds[-1]}"
    improve, d = _defaults("improve"), ImproveConfig()
    flags = {"first_games": "first_games", "first_epochs": "first_epochs", "generations": "max_generations",
             "games": "games_per_generation", "keep_top": "keep_top", "epochs": "epochs", "batch_size": "batch_size",
             "temperature": "temperature", "epsilon": "epsilon", "eval_games": "eval_games",
             "confirm_games": "confirm_games", "max_seconds": "max_seconds", "seed": "seed", "lr": "learning_rate",
             "data_mode": "data"}  # fmt: skip
    for flag, name in flags.items():
        assert improve[flag] == getattr(d, name), flag


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--batch-size", "65537"], "batch_size must be between 1 and 65536"),
        (["train", "--epochs", "1001"], "epochs must be between 1 and 1000"),
        (["train", "--dropout", "0.95"], "dropout must be between 0 and 0.9"),
        (["evaluate", "--games", "100001"], "games must be between 1 and 100000"),
    ],
)
def test_cli_range_errors_are_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    if argv[0] == "train":
        argv = [*argv, "--data", str(tmp_path / "missing.npz")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_the_cli_accepts_the_librarys_largest_batch(tmp_path: Path, capsys) -> None:
    """65,536 passes the settings check; what stops this run is the missing dataset."""
    assert main(["train", "--batch-size", "65536", "--data", str(tmp_path / "missing.npz")]) == 2
    err = capsys.readouterr().err
    assert "batch_size" not in err and err.count("\n") == 1, err
