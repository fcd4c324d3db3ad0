"""Issue 30, item 2: the player that counts, everywhere.

Play & evaluate, Ensemble, Compare and the Policy map start on the game's counted player
(CartPole: greedy, LunarLander: sampled), follow the game when it changes, keep a visitor's
own choice, and name the player in their result's title with a sentence on why. Every chart
colours a player by what it is. Generations says how the run ended in one sentence above its
charts, names every generation that was not built on, and says what its numbers show. The
notebook's evaluation opens on Play & evaluate with its GIFs and its code.

Streamlit's AppTest from the entrypoint, small budgets (a few games, tiny networks).
"""

from __future__ import annotations

import json
import re

import pytest
from streamlit.testing.v1 import AppTest

from pages.common import PLAYER_COLORS, policy_colors
from tests.test_app import _generate, _runs_dir, _train_tiny, gif_captions, metrics, press, start, visit  # noqa: F401

#: Each page whose networks play, and its "how they play" box.
MODES = {
    "pages/play.py": "play_mode",
    "pages/ensemble.py": "ens_mode",
    "pages/compare.py": "cmp_mode",
    "pages/policy_map.py": "map_mode",
}


def _lunarlander(at: AppTest) -> AppTest:
    """LunarLander-v3 as the session's game, with a tiny network trained on 150 of its random games."""
    visit(at, "pages/generate.py")
    at.selectbox(key="gen_env").set_value("LunarLander-v3").run()
    at.number_input(key="gen_games").set_value(150)
    press(at, "Play and keep the good games")
    return _train_tiny(at)


def _chart(at: AppTest, title: str) -> dict:
    """The Vega-Lite spec of the chart whose title starts with ``title``."""
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        text = spec.get("title", "")
        text = text.get("text", "") if isinstance(text, dict) else text
        if str(text).startswith(title) or any(str(layer.get("title", "")).startswith(title) for layer in
                                                spec.get("layer", [])):  # fmt: skip
            return spec
    raise AssertionError(f"no chart titled {title!r}")


def _colours(encoding_owner: dict) -> dict[str, str]:
    """Player -> colour of a chart's (or layer's) colour scale."""
    scale = encoding_owner["encoding"]["color"]["scale"]
    return dict(zip(scale["domain"], scale["range"], strict=True))


def _texts(at: AppTest) -> str:
    return " ".join(x.value for kind in ("markdown", "caption", "subheader", "info", "success") for x in at.get(kind))


def test_a_players_colour_is_its_kind_not_its_place() -> None:
    first = policy_colors(["random", "network, sampled", "you"])
    second = policy_colors(["you", "ensemble, sampled", "network, greedy", "random"])
    assert first.range == [PLAYER_COLORS["random"], PLAYER_COLORS["sampled"], PLAYER_COLORS["you"]]
    assert second.range == [PLAYER_COLORS[k] for k in ("you", "ensemble", "greedy", "random")]
    assert policy_colors(["current model", "generation 3"], sampled=True).range == [PLAYER_COLORS["sampled"]] * 2
    assert len(set(PLAYER_COLORS.values())) == len(PLAYER_COLORS), "every kind its own colour"


def test_cartpole_pages_start_on_the_greedy_player_and_lunarlander_pages_on_the_sampled_one() -> None:
    at = _generate(start(), games=1000)
    _train_tiny(at)
    for page, key in MODES.items():
        visit(at, page)
        assert at.selectbox(key=key).value == "greedy", page
    visit(at, "pages/play.py")
    at.number_input(key="play_games").set_value(2)
    press(at, "Play")
    assert at.subheader[0].value.startswith("The network, always its most probable move, vs random play on 2 games")
    assert any(
        "CartPole-v1 counts the network that always makes its most probable move" in m.value for m in at.markdown
    )

    _lunarlander(at)  # the game changes: every page's default follows it
    for page, key in MODES.items():
        visit(at, page)
        assert at.selectbox(key=key).value == "sampled", page

    # A visitor's own choice wins within one game; a game change brings that game's counted
    # player (settings_follow_env). Each check is of a value the other rule would not give.
    # (Across pages: the browser test, since AppTest runs a page alone, without app.py's
    # remembering of the settings.)
    visit(at, "pages/play.py")
    at.selectbox(key="play_env").set_value("CartPole-v1").run()
    assert at.selectbox(key="play_mode").value == "greedy", "CartPole's counted player"
    at.selectbox(key="play_mode").set_value("sampled").run()
    at.number_input(key="play_games").set_value(3).run()
    assert not at.exception and at.selectbox(key="play_mode").value == "sampled", "kept: not CartPole's default"
    at.selectbox(key="play_env").set_value("Acrobot-v1").run()  # counts the greedy player too
    assert not at.exception and at.selectbox(key="play_mode").value == "greedy", "Acrobot's, not the kept sampled"
    at.selectbox(key="play_mode").set_value("sampled").run()
    at.selectbox(key="play_env").set_value("LunarLander-v3").run()
    at.selectbox(key="play_mode").set_value("greedy").run()
    at.number_input(key="play_games").set_value(4).run()
    assert at.selectbox(key="play_mode").value == "greedy", "kept: not LunarLander's default"
    at.selectbox(key="play_env").set_value("CartPole-v1").run()
    at.selectbox(key="play_mode").set_value("sampled").run()
    at.selectbox(key="play_env").set_value("LunarLander-v3").run()
    at.selectbox(key="play_env").set_value("CartPole-v1").run()
    assert not at.exception and at.selectbox(key="play_mode").value == "greedy", "back to CartPole's, not sampled"


