"""The store that brings a visitor's session back after a reload (``pages/sessions.py``, issue 30
item 4): kept while a tab holds it and ``minutes`` after, at most ``kept`` of them, one visitor's
never another's, safe across Streamlit's threads. A fake clock and a fake "is this tab still
connected" drive it."""

from __future__ import annotations

import gc
import re
import threading
import types
import weakref

import numpy as np
import pytest

from cartpole_core.dataset import Dataset
from cartpole_core.human import HumanGame
from pages import sessions
from pages.common import Lab, finish_stopped
from pages.sessions import (
    FORGOTTEN,
    TOKEN_PATTERN,
    Gone,
    SessionStore,
    approx_bytes,
    budget_bytes,
    cookie_name,
    ended_line,
    kept_for,
    nothing_made,
    read_setting,
    sweep_until,
)

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
    assert kept.seen(token, "tab", lab) is None, "still kept"
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
                assert kept.seen(token, f"{n}-{i}", expected) is None
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


# ---------------------------------------------------------------- a tab that outlived its session


def test_a_tab_whose_session_was_forgotten_in_another_tab_is_told_and_it_is_not_kept_again() -> None:
    kept, _, tabs = store()
    tabs.open |= {"tab A", "tab B"}
    lab = Lab(board_name="Ada")
    token = kept.new(lab, "tab A")
    assert kept.resume(token, "tab B") is lab  # the same browser's second tab
    kept.forget(token)  # tab A: Start afresh
    fresh = kept.new(Lab(), "tab A")
    assert kept.seen(token, "tab B", lab) is Gone.LEFT, "tab B's next script run learns it"
    assert kept.seen(token, "tab B", lab) is Gone.LEFT, "and is not kept again by asking"
    assert kept.resume(token, "tab C") is Gone.LEFT and len(kept) == 1
    assert isinstance(kept.resume(fresh, "tab B reloaded"), Lab)


def test_a_session_forgotten_after_it_expired_is_still_forgotten_for_a_tab_holding_it() -> None:
    kept, clock, _ = store(minutes=10)
    lab = Lab()
    token = kept.new(lab, "tab B")  # tab B disconnected (the fake says no tab is live)...
    clock.minutes(11)
    kept.sweep()
    assert kept.resume(token, "x") is Gone.EXPIRED
    kept.forget(token)  # ...while tab A, still holding it too, started afresh
    assert kept.seen(token, "tab B", lab) is Gone.LEFT


def test_a_session_that_expired_while_its_tab_was_away_is_kept_again_under_the_same_token() -> None:
    kept, clock, tabs = store(minutes=10)
    lab = Lab(board_name="Ada")
    token = kept.new(lab, "tab")  # the phone dropped the connection at once
    clock.minutes(11)
    kept.sweep()
    assert kept.resume(token, "someone") is Gone.EXPIRED
    tabs.open.add("tab")  # back: Streamlit kept its session a while, and the Lab in it
    assert kept.seen(token, "tab", lab) is None, "this tab holds the Lab: it is kept again"
    assert kept.resume(token, "reloaded") is lab, "and a reload brings it back"


def test_a_session_let_go_for_room_while_its_tab_was_away_is_kept_again() -> None:
    kept, clock, tabs = store(kept=1)
    lab = Lab(board_name="Ada")
    token = kept.new(lab, "tab")
    clock.minutes(1)
    tabs.open.add("newcomer")
    other = kept.new(Lab(board_name="Bo"), "newcomer")  # no room: the idle one goes
    assert kept.resume(token, "x") is Gone.NO_ROOM
    tabs.open.add("tab")
    assert kept.seen(token, "tab", lab) is None
    assert kept.resume(token, "tab reloaded") is lab
    assert kept.resume(other, "newcomer") is not None and len(kept) == 2, "both are open in a tab"


# ---------------------------------------------------------------- memory


def test_sessions_with_nothing_in_them_go_first() -> None:
    kept, clock, _ = store(kept=2)
    kept._is_empty = nothing_made  # as this server's store is made
    full = Lab(board_name="Ada")
    full_token = kept.new(full, "gone 1")  # the oldest, idle
    clock.minutes(1)
    empty_token = kept.new(Lab(), "gone 2")
    clock.minutes(1)
    kept.new(Lab(), "arrives")
    assert kept.resume(empty_token, "x") is Gone.NO_ROOM, "the empty one went, though newer"
    assert kept.resume(full_token, "y") is full


