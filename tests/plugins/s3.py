"""S3-compatible servers for the tests: moto's standalone server in a subprocess on loopback
(the integration tier: fast, and where a test needs a failure a real server cannot be made to
produce), and versitygw, a real S3 implementation that keeps objects as files (built from Go
modules once, cached under ~/.cache/modelyard/bin by `hack/bin-path.sh versitygw`): on loopback
for the tiers that want a real server, and as the local cluster's own persistent server on the
node's bridge address (`hack/s3.sh`, used by `make demo` and the e2e tier).

Tests talk to them over real HTTP with boto3, exactly as the workloads do in a cluster.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests

from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from modelyard.storage.uri import S3Uri
from tests.plugins.kube import CACHE_DIR, HACK, built_binary

ACCESS_KEY = "modelyard-test"
SECRET_KEY = "modelyard-test-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    description: str = "moto"

    def env(self, bucket: str = "modelyard") -> dict[str, str]:
        """The environment a workload gets in-cluster (credentials as if from a Secret)."""
        return {
            "MODELYARD_S3_ENDPOINT": self.endpoint,
            "MODELYARD_S3_BUCKET": bucket,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }


@contextmanager
def running_s3_server(host: str, log: Path) -> Iterator[S3Server]:
    """moto's standalone server on `host` (a free port), until the context ends."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://{host}:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{endpoint}/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start; see {log}") from None
            time.sleep(0.1)
    try:
        yield S3Server(endpoint)
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def running_versitygw(
    data: Path, host: str = "127.0.0.1", port: int = 0, log: Path | None = None
) -> Iterator[S3Server]:
    """versitygw's posix backend on `host`:`port` (a free port when 0), storing objects under
    `data`, with fresh credentials; stopped when the context ends (the data stays)."""
    binary = built_binary("versitygw")
    version = Path(binary).parent.name.removeprefix("versitygw-")
    access_key, secret_key = secrets.token_hex(10), secrets.token_urlsafe(30)
    data.mkdir(parents=True, exist_ok=True)
    if not port:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
    log = log or data.parent / f"versitygw-{port}.log"
    # Credentials by environment, never on the command line (visible in ps).
    env = {**os.environ, "ROOT_ACCESS_KEY_ID": access_key, "ROOT_SECRET_ACCESS_KEY": secret_key}
    with log.open("w") as output:
        process = subprocess.Popen(
            [binary, "--port", f"{host}:{port}", "--quiet", "posix", str(data)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://{host}:{port}"
    server = S3Server(
        endpoint, access_key, secret_key, f"versitygw {version} (posix backend, {host})"
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                # Signed with this server's own credentials: another process that took the free
                # port meanwhile (a parallel test session) answers, but not to these.
                boto3.client(
                    "s3",
                    endpoint_url=endpoint,
                    aws_access_key_id=access_key,
                    aws_secret_access_key=secret_key,
                    region_name="us-east-1",
                ).list_buckets()
                break
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"versitygw did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


# The same defaults as hack/lib.sh.
NODE_S3_DIR = Path(os.environ.get("MODELYARD_S3_DIR", CACHE_DIR / "s3"))
NODE_S3_PORT = int(os.environ.get("MODELYARD_S3_PORT", "9333"))


def node_s3_server(host: str) -> S3Server:
    """The local cluster's S3 server on the node address `host`, started if it is not running:
    versitygw with its objects and root credentials under ~/.cache/modelyard/s3 (hack/s3.sh),
    which outlive the cluster and are shared with `make demo`."""
    subprocess.run([str(HACK / "s3.sh"), "up"], check=True)
    credentials = dict(
        line.split("=", 1) for line in (NODE_S3_DIR / "credentials").read_text().splitlines()
    )
    return S3Server(
        f"http://{host}:{NODE_S3_PORT}",
        credentials["ROOT_ACCESS_KEY_ID"],
        credentials["ROOT_SECRET_ACCESS_KEY"],
        f"versitygw (posix backend, {host}, data in {NODE_S3_DIR})",
    )


@contextmanager
def node_s3_account(access_key: str, secret_key: str) -> Iterator[None]:
    """Extra credentials with full access to the local cluster's S3 server, while the context
    lasts: for a test whose workloads must run with credentials of its own choosing."""
    subprocess.run([str(HACK / "s3.sh"), "add-account", access_key, secret_key], check=True)
    try:
        yield
    finally:
        subprocess.run([str(HACK / "s3.sh"), "remove-account", access_key], check=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3_server("127.0.0.1", tmp_path_factory.mktemp("s3") / "moto.log") as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh bucket, with the process environment pointing at it as a workload's would."""
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    env = s3_server.env(bucket)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    Storage(StorageConfig.from_env(env)).ensure_bucket(bucket)
    return env


@pytest.fixture
def storage(s3_env: dict[str, str]) -> Storage:
    return Storage(StorageConfig.from_env(s3_env))


@pytest.fixture
def bucket_root(s3_env: dict[str, str]) -> S3Uri:
    return S3Uri(s3_env["MODELYARD_S3_BUCKET"])


class S3Outage:
    """A loopback TCP proxy in front of an S3 server whose endpoint can go away and come back.

    While cut, new connections are refused and open ones are reset, as when the storage pod
    restarts or the network partitions; the server behind it keeps its objects, so a test can
    look at what a failed run left behind and run again once storage is back.
    """

    def __init__(self, upstream: S3Server) -> None:
        self.upstream = upstream.endpoint.removeprefix("http://").rsplit(":", 1)
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.trigger: tuple[bytes, bytes] | None = None
        self.response_budget: int | None = None
        self.cut_event = threading.Event()
        self.listener: socket.socket | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = S3Server(f"http://127.0.0.1:{self.port}")
        self.bucket = "modelyard"
        self.restore()

    def cut(self) -> None:
        """Storage goes away now."""
        with self.lock:
            self.cut_event.set()
            if self.listener is not None:
                # As for connections: shutdown() wakes the blocked accept() and frees the port.
                with contextlib.suppress(OSError):
                    self.listener.shutdown(socket.SHUT_RDWR)
                self.listener.close()
                self.listener = None
            for connection in self.connections:
                # shutdown() wakes the pump blocked on this socket (close() alone would not);
                # SO_LINGER 0 makes the close that follows a reset.
                with contextlib.suppress(OSError):
                    connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self.connections.clear()

    def cut_on_request(self, method: str, marker: str) -> None:
        """Cut when a `method` request for a path containing `marker` arrives (not sent on)."""
        self.trigger = (method.encode(), marker.encode())

    def cut_after_response_bytes(self, count: int) -> None:
        """Cut once `count` bytes of responses have passed: a download dies part-way."""
        self.response_budget = count

    def restore(self) -> None:
        """Storage is back, on the same endpoint."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self.lock:
            self.cut_event.clear()
            self.trigger = None
            self.response_budget = None
            self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut: the listener is closed
            upstream = socket.create_connection((self.upstream[0], int(self.upstream[1])))
            with self.lock:
                if self.cut_event.is_set():  # cut while this one was being accepted
                    client.close()
                    upstream.close()
                    return
                self.connections.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                if requests and _is_request(data, self.trigger):
                    self.cut()
                    return
                if not requests and self.response_budget is not None:
                    self.response_budget -= len(data)
                    if self.response_budget < 0:
                        self.cut()
                        return
                sink.sendall(data)
        except OSError:
            pass  # reset by cut() or by the peer
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


def _is_request(data: bytes, trigger: tuple[bytes, bytes] | None) -> bool:
    """Whether `data` starts a request with the trigger's method and path marker."""
    if trigger is None:
        return False
    method, _, rest = data.split(b"\r\n", 1)[0].partition(b" ")
    return method == trigger[0] and trigger[1] in rest.rpartition(b" ")[0]


@pytest.fixture(scope="session")
def private_s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A second S3 server for tests that take storage away: never the session's shared one."""
    log = tmp_path_factory.mktemp("private-s3") / "moto.log"
    with running_s3_server("127.0.0.1", log) as server:
        yield server


@pytest.fixture
def s3_outage(private_s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Outage]:
    """The private server behind an endpoint this test can cut and restore, with a fresh bucket
    (`S3Outage.bucket`); the process environment points at it, as `s3_env` does."""
    outage = S3Outage(private_s3_server)
    outage.bucket = f"f-{uuid.uuid4().hex[:12]}"
    env = outage.server.env(outage.bucket)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    Storage(StorageConfig.from_env(env)).ensure_bucket(outage.bucket)
    try:
        yield outage
    finally:
        outage.cut()
