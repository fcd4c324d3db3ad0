"""Train: fit the network to the kept (observation, action) pairs, with live curves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from cartpole_core.errors import UserError
from cartpole_core.model import ModelConfig
from cartpole_core.progress import Progress
from cartpole_core.storage import RunRecord, folder_zip, new_log_folder
from cartpole_core.training import TrainingConfig
from pages.common import (
    LIMITS,
    batch_curves,
    checked,
    chosen_upload,
    env_picker,
    finish_stopped,
    from_url,
    lab,
    model_fits,
    next_step,
    of_this_game,
    ray_job,
    record_step,
    refuse_while_running,
    run_with_stop,
    save_as_run,
    session_dataset,
    set_model,
    setting,
    share_settings,
    show_code,
    show_curves,
    show_error,
    shown_step,
    still_running,
    url_number,
)
from pages.learn import what_to_notice

if TYPE_CHECKING:
    from cartpole_core.jobs import Trained

state = lab()
st.title("Train")
st.markdown(
    "The network sees an observation and learns to answer with the action the random player took in a "
    "**kept** game: plain imitation of lucky play. **Accuracy** is the share of rows where it picks that "
    "action."
)
env_picker("train_env")
what_to_notice("train", state.env_id)


def keep_stopped_training(trained: Trained) -> str:
    """A training cut short by Stop: its network keeps the steps learned so far."""
    live = state.live_training
    assert live is not None
    set_model(trained.network, live["source"] + " (stopped)", trained.training, env_id=live["env_id"])
    return (
        f"Training stopped. The network keeps what it learned so far ({trained.network.gradient_steps:,} "
        "learning steps)."
    )


def show_tensorboard_logs(folder: Path) -> None:
    """Where this training's TensorBoard logs are and how to open them."""
    st.markdown(
        f"**Training logs** were written to `{folder}`. Where this app runs, open them in the notebook's log "
        f"viewer with `tensorboard --logdir {folder.parent}` and then http://localhost:6006; or download them "
        "and run the same command on your own machine (`pip install tensorboard`)."
    )
    if folder.exists():
        st.download_button(
            "Download the logs (.zip)",
            icon=":material/download:",
            data=folder_zip(folder),
            file_name=f"{folder.name}.zip",
            mime="application/zip",
            key="train_logs_download",
            on_click="ignore",
        )


finish_stopped(state.live_training, keep_stopped_training, "Training cancelled before it started: nothing changed.")
busy = still_running(state.live_training)

dataset = session_dataset("train")
if dataset is None and state.dataset is None:
    st.warning("There is no dataset in this session yet: make one first.", icon=":material/dataset:")
    st.page_link("pages/generate.py", label="Generate data →", icon=":material/dataset:")
