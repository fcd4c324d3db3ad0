"""Runs: every saved run of this server — load, download, delete your own, compare, and the
class board (who masters a game with the fewest games?)."""

from __future__ import annotations

import time

import altair as alt
import pandas as pd
import streamlit as st

from cartpole_core.errors import UserError
from cartpole_core.jobs import load_network_job
from cartpole_core.storage import (
    RunRecord,
    board,
    check_board_name,
    clear_board,
    delete_run,
    has_operator,
    is_operator,
    list_runs,
    load_run_dataset,
    may_delete,
    read_run_zip,
    rename_on_board,
    run_model_file,
    run_zip,
    saving_off,
)
from pages.common import LIMITS, chosen_upload, end_page, lab, ray_job, score_text, set_dataset, set_model, show_error

#: The page that saved each kind of run.
MADE_ON = {"generate": "Generate data", "train": "Train", "evaluate": "Play & evaluate", "improve": "Generations",
           "sweep": "Sweep"}  # fmt: skip


state = lab()
st.title("Runs")
st.markdown(
    "Runs saved on this server (use **Save as a run** on the other pages). Load a run's dataset or model "
    "into your session, download it as a zip, or compare the scores of several runs. The runs you save in "
    "this browser session are yours: only this session (or the server's operator) can delete them, and you keep "
    f"up to {LIMITS['runs_per_visitor']}: your oldest make room for a new one."
)
off = saving_off()
if off:
    st.warning(f"{off} Saving is off until then; the runs already here can still be opened.", icon=":material/block:")

token = None
if has_operator():
    with st.expander("For the server's operator", icon=":material/admin_panel_settings:"):
        token = st.text_input(
            "Operator token",
            type="password",
            key="_runs_operator_token",  # "_": not kept among the session's remembered settings
            help="The token the server was started with: with it you can delete any run and clear the board.",
        )
        if token and is_operator(token):
            st.success("Operator: you can delete any run and clear the board.", icon=":material/key:")
        elif token:
            st.error("That is not this server's operator token: check it and type it again.", icon=":material/key_off:")
operator = is_operator(token)

try:
    runs = list_runs()
except OSError as exc:
    show_error(UserError(f"The runs folder cannot be read ({exc.strerror or exc}): the operator checks it."))
    runs = []
damaged = [r for r in runs if r.damaged]
healthy = [r for r in runs if not r.damaged]
for r in damaged:
    st.warning(
        f"Run {r.run_id} is damaged and cannot be read ({r.damaged}). The server's operator can delete it below.",
        icon=":material/warning:",
    )


def whose(record: RunRecord) -> str:
    """Whose a run is, as this visitor reads it."""
    if record.owned_by(state.owner_secret):
        return "you"
    return "another visitor" if record.owner else "before owners"


def show_board() -> None:
    """The class board: per env, runs ranked by their score on fresh games."""
    st.subheader("Class board")
    st.caption(
        "Who masters a game with the fewest games? Each saved network ranked by its **mean score on games it "
        "never trained on** (Play & evaluate's games, or the confirmation games of Generations), then by the "
        "fewest games played to make it, then the fewest seconds. Save a run on Play & evaluate or Generations "
        "to enter; Generate and Train runs have no such score."
    )
    name_col, apply_col = st.columns([3, 2], vertical_alignment="bottom")
    typed = name_col.text_input(
        "Your name on the board",
        value=state.board_name,
        key="runs_board_name",
        help="Shown beside the runs you save from now on. A nickname is enough: no personal data is asked.",
    )
    try:
        state.board_name = check_board_name(typed)
    except UserError as exc:
        show_error(exc)
    renamed = [r for r in healthy if r.owned_by(state.owner_secret) and r.board_name != state.board_name]
    if renamed and apply_col.button(
        f"Put it on my {len(renamed)} saved run(s)",
        icon=":material/badge:",
        key="runs_rename",
        help="Your runs saved under another name take this one.",
    ):
        try:
            for r in renamed:
                rename_on_board(r.run_id, state.board_name, state.owner_secret)
        except Exception as exc:
            show_error(exc)
        else:
            st.rerun()
    ranked = board()
    if not ranked:
        st.info("Nobody is on the board yet.", icon=":material/leaderboard:")
    ranked = dict(sorted(ranked.items(), key=lambda item: item[0] != state.env_id))  # this session's env first
    tabs = st.tabs(list(ranked)) if ranked else []
    mine = {r.run_id for r in healthy if r.owned_by(state.owner_secret)}
    for tab, (env_id, entries) in zip(tabs, ranked.items(), strict=True):
        rows = [
            {
                "#": place,
                "name": e.name + (" (you)" if e.run_id in mine else ""),
                "mean on fresh games": e.score,
                "games played": e.games,
                "seconds": e.seconds,
                "made on": MADE_ON.get(e.kind, e.kind),
                "saved": time.strftime("%m-%d %H:%M", time.localtime(e.created)),
            }
            for place, e in enumerate(entries, start=1)
        ]
        tab.dataframe(
            pd.DataFrame(rows),
            hide_index=True,
            width="stretch",
            key=f"runs_board_{env_id}",
            column_config={
                "mean on fresh games": st.column_config.NumberColumn(format="%.1f"),
                "games played": st.column_config.NumberColumn(
                    format="localized", help="Games played to make the network"
                ),
                "seconds": st.column_config.NumberColumn(format="%.1f", help="Machine seconds to make it"),
            },
        )
    if operator and st.button(
        "Clear the board",
        icon=":material/clear_all:",
        key="runs_clear_board",
        help="Every run stays on the server; those saved until now leave the board (e.g. for a new class).",
    ):
        try:
            clear_board(token)
        except Exception as exc:
            show_error(exc)
        else:
            st.rerun()


