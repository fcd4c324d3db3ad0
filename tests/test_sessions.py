"""The store that brings a visitor's session back after a reload (``pages/sessions.py``, issue 30
item 4): kept while a tab holds it and ``minutes`` after, at most ``kept`` of them, one visitor's
never another's, safe across Streamlit's threads. A fake clock and a fake "is this tab still
connected" drive it."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from pages import sessions
from pages.common import Lab, finish_stopped
from pages.sessions import TOKEN_PATTERN, Gone, SessionStore, ended_line, kept_for, read_setting

MINUTE = 60.0


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def minutes(self, n: float) -> None:
        self.now += n * MINUTE


class Tabs:
    """Which Streamlit sessions are connected (an open tab)."""

    def __init__(self) -> None:
        self.open: set[str] = set()

    def __call__(self, holder: str) -> bool:
        return holder in self.open


def store(minutes: float = 60, kept: int = 40) -> tuple[SessionStore[Lab], Clock, Tabs]:
    clock, tabs = Clock(), Tabs()
    return SessionStore(minutes, kept, clock=clock, is_live=tabs), clock, tabs


def test_a_reload_brings_back_the_very_same_lab_with_its_owner_secret() -> None:
    kept, _, tabs = store()
    tabs.open.add("tab 1")
    lab = Lab()
    token = kept.new(lab, "tab 1")
    tabs.open.discard("tab 1")  # the reload closes the old connection...
    tabs.open.add("tab 2")  # ...and opens a new one, with the cookie
    back = kept.resume(token, "tab 2")
    assert back is lab, "the same object, not a copy: an open session costs nothing more"
    assert isinstance(back, Lab) and back.owner_secret == lab.owner_secret


def test_a_session_forgotten_by_its_visitor_is_gone_at_once_even_with_a_tab_open() -> None:
    kept, _, tabs = store()
    tabs.open.add("tab 1")
    token = kept.new(Lab(), "tab 1")
    other = kept.new(Lab(), "tab 2")
    kept.forget(token)
    assert kept.resume(token, "tab 1") is Gone.LEFT and len(kept) == 1
    assert isinstance(kept.resume(other, "tab 2"), Lab), "nobody else's session goes with it"
    assert ended_line(Gone.LEFT) == "Your earlier session ended: you started afresh."


def test_tokens_are_secret_random_and_only_their_hash_is_kept() -> None:
    kept, _, _ = store()
    tokens = {kept.new(Lab(), f"tab {i}") for i in range(20)}
    assert len(tokens) == 20
    assert all(TOKEN_PATTERN.fullmatch(t) for t in tokens)  # secrets.token_urlsafe(32): 256 bits
    held = repr(vars(kept))
    assert not any(t in held for t in tokens), "the store keeps hashes, not the tokens"


def test_an_unknown_token_brings_back_nothing_and_is_never_adopted() -> None:
    kept, _, _ = store()
    someone = Lab()
    kept.new(someone, "their tab")
    guessed = "A" * 43
    assert kept.resume(guessed, "my tab") is Gone.UNKNOWN
    assert kept.resume(guessed, "my tab") is Gone.UNKNOWN, "asking made no session under that token"
    assert len(kept) == 1


def test_a_session_is_kept_its_minutes_after_the_last_visit_then_let_go_and_freed() -> None:
    kept, clock, _ = store(minutes=60)
    lab = Lab()
    token = kept.new(lab, "tab")  # its tab closed at once (the fake says no tab is connected)
    clock.minutes(59)
    assert kept.resume(token, "tab") is lab  # a visit: its 60 minutes start again
    clock.minutes(60)
    kept.sweep()
    assert kept.resume(token, "tab") is lab, "exactly 60 minutes after the last visit: still kept"
    clock.minutes(60.5)
    kept.sweep()
    assert kept.resume(token, "tab") is Gone.EXPIRED
    freed = weakref.ref(lab)
    del lab
    gc.collect()
    assert freed() is None, "an expired session leaves nothing behind in the store"


def test_a_tab_left_open_keeps_its_session_and_the_minutes_count_from_when_it_closes() -> None:
    kept, clock, tabs = store(minutes=60)
    tabs.open.add("tab")
    lab = Lab()
    token = kept.new(lab, "tab")
    for _ in range(12):  # three hours open without a click; the server sweeps every minute or so
        clock.minutes(15)
        kept.sweep()
    tabs.open.discard("tab")  # the phone drops the tab
    clock.minutes(59)
    kept.sweep()
    assert kept.resume(token, "new tab") is lab, "59 minutes after the tab went away"
    tabs.open.clear()
    clock.minutes(61)
    kept.sweep()
    assert kept.resume(token, "newer tab") is Gone.EXPIRED


def test_a_script_run_counts_as_a_visit() -> None:
    kept, clock, _ = store(minutes=10)
    lab = Lab()
    token = kept.new(lab, "tab")
    clock.minutes(9)
    kept.seen(token, "tab")
    clock.minutes(9)
    kept.sweep()
    assert kept.resume(token, "tab") is lab


def test_a_full_store_lets_the_longest_idle_go_first_and_never_an_open_tab() -> None:
    kept, clock, tabs = store(minutes=60, kept=3)
    tabs.open.add("open")
    open_lab = Lab()
    open_token = kept.new(open_lab, "open")  # the oldest, but a tab holds it
    clock.minutes(1)
    old, newer = Lab(), Lab()
    old_token = kept.new(old, "gone 1")
    clock.minutes(1)
    newer_token = kept.new(newer, "gone 2")
    clock.minutes(1)
    arrival = kept.new(Lab(), "arrives")  # a fourth: room is made
    assert len(kept) == 3
    assert kept.resume(old_token, "x") is Gone.NO_ROOM, "the session idle the longest went"
    assert kept.resume(newer_token, "y") is newer
    assert kept.resume(open_token, "open") is open_lab
    assert not isinstance(kept.resume(arrival, "arrives"), Gone)


def test_open_tabs_are_never_let_go_even_beyond_the_cap() -> None:
    kept, _, tabs = store(kept=2)
    labs = {}
    for i in range(4):
        tabs.open.add(f"tab {i}")
        lab = Lab()
        labs[kept.new(lab, f"tab {i}")] = lab
    assert len(kept) == 4, "dropping an open session would free nothing: its tab holds it"
    assert all(kept.resume(t, "again") is lab for t, lab in labs.items())


def test_two_tabs_of_one_browser_share_the_session_and_it_stays_while_either_is_open() -> None:
    kept, clock, tabs = store(minutes=5)
    tabs.open |= {"tab 1", "tab 2"}
    lab = Lab()
    token = kept.new(lab, "tab 1")
    assert kept.resume(token, "tab 2") is lab
    tabs.open.discard("tab 1")
    clock.minutes(30)
    kept.sweep()
    assert kept.resume(token, "tab 3") is lab, "tab 2 still holds it"


def test_many_threads_at_once_each_get_their_own_session_back() -> None:
    """Streamlit runs each session's script on its own thread: visitors arriving, coming back,
    clicking and the sweeper, all at once, never mix one visitor's session with another's."""
    kept, clock, tabs = store(minutes=60, kept=10_000)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def visitor(n: int) -> None:
        try:
            start.wait()
            mine: list[tuple[str, Lab]] = []
            for i in range(300):
                lab = Lab(board_name=f"visitor {n} lab {i}")
                mine.append((kept.new(lab, f"{n}-{i}"), lab))
                token, expected = mine[i // 2]
                assert kept.resume(token, f"{n}-{i}-again") is expected
                kept.seen(token, f"{n}-{i}")
                if i % 50 == 0:
                    kept.sweep()
        except BaseException as exc:  # pragma: no cover - shown below
            errors.append(exc)

    threads = [threading.Thread(target=visitor, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(kept) == 8 * 300


def test_the_cap_holds_under_threads() -> None:
    kept, _, _ = store(kept=25)
    start = threading.Barrier(6)

    def arrive(n: int) -> None:
        start.wait()
        for i in range(200):
            kept.new(Lab(), f"{n}-{i}")

    threads = [threading.Thread(target=arrive, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(kept) == 25


def test_a_store_keeps_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SessionStore(60, 0)


def test_without_a_browser_nothing_is_kept() -> None:
    """``AppTest`` and a bare run have no browser to hold a cookie: a fresh state, not stored."""
    before = len(sessions.STORE)
    made = sessions.begin(Lab)
    assert isinstance(made, Lab)
    assert len(sessions.STORE) == before


def test_the_settings_come_from_the_environment_and_a_bad_value_says_so(capsys) -> None:
    assert read_setting("CARTPOLE_LAB_SESSION_MINUTES", {}) == 60
    assert read_setting("CARTPOLE_LAB_SESSIONS_KEPT", {}) == 40
    assert read_setting("CARTPOLE_LAB_SESSION_MINUTES", {"CARTPOLE_LAB_SESSION_MINUTES": " 15 "}) == 15
    assert read_setting("CARTPOLE_LAB_SESSION_MINUTES", {"CARTPOLE_LAB_SESSION_MINUTES": "0"}) == 0
    assert read_setting("CARTPOLE_LAB_SESSIONS_KEPT", {"CARTPOLE_LAB_SESSIONS_KEPT": "100"}) == 100
    assert capsys.readouterr().err == ""
    for name, bad in [
        ("CARTPOLE_LAB_SESSION_MINUTES", "1.5"),
        ("CARTPOLE_LAB_SESSION_MINUTES", "-3"),
        ("CARTPOLE_LAB_SESSION_MINUTES", "lots"),
        ("CARTPOLE_LAB_SESSIONS_KEPT", "0"),
    ]:
        default = read_setting(name, {})
        assert read_setting(name, {name: bad}) == default
        err = capsys.readouterr().err
        assert name in err and repr(bad) in err and f"using {default}" in err


def test_the_page_says_how_long_and_why_an_earlier_session_is_gone() -> None:
    assert kept_for(60) == "1 hour" and kept_for(120) == "2 hours"
    assert kept_for(1) == "1 minute" and kept_for(90) == "90 minutes"
    assert ended_line(Gone.EXPIRED, minutes=60) == (
        "Your earlier session ended: this server keeps a session 1 hour after your last visit."
    )
    assert "40 sessions at most" in ended_line(Gone.NO_ROOM, kept=40)
    assert "restarted" in ended_line(Gone.UNKNOWN)


def test_a_job_still_running_in_another_tab_is_not_taken_for_a_stopped_one() -> None:
    """Two tabs share a session: the page opened in the second tab while the first trains must
    not wrap the job up as stopped (it said "cancelled before it started" and lost its end)."""
    kept: list[object] = []
    live = {"done": False, "stopped": None, "running": True}
    finish_stopped(live, kept.append, "nothing")
    assert live["done"] is False and not kept
    live.update(running=False, stopped="half a network")  # the first tab's run ended on a Stop
    finish_stopped(live, lambda partial: kept.append(partial) or "kept", "nothing")
    assert live["done"] is True and kept == ["half a network"]
