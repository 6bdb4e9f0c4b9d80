"""Connections do not live forever: idle keep-alive ones and stalled requests are closed."""

from __future__ import annotations

import time
from typing import Any

from modelyard.workloads.serve.app import App
from modelyard.workloads.serve.config import DEFAULT_REQUEST_SECONDS as REQUEST_SECONDS
from modelyard.workloads.serve.http import KEEPALIVE_SECONDS, Server
from modelyard.workloads.serve.metrics import Metrics


class Transport:
    """The part of asyncio.Transport a connection uses, recording what happened."""

    def __init__(self) -> None:
        self.written = b""
        self.state = "open"

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.state = "closed"

    def abort(self) -> None:
        self.state = "aborted"

    def is_closing(self) -> bool:
        return self.state != "open"

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def connect() -> tuple[Any, Transport]:
    server = Server(App(None, Metrics(), 10), max_body_bytes=1024)
    connection = server.connection()
    transport = Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


def test_an_idle_keep_alive_connection_is_closed() -> None:
    connection, transport = connect()
    connection.data_received(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
    assert transport.written.startswith(b"HTTP/1.1 200 OK")
    connection.expire(time.monotonic() + KEEPALIVE_SECONDS / 2)
    assert transport.state == "open"
    connection.expire(time.monotonic() + KEEPALIVE_SECONDS + 1)
    assert transport.state == "closed"


def test_a_request_that_never_completes_is_cut_off() -> None:
    connection, transport = connect()
    connection.data_received(b"POST /v1/models/m:predict HTTP/1.1\r\ncontent-length: 10\r\n\r\n")
    connection.expire(time.monotonic() + REQUEST_SECONDS / 2)
    assert transport.state == "open"
    connection.expire(time.monotonic() + REQUEST_SECONDS + 1)
    assert transport.state == "aborted"


def test_a_connection_that_never_starts_a_request_is_cut_off() -> None:
    connection, transport = connect()
    connection.expire(time.monotonic() + REQUEST_SECONDS / 2)
    assert transport.state == "open"
    connection.expire(time.monotonic() + REQUEST_SECONDS + 1)
    assert transport.state == "aborted"
