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
``CARTPOLE_LAB_SESSION_MINUTES`` (default 60; 0: not kept, a reload starts afresh),
``CARTPOLE_LAB_SESSIONS_KEPT`` (default 40) and ``CARTPOLE_LAB_SESSIONS_MB`` (the idle sessions'
approximate bytes, default 15 % of the container's memory). Beyond either cap, idle sessions
that hold nothing (:func:`nothing_made`) go first, then the one idle the longest; never one a
tab holds. A value that makes no sense is one line on the server's stderr and the default is
used.

A new session is kept from its first page, empty as it is (its token must be known for a
reload to find it, and its page settings come back with it); an empty one costs a few
kilobytes and is the first to go when room is needed. Its owner secret needs no keeping
before a run was saved, and saving one is a step (:attr:`~pages.common.Lab.steps`), so a
session that saved a run is never taken for an empty one. A session's size is measured
(:func:`approx_bytes`) when it goes idle and at each sweep, never on a script run.

Two tabs of one browser share one session. When one of them starts afresh, the other keeps
its page until reloaded: it says so in the sidebar and never writes the old token back into
the cookie (which now names the new session). A session let go for room or expired while a
tab still held it (a phone that dropped its connection for a while) is kept again, under
the same token, at that tab's next script run: the tab holds the very object.

The store is web-side (the library never imports Streamlit) and knows nothing of what it
keeps: :func:`begin` takes the function that makes a new session's state.
"""

from __future__ import annotations

import dataclasses
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

import numpy as np
import streamlit as st

from cartpole_core.storage import ANONYMOUS

T = TypeVar("T")

COOKIE = "cartpole_lab_session"
"""The start of the cookie's name holding this browser's session token; the name ends with this
server's port (:func:`cookie_name`): a browser sends a host's cookies to every port on it, and
two servers on one host would otherwise overwrite each other's."""
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
    "CARTPOLE_LAB_SESSIONS_MB": (
        "megabytes the idle sessions kept may take, roughly (0: 15 % of the memory)",
        "a whole number from 0 to 1048576",
        0,
    ),
}
_RANGES = {
    "CARTPOLE_LAB_SESSION_MINUTES": (0, 10080),
    "CARTPOLE_LAB_SESSIONS_KEPT": (1, 10000),
    "CARTPOLE_LAB_SESSIONS_MB": (0, 1 << 20),
}
MEMORY_SHARE = 0.15
"""Share of the container's memory the idle sessions may take by default."""
_DEFAULT_WORDS = {"CARTPOLE_LAB_SESSIONS_MB": "15 % of the memory"}


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
    shown = _DEFAULT_WORDS.get(name, str(default))
    print(f"CartPole Lab: {name}={raw!r} is not {accepts}; using {shown}.", file=sys.stderr)
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
    size: int | None = None
    """Its approximate bytes, measured once it is idle (None: not measured since a tab held it)."""
    empty: bool = False
    """Whether it held nothing worth keeping when measured."""


