"""Progress reports: how a long stage tells its caller how far it is.

Every long stage (generation, training, evaluation, ensembles, generations) takes an
optional ``progress`` callback. It is called now and then with a :class:`Progress`; when it
returns ``True`` the stage stops as soon as it cleanly can and returns what it has (stages
that cannot stop part-way ignore the answer). The library itself never prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Progress:
    """One progress report."""

    fraction: float
    """Share of the stage's work done, 0.0 to 1.0."""
    message: str
    """A short line for a person, e.g. ``"epoch 2/4, batch 120/349"``."""
    metrics: Mapping[str, float] = field(default_factory=dict)
    """Figures so far, e.g. ``{"loss": 0.66, "accuracy": 0.61}`` while training."""
    payload: Any = None
    """A piece of the result handed over early, for a live view (e.g. a finished
    generation's record and network, from :func:`cartpole_core.jobs.improve_job`)."""


ProgressCallback = Callable[[Progress], "bool | None"]
"""Called with each report; return ``True`` to ask the stage to stop early."""


def report(callback: ProgressCallback | None, fraction: float, message: str, **metrics: float) -> bool:
    """Send one report if there is a callback; return True when it asked to stop."""
    if callback is None:
        return False
    return bool(callback(Progress(min(max(fraction, 0.0), 1.0), message, metrics)))
