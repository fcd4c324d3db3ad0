"""Sweep: which settings work, measured over several seeds, each trial run by the engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from cartpole_core.cluster import engine_info
from cartpole_core.envs import score_range
from cartpole_core.errors import UserError
from cartpole_core.generate import GenerationConfig
from cartpole_core.progress import ProgressCallback
from cartpole_core.storage import RunRecord
from pages.common import (
    ACCENT,
    LIMITS,
    MODEL_COLOR,
    RANDOM_COLOR,
    chart_title,
    checked,
    env_picker,
    finish_stopped,
    from_url,
    in_words,
    lab,
    next_step,
    of_this_game,
    progress_bar,
    ray_job,
    record_step,
    refuse_while_running,
    run_with_stop,
    save_as_run,
    setting,
    settings_follow_env,
    share_settings,
    show_code,
    show_error,
    shown_step,
    still_running,
    url_number,
    url_score,
    use_notebook_result,
)
from pages.server import engine_line

state = lab()
st.title("Sweep")
st.markdown(
    "Which score requirement, network or number of epochs works best? One seed can flatter a setting, "
    "so a sweep runs **every combination of the values you give on several seeds** — each run a "
    "*trial* of the whole pipeline — and compares the means over seeds with their 95 % confidence "
    "intervals."
)

from cartpole_core.improve import ImproveConfig  # noqa: E402
from cartpole_core.pipeline import NotebookConfig  # noqa: E402
from cartpole_core.sweep import (  # noqa: E402
    Base,
    SweepConfig,
    SweepResult,
    Trial,
    parse_seeds,
    parse_vary,
    setting_words,
    settings_text,
    stopped_result,
    sweep,
    sweepable,
    trial_config,
    value_text,
)

#: Short enough to share one line on a phone (the help says what each runs).
MODES = {"notebook": "the notebook pipeline", "generations": "generations"}
#: What each trial varies first, and its values, until someone picks otherwise.
FIRST_VARY = {"notebook": ("score_requirement", "50,60"), "generations": ("keep_top", "0.1,0.3")}
NONE = "none"
#: Varied settings that a server limit caps, and the limit's name.
LIMITED = {
    "games": "games",
    "evaluation_games": "eval_games",
    "eval_games": "eval_games",
    "confirm_games": "eval_games",
    "epochs": "epochs",
    "max_generations": "generations",
    "games_per_generation": "games_per_generation",
}
HOW_TO_WRITE = {int: "whole number", float: "number", tuple: "layers, e.g. 64x64", bool: "true or false", str: "text"}


def trial_row(trial: Trial, generations: bool, machines: dict[str, str]) -> dict[str, Any]:
    """One trial as a row of the table people read ("—" where there is nothing to show;
    machines numbered in the order they first ran a trial, not by Ray's node ids)."""
    s = trial.scores
    row: dict[str, Any] = {
        "settings": settings_text(trial.settings, words=True),
        "seed": trial.seed,
        "status": trial.status,
        "kept games": s.accepted if s else None,
        "accuracy": round(s.accuracy, 3) if s and s.accuracy is not None else None,
        "mean": round(s.mean, 1) if s else None,
        "median": round(s.median, 1) if s else None,
        "seconds": round(s.seconds, 1) if s else None,
        "machine": machines.setdefault(trial.node, f"machine {len(machines) + 1}") if trial.node else None,
        "error": in_words(trial.error) if trial.error else None,
    }
    if generations:
        row["generations"] = s.generations if s else None
    return {k: "—" if v is None else v for k, v in row.items()}


def trials_frame(trials: list[Trial], generations: bool) -> pd.DataFrame:
    machines: dict[str, str] = {}
    df = pd.DataFrame([trial_row(t, generations, machines) for t in trials])
    for column in df.columns:  # a column with a "—" in it shows as text (one type per column)
        if (df[column] == "—").any():
            df[column] = df[column].astype(str)
    return df


def show_trials(where: Any, trials: list[Trial], generations: bool) -> None:
    where.dataframe(trials_frame(trials, generations), hide_index=True, width="stretch")


def keep_stopped_sweep(result: SweepResult) -> str:
    """A sweep cut short by Stop: keep the trials that finished."""
    state.sweep = result
    return f"Sweep stopped. Kept the {len(result.trials)} trial(s) that had finished; the others were cancelled."


def vary_row(base: Base, mode: str, which: int) -> tuple[str, str]:
    """A select box of settings and a text input of its values; returns (setting, values text)."""
    names = list(sweepable(base))
    options = names if which == 1 else [NONE, *names]
    default_name, default_values = FIRST_VARY[mode] if which == 1 else (NONE, "")
    name_col, values_col = st.columns([1, 2])
    key = f"sweep_{mode}_vary{which}"
    name = name_col.selectbox(
        "Vary" if which == 1 else "and also vary",
        options,
        index=options.index(from_url(key, default_name, choices=options)),
        format_func=setting_words,
        key=key,
        help="A setting of every trial."
        + ("" if which == 1 else " 'none' varies only the first; two settings give a grid of every pair of values."),
    )
    values = values_col.text_input(
        "Values",
        from_url(f"{key}_values", default_values),
        key=f"{key}_values",
        placeholder="e.g. 40,50,60",
        help="Comma-separated values, e.g. 40,50,60; hidden layers are written like 64x64 or 32x32x32.",
    )
    return str(name), str(values)


def base_settings(mode: str, env_id: str, eval_games: int, refused: list[str]) -> Base:
    """The settings every trial starts from, from the 'Every trial' expander (a refused value's
    label goes into ``refused``, and its default stands in until it is corrected)."""
    with st.expander("Every trial starts from", icon=":material/tune:"):
        c = st.columns(3)
        if mode == "notebook":
            fitted = GenerationConfig.for_env(env_id)  # the env's own games, steps and threshold (or share)
            games = url_number(
                c[0],
                "Random games",
                *(games_range := setting(fitted, "games", cap=LIMITS["games"])),
                step=1000,
                key="sweep_games",
                help=f"Random games each trial plays to find good ones (at most {games_range[1]:,} here).",
            )
            if fitted.keep_top is None:
                requirement = url_score(
                    c[1],
                    "Score requirement",
                    fitted.score_requirement,
                    key="sweep_requirement",
                    help="A game is kept when its score reaches at least this (unless the sweep varies it).",
                )
                fitted = replace(fitted, score_requirement=float(requirement))
            else:
                share = setting_words("keep_top")
                c[1].caption(f"Kept: {fitted.keeping()} (this game's default; vary {share} to change it).")
            c[2].caption("The network and its training: the notebook's, unless the sweep varies them.")
            if games is None:
                refused.append("Random games")
            generation = replace(fitted, games=int(games or fitted.games))
            return NotebookConfig(generation=generation, evaluation_games=eval_games)
        generations = url_number(
            c[0],
            "Most generations",
            *(generations_range := setting(ImproveConfig, "max_generations", cap=LIMITS["generations"]))[:2],
            3,  # the page's own default: many trials share the server, each runs few generations
            key="sweep_generations",
            help=f"Generations each trial runs at most (at most {generations_range[1]} here).",
        )
        games_per_generation = url_number(
            c[1],
            "Games per generation",
            *setting(ImproveConfig, "games_per_generation", cap=LIMITS["games_per_generation"]),
            step=50,
            key="sweep_games_per_generation",
            help="Games the network plays each generation to find its best ones.",
        )
        c[2].caption("Everything else: the Generations page's defaults, unless the sweep varies it.")
        refused += [label for label, v in (("Most generations", generations), ("Games per generation",
                    games_per_generation)) if v is None]  # fmt: skip
        return ImproveConfig.for_env(
            env_id,
            max_generations=int(generations or 3),
            games_per_generation=int(games_per_generation or 200),
            eval_games=eval_games,
            confirm_games=0,
        )


def check_limits(vary: list[tuple[str, tuple[Any, ...]]]) -> None:
    """A varied value may not exceed this server's limit on the same setting."""
    for name, values in vary:
        limit = LIMITS.get(LIMITED.get(name, ""))
        too_big = [v for v in values if limit is not None and isinstance(v, (int, float)) and v > limit]
        if too_big:
            raise UserError(
                f"{setting_words(name).capitalize()} {value_text(too_big[0])} is over this server's limit of "
                f"{limit:,}: use less."
            )


def sweep_form() -> SweepConfig | None:
    """The form; returns the sweep to run when it is submitted and valid."""
    mode_options = list(MODES)
    mode = st.radio(
        "Each trial runs",
        mode_options,
        index=mode_options.index(from_url("sweep_mode", "notebook", choices=mode_options)),
        format_func=MODES.get,
        horizontal=True,
        key="sweep_mode",
        help="The notebook pipeline: random games → train → play. Generations: the network retrains on its "
        "own best games (the Generations page), starting from the notebook's network.",
    )
    info = env_picker("sweep_env")
    env_id = state.env_id
    fitted = GenerationConfig.for_env(env_id)
    settings_follow_env(
        "sweep",
        env_id,
        {
            "sweep_games": setting(fitted, "games", cap=LIMITS["games"])[2],
            "sweep_requirement": float(fitted.score_requirement),
        },
    )
    with st.form("sweep_form"):
        c = st.columns(2)
        seeds_text = c[0].text_input(
            "Seeds",
            from_url("sweep_seeds", "0-1"),
            key="sweep_seeds",
            help="Every combination runs once per seed, e.g. 0-4 or 0,3,7. More seeds: narrower intervals "
            f"(at most {LIMITS['sweep_trials']} trials, values × seeds, here).",
        )
        eval_games = url_number(
            c[1],
            "Evaluation games",
            *setting(NotebookConfig, "evaluation_games", cap=LIMITS["eval_games"])[:2],
            20,  # the page's own default: many trials share the server, each plays few games
            key="sweep_eval",
            help="Games each trained network plays to score its trial (with generations: each generation).",
        )
        refused: list[str] = [] if eval_games is not None else ["Evaluation games"]
        base = base_settings(mode, env_id, int(eval_games or 20), refused)
        rows = [vary_row(base, mode, 1), vary_row(base, mode, 2)]
        kinds = sweepable(base)
        submitted = st.form_submit_button("Run the sweep", icon=":material/science:", type="primary")
        st.caption(  # after the button: on a phone too, the button is on the first screen
            f"At most {LIMITS['sweep_trials']} trials (values × seeds) here. Settings: "
            + " · ".join(
                f"{setting_words(name)} ({HOW_TO_WRITE.get(kind, kind.__name__)})" for name, kind in kinds.items()
            )
        )
    st.caption(engine_line(engine_info(), head="Trials run side by side: ") + ".")  # after the button, as above

    keys = ["sweep_mode", "sweep_env", "sweep_seeds", "sweep_eval"]
    keys += (
        ["sweep_games", "sweep_requirement"]
        if mode == "notebook"
        else ["sweep_generations", "sweep_games_per_generation"]
    )
    keys += [f"sweep_{mode}_vary{i}{part}" for i in (1, 2) for part in ("", "_values")]
    share_settings(keys)
    if not submitted or info is None or not checked(*(None for _ in refused)):
        return None
    try:
        vary = []
        for name, values in rows:
            if name == NONE:
                continue
            if not values.strip():
                raise UserError(
                    f"Give the values of {setting_words(name)} to try, separated by commas (e.g. 40,50,60)."
                )
            vary.append(parse_vary(base, f"{name}={values}"))
        check_limits(vary)
        return SweepConfig(base, tuple(vary), parse_seeds(seeds_text)).validate(LIMITS["sweep_trials"])
    except UserError as exc:
        show_error(exc)
        return None


def run_sweep(config: SweepConfig) -> None:
    """Run ``config`` with a Stop button, a progress bar and the trials as they finish."""
    live: dict[str, Any] = {"config": config, "trials": []}
    state.sweep_live, state.sweep = live, None
    table = st.empty()
    generations = config.mode == "improve"
    started = time.perf_counter()

    def run(progress: ProgressCallback, keep: Callable[[Any], None]) -> SweepResult:
        def on_trial(trial: Trial) -> None:
            live["trials"].append(trial)
            keep(stopped_result(config, live["trials"], time.perf_counter() - started))
            show_trials(table, live["trials"], generations)

        # Each trial is a Ray task: they wait in Ray's queue, not in a slot of this server.
        return sweep(config, progress, on_trial, max_trials=LIMITS["sweep_trials"])

    result = run_with_stop(
        live, "Sweeping", run, key="sweep", stop_help="Cancel the trials not finished; keep those that are."
    )
    table.empty()
    if result is not None:
        from cartpole_core.recipes import sweep_recipe

        state.sweep = result
        record_step("sweep", sweep_recipe(config, result), result)


# ---------------------------------------------------------------- results


def summary_frame(result: SweepResult) -> pd.DataFrame:
    """Every combination of the grid, with its mean and interval (None where no trial finished)."""
    found = {settings_text(s.settings): s for s in result.summary}
    rows = []
    for settings in result.config.grid():
        s = found.get(settings_text(settings))
        row: dict[str, Any] = {setting_words(name): value_text(v) for name, v in settings.items()}
        row.update(
            mean=None if s is None else s.mean,
            low=None if s is None else s.ci_low,
            high=None if s is None else s.ci_high,
            seeds=0 if s is None else s.n,
            clipped=bool(s and s.clipped),
            label="no result" if s is None else f"{s.mean:.0f}",
        )
        rows.append(row)
    return pd.DataFrame(rows)


def interval_tooltip(*settings: str) -> list[Any]:
    """The varied settings of a combination, then its mean, 95 % interval and seeds."""
    return [
        *(f"{name}:O" for name in settings),  # the words, as summary_frame's columns
        alt.Tooltip("mean:Q", format=".1f"),
        alt.Tooltip("low:Q", format=".1f", title="95 % CI low"),
        alt.Tooltip("high:Q", format=".1f", title="95 % CI high"),
        alt.Tooltip("seeds:Q", title="seeds finished"),
        alt.Tooltip("clipped:N", title="cut at the score range"),
    ]


def one_setting_chart(result: SweepResult, df: pd.DataFrame, field: str) -> alt.LayerChart:
    """Mean over seeds per value with its 95 % interval, and each seed's mean as a dot."""
    name = setting_words(field)  # summary_frame's column
    order = list(df[name])
    x = alt.X(f"{name}:O", sort=order, title=name, axis=alt.Axis(labelAngle=0))
    base = alt.Chart(df.dropna(subset=["mean"]))
    tooltip = interval_tooltip(name)
    band = base.mark_errorbar(color=ACCENT, thickness=2, ticks=alt.TickConfig(width=14)).encode(
        x=x, y=alt.Y("low:Q", title="mean score"), y2="high:Q"
    )
    line = base.mark_line(color=MODEL_COLOR).encode(x=x, y="mean:Q")
    points = base.mark_point(color=MODEL_COLOR, filled=True, size=90).encode(x=x, y="mean:Q", tooltip=tooltip)
    seeds = pd.DataFrame(
        [
            {name: value_text(t.settings[field]), "seed": t.seed, "mean": t.mean}
            for t in result.trials
            if t.mean is not None
        ]
    )
    dots = (
        alt.Chart(seeds)
        .mark_circle(color=RANDOM_COLOR, size=40, opacity=0.8)
        .encode(x=x, y="mean:Q", tooltip=[f"{name}:O", "seed:Q", alt.Tooltip("mean:Q", format=".1f")])
    )
    title = chart_title("Mean score over seeds", "with 95 % confidence intervals")
    return alt.layer(dots, band, line, points).properties(height=320, title=title)


def two_settings_chart(df: pd.DataFrame, x_field: str, y_field: str) -> alt.LayerChart:
    """A heatmap of the mean over seeds, its value written in each cell."""
    x_name, y_name = setting_words(x_field), setting_words(y_field)  # summary_frame's columns
    x = alt.X(f"{x_name}:O", sort=list(dict.fromkeys(df[x_name])), title=x_name, axis=alt.Axis(labelAngle=0))
    y = alt.Y(f"{y_name}:O", sort=list(dict.fromkeys(df[y_name])), title=y_name)
    middle = float(df["mean"].dropna().mean()) if df["mean"].notna().any() else 0.0
    base = alt.Chart(df).encode(
        x=x,
        y=y,
        tooltip=interval_tooltip(x_name, y_name),
    )
    cells = base.mark_rect(stroke="white", strokeWidth=2).encode(
        color=alt.Color("mean:Q", title="mean score", scale=alt.Scale(scheme="tealblues"))
    )
    text = base.mark_text(fontSize=15, fontWeight="bold").encode(
        text="label:N",
        color=alt.condition(alt.datum.mean > middle, alt.value("white"), alt.value("#1f2a37")),
    )
    title = chart_title("Mean score over seeds", "hover over or tap a cell for its 95 % interval")
    return alt.layer(cells, text).properties(height=alt.Step(56), title=title)


def clipped_note(result: SweepResult) -> str:
    clipped = [s for s in result.summary if s.clipped]
    if not clipped:
        return ""
    low, high = score_range(result.config.env_id, result.config.goal_steps)
    if len(clipped) == len(result.summary) > 1:
        which = "the 95 % interval of every combination"
    else:
        which = "the 95 % interval of " + "; ".join(settings_text(s.settings, words=True) for s in clipped)
    return f"Clipped: {which} ran past the scores a game can reach ({low:g} to {high:g}) and was cut there."


def show_best(result: SweepResult) -> None:
    best = result.best
    if best is None:
        st.warning("No trial finished, so there is nothing to compare: see the errors below.", icon=":material/error:")
        return
    interval = f"95 % CI {best.ci_low:.1f} – {best.ci_high:.1f}" if best.n > 1 else "one seed: no interval"
    st.success(
        f"Best settings: **{settings_text(best.settings, words=True)}** — mean score {best.mean:.1f} over "
        f"{best.n} seed(s) ({interval}).",
        icon=":material/emoji_events:",
    )
    rivals = [s for s in result.summary if s is not best and s.n > 1 and best.n > 1 and s.ci_high >= best.ci_low]
    if rivals:
        others = (
            "every other combination's"
            if len(rivals) == len(result.summary) - 1 > 1
            else "that of " + "; ".join(settings_text(s.settings, words=True) for s in rivals)
        )
        st.caption(f"Its interval overlaps with {others}: the difference may be luck; more seeds would tell.")


def train_best(result: SweepResult) -> None:
    """The notebook pipeline with the best settings and the sweep's first seed, as this
    session's dataset and model."""
    assert result.best is not None
    seed = result.config.seeds[0]
    config = trial_config(result.config.base, result.best.settings, seed)
    assert isinstance(config, NotebookConfig)
    from cartpole_core.jobs import notebook_job

    what = f"{settings_text(result.best.settings, words=True)}, seed {seed}"
    update, bar = progress_bar("Training with the best settings")
    try:
        notebook = ray_job("Training the best settings", notebook_job, config, progress=update)
    except Exception as exc:  # shown to the user; the session keeps what it had
        show_error(exc)
        return
    finally:
        bar.empty()
    use_notebook_result(notebook, f"sweep best: {what}", f"sweep best: {what}")
    if state.sweep_live is not None:
        state.sweep_live["trained"] = (
            f"Trained with {what}: mean score {notebook.evaluation.mean:.1f} on {notebook.evaluation.config.games} "
            f"games (random play: {notebook.random_evaluation.mean:.1f}). It is now this session's dataset and model "
            "(Undo in the sidebar brings back the ones it replaced)."
        )


def save_sweep(result: SweepResult) -> None:
    best = result.best
    names = ", ".join(setting_words(name) for name, _ in result.config.vary)
    save_as_run(
        RunRecord(
            kind="sweep",
            name=f"{result.config.env_id} sweep over {names}, seeds {', '.join(map(str, result.config.seeds))}",
            settings={"mode": result.config.mode, **asdict(result.config)},
            results={
                "trials": [
                    {
                        "settings": t.settings,
                        "seed": t.seed,
                        "status": t.status,
                        "scores": None if t.scores is None else asdict(t.scores),
                        "node": t.node,
                        "error": t.error,
                    }
                    for t in result.trials
                ],
                "summary": [asdict(s) for s in result.summary],
                "best": None if best is None else asdict(best),
                "mean": None if best is None else best.mean,
                "workers": result.workers,
                "nodes": result.nodes,
                "seconds": result.seconds,
                "stopped": result.stopped,
            },
        ),
        code=shown_step("sweep", result),
    )


def result_actions(result: SweepResult) -> None:
    """Train with the best settings (notebook sweeps) and save the sweep as a run."""
    actions = st.container(horizontal=True)
    best = result.best
    if (
        result.config.mode == "notebook"
        and best is not None
        and actions.button(
            "Train with the best settings",
            icon=":material/neurology:",
            type="primary",
            key="sweep_train_best",
            help=f"Run the notebook pipeline with {settings_text(best.settings, words=True)} and seed "
            f"{result.config.seeds[0]}: its dataset and network become this session's.",
        )
    ):
        train_best(result)
    if actions.button(
        "Save as a run",
        icon=":material/save:",
        key="sweep_save_run",
        help="Keep the settings, every trial and the summary on the server (see Runs).",
    ):
        save_sweep(result)
    if result.config.mode == "improve" and result.best is not None:
        st.caption("To go on with these settings, set them on the Generations page.")
    live = state.sweep_live
    if live is not None and live.get("trained"):
        st.success(live["trained"], icon=":material/check_circle:")
        st.page_link("pages/play.py", label="See it play →", icon=":material/sports_esports:")


def summary_table(df: pd.DataFrame, names: list[str]) -> None:
    """Each combination: its mean over seeds, the seeds that finished and the interval."""
    table = df[[*map(setting_words, names), "mean", "seeds"]].copy()
    table["mean"] = table["mean"].round(1)
    table["95 % CI"] = [
        "" if pd.isna(row.mean) else f"{row.low:.1f} – {row.high:.1f}" + (" (clipped)" if row.clipped else "")
        for row in df.itertuples()
    ]
    st.dataframe(table, hide_index=True, width="stretch")


def show_result(result: SweepResult) -> None:
    trials = result.trials
    done = sum(t.status == "done" for t in trials)
    failed = sum(t.status == "failed" for t in trials)
    st.subheader("Result" + (" (stopped)" if result.stopped else ""), anchor="sweep-result")
    m = st.columns(4)
    m[0].metric("Trials done", f"{done} of {len(trials)}")
    m[1].metric("Failed", f"{failed}", help="A failed trial's error is in the table below; the others went on.")
    m[2].metric("Best mean", "–" if result.best is None else f"{result.best.mean:.1f}")
    m[3].metric(
        "Seconds",
        f"{result.seconds:.1f}",
        f"{result.workers} processor{'s' * (result.workers != 1)}, {result.nodes} machine{'s' * (result.nodes != 1)}",
        delta_color="off",
        delta_arrow="off",
    )
    show_best(result)
    result_actions(result)
    if result.summary:
        df = summary_frame(result)
        names = [name for name, _ in result.config.vary]
        chart = one_setting_chart(result, df, names[0]) if len(names) == 1 else two_settings_chart(df, *names[:2])
        st.altair_chart(chart, width="stretch")
        note = clipped_note(result)
        if note:
            st.caption(note)
        summary_table(df, names)
    st.markdown("**Every trial**")
    show_trials(st, trials, result.config.mode == "improve")
    show_code("sweep", result)


finish_stopped(state.sweep_live, keep_stopped_sweep, "Sweep stopped before any trial finished: nothing to show.")
busy = still_running(state.sweep_live)
config = sweep_form()
if config is not None and not refuse_while_running(busy):
    run_sweep(config)
if state.sweep is not None and of_this_game(state.sweep.config.env_id, "Your last sweep played"):
    show_result(state.sweep)
next_step(("pages/policy_map.py", "Policy map"))
