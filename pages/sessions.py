"""Work that survives a reload: a visitor's session kept in this server's memory, found again
by a secret token in a cookie, for a while after they leave.

Streamlit starts a new session (empty ``st.session_state``) on every page load, so a reload or
a phone browser dropping the tab used to wipe the visitor's dataset and model. Here each
browser gets a random token (``secrets.token_urlsafe(32)``) in the cookie :data:`COOKIE`,
written by a line of JavaScript in the page; Streamlit hands the cookies of each new
connection to the script (``st.context.cookies``), and a token this server knows brings back
the very session object it kept (:class:`SessionStore`; no copy, so an open session costs
nothing more). The token is never in the address (a copied link would hand the session to
whoever opens it) and never drawn in the page; a token this server does not know (expired,
dropped for room, or the server restarted) never becomes a session's: the visitor gets a new
session with a new token, and one line saying why the earlier one is gone.

How long a session is kept after its last tab is gone, and how many are kept, are
``CARTPOLE_LAB_SESSION_MINUTES`` (default 60; 0: not kept, a reload starts afresh) and
``CARTPOLE_LAB_SESSIONS_KEPT`` (default 40; beyond it the session idle the longest goes first,
never one a tab holds). A value that makes no sense is one line on the server's stderr and
the default is used.

The store is web-side (the library never imports Streamlit) and knows nothing of what it
keeps: :func:`begin` takes the function that makes a new session's state.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import streamlit as st

T = TypeVar("T")

COOKIE = "cartpole_lab_session"
"""The cookie holding this browser's session token."""
COOKIE_DAYS = 7
"""How long the browser keeps the cookie (days): long after the server has let the session go,
so a later visit can say the earlier session ended rather than start afresh without a word."""
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
"""What ``secrets.token_urlsafe(32)`` makes; a cookie not like it is not this app's."""
SWEEP_SECONDS = 60.0
"""How often the server notes which kept sessions a tab still holds, and lets expired ones go."""
GONE_REMEMBERED = 1000
"""How many ended sessions' tokens (their hashes) are remembered, to say why one is gone."""

#: The environment variables of this module: what each sets, what it accepts, its default.
VARIABLES: dict[str, tuple[str, str, int]] = {
    "CARTPOLE_LAB_SESSION_MINUTES": (
        "minutes a visitor's session is kept after they leave (0: not kept)",
        "a whole number from 0 to 10080",
        60,
    ),
    "CARTPOLE_LAB_SESSIONS_KEPT": ("sessions kept in the server's memory", "a whole number from 1 to 10000", 40),
}
_RANGES = {"CARTPOLE_LAB_SESSION_MINUTES": (0, 10080), "CARTPOLE_LAB_SESSIONS_KEPT": (1, 10000)}


def read_setting(name: str, environ: Mapping[str, str] | None = None) -> int:
    """The value of the variable ``name`` (one of :data:`VARIABLES`) in ``environ`` (default:
    ``os.environ``), else its default; a value out of range or not a whole number keeps the
    default and says so in one line on stderr (visitors never see it)."""
    env = os.environ if environ is None else environ
    _, accepts, default = VARIABLES[name]
    low, high = _RANGES[name]
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    if text.isdigit() and low <= int(text) <= high:
        return int(text)
    print(f"CartPole Lab: {name}={raw!r} is not {accepts}; using {default}.", file=sys.stderr)
    return default


class Gone(enum.Enum):
    """Why a token brings back no session."""

    EXPIRED = "expired"
    """Kept its time after the visitor left, then let go."""
    NO_ROOM = "no room"
    """Let go to make room for newer visitors (the store was full)."""
    LEFT = "left"
    """Its visitor started afresh (:func:`start_afresh`)."""
    UNKNOWN = "unknown"
    """Never seen by this server since it started (it restarted, or the token is not its)."""


@dataclass
class _Kept(Generic[T]):
    value: T
    last_seen: float
    """When a tab last held it (the store's clock, seconds)."""
    holders: set[str] = field(default_factory=set)
    """The Streamlit sessions (their ids) that hold it: one per tab."""


