"""Words a visitor reads (issue 20): no settings field name (``score_requirement``,
``keep_top``, ``val_accuracy``…) in any label, message, table or chart of the dashboard, on
CartPole and on Acrobot; and texts that fit the game played.

Words of the page, not of the code (issue 30): no file name (but those of the files a visitor
downloads), no stage number, no library name (Gymnasium introduced once, on Home), no
snake_case word, on every page with and without results; and each step's page ends with
the next step."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from streamlit.testing.v1 import AppTest
from test_app import APP, PAGES, TIMEOUT, _runs_dir, _sweep_form, press, start, visit  # noqa: F401  (_runs_dir: each test's own runs folder)

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
    "icon",  # a Material icon's name
    "page",  # a page link's address
    "pageScriptHash",
    "theme",  # a chart's theme
    "json",  # the game component's data
    "jsContent",  # the game component's code (its few visible words are checked by hand)
    "htmlContent",
    "cssContent",
    "componentName",
    "columns",  # a table's column settings (its headers are read from the table)
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


#: Code shown as code: an inline code span (a command to copy) or a code block (excluded above);
#: and a Material icon in markdown.
CODE_SPAN = re.compile(r"`[^`]*`|:material/\w+:")
FILE_NAME = re.compile(r"(?<![\w.-])[\w-]+\.(?:py|md|json|js|csv|npz|keras|ipynb|whl|toml|txt)\b")
STAGE = re.compile(r"\bstage \d", re.IGNORECASE)
#: Libraries and tools of the code (".keras", a download's extension, is not the library).
LIBRARY = re.compile(
    r"(?<![.\w])(TensorFlow|Keras|Ray|Gymnasium|Stable-Baselines3|RL Baselines3 Zoo|Baselines3|TensorBoard|NumPy|Altair"
    r"|Streamlit|Vega)\b",
    re.IGNORECASE,
)
SNAKE_CASE = re.compile(r"(?<![\w.-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
#: The one page that introduces Gymnasium (where the games come from).
GYMNASIUM_PAGE = "home"


def download_names() -> set[str]:
    """The files a visitor downloads, by the names they get (the page names them)."""
    from cartpole_core import wheel
    from cartpole_core.recipes import DATASET_FILE, MODEL_FILE, NOTEBOOK_FILE

    return {DATASET_FILE, MODEL_FILE, NOTEBOOK_FILE, wheel.wheel_name()}


def words_of_the_code(text: str, page: str) -> list[str]:
    """File names (but downloads'), stage numbers, library names (Gymnasium once, on
    :data:`GYMNASIUM_PAGE`) and snake_case words in ``text``, leaving code spans aside."""
    text = CODE_SPAN.sub(" ", text)
    downloads = download_names()
    for name in downloads:
        text = text.replace(name, " ")
    found = [m.group(0) for m in FILE_NAME.finditer(text) if not m.group(0).startswith("cartpole-lab-")]
    found += STAGE.findall(text)
    libraries = LIBRARY.findall(text)
    if page == GYMNASIUM_PAGE and libraries.count("Gymnasium") == 1:
        libraries.remove("Gymnasium")
    found += libraries
    found += SNAKE_CASE.findall(text)
    return found


@dataclasses.dataclass(frozen=True)
class Seen:
    """A page as drawn on a journey: its words and the pages its last line links to."""

    page: str
    text: str
    ends_with: tuple[str, ...]


def last_links(at: AppTest) -> tuple[str, ...]:
    """The pages linked from the main area's last line (a page link, or a row of them)."""
    children = list(at.main.children.values())
    if not children:
        return ()
    last = children[-1]
    links = [last] if getattr(last, "type", "") == "page_link" else []
    stack = list(getattr(last, "children", {}).values())
    while stack:
        node = stack.pop(0)
        if getattr(node, "type", "") == "page_link":
            links.append(node)
        stack.extend(getattr(node, "children", {}).values())
    return tuple(link.proto.page for link in links)


def seen(at: AppTest, page: str) -> Seen:
    return Seen(page, visible_text(at), last_links(at))


