"""The three workloads chained as the operator chains them, against a real S3 server: ingest a
builtin dataset, train on the version, serve the model, predict over both protocols."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sklearn import datasets

from modelyard.storage.uri import S3Uri
from tests.serving import Served, start
from tests.workers import Worker

pytestmark = pytest.mark.integration

CASES = {
    "iris": ("sklearn.ensemble.RandomForestClassifier", 0.85),
    "breast_cancer": ("sklearn.linear_model.LogisticRegression", 0.9),
}


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]) -> Worker:
    return Worker(tmp_path, monkeypatch)


@pytest.fixture
def servers() -> Iterator[list[Served]]:
    running: list[Served] = []
    yield running
    for served in running:
        assert served.stop() == 0, served.log()


@pytest.mark.parametrize("name", CASES)
def test_ingest_train_serve_predict(
    name: str,
    worker: Worker,
    s3_env: dict[str, str],
    tmp_path: Path,
    servers: list[Served],
) -> None:
    estimator, minimum = CASES[name]
    object_name = name.replace("_", "-")
    ingested = worker.ingest({"source": {"builtin": {"name": name}}}, name=object_name)
    assert ingested.exit_code == 0, ingested.message
    spec = {
        "datasetRef": {"name": object_name},
        "estimator": {
            "class": estimator,
            "params": {"max_iter": 2000} if "Logistic" in estimator else {},
        },
        "objective": {"metric": "accuracy", "minimum": minimum},
    }
    trained = worker.train(spec, ingested.message, name=object_name)
    assert trained.exit_code == 0, trained.message
    model = trained.message["model"]

    served = start(
        s3_env,
        S3Uri.parse(model["uri"]),
        tmp_path,
        "--name",
        name,
        "--model-digest",
        model["digest"],
    )
    servers.append(served)
    assert served.process.poll() is None, served.log()

    bunch = getattr(datasets, f"load_{name}")()
    rows = bunch.data[:5].tolist()
    v1 = requests.post(
        f"{served.url}/v1/models/{name}:predict", json={"instances": rows}, timeout=10
    )
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == bunch.target[:5].tolist()

    features = len(rows[0])
    body = {"inputs": [{"name": "x", "shape": [5, features], "datatype": "FP64", "data": rows}]}
    v2 = requests.post(f"{served.url}/v2/models/{name}/infer", json=body, timeout=10)
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == bunch.target[:5].tolist()
    assert v2.json()["model_version"] in model["digest"]


def test_server_refuses_a_model_whose_digest_differs(
    worker: Worker, s3_env: dict[str, str], tmp_path: Path
) -> None:
    ingested = worker.ingest({"source": {"builtin": {"name": "iris"}}}, name="iris")
    spec = {
        "datasetRef": {"name": "iris"},
        "estimator": {"class": "sklearn.naive_bayes.GaussianNB"},
    }
    trained = worker.train(spec, ingested.message, name="iris")
    served = start(
        s3_env,
        S3Uri.parse(trained.message["model"]["uri"]),
        tmp_path,
        "--model-digest",
        "sha256:" + "0" * 64,
    )
    assert served.process.wait(timeout=30) == 1
    assert "DigestMismatch" in served.log()
