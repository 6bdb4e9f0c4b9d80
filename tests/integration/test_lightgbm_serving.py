"""LightGBM end to end in one pod's worth of processes: ingest a builtin dataset, search an
LGBMClassifier's parameters with the training workload, serve the model with the real server
(V1 and V2, classes and probabilities), all against a real S3 server; and a model whose card
records another LightGBM version refused before anything is unpickled."""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import lightgbm
import numpy as np
import pytest
import requests
from sklearn import datasets

from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from modelyard.storage.digest import bytes_digest
from modelyard.storage.layout import MODEL_CARD
from modelyard.storage.uri import S3Uri
from tests.plugins.s3 import S3Server
from tests.serving import Bucket, Served, bucket_on, start
from tests.unit.test_lightgbm_serving import lightgbm_iris
from tests.workers import Worker

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]) -> Worker:
    return Worker(tmp_path, monkeypatch)


@pytest.fixture
def servers() -> Iterator[list[Served]]:
    running: list[Served] = []
    yield running
    for served in running:
        assert served.stop() == 0, served.log()


def test_a_searched_lightgbm_classifier_is_trained_and_served(
    worker: Worker, s3_env: dict[str, str], tmp_path: Path, servers: list[Served]
) -> None:
    ingested = worker.ingest({"source": {"builtin": {"name": "breast_cancer"}}}, name="cancer")
    assert ingested.exit_code == 0, ingested.message
    spec = {
        "datasetRef": {"name": "cancer"},
        "estimator": {"class": "lightgbm.LGBMClassifier", "params": {"n_estimators": 40}},
        "search": {"params": {"num_leaves": [4, 15], "learning_rate": [0.05, 0.2]}, "cv": 3},
        "objective": {"metric": "accuracy", "minimum": 0.9},
    }
    trained = worker.train(spec, ingested.message, name="cancer")
    assert trained.exit_code == 0, trained.message
    assert trained.message["estimator"] == "lightgbm.LGBMClassifier"
    assert trained.message["params"]["num_leaves"] in (4, 15)
    assert len(trained.message["leaderboard"]) == 4
    model = trained.message["model"]

    storage = Storage(StorageConfig.from_env(s3_env))
    model_uri = S3Uri.parse(model["uri"])
    card = storage.get_json(
        S3Uri(model_uri.bucket, model_uri.key.rsplit("/", 1)[0]).join(MODEL_CARD)
    )
    assert card["libraries"]["lightgbm"] == lightgbm.__version__
    pipeline = joblib.load(io.BytesIO(storage.get_bytes(model_uri)))

    served = start(
        s3_env, model_uri, tmp_path, "--name", "cancer", "--model-digest", model["digest"]
    )
    servers.append(served)
    bunch = datasets.load_breast_cancer()
    rows = bunch.data[:8]
    expected = pipeline.predict(rows).tolist()
    assert (np.array(expected) == bunch.target[:8]).mean() >= 0.75

    v1 = requests.post(
        f"{served.url}/v1/models/cancer:predict", json={"instances": rows.tolist()}, timeout=10
    )
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == expected
    v1_proba = requests.post(
        f"{served.url}/v1/models/cancer:predict_proba",
        json={"instances": rows.tolist()},
        timeout=10,
    )
    assert v1_proba.status_code == 200, v1_proba.text
    assert v1_proba.json()["predictions"] == expected
    assert np.array_equal(v1_proba.json()["probabilities"], pipeline.predict_proba(rows))

    body = {
        "inputs": [
            {"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": rows.tolist()}
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    v2 = requests.post(f"{served.url}/v2/models/cancer/infer", json=body, timeout=10)
    assert v2.status_code == 200, v2.text
    outputs = {output["name"]: output for output in v2.json()["outputs"]}
    assert outputs["predict"]["data"] == expected
    assert outputs["predict_proba"]["shape"] == [8, 2]
    proba = np.array(outputs["predict_proba"]["data"]).reshape(8, 2)
    assert np.array_equal(proba, pipeline.predict_proba(rows))
    metadata = requests.get(f"{served.url}/v2/models/cancer", timeout=10).json()
    assert metadata["parameters"]["estimator"] == "lightgbm.LGBMClassifier"


class _Touch:
    """Unpickled, it creates a file: proof that the server unpickled the model file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[Bucket]:
    with bucket_on(s3_server) as bucket:
        yield bucket


def test_a_model_card_with_another_lightgbm_version_is_refused_before_unpickling(
    bucket: Bucket, tmp_path: Path
) -> None:
    trained = lightgbm_iris()
    marker = tmp_path / "unpickled"
    data = pickle.dumps(_Touch(marker))
    major, minor, *_ = lightgbm.__version__.split(".")
    other = f"{major}.{int(minor) + 1}.0"
    card = trained.card.model_dump(mode="json")
    card["digest"] = bytes_digest(data)
    card["libraries"]["lightgbm"] = other
    published = bucket.publish(type(trained)(trained.pipeline, data, trained.card), card)

    served = start(bucket.env, published, tmp_path, ready=False)
    assert served.process.wait(timeout=60) != 0
    message = json.loads(served.termination_log.read_text())
    assert message["reason"] == "VersionSkew"
    assert (
        f"model trained with lightgbm {other} but this server runs {lightgbm.__version__}"
        in (message["message"])
    )
    assert not marker.exists()