class SessionStore(Generic[T]):
    """Token → a session's state, kept ``minutes`` after the last tab holding it went away, at
    most ``kept`` of them and, when ``budget_bytes`` is given, idle ones of at most that many
    bytes together (as ``size`` measures them). Room is made from the idle sessions only: those
    ``is_empty`` says hold nothing go first, then the one idle the longest; one a tab holds
    never goes. Thread-safe: Streamlit runs each session's script on its own thread.

    ``clock`` gives seconds (monotonic); ``is_live(holder)`` says whether a Streamlit session
    is still connected (tests pass fakes of both). The store keeps only a hash of each token.
    """

    def __init__(
        self,
        minutes: float,
        kept: int,
        clock: Callable[[], float] = time.monotonic,
        is_live: Callable[[str], bool] = lambda holder: False,
        budget_bytes: int | None = None,
        size: Callable[[T], int] = lambda value: 0,
        is_empty: Callable[[T], bool] = lambda value: False,
    ) -> None:
        if kept < 1:
            raise ValueError(f"A session store keeps at least 1 session, not {kept}.")
        self.minutes, self.kept, self.budget_bytes = minutes, kept, budget_bytes
        self._clock, self._is_live, self._size, self._is_empty = clock, is_live, size, is_empty
        self._lock = threading.Lock()
        self._kept: dict[bytes, _Kept[T]] = {}
        self._gone: OrderedDict[bytes, Gone] = OrderedDict()
        self._left: OrderedDict[bytes, None] = OrderedDict()
        """Tokens forgotten by their visitor: apart from the others, so that many sessions
        expiring never push one out (a tab still holding it would keep it again)."""

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)

    def idle_bytes(self) -> int:
        """The approximate bytes of the idle sessions, as last measured."""
        with self._lock:
            return sum(e.size or 0 for e in self._kept.values() if not e.holders)

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
                return self._why(key)
            self._hold(entry, holder)
            return entry.value

    def seen(self, token: str, holder: str, value: T) -> Gone | None:
        """``holder``, which holds ``value`` under ``token``, used it now (a script run): its
        time starts again. None when the store keeps it, kept again if need be: let go for room
        or expired while this tab held it (the tab really holds it, so the same token brings it
        back; tokens come from :meth:`new` only, never from a visitor); :attr:`Gone.LEFT` when
        its visitor started afresh in another tab (then it is not kept again: the cookie now
        names the new session)."""
        key = _digest(token)
        with self._lock:
            entry = self._kept.get(key)
            if entry is not None:
                self._hold(entry, holder)
                return None
            if key in self._left:
                return Gone.LEFT
            self._gone.pop(key, None)
            self._kept[key] = _Kept(value, self._clock(), {holder})
            self._make_room()
            return None

    def forget(self, token: str) -> None:
        """Let go of the session of ``token`` now (its visitor started afresh); a tab still
        holding it is told so (:meth:`seen`), even when it had already expired."""
        key = _digest(token)
        with self._lock:
            self._kept.pop(key, None)
            self._gone.pop(key, None)
            self._remember(self._left, key, None)

    def sweep(self) -> None:
        """Note which sessions a tab still holds (their time starts again), let go of those
        kept their time since the last tab left, measure the idle ones and make room."""
        with self._lock:
            self._sweep(measure_all=True)

    # Below: called with the lock held.

    def _why(self, key: bytes) -> Gone:
        return Gone.LEFT if key in self._left else self._gone.get(key, Gone.UNKNOWN)

    def _hold(self, entry: _Kept[T], holder: str) -> None:
        entry.last_seen = self._clock()
        entry.holders.add(holder)
        entry.size = None  # a tab may change it: measured again once idle

    def _measure(self, entry: _Kept[T]) -> None:
        try:
            entry.size, entry.empty = int(self._size(entry.value)), bool(self._is_empty(entry.value))
        except Exception as exc:  # a session changing under a job's thread: try at the next sweep
            print(f"CartPole Lab: could not measure a kept session ({exc!r}).", file=sys.stderr)
            entry.size, entry.empty = 0, False

    def _sweep(self, measure_all: bool = False) -> None:
        now = self._clock()
        for key, entry in list(self._kept.items()):
            entry.holders = {h for h in entry.holders if self._is_live(h)}
            if entry.holders:
                entry.last_seen, entry.size = now, None
            elif now - entry.last_seen > self.minutes * 60:
                self._drop(key, Gone.EXPIRED)
            elif measure_all or entry.size is None:
                self._measure(entry)  # it went idle (or time passed): what it costs now
        self._make_room()

    def _make_room(self) -> None:
        while True:
            idle = [(key, entry) for key, entry in self._kept.items() if not entry.holders]
            for _, entry in idle:
                if entry.size is None:
                    self._measure(entry)
            if len(self._kept) > self.kept:
                candidates = idle
            elif self.budget_bytes is not None and sum(e.size or 0 for _, e in idle) > self.budget_bytes:
                candidates = [(key, entry) for key, entry in idle if entry.size]
            else:
                return
            if not candidates:
                return  # every kept session is open in a tab: letting one go would free nothing
            key, _ = min(candidates, key=lambda item: (not item[1].empty, item[1].last_seen))
            self._drop(key, Gone.NO_ROOM)

    def _drop(self, key: bytes, why: Gone) -> None:
        if self._kept.pop(key, None) is not None:
            self._remember(self._gone, key, why)

    @staticmethod
    def _remember(memory: OrderedDict[bytes, Any], key: bytes, what: Any) -> None:
        memory[key] = what
        memory.move_to_end(key)
        while len(memory) > GONE_REMEMBERED:
            memory.popitem(last=False)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


