"""Ensemble: several weak networks vote (the notebook's "several weak models give a
stronger, more correct signal")."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from cartpole_core.ensemble import EnsembleConfig
from cartpole_core.evaluate import EvaluationConfig
from cartpole_core.progress import Progress
from pages.common import (
    LIMITS,
    PLAYER_COLORS,
    chart_title,
    checked,
    counted_player_line,
    end_page,
    env_picker,
    lab,
    next_step,
    of_this_game,
    player_moves,
    player_select,
    progress_bar,
    ray_job,
    record_step,
    session_dataset,
    setting,
    share_settings,
    show_code,
    show_error,
    url_number,
    url_select,
)
from pages.learn import what_to_notice

state = lab()
st.title("Ensemble")
st.markdown(
    "Train several **weak** networks — each for one epoch on its own resample of the kept games — and "
    "let them vote. Each alone plays unevenly; together they usually play far better. "
    "Below, every member and the ensemble meet exactly the same games."
)

env_picker("ens_env")
dataset = session_dataset("ens")
if dataset is None and state.dataset is None:
    st.warning("There is no dataset in this session yet: make one first.", icon=":material/dataset:")
    st.page_link("pages/generate.py", label="Generate data →", icon=":material/dataset:")
if dataset is None:
    end_page()
what_to_notice("ensemble", dataset.env_id)

with st.form("ensemble_form"):
    c = st.columns(5)
    members = url_number(
        c[0],
        "Members",
        *(members_range := setting(EnsembleConfig, "members", cap=LIMITS["members"])),
        key="ens_members",
        help=f"Networks that vote (at most {members_range[1]} here).",
    )
    vote = url_select(
        c[1],
        "Vote",
        ["soft", "hard"],
        "soft",
        key="ens_vote",
        help="soft: average the members' probabilities; hard: each member's favourite action counts as one vote.",
    )
    epochs = url_number(
        c[2],
        "Epochs per member",
        *setting(EnsembleConfig, "epochs", cap=LIMITS["epochs"]),
        key="ens_epochs",
        help="Weak members: 1 epoch each by default.",
    )
    games = url_number(
        c[3],
        "Evaluation games",
        *setting(EvaluationConfig, "games", cap=LIMITS["eval_games"])[:2],
        100,  # the page's own default: members differ little, 10 games would not tell them apart
        key="ens_games",
        help="Games every member and the ensemble play.",
    )
    seed = url_number(
        c[4],
        "Seed",
        *setting(EnsembleConfig, "seed"),
        key="ens_seed",
        help="Member 1 uses this seed, member 2 the next one, and so on.",
    )
    mode = player_select(
        st.columns(5)[0],
        "ens_mode",
        dataset.env_id,
        "greedy: each player makes its most probable move (the ensemble: its vote's); sampled: a move drawn "
        "from its probabilities (the ensemble: from its vote's shares).",
        label="How they play",
    )
    submitted = st.form_submit_button("Train the members and compare", icon=":material/how_to_vote:", type="primary")

share_settings(["ens_members", "ens_vote", "ens_epochs", "ens_games", "ens_seed", "ens_mode"])
if submitted and checked(members, epochs, games, seed):
    from cartpole_core.ensemble import evaluate_ensemble
    from cartpole_core.jobs import ensemble_job
    from cartpole_core.model import ModelConfig
    from cartpole_core.training import TrainingConfig

    cfg = EnsembleConfig(members=int(members), vote=str(vote), epochs=int(epochs), seed=int(seed))
    status = st.empty()
    update, bar = progress_bar("Training members")

    def member_update(p: Progress) -> None:
        update(p)
        status.caption(p.message)

    try:
        trained = ray_job(
            "Training the ensemble", ensemble_job, dataset, ModelConfig(), TrainingConfig(), cfg, progress=member_update
        )
        eval_update, eval_bar = progress_bar("Playing")
        config = EvaluationConfig.for_env(
            dataset.env_id, games=int(games), seed=int(seed), sample_actions=mode == "sampled"
        )
        evaluation = ray_job("Playing", evaluate_ensemble, trained.policy(), config, progress=eval_update)
        eval_bar.empty()
    except Exception as exc:  # shown to the user; the session keeps what it had
        show_error(exc)
    else:
        from cartpole_core.recipes import ensemble_recipe

        state.ensemble, state.ensemble_eval = trained, evaluation
        recipe = ensemble_recipe(ModelConfig(), TrainingConfig(), cfg, config, evaluation)
        record_step("ensemble", recipe, evaluation, dataset=dataset)
    finally:
        bar.empty()
        status.empty()

ens, ev = state.ensemble, state.ensemble_eval
if ens is not None and ev is not None and of_this_game(ev.ensemble.config.env_id, "Your ensemble plays"):
    sampled = ev.ensemble.config.sample_actions
    moves = player_moves(sampled, many=True)
    st.subheader(
        f"The ensemble and its {len(ev.members)} members, {moves}, on {ev.ensemble.config.games:,} games of "
        f"{ev.ensemble.config.env_id}"
    )
    st.markdown(counted_player_line(ev.ensemble.config.env_id, sampled))
    best_member = max(m.mean for m in ev.members)
    m = st.columns(4)
    m[0].metric(f"Ensemble mean ({ens.config.vote} vote)", f"{ev.ensemble.mean:.1f}")
    m[1].metric("Best member", f"{best_member:.1f}")
    m[2].metric("Members' average", f"{sum(x.mean for x in ev.members) / len(ev.members):.1f}")
    m[3].metric(
        "Members disagree on",
        f"{ev.disagreement:.1%}",
        help="Share of the ensemble's states where not all members agree.",
    )
    rows = [{"player": f"member {i + 1}", "mean score": r.mean, "kind": "member"} for i, r in enumerate(ev.members)]
    rows.append({"player": "ensemble", "mean score": ev.ensemble.mean, "kind": "ensemble"})
    chart = (
        alt.Chart(pd.DataFrame(rows), title=chart_title(f"Mean score over the same {ev.ensemble.config.games} games"))
        .mark_bar()
        .encode(
            x=alt.X("player:N", sort=None, title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("mean score:Q", title="mean score"),
            color=alt.Color(
                "kind:N",
                scale=alt.Scale(
                    domain=["member", "ensemble"],
                    range=[PLAYER_COLORS["sampled" if sampled else "greedy"], PLAYER_COLORS["ensemble"]],
                ),
                legend=None,
            ),
            tooltip=["player:N", alt.Tooltip("mean score:Q", format=".1f")],
        )
    )
    st.altair_chart(chart, width="stretch")
    accs = [h.final_accuracy or 0.0 for h in ens.histories]
    st.caption(
        "Members' training accuracy: "
        + ", ".join(f"{a:.3f}" for a in accs)
        + f" · trained in {ens.seconds:.1f} s"
        + (" · stopped early" if ens.stopped_early else "")
    )
    show_code("ensemble", ev)
    st.page_link(
        "pages/play.py", label="Watch the ensemble play (choose 'ensemble') →", icon=":material/sports_esports:"
    )
next_step(("pages/generations.py", "Generations"))