class SessionStore(Generic[T]):
    """Token → a session's state, kept ``minutes`` after the last tab holding it went away, at
    most ``kept`` of them (the session idle the longest goes first; one a tab holds never
    does). Thread-safe: Streamlit runs each session's script on its own thread.

    ``clock`` gives seconds (monotonic); ``is_live(holder)`` says whether a Streamlit session
    is still connected (tests pass fakes of both). The store keeps only a hash of each token.
    """

    def __init__(
        self,
        minutes: float,
        kept: int,
        clock: Callable[[], float] = time.monotonic,
        is_live: Callable[[str], bool] = lambda holder: False,
    ) -> None:
        if kept < 1:
            raise ValueError(f"A session store keeps at least 1 session, not {kept}.")
        self.minutes, self.kept = minutes, kept
        self._clock, self._is_live = clock, is_live
        self._lock = threading.Lock()
        self._kept: dict[bytes, _Kept[T]] = {}
        self._gone: OrderedDict[bytes, Gone] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)

    def new(self, value: T, holder: str) -> str:
        """Keep ``value`` for the Streamlit session ``holder``; returns its new secret token."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._sweep()
            self._kept[_digest(token)] = _Kept(value, self._clock(), {holder})
            self._make_room()
        return token

    def resume(self, token: str, holder: str) -> T | Gone:
        """The value kept under ``token``, now held by ``holder`` too; else why there is none."""
        key = _digest(token)
        with self._lock:
            self._sweep()
            entry = self._kept.get(key)
            if entry is None:
                return self._gone.get(key, Gone.UNKNOWN)
            entry.last_seen = self._clock()
            entry.holders.add(holder)
            return entry.value

    def seen(self, token: str, holder: str) -> None:
        """``holder`` used the session of ``token`` now (a script run): its time starts again."""
        with self._lock:
            entry = self._kept.get(_digest(token))
            if entry is not None:
                entry.last_seen = self._clock()
                entry.holders.add(holder)

    def forget(self, token: str) -> None:
        """Let go of the session of ``token`` now (its visitor started afresh)."""
        with self._lock:
            self._drop(_digest(token), Gone.LEFT)

    def sweep(self) -> None:
        """Note which sessions a tab still holds (their time starts again) and let go of those
        kept their time since the last tab left."""
        with self._lock:
            self._sweep()

    # Below: called with the lock held.

    def _sweep(self) -> None:
        now = self._clock()
        for key, entry in list(self._kept.items()):
            entry.holders = {h for h in entry.holders if self._is_live(h)}
            if entry.holders:
                entry.last_seen = now
            elif now - entry.last_seen > self.minutes * 60:
                self._drop(key, Gone.EXPIRED)

    def _make_room(self) -> None:
        while len(self._kept) > self.kept:
            idle = [(entry.last_seen, key) for key, entry in self._kept.items() if not entry.holders]
            if not idle:
                return  # every kept session is open in a tab: letting one go would free nothing
            self._drop(min(idle)[1], Gone.NO_ROOM)

    def _drop(self, key: bytes, why: Gone) -> None:
        if self._kept.pop(key, None) is None:
            return
        self._gone[key] = why
        while len(self._gone) > GONE_REMEMBERED:
            self._gone.popitem(last=False)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# ---------------------------------------------------------------- this server's sessions

MINUTES = read_setting("CARTPOLE_LAB_SESSION_MINUTES")
"""Minutes a session is kept after its last tab went away (0: not kept)."""
KEPT = read_setting("CARTPOLE_LAB_SESSIONS_KEPT")
"""Sessions kept at most."""


def _is_live(holder: str) -> bool:
    """Whether the Streamlit session ``holder`` is still connected (a tab is open on it)."""
    from streamlit import runtime

    return runtime.exists() and bool(runtime.get_instance().is_active_session(holder))


STORE: SessionStore[Any] = SessionStore(MINUTES, KEPT, is_live=_is_live)
"""This server's kept sessions (in its memory: a restart ends them all)."""

_TOKEN_KEY = "_lab_session_token"
"""Where a Streamlit session keeps its token (``_``: never among the remembered settings)."""
_ENDED_KEY = "_lab_session_ended"
"""Where it keeps the line saying an earlier session was not kept ("" when none)."""

_sweeper_lock = threading.Lock()
_sweeper: list[threading.Thread] = []


def _start_sweeper() -> None:
    """Once per server: every :data:`SWEEP_SECONDS`, note the sessions tabs still hold and let
    expired ones go (their memory with them)."""
    with _sweeper_lock:
        if _sweeper:
            return

        def sweep_forever() -> None:
            while True:
                time.sleep(SWEEP_SECONDS)
                STORE.sweep()

        thread = threading.Thread(target=sweep_forever, name="cartpole-lab-sessions", daemon=True)
        thread.start()
        _sweeper.append(thread)