MAX_OBJECTS = 1_000_000
""":func:`approx_bytes` stops counting after this many objects (a bound on its time)."""


def approx_bytes(value: object) -> int:
    """Roughly the memory ``value`` holds: the bytes of every NumPy array, ``bytes`` (the GIFs,
    a ``.keras`` file) and string reachable from it through dataclass fields, dicts, lists,
    tuples and sets, each counted once, plus the containers themselves; other objects count
    nothing. Safe to call while a job's thread changes it (what changes under it is skipped)."""
    total, seen, stack = 0, set[int](), [value]
    while stack and len(seen) < MAX_OBJECTS:
        obj = stack.pop()
        if obj is None or isinstance(obj, (bool, int, float)) or id(obj) in seen:
            continue
        seen.add(id(obj))
        try:
            if isinstance(obj, np.ndarray):
                total += obj.nbytes
            elif isinstance(obj, (bytes, bytearray, str)):
                total += len(obj)
            elif isinstance(obj, memoryview):
                total += obj.nbytes
            elif isinstance(obj, dict):
                total += sys.getsizeof(obj)
                stack.extend(list(obj.values()))
            elif isinstance(obj, (list, tuple, set, frozenset)):
                total += sys.getsizeof(obj) + 8 * sum(isinstance(x, (int, float)) for x in obj)
                stack.extend(list(obj))
            elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
                stack.extend(getattr(obj, f.name, None) for f in dataclasses.fields(obj))
        except RuntimeError:  # a dict or list changed size while read: a job's thread is filling it
            continue
    return total


def nothing_made(lab: Any) -> bool:
    """Whether a session's state (a :class:`pages.common.Lab`) holds nothing its visitor would
    miss: no dataset, model, ensemble, result (:attr:`~pages.common.Lab.steps`), game played
    by hand, job under way or class-board name. Its widget settings alone do not count."""
    return (
        getattr(lab, "dataset", None) is None
        and getattr(lab, "model", None) is None
        and getattr(lab, "ensemble", None) is None
        and not getattr(lab, "steps", None)
        and not getattr(lab, "your_games", None)
        and all(getattr(lab, live, None) is None for live in ("live_training", "improve_live", "sweep_live"))
        and getattr(lab, "board_name", ANONYMOUS) == ANONYMOUS
    )


# ---------------------------------------------------------------- this server's sessions

MINUTES = read_setting("CARTPOLE_LAB_SESSION_MINUTES")
"""Minutes a session is kept after its last tab went away (0: not kept)."""
KEPT = read_setting("CARTPOLE_LAB_SESSIONS_KEPT")
"""Sessions kept at most."""


def budget_bytes(environ: Mapping[str, str] | None = None, memory_bytes: int | None = None) -> int:
    """The bytes the idle sessions may take: ``CARTPOLE_LAB_SESSIONS_MB`` when set, else
    :data:`MEMORY_SHARE` of ``memory_bytes`` (default: the container's memory)."""
    megabytes = read_setting("CARTPOLE_LAB_SESSIONS_MB", environ)
    if megabytes:
        return megabytes * 1024 * 1024
    if memory_bytes is None:
        from cartpole_core.container import capacity

        memory_bytes = capacity().memory_bytes
    return int(MEMORY_SHARE * memory_bytes)


BUDGET_BYTES = budget_bytes()
"""The idle sessions' bytes at most."""


def _is_live(holder: str) -> bool:
    """Whether the Streamlit session ``holder`` is still connected (a tab is open on it)."""
    from streamlit import runtime

    return runtime.exists() and bool(runtime.get_instance().is_active_session(holder))