def journey(env_id: str) -> list[Seen]:
    """Every page of a new session (nothing made yet), then a small journey on ``env_id``
    with results on every page; each page as it was drawn."""
    from test_play_yourself import good

    from cartpole_core.human import parse_game, replay

    pages: list[Seen] = []
    at = start()
    pages.append(seen(at, "home"))
    for page in [*PAGES[1:], "pages/play_yourself.py"]:
        visit(at, page)
        pages.append(seen(at, f"{page} (nothing made yet)"))
    visit(at, "pages/home.py")
    visit(at, "pages/random_play.py")
    at.selectbox(key="random_env").set_value(env_id).run()
    at.number_input(key="random_games").set_value(5)
    press(at, "Play random games")
    pages.append(seen(at, "random play"))
    if env_id == "CartPole-v1":  # your games, as the page's game hands them over (see test_play_yourself)
        at.session_state["lab"].your_games.append(replay(parse_game(good(0, 60))))
        visit(at, "pages/play_yourself.py")
        pages.append(seen(at, "play yourself"))
    visit(at, "pages/generate.py")
    at.selectbox(key="gen_env").set_value(env_id).run()
    at.number_input(key="gen_games").set_value(300)
    press(at, "Play and keep the good games")
    pages.append(seen(at, "generate"))
    visit(at, "pages/train.py")
    at.text_input(key="train_hidden").set_value("32,32")
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_split").set_value(0.2)  # validation curves have their own names
    press(at, "Train")
    pages.append(seen(at, "train"))
    visit(at, "pages/play.py")
    at.number_input(key="play_games").set_value(3)
    press(at, "Play")
    press(at, "Save as a run")  # for the Runs page's table and class board
    pages.append(seen(at, "play"))
    visit(at, "pages/ensemble.py")
    at.number_input(key="ens_members").set_value(2)
    at.number_input(key="ens_games").set_value(3)
    press(at, "Train the members")
    pages.append(seen(at, "ensemble"))
    visit(at, "pages/generations.py")
    at.number_input(key="imp_generations").set_value(1)
    at.number_input(key="imp_games").set_value(20)
    at.number_input(key="imp_eval").set_value(5)
    at.number_input(key="imp_confirm").set_value(5)
    press(at, "Run generations")
    pages.append(seen(at, "generations"))
    if env_id == "CartPole-v1":  # a sweep with a trial that fails: its message is shown in a table
        _sweep_form(at, seeds="0", vary1="score_requirement", values1="30,1000")
        press(at, "Run the sweep")
        pages.append(seen(at, "sweep"))
        assert [t.status for t in at.session_state["lab"].sweep.trials] == ["done", "failed"]
        assert "No game reached score requirement 1000" in pages[-1].text  # the library's message, in words
    for page in ("pages/policy_map.py", "pages/compare.py", "pages/runs.py", "pages/glossary.py"):
        visit(at, page)
        pages.append(seen(at, page))
    home = AppTest.from_file(APP, default_timeout=TIMEOUT)  # the entry point: Home and the sidebar, with results
    home.session_state["lab"] = at.session_state["lab"]
    home.run()
    assert not home.exception, home.exception
    assert any("Ensemble:" in c.value for c in home.sidebar.caption), "the sidebar with everything made"
    pages.append(seen(home, "home"))
    return pages


#: Each step's page ends with the next step (the page a link opens, by its address).
NEXT_STEPS = {
    "random play": ("play_yourself", "generate"),
    "play yourself": ("train", "generate"),
    "generate": ("train",),
    "train": ("play",),
    "play": ("ensemble", "generations"),
    "ensemble": ("generations",),
    "generations": ("sweep", "compare"),
    "sweep": ("policy_map",),
    "pages/policy_map.py": ("compare",),
    "pages/compare.py": ("runs",),
}


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1"])
def test_no_word_of_the_code_reaches_a_visitor(env_id: str) -> None:
    pages = journey(env_id)
    fields = {p.page: field_names_in(p.text) for p in pages}
    assert not {page: names for page, names in fields.items() if names}, fields
    assert field_names_in("keep score_requirement ≥ 50") == ["score_requirement"]  # the check can fail
    code = {p.page: words_of_the_code(p.text, p.page) for p in pages}
    assert not {page: words for page, words in code.items() if words}, code
    assert pages[0].page == GYMNASIUM_PAGE and "Gymnasium" in pages[0].text, "Home says where the games come from"
    wrong = ["BENCHMARKS.md, stage 11", "Stable-Baselines3's PPO", "TensorFlow: only in Ray's workers", "retry_s"]
    assert [len(words_of_the_code(w, "train")) for w in wrong] == [2, 1, 2, 1]  # the checks can fail
    ends = {p.page: p.ends_with for p in pages if p.page in NEXT_STEPS}
    assert ends == {page: NEXT_STEPS[page] for page in ends}, ends
    assert len(ends) == len(NEXT_STEPS) - (env_id != "CartPole-v1") * 2  # Acrobot: no sweep, no games of yours
