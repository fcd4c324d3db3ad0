"""Work that survives a reload (issue 30 item 4), in a real browser: a visitor's dataset and
model come back after the page is reloaded; another visitor never gets them; a cookie whose
session this server does not keep gives a fresh session and a line saying why; a browser that
refuses the cookie (the app in a frame of another site) is told a reload starts afresh.

Uses the server and browser of ``tests/test_browser.py`` (this module gets its own server).
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from pages.sessions import FORGOTTEN, TOKEN_PATTERN, cookie_name
from tests import test_browser
from tests.test_browser import generate, no_exception, screenshot, set_number, settle, train

server, browser, shots = test_browser.server, test_browser.browser, test_browser.shots  # its fixtures

pytestmark = pytest.mark.browser


def cookie(context, server: str) -> list[dict]:
    """The browser's session cookies for the app at ``server`` (its name ends with the port)."""
    return [c for c in context.cookies() if c["name"] == cookie_name(urlparse(server).port)]


def session_lines(page) -> str:
    """The sidebar's "This session" block (up to the hardware lines)."""
    text = page.locator('[data-testid="stSidebar"]').inner_text()
    return text[text.index("This session") : text.index("Networks")]  # the footer starts with where networks train


def dataset_and_model(page) -> tuple[str, str]:
    lines = session_lines(page).splitlines()
    return next(x for x in lines if x.startswith("Dataset:")), next(x for x in lines if x.startswith("Model:"))


def test_a_reload_keeps_the_dataset_and_model_and_another_visitor_gets_none(server: str, browser, shots: Path) -> None:
    visitor = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = visitor.new_page()
    page.goto(server)
    settle(page)
    assert "Kept for 1 hour after you leave" in session_lines(page)
    generate(page, 300)
    train(page, "8", epochs=1)
    dataset, model = dataset_and_model(page)
    assert "none yet" not in dataset and "none yet" not in model, (dataset, model)
    (kept,) = cookie(visitor, server)
    assert TOKEN_PATTERN.fullmatch(kept["value"]) and kept["sameSite"] == "Strict"
    assert kept["value"] not in page.url, "never in the address: a copied link would hand the session over"

    page.reload()
    settle(page)
    no_exception(page)
    assert dataset_and_model(page) == (dataset, model), session_lines(page)
    assert page.locator("h1").first.inner_text() == "Train"
    assert page.get_by_text("Per epoch").count() >= 1, "the training's curves came back with it"
    assert kept["value"] not in page.locator("body").inner_text(), "the token is never drawn"
    screenshot(page, shots / "reload_kept.png")

    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    theirs = other.new_page()
    theirs.goto(page.url)  # the same address, as a shared link would be
    settle(theirs)
    no_exception(theirs)
    assert dataset_and_model(theirs) == ("Dataset: none yet", "Model: none yet"), session_lines(theirs)
    (their_cookie,) = cookie(other, server)
    assert their_cookie["value"] != kept["value"]
    screenshot(theirs, shots / "reload_other_visitor.png")
    other.close()

    second_tab = visitor.new_page()  # the same browser: the same session
    second_tab.goto(server)
    settle(second_tab)
    assert dataset_and_model(second_tab) == (dataset, model)

    # Start afresh (a shared computer): the work is forgotten on the server too, a reload
    # does not bring it back, and the browser gets a new token.
    second_tab.get_by_role("button", name="Start afresh").click()
    second_tab.get_by_role("button", name="Forget my session").click()
    settle(second_tab)
    no_exception(second_tab)
    assert dataset_and_model(second_tab) == ("Dataset: none yet", "Model: none yet"), session_lines(second_tab)
    second_tab.reload()
    settle(second_tab)
    assert dataset_and_model(second_tab) == ("Dataset: none yet", "Model: none yet"), session_lines(second_tab)
    (fresh,) = cookie(visitor, server)
    assert fresh["value"] != kept["value"]
    visitor.close()


