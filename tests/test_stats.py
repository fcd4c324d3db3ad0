"""Means over seeds with 95 % intervals that stay inside the score range."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cartpole_core.envs import score_range
from cartpole_core.stats import mean_interval, t95


def test_interval_is_the_student_t_interval_when_it_fits():
    values = [200.0, 220.0, 240.0]
    m = mean_interval(values, (0.0, 500.0))
    half = t95(3) * np.std(values, ddof=1) / math.sqrt(3)
    assert m.mean == pytest.approx(220.0)
    assert (m.low, m.high) == pytest.approx((220.0 - half, 220.0 + half))
    assert m.n == 3 and not m.clipped


def test_interval_near_the_maximum_is_cut_there_and_says_so():
    """Compare once showed an ensemble's "420.0 – 507.0" on CartPole-v1, where 500 is the most."""
    m = mean_interval([500.0, 500.0, 400.0], score_range("CartPole-v1", 500))
    assert m.high == 500.0 and m.clipped
    assert m.low < m.mean < m.high


def test_one_value_is_a_point_and_no_value_is_an_error():
    m = mean_interval([42.0])
    assert (m.mean, m.low, m.high, m.n) == (42.0, 42.0, 42.0, 1)
    with pytest.raises(ValueError):
        mean_interval([])


@pytest.mark.parametrize(
    ("env_id", "goal_steps", "expected"),
    [
        ("CartPole-v1", 500, (0.0, 500.0)),
        ("CartPole-v0", 200, (0.0, 200.0)),
        ("Acrobot-v1", 300, (-300.0, 0.0)),
        ("MountainCar-v0", 200, (-200.0, 0.0)),
        ("LunarLander-v3", 1000, (-math.inf, math.inf)),
    ],
)
def test_score_range_per_env(env_id, goal_steps, expected):
    assert score_range(env_id, goal_steps) == expected


def test_compare_intervals_never_leave_the_score_range():
    from cartpole_core.evaluate import Comparison

    c = Comparison("ensemble", np.array([500.0, 500.0, 420.0]), np.array([0.5, 0.5]), (0.0, 500.0))
    low, high = c.ci95
    assert high == 500.0 and c.interval.clipped and low < c.mean