def test_idle_sessions_are_capped_by_their_bytes_measured_when_they_go_idle() -> None:
    clock, tabs = Clock(), Tabs()
    measured: list[str] = []

    def size(lab: Lab) -> int:
        measured.append(lab.board_name)
        return int(lab.board_name.split()[-1])

    kept = SessionStore(60, 40, clock=clock, is_live=tabs, budget_bytes=100, size=size)
    tabs.open.add("open")
    big_open = Lab(board_name="open 500")
    open_token = kept.new(big_open, "open")  # a tab holds it: never counted, never let go
    for _ in range(5):
        assert kept.seen(open_token, "open", big_open) is None
    kept.sweep()
    assert "open 500" not in measured, "a session a tab holds is not measured, script run or sweep"
    old, newer = Lab(board_name="old 60"), Lab(board_name="newer 30")
    old_token = kept.new(old, "gone 1")
    clock.minutes(1)
    newer_token = kept.new(newer, "gone 2")
    kept.sweep()
    assert kept.idle_bytes() == 90
    clock.minutes(1)
    kept.new(Lab(board_name="third 40"), "gone 3")  # 130 bytes idle: the oldest goes
    kept.sweep()
    assert kept.resume(old_token, "x") is Gone.NO_ROOM
    assert kept.resume(newer_token, "y") is newer
    assert kept.resume(open_token, "open") is big_open
    assert kept.idle_bytes() <= 100


def test_a_session_larger_than_the_whole_budget_goes_once_idle() -> None:
    clock, tabs = Clock(), Tabs()
    kept = SessionStore(60, 40, clock=clock, is_live=tabs, budget_bytes=100, size=lambda lab: 1000)
    tabs.open.add("tab")
    lab = Lab(board_name="Ada")
    token = kept.new(lab, "tab")
    kept.sweep()
    assert kept.resume(token, "tab") is lab, "kept while its tab is open"
    tabs.open.clear()
    kept.sweep()
    assert kept.resume(token, "tab") is Gone.NO_ROOM


def test_a_size_that_fails_is_one_line_and_counts_nothing(capsys) -> None:
    def size(lab: Lab) -> int:
        raise RuntimeError("dictionary changed size during iteration")

    kept = SessionStore(60, 40, budget_bytes=10, size=size)
    token = kept.new(Lab(), "tab")
    kept.sweep()
    assert isinstance(kept.resume(token, "tab"), Lab)
    assert "could not measure" in capsys.readouterr().err


def test_approx_bytes_counts_arrays_and_gifs_once_each() -> None:
    assert approx_bytes(Lab()) < 20_000, "an empty session costs next to nothing"
    rows = 100_000
    dataset = Dataset(
        observations=np.zeros((rows, 4), np.float32),
        actions=np.zeros(rows, np.int64),
        game_ids=np.zeros(rows, np.int64),
        game_scores=np.zeros(500, np.float32),
        metadata={"env_id": "CartPole-v1", "n_actions": 2},
    )
    arrays = rows * (16 + 8 + 8) + 500 * 4
    lab = Lab(dataset=dataset, random_gif=b"G" * 300_000, evaluation_gifs={"network": (b"g" * 200_000, "caption")})
    lab.undo = ("the dataset replaced", Lab(dataset=dataset))  # the same arrays, not counted twice
    size = approx_bytes(lab)
    assert arrays + 500_000 <= size < arrays + 500_000 + 50_000, size


def test_nothing_made_is_a_session_without_work_games_or_a_board_name() -> None:
    assert nothing_made(Lab())
    assert nothing_made(Lab(settings={"gen_games": 700})), "settings alone are not worth memory"
    assert not nothing_made(Lab(board_name="Ada"))
    game = HumanGame("CartPole-v1", 0, np.zeros(3, np.int64), np.zeros((4, 4), np.float32), 3.0, True)
    assert not nothing_made(Lab(your_games=[game]))
    assert not nothing_made(Lab(live_training={"running": True}))


def test_the_budget_is_a_share_of_the_memory_unless_set(capsys) -> None:
    gb = 1024**3
    assert budget_bytes({}, memory_bytes=10 * gb) == int(1.5 * gb)
    assert budget_bytes({"CARTPOLE_LAB_SESSIONS_MB": "200"}, memory_bytes=10 * gb) == 200 * 1024**2
    assert budget_bytes({"CARTPOLE_LAB_SESSIONS_MB": "lots"}, memory_bytes=10 * gb) == int(1.5 * gb)
    assert "CARTPOLE_LAB_SESSIONS_MB='lots'" in capsys.readouterr().err
    assert sessions.BUDGET_BYTES > 0


