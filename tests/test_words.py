"""Words a visitor reads (issue 20): no settings field name (``score_requirement``,
``keep_top``, ``val_accuracy``…) in any label, message, table or chart of the dashboard, on
CartPole and on Acrobot; and texts that fit the game played."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from streamlit.testing.v1 import AppTest
from test_app import _sweep_form, press, start, visit

#: Proto fields that are ids, not text (a widget key may contain a field's name).
NOT_TEXT = {
    "codeText",
    "id",
    "formId",
    "key",
    "fragmentId",
    "elementHash",
    "deltaPath",
    "data",
    "arrowData",
    "datasets",
}


def field_names() -> set[str]:
    """Every settings and results field of the library with an underscore in its name."""
    from cartpole_core.ensemble import EnsembleConfig
    from cartpole_core.evaluate import EvaluationConfig
    from cartpole_core.generate import GenerationConfig
    from cartpole_core.improve import GenerationRecord, ImproveConfig
    from cartpole_core.model import ModelConfig
    from cartpole_core.pipeline import NotebookConfig
    from cartpole_core.sweep import SweepConfig
    from cartpole_core.training import TrainingConfig

    kinds = (EnsembleConfig, EvaluationConfig, GenerationConfig, GenerationRecord, ImproveConfig, ModelConfig,
             NotebookConfig, SweepConfig, TrainingConfig)  # fmt: skip
    names = {f.name for kind in kinds for f in dataclasses.fields(kind) if "_" in f.name}
    return names | {"val_accuracy", "val_loss"}


def _strings(value: Any, out: list[str], key: str = "") -> None:
    if key in NOT_TEXT:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _strings(v, out, k)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out, key)
    elif isinstance(value, str):
        if key == "spec":  # a chart: its titles, axis titles, legend and the names it shows
            out.extend(chart_words(json.loads(value)))
        else:
            out.append(value)


def chart_words(spec: dict[str, Any]) -> list[str]:
    """What a Vega-Lite chart shows: titles and the values of its nominal fields."""
    words: list[str] = []

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("title", "text") and isinstance(v, (str, list)):
                    words.extend([v] if isinstance(v, str) else [str(x) for x in v])
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)

    walk({k: v for k, v in spec.items() if k != "datasets"})
    nominal = set()

    def fields(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "nominal" and isinstance(node.get("field"), str):
                nominal.add(node["field"])
            for v in node.values():
                fields(v)
        elif isinstance(node, list):
            for v in node:
                fields(v)

    fields(spec)
    for rows in spec.get("datasets", {}).values():
        words.extend(str(row[f]) for row in rows for f in nominal if f in row)
    return words


def chart_data_words(arrow: bytes) -> list[str]:
    """The text values of a chart's data (legends, axis labels and tooltips show them)."""
    import pyarrow as pa

    table = pa.ipc.open_stream(arrow).read_all().to_pandas()
    return [str(v) for v in table.select_dtypes("object").to_numpy().ravel()]


def visible_text(at: AppTest) -> str:
    """Everything the page shows in words: markdown, labels, help, options, alerts, metrics,
    table headers, chart titles and legends (main area and sidebar)."""
    out: list[str] = []

    def walk(node: Any) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            _strings(MessageToDict(proto), out)
        for dataset in getattr(proto, "datasets", []) if getattr(node, "type", "") == "vega_lite_chart" else []:
            out.extend(chart_data_words(dataset.data.data))
        value = getattr(node, "value", None) if getattr(node, "type", "") in ("dataframe", "table") else None
        if value is not None:
            out.extend(str(c) for c in value.columns)
            out.extend(str(v) for v in value.select_dtypes("object").head(50).to_numpy().ravel())
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    walk(at.sidebar)
    return "\n".join(out)


def field_names_in(text: str) -> list[str]:
    return sorted(name for name in field_names() if re.search(rf"(?<![\w-]){name}(?![\w-])", text))


def journey(env_id: str) -> list[tuple[str, str]]:
    """Walk every page of a small journey on ``env_id``; (page, what it showed) after each step."""
    seen: list[tuple[str, str]] = []
    at = start()
    seen.append(("home", visible_text(at)))
    visit(at, "pages/random_play.py")
    at.selectbox(key="random_env").set_value(env_id).run()
    at.number_input(key="random_games").set_value(5)
    press(at, "Play random games")
    seen.append(("random play", visible_text(at)))
    visit(at, "pages/generate.py")
    at.selectbox(key="gen_env").set_value(env_id).run()
    at.number_input(key="gen_games").set_value(300)
    press(at, "Play and keep the good games")
    seen.append(("generate", visible_text(at)))
    visit(at, "pages/train.py")
    at.text_input(key="train_hidden").set_value("32,32")
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_split").set_value(0.2)  # validation curves have their own names
    press(at, "Train")
    seen.append(("train", visible_text(at)))
    visit(at, "pages/play.py")
    at.number_input(key="play_games").set_value(3)
    press(at, "Play")
    seen.append(("play", visible_text(at)))
    visit(at, "pages/generations.py")
    at.number_input(key="imp_generations").set_value(1)
    at.number_input(key="imp_games").set_value(20)
    at.number_input(key="imp_eval").set_value(5)
    at.number_input(key="imp_confirm").set_value(5)
    press(at, "Run generations")
    seen.append(("generations", visible_text(at)))
    if env_id == "CartPole-v1":  # a sweep with a trial that fails: its message is shown in a table
        _sweep_form(at, seeds="0", vary1="score_requirement", values1="30,1000")
        press(at, "Run the sweep")
        seen.append(("sweep", visible_text(at)))
        assert [t.status for t in at.session_state["lab"].sweep.trials] == ["done", "failed"]
        assert "No game reached score requirement 1000" in seen[-1][1]  # the library's message, in words
    for page in ("pages/ensemble.py", "pages/policy_map.py", "pages/compare.py", "pages/runs.py", "pages/glossary.py"):
        visit(at, page)
        seen.append((page, visible_text(at)))
    return seen


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1"])
def test_no_settings_field_name_reaches_a_visitor(env_id: str) -> None:
    found = {page: field_names_in(text) for page, text in journey(env_id)}
    assert not {page: names for page, names in found.items() if names}, found
    assert field_names_in("keep score_requirement ≥ 50") == ["score_requirement"]  # the check can fail
