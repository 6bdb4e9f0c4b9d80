"""A LightGBM pipeline in the model server: it answers exactly as the fitted pipeline (its
preprocessing compiled, LightGBM's own booster predicting), and is refused before unpickling
when the card records a LightGBM version the server does not run."""

from __future__ import annotations

from typing import Any

import lightgbm
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris

from modelyard.workloads.common.modelcard import Feature, ModelCard
from modelyard.workloads.common.termination import WorkloadError
from modelyard.workloads.serving import loader
from modelyard.workloads.serving.config import ServeConfig, parse
from modelyard.workloads.training.pipeline import build_estimator
from tests.unit.test_serve_protocol import IRIS_FEATURES, Trained, train

SMALL: dict[str, Any] = {"n_estimators": 20, "min_child_samples": 5}


def lightgbm_iris() -> Trained:
    """An LGBMClassifier pipeline on iris, its card recording LightGBM's version as run.py's."""
    x, y = load_iris(return_X_y=True)
    features = [Feature(name=name, type="float") for name in IRIS_FEATURES]
    trained = train("iris", features, x, y, build_estimator("lightgbm.LGBMClassifier", SMALL))
    libraries = {**trained.card.libraries, "lightgbm": lightgbm.__version__}
    return Trained(
        trained.pipeline, trained.data, trained.card.model_copy(update={"libraries": libraries})
    )


@pytest.fixture(scope="module")
def iris() -> Trained:
    return lightgbm_iris()


@pytest.fixture
def config() -> ServeConfig:
    return parse(["--model-uri", "s3://models/default/iris/model.joblib"], env={})


def test_a_lightgbm_classifier_answers_as_its_pipeline(iris: Trained) -> None:
    model = iris.model()
    rows, _ = load_iris(return_X_y=True)
    assert model.classes == [0, 1, 2]
    assert model.has_proba
    assert np.array_equal(model.predict(rows), iris.pipeline.predict(rows))
    assert np.array_equal(model.predict_proba(rows), iris.pipeline.predict_proba(rows))


def test_a_lightgbm_model_is_served_by_its_booster_with_the_same_answers(iris: Trained) -> None:
    # The preprocessing is compiled and the booster called directly, on rows with missing
    # values too: the answers are the pipeline's own.
    model = iris.model()
    assert model.engine == "numpy"
    assert model.accepts_missing
    rows, _ = load_iris(return_X_y=True)
    rows = rows.copy()
    rows[::3, 1] = np.nan
    for batch in (rows, rows[:1], rows[1:2]):
        assert np.array_equal(model.predict(batch), iris.pipeline.predict(batch))
        assert np.array_equal(model.predict_proba(batch), iris.pipeline.predict_proba(batch))


def test_a_binary_lightgbm_classifier_on_mixed_features_answers_as_its_pipeline() -> None:
    # String classes and one-hot encoded categories: the object-matrix path into the booster.
    rng = np.random.default_rng(7)
    age = rng.normal(40, 10, 200)
    city = rng.choice(["paris", "lima", "oslo"], 200)
    member = rng.choice(["true", "false"], 200)
    x = np.column_stack([age, city, member]).astype(object)
    x[:, 0] = age
    y = np.where((age > 40) | (member == "true"), "yes", "no")
    features = [
        Feature(name="age", type="float"),
        Feature(name="city", type="string"),
        Feature(name="member", type="boolean"),
    ]
    trained = train("churn", features, x, y, build_estimator("lightgbm.LGBMClassifier", SMALL))
    model = trained.model()
    assert model.engine == "numpy"
    assert model.classes == ["no", "yes"]
    rows = np.array([[41.0, "lima", "true"], [25.0, "rome", "false"]], dtype=object)
    for batch in (x[:50], rows, rows[1:]):
        assert np.array_equal(model.predict(batch), trained.pipeline.predict(batch))
        assert np.array_equal(model.predict_proba(batch), trained.pipeline.predict_proba(batch))


def test_a_lightgbm_regressor_answers_as_its_pipeline() -> None:
    x, _ = load_breast_cancer(return_X_y=True)
    features = [Feature(name=f"f{i}", type="float") for i in range(x.shape[1])]
    estimator = build_estimator("lightgbm.LGBMRegressor", SMALL, threads=2)
    trained = train("cancer", features, x, x[:, 0], estimator)
    model = trained.model()
    assert not model.has_proba
    assert model.engine == "numpy"
    assert np.array_equal(model.predict(x[:50]), trained.pipeline.predict(x[:50]))


def _card(trained: Trained, **libraries: str | None) -> ModelCard:
    merged = {**trained.card.libraries, **libraries}
    kept = {name: version for name, version in merged.items() if version is not None}
    return trained.card.model_copy(update={"libraries": kept})


def _other_minor(version: str) -> str:
    major, minor, *_ = version.split(".")
    return f"{major}.{int(minor) + 1}.0"


def test_a_card_with_the_servers_lightgbm_major_minor_passes(
    iris: Trained, config: ServeConfig
) -> None:
    major, minor, *_ = lightgbm.__version__.split(".")
    loader.verify(_card(iris, lightgbm=f"{major}.{minor}.99"), iris.data, config)


def test_a_card_with_another_lightgbm_minor_is_refused(iris: Trained, config: ServeConfig) -> None:
    other = _other_minor(lightgbm.__version__)
    with pytest.raises(WorkloadError) as refused:
        loader.verify(_card(iris, lightgbm=other), iris.data, config)
    assert refused.value.reason == "VersionSkew"
    assert (
        f"model trained with lightgbm {other} but this server runs {lightgbm.__version__}"
        in refused.value.message
    )


def test_a_lightgbm_models_card_without_its_version_is_refused(
    iris: Trained, config: ServeConfig
) -> None:
    with pytest.raises(WorkloadError) as refused:
        loader.verify(_card(iris, lightgbm=None), iris.data, config)
    assert refused.value.reason == "VersionSkew"
    assert "does not record the lightgbm version" in refused.value.message


def test_a_scikit_learn_models_card_needs_no_lightgbm_version(config: ServeConfig) -> None:
    x, y = load_iris(return_X_y=True)
    features = [Feature(name=name, type="float") for name in IRIS_FEATURES]
    trained = train("iris", features, x, y, build_estimator("sklearn.naive_bayes.GaussianNB", {}))
    assert "lightgbm" not in trained.card.libraries
    loader.verify(trained.card, trained.data, config)
