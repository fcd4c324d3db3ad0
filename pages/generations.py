"""Generations: the network keeps its own best games and retrains, until it masters the game."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from cartpole_core.envs import PLAYERS, env_defaults, selection_words, target_words
from cartpole_core.errors import UserError
from cartpole_core.improve import DATA_MODES, ImproveConfig
from cartpole_core.progress import Progress
from cartpole_core.storage import RunRecord
from pages.common import (
    ACCENT,
    LIMITS,
    MODEL_COLOR,
    board_results,
    chart_title,
    checked,
    env_picker,
    finish_stopped,
    from_url,
    lab,
    of_this_game,
    ray_job,
    record_step,
    run_with_stop,
    save_as_run,
    session_model,
    set_model,
    setting,
    settings_follow_env,
    share_settings,
    show_code,
    show_error,
    shown_step,
    url_number,
    url_select,
    url_slider,
)
from pages.learn import what_to_notice

#: The race against Stable-Baselines3's PPO (BENCHMARKS.md, stage 11), one sentence per env.
RACE_SUMMARY = (
    "Against Stable-Baselines3's PPO with RL Baselines3 Zoo's settings, from random play on a 2-core machine "
    "(BENCHMARKS.md, stage 11): **CartPole-v1** to a mean of 475 in a median 3.1 s over 10 seeds (slowest 4.3 s), "
    "PPO 5.0 s (slowest 7.1 s), every network 500 on 1,000 fresh games; **Acrobot-v1** solved (≥ −100) on 3 of 3 "
    "seeds in a median 6.6 s, PPO 9.1 s; **MountainCar-v0** solved (≥ −110) on 3 of 3 seeds in a median 7.9 s, "
    "PPO 102 s; **LunarLander-v3** not yet: three seeds climbed from −170 to about −80 in 10 minutes, another "
    "reaches a positive mean in about 20 generations, where PPO reached +172 in 8 minutes."
)

state = lab()
st.title("Generations")
st.markdown(
    "The notebook stops at a network that imitates lucky random play. Repeat its own idea: let the "
    "network play, **keep its best games, and retrain on them** (the cross-entropy method)."
)


def records_frame(records: list[Any]) -> pd.DataFrame:
    """One row per generation; ``mean`` … ``max`` are of the player that counts (``player``)."""
    return pd.DataFrame(
        [
            {
                "generation": r.generation,
                "player": r.player,
                "mean": r.mean,
                "greedy mean": r.greedy_mean,
                "sampled mean": r.sampled_mean,
                "median": r.median,
                "min": r.min,
                "max": r.max,
                "trained from": "—" if r.started_from < 0 else f"generation {r.started_from}",
                "rows": r.samples,
                "accuracy": "—" if r.accuracy is None else f"{r.accuracy:.3f}",
                "seconds": r.seconds,
                "elapsed": r.elapsed,
            }
            for r in records
        ]
    )


def progress_chart(df: pd.DataFrame, target: float | None) -> alt.LayerChart:
    """Both players' mean score per generation, the counted player's min-max range as a band
    and the target as a rule."""
    counted = str(df["player"].iloc[0]) if len(df) else "greedy"
    base = alt.Chart(df)
    band = base.mark_area(opacity=0.15, color=MODEL_COLOR).encode(
        x=alt.X("generation:Q", title="generation", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("min:Q", title="score"),
        y2="max:Q",
    )
    players = df.melt(
        id_vars=["generation"], value_vars=["greedy mean", "sampled mean"], var_name="player", value_name="score"
    )
    players["player"] = players["player"].map(
        lambda p: p.removesuffix(" mean") + (" (counts)" if p.startswith(counted) else "")
    )
    line = (
        alt.Chart(players)
        .mark_line(point=True)
        .encode(
            x="generation:Q",
            y="score:Q",
            color=alt.Color(
                "player:N",
                title="player",
                scale=alt.Scale(range=[MODEL_COLOR, ACCENT] if counted == "greedy" else [ACCENT, MODEL_COLOR]),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=["generation:Q", "player:N", alt.Tooltip("score:Q", format=".1f")],
        )
    )
    layers = [band, line]
    if target is not None:
        rule = alt.Chart(pd.DataFrame({"target": [target]})).mark_rule(color=ACCENT, strokeDash=[4, 4])
        layers.append(rule.encode(y="target:Q"))
    title = chart_title("Evaluation score per generation", f"same games every generation; band: {counted} min–max")
    # The height holds the title and the legend under the plot (the legend is there, not at the
    # side, so the plot keeps its width on a phone): 430 px leave the plot its ~200.
    return alt.layer(*layers).properties(title=title, height=430)


def keep_stopped_generations(result: Any) -> str | None:
    """Generations cut short by Stop: keep the best network so far."""
    if not result.generations:
        return None
    state.improve = result
    live = state.improve_live
    live["records"] = list(result.generations)  # the last generation's report may not have arrived
    live["snapshots"].setdefault(result.best_generation, result.model)
    source = f"generation {result.best_generation} (stopped), mean {result.best_mean:.1f}"
    set_model(result.model, source, env_id=result.config.env_id)
    return f"Stopped. Kept the best network so far: generation {result.best_generation}, mean {result.best_mean:.1f}."


finish_stopped(
    state.improve_live, keep_stopped_generations, "Stopped before the first generation was measured: nothing changed."
)

DEFAULTS = ImproveConfig()
env_id = env_picker("imp_env").env_id  # type: ignore[union-attr]  (any game: None only with choices)
start_choices = ["a first network trained on random games"]
if session_model("imp", here="pages/generations.py") is not None:  # a model of another game: said, not offered
    start_choices.insert(0, f"the current model ({state.model_source})")
fitted = env_defaults(env_id)  # the env's step limit, the score that masters it, its player and selection
settings_follow_env("imp", env_id, {"imp_target": fitted.target, "imp_player": fitted.player, "imp_data": fitted.data})
what_to_notice("generations", env_id)
with st.form("improve_form"):
    start_from = st.radio(
        "Start from",
        start_choices,
        key="imp_start",
        help="Generation 0 is this network. A first network learns the notebook's way from the best of a few "
        "thousand random games (settings at the bottom).",
    )
    c = st.columns(4)
    generations = url_number(
        c[0],
        "Most generations",
        *(generations_range := setting(ImproveConfig, "max_generations", cap=LIMITS["generations"])),
        key="imp_generations",
        help=f"Stop after this many generations at most (at most {generations_range[1]} here).",
    )
    games = url_number(
        c[1],
        "Games per generation",
        *setting(ImproveConfig, "games_per_generation", cap=LIMITS["games_per_generation"]),
        step=50,
        key="imp_games",
        help="Games the network plays each generation to find its best ones.",
    )
    keep_top = url_slider(
        c[2],
        "Keep the best (%)",
        *setting(ImproveConfig, "keep_top", scale=100),
        step=0.1,
        key="imp_keep",
        help="Share of those games that becomes the training data.",
    )
    epochs = url_number(
        c[3],
        "Epochs per generation",
        *setting(ImproveConfig, "epochs", cap=LIMITS["epochs"]),
        key="imp_epochs",
        help="Fine-tuning passes over the kept games.",
    )
    with st.expander("More settings (the defaults fit this game)", icon=":material/tune:"):
        c = st.columns(4)
        data_mode = url_select(
            c[0],
            "Training data",
            list(DATA_MODES),
            fitted.data,
            key="imp_data",
            help="best: the best games seen so far (this generation's compete with those kept before); "
            "replace: this generation's best games only; add: all kept so far.",
        )
        explore = url_select(
            c[1],
            "Exploration",
            explore_modes := ["sample from its probabilities", "most probable action"],
            explore_modes[0],
            key="imp_explore",
            help="How the network plays while collecting games. Sampling explores; without it the data barely changes.",
        )
        epsilon = url_slider(
            c[2],
            "Random actions (%)",
            *setting(ImproveConfig, "epsilon", scale=100),
            step=1.0,
            key="imp_epsilon",
            help="Share of steps on which a random action is taken instead.",
        )
        eval_games = url_number(
            c[3],
            "Evaluation games",
            *setting(ImproveConfig, "eval_games", cap=LIMITS["eval_games"]),
            key="imp_eval",
            help="Fixed games each generation is measured on.",
        )
        c = st.columns(4)
        target = c[0].number_input(
            "Stop at mean score",
            value=None if fitted.target is None else from_url("imp_target", fitted.target),
            key="imp_target",
            help=f"Stop once the evaluation mean reaches this: {env_id} is {target_words(env_id)}. "
            "Empty: run every generation.",
        )
        confirm = url_number(
            c[1],
            "Confirmation games",
            *setting(ImproveConfig, "confirm_games", cap=LIMITS["eval_games"])[:2],
            200,  # the page's own default: a shared server confirms on fewer games than the library's 1,000
            key="imp_confirm",
            help="Fresh games the best network plays at the end: a lucky evaluation flatters, these do not.",
        )
        seed = url_number(
            c[2], "Seed", *setting(ImproveConfig, "seed"), key="imp_seed", help="Same seed, same generations."
        )
        temperature = url_number(
            c[3],
            "Sampling temperature",
            *setting(ImproveConfig, "temperature"),
            step=0.05,
            key="imp_temperature",
            help="Below 1 the network's favourite action is drawn more often while collecting games; 1 draws "
            "from its probabilities as they are.",
        )
        c = st.columns(4)
        player = url_select(
            c[0],
            "Player that counts",
            list(PLAYERS),
            fitted.player,
            key="imp_player",
            help="Whose evaluation mean picks the best network and is compared with the target: greedy plays "
            "the most probable action, sampled draws its action from the probabilities. Both are shown.",
        )
        fallback = c[1].checkbox(
            "Build on the best network",
            value=DEFAULTS.fallback,
            key="imp_fallback",
            help="A generation that plays worse than the best so far is not built on: the next starts again "
            "from the best network.",
        )
        c = st.columns(4)
        first_games = url_number(
            c[0],
            "Random games first",
            *setting(ImproveConfig, "first_games", cap=LIMITS["games"]),
            step=500,
            key="imp_first_games",
            help="Random games whose best ones (the env's keep rule) train the first network, generation 0. "
            "The notebook plays 10,000; fewer start rougher but sooner.",
        )
        first_epochs = url_number(
            c[1],
            "Their epochs",
            *setting(ImproveConfig, "first_epochs", cap=LIMITS["epochs"]),
            key="imp_first_epochs",
            help="Passes of the first network over them (the notebook: 4).",
        )
        batch_size = url_number(
            c[2],
            "Batch size",
            *setting(ImproveConfig, "batch_size"),
            key="imp_batch",
            help="Rows per learning step, for the first network and every generation.",
        )
    submitted = st.form_submit_button("Run generations", icon=":material/trending_up:", type="primary")
# After the button (on a phone too, the button is on the first screen): how a run goes, and how fast.
with st.expander("How generations go, and how fast", icon=":material/school:"):
    st.markdown(
        "A generation that plays clearly worse than the best network is not built on: the next starts again "
        "from the best. Every generation is measured on the same "
        "fixed games twice: playing its **most probable action** (greedy) and **drawing its action from its "
        "probabilities** (sampled, how it plays while collecting games)."
    )
    st.caption(
        f"{env_id}: games of up to {fitted.goal_steps:,} steps"
        + f", {target_words(env_id)}"
        + f" (the {fitted.player} player counts). Games are picked by "
        f"**{selection_words(env_id, fitted.progress_dim)}** and learned from "
        + ("**the best games so far**" if fitted.data == "best" else "**each generation's own best games**")
        + "; the score shown is always the game's own."
    )
    st.caption(RACE_SUMMARY)

share_settings(
    [
        "imp_env", "imp_generations", "imp_games", "imp_keep", "imp_epochs", "imp_data", "imp_explore",
        "imp_epsilon", "imp_eval", "imp_target", "imp_confirm", "imp_seed", "imp_temperature",
        "imp_first_games", "imp_first_epochs", "imp_batch", "imp_player",
    ]
)  # fmt: skip
if submitted and checked(generations, games, epochs, eval_games, confirm, seed, temperature, first_games, first_epochs,
                         batch_size):  # fmt: skip
    from cartpole_core.jobs import improve_job

    try:
        config = ImproveConfig.for_env(
            env_id,
            first_games=int(first_games),
            first_epochs=int(first_epochs),
            batch_size=int(batch_size),
            max_generations=int(generations),
            games_per_generation=int(games),
            keep_top=keep_top / 100,
            data=str(data_mode),
            fallback=bool(fallback),
            player=str(player),
            epochs=int(epochs),
            sample_actions=explore.startswith("sample"),
            temperature=float(temperature),
            epsilon=epsilon / 100,
            eval_games=int(eval_games),
            target_mean=None if target is None else float(target),
            confirm_games=int(confirm),
            seed=int(seed),
        ).validate()
    except UserError as exc:
        show_error(exc)
    else:
        start_model = state.model if start_from.startswith("the current model") else None
        live: dict[str, Any] = {"records": [], "snapshots": {}, "config": config}
        state.improve_live, state.timelapse_gif, state.improve = live, None, None
        chart = st.empty()

        def draw(p: Progress) -> None:
            if p.payload is not None:  # a generation finished: its record and network
                live["records"].append(p.payload.record)
                live["snapshots"][p.payload.record.generation] = p.payload.network
                chart.altair_chart(progress_chart(records_frame(live["records"]), config.target_mean), width="stretch")

        result = run_with_stop(
            live,
            "Generations",
            lambda progress, keep: ray_job(
                "Generations", improve_job, config, start_model, progress=progress, partial=keep
            ),
            key="imp",
            stop_help="Stop now and keep the best network so far.",
            on_report=draw,
        )
        chart.empty()
        if result is not None:
            from cartpole_core.recipes import improve_recipe

            state.improve = result
            recipe = improve_recipe(config, start_model is not None, result)
            record_step("generations", recipe, result, model=start_model)
            source = f"generation {result.best_generation}, mean {result.best_mean:.1f}"
            set_model(result.model, source, env_id=config.env_id)

result = state.improve
live = state.improve_live
if live and live["records"] and of_this_game(live["config"].env_id, "Your last generations played"):
    records = live["records"]
    df = records_frame(records)
    best = max(records, key=lambda r: (r.mean, r.generation))
    m = st.columns(4)
    m[0].metric("Generations", f"{len(records) - 1}")
    m[1].metric(
        f"Best evaluation mean ({best.player})",
        f"{best.mean:.1f}",
        f"generation {best.generation}",
        delta_color="off",
        delta_arrow="off",
        help=f"The {best.player} player on the fixed evaluation games; the same network's other player: "
        + (f"sampled {best.sampled_mean:.1f}." if best.player == "greedy" else f"greedy {best.greedy_mean:.1f}."),
    )
    if result is not None and result.confirm_mean is not None:
        m[2].metric(
            f"On fresh games ({result.config.player})",
            f"{result.confirm_mean:.1f}",
            f"{result.config.confirm_games} games",
            delta_color="off",
            delta_arrow="off",
            help="The best network on games it was never measured on.",
        )
    m[3].metric("Seconds", f"{records[-1].elapsed:.1f}")
    st.altair_chart(progress_chart(df, result.config.target_mean if result else None), width="stretch")
    kept = pd.DataFrame(
        [
            {"generation": r.generation, "score": score, "games": count}
            for r in records
            if r.generation > 0
            for score, count in r.kept_counts.items()
        ]
    )
    if not kept.empty:
        st.altair_chart(
            alt.Chart(
                kept,
                title=chart_title("Kept games per score, each generation", "the Counter, generation by generation"),
                height=alt.Step(32),  # per row: a fixed pixel height squashes the rows in Streamlit
            )
            .mark_circle(color=MODEL_COLOR)
            .encode(
                x=alt.X("score:Q", title="score of a kept game"),
                y=alt.Y("generation:O", title="generation"),
                size=alt.Size(
                    "games:Q",
                    title="kept games",
                    scale=alt.Scale(zero=False, range=[30, 300]),
                    legend=alt.Legend(format="d", tickMinStep=1),
                ),
                tooltip=["generation:O", "score:Q", "games:Q"],
            ),
            width="stretch",
        )
    st.dataframe(df.round(3), hide_index=True, width="stretch")
    show_code("generations", result)
    if result is not None and st.button(
        "Save as a run",
        icon=":material/save:",
        key="imp_save_run",
        help="Keep the settings, every generation's figures and the best model on the server (see Runs).",
    ):
        start = shown_step("generations", result)
        save_as_run(
            RunRecord(
                kind="improve",
                name=f"{result.config.env_id} generations, seed {result.config.seed}",
                settings=asdict(result.config),
                results={
                    "generations": [asdict(r) for r in result.generations],
                    "best_generation": result.best_generation,
                    "best_mean": result.best_mean,
                    "confirm_mean": result.confirm_mean,
                    "mean": result.confirm_mean,  # on fresh games: the class board's score
                    "scores": None if result.confirmation is None else result.confirmation.scores,
                    "seconds": result.seconds,
                    **board_results(result.model),
                },
            ),
            model=result.model,
            # The run keeps the best network, not the one it started from: code that starts
            # from a network is shown on the page but not kept with the run.
            code=None if start is None or start.recipe.needs else start,
        )

    if st.button(
        "Make the time-lapse GIF",
        icon=":material/movie:",
        key="imp_timelapse",
        help="The same game played by each generation's network, one after another, each labelled with "
        "its generation's mean: the picture of learning.",
    ):
        from cartpole_core.jobs import timelapse_job

        with st.spinner("Filming one game per generation…"):
            try:
                # Game 1 of the generations' own evaluation games, played the way the counted player plays.
                cfg = replace(live["config"].evaluation_config(), games=1)
                networks = sorted(live["snapshots"].items())
                means = {r.generation: r.mean for r in records}
                job = (timelapse_job, networks, cfg, LIMITS["gif_frames"], means)
                state.timelapse_gif = ray_job("Filming", *job)
            except Exception as exc:
                show_error(exc)
    if state.timelapse_gif:
        st.image(
            state.timelapse_gif,
            caption="The same game, played by each generation in turn (sped up), with its generation's mean",
        )
