"""Play & evaluate: the network plays, always beside random play on the very same games."""

from __future__ import annotations

import numpy as np
import streamlit as st

from cartpole_core.envs import env_info
from cartpole_core.evaluate import EvaluationConfig, EvaluationResult
from cartpole_core.policies import Policy, RandomPolicy
from cartpole_core.storage import RunRecord
from pages.common import (
    LIMITS,
    Step,
    board_results,
    checked,
    choice_chart,
    counted_player_line,
    ensemble_fits,
    env_picker,
    lab,
    metrics_rows,
    network_label,
    next_step,
    of_this_game,
    player_select,
    player_title,
    progress_bar,
    ray_job,
    record_step,
    save_as_run,
    scores_by_game_chart,
    session_model,
    setting,
    share_settings,
    show_error,
    show_recipe,
    shown_step,
    url_number,
    url_select,
)
from pages.learn import what_to_notice

state = lab()
st.title("Play & evaluate")
st.markdown(
    "Now the network plays: each step it sees the observation and makes a move, either always its most "
    "probable one or one drawn from its probabilities (from the very first observation — the notebook chose "
    "the first action at random). Random play meets exactly the same games, so the comparison is fair."
)

env_id = env_picker("play_env").env_id  # type: ignore[union-attr]  (any game: None only with choices)
model = session_model("play")
choices = ["current model", "ensemble", "random"]
available = {"current model": model is not None, "ensemble": ensemble_fits(), "random": True}
what_to_notice("play", env_id)
c = st.columns(4)
players = [name for name in choices if available[name]]
ALONE = "_play_policy_alone"  # in the Lab's settings: the player was chosen while random play was the only one
if state.settings.get(ALONE) and players != ["random"]:
    # a network (or an ensemble) is here since the player was chosen among random play alone: it is
    # the one shown, not the random player remembered from then (a random player the visitor
    # picked beside a network is kept)
    st.session_state.pop("play_policy", None)
    state.settings.pop("play_policy", None)
policy_choice = url_select(
    c[0],
    "Player",
    players,
    players[0],
    key="play_policy",
    help="Who plays: the network trained on the Train page, the ensemble, or random pushes.",
)
state.settings[ALONE] = players == ["random"]
games = url_number(
    c[1],
    "Games",
    *(games_range := setting(EvaluationConfig, "games", cap=LIMITS["eval_games"])),
    key="play_games",
    help=f"Games to play (the notebook: 10; at most {games_range[1]:,} here). More games, steadier figures.",
)
seed = url_number(
    c[2], "Seed", *setting(EvaluationConfig, "seed"), key="play_seed", help="Same seed, same starting positions."
)
play_mode = player_select(
    c[3],
    "play_mode",
    env_id,
    "greedy: always its most probable action; sampled: an action drawn from its probabilities "
    "(the way Generations trains it).",
)
why_slot = st.empty()  # which player this game counts, and why: here when no result of it says so
if state.model is None:
    st.info(
        "No model in this session yet: train one to see it play. Random play works meanwhile.",
        icon=":material/neurology:",
    )
    st.page_link("pages/train.py", label="Train a network →", icon=":material/neurology:")


share_settings(["play_policy", "play_games", "play_seed", "play_mode"])


def current_policy() -> Policy:
    if policy_choice == "current model":
        from cartpole_core.policies import ModelPolicy

        assert model is not None
        return ModelPolicy(model, name="network")
    if policy_choice == "ensemble":
        assert state.ensemble is not None
        return state.ensemble.policy()
    return RandomPolicy(env_info(env_id).n_actions)


if st.button(
    "Play",
    icon=":material/sports_esports:",
    type="primary",
    key="play_run",
    help="The chosen player and random play each play the same games; the best and worst are filmed.",
) and checked(games, seed):
    from cartpole_core.jobs import play_job

    config = EvaluationConfig.for_env(
        env_id, games=int(games), seed=int(seed), sample_actions=play_mode == "sampled" and policy_choice != "random"
    )
    update, bar = progress_bar("Playing")
    try:
        played = ray_job("Playing", play_job, current_policy(), config, LIMITS["gif_frames"], progress=update)
    except Exception as exc:  # shown to the user; the session keeps what it had
        show_error(exc)
    else:
        state.evaluation, state.evaluation_random, state.evaluation_gifs = played.result, played.baseline, played.gifs
        state.film_failed = False
        if policy_choice == "current model":
            from cartpole_core.recipes import play_recipe

            record_step("play", play_recipe(config, played.result, played.baseline), played.result, model=state.model)
    finally:
        bar.empty()


def play_step(result: EvaluationResult, baseline: EvaluationResult) -> Step | None:
    """The code of the evaluation on show: the step that made it here, or for the notebook's
    own evaluation (Home's one click, a sweep's best settings) the code of that evaluation
    alone, the session's network on the same games (not kept as a step of its own: the
    session's notebook has it already)."""
    step = shown_step("play", result)
    notebook = state.notebook
    if step is None and notebook is not None and notebook.evaluation is result and model is not None:
        from cartpole_core.recipes import play_recipe

        step = Step("play", play_recipe(result.config, result, baseline), result, model=model)
    return step


