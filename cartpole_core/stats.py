"""Summaries over seeds: a mean and its 95 % confidence interval that stays inside the
range a score can take.

Results vary a lot between seeds, so every comparison over seeds (Compare, sweeps) reports
the mean of the per-seed figures with a Student t interval. A t interval is symmetric and
can run past what a game allows (a mean of 480 over 3 seeds "up to 530" on CartPole-v1,
where 500 is the most); such an interval is cut at the score range and says so
(:attr:`MeanInterval.clipped`), rather than showing scores nobody can reach.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Two-sided 95 % Student t critical values for 1..30 degrees of freedom (then ~1.96).
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@dataclass(frozen=True)
class MeanInterval:
    """A mean over seeds with its 95 % confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    """Values the mean is taken over (one per seed)."""
    clipped: bool = False
    """True when the t interval ran past the score range and was cut at its edge."""


def t95(n: int) -> float:
    """Two-sided 95 % Student t critical value for a mean of ``n`` values (n >= 2)."""
    return _T95[n - 2] if n - 1 <= len(_T95) else 1.96


def mean_interval(values: Sequence[float], score_range: tuple[float, float] = (-math.inf, math.inf)) -> MeanInterval:
    """Mean of ``values`` (e.g. one mean score per seed) and its 95 % Student t interval,
    cut at ``score_range`` (see :func:`cartpole_core.envs.score_range`). One value gives a
    point; no values is a ``ValueError``."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = math.fsum(values) / n
    if n < 2:
        return MeanInterval(mean, mean, mean, 1)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t95(n) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    lowest, highest = score_range
    clipped = low < lowest or high > highest
    return MeanInterval(mean, max(low, lowest), min(high, highest), n, clipped)
