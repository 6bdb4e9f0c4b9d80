"""The model server under abuse, as a real process: fuzzed against its own OpenAPI description
(schemathesis) and with generated payloads (hypothesis), slow-loris connections, bodies past
the limit, and S3 going away. Zero 5xx, the process stays up, its memory stays flat.

Sizes are small in `make test`; MODELYARD_FUZZ_EXAMPLES raises them (docs/serving.md).
Each test prints its counts (requests sent, failures seen) for docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.reasons import Reason
from tests.plugins.s3 import S3Server, running_s3_server
from tests.serving import Bucket, Served, bucket_on, start
from tests.unit.test_serve_protocol import IRIS_FEATURES, Trained, iris

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("MODELYARD_FUZZ_EXAMPLES", "30"))
MAX_BODY = 256 * 1024
REQUEST_SECONDS = 2.0
ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> Iterator[Bucket]:
    with bucket_on(s3_server) as bucket:
        yield bucket


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-hardening")


@pytest.fixture(scope="module")
def iris_model() -> Trained:
    return iris()


@pytest.fixture(scope="module")
def server(bucket: Bucket, workdir: Path, iris_model: Trained) -> Iterator[Served]:
    served = start(
        bucket.env,
        bucket.publish(iris_model),
        workdir,
        *("--max-body-bytes", str(MAX_BODY), "--request-seconds", str(REQUEST_SECONDS)),
    )
    yield served
    assert served.stop() == 0, served.log()


def rss_bytes(served: Served) -> int:
    status = Path(f"/proc/{served.process.pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) * 1024


def report(test: str, **counts: int) -> None:
    print(f"\n[counts] {test}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


# --- the OpenAPI description and schemathesis ----------------------------------------------


def test_the_openapi_description_lists_every_route(server: Served) -> None:
    description = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    assert description["openapi"].startswith("3.")
    paths = description["paths"]
    assert {"/v2/models/iris/infer", "/v1/models/iris:predict", "/v2/health/ready"} <= set(paths)
    assert "413" in paths["/v2/models/iris/infer"]["post"]["responses"]
    version = requests.get(f"{server.url}/v2/models/iris", timeout=10).json()["versions"][0]
    assert f"/v2/models/iris/versions/{version}/infer" in paths


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    server: Served, workdir: Path
) -> None:
    before = rss_bytes(server)
    junit = workdir / "schemathesis.xml"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json"),
            "--checks=not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance,response_headers_conformance",
            "--phases=examples,coverage,fuzzing",
            f"--max-examples={EXAMPLES}",
            "--seed=42",
            "--suppress-health-check=all",
            "--report=junit",
            f"--report-junit-path={junit}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=workdir,  # schemathesis keeps its state in .schemathesis/ under the working directory
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert server.process.poll() is None
    cases = re.search(r"Test cases:\s*\n?\s*(\d+) generated", run.stdout)
    report(
        "schemathesis",
        test_cases=int(cases.group(1)) if cases else -1,
        rss_growth_kib=(rss_bytes(server) - before) // 1024,
    )


# --- hypothesis payloads --------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=40,
)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(ROW),
)
ROWS = st.lists(st.lists(NUMBERS | JSON_VALUES, min_size=0, max_size=6), min_size=0, max_size=5)


@st.composite
def v2_documents(draw: st.DrawFn) -> Any:
    rows = draw(ROWS)
    flat = [value for row in rows for value in row]
    shape = draw(st.sampled_from([[len(rows), 4], [len(flat)], [len(rows)], [-1, 4], [2**40, 4]]))
    tensor: dict[str, Any] = {
        "name": draw(st.sampled_from(["input-0", *IRIS_FEATURES])),
        "shape": shape,
        "datatype": draw(st.sampled_from(["FP64", "FP32", "INT64", "BYTES", "BOOL", "x"])),
        "data": draw(st.sampled_from([flat, rows])),
    }
    document: dict[str, Any] = {"inputs": [tensor] * draw(st.integers(1, 3))}
    if draw(st.booleans()):
        document["outputs"] = [{"name": draw(st.sampled_from(["predict", "predict_proba", ""]))}]
    if draw(st.booleans()):
        document["parameters"] = draw(JSON_VALUES)
    return document


@st.composite
def v1_documents(draw: st.DrawFn) -> Any:
    instances = draw(
        st.one_of(
            ROWS,
            st.lists(
                st.dictionaries(st.sampled_from([*IRIS_FEATURES, "x"]), NUMBERS, max_size=5),
                max_size=4,
            ),
            JSON_VALUES,
        )
    )
    return {"instances": instances}


VALID_ROWS = st.lists(
    st.lists(st.floats(-100, 100), min_size=4, max_size=4), min_size=1, max_size=8
)
VALID = st.one_of(
    VALID_ROWS.map(lambda rows: {"instances": rows}),
    VALID_ROWS.map(
        lambda rows: {
            "inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}]
        }
    ),
)
ENDPOINTS = st.sampled_from(
    ["/v2/models/iris/infer", "/v1/models/iris:predict", "/v1/models/iris:predict_proba"]
)
PAYLOADS = st.one_of(
    VALID.map(lambda d: json.dumps(d).encode()),
    v2_documents().map(lambda d: json.dumps(d).encode()),
    v1_documents().map(lambda d: json.dumps(d).encode()),
    JSON_VALUES.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=64),
)


def test_generated_payloads_never_get_a_5xx_and_memory_stays_flat(server: Served) -> None:
    session = requests.Session()
    url = server.url
    valid = json.dumps({"instances": [ROW] * 64}).encode()
    seen: dict[int, int] = {}

    def churn(count: int) -> None:
        """Valid and refused requests of every size: what a leak per request would show in."""
        for i in range(count):
            body = valid if i % 2 else b'{"instances": [' + b"[1,2]," * 20000 + b"[1]]}"
            assert session.post(f"{url}/v1/models/iris:predict", data=body).status_code < 500

    churn(200)  # allocator and caches warm
    before = rss_bytes(server)

    @settings(
        max_examples=EXAMPLES * 10,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(endpoint=ENDPOINTS, payload=PAYLOADS)
    def fuzz(endpoint: str, payload: bytes) -> None:
        answer = session.post(url + endpoint, data=payload, timeout=30)
        seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
        assert answer.status_code < 500, (payload[:300], answer.text)
        if answer.status_code >= 400:
            assert answer.json()["error"]

    fuzz()
    churn(600)  # ~120 KiB refused bodies and 64-row answers: 36 MiB through the server
    growth = rss_bytes(server) - before
    assert server.process.poll() is None
    # Everything the server keeps grows to a fixed size and stops: the drift window (1000
    # rows), per-(endpoint, status) metrics, per-class counts. 16 MiB leaves room for the
    # allocator's arenas, and a server keeping half of what it was sent would fail it.
    assert growth < 16 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert {200, 400, 422} <= set(seen)
    report(
        "hypothesis payloads",
        requests_sent=sum(seen.values()) + 800,
        fuzzed_inputs=sum(seen.values()),
        server_errors=sum(n for code, n in seen.items() if code >= 500),
        rss_growth_kib=growth // 1024,
    )


# --- slow clients and large bodies ----------------------------------------------------------


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slow_loris_connections_are_cut_off_while_others_are_served(server: Served) -> None:
    count = 100
    slow: list[socket.socket] = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        if i % 2:  # half trickle a request's headers, half never send a byte
            sock.sendall(b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\n")
        slow.append(sock)
    served = 0
    deadline = time.monotonic() + REQUEST_SECONDS * 3 + 3
    while time.monotonic() < deadline:
        for sock in slow[1::2]:
            with contextlib.suppress(OSError):  # already cut off
                sock.sendall(b"x-trickle: 1\r\n")
        answer = requests.post(
            f"{server.url}/v1/models/iris:predict", json={"instances": [ROW]}, timeout=5
        )
        assert answer.status_code == 200
        served += 1
        time.sleep(0.25)
    closed = 0
    for sock in slow:
        sock.settimeout(REQUEST_SECONDS * 2)
        closed += closed_by_server(sock)
        sock.close()
    assert closed == count
    report("slow-loris", slow_connections=count, cut_off=closed, served_meanwhile=served)


def test_a_declared_oversized_body_is_refused_before_it_is_sent(server: Served) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
            b"\r\ncontent-length: %d\r\n\r\n" % (10 * 2**30)
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in head
    assert f"exceeds {MAX_BODY} bytes" in json.loads(body)["error"]


# --- S3 going away --------------------------------------------------------------------------


def test_the_loaded_model_is_served_after_s3_goes_away(workdir: Path, iris_model: Trained) -> None:
    """A private S3 server (not the session's): stopped under a serving model server."""
    with (
        running_s3_server("127.0.0.1", workdir / "private-s3.log") as private,
        bucket_on(private) as bucket,
    ):
        served = start(bucket.env, bucket.publish(iris_model), workdir)
    try:  # the S3 server is gone now
        with pytest.raises(requests.ConnectionError):
            requests.get(private.endpoint, timeout=5)
        body = {"instances": [ROW] * 3}
        for _ in range(50):
            answer = requests.post(f"{served.url}/v1/models/iris:predict", json=body, timeout=10)
            assert answer.json()["predictions"] == [0, 0, 0]
        assert requests.get(f"{served.url}/v2/health/ready", timeout=10).status_code == 200
    finally:
        assert served.stop() == 0


def test_a_server_starting_while_s3_is_down_fails_with_storage_unavailable(
    workdir: Path, iris_model: Trained
) -> None:
    with (
        running_s3_server("127.0.0.1", workdir / "down-s3.log") as private,
        bucket_on(private) as bucket,
    ):
        uri = bucket.publish(iris_model)
        env = bucket.env
    served = start(env, uri, workdir, ready=False)
    code = served.process.wait(timeout=120)
    message = json.loads(served.termination_log.read_text())
    assert code != 0
    assert message["reason"] == Reason.StorageUnavailable
    assert "S3 storage" in message["message"]
