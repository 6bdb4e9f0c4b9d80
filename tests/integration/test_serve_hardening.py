"""The model server under abuse, as a real process: fuzzed against its own OpenAPI description
(schemathesis) and with generated payloads (hypothesis), slow-loris connections, bodies past
the limit, more connections than allowed, clients that never read, and S3 going away. Zero 5xx,
the process stays up, its memory stays flat or within what its limits allow.

Sizes are small in `make test`; MODELYARD_FUZZ_EXAMPLES raises them (docs/serving.md).
Each test prints its counts (requests sent, failures seen) for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.reasons import Reason
from tests.bench.serving.abuse import Abuse, attack
from tests.plugins.s3 import S3Server, running_s3_server
from tests.serving import Bucket, Served, bucket_on, read_until_closed, start
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
        received = read_until_closed(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in head
    assert f"exceeds {MAX_BODY} bytes" in json.loads(body)["error"]


@pytest.mark.parametrize("client", ["requests", "requests chunked", "urllib"])
def test_an_oversized_body_is_answered_413_while_the_client_still_sends_it(
    server: Served, client: str
) -> None:
    """Clients that send their whole body before reading read the 413, not a broken pipe."""
    body = b"[" * (16 * 2**20)
    url = f"{server.url}/v1/models/iris:predict"
    if client == "urllib":
        request = urllib.request.Request(url, body, {"content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        status, document = refused.value.code, json.loads(refused.value.read())
    else:
        chunks = (body[i : i + 2**16] for i in range(0, len(body), 2**16))
        answer = requests.post(url, data=body if client == "requests" else chunks, timeout=30)
        status, document = answer.status_code, answer.json()
    assert status == 413
    assert f"exceeds {MAX_BODY} bytes" in document["error"]


# --- limits under abuse: connections, bytes in progress, clients that never read ------------

WRITE_SECONDS = 2.0
OPENAPI = b"GET /openapi.json HTTP/1.1\r\nhost: x\r\n\r\n"  # 31 bytes in, 8 KiB out


@pytest.fixture
def limited(bucket: Bucket, workdir: Path, iris_model: Trained) -> Iterator[Callable[..., Served]]:
    """Starts servers with the given limits; each test gets its own process to measure."""
    started: list[Served] = []
    uri = bucket.publish(iris_model)

    def serve(*flags: str) -> Served:
        started.append(start(bucket.env, uri, workdir, *flags))
        return started[-1]

    yield serve
    for served in started:
        assert served.stop() == 0, served.log()


def test_connections_over_the_cap_are_answered_503_and_the_server_serves_on(
    limited: Callable[..., Served],
) -> None:
    cap = 16
    served = limited("--max-connections", str(cap))
    live = b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n"
    held: list[socket.socket] = []
    deadline = time.monotonic() + 10
    while len(held) < cap:  # answered, then open and idle: keep-alive holds them 75 s
        sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        sock.sendall(live)
        if sock.recv(65536).startswith(b"HTTP/1.1 200 "):
            held.append(sock)
        else:  # the start-up probe's connection is not gone yet
            sock.close()
            assert time.monotonic() < deadline
            time.sleep(0.1)
    answer = requests.get(f"{served.url}/v2/health/live", timeout=10)
    assert answer.status_code == 503
    assert answer.headers["connection"] == "close"
    assert f"{cap} connections open" in answer.json()["error"]
    body = json.dumps({"instances": [ROW] * 20000}).encode()  # still being sent when refused
    answer = requests.post(f"{served.url}/v1/models/iris:predict", data=body, timeout=10)
    assert answer.status_code == 503
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{served.url}/v2/health/live", timeout=10)
    assert refused.value.code == 503
    for sock in held:
        sock.close()
    deadline = time.monotonic() + 10
    while requests.get(f"{served.url}/v2/health/live", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the server never took a connection again"
        time.sleep(0.1)
    report("connections over the cap", cap=cap, refused=3)


def closed_by_peer(sock: socket.socket) -> bool:
    """The server reset or closed it (TCP state CLOSE or CLOSE_WAIT), without reading it."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] in (7, 8)


def test_clients_that_never_read_are_cut_off_and_hold_little(
    limited: Callable[..., Served],
) -> None:
    served = limited("--write-seconds", str(WRITE_SECONDS))
    for _ in range(50):
        requests.get(f"{served.url}/openapi.json", timeout=10)
    before = rss_bytes(served)
    clients: list[socket.socket] = []
    for _ in range(8):  # 32k requests each, 270 MiB of answers each if they were all answered
        sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # the server stopped reading: enough
            sock.send(OPENAPI * 32768)
        clients.append(sock)
    growth = 0
    deadline = time.monotonic() + WRITE_SECONDS * 5 + 10
    while not all(closed_by_peer(sock) for sock in clients):
        growth = max(growth, rss_bytes(served) - before)
        # A write buffer at the high-water mark and 64 queued requests each, a few MiB in all.
        assert growth < 32 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
        assert time.monotonic() < deadline, "clients that never read were not cut off"
        time.sleep(0.05)
    for sock in clients:
        sock.close()
    assert requests.get(f"{served.url}/openapi.json", timeout=10).status_code == 200
    report("clients that never read", clients=len(clients), rss_growth_kib=growth // 1024)


def test_memory_stays_within_the_limits_under_every_abuse_at_once(
    limited: Callable[..., Served],
) -> None:
    body, inflight, connections = 4 * 2**20, 8 * 2**20, 128
    served = limited(
        *("--max-body-bytes", str(body), "--max-inflight-bytes", str(inflight)),
        *("--max-connections", str(connections), "--write-seconds", str(WRITE_SECONDS)),
    )
    # 64 bodies of 4 MiB (256 MiB; half chunked) started and stalled, 8 clients that would be
    # sent 270 MiB of answers each if they read, and 16 pipelining ones that read: 89
    # connections.
    abuse = Abuse(
        seconds=5,
        pipelined=16,
        depth=16,
        stalled=8,
        stalled_bytes=1 * 2**20,
        uploaders=64,
        upload_bytes=body,
    )
    figures = asyncio.run(attack(served, abuse))
    # What the limits let it hold: the in-flight bytes, and per connection a write buffer at
    # the high-water mark (64 KiB) and an answer; plus 32 MiB for the allocator's arenas.
    bound = inflight + connections * 128 * 1024 + 32 * 2**20
    assert figures.growth_mib * 2**20 < bound, figures
    assert figures.alive, figures
    assert set(figures.answers["probe"]) == {"200"}, figures
    assert figures.answers["pipelined"].get("200", 0) > 0, figures
    report(
        "every abuse at once",
        rss_growth_kib=int(figures.growth_mib * 1024),
        bound_kib=bound // 1024,
    )


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