def test_lunarlander_results_name_the_sampled_player_and_say_why() -> None:
    at = _lunarlander(start())
    why = "LunarLander-v3 counts the network that draws its moves from its probabilities"

    visit(at, "pages/play.py")
    at.number_input(key="play_games").set_value(2)
    press(at, "Play")
    lab = at.session_state["lab"]
    assert lab.evaluation.config.sample_actions, "the counted player played"
    assert at.subheader[0].value == (
        "The network, drawing its moves from its probabilities, vs random play on 2 games of LunarLander-v3"
    )
    assert any(m.value.startswith(why) and "can be far worse" in m.value for m in at.markdown), "said, not a tooltip"
    colours = _colours(_chart(at, "Every game's score"))
    assert colours == {"network, sampled": PLAYER_COLORS["sampled"], "random": PLAYER_COLORS["random"]}
    at.selectbox(key="play_mode").set_value("greedy").run()
    press(at, "Play")
    assert at.subheader[0].value.startswith("The network, always its most probable move, vs random play")
    assert any("The result below is of the other player" in m.value for m in at.markdown)
    assert _colours(_chart(at, "Every game's score"))["network, greedy"] == PLAYER_COLORS["greedy"]

    visit(at, "pages/ensemble.py")
    at.number_input(key="ens_members").set_value(2)
    at.number_input(key="ens_games").set_value(2)
    press(at, "Train the members and compare")
    ev = at.session_state["lab"].ensemble_eval
    assert ev.ensemble.config.sample_actions and all(m.config.sample_actions for m in ev.members)
    assert any(
        h.value.startswith("The ensemble and its 2 members, drawing their moves from their probabilities")
        for h in at.subheader
    )
    assert any(m.value.startswith(why) for m in at.markdown)
    bars = _chart(at, "Mean score over the same 2 games")
    assert _colours(bars) == {"member": PLAYER_COLORS["sampled"], "ensemble": PLAYER_COLORS["ensemble"]}

    visit(at, "pages/compare.py")
    at.multiselect(key="cmp_players").set_value(["random", "current model", "ensemble"])
    at.number_input(key="cmp_seeds").set_value(2)
    at.number_input(key="cmp_games").set_value(2)
    press(at, "Compare")
    assert any(h.value == "Every player on the same games, the networks drawing their moves from their probabilities"
               for h in at.subheader)  # fmt: skip
    assert any(m.value.startswith(why) for m in at.markdown)
    table = at.dataframe[0].value
    assert list(table["plays"]) == ["at random"] + ["drawing its moves from its probabilities"] * 2
    bars = _chart(at, "Mean score over seeds")
    assert _colours(bars["layer"][0]) == {
        "random": PLAYER_COLORS["random"],
        "current model": PLAYER_COLORS["sampled"],
        "ensemble": PLAYER_COLORS["ensemble"],
    }

    visit(at, "pages/policy_map.py")
    [line] = [c.value for c in at.caption if "overlaid game lasted" in c.value]
    assert "played by the network, drawing its moves from its probabilities" in line and why in line


def _generations(at: AppTest, seed: int, most: int, target: float | None = None) -> AppTest:
    """A small generations run on CartPole-v1 from a first network (600 random games): 60 games
    a generation, measured on 30 games, no confirmation."""
    visit(at, "pages/generations.py")
    at.number_input(key="imp_generations").set_value(most)
    at.number_input(key="imp_games").set_value(60)
    at.number_input(key="imp_eval").set_value(30)
    at.number_input(key="imp_confirm").set_value(0)
    at.number_input(key="imp_first_games").set_value(600)
    at.number_input(key="imp_seed").set_value(seed)
    if target is not None:
        at.number_input(key="imp_target").set_value(target)
    return press(at, "Run generations")


def _verdict_is_just_above_the_chart(at: AppTest, sentence: str) -> None:
    """The verdict sits right above the scores chart: nothing but it between the metrics and the chart."""
    blocks = list(at.main.children.values())
    kinds = [(b.type, getattr(b, "value", None)) for b in blocks]
    where = next(i for i, (kind, value) in enumerate(kinds) if value == sentence)
    assert blocks[where + 1].type == "vega_lite_chart", kinds[where + 1]


