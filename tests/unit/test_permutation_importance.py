"""Permutation importance in one predict call gives scikit-learn's figures, shuffle for shuffle."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn import inspection
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import accuracy_score, r2_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from modelyard.workloads.training.importance import Score, permutation_importance


def _forest(task: str) -> tuple[Pipeline, np.ndarray[Any, Any], np.ndarray[Any, Any], Score]:
    if task == "classification":
        x, y = load_iris(return_X_y=True)
        estimator: Any = RandomForestClassifier(n_estimators=20, max_depth=3, random_state=0)
        return make_pipeline(StandardScaler(), estimator).fit(x, y), x, y, accuracy_score
    x, y = load_diabetes(return_X_y=True)
    estimator = RandomForestRegressor(n_estimators=20, max_depth=4, random_state=0)
    return make_pipeline(StandardScaler(), estimator).fit(x, y), x, y, r2_score


@pytest.mark.parametrize(
    ("task", "scoring"), [("classification", "accuracy"), ("regression", "r2")]
)
@pytest.mark.parametrize(("repeats", "seed"), [(1, 0), (5, 0), (3, 42)])
def test_the_figures_are_scikit_learns(task: str, scoring: str, repeats: int, seed: int) -> None:
    pipeline, x, y, score = _forest(task)
    rows = np.arange(0, len(y), 3)
    ours = permutation_importance(pipeline, x[rows], y[rows], score, repeats, seed)
    theirs = inspection.permutation_importance(
        pipeline, x[rows], y[rows], scoring=scoring, n_repeats=repeats, random_state=seed
    )
    np.testing.assert_allclose(ours.mean, theirs.importances_mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.std, theirs.importances_std, rtol=0, atol=1e-12)
    # Shuffling informs: at least one feature matters, so the comparison is not of zeros.
    assert ours.mean.max() > 0.05


def test_the_rows_given_are_left_as_they_were() -> None:
    pipeline, x, y, score = _forest("classification")
    before = x.copy()
    permutation_importance(pipeline, x, y, score, 2, 0)
    np.testing.assert_array_equal(x, before)
