"""Feature engineering end to end: a TrainingJob spec with derived features and non-default
transforms trains against a real S3 server, the card lists them, and the model server — fed the
raw columns only, over both protocols — answers exactly what the trained pipeline predicts."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
import requests

from modelyard.storage.client import Storage
from modelyard.storage.layout import MODEL_CARD
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common.modelcard import ModelCard
from tests.integration.test_operator import Api, _quickstart, api  # noqa: F401 (fixture)
from tests.plugins.operator import Operator
from tests.serving import Served, start
from tests.workers import Worker

pytestmark = pytest.mark.integration

CITIES = ["oslo", "lima", "pune", "kyiv"]
ENGINEERING = {
    "derived": [
        {"name": "debt_ratio", "expression": "ratio(debt, income)"},
        {"name": "signup_month", "expression": "month(signup)"},
        {"name": "tier", "expression": "upper(city) + ('+' if member else '')"},
    ],
    "transforms": [
        {"name": "debt_ratio", "scaling": "robust"},
        {"name": "income", "scaling": "minmax"},
        {"name": "city", "encoding": "hash", "hashBuckets": 8},
        {"name": "tier", "encoding": "target"},
        {"name": "signup", "drop": True},
    ],
}
LOGISTIC = {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}}


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]) -> Worker:
    return Worker(tmp_path, monkeypatch)


@pytest.fixture
def loans(worker: Worker, storage: Storage, bucket_root: S3Uri) -> dict[str, Any]:
    """Loans with a mix of column types; the label is debt / income > 1."""
    rng = np.random.default_rng(5)
    rows = 400
    income = rng.uniform(1_000, 9_000, rows).round(2)
    debt = rng.uniform(0, 9_000, rows).round(2)
    table = pa.table(
        {
            "income": income,
            "debt": debt,
            "city": rng.choice(CITIES, rows),
            "signup": [
                f"2024-{m:02d}-{d:02d}"
                for m, d in zip(rng.integers(1, 13, rows), rng.integers(1, 29, rows), strict=True)
            ],
            "member": rng.random(rows) < 0.5,
            "label": np.where(debt / income > 1.0, "risky", "fine"),
        }
    )
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink)
    storage.put_bytes(bucket_root.join("loans.csv"), sink.getvalue())
    result = worker.ingest(
        {"source": {"s3": {"uri": str(bucket_root.join("loans.csv"))}}, "target": "label"},
        name="loans",
    )
    assert result.exit_code == 0, result.message
    return result.message


@pytest.fixture
def trained(worker: Worker, storage: Storage, loans: dict[str, Any]) -> dict[str, Any]:
    spec = {
        "datasetRef": {"name": "loans"},
        "estimator": LOGISTIC,
        "featureEngineering": ENGINEERING,
    }
    result = worker.train(spec, loans)
    assert result.exit_code == 0, result.message
    return result.message


@pytest.fixture
def server(trained: dict[str, Any], s3_env: dict[str, str], tmp_path: Path) -> Iterator[Served]:
    served = start(
        s3_env,
        trained["model"]["uri"],
        tmp_path,
        extra_env={
            "MODELYARD_MODEL_DIGEST": trained["model"]["digest"],
            "MODELYARD_MODEL_CARD_DIGEST": trained["model"]["cardDigest"],
        },
    )
    assert served.process.poll() is None, served.log()
    yield served
    assert served.stop() == 0


def card_of(storage: Storage, result: dict[str, Any]) -> ModelCard:
    model_uri = S3Uri.parse(result["model"]["uri"])
    prefix = S3Uri(model_uri.bucket, model_uri.key.rsplit("/", 1)[0])
    return ModelCard.model_validate_json(storage.get_bytes(prefix.join(MODEL_CARD)))


REQUEST_ROWS = [
    {"income": 2000.0, "debt": 3000.0, "city": "oslo", "signup": "2024-03-04", "member": True},
    {"income": 8000.0, "debt": 100.0, "city": "lima", "signup": "2024-11-30", "member": False},
    {"income": 1500.0, "debt": 1400.0, "city": "atlantis", "signup": "later", "member": True},
    {"income": 5000.0, "debt": 0.0, "city": None, "signup": None, "member": None},
    {"income": 0.0, "debt": 10.0, "city": "pune", "signup": "2024-01-01", "member": False},
]


def test_engineered_model_serves_what_the_trainer_predicts(
    trained: dict[str, Any], storage: Storage, server: Served
) -> None:
    card = card_of(storage, trained)
    # The model takes the raw columns; the card lists what it derives and how it transforms.
    names = [feature.name for feature in card.features]
    assert names == ["income", "debt", "city", "signup", "member"]
    assert [(d.name, d.expression, d.type) for d in card.derived] == [
        ("debt_ratio", "ratio(debt, income)", "float"),
        ("signup_month", "month(signup)", "float"),
        ("tier", "upper(city) + ('+' if member else '')", "string"),
    ]
    assert [t.name for t in card.transforms] == [t["name"] for t in ENGINEERING["transforms"]]

    pipeline = joblib.load(io.BytesIO(storage.get_bytes(S3Uri.parse(trained["model"]["uri"]))))
    # The matrix training builds: booleans as "true"/"false", NaN for missing.
    matrix = np.array(
        [
            [
                math.nan
                if row[name] is None
                else ("true" if row[name] else "false")
                if isinstance(row[name], bool)
                else row[name]
                for name in names
            ]
            for row in REQUEST_ROWS
        ],
        dtype=object,
    )
    expected = pipeline.predict(matrix).tolist()
    expected_proba = pipeline.predict_proba(matrix).tolist()
    assert expected[:2] == ["risky", "fine"]

    v1 = requests.post(
        f"{server.url}/v1/models/{card.name}:predict",
        json={"instances": REQUEST_ROWS, "parameters": {"probabilities": True}},
        timeout=30,
    )
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == expected
    np.testing.assert_allclose(v1.json()["probabilities"], expected_proba, rtol=1e-12)

    lists = [[row[name] for name in names] for row in REQUEST_ROWS]
    v1_lists = requests.post(
        f"{server.url}/v1/models/{card.name}:predict", json={"instances": lists}, timeout=30
    )
    assert v1_lists.json()["predictions"] == expected

    metadata = requests.get(f"{server.url}/v2/models/{card.name}", timeout=30).json()
    datatypes = {tensor["name"]: tensor["datatype"] for tensor in metadata["inputs"]}
    tensors = [
        {
            "name": name,
            "shape": [len(REQUEST_ROWS)],
            "datatype": datatypes[name],
            "data": [row[name] for row in REQUEST_ROWS],
        }
        for name in names
    ]
    v2 = requests.post(
        f"{server.url}/v2/models/{card.name}/infer", json={"inputs": tensors}, timeout=30
    )
    assert v2.status_code == 200, v2.text
    (output,) = [o for o in v2.json()["outputs"] if o["name"] == "predict"]
    assert output["data"] == expected


def test_a_default_run_has_no_feature_engineering_in_its_card(
    worker: Worker, storage: Storage, loans: dict[str, Any]
) -> None:
    result = worker.train(
        {"datasetRef": {"name": "loans"}, "estimator": LOGISTIC}, loans, run="run-2"
    )
    assert result.exit_code == 0, result.message
    model_uri = S3Uri.parse(result.message["model"]["uri"])
    prefix = S3Uri(model_uri.bucket, model_uri.key.rsplit("/", 1)[0])
    document = storage.get_json(prefix.join(MODEL_CARD))
    assert "derived" not in document and "transforms" not in document
    pipeline = joblib.load(io.BytesIO(storage.get_bytes(model_uri)))
    assert [name for name, _ in pipeline.steps] == ["preprocess", "model"]


@pytest.mark.parametrize(
    ("engineering", "field"),
    [
        (
            {"derived": [{"name": "x", "expression": "label == 'risky'"}]},
            "spec.featureEngineering.derived[0].expression: unknown column 'label'",
        ),
        (
            {"derived": [{"name": "city", "expression": "lower(city)"}]},
            "spec.featureEngineering.derived[0].name: 'city' is already a column",
        ),
        (
            {"transforms": [{"name": "tenure", "scaling": "minmax"}]},
            "spec.featureEngineering.transforms[tenure]: no feature 'tenure'",
        ),
    ],
)
def test_feature_engineering_that_does_not_fit_the_dataset_fails_fast(
    worker: Worker, loans: dict[str, Any], engineering: dict[str, Any], field: str
) -> None:
    spec = {
        "datasetRef": {"name": "loans"},
        "estimator": LOGISTIC,
        "featureEngineering": engineering,
    }
    result = worker.train(spec, loans)
    assert result.exit_code != 0
    assert result.message["reason"] == "InvalidFeatures"
    assert result.message["message"].startswith(field)


def test_a_malformed_expression_fails_naming_the_field(
    worker: Worker, loans: dict[str, Any]
) -> None:
    engineering = {"derived": [{"name": "x", "expression": "income.__class__"}]}
    spec = {
        "datasetRef": {"name": "loans"},
        "estimator": LOGISTIC,
        "featureEngineering": engineering,
    }
    result = worker.train(spec, loans)
    assert result.exit_code != 0
    assert result.message["reason"] == "InvalidSpec"
    assert "derived[0].expression" in result.message["message"]
    assert "attribute access" in result.message["message"]


def test_operator_stalls_a_trainingjob_whose_expression_does_not_parse(
    api: Api,  # noqa: F811 (the fixture imported above)
    operator: Operator,
) -> None:
    # The API server cannot parse expressions, so it admits this; the operator refuses it.
    body = _quickstart("TrainingJob")
    body["spec"]["featureEngineering"] = {
        "derived": [{"name": "x", "expression": "__import__('os').getcwd()"}]
    }
    api.create(body)
    ready = api.wait_condition("TrainingJob", "iris-classifier", "Ready", "False", "InvalidSpec")
    assert ready["message"].startswith("spec.featureEngineering.derived[0].expression: ")
    assert "only the functions of docs/features.md may be called" in ready["message"]
    assert api.status("TrainingJob", "iris-classifier")["phase"] == "Failed"
    assert not api.jobs("modelyard.dev/trainingjob=iris-classifier")
    # Fixed, it proceeds: waiting for its Dataset is progress, not a failure.
    fixed = [{"name": "x", "expression": "log1p(col('petal length (cm)'))"}]
    api.patch(
        "TrainingJob", "iris-classifier", {"spec": {"featureEngineering": {"derived": fixed}}}
    )
    api.wait_condition("TrainingJob", "iris-classifier", "Ready", "Unknown", "DatasetNotFound")
