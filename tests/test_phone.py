"""A phone in hand (issue 30, item 3): every page of the journey at 390×844 on a touch screen,
in a real browser. It fails on a chart whose plot is squeezed (narrower than half its frame,
or flat) or wider than its frame, a page that scrolls sideways, a link of the menu or a main
button smaller than a fingertip, a main button below the first screen, and keyboard words on
a touch screen.

Screenshots of a few pages go to ``$CARTPOLE_LAB_SCREENSHOTS`` as ``phone-*.png`` when it is
set (``make screenshots`` points it at ``docs/screenshots``), otherwise to the test's
temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_browser import browser, no_exception, server, set_number, settle, shots  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: A phone's screen in CSS pixels (an iPhone 12 to 15), with a phone browser's user agent: Streamlit
#: folds the sidebar away after a tap on a page link only for a phone's.
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 1,
    "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
}
SCREEN_HEIGHT = 844
#: The smallest tap target (CSS px): Apple's 44 pt, about a fingertip.
TAP = 44
#: A plot flatter than this (CSS px) shows nothing: its title and legend took its height (seen: 23
#: px). A chart of one row per player, run or generation is at least 30 px a row.
FLAT = 30

#: In the page: whether it scrolls sideways, and each drawn chart's plot against its frame. The plot
#: is where the data is drawn: the union of the gridlines' and the marks' boxes in the chart's SVG
#: (a title too wide for the frame leaves it a sliver; a chart of fixed width runs past the frame).
#: A chart drawn on a canvas (Streamlit's choice for many marks) is measured in the SVG its Vega
#: view draws of the same scene, laid over the canvas.
LAYOUT_JS = """async () => {
  const sideways = [];
  const main = document.querySelector('[data-testid="stMain"]');
  for (const [name, el] of [["the page", document.scrollingElement], ["the main area", main]]) {
    if (el && el.scrollWidth > el.clientWidth + 1) {
      sideways.push(`${name}: ${el.scrollWidth} px wide in ${el.clientWidth}`);
    }
  }
  function vegaView(embed) {  // the Vega view React holds for this chart (for a canvas)
    const fiberKey = Object.keys(embed).find(k => k.startsWith('__reactFiber'));
    for (let fiber = embed[fiberKey], depth = 0; fiber && depth < 40; fiber = fiber.return, depth++) {
      for (let hook = fiber.memoizedState, i = 0; hook && i < 300; hook = hook.next, i++) {
        for (const v of [hook.memoizedState, hook.memoizedState && hook.memoizedState.current]) {
          const isView = v && typeof v === 'object' && typeof v.toSVG === 'function';
          if (isView && typeof v.scenegraph === 'function') return v;
        }
      }
    }
    return null;
  }
  function plotBox(svg) {
    let left = Infinity, right = -Infinity, top = Infinity, bottom = -Infinity;
    for (const item of svg.querySelectorAll('.role-axis-grid *, .role-mark *')) {
      if (item instanceof SVGGElement || !(item instanceof SVGGraphicsElement)) continue;
      const box = item.getBoundingClientRect();
      if (box.width === 0 && box.height === 0) continue;
      left = Math.min(left, box.left);
      right = Math.max(right, box.right);
      top = Math.min(top, box.top);
      bottom = Math.max(bottom, box.bottom);
    }
    return right > left ? {width: right - left, height: bottom - top} : {width: 0, height: 0};
  }
  const charts = [];
  for (const embed of document.querySelectorAll('[data-testid="stMain"] .vega-embed')) {
    const frame = (embed.closest('[data-testid="stElementContainer"]') || embed.parentElement).getBoundingClientRect();
    if (frame.width === 0) continue;  // folded away (an expander, a tab)
    let svg = embed.querySelector('svg.marks'), overlay = null;
    const drawn = (svg || embed.querySelector('canvas')).getBoundingClientRect();
    if (!svg) {
      const view = vegaView(embed);
      if (!view) { charts.push({title: '(a canvas whose view was not found)', canvas: true}); continue; }
      overlay = document.createElement('div');
      overlay.style.cssText = `position: fixed; left: ${drawn.left}px; top: ${drawn.top}px; visibility: hidden`;
      overlay.innerHTML = await view.toSVG();
      document.body.appendChild(overlay);
      svg = overlay.querySelector('svg');
    }
    const titles = [...svg.querySelectorAll('.role-title-text tspan, .role-title-text text:not(:has(tspan))')]
      .map(t => t.textContent);
    const plot = plotBox(svg);
    charts.push({title: titles.join(' ') || '(untitled)', plot: plot.width, plotHeight: plot.height, frame: frame.width,
                 overflow: Math.max(drawn.right - frame.right, frame.left - drawn.left)});
    if (overlay) overlay.remove();
  }
  return {sideways, charts};
}"""


@pytest.fixture
def phone(browser) -> Iterator:  # noqa: F811  (the fixture imported above)
    context = browser.new_context(**PHONE)
    yield context.new_page()
    context.close()


def go(page, name: str, problems: list[str]) -> None:
    """Open the page ``name`` as a phone does: the menu button, then the page's link (whose row
    must be a tap target); Streamlit folds the menu away again."""
    menu = page.locator('[data-testid="stExpandSidebarButton"]')
    box = menu.bounding_box()
    if min(box["width"], box["height"]) < TAP:
        problems.append(f"the menu button is {box['width']:.0f}×{box['height']:.0f} px, too small to tap")
    menu.click()
    link = page.locator('[data-testid="stSidebarNav"] a', has_text=name).first
    link.wait_for()
    height = link.bounding_box()["height"]
    if height < TAP:
        problems.append(f"the menu's link to {name} is {height:.0f} px tall, too small to tap")
    link.click()
    settle(page)
    page.locator('[data-testid="stSidebar"][data-collapsed="true"]').wait_for(state="attached")  # folded away again


def layout_problems(page, where: str) -> list[str]:
    """What makes the page ``where`` unusable at phone width: sideways scrolling, charts."""
    page.wait_for_timeout(500)  # charts are drawn a moment after the script ends
    found = page.evaluate(LAYOUT_JS)
    problems = [f"{where}: scrolls sideways ({s})" for s in found["sideways"]]
    for chart in found["charts"]:
        if chart.get("canvas"):
            problems.append(f"{where}: {chart['title']}: its plot was not measured")
        elif chart["plot"] < chart["frame"] / 2:
            problems.append(
                f"{where}: chart “{chart['title']}” plots in {chart['plot']:.0f} px of its {chart['frame']:.0f} px"
            )
        elif chart["plotHeight"] < FLAT:
            problems.append(f"{where}: chart “{chart['title']}” plots in {chart['plotHeight']:.0f} px of height")
        elif chart["overflow"] > 1:
            problems.append(f"{where}: chart “{chart['title']}” runs {chart['overflow']:.0f} px past its frame")
    return problems


def main_button_problems(page, where: str, button) -> list[str]:
    """The page's main button, as the page opens: on the first screen, and big enough to tap."""
    button = button.first
    button.wait_for()
    page.locator('[data-testid="stMain"]').evaluate("main => main.scrollTo(0, 0)")
    box = button.bounding_box()
    problems = []
    if box["y"] + box["height"] > SCREEN_HEIGHT:
        problems.append(f"{where}: the main button is {box['y']:.0f} px down, below the first screen")
    if min(box["height"], box["width"]) < TAP:
        problems.append(f"{where}: the main button is {box['width']:.0f}×{box['height']:.0f} px, too small to tap")
    return problems