def film_if_missing(result: EvaluationResult, baseline: EvaluationResult) -> None:
    """An evaluation that came without its films (the notebook's, made on Home) gets them
    here, once: its best and worst games and random play on the best, played again by the
    session's network. After a failed filming the page offers "Film again" (a click on any
    other widget does not start it again: it would hold the page each time)."""
    notebook = state.notebook
    if state.evaluation_gifs or model is None or notebook is None or notebook.evaluation is not result:
        return
    if state.film_failed and not st.button(
        "Film again",
        icon=":material/movie:",
        key="play_film_again",
        help="Play the best and the worst game again, to film them (the last try failed).",
    ):
        st.caption("Filming the best and the worst game failed: the scores are shown without them.")
        return
    from cartpole_core.jobs import film_job
    from cartpole_core.policies import ModelPolicy

    update, bar = progress_bar("Filming the best and the worst game")
    try:
        gifs = ray_job("Filming", film_job, ModelPolicy(model, name=result.policy_name), result, baseline,
                       LIMITS["gif_frames"], progress=update)  # fmt: skip
    except Exception as exc:  # shown to the user; the scores are shown anyway
        show_error(exc)
        state.film_failed = True
    else:
        state.evaluation_gifs, state.film_failed = gifs, False
    finally:
        bar.empty()


result, baseline = state.evaluation, state.evaluation_random
if result is None or result.config.env_id != env_id or result.policy_name == "random":
    why_slot.caption(counted_player_line(env_id))
if result is not None and baseline is not None and of_this_game(result.config.env_id, "Your last evaluation was on"):
    info = env_info(result.config.env_id)
    sampled = result.config.sample_actions and result.policy_name != "random"
    name = "network" if result.policy_name == "model" else result.policy_name  # "model": the notebook's network
    yours = [g for g in state.your_games if g.env_id == info.env_id]
    you = None  # your scores on the very same starts, game for game (see Play it yourself)
    if yours and result.config.seed == 0 and result.config.games <= len(yours):
        you = np.asarray([g.score for g in yours[: result.config.games]], dtype=float)
    title = f"{'you vs ' if you is not None else ''}{player_title(result.policy_name, sampled)}"
    versus = "" if result.policy_name == "random" else ", vs random play"
    st.subheader(f"{title[0].upper()}{title[1:]}{versus} on {result.config.games:,} games of {info.env_id}")
    if result.policy_name != "random":
        st.markdown(counted_player_line(info.env_id, sampled))
    film_if_missing(result, baseline)
    if you is not None:
        c = st.columns(4)
        for col, name, value in zip(
            c,
            ("you mean", "you median", "you min", "you max"),
            (you.mean(), np.median(you), you.min(), you.max()),
            strict=True,
        ):
            col.metric(name, f"{value:.1f}")
    elif yours:
        st.caption(
            f"You played {len(yours)} {info.env_id} game(s): play with seed 0 and at most {len(yours)} games "
            "to meet them on the same starts, you vs the network vs random."
        )
    metrics_rows([(name, result), ("random", baseline)])
    gif_cols = st.columns(3)
    for col, key in zip(gif_cols, ("best", "worst", "random"), strict=True):
        if key in state.evaluation_gifs:
            data, caption = state.evaluation_gifs[key]
            col.image(data, caption=caption)
    c1, c2 = st.columns([3, 2])
    with c1:
        st.altair_chart(
            scores_by_game_chart(
                {
                    **({"you": you} if you is not None else {}),
                    network_label(name, sampled): result.scores,
                    "random": baseline.scores,
                },
                "Every game's score, same games",
            ),
            width="stretch",
        )
    with c2:
        st.altair_chart(
            choice_chart(
                {network_label(name, sampled): result.choice_ratios, "random": baseline.choice_ratios},
                info.action_names,
            ),
            width="stretch",
        )
    st.caption(
        f"{result.steps_played:,} steps in {result.seconds:.2f} s "
        f"({1000 * result.seconds / max(result.steps_played, 1):.3f} ms a step, all games at once)."
    )
    code = play_step(result, baseline)
    if code is not None:
        show_recipe(code.recipe, "play", model=code.model)
    else:
        st.caption("Show the code: for the network only (random play's is on Random play; the ensemble has no file).")
    if st.button(
        "Save as a run",
        icon=":material/save:",
        key="play_save_run",
        help="Keep these scores (and the model) on the server to compare later (see Runs).",
    ):
        by_network = result.policy_name in ("network", "model")  # "model": the notebook's own evaluation
        save_as_run(
            RunRecord(
                kind="evaluate",
                name=f"{result.policy_name} on {info.env_id}",
                settings=result.config.__dict__,
                results={
                    "policy": result.policy_name,
                    "scores": result.scores,
                    "mean": result.mean,
                    "random_scores": baseline.scores,
                    "random_mean": baseline.mean,
                    "choice_ratios": result.choice_ratios,
                    **board_results(state.model if by_network else None, result.config),
                },
            ),
            model=state.model if by_network else None,
            code=code,
        )
next_step(("pages/ensemble.py", "Ensemble"), ("pages/generations.py", "Generations"))