def kept_for(minutes: int = MINUTES) -> str:
    """How long ``minutes`` is in words: ``"1 hour"``, ``"1 minute"``, ``"90 minutes"``."""
    if minutes and minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' * (hours != 1)}"
    return f"{minutes} minute{'s' * (minutes != 1)}"


def ended_line(why: Gone, minutes: int = MINUTES, kept: int = KEPT) -> str:
    """The line saying why the visitor's earlier session did not come back."""
    if why is Gone.EXPIRED:
        reason = f"this server keeps a session {kept_for(minutes)} after your last visit"
    elif why is Gone.LEFT:
        reason = "you started afresh"
    elif why is Gone.NO_ROOM:
        reason = f"this server keeps {kept} sessions at most and made room for newer visitors"
    else:
        reason = "this server has restarted since your last visit"
    return f"Your earlier session ended: {reason}."


def _browser_session() -> str | None:
    """This script run's Streamlit session id when a browser is on the other end (one that
    sent its request's headers); None without one (``AppTest``, a bare run)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not st.context.headers:
        return None
    return str(ctx.session_id)


def begin(make: Callable[[], T]) -> T:
    """The state of a new Streamlit session (call it once per session): the one this browser's
    cookie names when this server still keeps it, else ``make()``, kept under a new token.

    Without a browser (``AppTest``), or with :data:`MINUTES` 0, nothing is kept: ``make()``."""
    holder = _browser_session()
    if holder is None or MINUTES <= 0:
        return make()
    token = st.context.cookies.get(COOKIE)
    ended = ""
    if token is not None and TOKEN_PATTERN.fullmatch(token):
        found = STORE.resume(token, holder)
        if not isinstance(found, Gone):
            st.session_state[_TOKEN_KEY] = token
            _start_sweeper()
            return found
        ended = ended_line(found)
    value = make()
    st.session_state[_TOKEN_KEY] = STORE.new(value, holder)
    st.session_state[_ENDED_KEY] = ended
    _start_sweeper()
    if ended:
        st.toast(ended, icon=":material/history:", duration="long")
    return value


def start_afresh(make: Callable[[], T]) -> T:
    """Forget this visitor's session (its work, its widgets, its token) and begin a new one,
    ``make()``, under a new token: for a shared computer, or to clear the slate. Another tab of
    the same session keeps what it shows until it reloads."""
    token, holder = st.session_state.get(_TOKEN_KEY), _browser_session()
    if token is not None:
        STORE.forget(str(token))
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    value = make()
    if holder is not None and MINUTES > 0:
        st.session_state[_TOKEN_KEY] = STORE.new(value, holder)
    return value


REFUSED = "This browser does not keep the cookie that brings a session back: here a reload starts afresh."
"""What the page says instead of how long it keeps the session, when the browser refuses the
cookie (e.g. the app in a frame of another site)."""


def show_kept(nothing_yet: bool) -> None:
    """Once per script run, in the sidebar: how long this session outlives its tab (after the
    line saying why an earlier one did not come back, while ``nothing_yet`` is made); note the
    visit; and have the browser keep this session's token in its cookie (this site only, over
    HTTPS when the page is). The browser itself checks that it kept it and says so if not."""
    ended = str(st.session_state.get(_ENDED_KEY, ""))
    if ended and nothing_yet:
        st.caption(ended)
    token = st.session_state.get(_TOKEN_KEY)
    holder = _browser_session()
    if token is None or holder is None:
        st.caption("Not kept after you leave: a reload starts afresh.")
        return
    STORE.seen(token, holder)
    kept = f"Kept for {kept_for()} after you leave, on this server: a reload brings it back."
    max_age = COOKIE_DAYS * 24 * 3600
    st.html(
        f'<p class="lab-session-kept" style="font-size: 0.875rem; opacity: 0.6; margin: 0">{kept}</p>'
        "<script>"
        f"document.cookie = '{COOKIE}={token}; path=/; max-age={max_age}; SameSite=Strict'"
        " + (location.protocol === 'https:' ? '; Secure' : '');"
        f"if (!document.cookie.split('; ').includes('{COOKIE}={token}'))"
        f"  for (const line of document.querySelectorAll('.lab-session-kept')) line.textContent = '{REFUSED}';"
        "</script>",
        unsafe_allow_javascript=True,
    )
