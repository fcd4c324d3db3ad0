"""The one error type a user can cause.

Every mistake a person can make (an unknown env, a number out of range, a bad file)
raises :class:`UserError`, a ``ValueError`` whose message says what was wrong and what
to do instead. The dashboard shows it with ``st.error``; the CLI prints it on one line
and exits with status 2. Anything else is a bug.
"""

from __future__ import annotations

import dataclasses
from typing import Any


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


def within(low: float, high: float) -> dict[str, tuple[float, float]]:
    """Field metadata naming a numeric setting's allowed range, the one place it is written:
    ``epochs: int = field(default=4, metadata=within(1, 1000))``. The config's ``validate``,
    the dashboard's fields and the CLI all read it back with :func:`bounds`."""
    return {"range": (low, high)}


def bounds(config: Any, name: str) -> tuple[Any, Any]:
    """``(low, high)`` of setting ``name`` of a config dataclass (the class or an instance),
    as given by :func:`within` on its field; a ``KeyError`` for a setting without a range."""
    for f in dataclasses.fields(config):
        if f.name == name:
            return f.metadata["range"]
    raise KeyError(f"{getattr(config, '__name__', type(config).__name__)} has no {name!r}")


def default(config: type, name: str) -> Any:
    """The default of setting ``name`` of a config dataclass (its field's default, or what its
    default factory makes); a ``KeyError`` for a setting without one."""
    for f in dataclasses.fields(config):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise KeyError(f"{config.__name__}.{name} has no default")
    raise KeyError(f"{config.__name__} has no {name!r}")
