"""Runs `modelyard-worker serve` as a real process on a free loopback port, for the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from modelyard.storage.uri import S3Uri


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    output: Path
    termination_log: Path

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def log(self) -> str:
        return self.output.read_text()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(
    env: dict[str, str],
    model_uri: S3Uri | str,
    directory: Path,
    *args: str,
    ready: bool = True,
    extra_env: dict[str, str] | None = None,
) -> Served:
    """Start `modelyard-worker serve`; wait until it is ready (or, with ready=False, live)."""
    port = free_port()
    output = directory / f"server-{port}.log"
    termination_log = directory / f"termination-{port}.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "modelyard.workloads", "serve"),
                *("--model-uri", str(model_uri), "--host", "127.0.0.1", "--port", str(port)),
                *args,
            ],
            env={
                **os.environ,
                **env,
                **(extra_env or {}),
                "MODELYARD_TERMINATION_LOG": str(termination_log),
            },
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    served = Served(process, f"http://127.0.0.1:{port}", port, output, termination_log)
    probe = "/v2/health/ready" if ready else "/v2/health/live"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return served  # exited: the caller looks at why
        try:
            if requests.get(served.url + probe, timeout=2).status_code == 200:
                return served
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    served.stop()
    raise AssertionError(f"server did not come up:\n{served.log()}")
