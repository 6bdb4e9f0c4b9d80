"""Drift scores: PSI arithmetic, and binning that agrees with the baselines training writes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelyard.workloads.common.modelcard import CategoricalBaseline, Feature
from modelyard.workloads.serving.drift import DriftMonitor, psi
from modelyard.workloads.training.baseline import feature_baselines


def test_psi_of_identical_distributions_is_zero() -> None:
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_psi_matches_the_formula() -> None:
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(expected)


def test_psi_stays_finite_when_a_bin_is_empty() -> None:
    assert math.isfinite(psi([0.5, 0.5], [1.0, 0.0]))


def numeric_setup(window: int = 1000) -> tuple[np.ndarray, DriftMonitor]:
    rng = np.random.default_rng(3)
    train = rng.normal(0, 1, (5000, 2))
    features = [Feature(name="a", type="float"), Feature(name="b", type="float")]
    monitor = DriftMonitor(["a", "b"], feature_baselines(features, train), window, np.float64)
    return train, monitor


def test_training_like_inputs_score_near_zero() -> None:
    train, monitor = numeric_setup()
    monitor.observe(train[:1000])
    scores = monitor.scores()
    assert set(scores) == {"a", "b"}
    assert all(score < 0.05 for score in scores.values())


def test_shifted_feature_scores_high_and_others_do_not() -> None:
    train, monitor = numeric_setup()
    shifted = train[:1000].copy()
    shifted[:, 1] += 2.0
    monitor.observe(shifted)
    scores = monitor.scores()
    assert scores["a"] < 0.05
    assert scores["b"] > 0.25


def test_window_keeps_only_recent_rows() -> None:
    train, monitor = numeric_setup(window=500)
    shifted = train[:700] + 3.0
    for start in range(0, 700, 7):  # requests of 7 rows wrap around the ring buffer
        monitor.observe(shifted[start : start + 7])
    for start in range(1000, 1500, 9):
        monitor.observe(train[start : min(start + 9, 1500)])
    assert monitor.rows == 500
    assert all(score < 0.1 for score in monitor.scores().values())


def test_missing_values_are_left_out() -> None:
    train, monitor = numeric_setup()
    rows = train[:500].copy()
    rows[:, 0] = np.nan
    monitor.observe(rows)
    assert set(monitor.scores()) == {"b"}


def test_unseen_categories_fall_in_the_other_bin() -> None:
    baseline = CategoricalBaseline(feature="c", categories=["x", "y"], proportions=[0.5, 0.5, 0])
    monitor = DriftMonitor(["c"], [baseline], 100, object)
    monitor.observe(np.array([["x"], ["y"]] * 25, dtype=object))
    assert monitor.scores()["c"] == pytest.approx(0.0, abs=1e-3)
    monitor.observe(np.array([["z"]] * 100, dtype=object))
    assert monitor.scores()["c"] > 1.0
