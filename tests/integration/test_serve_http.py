"""The model server as a user meets it: a real process on loopback, a model in a real
S3-compatible server, both inference protocols over HTTP, and every kind of bad request."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from modelyard.storage.digest import bytes_digest
from modelyard.storage.layout import MANIFEST, MODEL_CARD, MODEL_FILE
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common.modelcard import Feature
from tests.plugins.s3 import S3Server
from tests.serving import Bucket, Served, bucket_on, read_until_closed, start
from tests.unit.test_serve_protocol import IRIS_FEATURES, Trained, iris, mixed, train

pytestmark = pytest.mark.integration

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]]
MAX_BODY = 64 * 1024
ROW = IRIS_ROWS[0]
NAMED = dict(zip(IRIS_FEATURES, ROW, strict=True))


# --- running servers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> Iterator[Bucket]:
    with bucket_on(s3_server) as bucket:
        yield bucket


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def iris_model() -> Trained:
    return iris()


@pytest.fixture(scope="module")
def iris_server(bucket: Bucket, workdir: Path, iris_model: Trained) -> Iterator[Served]:
    served = start(
        bucket.env, bucket.publish(iris_model), workdir, "--max-body-bytes", str(MAX_BODY)
    )
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def cancer_model() -> Trained:
    x, y = load_breast_cancer(return_X_y=True)
    names = [name.replace(" ", "_") for name in load_breast_cancer().feature_names]
    features = [Feature(name=name, type="float") for name in names]
    return train("cancer", features, x, y, RandomForestClassifier(n_estimators=10, random_state=0))


@pytest.fixture(scope="module")
def cancer_server(bucket: Bucket, workdir: Path, cancer_model: Trained) -> Iterator[Served]:
    served = start(bucket.env, bucket.publish(cancer_model), workdir)
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def mixed_model() -> Trained:
    return mixed()


@pytest.fixture(scope="module")
def mixed_server(bucket: Bucket, workdir: Path, mixed_model: Trained) -> Iterator[Served]:
    served = start(bucket.env, bucket.publish(mixed_model), workdir, "--name", "churn-v2")
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def petal_server(bucket: Bucket, workdir: Path) -> Iterator[Served]:
    """A regression model without an imputer: no probabilities, no missing values."""
    x = np.array(IRIS_ROWS * 10) + np.random.default_rng(1).normal(0, 0.1, (30, 4))
    features = [Feature(name=name, type="float") for name in IRIS_FEATURES[:3]]
    estimator = Ridge()
    trained = train("petal", features, x[:, :3], x[:, 3], estimator, make_pipeline(estimator))
    served = start(bucket.env, bucket.publish(trained), workdir)
    yield served
    assert served.stop() == 0


def v2(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    width = len(rows[0])
    tensor = {"name": "x", "shape": [len(rows), width], "datatype": "FP64", "data": rows}
    return {"inputs": [tensor], **extra}


# --- predictions ---------------------------------------------------------------------------


def test_iris_predictions_match_the_pipeline_over_both_protocols(
    iris_server: Served, iris_model: Trained
) -> None:
    expected = iris_model.pipeline.predict(np.array(IRIS_ROWS)).tolist()
    expected_proba = iris_model.pipeline.predict_proba(np.array(IRIS_ROWS))

    answer = requests.post(
        f"{iris_server.url}/v2/models/iris/infer", json=v2(IRIS_ROWS, id="r1"), timeout=10
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    document = answer.json()
    assert document["model_name"] == "iris"
    assert document["model_version"] == iris_model.card.digest.removeprefix("sha256:")[:12]
    assert document["id"] == "r1"
    assert document["outputs"] == [
        {"name": "predict", "shape": [3], "datatype": "INT64", "data": expected}
    ]

    answer = requests.post(
        f"{iris_server.url}/v2/models/iris/infer",
        json=v2(IRIS_ROWS, outputs=[{"name": "predict_proba"}]),
        timeout=10,
    )
    (proba,) = answer.json()["outputs"]
    assert proba["name"] == "predict_proba" and proba["shape"] == [3, 3]
    np.testing.assert_allclose(np.reshape(proba["data"], (3, 3)), expected_proba)

    answer = requests.post(
        f"{iris_server.url}/v1/models/iris:predict", json={"instances": IRIS_ROWS}, timeout=10
    )
    assert answer.json() == {"model_name": "iris", "predictions": expected}

    named = [dict(zip(IRIS_FEATURES, row, strict=True)) for row in IRIS_ROWS]
    documents: list[tuple[str, dict[str, Any]]] = [
        (f"{iris_server.url}/v1/models/iris:predict_proba", {"instances": named}),
        (
            f"{iris_server.url}/v1/models/iris:predict",
            {"instances": named, "parameters": {"probabilities": True}},
        ),
    ]
    for url, document in documents:
        answer = requests.post(url, json=document, timeout=10).json()
        assert answer["predictions"] == expected
        assert answer["classes"] == [0, 1, 2]
        np.testing.assert_allclose(answer["probabilities"], expected_proba)


def test_breast_cancer_by_feature_tensors(cancer_server: Served, cancer_model: Trained) -> None:
    x, _ = load_breast_cancer(return_X_y=True)
    rows = x[:5]
    names = [feature.name for feature in cancer_model.card.features]
    inputs = [
        {"name": name, "shape": [5], "datatype": "FP64", "data": rows[:, i].tolist()}
        for i, name in enumerate(names)
    ]
    answer = requests.post(
        f"{cancer_server.url}/v2/models/cancer/infer",
        json={"inputs": inputs[::-1], "parameters": {"probabilities": True}},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    predict, proba = answer.json()["outputs"]
    assert predict["data"] == cancer_model.pipeline.predict(rows).tolist()
    np.testing.assert_allclose(
        np.reshape(proba["data"], (5, 2)), cancer_model.pipeline.predict_proba(rows)
    )


def test_mixed_types_and_string_classes(mixed_server: Served, mixed_model: Trained) -> None:
    instances: list[dict[str, Any]] = [
        {"age": 61.0, "city": "lima", "member": False},
        {"age": 22.0, "city": "atlantis", "member": True},  # unseen city: ignored by training
        {"age": None, "city": None, "member": False},  # imputed, as in training
    ]
    answer = requests.post(
        f"{mixed_server.url}/v1/models/churn-v2:predict", json={"instances": instances}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    matrix = np.array(
        [[61.0, "lima", "false"], [22.0, "atlantis", "true"], [np.nan, np.nan, "false"]],
        dtype=object,
    )
    assert answer.json() == {
        "model_name": "churn-v2",
        "predictions": mixed_model.pipeline.predict(matrix).tolist(),
    }
    inputs: list[dict[str, Any]] = [
        {"name": "age", "shape": [1], "datatype": "FP64", "data": [61.0]},
        {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["lima"]},
        {"name": "member", "shape": [1], "datatype": "BOOL", "data": [False]},
    ]
    answer = requests.post(
        f"{mixed_server.url}/v2/models/churn-v2/infer", json={"inputs": inputs}, timeout=10
    )
    assert answer.json()["outputs"][0] == {
        "name": "predict",
        "shape": [1],
        "datatype": "BYTES",
        "data": mixed_model.pipeline.predict(matrix[:1]).tolist(),
    }


def test_metadata_and_health(iris_server: Served, iris_model: Trained) -> None:
    url = iris_server.url
    version = iris_model.card.digest.removeprefix("sha256:")[:12]
    assert requests.get(f"{url}/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(f"{url}/v2/health/ready", timeout=5).json() == {"ready": True}
    assert requests.get(f"{url}/v2", timeout=5).json()["name"] == "modelyard"
    assert requests.get(f"{url}/v2/models/iris/ready", timeout=5).json() == {
        "name": "iris",
        "ready": True,
    }
    assert requests.get(f"{url}/v1/models/iris", timeout=5).json() == {
        "name": "iris",
        "ready": True,
    }
    metadata = requests.get(f"{url}/v2/models/iris", timeout=5).json()
    assert metadata["versions"] == [version]
    assert [tensor["name"] for tensor in metadata["inputs"]] == IRIS_FEATURES
    assert [tensor["name"] for tensor in metadata["outputs"]] == ["predict", "predict_proba"]
    assert metadata["parameters"]["digest"] == iris_model.card.digest
    assert metadata["parameters"]["engine"] == "numpy"
    versioned = requests.post(
        f"{url}/v2/models/iris/versions/{version}/infer", json=v2(IRIS_ROWS[:1]), timeout=5
    )
    assert versioned.json()["outputs"][0]["data"] == [0]


def test_metrics_count_requests_classes_and_drift(iris_server: Served) -> None:
    url = iris_server.url
    for _ in range(3):
        requests.post(f"{url}/v1/models/iris:predict", json={"instances": IRIS_ROWS}, timeout=5)
    requests.post(f"{url}/v1/models/iris:predict", json={"instances": [[1, 2]]}, timeout=5)
    text = requests.get(f"{url}/metrics", timeout=5).text
    samples = parse_metrics(text)

    def value(name: str, **labels: str) -> float:
        return sum(
            sample_value
            for sample_name, sample_labels, sample_value in samples
            if sample_name == name and labels.items() <= sample_labels.items()
        )

    endpoint = "/v1/models/{name}:predict"
    assert value("modelyard_server_requests_total", endpoint=endpoint, status="200") >= 3
    assert value("modelyard_server_requests_total", endpoint=endpoint, status="422") >= 1
    assert (
        value("modelyard_server_request_duration_seconds_count", endpoint=endpoint, status="200")
        >= 3
    )
    for label in ("0", "1", "2"):
        assert value("modelyard_server_predictions_total", model="iris", **{"class": label}) >= 3
    assert value("modelyard_server_model_load_seconds", model="iris") > 0
    assert value("modelyard_server_model_ready", model="iris") == 1
    drift = {
        labels["feature"]: sample_value
        for name, labels, sample_value in samples
        if name == "modelyard_server_feature_drift_psi"
    }
    assert set(drift) == set(IRIS_FEATURES)
    assert all(score >= 0 for score in drift.values())


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text format, enough of it for our own metrics."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, number = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels = dict(
            (key, raw.strip('"'))
            for key, _, raw in (pair.partition("=") for pair in rest.rstrip("}").split(",") if pair)
        )
        samples.append((name, labels, float(number)))
    return samples


def test_pipelined_requests_are_answered_in_order(iris_server: Served) -> None:
    bodies = [json.dumps({"instances": [row]}).encode() for row in IRIS_ROWS]
    wire = (
        b"".join(
            b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
            for body in bodies
        )
        + b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    responses = exchange(iris_server.port, wire).split(b"HTTP/1.1 ")[1:]
    assert [response.split(b"\r\n\r\n", 1)[1] for response in responses] == [
        b'{"model_name":"iris","predictions":[0]}',
        b'{"model_name":"iris","predictions":[1]}',
        b'{"model_name":"iris","predictions":[2]}',
        b'{"live":true}',
    ]


def exchange(port: int, wire: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(wire)
        return read_until_closed(sock)


def test_malformed_http_gets_400_and_a_closed_connection(iris_server: Served) -> None:
    received = exchange(
        iris_server.port, b"POST /v1/models/iris:predict HTTP/1.1\r\nbad header\r\n\r\n"
    )
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"connection: close" in head
    assert json.loads(payload)["error"].startswith("malformed HTTP request")


def test_expect_continue_is_honoured(iris_server: Served) -> None:
    """curl sends `Expect: 100-continue` for bodies over 1 KiB and waits for the go-ahead."""
    body = json.dumps({"instances": [ROW] * 64}).encode()
    with socket.create_connection(("127.0.0.1", iris_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        received = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(received.partition(b"\r\n\r\n")[2])["predictions"] == [0] * 64


def test_large_batches_are_answered_too(iris_server: Served, iris_model: Trained) -> None:
    """Over the inline threshold the model runs on a worker thread: same answer."""
    rows = (np.array(IRIS_ROWS * 700) + 0.01).round(2).tolist()  # 2100 rows, under MAX_BODY
    answer = requests.post(
        f"{iris_server.url}/v1/models/iris:predict", json={"instances": rows}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    expected = iris_model.pipeline.predict(np.array(rows)).tolist()
    assert answer.json()["predictions"] == expected
    # The same rows as one V2 tensor, flat (row-major): a body this size is read by the
    # numeric fast path (numeric_json.py), which must give the pipeline's answer too.
    flat = {
        "name": "x",
        "shape": [len(rows), 4],
        "datatype": "FP64",
        "data": [value for row in rows for value in row],
    }
    answer = requests.post(
        f"{iris_server.url}/v2/models/iris/infer", json={"inputs": [flat]}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    (predict,) = answer.json()["outputs"]
    assert predict["data"] == expected


# --- the catalogue of bad requests ---------------------------------------------------------

INFER = "/v2/models/iris/infer"
PREDICT = "/v1/models/iris:predict"
TENSOR = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [ROW]}


def tensor(**changes: Any) -> dict[str, Any]:
    return {"inputs": [{**TENSOR, **changes}]}


# (name, method, path, body, status, fragment of the error message)
CATALOGUE: list[tuple[str, str, str, bytes | dict[str, Any] | list[Any], int, str]] = [
    ("malformed JSON", "POST", PREDICT, b'{"instances": [[1,2', 400, "malformed JSON"),
    ("empty body", "POST", PREDICT, b"", 400, "empty request body"),
    ("JSON nested too deep", "POST", PREDICT, b"[" * 5000 + b"]" * 5000, 400, "malformed JSON"),
    ("body is a list", "POST", PREDICT, [[1, 2, 3, 4]], 400, "must be a JSON object"),
    ("no instances", "POST", PREDICT, {"rows": []}, 400, 'missing "instances"'),
    ("instances not a list", "POST", PREDICT, {"instances": 5}, 400, "must be a list of rows"),
    ("no rows", "POST", PREDICT, {"instances": []}, 422, '"instances" is empty'),
    ("flat row", "POST", PREDICT, {"instances": [5.1, 3.5, 1.4, 0.2]}, 422, "wrap a single row"),
    (
        "too few features",
        "POST",
        PREDICT,
        {"instances": [[5.1, 3.5, 1.4]]},
        422,
        "row 0 has 3 values but the model takes 4 features",
    ),
    (
        "ragged rows",
        "POST",
        PREDICT,
        {"instances": [[5.1, 3.5, 1.4, 0.2], [1, 2]]},
        422,
        "row 1 has 2 values but the model takes 4",
    ),
    (
        "string for a number",
        "POST",
        PREDICT,
        {"instances": [[5.1, "wide", 1.4, 0.2]]},
        422,
        "row 0, feature 'sepal_width': expected a number, got a string",
    ),
    (
        "infinity",
        "POST",
        PREDICT,
        b'{"instances": [[5.1, 3.5, 1e999, 0.2]]}',
        422,
        "row 0, feature 'petal_length': inf is not a finite number",
    ),
    (
        "unknown feature name",
        "POST",
        PREDICT,
        {"instances": [{**NAMED, "color": 1}]},
        422,
        "row 0: unknown feature(s) ['color']",
    ),
    (
        "missing feature name",
        "POST",
        PREDICT,
        {"instances": [{k: v for k, v in NAMED.items() if k != "petal_width"}]},
        422,
        "row 0 lacks feature(s) ['petal_width']",
    ),
    (
        "probabilities flag not boolean",
        "POST",
        PREDICT,
        {"instances": [ROW], "parameters": {"probabilities": "yes"}},
        400,
        "must be true or false",
    ),
    ("V2 without inputs", "POST", INFER, {"outputs": []}, 400, '"inputs" must be a non-empty'),
    ("V2 unknown datatype", "POST", INFER, tensor(datatype="FLOAT"), 400, "unknown datatype"),
    ("V2 bad shape", "POST", INFER, tensor(shape=[1, "4"]), 400, '"shape" must be a list'),
    (
        "V2 wrong width",
        "POST",
        INFER,
        tensor(shape=[1, 3], data=[5.1, 3.5, 1.4]),
        422,
        "has 3 features per row but the model takes 4",
    ),
    (
        "V2 data does not fill shape",
        "POST",
        INFER,
        tensor(shape=[2, 4], data=[5.1, 3.5, 1.4, 0.2]),
        422,
        "shape [2, 4] needs 8 values, data has 4",
    ),
    (
        "V2 bytes for numbers",
        "POST",
        INFER,
        tensor(datatype="BYTES"),
        422,
        "datatype BYTES, but every feature is a number",
    ),
    (
        "V2 unknown feature tensors",
        "POST",
        INFER,
        {
            "inputs": [
                {"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": [1]},
                {"name": "colour", "shape": [1], "datatype": "FP64", "data": [1]},
            ]
        },
        422,
        "unknown feature(s) ['colour']",
    ),
    (
        "V2 missing feature tensors",
        "POST",
        INFER,
        {"inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": [1]}]},
        422,
        "missing feature(s) ['sepal_width', 'petal_length', 'petal_width']",
    ),
    (
        "V2 unknown output",
        "POST",
        INFER,
        {**tensor(), "outputs": [{"name": "explain"}]},
        422,
        "unknown output(s) ['explain']",
    ),
    ("unknown model", "POST", "/v2/models/tulip/infer", tensor(), 404, "model 'tulip' not found"),
    ("unknown V1 model", "POST", "/v1/models/tulip:predict", {}, 404, "model 'tulip' not found"),
    ("unknown path", "GET", "/v3/anything", b"", 404, "no such endpoint: /v3/anything"),
    ("GET on infer", "GET", INFER, b"", 405, "GET is not allowed on /v2/models/{name}/infer"),
    ("POST on health", "POST", "/v2/health/live", b"", 405, "use GET"),
    ("oversized body", "POST", PREDICT, b"[" * (MAX_BODY + 1), 413, f"exceeds {MAX_BODY} bytes"),
    ("URL too long", "GET", "/v2/" + "a" * 9000, b"", 414, "the URL exceeds 8192 bytes"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [case[1:] for case in CATALOGUE],
    ids=[case[0] for case in CATALOGUE],
)
def test_bad_request_catalogue(
    iris_server: Served,
    method: str,
    path: str,
    body: bytes | dict[str, Any] | list[Any],
    status: int,
    fragment: str,
) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = requests.request(method, iris_server.url + path, data=data, timeout=10)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert fragment in answer.json()["error"]
    if status == 405:
        assert answer.headers["allow"] in ("GET", "POST")
    # The server shrugs it off: still live, still predicting.
    assert requests.get(iris_server.url + "/v2/health/live", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        (
            "/v1/models/petal:predict_proba",
            {"instances": [[5.1, 3.5, 1.4]]},
            "model 'petal' is a regression model: no probabilities",
        ),
        (
            "/v2/models/petal/infer",
            {**tensor(shape=[1, 3], data=[5.1, 3.5, 1.4]), "outputs": [{"name": "predict_proba"}]},
            "model 'petal' is a regression model: no probabilities",
        ),
        (
            "/v1/models/petal:predict",
            {"instances": [[5.1, None, 1.4]]},
            "row 0, feature 'sepal_width': missing value (null/NaN), and this model cannot "
            "impute missing values",
        ),
        (
            "/v1/models/petal:predict",
            b'{"instances": [[5.1, NaN, 1.4]]}',
            "row 0, feature 'sepal_width': missing value",
        ),
    ],
    ids=["V1 probabilities", "V2 probabilities", "null", "NaN"],
)
def test_bad_requests_for_a_regression_model_without_imputer(
    petal_server: Served, path: str, body: dict[str, Any] | bytes, fragment: str
) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = requests.post(petal_server.url + path, data=data, timeout=10)
    assert answer.status_code == 422, answer.text
    assert fragment in answer.json()["error"]


def test_regression_predictions(petal_server: Served) -> None:
    answer = requests.post(
        f"{petal_server.url}/v1/models/petal:predict", json={"instances": [[6.7, 3.0, 5.2]]}
    )
    (value,) = answer.json()["predictions"]
    assert 1.5 < value < 3.0


def test_oversized_headers_are_refused(iris_server: Served) -> None:
    answer = requests.get(
        f"{iris_server.url}/v2/health/live", headers={"x-padding": "a" * 70_000}, timeout=10
    )
    assert answer.status_code == 431
    assert answer.json() == {"error": "the headers exceed 65536 bytes"}


def test_oversized_body_without_length_is_refused(iris_server: Served) -> None:
    """A chunked body gives no length up front: it is cut off once it passes the limit."""

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024

    answer = requests.post(f"{iris_server.url}{PREDICT}", data=chunks(), timeout=10)
    assert answer.status_code == 413
    assert f"exceeds {MAX_BODY} bytes" in answer.json()["error"]


# --- starting, refusing, draining ----------------------------------------------------------


def refused(served: Served) -> tuple[int, dict[str, Any]]:
    code = served.process.wait(timeout=60)
    return code, json.loads(served.termination_log.read_text())


def test_refuses_a_model_whose_digest_differs_from_its_card(
    bucket: Bucket, workdir: Path, iris_model: Trained
) -> None:
    card = iris_model.card.model_dump(mode="json")
    card["digest"] = "sha256:" + "f" * 64
    served = start(bucket.env, bucket.publish(iris_model, card), workdir)
    code, message = refused(served)
    assert code != 0
    assert message["reason"] == "DigestMismatch"
    assert "refusing to load a model file that is not the one trained" in message["message"]
    assert "DigestMismatch" in served.log()


def test_refuses_a_model_other_than_the_one_deployed(
    bucket: Bucket, workdir: Path, iris_model: Trained
) -> None:
    expected = "sha256:" + "0" * 64
    served = start(
        bucket.env,
        bucket.publish(iris_model),
        workdir,
        extra_env={"MODELYARD_MODEL_DIGEST": expected},
    )
    code, message = refused(served)
    assert code != 0
    assert message["reason"] == "DigestMismatch"
    assert f"but {expected} was expected" in message["message"]


def test_refuses_a_scikit_learn_version_skew(
    bucket: Bucket, workdir: Path, iris_model: Trained
) -> None:
    card = iris_model.card.model_dump(mode="json")
    card["libraries"]["scikit-learn"] = "1.2.2"
    served = start(bucket.env, bucket.publish(iris_model, card), workdir)
    code, message = refused(served)
    assert code != 0
    assert message["reason"] == "VersionSkew"
    assert (
        f"trained with scikit-learn 1.2.2 but this server runs {sklearn.__version__}"
        in (message["message"])
    )


def test_refuses_a_model_without_its_card(bucket: Bucket, workdir: Path) -> None:
    uri = bucket.root.join("models", "default", "orphan", MODEL_FILE)
    bucket.storage.put_bytes(uri, b"not even a pickle")
    manifest = S3Uri(uri.bucket, uri.key.rsplit("/", 1)[0]).join(MANIFEST)
    bucket.storage.put_json(manifest, {"digest": bytes_digest(b"not even a pickle")})
    code, message = refused(start(bucket.env, uri, workdir))
    assert code != 0
    assert message["reason"] == "ModelCardNotFound"


def test_refuses_a_model_that_was_never_published(
    bucket: Bucket, workdir: Path, iris_model: Trained
) -> None:
    """No manifest: training wrote it last, so the model may be half-written."""
    code, message = refused(start(bucket.env, bucket.publish(iris_model, manifest=False), workdir))
    assert code != 0
    assert message["reason"] == "ModelNotPublished"


def test_refuses_a_card_other_than_the_one_recorded(
    bucket: Bucket, workdir: Path, iris_model: Trained
) -> None:
    """A bucket writer swaps the feature order in the card and its manifest; the card digest
    the operator recorded at training time still tells, before the card is read."""
    card = iris_model.card.model_dump(mode="json")
    recorded = bytes_digest(json.dumps(card, indent=2).encode())
    card["features"] = list(reversed(card["features"]))
    served = start(
        bucket.env,
        bucket.publish(iris_model, card),
        workdir,
        extra_env={"MODELYARD_MODEL_CARD_DIGEST": recorded},
    )
    code, message = refused(served)
    assert code != 0
    assert message["reason"] == "DigestMismatch"
    assert (
        "model.json" in message["message"]
        and f"but {recorded} was expected" in (message["message"])
    )


def test_refuses_a_card_that_differs_from_its_manifest(
    bucket: Bucket, workdir: Path, iris_model: Trained
) -> None:
    uri = bucket.publish(iris_model)
    card_uri = S3Uri(uri.bucket, uri.key.rsplit("/", 1)[0]).join(MODEL_CARD)
    card = iris_model.card.model_dump(mode="json")
    card["features"] = list(reversed(card["features"]))
    bucket.storage.put_json(card_uri, card)
    code, message = refused(start(bucket.env, uri, workdir))
    assert code != 0
    assert message["reason"] == "DigestMismatch"
    assert "its manifest" in message["message"]


def test_workers_refuse_a_bad_model_before_starting(
    bucket: Bucket, workdir: Path, iris_model: Trained
) -> None:
    card = iris_model.card.model_dump(mode="json")
    card["digest"] = "sha256:" + "e" * 64
    served = start(bucket.env, bucket.publish(iris_model, card), workdir, "--workers", "2")
    code, message = refused(served)
    assert code != 0
    assert message["reason"] == "DigestMismatch"


def test_not_ready_while_loading_and_stops_cleanly(bucket: Bucket, workdir: Path) -> None:
    """An S3 endpoint that accepts connections but never answers keeps the model loading."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        env = {**bucket.env, "MODELYARD_S3_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        served = start(env, bucket.root.join("models", MODEL_FILE), workdir, ready=False)
        try:
            assert requests.get(served.url + "/v2/health/live", timeout=5).status_code == 200
            ready = requests.get(served.url + "/v2/health/ready", timeout=5)
            assert (ready.status_code, ready.json()) == (503, {"ready": False})
            infer = requests.post(served.url + "/v1/models/iris:predict", json={}, timeout=5)
            assert infer.status_code == 503
            assert infer.json() == {"error": "the model is still loading"}
        finally:
            assert served.stop() == 0


