"""Adaptive batching in a real server process: requests from many connections that queue
together share a model call, and every client still gets the answer to its own rows."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from modelyard.workloads.serving.config import DEFAULT_BATCH_ROWS
from tests.integration.test_serve_http import parse_metrics
from tests.plugins.s3 import S3Server
from tests.serving import Bucket, Served, bucket_on, read_until_closed, start
from tests.unit.test_serve_protocol import Trained, iris

pytestmark = pytest.mark.integration

# Rows of every class, varied so that a response sliced from the wrong place of a batch is
# another prediction, not the same one by chance.
ROWS = np.array(
    [
        [5.1, 3.5, 1.4, 0.2],
        [6.2, 2.9, 4.3, 1.3],
        [6.7, 3.0, 5.2, 2.3],
        [4.9, 3.0, 1.4, 0.2],
        [5.9, 3.0, 4.2, 1.5],
        [7.7, 2.6, 6.9, 2.3],
    ]
)
CLIENTS = 24
# Long enough that requests sent together within it share a batch on a busy machine; only the
# first request of each batch waits it.
WAIT_MS = 500


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> Iterator[Bucket]:
    with bucket_on(s3_server) as bucket:
        yield bucket


@pytest.fixture(scope="module")
def model() -> Trained:
    return iris()


def serve(bucket: Bucket, tmp_path: Path, model: Trained, *args: str) -> Served:
    return start(bucket.env, bucket.publish(model), tmp_path, *args)


def request_for(client: int) -> tuple[bytes, list[list[float]], str]:
    """Client i's request: its own rows, over V1 or V2, asking labels or probabilities."""
    rows = [ROWS[(client + k) % len(ROWS)].tolist() for k in range(1 + client % 3)]
    kind = ("v2", "v1", "proba")[client % 3]
    if kind == "v2":
        tensor = {"name": "x", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}
        path, body = "/v2/models/iris/infer", {"inputs": [tensor], "id": f"client-{client}"}
    elif kind == "v1":
        path, body = "/v1/models/iris:predict", {"instances": rows}
    else:
        path, body = "/v1/models/iris:predict_proba", {"instances": rows}
    payload = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
    head += f"x-request-id: client-{client}\r\ncontent-length: {len(payload)}\r\n\r\n"
    return head.encode() + payload, rows, kind


def all_at_once(port: int) -> list[tuple[dict[str, Any], list[list[float]], str, str]]:
    """Every client's request sent before any answer is read; (answer, rows, kind, id)."""
    sockets: list[socket.socket] = []
    sent = []
    try:
        for _ in range(CLIENTS):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        for client, sock in enumerate(sockets):
            wire, rows, kind = request_for(client)
            sock.sendall(wire)
            sent.append((rows, kind))
        answers = []
        for sock, (rows, kind) in zip(sockets, sent, strict=True):
            received = read_until_closed(sock)
            head, _, body = received.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 "), received
            request_id = next(
                line.split(b":", 1)[1].strip().decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"x-request-id:")
            )
            answers.append((json.loads(body), rows, kind, request_id))
        return answers
    finally:
        for sock in sockets:
            sock.close()


def metric(served: Served, name: str) -> float:
    text = requests.get(f"{served.url}/metrics", timeout=10).text
    return sum(value for sample, _, value in parse_metrics(text) if sample == name)


def test_requests_that_queue_together_share_a_model_call_and_keep_their_own_answers(
    bucket: Bucket, tmp_path: Path, model: Trained
) -> None:
    served = serve(bucket, tmp_path, model, "--batch-wait-ms", str(WAIT_MS))
    try:
        answers = all_at_once(served.port)
        for client, (answer, rows, kind, request_id) in enumerate(answers):
            assert request_id == f"client-{client}"
            expected = model.pipeline.predict(np.array(rows)).tolist()
            if kind == "v2":
                assert answer["id"] == f"client-{client}"
                assert answer["outputs"][0]["data"] == expected
            else:
                assert answer["predictions"] == expected
            if kind == "proba":
                proba = model.pipeline.predict_proba(np.array(rows))
                assert np.allclose(answer["probabilities"], proba)
        batched = metric(served, "modelyard_server_batched_requests_total")
        batches = metric(served, "modelyard_server_batches_total")
        assert batched == CLIENTS
        # Three kinds of request (labels over V2 and V1 share calls; probabilities do not):
        # with every request inside the wait, a handful of model calls, far fewer than 24.
        assert batches <= 6, (batches, batched)
    finally:
        assert served.stop() == 0


def test_batching_off_predicts_each_request_alone(
    bucket: Bucket, tmp_path: Path, model: Trained
) -> None:
    served = serve(bucket, tmp_path, model, "--batch-rows", "1")
    try:
        for answer, rows, kind, _ in all_at_once(served.port):
            if kind == "v1":
                assert answer["predictions"] == model.pipeline.predict(np.array(rows)).tolist()
        assert metric(served, "modelyard_server_batched_requests_total") == 0
        assert metric(served, "modelyard_server_batches_total") == 0
    finally:
        assert served.stop() == 0


def test_batching_is_on_by_default(bucket: Bucket, tmp_path: Path, model: Trained) -> None:
    assert DEFAULT_BATCH_ROWS > 1
    served = serve(bucket, tmp_path, model)
    try:
        answer = requests.post(
            f"{served.url}/v1/models/iris:predict", json={"instances": ROWS.tolist()}, timeout=10
        )
        assert answer.json()["predictions"] == model.pipeline.predict(ROWS).tolist()
        assert metric(served, "modelyard_server_batched_requests_total") == 1
    finally:
        assert served.stop() == 0
