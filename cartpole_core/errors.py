"""The one error type a user can cause.

Every mistake a person can make (an unknown env, a number out of range, a bad file)
raises :class:`UserError`, a ``ValueError`` whose message says what was wrong and what
to do instead. The dashboard shows it with ``st.error``; the CLI prints it on one line
and exits with status 2. Anything else is a bug.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input; the message names the problem and the fix."""


def check_range(name: str, value: float, low: float, high: float, hint: str = "") -> None:
    """Raise :class:`UserError` unless ``low <= value <= high``.

    ``name`` is the setting as the user knows it (e.g. ``"games"``); ``hint`` may add why.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{name} must be a number, got {value!r}.")
    if value != value or not (low <= value <= high):  # value != value catches NaN
        extra = f" {hint}" if hint else ""
        raise UserError(f"{name} must be between {low:g} and {high:g}, got {value:g}.{extra}")