STORE: SessionStore[Any] = SessionStore(
    MINUTES, KEPT, is_live=_is_live, budget_bytes=BUDGET_BYTES, size=approx_bytes, is_empty=nothing_made
)
"""This server's kept sessions (in its memory: a restart ends them all)."""

_TOKEN_KEY = "_lab_session_token"
"""Where a Streamlit session keeps its token (``_``: never among the remembered settings)."""
_ENDED_KEY = "_lab_session_ended"
"""Where it keeps the line saying an earlier session was not kept ("" when none)."""

_sweeper_lock = threading.Lock()
_sweeper: list[threading.Thread] = []


def sweep_until(store: SessionStore[Any], wait: Callable[[], bool]) -> None:
    """Sweep ``store`` each time ``wait()`` returns True (it returns False to stop); a sweep that
    fails is one line on stderr, and the next one comes as usual."""
    while wait():
        try:
            store.sweep()
        except Exception as exc:
            print(f"CartPole Lab: sweeping the kept sessions failed ({exc!r}); trying again later.", file=sys.stderr)


def _start_sweeper() -> None:
    """Once per server: every :data:`SWEEP_SECONDS`, note the sessions tabs still hold, let
    expired ones go (their memory with them) and make room."""
    with _sweeper_lock:
        if _sweeper:
            return

        def wait() -> bool:
            time.sleep(SWEEP_SECONDS)
            return True

        thread = threading.Thread(target=sweep_until, args=(STORE, wait), name="cartpole-lab-sessions", daemon=True)
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


FORGOTTEN = "This session was forgotten in another tab: reload to open the new one."
"""What a tab says when its session was forgotten (Start afresh) in another tab."""


def cookie_name(port: int | None = None) -> str:
    """The cookie naming this server's session token: :data:`COOKIE` and the server's port
    (default: this server's ``server.port``), e.g. ``"cartpole_lab_session_8501"``. A browser
    sends a host's cookies to all its ports: two servers on one host need two names."""
    if port is None:
        port = int(st.get_option("server.port"))
    return f"{COOKIE}_{port}"


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
    token = st.context.cookies.get(cookie_name())
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
    the same session keeps what it shows until it reloads, and says so (:func:`show_kept`)."""
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


def show_kept(value: Any, nothing_yet: bool) -> None:
    """Once per script run, in the sidebar: how long this session (``value``, its state) outlives
    its tab (after the line saying why an earlier one did not come back, while ``nothing_yet``
    is made); note the visit (:meth:`SessionStore.seen`); and have the browser keep this
    session's token in its cookie (this site only, over HTTPS when the page is). The browser
    itself checks that it kept it and says so if not. A session forgotten in another tab says
    so instead, and leaves the cookie alone: it names the other tab's new session."""
    ended = str(st.session_state.get(_ENDED_KEY, ""))
    if ended and nothing_yet:
        st.caption(ended)
    token = st.session_state.get(_TOKEN_KEY)
    holder = _browser_session()
    if token is None or holder is None:
        st.caption("Not kept after you leave: a reload starts afresh.")
        return
    if STORE.seen(str(token), holder, value) is Gone.LEFT:
        st.caption(FORGOTTEN)
        return
    kept = f"Kept for {kept_for()} after you leave, on this server: a reload brings it back."
    max_age = COOKIE_DAYS * 24 * 3600
    name = cookie_name()
    st.html(
        f'<p class="lab-session-kept" style="font-size: 0.875rem; opacity: 0.6; margin: 0">{kept}</p>'
        "<script>"
        f"document.cookie = '{name}={token}; path=/; max-age={max_age}; SameSite=Strict'"
        " + (location.protocol === 'https:' ? '; Secure' : '');"
        f"if (!document.cookie.split('; ').includes('{name}={token}'))"
        f"  for (const line of document.querySelectorAll('.lab-session-kept')) line.textContent = '{REFUSED}';"
        "</script>",
        unsafe_allow_javascript=True,
    )
