"""An S3-compatible server on loopback for the tests: moto's standalone server in a subprocess.

Tests talk to it over real HTTP with boto3, exactly as the workloads do in a cluster.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from modelyard.storage.uri import S3Uri

ACCESS_KEY = "modelyard-test"
SECRET_KEY = "modelyard-test-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def env(self, bucket: str = "modelyard") -> dict[str, str]:
        """The environment a workload gets in-cluster (credentials as if from a Secret)."""
        return {
            "MODELYARD_S3_ENDPOINT": self.endpoint,
            "MODELYARD_S3_BUCKET": bucket,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
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