show_board()
st.subheader("Saved runs")

with st.expander("Open a run zip", icon=":material/upload:"):
    upload = chosen_upload(
        "A run .zip downloaded from CartPole Lab",
        ["zip"],
        "Load into my session",
        key="runs_upload",
        help="Its dataset and model (if any) become your session's; nothing is saved on the server.",
        button_help="Check the zip and load it.",
    )
    if upload is not None:
        try:
            archive = read_run_zip(upload.getvalue())
            if archive.model_bytes is not None:
                network = ray_job("Loading the model", load_network_job, archive.model_bytes)
                set_model(network, f"run zip {upload.name}")
            if archive.dataset is not None:
                set_dataset(archive.dataset, f"run zip {upload.name}")
        except Exception as exc:
            show_error(exc)
        else:
            parts = [p for p, has in (("dataset", archive.dataset), ("model", archive.model_bytes)) if has is not None]
            st.success(f"Loaded the {' and '.join(parts) or 'record (no files)'} of {archive.record.name!r}.")

if not runs:
    st.info("No run has been saved yet.", icon=":material/folder_open:")
    end_page()


def headline(results: dict) -> str:
    for key, words in (("mean", "mean"), ("accepted_mean", "mean kept score"), ("accuracy", "accuracy")):
        value = results.get(key)
        if isinstance(value, (int, float)):
            return f"{words} {value:.3f}" if key == "accuracy" else f"{words} {score_text(value)}"
    return ""


table = pd.DataFrame(
    [
        {
            "saved": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created)),
            "made on": MADE_ON.get(r.kind, r.kind),
            "name": r.name,
            "by": whose(r),
            "result": headline(r.results),
            "dataset": "✓" if r.has_dataset else "",
            "model": "✓" if r.has_model else "",
            "id": r.run_id,
        }
        for r in healthy
    ]
)
if not table.empty:
    st.dataframe(table, hide_index=True, width="stretch")

ids = [r.run_id for r in runs]
chosen = st.selectbox("Run", ids, key="runs_chosen", help="The run the buttons below act on.")
record = next(r for r in runs if r.run_id == chosen)
c = st.columns(4)
if c[0].button(
    "Load its dataset",
    key="runs_load_dataset",
    help="Make this run's dataset your session's dataset.",
    disabled=not record.has_dataset,
):
    try:
        set_dataset(load_run_dataset(chosen), f"run {chosen}")
        st.success(f"Loaded the dataset of {chosen}.")
    except Exception as exc:
        show_error(exc)
if c[1].button(
    "Load its model",
    key="runs_load_model",
    help="Make this run's model your session's model.",
    disabled=not record.has_model,
):
    try:
        set_model(ray_job("Loading the model", load_network_job, run_model_file(chosen)), f"run {chosen}")
        st.success(f"Loaded the model of {chosen}.")
    except Exception as exc:
        show_error(exc)
try:
    c[2].download_button(
        "Download (.zip)",
        icon=":material/download:",
        data=run_zip(chosen),
        file_name=f"{chosen}.zip",
        mime="application/zip",
        key="runs_download",
        help="The run's settings, results, dataset and model in one zip.",
        on_click="ignore",
    )
except Exception as exc:
    show_error(exc)
