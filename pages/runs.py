"""Runs: every saved run of this server — load, download, delete, compare."""

from __future__ import annotations

import time

import altair as alt
import pandas as pd
import streamlit as st

from cartpole_core.jobs import load_network_job
from cartpole_core.storage import delete_run, list_runs, load_run_dataset, read_run_zip, run_model_file, run_zip
from pages.common import chosen_upload, lab, ray_job, set_dataset, set_model, show_error

state = lab()
st.title("Runs")
st.markdown(
    "Runs saved on this server (use **Save as a run** on the other pages). Load a run's dataset or model "
    "into your session, download it as a zip, or compare the scores of several runs."
)

runs = list_runs()
damaged = [r for r in runs if r.damaged]
healthy = [r for r in runs if not r.damaged]
for r in damaged:
    st.warning(
        f"Run {r.run_id} is damaged and cannot be read ({r.damaged}). You can delete it below.",
        icon=":material/warning:",
    )

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
    st.stop()


def headline(results: dict) -> str:
    for key in ("mean", "accepted_mean", "accuracy"):
        if isinstance(results.get(key), (int, float)):
            return f"{key.replace('_', ' ')} {results[key]:.3g}"
    return ""


table = pd.DataFrame(
    [
        {
            "saved": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created)),
            "kind": r.kind,
            "name": r.name,
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
with c[3].popover("Delete", icon=":material/delete:", help="Remove this run from the server, for everyone."):
    st.markdown(f"Delete **{record.name}** ({chosen}) from this server? Every visitor loses it; it cannot be undone.")
    if st.button("Yes, delete it for everyone", icon=":material/delete_forever:", type="primary", key="runs_delete"):
        try:
            delete_run(chosen)
            st.rerun()
        except Exception as exc:
            show_error(exc)

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
    rows = [
        {"run": f"{r.name} ({r.run_id[:15]})", "score": float(s)}
        for r in scored
        if r.run_id in picked
        for s in r.results["scores"]
    ]
    if rows:
        chart = (
            alt.Chart(pd.DataFrame(rows), title="Game scores per run")
            .mark_boxplot(extent="min-max", size=40)
            .encode(
                x=alt.X("run:N", title=None, axis=alt.Axis(labelAngle=0, labelAlign="center", labelLimit=220)),
                y=alt.Y("score:Q", title="score"),
                tooltip=["run:N"],
            )
        )
        st.altair_chart(chart, width="stretch")
