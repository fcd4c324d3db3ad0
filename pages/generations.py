"""Generations: the network keeps its own best games and retrains, until it masters the game."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from cartpole_core.envs import PLAYERS, env_defaults, env_info, score_range, selection_words, target_words
from cartpole_core.errors import UserError
from cartpole_core.improve import DATA_MODES, GenerationRecord, ImproveConfig
from cartpole_core.progress import Progress
from cartpole_core.storage import RunRecord
from pages.common import (
    ACCENT,
    LIMITS,
    PLAYER_COLORS,
    board_results,
    chart_title,
    checked,
    env_picker,
    finish_stopped,
    from_url,
    lab,
    next_step,
    of_this_game,
    policy_colors,
    ray_job,
    record_step,
    refuse_while_running,
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
    signed_score,
    still_running,
    url_number,
    url_select,
    url_slider,
)
from pages.learn import what_to_notice

#: The race against Stable-Baselines3's PPO with RL Baselines3 Zoo's settings (BENCHMARKS.md, stage
#: 11), one sentence per env, in a learner's words (the Glossary says what PPO is).
RACE_SUMMARY = (
    "Against a standard reinforcement-learning method (PPO, with the settings published for each game), from "
    "random play on a 2-core machine: **CartPole-v1** reaches a mean of 475 in a median 3.1 s over 10 seeds "
    "(slowest 4.3 s), PPO in 5.0 s (slowest 7.1 s), and every network scores 500 on 1,000 fresh games; "
    "**Acrobot-v1** is solved (≥ −100) on 3 of 3 seeds in a median 6.6 s, PPO 9.1 s; **MountainCar-v0** is "
    "solved (≥ −110) on 3 of 3 seeds in a median 7.9 s, PPO 102 s; **LunarLander-v3** not yet: three seeds "
    "climbed from −170 to about −80 in 10 minutes, another reaches a positive mean in about 20 generations, "
    "where PPO reached +172 in 8 minutes."
)

state = lab()
st.title("Generations")
st.markdown(
    "The notebook stops at a network that imitates lucky random play. Repeat its own idea: let the "
    "network play, **keep its best games, and retrain on them** (the cross-entropy method)."
)


def next_step_words(record: GenerationRecord, after: GenerationRecord | None, config: ImproveConfig) -> str:
    """What the generation after ``record`` started from, and why (``after``: that
    generation's record; None for the last one)."""
    if after is None:
        return "—"
    best, reason = after.best_before, after.start_reason
    collecting = "sampled" if config.sample_actions else "greedy"
    if reason == "best":
        return "built on: the best so far"
    if reason == "noise":
        return f"built on: below generation {best}, within the noise"
    if reason == "collecting":
        return f"built on: clearly worse than generation {best}, but its {collecting} player clearly better"
    if reason == "fallback":
        return f"not built on: clearly worse than generation {best}; the next starts from {best}"
    if reason == "kept":
        return f"built on: clearly worse than generation {best} (falling back is off)"
    return f"built on: generation {after.started_from}" if after.started_from == record.generation else "—"


def records_frame(records: list[Any], config: ImproveConfig | None = None) -> pd.DataFrame:
    """One row per generation; ``mean`` … ``max`` are of the player that counts (``player``);
    with ``config``, a column saying what the next generation started from and why."""
    rows = []
    for i, r in enumerate(records):
        row = {
            "generation": r.generation,
            "mean": r.mean,
            "greedy mean": r.greedy_mean,
            "sampled mean": r.sampled_mean,
        }
        if config is not None:
            row["next generation"] = next_step_words(r, records[i + 1] if i + 1 < len(records) else None, config)
        rows.append(
            row
            | {
                "trained from": "—" if r.started_from < 0 else f"generation {r.started_from}",
                "median": r.median,
                "min": r.min,
                "max": r.max,
                "player": r.player,
                "rows": r.samples,
                "accuracy": "—" if r.accuracy is None else f"{r.accuracy:.3f}",
                "seconds": r.seconds,
                "elapsed": r.elapsed,
            }
        )
    return pd.DataFrame(rows)


def verdict(
    records: list[GenerationRecord], config: ImproveConfig, stopped: bool | None, running: bool = False
) -> tuple[bool, str]:
    """Whether the run reached its target, and the one sentence that says how it ended: solved
    (or mastered) at which generation and whether it stopped there, or how far it got.
    ``stopped``: True when Stop ended it, None when not known (no result came back);
    ``running``: the run goes on (in another tab): how far it got so far, not how it ended."""
    env_id, target, last = config.env_id, config.target_mean, records[-1].generation
    best = max(records, key=lambda r: (r.mean, r.generation))  # the later one on a tie, as the run keeps
    counted = f"the {config.player} player's mean"
    if target is None:
        best_words = f"{signed_score(best.mean, env_id)} at generation {best.generation}"
        return False, f"No target set: the best, {counted}, is {best_words}."
    top = score_range(env_id, config.goal_steps)[1]
    own = {env_defaults(env_id).target, env_info(env_id).reward_threshold}
    reached = next((r for r in records if r.mean >= target), None)
    if reached is not None:
        g, early = reached.generation, reached.generation < config.max_generations
        if target >= top:
            if early:
                return True, f"Mastered: stopping at generation {g} ({top:g} is the most a game can score)."
            return True, f"Mastered at generation {g} ({top:g} is the most a game can score)."
        what = "Solved" if target in own else "Reached the target"
        stop = f"; stopping there, before the {config.max_generations} generations allowed" if early else ""
        score = signed_score(reached.mean, env_id)
        return True, f"{what} at generation {g}: {counted} {score} against the target {target:g}{stop}."
    what = "Not mastered yet" if target >= top else "Not solved yet" if target in own else "Target not reached yet"
    if running:
        ended = f"so far: generation {last} is the last measured, and the run goes on"
    elif stopped:
        ended = f"when you stopped it after generation {last}"
    elif stopped is None:
        ended = f"when it ended after generation {last}"
    elif last < config.max_generations and records[-1].elapsed > config.max_seconds:
        ended = f"when the time limit ({config.max_seconds:g} s) ended it after generation {last}"
    else:
        ended = f"after all {config.max_generations} generations"
    return False, (
        f"{what}: best {signed_score(best.mean, env_id)} against the target {target:g} ({counted}, generation "
        f"{best.generation}), {ended}."
    )


def what_the_numbers_show(records: list[GenerationRecord], config: ImproveConfig) -> str:
    """What the records show, player by player: where each started and ended, its best when it
    fell back from there, and the generations not built on."""
    env_id, last = config.env_id, records[-1].generation
    if last == 0:
        return (
            f"Only generation 0 so far: the greedy player {signed_score(records[0].greedy_mean, env_id)}, the sampled "
            f"player {signed_score(records[0].sampled_mean, env_id)}."
        )
    lines = []
    for player in PLAYERS:
        means = [getattr(r, f"{player}_mean") for r in records]
        first, end = means[0], means[-1]
        peak = max(range(len(means)), key=lambda i: (means[i], i))
        verb = "climbed" if end > first else "fell" if end < first else "stayed"
        line = (
            f"the {player} player{' (the one that counts)' if player == config.player else ''} {verb} from "
            f"{signed_score(first, env_id)} at generation 0 to {signed_score(end, env_id)} at generation {last}"
        )
        if means[peak] > end:
            line += f", below its best, {signed_score(means[peak], env_id)} at generation {records[peak].generation}"
        lines.append(line)
    text = "In this run, " + "; ".join(lines) + "."
    fell_back = sum(r.start_reason == "fallback" for r in records)
    if fell_back:
        times = "Once" if fell_back == 1 else f"{fell_back} times"
        text += (
            f" {times} a generation clearly worse than the best was not built on: the next one started again from "
            "the best (see the table)."
        )
    return text


def progress_chart(df: pd.DataFrame, target: float | None) -> alt.LayerChart:
    """Both players' mean score per generation, the counted player's min-max range as a band
    and the target as a rule; each player in its own colour (the same on every page)."""
    counted = str(df["player"].iloc[0]) if len(df) else "greedy"
    base = alt.Chart(df)
    band = base.mark_area(opacity=0.15, color=PLAYER_COLORS[counted]).encode(
        x=alt.X("generation:Q", title="generation", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("min:Q", title="score"),
        y2="max:Q",
    )
    players = df.melt(
        id_vars=["generation"], value_vars=["greedy mean", "sampled mean"], var_name="player", value_name="score"
    )
    names = {p: p.removesuffix(" mean") + (" (counts)" if p.startswith(counted) else "") for p in players["player"]}
    players["player"] = players["player"].map(names)
    line = (
        alt.Chart(players)
        .mark_line(point=True)
        .encode(
            x="generation:Q",
            y="score:Q",
            color=alt.Color(
                "player:N",
                title="player",
                scale=policy_colors(sorted(set(names.values()))),
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
busy = still_running(state.improve_live)

DEFAULTS = ImproveConfig()
env_id = env_picker("imp_env").env_id  # type: ignore[union-attr]  (any game: None only with choices)
start_choices = ["a first network trained on random games"]
if session_model("imp", here="pages/generations.py") is not None:  # a model of another game: said, not offered
    start_choices.insert(0, f"the current model ({state.model_source})")
fitted = env_defaults(env_id)  # the env's step limit, the score that masters it, its player and selection
settings_follow_env("imp", env_id, {"imp_target": fitted.target, "imp_player": fitted.player, "imp_data": fitted.data})
notice = st.empty()  # "What to notice", with what this session's numbers show (drawn again below)


def draw_notice() -> None:
    live = state.improve_live
    numbers = ""
    if live and live["records"] and live["config"].env_id == env_id:
        numbers = what_the_numbers_show(live["records"], live["config"])
    with notice.container():
        what_to_notice("generations", env_id, numbers)


draw_notice()
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
            help="A generation whose counted player scores clearly worse than the best so far is not built on "
            "(unless the player collecting the games got clearly better): the next starts again from the best network.",
        )
        c = st.columns(4)
        first_games = url_number(
            c[0],
            "Random games first",
            *setting(ImproveConfig, "first_games", cap=LIMITS["games"]),
            step=500,
            key="imp_first_games",
            help="Random games whose best ones (the game's keep rule) train the first network, generation 0. "
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
        "Every generation "
        "is measured on the same fixed games twice: playing its **most probable action** (greedy) and **drawing "
        "its action from its probabilities** (sampled, how it plays while collecting games). A generation whose "
        "counted player scores clearly worse than the best network's (by more than the measurement's noise) is "
        "not built on: the next starts again from the best, **unless the player that collects the games got "
        "clearly better** (that is the method making progress, which starting over would undo). The table says, "
        "generation by generation, which network the next one started from and why."
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
if (
    submitted
    and not refuse_while_running(busy)
    and checked(generations, games, epochs, eval_games, confirm, seed, temperature, first_games, first_epochs,
                batch_size)
):  # fmt: skip
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
    records, run_config = live["records"], live["config"]
    df = records_frame(records, run_config)
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
    running = bool(live.get("running"))
    reached, sentence = verdict(records, run_config, None if result is None else result.stopped_early, running)
    (st.success if reached else st.info)(sentence, icon=":material/flag:")
    st.altair_chart(progress_chart(df, run_config.target_mean), width="stretch")
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
                title=chart_title(
                    "Kept games per score, each generation",
                    "as the notebook counts them; played by the "
                    + ("sampled" if run_config.sample_actions else "greedy")
                    + " player",
                ),
                height=alt.Step(32),  # per row: a fixed pixel height squashes the rows in Streamlit
            )
            .mark_circle(color=PLAYER_COLORS["sampled" if run_config.sample_actions else "greedy"])
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
    st.dataframe(
        df.round(3),
        hide_index=True,
        width="stretch",
        column_config={"next generation": st.column_config.TextColumn(width=460)},
    )
    if (df["next generation"].str.startswith("not built on")).any():
        st.caption(
            "Not built on: that generation's network scored clearly below the best one's, so the next generation "
            "started again from the best network."
        )
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

draw_notice()  # with this run's numbers
next_step(("pages/sweep.py", "Sweep"), ("pages/compare.py", "Compare"))
