"""`modelyard-worker train` against a real S3-compatible server: models, cards, refusals."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from modelyard.storage.client import Storage
from modelyard.storage.digest import bytes_digest
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common.modelcard import ModelCard
from tests.workers import Worker

pytestmark = pytest.mark.integration

RANDOM_FOREST = {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 30}}


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]) -> Worker:
    return Worker(tmp_path, monkeypatch)


@pytest.fixture
def iris(worker: Worker) -> dict[str, Any]:
    result = worker.ingest({"source": {"builtin": {"name": "iris"}}}, name="iris")
    assert result.exit_code == 0
    return result.message


def _spec(**fields: Any) -> dict[str, Any]:
    return {"datasetRef": {"name": "iris"}, "estimator": RANDOM_FOREST, **fields}


def test_iris_model_is_published_with_card_and_lineage(
    worker: Worker, storage: Storage, iris: dict[str, Any]
) -> None:
    result = worker.train(_spec(metrics=["balanced_accuracy"]), iris)
    assert result.exit_code == 0, result.message
    message = result.message
    assert message["datasetVersion"] == iris["version"]
    assert set(message["metrics"]) == {"accuracy", "f1_macro", "roc_auc", "balanced_accuracy"}
    assert message["metrics"]["accuracy"] > 0.85
    assert (message["trainRows"], message["testRows"]) == (120, 30)
    model_uri = S3Uri.parse(message["model"]["uri"])
    assert model_uri.key == "namespaces/ml/models/tj/local/run-1/model.joblib"
    model_bytes = storage.get_bytes(model_uri)
    assert bytes_digest(model_bytes) == message["model"]["digest"]
    run_prefix = S3Uri(model_uri.bucket, "namespaces/ml/models/tj/local/run-1")
    card_bytes = storage.get_bytes(run_prefix.join("model.json"))
    assert bytes_digest(card_bytes) == message["model"]["cardDigest"]
    card = ModelCard.model_validate_json(card_bytes)
    assert card.digest == message["model"]["digest"]
    assert card.classes == [0, 1, 2]
    assert card.features[0].name == "sepal length (cm)"
    assert card.dataset.version == iris["version"]
    assert (card.training_job, card.run, card.task) == ("tj", "run-1", "classification")
    assert {baseline.feature for baseline in card.baseline} == {f.name for f in card.features}
    model = joblib.load(io.BytesIO(model_bytes))
    assert model.predict(np.array([[5.1, 3.5, 1.4, 0.2]])).tolist() == [0]
    manifest = storage.get_json(run_prefix.join("manifest.json"))
    assert manifest["digest"] == message["model"]["digest"]
    assert manifest["cardDigest"] == message["model"]["cardDigest"]


def test_breast_cancer_with_grid_search_records_best_params(worker: Worker) -> None:
    data = worker.ingest({"source": {"builtin": {"name": "breast_cancer"}}}, name="bc")
    spec = {
        "datasetRef": {"name": "bc"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        "search": {"strategy": "grid", "params": {"C": [0.01, 1.0]}, "cv": 3},
        "objective": {"metric": "roc_auc", "minimum": 0.9},
    }
    result = worker.train(spec, data.message)
    assert result.exit_code == 0, result.message
    assert result.message["params"]["C"] in (0.01, 1.0)
    assert result.message["metrics"]["roc_auc"] > 0.9


def test_regression_reports_error_metrics(worker: Worker) -> None:
    data = worker.ingest({"source": {"builtin": {"name": "diabetes"}}}, name="diabetes")
    spec = {
        "datasetRef": {"name": "diabetes"},
        "estimator": {"class": "sklearn.linear_model.Ridge"},
        "search": {"strategy": "random", "params": {"alpha": [0.1, 1.0, 10.0]}, "maxTrials": 2},
        "objective": {"metric": "rmse", "minimum": 80},
    }
    result = worker.train(spec, data.message)
    assert result.exit_code == 0, result.message
    assert set(result.message["metrics"]) == {"rmse", "mae", "r2"}
    assert result.message["metrics"]["rmse"] < 80


def test_categorical_features_are_one_hot_encoded(
    worker: Worker, storage: Storage, bucket_root: S3Uri
) -> None:
    rng = np.random.default_rng(0)
    plans = rng.choice(["basic", "pro", "enterprise"], size=200)
    tenure = rng.integers(0, 60, size=200)
    churned = np.where((plans == "basic") & (tenure < 30), "yes", "no")
    sink = io.BytesIO()
    pa_csv.write_csv(pa.table({"plan": plans, "tenure": tenure, "churned": churned}), sink)
    storage.put_bytes(bucket_root.join("churn.csv"), sink.getvalue())
    data = worker.ingest(
        {"source": {"s3": {"uri": str(bucket_root.join("churn.csv"))}}, "target": "churned"}
    )
    spec = {"datasetRef": {"name": "churn"}, "estimator": RANDOM_FOREST}
    result = worker.train(spec, data.message)
    assert result.exit_code == 0, result.message
    assert result.message["metrics"]["accuracy"] > 0.9
    model = joblib.load(io.BytesIO(storage.get_bytes(S3Uri.parse(result.message["model"]["uri"]))))
    prediction = model.predict(np.array([["basic", 5.0], ["unseen-plan", 50.0]], dtype=object))
    assert prediction.tolist() == ["yes", "no"]


def test_missed_objective_is_published_but_flagged(
    worker: Worker, storage: Storage, iris: dict[str, Any]
) -> None:
    result = worker.train(_spec(objective={"metric": "accuracy", "minimum": 0.999}), iris)
    assert result.exit_code == 3
    assert (result.message["status"], result.message["reason"]) == ("Failed", "ObjectiveNotMet")
    assert "accuracy = " in result.message["message"] and "0.999" in result.message["message"]
    assert storage.exists(S3Uri.parse(result.message["model"]["uri"]))


# Training specs a user can get wrong, with the exit code, reason and message each gets.
BAD_SPECS = [
    (
        "estimator-outside-allowlist",
        {"estimator": {"class": "subprocess.Popen"}},
        2,
        "InvalidSpec",
        "estimator.class",
    ),
    (
        "unknown-param",
        {"estimator": {**RANDOM_FOREST, "params": {"n_trees": 5}}},
        2,
        "InvalidParams",
        "n_trees",
    ),
    (
        "invalid-param-value",
        {"estimator": {**RANDOM_FOREST, "params": {"n_estimators": -1}}},
        2,
        "InvalidParams",
        "n_estimators",
    ),
    (
        "metric-for-other-task",
        {"metrics": ["rmse"]},
        2,
        "MetricNotApplicable",
        "spec.metrics: rmse",
    ),
    (
        "objective-needs-probabilities-the-estimator-lacks",
        {
            "estimator": {"class": "sklearn.svm.SVC"},
            "objective": {"metric": "roc_auc", "minimum": 0.5},
        },
        2,
        "MetricNotApplicable",
        "spec.objective.metric: roc_auc needs class probabilities",
    ),
    (
        "metric-needs-probabilities-the-estimator-lacks",
        {"estimator": {"class": "sklearn.linear_model.RidgeClassifier"}, "metrics": ["log_loss"]},
        2,
        "MetricNotApplicable",
        "spec.metrics: log_loss needs class probabilities",
    ),
    (
        "search-values-not-a-list",
        {"search": {"strategy": "grid", "params": {"max_depth": 3}}},
        2,
        "InvalidSearch",
        "spec.search.params.max_depth",
    ),
]


@pytest.mark.parametrize(
    ("fields", "code", "reason", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_SPECS],
)
def test_bad_training_spec_is_refused_before_fitting(
    worker: Worker,
    iris: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    fields: dict[str, Any],
    code: int,
    reason: str,
    fragment: str,
) -> None:
    capsys.readouterr()
    result = worker.train(_spec(**fields), iris)
    assert (result.exit_code, result.message["reason"]) == (code, reason), result.message
    assert fragment in result.message["message"]
    assert "download and load took" not in capsys.readouterr().err, "refused before download"


def test_objective_the_test_split_cannot_define_is_refused_before_fitting(
    worker: Worker, storage: Storage, bucket_root: S3Uri, capsys: pytest.CaptureFixture[str]
) -> None:
    # One row of class 1 stays in training (a class of one is never split), so the test
    # split holds class 0 alone and roc_auc has no meaning there.
    rows = b"x,label\n" + b"".join(f"{i},0\n".encode() for i in range(40)) + b"99,1\n"
    storage.put_bytes(bucket_root.join("one.csv"), rows)
    data = worker.ingest(
        {"source": {"s3": {"uri": str(bucket_root.join("one.csv"))}}, "target": "label"}
    )
    assert data.exit_code == 0, data.message
    capsys.readouterr()
    spec = _spec(objective={"metric": "roc_auc", "minimum": 0.7})
    result = worker.train(spec, data.message)
    assert (result.exit_code, result.message["reason"]) == (4, "MetricNotApplicable")
    assert "only class 0" in result.message["message"], result.message
    assert "fit took" not in capsys.readouterr().err


def test_regressor_on_text_labels_is_refused(
    worker: Worker, storage: Storage, bucket_root: S3Uri
) -> None:
    storage.put_bytes(bucket_root.join("t.csv"), b"x,label\n1,a\n2,b\n3,a\n4,b\n5,a\n")
    data = worker.ingest(
        {"source": {"s3": {"uri": str(bucket_root.join("t.csv"))}}, "target": "label"}
    )
    spec = {"datasetRef": {"name": "t"}, "estimator": {"class": "sklearn.linear_model.Ridge"}}
    result = worker.train(spec, data.message)
    assert result.message["reason"] == "TargetNotNumeric"


def test_missing_dataset_version_is_named(worker: Worker, bucket_root: S3Uri) -> None:
    missing = {"uri": str(bucket_root.join("datasets/ml/none/abc")), "version": ""}
    result = worker.train(_spec(), missing)
    assert result.message["reason"] == "DatasetNotFound"
    assert "no published version" in result.message["message"]


def test_dataset_version_mismatch_is_refused(worker: Worker, iris: dict[str, Any]) -> None:
    result = worker.train(_spec(), {**iris, "version": "sha256:" + "0" * 64})
    assert result.message["reason"] == "DatasetVersionMismatch"
