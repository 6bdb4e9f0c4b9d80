"""S3 goes away during ingest and training: a stable reason, nothing half-published, and the
next run succeeds once storage is back.

Each test runs against a private S3 server behind an endpoint it cuts (connections refused,
open ones reset) at a chosen request, then restores; the server keeps its objects, so the test
can see exactly what the failed run left behind.
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from modelyard.exitcodes import EXIT_FAILED
from modelyard.reasons import Reason
from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from modelyard.storage.layout import MANIFEST
from modelyard.storage.uri import S3Uri
from tests.plugins.s3 import S3Outage
from tests.workers import Worker, WorkerResult

pytestmark = pytest.mark.integration

SOURCE = "incoming/data.csv"

ROWS = 60_000
TRAIN_SPEC = {
    "datasetRef": {"name": "data"},
    "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 200}},
}


@pytest.fixture
def bucket(s3_outage: S3Outage) -> S3Uri:
    return S3Uri(s3_outage.bucket)


@pytest.fixture
def storage(s3_outage: S3Outage, bucket: S3Uri) -> Storage:
    storage = Storage(StorageConfig.from_env())
    rows = pa.table(
        {
            "x": pa.array(range(ROWS), type=pa.float64()),
            "y": [float(i % 7) for i in range(ROWS)],
            "label": [i % 2 for i in range(ROWS)],
        }
    )
    sink = io.BytesIO()
    pa_csv.write_csv(rows, sink)
    storage.put_bytes(bucket.join(SOURCE), sink.getvalue())
    return storage


@pytest.fixture
def worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_outage: S3Outage, storage: Storage
) -> Worker:
    # Two attempts per call instead of five: the test waits for botocore's backoff less.
    monkeypatch.setenv("MODELYARD_S3_MAX_ATTEMPTS", "2")
    return Worker(tmp_path, monkeypatch)


def _ingest(worker: Worker, bucket: S3Uri) -> WorkerResult:
    return worker.ingest({"source": {"s3": {"uri": str(bucket.join(SOURCE))}}, "target": "label"})


def _manifests(storage: Storage, bucket: S3Uri, under: str) -> list[str]:
    return [uri.key for uri in storage.list(bucket.join(under)) if uri.key.endswith(MANIFEST)]


def _assert_storage_unavailable(result: WorkerResult) -> None:
    # Exit code 1 is the retryable one: the Job's backoffLimit gives the run more tries.
    assert result.exit_code == EXIT_FAILED, result.message
    assert result.message["reason"] == Reason.StorageUnavailable, result.message
    assert "S3" in result.message["message"]


@pytest.mark.parametrize(
    ("fault", "where"),
    [
        ("down before the run", None),
        ("reset while reading the source", 200_000),
        ("reset at the snapshot upload", ("PUT", "data.parquet")),
        ("reset at the manifest write", ("PUT", MANIFEST)),
    ],
)
def test_ingest_during_an_s3_outage_publishes_nothing_and_the_next_run_succeeds(
    worker: Worker,
    storage: Storage,
    bucket: S3Uri,
    s3_outage: S3Outage,
    fault: str,
    where: tuple[str, str] | int | None,
) -> None:
    if where is None:
        s3_outage.cut()
    elif isinstance(where, int):
        s3_outage.cut_after_response_bytes(where)
    else:
        s3_outage.cut_on_request(*where)

    _assert_storage_unavailable(_ingest(worker, bucket))

    s3_outage.restore()
    assert _manifests(storage, bucket, "namespaces/ml/datasets") == [], (
        f"{fault}: a version became visible"
    )
    retried = _ingest(worker, bucket)
    assert retried.exit_code == 0, retried.message
    assert _manifests(storage, bucket, "namespaces/ml/datasets") == [
        f"{S3Uri.parse(retried.message['uri']).key}/{MANIFEST}"
    ]


@pytest.mark.parametrize(
    ("fault", "where"),
    [
        ("down before the run", None),
        ("reset while downloading the snapshot", ("GET", "data.parquet")),
        ("reset at the model upload", ("PUT", "model.joblib")),
        ("reset at the manifest write", ("PUT", MANIFEST)),
    ],
)
def test_training_during_an_s3_outage_publishes_no_model_and_the_next_run_succeeds(
    worker: Worker,
    storage: Storage,
    bucket: S3Uri,
    s3_outage: S3Outage,
    fault: str,
    where: tuple[str, str] | None,
) -> None:
    dataset = _ingest(worker, bucket)
    assert dataset.exit_code == 0, dataset.message
    if where is None:
        s3_outage.cut()
    else:
        s3_outage.cut_on_request(*where)

    _assert_storage_unavailable(worker.train(TRAIN_SPEC, dataset.message, name="data"))

    s3_outage.restore()
    assert _manifests(storage, bucket, "namespaces/ml/models") == [], (
        f"{fault}: a model became visible"
    )
    retried = worker.train(TRAIN_SPEC, dataset.message, name="data")
    assert retried.exit_code == 0, retried.message
    assert _manifests(storage, bucket, "namespaces/ml/models") == [
        f"namespaces/ml/models/data/local/run-1/{MANIFEST}"
    ]
