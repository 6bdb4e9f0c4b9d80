"""Request decoding for the model server: every accepted shape gives the same input matrix,
and inputs that do not fit the model are refused with a message naming the problem."""

from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import joblib
import numpy as np
import orjson
import pytest
import sklearn
from sklearn.base import BaseEstimator, is_classifier
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from modelyard.storage.digest import bytes_digest
from modelyard.workloads.common.modelcard import DatasetLineage, Feature, ModelCard
from modelyard.workloads.serving import protocol
from modelyard.workloads.serving.errors import RequestError
from modelyard.workloads.serving.model import Model
from modelyard.workloads.training.baseline import feature_baselines
from modelyard.workloads.training.pipeline import build_pipeline

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass(frozen=True)
class Trained:
    """A fitted pipeline as training would publish it: joblib bytes and the card."""

    pipeline: Any
    data: bytes
    card: ModelCard

    def model(self) -> Model:
        return Model(self.card, self.pipeline, self.card.name)


def train(
    name: str,
    features: list[Feature],
    x: np.ndarray,
    y: np.ndarray,
    estimator: BaseEstimator,
    pipeline: Pipeline | None = None,
) -> Trained:
    """Fit like training/run.py does (its pipeline and baselines), without S3 or a dataset."""
    fitted = (pipeline or build_pipeline(features, estimator)).fit(x, y)
    buffer = io.BytesIO()
    joblib.dump(fitted, buffer, compress=3)  # compressed, as training writes it
    data = buffer.getvalue()
    card = ModelCard(
        name=name,
        estimator=f"{type(estimator).__module__}.{type(estimator).__name__}",
        task="classification" if is_classifier(estimator) else "regression",
        target="target",
        features=features,
        classes=np.asarray(fitted.classes_).tolist() if is_classifier(estimator) else None,
        digest=bytes_digest(data),
        libraries={
            "python": sys.version.split()[0],
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "joblib": joblib.__version__,
        },
        baseline=feature_baselines(features, x),
        dataset=DatasetLineage(version="sha256:" + "0" * 64, uri="s3://example/datasets/x/"),
        run="run-1",
        created_at=datetime.now(UTC),
    )
    return Trained(fitted, data, card)


def iris() -> Trained:
    x, y = load_iris(return_X_y=True)
    features = [Feature(name=name, type="float") for name in IRIS_FEATURES]
    return train("iris", features, x, y, LogisticRegression(max_iter=500))


def mixed() -> Trained:
    """Numeric, string and boolean features, string classes: the object-matrix path."""
    rng = np.random.default_rng(7)
    rows = 200
    age = rng.normal(40, 10, rows)
    city = rng.choice(["paris", "lima", "oslo"], rows)
    member = rng.choice(["true", "false"], rows)
    x = np.column_stack([age, city, member]).astype(object)
    x[:, 0] = age  # keep the numbers numbers inside the object matrix
    y = np.where((age > 40) | (member == "true"), "yes", "no")
    features = [
        Feature(name="age", type="float"),
        Feature(name="city", type="string"),
        Feature(name="member", type="boolean"),
    ]
    return train("churn", features, x, y, LogisticRegression())


def no_imputer() -> Trained:
    """A pipeline without an imputer: it cannot take missing values."""
    x, y = load_iris(return_X_y=True)
    features = [Feature(name=name, type="float") for name in IRIS_FEATURES]
    estimator = LogisticRegression(max_iter=500)
    return train("strict", features, x, y, estimator, make_pipeline(StandardScaler(), estimator))


def regression() -> Trained:
    x, _ = load_iris(return_X_y=True)
    features = [Feature(name=name, type="float") for name in IRIS_FEATURES[:3]]
    return train("petal", features, x[:, :3], x[:, 3], Ridge())


@pytest.fixture(scope="module")
def iris_model() -> Model:
    return iris().model()


@pytest.fixture(scope="module")
def mixed_model() -> Model:
    return mixed().model()


ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def body(document: Any) -> bytes:
    return orjson.dumps(document)