elif dataset is not None:
    st.caption(
        f"Dataset: {dataset.n_games:,} games, {len(dataset):,} rows of {dataset.env_id} ({state.dataset_source})."
    )
    with st.form("train_form"):
        c = st.columns(3)
        hidden = c[0].text_input(
            "Hidden layers",
            from_url("train_hidden", ",".join(map(str, ModelConfig().hidden))),
            key="train_hidden",
            help="Units of each hidden layer, input side first, separated by commas.",
        )
        epochs = url_number(
            c[1],
            "Epochs",
            *(epochs_range := setting(TrainingConfig, "epochs", cap=LIMITS["epochs"])),
            key="train_epochs",
            help=f"Passes over the data (the notebook: 4; at most {epochs_range[1]} here).",
        )
        batch = url_number(
            c[2],
            "Batch size",
            *setting(TrainingConfig, "batch_size"),
            key="train_batch",
            help="Rows per learning step (the notebook: 64).",
        )
        # Folded away: the form's button stays on a phone's first screen.
        with st.expander("More settings (the defaults are the notebook's)", icon=":material/tune:"):
            c = st.columns(4)
            dropout = url_number(
                c[0],
                "Dropout",
                *setting(ModelConfig, "dropout"),
                step=0.05,
                key="train_dropout",
                help="Share of units switched off at random while training (the notebook keeps 80 %).",
            )
            lr = url_number(
                c[1],
                "Learning rate",
                *setting(ModelConfig, "learning_rate"),
                step=1e-4,
                format="%.4f",
                key="train_lr",
                help="How big each learning step is: larger learns faster but less steadily.",
            )
            split = url_number(
                c[2],
                "Validation share",
                *setting(TrainingConfig, "validation_split"),
                step=0.05,
                key="train_split",
                help="Share of games held out to check the network on games it never saw (0 = none).",
            )
            seed = url_number(
                c[3],
                "Seed",
                *setting(TrainingConfig, "seed"),
                key="train_seed",
                help="Same seed, same starting weights, same shuffling.",
            )
            tensorboard = st.checkbox(
                "Write training logs",
                value=False,
                key="train_tensorboard",
                help="Like the notebook's training logs: loss and accuracy per epoch, the network's layers and "
                "weights, for the notebook's log viewer. You can download them after training.",
            )
        submitted = st.form_submit_button("Train", icon=":material/neurology:", type="primary")
    st.caption(
        f"Guessing gives {100 / dataset.n_actions:.0f} % with {dataset.env_id}'s {dataset.n_actions} actions, and "
        "the random player's moves are noisy even in a kept game, so far from 100 % is normal: on CartPole-v1 the "
        "notebook reached about 61 % (chance 50 %), enough to play far better than random, as the next page shows."
    )

    share_settings(
        ["train_hidden", "train_dropout", "train_lr", "train_epochs", "train_batch", "train_split", "train_seed"]
    )
    if submitted and not refuse_while_running(busy) and checked(dropout, lr, epochs, batch, split, seed):
        from cartpole_core.jobs import train_job
        from cartpole_core.model import parse_hidden

        try:
            model_cfg = ModelConfig(
                hidden=parse_hidden(hidden), dropout=float(dropout), learning_rate=float(lr)
            ).validate()
            train_cfg = TrainingConfig(
                epochs=int(epochs),
                batch_size=int(batch),
                validation_split=float(split),
                seed=int(seed),
                tensorboard_dir=str(new_log_folder(f"seed {seed}")) if tensorboard else None,
            ).validate()
        except UserError as exc:
            show_error(exc)
        else:
            rows: list[dict[str, float]] = []
            source = f"{'-'.join(map(str, model_cfg.hidden))} network, seed {seed}"
            live = state.live_training = {"source": source, "env_id": dataset.env_id}
            chart = st.empty()
            last_draw = [0.0]

            def draw(p: Progress) -> None:
                rows.append(dict(p.metrics))
                now = time.monotonic()
                if now - last_draw[0] > 0.5:
                    last_draw[0] = now
                    df = pd.DataFrame(rows)[["step", "loss", "accuracy"]]
                    with chart.container():
                        show_curves(df, "step", "Learning live", "batch")

            trained = run_with_stop(
                live,
                "Training",
                lambda progress, keep: ray_job(
                    "Training", train_job, dataset, model_cfg, train_cfg, int(seed), progress=progress, partial=keep
                ),
                key="train",
                stop_label="Stop training",
                stop_help="Ends training now; the network keeps what it learned.",
                on_report=draw,
            )
            chart.empty()
            if trained is not None:
                set_model(trained.network, source, trained.training, env_id=dataset.env_id)
                from dataclasses import replace

                from cartpole_core.recipes import train_recipe

                shown_cfg = replace(train_cfg, tensorboard_dir=None)  # logs change no number
                recipe = train_recipe(model_cfg, shown_cfg, int(seed), trained.training)
                record_step("train", recipe, trained.training, dataset=dataset)

    result = state.training
    if (
        state.model is not None
        and result is not None
        and (model_fits() or of_this_game(state.model_env_id or "another game", "Your model plays"))
    ):
        st.subheader("Result")
        m = st.columns(5)
        m[0].metric("Accuracy", f"{result.final_accuracy:.3f}" if result.final_accuracy is not None else "–")
        m[1].metric("Loss", f"{result.final_loss:.4f}" if result.final_loss is not None else "–")
        val = result.epoch_history.get("val_accuracy")
        m[2].metric("Validation accuracy", f"{val[-1]:.3f}" if val else "–")
        m[3].metric("Epochs", f"{result.epochs_completed}" + (" (stopped)" if result.stopped_early else ""))
        m[4].metric("Seconds", f"{result.seconds:.1f}")
        if result.epoch_history:
            epochs_df = pd.DataFrame(result.epoch_history)
            epochs_df.insert(0, "epoch", range(1, len(epochs_df) + 1))
            show_curves(epochs_df, "epoch", "Per epoch", "epoch")
        batches = pd.DataFrame(result.batch_history)
        if not batches.empty and "epoch" in batches:
            smooth, window = batch_curves(batches)
            note = f"moving average of {window} batches" if window > 1 else ""
            show_curves(smooth, "step", "Per batch", "batch", note)
        steps = state.model.gradient_steps
        st.caption(f"{result.samples:,} training rows · {steps:,} learning steps so far · {state.model_source}")
        show_code("train", result)
        if result.config.tensorboard_dir:
            show_tensorboard_logs(Path(result.config.tensorboard_dir))

if state.model is not None:
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download model (.keras)",
        icon=":material/download:",
        data=state.model.keras_file or b"",
        file_name="cartpole-lab-model.keras",
        mime="application/octet-stream",
        key="train_download",
        help="The network as a .keras file, to keep or to upload later.",
        on_click="ignore",
    )
    if d2.button(
        "Save as a run",
        icon=":material/save:",
        key="train_save_run",
        help="Keep this model, its dataset and curves on the server (see Runs).",
        disabled=state.training is None,
    ):
        t = state.training
        assert t is not None
        save_as_run(
            RunRecord(
                kind="train",
                name=state.model_source,
                settings={"training": t.config.__dict__, "dataset": state.dataset_source},
                results={"epoch_history": t.epoch_history, "accuracy": t.final_accuracy, "seconds": t.seconds},
            ),
            dataset=state.dataset,
            model=state.model,
            code=shown_step("train", state.training),
        )

st.subheader("Upload a model")
upload = chosen_upload(
    "A .keras model saved by CartPole Lab",
    ["keras"],
    "Use this model",
    key="train_upload",
    help="Loaded in safe mode: files that carry code are refused.",
    button_help="Load the file in safe mode and make it this session's model.",
)
if upload is not None:
    from cartpole_core.jobs import load_network_job

    try:
        uploaded = ray_job("Loading the model", load_network_job, upload.getvalue())
    except Exception as exc:
        show_error(exc)
    else:
        set_model(uploaded, f"uploaded {upload.name}")
        st.success(f"Loaded {upload.name}.")
next_step(("pages/play.py", "Play & evaluate"))
