"""The numpy fast path answers exactly as scikit-learn, and steps aside when it cannot."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import (
    ElasticNet,
    LinearRegression,
    LogisticRegression,
    RidgeClassifier,
    SGDClassifier,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from modelyard.workloads.common.modelcard import Feature
from modelyard.workloads.serving import compiled as compiled_module
from modelyard.workloads.serving import model as model_module
from modelyard.workloads.serving.compiled import Compiled
from tests.unit.test_serve_protocol import IRIS_FEATURES, Trained, iris, mixed, train


def cancer(estimator: BaseEstimator) -> tuple[np.ndarray, Trained]:
    x, y = load_breast_cancer(return_X_y=True)
    features = [Feature(name=f"f{i}", type="float") for i in range(x.shape[1])]
    return x, train("cancer", features, x, y, estimator)


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticRegression(max_iter=5000),  # binary: sigmoid probabilities
        RidgeClassifier(),
        SGDClassifier(random_state=0),
        LinearSVC(),
        LinearRegression(),
        ElasticNet(alpha=0.01),
    ],
    ids=lambda estimator: type(estimator).__name__,
)
def test_training_pipelines_compile_and_agree(estimator: BaseEstimator) -> None:
    x, trained = cancer(estimator)
    model = trained.model()
    assert model.engine == "numpy"
    rows = x[::7].copy()
    rows[::5, 3] = np.nan  # imputed by the pipeline's median
    expected = trained.pipeline.predict(rows)
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(model.predict(rows), expected, rtol=1e-9)
    else:
        np.testing.assert_array_equal(model.predict(rows), expected)
    if model.has_proba:
        np.testing.assert_allclose(
            model.predict_proba(rows),
            trained.pipeline.predict_proba(rows),
            rtol=1e-9,
        )


def test_multiclass_softmax_agrees() -> None:
    trained = iris()
    model = trained.model()
    x, _ = load_iris(return_X_y=True)
    assert model.engine == "numpy"
    np.testing.assert_array_equal(model.predict(x), trained.pipeline.predict(x))
    np.testing.assert_allclose(model.predict_proba(x), trained.pipeline.predict_proba(x))


def test_categories_compile_and_unseen_ones_are_ignored() -> None:
    trained = mixed()
    model = trained.model()
    assert model.engine == "numpy"
    rows = np.array(
        [[30.0, "oslo", "true"], [55.0, "atlantis", "false"], [np.nan, np.nan, "true"]],
        dtype=object,
    )
    np.testing.assert_array_equal(model.predict(rows), trained.pipeline.predict(rows))


def test_unknown_category_is_refused_like_scikit_learn_does() -> None:
    x, y = load_iris(return_X_y=True)
    features = [Feature(name="species", type="string")]
    labels = np.array(["a", "b", "c"], dtype=object)[y.astype(int)].reshape(-1, 1)
    estimator = LogisticRegression()
    pipeline = make_pipeline(OneHotEncoder(handle_unknown="error"), estimator)
    trained = train("strict", features, labels, x[:, 0] > 5.8, estimator, pipeline)
    model = trained.model()
    assert model.engine == "numpy"
    with pytest.raises(Exception, match="the model rejected the input: Found unknown"):
        model.predict(np.array([["z"]], dtype=object))


def test_scaler_variants_compile() -> None:
    x, y = load_iris(return_X_y=True)
    features = [Feature(name=name, type="float") for name in IRIS_FEATURES]
    estimator = LogisticRegression(max_iter=500)
    pipeline = make_pipeline(MinMaxScaler(clip=True), estimator)
    trained = train("minmax", features, x, y, estimator, pipeline)
    model = trained.model()
    assert model.engine == "numpy"
    outside = x * 1.5
    np.testing.assert_allclose(model.predict_proba(outside), pipeline.predict_proba(outside))


@pytest.mark.parametrize(
    "estimator",
    [
        RandomForestClassifier(n_estimators=20, random_state=0),
        ExtraTreesClassifier(n_estimators=20, random_state=0),
        DecisionTreeClassifier(random_state=0),
        RandomForestRegressor(n_estimators=10, random_state=0),
        DecisionTreeRegressor(random_state=0),
    ],
    ids=lambda estimator: type(estimator).__name__,
)
def test_trees_and_forests_compile_and_agree_exactly(estimator: BaseEstimator) -> None:
    x, trained = cancer(estimator)
    model = trained.model()
    assert model.engine == "numpy"
    rows = x[::3] * np.random.default_rng(5).normal(1.0, 0.1, x[::3].shape)
    rows[::4, 7] = np.nan
    np.testing.assert_array_equal(model.predict(rows), trained.pipeline.predict(rows))
    if model.has_proba:
        np.testing.assert_array_equal(
            model.predict_proba(rows), trained.pipeline.predict_proba(rows)
        )


def test_trees_send_missing_values_where_training_learned_to() -> None:
    """Without an imputer, forests split NaN to the side training chose for each node."""
    x, y = load_breast_cancer(return_X_y=True)
    x = x.copy()
    x[np.random.default_rng(2).random(x.shape) < 0.2] = np.nan
    features = [Feature(name=f"f{i}", type="float") for i in range(x.shape[1])]
    estimator = RandomForestClassifier(n_estimators=10, random_state=0)
    trained = train("raw", features, x, y, estimator, make_pipeline(estimator))
    model = trained.model()
    assert model.accepts_missing and model.engine == "numpy"
    np.testing.assert_array_equal(model.predict_proba(x), trained.pipeline.predict_proba(x))


@pytest.mark.parametrize(
    "estimator",
    [
        HistGradientBoostingClassifier(max_iter=30, random_state=0),  # binary: sigmoid
        HistGradientBoostingRegressor(max_iter=30, random_state=0),
    ],
    ids=lambda estimator: type(estimator).__name__,
)
def test_histogram_gradient_boosting_compiles_and_agrees(estimator: BaseEstimator) -> None:
    x, trained = cancer(estimator)
    model = trained.model()
    assert model.engine == "numpy"
    rows = x[::3] * np.random.default_rng(5).normal(1.0, 0.1, x[::3].shape)
    rows[::4, 7] = np.nan
    expected = trained.pipeline.predict(rows)
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(model.predict(rows), expected, rtol=1e-9)
    else:
        np.testing.assert_array_equal(model.predict(rows), expected)
        np.testing.assert_allclose(
            model.predict_proba(rows), trained.pipeline.predict_proba(rows), rtol=1e-9
        )


def test_multiclass_histogram_gradient_boosting_and_its_missing_values() -> None:
    """No imputer: NaN goes where each split learned to send it; softmax over three classes."""
    x, y = load_iris(return_X_y=True)
    x = x.copy()
    x[np.random.default_rng(3).random(x.shape) < 0.2] = np.nan
    features = [Feature(name=name, type="float") for name in IRIS_FEATURES]
    estimator = HistGradientBoostingClassifier(max_iter=20, random_state=0)
    trained = train("raw", features, x, y, estimator, make_pipeline(estimator))
    model = trained.model()
    assert model.accepts_missing and model.engine == "numpy"
    np.testing.assert_array_equal(model.predict(x), trained.pipeline.predict(x))
    np.testing.assert_allclose(model.predict_proba(x), trained.pipeline.predict_proba(x), rtol=1e-9)


@functools.cache
def cancer_forest(kind: str) -> tuple[np.ndarray, Trained]:
    """Trained once per module: both walks of a test below share the (slow) boosting fit."""
    estimators: dict[str, BaseEstimator] = {
        "RandomForestClassifier": RandomForestClassifier(n_estimators=30, random_state=0),
        "ExtraTreesRegressor": ExtraTreesRegressor(n_estimators=10, random_state=0),
        "HistGradientBoostingClassifier": HistGradientBoostingClassifier(
            max_iter=25, random_state=0
        ),
    }
    return cancer(estimators[kind])


@pytest.mark.parametrize("walk_from", [1, 10**9], ids=["walk", "every-node"])
@pytest.mark.parametrize(
    "kind", ["RandomForestClassifier", "ExtraTreesRegressor", "HistGradientBoostingClassifier"]
)
def test_forests_agree_at_every_batch_size_either_way_they_are_walked(
    kind: str, walk_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small batches decide every node at once, larger ones walk each row's path (the size
    in between is timed at load): both must land on scikit-learn's leaves, NaN included."""
    monkeypatch.setattr(compiled_module, "_crossover", lambda forest, width: walk_from)
    x, trained = cancer_forest(kind)
    compiled = compiled_module.compile_pipeline(trained.pipeline)
    assert compiled is not None
    rows = x * np.random.default_rng(7).normal(1.0, 0.1, x.shape)
    rows[np.random.default_rng(8).random(rows.shape) < 0.1] = np.nan
    for count in (1, 2, 3, 7, 64, 200):
        batch = rows[:count]
        expected = trained.pipeline.predict(batch)
        if expected.dtype.kind == "f":
            np.testing.assert_array_equal(compiled.predict(batch), expected)
            continue
        np.testing.assert_array_equal(compiled.predict(batch), expected)
        assert compiled.predict_proba is not None
        np.testing.assert_allclose(
            compiled.predict_proba(batch),
            trained.pipeline.predict_proba(batch),
            rtol=1e-12,
            atol=1e-15,
        )


def test_histogram_gradient_boosting_with_categories_is_served_by_scikit_learn() -> None:
    x, y = load_iris(return_X_y=True)
    x = np.column_stack([x, (x[:, 0] > 5.5).astype(float)])
    features = [Feature(name=f"f{i}", type="float") for i in range(5)]
    estimator = HistGradientBoostingClassifier(max_iter=5, categorical_features=[4], random_state=0)
    trained = train("categorical", features, x, y, estimator, make_pipeline(estimator))
    assert trained.model().engine == "scikit-learn"


def test_other_estimators_are_served_by_scikit_learn() -> None:
    _, trained = cancer(GradientBoostingClassifier(n_estimators=5, random_state=0))
    assert trained.model().engine == "scikit-learn"


def test_a_compiled_pipeline_that_disagrees_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def always_setosa(matrix: np.ndarray) -> np.ndarray:
        return np.zeros(len(matrix), dtype=np.int64)

    monkeypatch.setattr(
        model_module, "compile_pipeline", lambda estimator: Compiled(always_setosa, None)
    )
    assert iris().model().engine == "scikit-learn"