def test_every_accepted_shape_gives_the_same_matrix(iris_model: Model) -> None:
    by_name = [dict(zip(IRIS_FEATURES, row, strict=True)) for row in ROWS]
    reordered = [dict(reversed(list(row.items()))) for row in by_name]
    columns = [
        {"name": name, "shape": [2], "datatype": "FP64", "data": [row[i] for row in ROWS]}
        for i, name in enumerate(IRIS_FEATURES)
    ]
    requests = [
        protocol.decode_v1(iris_model, body({"instances": ROWS}), proba_verb=False),
        protocol.decode_v1(iris_model, body({"instances": reordered}), proba_verb=False),
        protocol.decode_v2(
            iris_model,
            body({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": ROWS}]}),
        ),
        protocol.decode_v2(
            iris_model,
            body(
                {
                    "inputs": [
                        {
                            "name": "x",
                            "shape": [2, 4],
                            "datatype": "FP32",
                            "data": np.ravel(ROWS).tolist(),
                        }
                    ]
                }
            ),
        ),
        protocol.decode_v2(iris_model, body({"inputs": list(reversed(columns))})),
    ]
    for request in requests:
        assert request.matrix.dtype == np.float64
        np.testing.assert_array_equal(request.matrix, np.array(ROWS))


def test_integers_are_taken_as_numbers(iris_model: Model) -> None:
    request = protocol.decode_v1(iris_model, body({"instances": [[5, 3, 1, 0]]}), False)
    assert request.matrix.dtype == np.float64
    assert request.matrix.tolist() == [[5.0, 3.0, 1.0, 0.0]]


@pytest.mark.parametrize(
    ("document", "proba"),
    [
        ({}, False),
        ({"parameters": {"probabilities": True}}, True),
        ({"outputs": [{"name": "predict_proba"}]}, True),
        ({"outputs": [{"name": "predict"}, {"name": "predict_proba"}]}, True),
    ],
)
def test_v2_probabilities_when_asked(
    iris_model: Model, document: dict[str, Any], proba: bool
) -> None:
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[:1]}
    request = protocol.decode_v2(iris_model, body({"inputs": [tensor], **document}))
    assert request.proba is proba
    assert request.predict is ("outputs" not in document or len(document["outputs"]) == 2)


def test_v1_probabilities_by_verb_or_parameter(iris_model: Model) -> None:
    plain = body({"instances": ROWS})
    flagged = body({"instances": ROWS, "parameters": {"probabilities": True}})
    assert not protocol.decode_v1(iris_model, plain, proba_verb=False).proba
    assert protocol.decode_v1(iris_model, plain, proba_verb=True).proba
    assert protocol.decode_v1(iris_model, flagged, proba_verb=False).proba


def test_mixed_rows_are_encoded_as_in_training(mixed_model: Model) -> None:
    """Booleans become "true"/"false" and missing values NaN, as training/features.py does."""
    instances = [
        {"age": 30, "city": "oslo", "member": True},
        {"age": None, "city": None, "member": "false"},
    ]
    request = protocol.decode_v1(mixed_model, body({"instances": instances}), False)
    assert request.matrix.dtype == object
    assert request.matrix[0].tolist() == [30.0, "oslo", "true"]
    assert math.isnan(request.matrix[1, 0]) and math.isnan(request.matrix[1, 1])
    assert request.matrix[1, 2] == "false"
    assert set(mixed_model.predict(request.matrix).tolist()) <= {"yes", "no"}


def test_v2_feature_tensors_carry_their_own_datatypes(mixed_model: Model) -> None:
    inputs = [
        {"name": "member", "shape": [1], "datatype": "BOOL", "data": [False]},
        {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["lima"]},
        {"name": "age", "shape": [1, 1], "datatype": "INT64", "data": [[52]]},
    ]
    request = protocol.decode_v2(mixed_model, body({"inputs": inputs}))
    assert request.matrix.tolist() == [[52.0, "lima", "false"]]


def test_the_model_knows_whether_it_can_impute() -> None:
    assert iris().model().accepts_missing
    assert not no_imputer().model().accepts_missing


def test_nan_is_refused_only_where_the_model_cannot_impute() -> None:
    document = b'{"instances": [[NaN, 3.5, 1.4, 0.2]]}'  # Python's json.dumps writes this
    accepted = protocol.decode_v1(iris().model(), document, False)
    assert math.isnan(accepted.matrix[0, 0])
    with pytest.raises(RequestError) as refused:
        protocol.decode_v1(no_imputer().model(), document, False)
    assert refused.value.status == 422
    assert "row 0, feature 'sepal_length': missing value" in refused.value.message


@pytest.mark.parametrize(
    ("instances", "fragment"),
    [
        ([{"age": "old", "city": "oslo", "member": True}], "feature 'age': expected a number"),
        ([{"age": 3, "city": 7, "member": True}], "feature 'city': expected a string"),
        ([{"age": 3, "city": "oslo", "member": "yes"}], "feature 'member': expected true or"),
        ([{"age": 3, "city": "oslo"}], "row 0 lacks feature(s) ['member']"),
        ([[3, "oslo"]], "row 0 has 2 values but the model takes 3 features"),
    ],
)
def test_mixed_type_errors_name_the_feature(
    mixed_model: Model, instances: list[Any], fragment: str
) -> None:
    with pytest.raises(RequestError) as refused:
        protocol.decode_v1(mixed_model, body({"instances": instances}), False)
    assert refused.value.status == 422
    assert fragment in refused.value.message


def test_regression_models_have_no_probabilities() -> None:
    model = regression().model()
    with pytest.raises(RequestError, match="regression model: no probabilities"):
        model.require_proba()


def test_encoded_v2_response_is_row_major_with_classes(iris_model: Model) -> None:
    matrix = np.array(ROWS)
    encoded = orjson.loads(
        protocol.encode_v2(
            iris_model, "req-1", iris_model.predict(matrix), iris_model.predict_proba(matrix)
        )
    )
    assert encoded["model_name"] == "iris"
    assert encoded["model_version"] == iris_model.version
    assert encoded["id"] == "req-1"
    predict, proba = encoded["outputs"]
    assert predict == {"name": "predict", "shape": [2], "datatype": "INT64", "data": [0, 2]}
    assert proba["shape"] == [2, 3] and len(proba["data"]) == 6
    assert proba["parameters"] == {"classes": [0, 1, 2]}
    assert sum(proba["data"][:3]) == pytest.approx(1.0)