if isinstance(record.results.get("code"), dict):
    from cartpole_core import wheel
    from cartpole_core.recipes import DATASET_FILE, MODEL_FILE, notebook_bytes, recipe_from_json
    from cartpole_core.storage import dataset_to_bytes

    recipe = recipe_from_json(record.results["code"])
    with st.container(border=True):
        st.markdown("**Take it home**")
        st.caption(
            "This run's result as a Jupyter notebook: its code with the same settings and seeds, and the numbers "
            "the dashboard showed. Its first cell installs the library from the wheel "
            f"(`{wheel.install_command()}`, Python {wheel.PYTHONS}): download it into the notebook's folder"
            + (", with what the notebook reads." if recipe.files() else ".")
        )
        files = st.columns(2 + len(recipe.files()))
        files[0].download_button(
            "Download as a Jupyter notebook",
            icon=":material/download:",
            data=lambda: notebook_bytes([recipe]),
            file_name=f"{chosen}.ipynb",
            mime="application/x-ipynb+json",
            key="runs_notebook",
            on_click="ignore",
        )
        readers = {
            DATASET_FILE: lambda: dataset_to_bytes(load_run_dataset(chosen)),
            MODEL_FILE: lambda: run_model_file(chosen),
        }
        files[1].download_button(
            wheel.wheel_name(), data=wheel.wheel_bytes, file_name=wheel.wheel_name(), key="runs_code_wheel",
            icon=":material/download:", on_click="ignore", mime="application/zip",
        )  # fmt: skip
        for col, name in zip(files[2:], recipe.files(), strict=True):
            read = readers[name]
            held = record.has_dataset if name == DATASET_FILE else record.has_model
            col.download_button(
                name, data=read, file_name=name, key=f"runs_code_{name}", icon=":material/download:",
                on_click="ignore", mime="application/octet-stream", disabled=not held,
            )  # fmt: skip
if may_delete(record, state.owner_secret, token):
    with c[3].popover("Delete", icon=":material/delete:", help="Remove this run from the server, for everyone."):
        st.markdown(
            f"Delete **{record.name}** ({chosen}) from this server? Every visitor loses it; it cannot be undone."
        )
        if st.button(
            "Yes, delete it for everyone", icon=":material/delete_forever:", type="primary", key="runs_delete"
        ):
            try:
                delete_run(chosen, owner_secret=state.owner_secret, operator_token=token)
                st.rerun()
            except Exception as exc:
                show_error(exc)
else:
    c[3].button(
        "Delete",
        icon=":material/delete:",
        key="runs_delete_locked",
        disabled=True,
        help="Saved by another visitor: only they, or the server's operator, can delete it."
        if record.owner
        else "Saved before runs had owners: only the server's operator can delete it.",
    )

#: A run's label as two lines, its name and then its date (the last " (" begins the date).
TWO_LINES = (
    "lastindexof(datum.label, ' (') > 0 ? [slice(datum.label, 0, lastindexof(datum.label, ' (')), "
    "slice(datum.label, lastindexof(datum.label, ' (') + 1)] : datum.label"
)
scored = [r for r in healthy if isinstance(r.results.get("scores"), list) and r.results["scores"]]
if scored:
    st.subheader("Compare scores")
    picked = st.multiselect(
        "Runs to compare",
        [r.run_id for r in scored],
        default=[r.run_id for r in scored[:5]],
        key="runs_compare",
        help="Each run's game scores as a box: the line is the median, the box the middle half of the games.",
    )

    chosen_runs = [r for r in scored if r.run_id in picked]
    names = [f"{r.name} ({time.strftime('%m-%d %H:%M', time.localtime(r.created))})" for r in chosen_runs]
    names = [n if names.count(n) == 1 else f"{n} …{r.run_id[-6:]}" for n, r in zip(names, chosen_runs, strict=True)]
    rows = [{"run": n, "score": float(s)} for n, r in zip(names, chosen_runs, strict=True) for s in r.results["scores"]]
    if rows:
        chart = (
            # One row per run: long names stay readable, on a phone too (a fixed height squashes rows).
            alt.Chart(pd.DataFrame(rows), title="Game scores per run", height=alt.Step(44))
            .mark_boxplot(extent="min-max", size=28)
            .encode(
                # Each name over two lines, its date under it: the plot keeps its width on a phone.
                y=alt.Y("run:N", title=None, axis=alt.Axis(labelExpr=TWO_LINES, labelLimit=140, labelLineHeight=14)),
                x=alt.X("score:Q", title="score"),
                tooltip=["run:N"],
            )
        )
        st.altair_chart(chart, width="stretch")