def phone_shot(page, folder: Path, name: str, at=None) -> None:
    """What the phone's screen shows, as ``phone-<name>.png``: the page's top, or from the element
    ``at`` (a locator) down."""
    main = page.locator('[data-testid="stMain"]')
    if at is None:
        main.evaluate("main => main.scrollTo(0, 0)")
    else:  # just under Streamlit's header bar
        at.first.evaluate("e => e.scrollIntoView({block: 'start'})")
        main.evaluate("main => main.scrollBy(0, -70)")
    page.mouse.move(1, 1)  # no chart's toolbar in the picture
    page.wait_for_timeout(400)
    page.screenshot(path=folder / f"phone-{name}.png")


def test_every_page_in_a_phones_hand(server: str, phone, shots: Path) -> None:  # noqa: F811
    page = phone
    problems: list[str] = []

    def check(where: str, button=None) -> None:
        no_exception(page)
        if button is not None:
            problems.extend(main_button_problems(page, where, button))
        problems.extend(layout_problems(page, where))

    def press(button) -> None:
        button.first.click()
        settle(page)
        no_exception(page)

    page.goto(server)
    settle(page)
    check("Home", run_notebook := page.get_by_role("button", name="Run the whole notebook"))
    phone_shot(page, shots, "home")

    go(page, "Random play", problems)
    check("Random play", play := page.get_by_role("button", name="Play random games"))
    set_number(page, "Games", 20)
    press(play)
    check("Random play, played")

    go(page, "Play it yourself", problems)
    game = page.locator(".game").first
    game.wait_for()
    page.locator('.game[data-state="ready"]').wait_for()
    words = page.locator('[data-testid="stMain"]').inner_text() + "\n" + game.inner_text()  # the game: its own DOM
    if "tap" not in words.lower() or "Your keys" in words or "press ←" in words:
        problems.append(f"Play it yourself: keyboard words on a touch screen: {words[:600]}")
    for push in page.locator(".game .buttons button").all():
        box = push.bounding_box()
        if min(box["width"], box["height"]) < TAP:
            problems.append(f"Play it yourself: the game's button is {box['width']:.0f}×{box['height']:.0f} px")
    check("Play it yourself")
    phone_shot(page, shots, "play-yourself")

    go(page, "Generate data", problems)
    check("Generate data", keep := page.get_by_role("button", name="Play and keep the good games"))
    set_number(page, "Games", 1000)
    press(keep)
    check("Generate data, generated")

    go(page, "Train", problems)
    check("Train", fit := page.get_by_role("button", name="Train", exact=True))
    page.get_by_label("Hidden layers", exact=True).fill("16")
    set_number(page, "Epochs", 2)  # two points on each curve
    press(fit)
    assert page.get_by_text("learning steps so far").count()
    check("Train, trained")
    phone_shot(page, shots, "train", at=page.locator("h3", has_text="Result"))

    go(page, "Play & evaluate", problems)
    check("Play & evaluate", play := page.get_by_role("button", name="Play", exact=True))
    set_number(page, "Games", 5)
    press(play)
    check("Play & evaluate, played")
    phone_shot(page, shots, "play", at=page.locator("h3", has_text="vs random"))
    page.get_by_role("button", name="Save as a run").click()  # a run for the Runs page's table
    settle(page)

    go(page, "Ensemble", problems)
    check("Ensemble", vote := page.get_by_role("button", name="Train the members and compare"))
    set_number(page, "Members", 2)
    set_number(page, "Evaluation games", 5)
    press(vote)
    check("Ensemble, trained")

    go(page, "Generations", problems)
    check("Generations", run := page.get_by_role("button", name="Run generations"))
    set_number(page, "Most generations", 2)
    set_number(page, "Games per generation", 20)
    page.get_by_text("More settings (the defaults fit this game)").click()
    set_number(page, "Evaluation games", 5)
    set_number(page, "Confirmation games", 5)
    set_number(page, "Random games first", 500)
    set_number(page, "Their epochs", 1)
    press(run)
    page.locator('[data-testid="stMain"] .vega-embed').first.wait_for()
    check("Generations, run")
    phone_shot(page, shots, "generations", at=page.locator('[data-testid="stMetric"]'))

    go(page, "Sweep", problems)
    check("Sweep", sweep := page.get_by_role("button", name="Run the sweep"))
    page.get_by_text("Every trial starts from").click()
    set_number(page, "Random games", 500)
    set_number(page, "Evaluation games", 5)
    for label, text in (("Seeds", "0"), ("Values", "20,30")):
        box = page.get_by_label(label, exact=True).first
        box.fill(text)
        box.press("Tab")
    press(sweep)
    page.get_by_text("Every trial").first.wait_for(timeout=240_000)
    check("Sweep, run")

    go(page, "Policy map", problems)
    page.locator('[data-testid="stMain"] .vega-embed').first.wait_for()
    check("Policy map")
    phone_shot(page, shots, "policy-map", at=page.locator('[data-testid="stMain"] .vega-embed'))

    go(page, "Compare", problems)
    check("Compare", compare := page.get_by_role("button", name="Compare", exact=True))
    set_number(page, "Seeds", 2)
    set_number(page, "Games per seed", 5)
    press(compare)
    page.locator('[data-testid="stMain"] .vega-embed').nth(2).wait_for(timeout=240_000)
    check("Compare, compared")

    go(page, "Runs", problems)
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    check("Runs")

    go(page, "Glossary", problems)
    check("Glossary")

    go(page, "Home", problems)
    check("Home, after the journey", run_notebook)
    assert not problems, "\n".join(problems)
