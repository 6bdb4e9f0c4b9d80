"""The benchmark's S3 server: versitygw's posix backend on loopback, a real S3 implementation.

The tests' moto server keeps every object in memory and assembles a multipart upload there,
which fails for the 1.7 GB snapshot of the 2 GiB CSV; versitygw writes objects and parts as
files and joins the parts with copy_file_range. `hack/bin-path.sh versitygw` builds it once
(Go module proxy, 1-3 minutes on two cores) and caches it under ~/.cache/modelyard/bin/.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.plugins.s3 import S3Server

BIN_PATH = Path(__file__).resolve().parents[3] / "hack" / "bin-path.sh"


@dataclass(frozen=True)
class BenchS3(S3Server):
    """An S3 endpoint with its own credentials and a description for the report."""

    access_key: str
    secret_key: str
    description: str

    def env(self, bucket: str = "modelyard") -> dict[str, str]:
        return {
            **super().env(bucket),
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }


def given_server(endpoint: str) -> BenchS3:
    """A server the user runs; its credentials come from this process's environment."""
    defaults = S3Server(endpoint).env()
    return BenchS3(
        endpoint,
        os.environ.get("AWS_ACCESS_KEY_ID", defaults["AWS_ACCESS_KEY_ID"]),
        os.environ.get("AWS_SECRET_ACCESS_KEY", defaults["AWS_SECRET_ACCESS_KEY"]),
        endpoint,
    )


@contextmanager
def running_versitygw() -> Iterator[BenchS3]:
    """versitygw on 127.0.0.1 (a free port) with fresh credentials and a temporary data dir,
    both gone when the context ends."""
    binary = subprocess.run(
        [str(BIN_PATH), "versitygw"], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    binary = binary.strip()
    version = Path(binary).parent.name.removeprefix("versitygw-")
    access_key, secret_key = secrets.token_hex(10), secrets.token_urlsafe(30)
    with tempfile.TemporaryDirectory(prefix="modelyard-s3-") as work:
        root = Path(work) / "data"
        root.mkdir()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        log = Path(work) / "versitygw.log"
        # Credentials by environment, never on the command line (visible in ps).
        env = {**os.environ, "ROOT_ACCESS_KEY_ID": access_key, "ROOT_SECRET_ACCESS_KEY": secret_key}
        with log.open("w") as output:
            process = subprocess.Popen(
                [binary, "--port", f"127.0.0.1:{port}", "--quiet", "posix", str(root)],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        endpoint = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(endpoint, process, log)
            yield BenchS3(
                endpoint, access_key, secret_key, f"versitygw {version} (posix backend, loopback)"
            )
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_until_up(endpoint: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(endpoint, timeout=1)  # any answer (403 without a signature) will do
            return
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"versitygw did not start:\n{log.read_text()}") from None
            time.sleep(0.1)