def test_generations_stop_when_mastered_or_solved_and_say_so_above_the_charts() -> None:
    at = _generations(start(), seed=3, most=12)
    records = at.session_state["lab"].improve.generations
    last = records[-1]
    assert last.mean == 500 and last.generation < 12, "it stopped early, mastered"
    sentence = f"Mastered: stopping at generation {last.generation} (500 is the most a game can score)."
    assert [s.value for s in at.success] == [sentence]
    _verdict_is_just_above_the_chart(at, sentence)

    _generations(at, seed=3, most=12, target=475.0)  # Gymnasium's bar for CartPole-v1
    records = at.session_state["lab"].improve.generations
    last = records[-1]
    assert last.mean >= 475 and all(r.mean < 475 for r in records[:-1])
    [sentence] = [s.value for s in at.success]
    assert sentence == (
        f"Solved at generation {last.generation}: the greedy player's mean {last.mean:.1f} against the target 475; "
        "stopping there, before the 12 generations allowed."
    )


def test_generations_not_mastered_yet_name_every_fall_back_and_what_the_numbers_show() -> None:
    at = _generations(start(), seed=2, most=6)
    result = at.session_state["lab"].improve
    records = result.generations
    assert max(r.mean for r in records) < 500
    best = max(records, key=lambda r: (r.mean, r.generation))
    [sentence] = [i.value for i in at.info if i.value.startswith("Not")]
    assert sentence == (
        f"Not mastered yet: best {best.mean:.1f} against the target 500 (the greedy player's mean, generation "
        f"{best.generation}), after all 6 generations."
    )
    _verdict_is_just_above_the_chart(at, sentence)
    colours = _colours(_chart(at, "Evaluation score per generation")["layer"][1])
    assert colours == {"greedy (counts)": PLAYER_COLORS["greedy"], "sampled": PLAYER_COLORS["sampled"]}

    table = at.dataframe[0].value
    column = list(table["next generation"])
    fell_back = [r for r in records if r.start_reason == "fallback"]
    assert fell_back, "this seed falls back (the table's marker is tested on a real one)"
    for before, after in zip(records, records[1:], strict=False):
        words = column[before.generation]
        if after.start_reason == "fallback":
            assert words == (
                f"not built on: clearly worse than generation {after.best_before}; the next starts from "
                f"{after.best_before}"
            )
            assert after.started_from == after.best_before != before.generation
        else:
            assert words.startswith("built on") and after.started_from == before.generation
    assert column[-1] == "—"
    assert any(c.value.startswith("Not built on: that generation's network scored clearly below") for c in at.caption)

    [notice] = [e for e in at.expander if e.label == "What to notice"]
    said = " ".join(m.value for m in notice.markdown)
    assert "both players" not in said
    for player in ("greedy", "sampled"):
        means = [getattr(r, f"{player}_mean") for r in records]
        verb = "climbed" if means[-1] > means[0] else "fell"
        assert re.search(rf"the {player} player( \(the one that counts\))? {verb} from {means[0]:.1f} at generation 0 "
                         rf"to {means[-1]:.1f} at generation 6", said), said  # fmt: skip
    times = "Once" if len(fell_back) == 1 else f"{len(fell_back)} times"
    assert f"{times} a generation clearly worse than the best was not built on" in said


@pytest.mark.slow
def test_the_notebooks_evaluation_opens_on_play_with_its_gifs_and_code() -> None:
    """Home's notebook, then its link to Play & evaluate: the notebook's own evaluation, filmed
    (best, worst, random on the best game), with the code that plays it, without a new click."""
    at = start()
    press(at, "Run the whole notebook")
    lab = at.session_state["lab"]
    evaluation = lab.evaluation
    assert evaluation is lab.notebook.evaluation and not lab.evaluation_gifs
    links = [p for p in at.get("page_link") if "See the network play" in p.proto.label]
    assert links and links[0].proto.page == "play"

    visit(at, "pages/play.py")
    assert at.session_state["lab"].evaluation is evaluation, "the notebook's evaluation, not a new one"
    assert at.subheader[0].value.startswith("The network, always its most probable move, vs random play on 10 games")
    captions = gif_captions(at)
    assert len(captions) == 3 and captions[0].startswith(f"Best game (#{evaluation.best_game + 1}): score ")
    assert captions[2].startswith(f"Random play on the same game (#{evaluation.best_game + 1})")
    assert float(metrics(at)["network mean"]) == pytest.approx(evaluation.mean, abs=0.05)
    [code] = [c.value for c in at.code if "import cartpole_core as cl" in c.value]
    assert "games = cl.EvaluationConfig(" in code and "played = cl.evaluate(player, games)" in code
    visit(at, "pages/home.py")
    visit(at, "pages/play.py")
    assert gif_captions(at) == captions, "filmed once, kept"