def assert_last_answer(served: Served, received: bytes) -> None:
    """A draining server's answer to one iris row: the prediction, then the connection and the
    server gone."""
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in head
    assert json.loads(payload) == {"model_name": "iris", "predictions": [0]}
    assert served.process.wait(timeout=30) == 0


def test_sigterm_drains_the_request_in_flight(
    bucket: Bucket, workdir: Path, iris_model: Trained
) -> None:
    served = start(bucket.env, bucket.publish(iris_model), workdir)
    body = json.dumps({"instances": IRIS_ROWS[:1]}).encode()
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        # Half a request is in flight when SIGTERM arrives ...
        sock.sendall(b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\n")
        sock.sendall(b"content-length: %d\r\n\r\n%s" % (len(body), body[:10]))
        # ... the server gets it and its listener closes (new connections are refused) ...
        served.stop_listening()
        # ... and the request still completes, with the connection closed after it.
        sock.sendall(body[10:])
        assert_last_answer(served, read_until_closed(sock))


def test_sigterm_answers_a_request_sent_on_an_idle_keep_alive_connection(
    bucket: Bucket, workdir: Path, iris_model: Trained
) -> None:
    """A proxy (the canary router's nginx) may send a request on an idle pooled connection just
    as the server stops; closed under it, a POST cannot be retried and the client reads a 502.
    The server keeps idle connections open a while when draining and answers on them."""
    served = start(bucket.env, bucket.publish(iris_model), workdir)
    body = json.dumps({"instances": IRIS_ROWS[:1]}).encode()
    request = b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (
        PREDICT.encode(),
        len(body),
        body,
    )
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(request)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 OK") and b"connection: close" not in first
        # The connection is idle in the client's pool when SIGTERM arrives ...
        served.stop_listening()
        # ... and a request sent on it after the server began draining is answered, and the
        # connection closed after it.
        sock.sendall(request)
        assert_last_answer(served, read_until_closed(sock))


def test_sigterm_closes_idle_keep_alive_connections_and_exits(
    bucket: Bucket, workdir: Path, iris_model: Trained
) -> None:
    """A client that keeps an idle connection open does not hold the server up until
    --drain-seconds: it is closed once idle longer than a proxy keeps one."""
    served = start(bucket.env, bucket.publish(iris_model), workdir, "--drain-seconds", "120")
    with requests.Session() as session:
        answer = session.post(f"{served.url}{PREDICT}", json={"instances": IRIS_ROWS}, timeout=10)
        assert answer.status_code == 200
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=60) == 0


