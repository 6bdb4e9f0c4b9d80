"""Runs `modelyard-worker serve` as a real process on a free loopback port, for the tests, with
models published to a real S3 server the way training lays them out."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from modelyard.monitoring import token
from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from modelyard.storage.digest import bytes_digest
from modelyard.storage.layout import MANIFEST, MODEL_CARD, MODEL_FILE
from modelyard.storage.uri import S3Uri
from tests.plugins.s3 import S3Server
from tests.unit.test_serve_protocol import Trained


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    output: Path
    termination_log: Path
    # The first process's monitoring port; worker i of --workers N answers on monitor_port + i.
    monitor_port: int = 0
    workers: int = 1
    monitor_token: str | None = None  # required on the monitoring ports when set

    def monitor_urls(self) -> list[str]:
        """Each server process's monitoring address (POST /monitoring/collect, …/feedback)."""
        return [f"http://127.0.0.1:{self.monitor_port + i}" for i in range(self.workers)]

    def monitor_headers(self) -> dict[str, str]:
        """What the operator sends on the monitoring ports: the token, if the server has one."""
        if self.monitor_token is None:
            return {}
        return {token.HEADER: token.header_value(self.monitor_token)}

    def stop_listening(self) -> None:
        """SIGTERM the server and wait until its listener refuses connections: it is draining."""
        self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except ConnectionRefusedError:
                return
            time.sleep(0.05)
        raise AssertionError("the listener stayed open after SIGTERM")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def log(self) -> str:
        return self.output.read_text()


@dataclass
class Bucket:
    storage: Storage
    env: dict[str, str]
    root: S3Uri

    def publish(
        self, trained: Trained, card: dict[str, Any] | None = None, manifest: bool = True
    ) -> S3Uri:
        """Upload a model and its card (optionally altered) the way training lays them out:
        payload first, then the manifest naming both digests (unless `manifest` is False)."""
        prefix = self.root.join("models", "default", trained.card.name, uuid.uuid4().hex[:8])
        self.storage.put_bytes(prefix.join(MODEL_FILE), trained.data)
        document = card if card is not None else trained.card.model_dump(mode="json")
        card_bytes = json.dumps(document, indent=2).encode()
        self.storage.put_bytes(prefix.join(MODEL_CARD), card_bytes, "application/json")
        if manifest:
            self.storage.put_json(
                prefix.join(MANIFEST),
                {"digest": bytes_digest(trained.data), "cardDigest": bytes_digest(card_bytes)},
            )
        return prefix.join(MODEL_FILE)


@contextmanager
def bucket_on(s3_server: S3Server) -> Iterator[Bucket]:
    """A fresh bucket; credentials in the environment while it is used, as in a pod."""
    name = f"serve-{uuid.uuid4().hex[:10]}"
    env = s3_server.env(name)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        storage = Storage(StorageConfig.from_env(env))
        storage.ensure_bucket(name)
        yield Bucket(storage, env, S3Uri(name))


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends on `sock` until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports (the monitoring ports of workers)."""
    for _ in range(100):
        with ExitStack() as held:
            first = held.enter_context(socket.socket())
            first.bind(("127.0.0.1", 0))
            base: int = first.getsockname()[1]
            try:
                for port in range(base + 1, base + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise AssertionError(f"no {count} consecutive free ports")


def start(
    env: dict[str, str],
    model_uri: S3Uri | str,
    directory: Path,
    *args: str,
    ready: bool = True,
    extra_env: dict[str, str] | None = None,
    monitor_token: str | None = None,
) -> Served:
    """Start `modelyard-worker serve`; wait until it is ready (or, with ready=False, live).

    Unless `args` name a --monitor-port, the processes' monitoring ports are free ones too:
    `Served.monitor_urls()`. With `monitor_token`, they require it, as in a pod
    (`Served.monitor_headers()`).
    """
    workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
    if "--monitor-port" in args:
        monitor_port = int(args[args.index("--monitor-port") + 1])
    else:
        monitor_port = free_ports(workers)
        args = (*args, "--monitor-port", str(monitor_port))
    port = free_port()
    while monitor_port <= port < monitor_port + workers:
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
                **({token.ENV: monitor_token} if monitor_token is not None else {}),
                "MODELYARD_TERMINATION_LOG": str(termination_log),
            },
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    served = Served(
        process,
        f"http://127.0.0.1:{port}",
        port,
        output,
        termination_log,
        monitor_port,
        workers,
        monitor_token,
    )
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