def test_start_afresh_in_one_tab_tells_the_other_whose_reload_opens_the_new_session(
    server: str, browser, shots: Path
) -> None:
    """Two tabs of one browser share a session. Tab A starts afresh and makes something new;
    tab B, still showing the old work, says at its next click that the session was forgotten
    in another tab, leaves the cookie naming A's new session, and its reload opens that one."""
    visitor = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab_a = visitor.new_page()
    tab_a.goto(server)
    settle(tab_a)
    generate(tab_a, 300)
    tab_b = visitor.new_page()
    tab_b.goto(server)
    settle(tab_b)
    old_dataset, _ = dataset_and_model(tab_b)
    assert "300 games" in old_dataset or "300 random games" in old_dataset, old_dataset

    tab_a.get_by_role("button", name="Start afresh").click()
    tab_a.get_by_text("Other open tabs keep showing the old work until you reload them.").wait_for()
    tab_a.get_by_role("button", name="Forget my session").click()
    settle(tab_a)
    generate(tab_a, 400)
    (after_afresh,) = cookie(visitor, server)
    new_dataset, _ = dataset_and_model(tab_a)
    assert new_dataset != old_dataset, (new_dataset, old_dataset)

    tab_b.bring_to_front()
    test_browser.open_page(tab_b, "Glossary")  # a click in tab B: a script run of its session
    no_exception(tab_b)
    lines = session_lines(tab_b)
    assert FORGOTTEN in lines and "Kept for" not in lines, lines
    assert dataset_and_model(tab_b)[0] == old_dataset, "tab B keeps its page until reloaded"
    screenshot(tab_b, shots / "reload_forgotten_in_another_tab.png")
    (still,) = cookie(visitor, server)
    assert still["value"] == after_afresh["value"], "tab B did not write the old token back"

    tab_b.reload()
    settle(tab_b)
    no_exception(tab_b)
    assert dataset_and_model(tab_b)[0] == new_dataset, session_lines(tab_b)
    assert "Kept for 1 hour" in session_lines(tab_b)
    visitor.close()


def test_a_session_this_server_does_not_keep_starts_afresh_and_says_why(server: str, browser, shots: Path) -> None:
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    stale = "Q" * 43  # a token from before a restart
    phone.add_cookies([{"name": cookie_name(urlparse(server).port), "value": stale, "url": server}])
    page = phone.new_page()
    page.goto(server)
    settle(page)
    no_exception(page)
    line = "Your earlier session ended: this server has restarted since your last visit."
    toast = page.locator('[data-testid="stToast"]')
    toast.first.wait_for(timeout=10_000)
    assert line in toast.first.inner_text(), "on a phone the sidebar is folded: the line comes as a toast"
    screenshot(page, shots / "reload_ended_phone.png")
    assert line in session_lines(page)
    assert dataset_and_model(page) == ("Dataset: none yet", "Model: none yet")
    (kept,) = cookie(phone, server)
    assert kept["value"] != stale, "a token the server does not know is never adopted"
    phone.close()


def test_a_reload_of_a_shared_links_page_keeps_the_visitors_own_settings(server: str, browser) -> None:
    """Arrived by a shared link, changed a setting, made something, reloaded: the visitor's own
    settings and dataset come back, not the link's again (the page's address follows its
    settings); the same link opened by someone else still gives the link's settings."""
    link = f"{server}/generate?gen_games=2500&gen_seed=7"
    visitor = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = visitor.new_page()
    page.goto(link)
    settle(page)
    games = page.get_by_label("Games", exact=True).first
    assert games.input_value() == "2500"
    set_number(page, "Games", 700)
    page.get_by_role("button", name="Play and keep the good games").click()
    settle(page)
    assert "700 random games" in session_lines(page)
    page.reload()
    settle(page)
    no_exception(page)
    assert page.get_by_label("Games", exact=True).first.input_value() == "700"
    assert page.get_by_label("Seed", exact=True).first.input_value() == "7"
    assert "700 random games" in session_lines(page)
    visitor.close()

    someone = browser.new_context(viewport={"width": 1400, "height": 1000})
    theirs = someone.new_page()
    theirs.goto(link)
    settle(theirs)
    assert theirs.get_by_label("Games", exact=True).first.input_value() == "2500"
    someone.close()


@contextlib.contextmanager
def course_page(app_url: str) -> Iterator[str]:
    """Another site (here: another loopback address) whose page shows the app in a frame, as a
    course page might; yields its URL."""
    body = f'<h1>A course page</h1><iframe src="{app_url}/" width="1350" height="950"></iframe>'.encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    site = http.server.HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}/"
    finally:
        site.shutdown()
        site.server_close()


def test_a_browser_that_refuses_the_cookie_is_told_a_reload_starts_afresh(server: str, browser, shots: Path) -> None:
    """In a frame of another site the browser refuses the app's same-site cookie: the sidebar
    says a reload starts afresh there, instead of promising the session back."""
    cross_site = server.replace("127.0.0.1", "localhost")  # another site than the course page's
    with course_page(cross_site) as url:
        visitor = browser.new_context(viewport={"width": 1400, "height": 1100})
        page = visitor.new_page()
        page.goto(url)
        page.frame_locator("iframe").locator('[data-testid="stApp"]').wait_for(timeout=60_000)
        (app,) = [f for f in page.frames if f.url.startswith(cross_site)]
        settle(app)
        no_exception(app)
        text = session_lines(app)
        assert "This browser does not keep the cookie that brings a session back" in text, text
        assert "Kept for" not in text
        assert not cookie(visitor, server.replace("127.0.0.1", "localhost"))
        screenshot(page, shots / "reload_refused_in_a_frame.png")
        visitor.close()
