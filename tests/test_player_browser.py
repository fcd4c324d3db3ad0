"""Issue 30, item 2, in a real browser: Play & evaluate on LunarLander-v3 starts on the player
LunarLander counts, the sampled one, names it in its result's title with the reason beside it,
and keeps a visitor's own choice from page to page (AppTest cannot show that: it runs a page
alone, without the app's remembering of the settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_browser
from tests.test_browser import (
    choose_env,
    click_key,
    generate,
    no_exception,
    open_page,
    picker_text,
    screenshot,
    set_number,
    settle,
    shows,
    train,
    train_ensemble,
    with_a_network,
)

# The browser tests' own fixtures: a server of the app on a loopback port, Chromium, the screenshots' folder.
server, browser, shots = test_browser.server, test_browser.browser, test_browser.shots

pytestmark = pytest.mark.browser


def test_play_on_lunarlander_starts_on_the_sampled_player_and_says_why(server: str, browser, shots: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(server)
    settle(page)
    open_page(page, "Play & evaluate")
    assert "greedy: most probable move" in picker_text(page, "play_mode"), "CartPole counts the greedy one"
    choose_env(page, "play_env", "LunarLander-v3")
    no_exception(page)
    assert "sampled: draws its moves" in picker_text(page, "play_mode")

    generate(page, 150)
    train(page, "16", epochs=1)
    open_page(page, "Play & evaluate")
    assert "sampled: draws its moves" in picker_text(page, "play_mode")
    # Random play was its only player when the page was first opened: now the network is shown.
    assert "current model" in picker_text(page, "play_policy")
    set_number(page, "Games", 2)
    click_key(page, "play_run")
    no_exception(page)
    title = page.locator("h3", has_text="vs random play on 2 games of LunarLander-v3").first
    title.wait_for(timeout=120_000)
    assert title.inner_text().startswith("The network, drawing its moves from its probabilities")
    assert shows(page, "the greedy player (always its most probable move) can be far worse than the one the method")
    screenshot(page, shots / "play_lunarlander_sampled.png")

    # The visitor's own choice wins when they come back to the page.
    page.locator(".st-key-play_mode").click()
    page.get_by_role("option", name="greedy: most probable move").click()
    settle(page)
    open_page(page, "Compare")
    assert "sampled: draws its moves" in picker_text(page, "cmp_mode")
    open_page(page, "Play & evaluate")
    assert "greedy: most probable move" in picker_text(page, "play_mode")
    no_exception(page)
    page.close()


def test_a_random_player_picked_beside_a_network_stays_when_an_ensemble_appears(server: str, browser) -> None:
    """Only a random player remembered from when it was the only one gives way to the network:
    one the visitor picked beside a network is theirs, also after an ensemble is trained."""
    page = with_a_network(browser, server)
    open_page(page, "Play & evaluate")
    assert "current model" in picker_text(page, "play_policy")
    page.locator(".st-key-play_policy").click()
    page.get_by_role("option", name="random", exact=True).click()
    settle(page)
    train_ensemble(page, members=2, games=2)
    assert shows(page, "The ensemble and its 2 members")
    open_page(page, "Play & evaluate")
    no_exception(page)
    shown = picker_text(page, "play_policy")
    assert "random" in shown and "current model" not in shown, shown
    page.close()