def test_workers_share_the_port(bucket: Bucket, workdir: Path, iris_model: Trained) -> None:
    """The model is loaded before the workers start: whichever answers is ready."""
    served = start(bucket.env, bucket.publish(iris_model), workdir, "--workers", "2")
    try:
        workers = set()
        for _ in range(20):  # fresh connections, spread over the workers by the kernel
            with requests.Session() as session:
                answer = session.post(
                    f"{served.url}{PREDICT}", json={"instances": IRIS_ROWS}, timeout=10
                )
                # CI15 once got an answer without predictions here: say which, if it recurs.
                assert answer.status_code == 200, (answer.status_code, answer.text)
                assert answer.json()["predictions"] == [0, 1, 2]
                metrics = session.get(f"{served.url}/metrics", timeout=10).text
                workers |= {
                    labels["worker"]
                    for name, labels, _ in parse_metrics(metrics)
                    if name == "modelyard_server_model_ready"
                }
        assert workers  # each scrape names the worker that answered it
    finally:
        assert served.stop() == 0


def _private_dirty_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1])
    raise AssertionError(f"no Private_Dirty for {pid}")


def test_workers_share_the_loaded_heap(bucket: Bucket, workdir: Path, iris_model: Trained) -> None:
    """The parent freezes what it loaded before forking, so that no worker's collector writes
    to those objects and copies the pages it shares with the others."""
    served = start(bucket.env, bucket.publish(iris_model), workdir, "--workers", "2")
    try:
        parent = served.process.pid
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        assert len(children) == 2
        # Each process's pages of its own: 6 MiB each with the heap shared, about 60 MiB each
        # (parent included, once the workers copied theirs) when the workers collect it.
        for pid in [parent, *map(int, children)]:
            assert _private_dirty_kib(pid) < 25 * 1024, pid
    finally:
        assert served.stop() == 0