def test_the_sweeper_goes_on_after_a_sweep_fails(capsys) -> None:
    sweeps: list[int] = []

    class Flaky:
        def sweep(self) -> None:
            sweeps.append(len(sweeps))
            if len(sweeps) == 1:
                raise KeyError("gone")

    rounds = iter([True, True, True, False])
    sweep_until(Flaky(), lambda: next(rounds))  # type: ignore[arg-type]
    assert sweeps == [0, 1, 2]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sweeping the kept sessions failed" in err[0]


def test_each_port_has_its_own_cookie() -> None:
    assert cookie_name(8501) == "cartpole_lab_session_8501" != cookie_name(8502)


# ---------------------------------------------------------------- begin, start afresh, the sidebar


class FakeStreamlit:
    """What :mod:`pages.sessions` uses of Streamlit, for one browser with several tabs: each
    tab's session state, the browser's cookies (as the page's script writes them) and what the
    sidebar drew."""

    def __init__(self) -> None:
        self.tabs: dict[str, dict] = {}
        self.tab = ""
        self.cookies: dict[str, str] = {}
        self.drawn: list[str] = []
        self.context = types.SimpleNamespace(headers={"Host": "127.0.0.1"}, cookies=self.cookies)

    @property
    def session_state(self) -> dict:
        return self.tabs.setdefault(self.tab, {})

    def get_option(self, name: str) -> int:
        assert name == "server.port"
        return 8611

    def toast(self, text: str, **kwargs: object) -> None:
        self.drawn.append(text)

    def caption(self, text: str) -> None:
        self.drawn.append(text)

    def html(self, body: str, **kwargs: object) -> None:
        self.drawn.append(body)
        written = re.search(r"document\.cookie = '([^=]+)=([^;]+);", body)
        assert written, body
        self.cookies[written.group(1)] = written.group(2)  # the browser keeps it


@pytest.fixture
def one_browser(monkeypatch: pytest.MonkeyPatch) -> FakeStreamlit:
    fake = FakeStreamlit()
    kept, _, tabs = store()
    tabs.open |= {"tab A", "tab B", "tab B reloaded"}
    monkeypatch.setattr(sessions, "st", fake)
    monkeypatch.setattr(sessions, "STORE", kept)
    monkeypatch.setattr(sessions, "MINUTES", 60)
    monkeypatch.setattr(sessions, "_browser_session", lambda: fake.tab)
    monkeypatch.setattr(sessions, "_start_sweeper", lambda: None)
    return fake


def run_in(fake: FakeStreamlit, tab: str) -> Lab:
    """One script run in ``tab``: its Lab (begun on its first run) and the sidebar's line."""
    fake.tab, fake.drawn = tab, []
    if "lab" not in fake.session_state:
        fake.session_state["lab"] = sessions.begin(Lab)
    state = fake.session_state["lab"]
    sessions.show_kept(state, nothing_yet=nothing_made(state))
    return state


def test_start_afresh_in_one_tab_tells_the_other_and_its_reload_opens_the_new_session(one_browser) -> None:
    fake = one_browser
    name = cookie_name(8611)
    old = run_in(fake, "tab A")
    old.board_name = "Ada"
    old_token = fake.cookies[name]
    assert TOKEN_PATTERN.fullmatch(old_token) and "Kept for 1 hour" in fake.drawn[-1]
    assert run_in(fake, "tab B") is old, "the same browser's second tab: the same session"

    fake.tab = "tab A"  # Start afresh in tab A, then its next script run
    fake.session_state["lab"] = sessions.start_afresh(Lab)
    fresh = run_in(fake, "tab A")
    fresh.board_name = "Ada again"
    new_token = fake.cookies[name]
    assert fresh is not old and new_token != old_token

    assert run_in(fake, "tab B") is old, "tab B keeps its page until reloaded"
    assert fake.drawn == [FORGOTTEN]
    assert fake.cookies[name] == new_token, "tab B never writes the old token back"
    assert run_in(fake, "tab B reloaded") is fresh, "tab B's reload opens tab A's new session"


def test_a_first_visit_keeps_a_new_session_and_a_stale_cookie_says_why(one_browser) -> None:
    fake = one_browser
    fake.cookies[cookie_name(8611)] = "Q" * 43  # from before a restart
    lab = run_in(fake, "tab A")
    assert nothing_made(lab)
    assert fake.drawn[0] == ended_line(Gone.UNKNOWN), "the toast"
    assert fake.cookies[cookie_name(8611)] != "Q" * 43
    assert len(sessions.STORE) == 1
